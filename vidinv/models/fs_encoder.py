"""Feature-Style encoder (Yao, Newson, Gousseau, Hellier, "A Style-Based GAN Encoder for High
Fidelity Reconstruction of Images and Videos", ECCV 2022).

The encoder maps an aligned face to two codes of a StyleGAN2 FFHQ 1024 generator:

* a latent code in W+ (18 rows of 512), predicted as an *offset* from ``latent_avg``;
* a feature code F (512, 16, 16) that replaces the generator's feature map at layer K = 5. In the
  reference generator's ``features_in`` / ``return_features`` indexing (0 = constant input, 1 = the
  4x4 conv, then two styled convs per resolution), index 5 is the output of the second 16x16 styled
  convolution, i.e. the input of the upsampling conv to 32x32 (see :mod:`vidinv.models.stylegan2`).
  The coarse W+ rows still drive the toRGB skip branch up to 16x16.

Architecture (reference ``nets/feature_style_encoder.py`` ``fs_encoder_v2`` as built by
``Trainer`` from ``configs/001.yaml``: ``n_styles=18``, ``fs_stride=2``; the official
``143_enc.pth`` has exactly these 517 state_dict keys):

* ``conv.0-2``: IResNet stem (conv3x3 3->64, BatchNorm2d, PReLU) at 256x256;
* ``block_1..block_4``: IResNet-50 ``layer1..layer4`` (outputs 64x128², 128x64², 256x32², 512x16²);
* ``content_layer``: BatchNorm2d(256) -> conv3x3 256->512 -> BatchNorm2d -> PReLU(512) -> conv3x3
  512->512 with stride 2 -> BatchNorm2d, applied to ``block_3``'s output: F (B, 512, 16, 16);
* ``styles.0..17``: the outputs of blocks 1-4, each ``AdaptiveAvgPool2d((3, 3))``, concatenated on
  channels (64+128+256+512 = 960) and flattened in (channel, row, col) order to 8640 values; 18
  separate ``Linear(8640, 512)`` heads give the 18 W+ offsets.

The encoder was trained at 256x256 (``enc_resolution: 256``): the reference pipeline
(``Trainer.encode``) downsamples the 1024 aligned face twice by ``F.interpolate(scale_factor=0.5,
mode='bilinear')``, encodes, and adds ``latent_avg``; :meth:`FeatureStyleEncoder.encode` does the same.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidinv.io.checkpoints import VIDINV_RECORD_KEY, CheckpointError, load_strict, read_checkpoint, read_vidinv_record
from vidinv.models.iresnet import iresnet_stem, make_iresnet_layer

__all__ = [
    "FeatureStyleEncoder",
    "downscale",
    "OFFICIAL_FS_ARCHITECTURE",
    "fs_encoder_from_architecture",
    "load_fs_encoder",
    "FS_ENC_RESOLUTION",
    "FS_FEATURE_LAYER",
]

#: Input size (pixels, square) the Feature-Style encoder was trained at.
FS_ENC_RESOLUTION = 256
#: Generator layer K whose feature map the feature code F replaces (reference ``idx_k = 5``).
FS_FEATURE_LAYER = 5


def downscale(x: torch.Tensor, times: int) -> torch.Tensor:
    """Halve the spatial size ``times`` times, as the reference ``utils.functions.downscale``.

    Each step is ``F.interpolate(x, scale_factor=0.5, mode='bilinear')``: align_corners False, no
    antialias, ``recompute_scale_factor`` None. This is bit-identical to the reference (and to
    ``size=(H/2, W/2)`` steps); it is *not* bit-identical to ``avg_pool2d(x, 2)`` (same in exact math,
    differs by ~1e-7 in float32).

    Args:
        x: (B, C, H, W) float, any range.
        times: number of halvings (>= 0).

    Returns:
        (B, C, H / 2**times, W / 2**times), dtype and device of ``x``.
    """
    if times < 0:
        raise ValueError(f"times must be >= 0, got {times}")
    for _ in range(times):
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear")
    return x


class FeatureStyleEncoder(nn.Module):
    """Feature-Style encoder ``fs_encoder_v2`` (IResNet-50 backbone), official ``143_enc.pth`` layout.

    Args:
        n_styles: number of W+ rows (18 for a 1024 generator: ``2 * log2(1024) - 2``).
        stride: stride of the last ``content_layer`` convolution; 2 (``fs_stride`` of ``configs/001.yaml``)
            gives F at 16x16, the size of the generator's layer K = 5.
        widths, depths, stem_width, content_channels, style_dim: channels / blocks of the four IResNet
            stages, stem width, channels of F and W+ row size. The defaults are the official
            ``143_enc.pth`` (IResNet-50: (64, 128, 256, 512), (3, 4, 14, 3), 64, 512, 512); smaller
            values build tiny encoders for tests (``content_channels`` must equal the generator's
            channels at 16x16). The heads read ``sum(widths) * 9`` pooled values.

    Attributes:
        enc_resolution: 256, the input size the encoder was trained at.
        feature_layer: K = 5, the generator layer F replaces.

    Use :func:`load_fs_encoder` to read ``143_enc.pth``; the module's dtype/device set those of the
    computation (inputs must match it).
    """

    enc_resolution = FS_ENC_RESOLUTION
    feature_layer = FS_FEATURE_LAYER

    def __init__(self, n_styles: int = 18, stride: int = 2, *, widths: Sequence[int] = (64, 128, 256, 512),
                 depths: Sequence[int] = (3, 4, 14, 3), stem_width: int = 64,
                 content_channels: int = 512, style_dim: int = 512):
        super().__init__()
        if n_styles < 1:
            raise ValueError(f"n_styles must be >= 1, got {n_styles}")
        widths, depths = tuple(int(c) for c in widths), tuple(int(d) for d in depths)
        if len(widths) != 4 or len(depths) != 4 or min(widths + depths) < 1:
            raise ValueError(f"widths and depths need 4 positive entries, got {widths} and {depths}")
        self.n_styles = n_styles
        self.stride = stride
        self.widths, self.depths = widths, depths
        self.stem_width = int(stem_width)
        self.content_channels = int(content_channels)
        self.style_dim = int(style_dim)
        self.conv = nn.Sequential(*iresnet_stem(3, self.stem_width))
        self.block_1 = make_iresnet_layer(self.stem_width, widths[0], depths[0], stride=2)
        self.block_2 = make_iresnet_layer(widths[0], widths[1], depths[1], stride=2)
        self.block_3 = make_iresnet_layer(widths[1], widths[2], depths[2], stride=2)
        self.block_4 = make_iresnet_layer(widths[2], widths[3], depths[3], stride=2)
        c = self.content_channels
        self.content_layer = nn.Sequential(
            nn.BatchNorm2d(widths[2], eps=1e-5),
            nn.Conv2d(widths[2], c, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(c, eps=1e-5),
            nn.PReLU(c),
            nn.Conv2d(c, c, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c, eps=1e-5),
        )
        self.avg_pool = nn.AdaptiveAvgPool2d((3, 3))
        self.styles = nn.ModuleList(nn.Linear(sum(widths) * 9, self.style_dim) for _ in range(n_styles))

    def architecture(self) -> dict:
        """Constructor arguments of this encoder (the keys of :data:`OFFICIAL_FS_ARCHITECTURE`, plain ints
        and lists), as vidinv records them in the checkpoints it writes; :func:`fs_encoder_from_architecture`
        builds the same network back."""
        return {"n_styles": int(self.n_styles), "stride": int(self.stride), "widths": list(self.widths),
                "depths": list(self.depths), "stem_width": self.stem_width, "content_channels": self.content_channels,
                "style_dim": self.style_dim, "enc_resolution": int(self.enc_resolution)}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode an aligned 256x256 face.

        Args:
            x: (B, 3, 256, 256) float, RGB in [-1, 1] (``(uint8 / 255 - 0.5) / 0.5``), dtype and device
                of the module.

        Returns:
            ``(latents, F)``: ``latents`` (B, n_styles, 512), the W+ offsets **without** ``latent_avg``;
            ``F`` (B, 512, 16, 16) with stride 2, the feature code for generator layer K = 5. Both in the
            dtype of ``x``.

        Raises:
            ValueError: ``x`` is not (B, 3, 256, 256) (use :meth:`encode` for 512 or 1024 faces).
        """
        r = self.enc_resolution
        if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (r, r):
            raise ValueError(f"the Feature-Style encoder takes (B, 3, {r}, {r}) RGB in [-1, 1] (it was trained "
                             f"at {r}), got {tuple(x.shape)}; use encode() for larger aligned faces")
        h = self.conv(x)
        h = self.block_1(h)
        pooled = [self.avg_pool(h)]
        h = self.block_2(h)
        pooled.append(self.avg_pool(h))
        h = self.block_3(h)
        content = self.content_layer(h)
        pooled.append(self.avg_pool(h))
        h = self.block_4(h)
        pooled.append(self.avg_pool(h))
        flat = torch.cat(pooled, dim=1).flatten(1)
        latents = torch.stack([head(flat) for head in self.styles], dim=1)
        return latents, content

    def encode(self, x: torch.Tensor, latent_avg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference ``Trainer.encode``: downscale, encode, add ``latent_avg``.

        Args:
            x: (B, 3, S, S) float RGB in [-1, 1], an aligned face with S = 256 * 2**n (1024 for the FFHQ
                generator: two bilinear halvings, exactly as the reference; 512: one; 256: used as is).
            latent_avg: the generator's average latent w, (512,) or (n_styles, 512) (pSp's
                ``psp_ffhq_encode.pt['latent_avg']`` is (18, 512) of identical rows) or
                (1, n_styles, 512). Moved to the dtype/device of the latents.

        Returns:
            ``(w, F)``: ``w`` (B, n_styles, 512) W+ code = latents + latent_avg (broadcast), and the feature
            code ``F`` (B, 512, 16, 16) for generator layer K = 5.

        Raises:
            ValueError: ``x`` is not square with a size of 256 times a power of 2, or ``latent_avg`` does not
                broadcast to (B, n_styles, 512).
        """
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"encode expects a square (B, 3, S, S) face, got {tuple(x.shape)}")
        ratio = x.shape[-1] / self.enc_resolution
        times = int(round(math.log2(ratio))) if ratio >= 1 else -1
        if times < 0 or self.enc_resolution * 2 ** times != x.shape[-1]:
            raise ValueError(f"encode expects S = {self.enc_resolution} * 2**n (256, 512, 1024, ...), got S = "
                             f"{x.shape[-1]}")
        latents, content = self(downscale(x, times))
        latent_avg = latent_avg.to(dtype=latents.dtype, device=latents.device)
        d = self.style_dim
        expected = (self.n_styles, d)
        if latent_avg.shape not in {(d,), expected, (1,) + expected}:
            raise ValueError(f"latent_avg must be ({d},), {expected} or (1, {expected[0]}, {d}), got "
                             f"{tuple(latent_avg.shape)}")
        return latents + latent_avg, content


#: Constructor arguments of the official encoder (``143_enc.pth``): IResNet-50 stages, 18 heads, F 512x16x16.
OFFICIAL_FS_ARCHITECTURE = {"n_styles": 18, "stride": 2, "widths": [64, 128, 256, 512], "depths": [3, 4, 14, 3],
                            "stem_width": 64, "content_channels": 512, "style_dim": 512,
                            "enc_resolution": FS_ENC_RESOLUTION}


def fs_encoder_from_architecture(arch: dict, source: str | os.PathLike = "architecture") -> FeatureStyleEncoder:
    """Build a :class:`FeatureStyleEncoder` from constructor arguments (a vidinv record's ``architecture``:
    the keys of :data:`OFFICIAL_FS_ARCHITECTURE`; absent keys take the official values).

    Raises:
        CheckpointError: unknown keys or values the class refuses (names ``source``).
    """
    arch = dict(arch)
    unknown = sorted(set(arch) - set(OFFICIAL_FS_ARCHITECTURE))
    if unknown:
        raise CheckpointError(f"{source}: unknown Feature-Style encoder architecture key(s) {unknown}")
    a = {**OFFICIAL_FS_ARCHITECTURE, **arch}
    try:
        enc = FeatureStyleEncoder(int(a["n_styles"]), int(a["stride"]), widths=tuple(a["widths"]),
                                  depths=tuple(a["depths"]), stem_width=int(a["stem_width"]),
                                  content_channels=int(a["content_channels"]), style_dim=int(a["style_dim"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{source}: the recorded Feature-Style encoder architecture cannot be built: {exc}") from exc
    enc.enc_resolution = int(a["enc_resolution"])
    return enc


def load_fs_encoder(path: str | os.PathLike, n_styles: int | None = None, stride: int = 2,
                    device: torch.device | str | None = None) -> FeatureStyleEncoder:
    """Read a Feature-Style encoder checkpoint into a :class:`FeatureStyleEncoder`, strictly.

    Two layouts:

    * the official ``143_enc.pth``: a plain state_dict (the reference ``test.py`` does
      ``enc.load_state_dict(torch.load(path))``) with 517 entries: ``conv.0-2``, ``block_1..4``,
      ``content_layer.{0..5}``, ``styles.0..17``. It is held to the official architecture
      (:data:`OFFICIAL_FS_ARCHITECTURE`, with ``n_styles`` / ``stride`` as given): every key and shape
      must match, so a file missing its last block (``block_4.2.*``) is refused, never resized.
    * an encoder vidinv's training exported (:func:`training.export.export_fs_encoder`):
      ``{"state_dict": ..., "vidinv_config": record}`` (:func:`vidinv.io.checkpoints.vidinv_record`, network
      ``"fs_encoder"``). The network is built from the record's ``architecture`` (any widths, depths,
      number of heads, input size) and loaded strictly against it.

    Both are read with ``weights_only=True``.

    Args:
        path: the ``.pth`` file.
        n_styles: number of W+ heads (default 18 for an official file; a recorded file declares its own,
            and a different value here is an error).
        stride: stride of the last content conv of an official file (2 for ``143_enc.pth``; not stored
            in it). A recorded file declares its own.
        device: where to put the model (default: CPU).

    Returns:
        The encoder in ``eval()`` mode (BatchNorm uses the stored running statistics), float32.

    Raises:
        CheckpointError: unreadable file, not a state_dict, a bad vidinv record, or ``n_styles`` /
            ``stride`` contradicting the record.
        CheckpointMismatchError: keys or shapes differ from the official (or recorded) architecture
            (names the file and the first missing/unexpected keys).
    """
    obj = read_checkpoint(path)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a plain Feature-Style encoder state_dict, "
                              f"got a {type(obj).__name__}")
    record = read_vidinv_record(obj.get(VIDINV_RECORD_KEY), path, "fs_encoder")
    if record is not None:
        sd = obj.get("state_dict")
        if not isinstance(sd, dict):
            raise CheckpointError(f"{path}: the file has a vidinv record but no 'state_dict' dict")
        arch = dict(record["architecture"])
        declared = int(arch.get("n_styles", OFFICIAL_FS_ARCHITECTURE["n_styles"]))
        if n_styles is not None and int(n_styles) != declared:
            raise CheckpointError(f"{path}: n_styles={n_styles} was asked for, but the file's vidinv record "
                                  f"declares {declared} W+ heads")
        what = "Feature-Style encoder (architecture from the file's vidinv record)"
    else:
        sd = obj
        arch = {"n_styles": OFFICIAL_FS_ARCHITECTURE["n_styles"] if n_styles is None else int(n_styles),
                "stride": int(stride)}
        what = "Feature-Style encoder (official fs_encoder_v2 / 143_enc.pth layout)"
    model = load_strict(fs_encoder_from_architecture(arch, path), sd, path, what)
    return model.to(device).eval() if device is not None else model.eval()
