"""IR-SE residual networks: the ArcFace-style IR-SE50 face-recognition backbone and its building blocks.

Source: Deng et al., "ArcFace" (CVPR 2019) improved-residual ("IR") unit with a squeeze-and-excitation
gate (Hu et al., CVPR 2018), in the PyTorch layout of TreB1eN's InsightFace_Pytorch, which pSp
(Richardson et al., CVPR 2021) ships as ``models/encoders/helpers.py`` / ``model_irse.py``. The same
unit (:class:`BottleneckIRSE`) builds

* :class:`IRSE50Backbone`, the identity network of pSp's ID loss (official file ``model_ir_se50.pth``,
  a plain state_dict of 397 entries: ``input_layer.*``, ``body.<0..23>.*``, ``output_layer.*``), and
* the body of pSp's ``GradualStyleEncoder`` (:mod:`vidinv.models.psp`).

Layer layout of one unit (``body.<i>``), keys as in the official files::

    shortcut_layer : MaxPool2d(1, stride)                      when in_channel == depth (no parameters)
                     Sequential(Conv2d 1x1 stride, BatchNorm2d) otherwise (keys .0.weight, .1.*)
    res_layer      : 0 BatchNorm2d(in) - 1 Conv3x3(in->depth) - 2 PReLU(depth)
                     - 3 Conv3x3(depth->depth, stride) - 4 BatchNorm2d(depth) - 5 SE(depth, reduction 16)
    output         = res_layer(x) + shortcut_layer(x)

The first unit of every stage has stride 2 (also the first stage, whose shortcut is then a strided
1x1 max-pool, i.e. plain subsampling).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from vidinv.io.checkpoints import CheckpointError, load_strict, read_checkpoint

__all__ = [
    "SEModule",
    "BottleneckIRSE",
    "irse_unit_specs",
    "make_input_layer",
    "make_irse_body",
    "IRSE50Backbone",
    "id_loss_crop",
    "load_irse50",
    "ID_CROP_ROWS",
    "ID_CROP_COLS",
]

# Units per stage (channels 64, 128, 256, 512) of the IR/IR-SE networks pSp supports (helpers.get_blocks).
_STAGE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
_STAGE_DEPTHS = (64, 128, 256, 512)

# pSp criteria/id_loss.py crop of a 256x256 aligned face before pooling to 112x112: rows 35..222,
# columns 32..219 (a 188x188 window).
ID_CROP_ROWS = (35, 223)
ID_CROP_COLS = (32, 220)


class SEModule(nn.Module):
    """Squeeze-and-excitation gate: ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``.

    Keys ``fc1.weight`` (C/r, C, 1, 1) and ``fc2.weight`` (C, C/r, 1, 1), no biases (official layout).

    Args:
        channels: C.
        reduction: r (16 in IR-SE).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) float → (B, C, H, W), each channel scaled by its gate in (0, 1)."""
        s = F.adaptive_avg_pool2d(x, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class BottleneckIRSE(nn.Module):
    """One improved-residual unit, with a squeeze-and-excitation gate when ``use_se`` (IR-SE).

    ``use_se=False`` gives pSp's plain ``bottleneck_IR`` (mode ``"ir"``); the keys are identical
    except that ``res_layer.5`` is absent. See the module docstring for the layer layout.

    Args:
        in_channel: input channels.
        depth: output channels.
        stride: 1 or 2; applied by the second 3x3 conv and by the shortcut.
        use_se: append the SE gate (``res_layer.5``).
    """

    def __init__(self, in_channel: int, depth: int, stride: int, use_se: bool = True):
        super().__init__()
        self.shortcut_layer: nn.Module
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        layers = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if use_se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in_channel, H, W) → (B, depth, H/stride, W/stride)."""
        return self.res_layer(x) + self.shortcut_layer(x)


def irse_unit_specs(num_layers: int = 50, *, widths=_STAGE_DEPTHS, blocks=None) -> list[tuple[int, int, int]]:
    """``(in_channel, depth, stride)`` of every unit of an IR(-SE) network.

    Args:
        num_layers: 50, 100 or 152; picks the units per stage when ``blocks`` is None.
        widths: channels of the 4 stages (official ``(64, 128, 256, 512)``); the stem has ``widths[0]``.
        blocks: units per stage (4 positive ints), or None for the ``num_layers`` preset (50 → (3, 4, 14, 3)).

    Raises:
        ValueError: unsupported depth, or widths/blocks not 4 positive ints.
    """
    if blocks is None:
        if num_layers not in _STAGE_UNITS:
            raise ValueError(f"IR-SE networks have 50, 100 or 152 layers, not {num_layers}")
        blocks = _STAGE_UNITS[num_layers]
    widths, blocks = tuple(int(w) for w in widths), tuple(int(n) for n in blocks)
    if len(widths) != 4 or len(blocks) != 4 or min(widths) < 1 or min(blocks) < 1:
        raise ValueError(f"IR-SE stages need 4 positive widths and 4 positive unit counts, got {widths}, {blocks}")
    specs = []
    in_c = widths[0]
    for depth, n in zip(widths, blocks):
        specs.append((in_c, depth, 2))
        specs.extend((depth, depth, 1) for _ in range(n - 1))
        in_c = depth
    return specs


