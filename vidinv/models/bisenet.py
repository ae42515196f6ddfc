"""BiSeNet face parsing (19 CelebAMask-HQ classes), as used by the Feature-Style encoder.

Source: Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation",
ECCV 2018, in the variant of zllrunning/face-parsing.PyTorch that the Feature-Style encoder
(Yao et al., ECCV 2022) copies into ``face_parsing/``: the spatial path is dropped and the
ResNet-18 1/8 feature takes its place. Official weights: ``79999_iter.pth``, a plain state_dict of
191 entries whose key names and shapes this module's :class:`BiSeNet` reproduces exactly
(``cp.resnet.*``, ``cp.arm16.*``, ``cp.arm32.*``, ``cp.conv_head32.*``, ``cp.conv_head16.*``,
``cp.conv_avg.*``, ``ffm.*``, ``conv_out.*``, ``conv_out16.*``, ``conv_out32.*``).

Network input: RGB in [0, 1], then per-channel ImageNet normalisation
``(v - mean) / std`` with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), at 512x512
(the resolution the network was trained at). :func:`to_bisenet_input` builds it from StyleGAN-range
images the way the Feature-Style trainer does (``utils.functions.stylegan_to_classifier``).

Classes (face-parsing.PyTorch order, *not* the CelebAMask-HQ file order)::

    index name     part                index name     part
    0     background                   10    nose
    1     skin     face skin           11    mouth    inner mouth (teeth, tongue)
    2     l_brow   left eyebrow        12    u_lip    upper lip
    3     r_brow   right eyebrow       13    l_lip    lower lip
    4     l_eye    left eye            14    neck
    5     r_eye    right eye           15    neck_l   necklace
    6     eye_g    eyeglasses          16    cloth
    7     l_ear    left ear            17    hair
    8     r_ear    right ear           18    hat
    9     ear_r    earring

"left"/"right" are as annotated in CelebAMask-HQ (the subject's side is not guaranteed).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidinv.io.checkpoints import VIDINV_RECORD_KEY, CheckpointError, load_strict, read_checkpoint, read_vidinv_record

__all__ = [
    "N_CLASSES",
    "CLASS_NAMES",
    "CLASS_INDEX",
    "FS_VIDEO_MASK_LABELS",
    "PARSING_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BiSeNet",
    "to_bisenet_input",
    "class_mask",
    "load_bisenet",
]

N_CLASSES = 19

#: Class names by label index (face-parsing.PyTorch / ``79999_iter.pth`` order).
CLASS_NAMES: tuple[str, ...] = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)

#: Label index by class name.
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}

#: The labels the Feature-Style video editing pipeline (``utils/video_utils.generate_mask``) puts in
#: its blend mask by default: skin, both brows, both eyes, eyeglasses, earring (9), nose, mouth and
#: both lips. Ears, neck, hair, cloth and hat are left out.
FS_VIDEO_MASK_LABELS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 13)

#: Side of the square network input the official weights were trained at (pixels).
PARSING_SIZE = 512

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# Building blocks (official attribute names: they are the state_dict keys)
# --------------------------------------------------------------------------------------------

class ConvBNReLU(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> ReLU. Keys: ``conv.weight``, ``bn.*``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv+BN with an identity or 1x1-conv+BN shortcut, then ReLU.

    Keys: ``conv1``, ``bn1``, ``conv2``, ``bn2`` and, when the shape changes, ``downsample.0``
    (1x1 conv, no bias) and ``downsample.1`` (BatchNorm2d).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = None
        if in_ch != out_ch or stride != 1:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


def _stage(in_ch: int, out_ch: int, stride: int, blocks: int = 2) -> nn.Sequential:
    layers = [BasicBlock(in_ch, out_ch, stride)]
    layers += [BasicBlock(out_ch, out_ch, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet18Features(nn.Module):
    """ResNet-18 trunk without the classifier, returning the 1/8, 1/16 and 1/32 features.

    Keys as torchvision's ``resnet18`` minus ``fc`` (``conv1``, ``bn1``, ``layer1``..``layer4``);
    the weights come from the BiSeNet checkpoint, never from ImageNet downloads.

    ``forward(x)``: x (B, 3, H, W) -> (feat8 (B, 128, H/8, W/8), feat16 (B, 256, H/16, W/16),
    feat32 (B, 512, H/32, W/32)) (sizes rounded up by the strided convolutions).

    ``c`` (``base_width``, 64 official) scales every width: stages of c, 2c, 4c, 8c channels.
    """

    def __init__(self, c: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _stage(c, c, 1)
        self.layer2 = _stage(c, 2 * c, 2)
        self.layer3 = _stage(2 * c, 4 * c, 2)
        self.layer4 = _stage(4 * c, 8 * c, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat8, feat16, feat32


def _global_avg(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, x.shape[2:])


class AttentionRefinementModule(nn.Module):
    """ARM: 3x3 ConvBNReLU, then a channel attention sigmoid(BN(conv1x1(global average))).

    Keys: ``conv.*``, ``conv_atten.weight``, ``bn_atten.*``.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3, 1, 1)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(_global_avg(feat))))
        return feat * atten