def make_input_layer(input_nc: int = 3, width: int = 64) -> nn.Sequential:
    """Stem ``Sequential(Conv2d(input_nc, width, 3x3, pad 1, no bias), BatchNorm2d(width), PReLU(width))``
    (keys ``0``, ``1``, ``2``; official width 64)."""
    return nn.Sequential(nn.Conv2d(input_nc, width, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(width),
                         nn.PReLU(width))


def make_irse_body(num_layers: int = 50, mode: str = "ir_se", *, widths=_STAGE_DEPTHS, blocks=None) -> nn.Sequential:
    """The stack of units (keys ``<i>.*``); 50 layers → 24 units, output 512 channels at 1/16 resolution.

    Args:
        num_layers: 50, 100 or 152 (used when ``blocks`` is None).
        mode: ``"ir_se"`` (with SE gates, all official pSp/ID-loss files) or ``"ir"``.
        widths, blocks: stage sizes, see :func:`irse_unit_specs` (defaults: the official ones). SE gates
            reduce by 16, so ``"ir_se"`` needs every width >= 16.

    Raises:
        ValueError: unknown ``mode`` or ``num_layers``, bad widths/blocks.
    """
    if mode not in ("ir", "ir_se"):
        raise ValueError(f"mode must be 'ir' or 'ir_se', not {mode!r}")
    use_se = mode == "ir_se"
    specs = irse_unit_specs(num_layers, widths=widths, blocks=blocks)
    if use_se and min(d for _, d, _ in specs) < 16:
        raise ValueError(f"IR-SE units reduce channels by 16 in the SE gate; widths {tuple(widths)} need to be >= 16")
    return nn.Sequential(*[BottleneckIRSE(i, d, s, use_se) for i, d, s in specs])


def id_loss_crop(x256: torch.Tensor) -> torch.Tensor:
    """pSp ID-loss preprocessing of a 256x256 aligned face: crop, then adaptive average pool to 112x112.

    Crops rows 35..222 and columns 32..219 (``x[:, :, 35:223, 32:220]``, 188x188) and applies
    ``adaptive_avg_pool2d(·, 112)`` (pSp ``criteria/id_loss.py`` ``extract_feats``).

    Args:
        x256: (B, 3, 256, 256) float, RGB in [-1, 1] (pSp's FFHQ transforms), any device.

    Returns:
        (B, 3, 112, 112), same dtype/device and value range.

    Raises:
        ValueError: the input is not (B, C, 256, 256).
    """
    if x256.ndim != 4 or tuple(x256.shape[-2:]) != (256, 256):
        raise ValueError(f"expected a (B, 3, 256, 256) aligned face batch, got shape {tuple(x256.shape)}; "
                         "the ID-loss crop is defined in 256x256 pixel coordinates")
    x = x256[:, :, ID_CROP_ROWS[0]:ID_CROP_ROWS[1], ID_CROP_COLS[0]:ID_CROP_COLS[1]]
    return F.adaptive_avg_pool2d(x, (112, 112))


class IRSE50Backbone(nn.Module):
    """IR-SE50 face-recognition network (pSp ``model_irse.Backbone(112, 50, 0.6, 'ir_se')``).

    ``state_dict()`` has exactly the 397 keys/shapes of the official ``model_ir_se50.pth``:
    ``input_layer`` (stem), ``body`` (24 IR-SE units), ``output_layer`` =
    ``0 BatchNorm2d(512) - 1 Dropout(0.6) - 2 Flatten - 3 Linear(512*7*7, 512) - 4 BatchNorm1d(512)``.

    Use in ``eval()`` (BatchNorm running statistics, dropout off); :func:`load_irse50` returns it so.
    """

    def __init__(self, drop_ratio: float = 0.6, affine: bool = True):
        super().__init__()
        self.input_layer = make_input_layer(3)
        self.body = make_irse_body(50, "ir_se")
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 512),
            nn.BatchNorm1d(512, affine=affine),
        )

    def forward(self, x112: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Identity embedding of 112x112 face crops.

        Args:
            x112: (B, 3, 112, 112) float, RGB in [-1, 1] (e.g. :func:`id_loss_crop` of an aligned 256 face).
            normalize: divide by the L2 norm over dim 1 (plain ``x / ||x||``, no epsilon, as pSp's
                ``l2_norm``). False returns the raw output-layer features.

        Returns:
            (B, 512) embedding, unit L2 norm when ``normalize``; same dtype/device as the input.

        Raises:
            ValueError: the input is not (B, 3, 112, 112).
        """
        if x112.ndim != 4 or tuple(x112.shape[1:]) != (3, 112, 112):
            raise ValueError(f"IR-SE50 expects (B, 3, 112, 112) input, got shape {tuple(x112.shape)}")
        x = self.output_layer(self.body(self.input_layer(x112)))
        if normalize:
            x = x / torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True)
        return x

    def identity_embedding(self, x256: torch.Tensor) -> torch.Tensor:
        """pSp ID-loss features of aligned 256x256 faces: ``forward(id_loss_crop(x256))``.

        Args:
            x256: (B, 3, 256, 256) float, RGB in [-1, 1].

        Returns:
            (B, 512) unit-norm embedding; cosine similarity of two embeddings = their dot product.
        """
        return self(id_loss_crop(x256))


def _as_state_dict(obj, path) -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        return obj["state_dict"]
    raise CheckpointError(f"{path}: expected a plain IR-SE50 state_dict (as model_ir_se50.pth), "
                          f"got a {type(obj).__name__}"
                          + (f" with keys {sorted(obj)[:8]}" if isinstance(obj, Mapping) else ""))


def load_irse50(path: str | os.PathLike) -> IRSE50Backbone:
    """Build :class:`IRSE50Backbone` from ``model_ir_se50.pth`` (a plain state_dict), strictly, in eval mode on CPU.

    Raises:
        CheckpointError: unreadable file or not a state_dict.
        CheckpointMismatchError: keys/shapes differ from the official layout (the message names the file).
    """
    sd = _as_state_dict(read_checkpoint(path), path)
    model = IRSE50Backbone()
    load_strict(model, sd, path, "IR-SE50 backbone")
    return model.eval()