class ContextPath(nn.Module):
    """ResNet-18 with ARMs on the 1/16 and 1/32 features and a global-context branch.

    ``forward(x)`` -> (feat8 (B,128,H/8,W/8) from ResNet layer2, context at 1/8 (B,128,H/8,W/8),
    context at 1/16 (B,128,H/16,W/16)). Upsampling between scales is nearest-neighbour. Widths scale
    with ``c`` (64 official: the 128-channel contexts are 2c).
    """

    def __init__(self, c: int = 64):
        super().__init__()
        self.resnet = ResNet18Features(c)
        self.arm16 = AttentionRefinementModule(4 * c, 2 * c)
        self.arm32 = AttentionRefinementModule(8 * c, 2 * c)
        self.conv_head32 = ConvBNReLU(2 * c, 2 * c, 3, 1, 1)
        self.conv_head16 = ConvBNReLU(2 * c, 2 * c, 3, 1, 1)
        self.conv_avg = ConvBNReLU(8 * c, 2 * c, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        global_ctx = self.conv_avg(_global_avg(feat32))
        global_ctx = F.interpolate(global_ctx, feat32.shape[2:], mode="nearest")

        ctx32 = self.arm32(feat32) + global_ctx
        ctx32 = self.conv_head32(F.interpolate(ctx32, feat16.shape[2:], mode="nearest"))

        ctx16 = self.arm16(feat16) + ctx32
        ctx16 = self.conv_head16(F.interpolate(ctx16, feat8.shape[2:], mode="nearest"))
        return feat8, ctx16, ctx32


class FeatureFusionModule(nn.Module):
    """FFM: concatenate, 1x1 ConvBNReLU, then ``feat * a + feat`` with a squeeze-excitation
    attention a = sigmoid(conv2(relu(conv1(global average)))). Keys: ``convblk.*``, ``conv1``, ``conv2``.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, 1, 1, 0)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_avg(feat)))))
        return feat * atten + feat


class BiSeNetOutput(nn.Module):
    """Segmentation head: 3x3 ConvBNReLU then a 1x1 conv (no bias) to class logits.
    Keys: ``conv.*``, ``conv_out.weight``."""

    def __init__(self, in_ch: int, mid_ch: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3, 1, 1)
        self.conv_out = nn.Conv2d(mid_ch, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


# --------------------------------------------------------------------------------------------
# BiSeNet
# --------------------------------------------------------------------------------------------

class BiSeNet(nn.Module):
    """BiSeNet face parser with the layout of ``79999_iter.pth`` (face-parsing.PyTorch).

    Args:
        n_classes: number of output classes (19 for the official weights; see :data:`CLASS_NAMES`).
        base_width: c, the width every layer scales with (64 official: ResNet-18 stages of 64..512
            channels, 128-channel contexts, 256-channel fusion); smaller values build tiny parsers for
            tests (loaded only from files carrying a vidinv record, see :func:`load_bisenet`).

    Raises:
        ValueError: ``n_classes < 1`` or ``base_width < 4``.

    Build it with :func:`load_bisenet` to get the official weights in eval mode. BatchNorm layers use
    their running statistics only in ``eval()`` mode, which is how the reference is always run.

    ``forward(x)``:
        x: (B, 3, H, W) float, RGB in [0, 1] then ImageNet-normalised (see :func:`to_bisenet_input`);
        the official weights expect H = W = 512.
        Returns ``(out, out16, out32)``, each (B, n_classes, H, W) float logits (not softmaxed):
        the main head (fused features, 1/8 scale) and the two auxiliary heads (1/8 and 1/16 context
        features), each upsampled bilinearly with ``align_corners=True``, as the reference returns
        them. The Feature-Style parsing loss compares all three; labels come from ``out``.
    """

    def __init__(self, n_classes: int = N_CLASSES, base_width: int = 64):
        super().__init__()
        if n_classes < 1 or base_width < 4:
            raise ValueError(f"BiSeNet needs n_classes >= 1 and base_width >= 4, got {n_classes}, {base_width}")
        self.n_classes = int(n_classes)
        self.base_width = c = int(base_width)
        self.cp = ContextPath(c)
        self.ffm = FeatureFusionModule(4 * c, 4 * c)
        self.conv_out = BiSeNetOutput(4 * c, 4 * c, n_classes)
        self.conv_out16 = BiSeNetOutput(2 * c, c, n_classes)
        self.conv_out32 = BiSeNetOutput(2 * c, c, n_classes)

    def architecture(self) -> dict:
        """Constructor arguments (``n_classes``, ``base_width``), as vidinv records them in checkpoints it writes."""
        return {"n_classes": self.n_classes, "base_width": self.base_width}

    def forward_lowres(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three heads' logits before the final upsampling.

        Args:
            x: (B, 3, H, W) normalised input, as for :meth:`forward`.

        Returns:
            ``(out, out16, out32)`` float logits of shapes (B, C, H/8, W/8), (B, C, H/8, W/8) and
            (B, C, H/16, W/16) (64, 64 and 32 at H = 512), C = ``n_classes``.
        """
        feat8, ctx8, ctx16 = self.cp(x)
        fused = self.ffm(feat8, ctx8)
        return self.conv_out(fused), self.conv_out16(ctx8), self.conv_out32(ctx16)

    @staticmethod
    def upsample(logits: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
        """Upsample head logits (B, C, h, w) to ``size`` (int or (H, W)) the reference's way:
        bilinear with ``align_corners=True``."""
        if isinstance(size, int):
            size = (size, size)
        return F.interpolate(logits, tuple(int(s) for s in size), mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        _check_images(x, "x")
        size = x.shape[2:]
        return tuple(self.upsample(t, size) for t in self.forward_lowres(x))  # type: ignore[return-value]

    def labels(self, x: torch.Tensor, size: int | Sequence[int] | None = None) -> torch.Tensor:
        """Per-pixel class labels from a normalised input: argmax of the main head ``out``.

        Args:
            x: (B, 3, H, W) normalised input, as for :meth:`forward`.
            size: output size, int or (H', W'); default the input's (H, W). The main head's
                low-resolution logits are upsampled straight to this size (bilinear,
                ``align_corners=True``), so at the input size this is ``forward(x)[0].argmax(1)``.

        Returns:
            (B, H', W') int64 labels in [0, n_classes), indices into :data:`CLASS_NAMES`.
        """
        _check_images(x, "x")
        size = x.shape[2:] if size is None else size
        feat8, ctx8, _ = self.cp(x)
        out = self.conv_out(self.ffm(feat8, ctx8))
        return self.upsample(out, size).argmax(dim=1)

    @torch.no_grad()
    def parse(self, images: torch.Tensor, size: int | Sequence[int] | None = None, *,
              antialias: bool = False) -> torch.Tensor:
        """Face-parsing labels of RGB images, with the resize and normalisation done here.

        The images go through :func:`to_bisenet_input` (to [0, 1], resized to 512x512, ImageNet
        normalisation), then :meth:`labels`. Runs without gradients, on this network's device and
        dtype (the images are moved there).

        Args:
            images: (B, 3, H, W) RGB, either float in [-1, 1] (StyleGAN range) or uint8 in [0, 255].
            size: size of the returned label map, int or (H', W'); default the images' (H, W). The
                logits are upsampled to it before the argmax (at 512 this is exactly the reference).
            antialias: antialias the resize to 512 (off by default, as in the Feature-Style trainer;
                it matters only when shrinking by more than 2x).

        Returns:
            (B, H', W') int64 labels (indices into :data:`CLASS_NAMES`).

        Raises:
            ValueError: ``images`` is not (B, 3, H, W), or has a dtype other than float or uint8.
        """
        param = next(self.parameters())
        size = images.shape[2:] if (size is None and images.dim() == 4) else size
        x = to_bisenet_input(images.to(param.device), antialias=antialias).to(param.dtype)
        return self.labels(x, size)


def _check_images(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a (B, 3, H, W) RGB tensor, got {shape}")


def to_bisenet_input(images: torch.Tensor, size: int | Sequence[int] = PARSING_SIZE, *,
                     antialias: bool = False) -> torch.Tensor:
    """Turn RGB images into BiSeNet's input, as the Feature-Style trainer does.

    Float images: ``clamp(0.5 * v + 0.5, 0, 1)`` (Feature-Style ``stylegan_to_classifier``);
    uint8 images: ``v / 255``. Then a bilinear resize to ``size`` (``align_corners=False``; no
    antialias unless asked; skipped when already that size) and per-channel
    ``(v - IMAGENET_MEAN) / IMAGENET_STD``. Differentiable for float inputs (used by the parsing loss).

    Args:
        images: (B, 3, H, W) RGB, float in [-1, 1] or uint8 in [0, 255].
        size: network input size, int or (H', W'); 512 for the official weights.
        antialias: passed to ``F.interpolate``.

    Returns:
        (B, 3, H', W') float (float32 for uint8 inputs, else the input's dtype), on the input's device.

    Raises:
        ValueError: wrong shape, or a dtype other than floating point or uint8.
    """
    _check_images(images, "images")
    if images.dtype == torch.uint8:
        x = images.float() / 255.0
    elif images.is_floating_point():
        x = torch.clamp(0.5 * images + 0.5, 0.0, 1.0)
    else:
        raise ValueError(f"images must be float in [-1, 1] or uint8 in [0, 255], got dtype {images.dtype}")
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if tuple(x.shape[2:]) != size:
        x = F.interpolate(x, size, mode="bilinear", align_corners=False, antialias=antialias)
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def class_mask(labels: torch.Tensor, classes: Iterable[int | str]) -> torch.Tensor:
    """Boolean mask of the pixels whose label is one of ``classes``.

    Args:
        labels: integer label map of any shape, e.g. (B, H, W) from :meth:`BiSeNet.parse`.
        classes: label indices or names from :data:`CLASS_NAMES`, e.g. :data:`FS_VIDEO_MASK_LABELS`.

    Returns:
        bool tensor of ``labels``' shape.

    Raises:
        KeyError: an unknown class name. ValueError: an index outside [0, 19).
    """
    idx = []
    for c in classes:
        if isinstance(c, str):
            if c not in CLASS_INDEX:
                raise KeyError(f"unknown face-parsing class {c!r}; known: {', '.join(CLASS_NAMES)}")
            idx.append(CLASS_INDEX[c])
        else:
            if not 0 <= int(c) < N_CLASSES:
                raise ValueError(f"face-parsing class index {c} is outside [0, {N_CLASSES})")
            idx.append(int(c))
    wanted = torch.tensor(sorted(set(idx)), dtype=labels.dtype, device=labels.device)
    return torch.isin(labels, wanted)


def load_bisenet(path: str | os.PathLike, device: torch.device | str | None = None) -> BiSeNet:
    """Build :class:`BiSeNet` from a checkpoint, strictly, in eval mode.

    Two layouts:

    * the official ``79999_iter.pth``: a plain state_dict with the 191 official keys, held to the official
      network (19 classes, ``base_width`` 64): every key and shape must match.
    * a parser vidinv wrote (e.g. the test bundle's tiny one): ``{"state_dict": ..., "vidinv_config":
      record}`` (:func:`vidinv.io.checkpoints.vidinv_record`, network ``"bisenet"``, architecture
      ``{"n_classes", "base_width"}``), loaded strictly into the network the record declares.

    Args:
        path: the checkpoint.
        device: where to put the network (default: CPU).

    Returns:
        The loaded network, ``eval()``, parameters without ``requires_grad`` (it is a frozen
        parser/loss network).

    Raises:
        CheckpointError: the file cannot be read, or has a bad vidinv record.
        CheckpointMismatchError: its keys or shapes differ from the official (or recorded) layout.
    """
    obj = read_checkpoint(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a plain BiSeNet state_dict, got a {type(obj).__name__}")
    record = read_vidinv_record(obj.get(VIDINV_RECORD_KEY), path, "bisenet")
    if record is None:
        sd, net, what = obj, BiSeNet(N_CLASSES), "BiSeNet face-parsing (official 79999_iter.pth layout)"
    else:
        recorded_sd = obj.get("state_dict")
        if not isinstance(recorded_sd, dict):
            raise CheckpointError(f"{path}: the file has a vidinv record but no 'state_dict' dict")
        sd = recorded_sd
        arch = dict(record["architecture"])
        unknown = sorted(set(arch) - {"n_classes", "base_width"})
        if unknown:
            raise CheckpointError(f"{path}: unknown BiSeNet architecture key(s) {unknown}")
        try:
            net = BiSeNet(int(arch.get("n_classes", N_CLASSES)), int(arch.get("base_width", 64)))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: the recorded BiSeNet architecture cannot be built: {exc}") from exc
        what = "BiSeNet face-parsing (architecture from the file's vidinv record)"
    load_strict(net, sd, path, what)
    net.eval().requires_grad_(False)
    if device is not None:
        net.to(device)
    return net
