"""pSp: the GradualStyleEncoder (IR-SE50 feature pyramid → W+) and the full pSp encode-decode network.

Source: Richardson et al., "Encoding in Style: a StyleGAN Encoder for Image-to-Image Translation"
(CVPR 2021), section 3 and figure 2; reference code eladrich/pixel2style2pixel
(``models/encoders/psp_encoders.py`` ``GradualStyleEncoder``, ``models/psp.py`` ``pSp``). Official
checkpoint: ``psp_ffhq_encode.pt`` (layout in :func:`read_psp_checkpoint`).

Encoder (input (B, 3, 256, 256) in [-1, 1] RGB):

* ``input_layer`` stem and ``body`` = 24 IR-SE units (:mod:`vidinv.models.irse`). Feature taps after
  unit 6 (``c1``, 128 x 64 x 64), unit 20 (``c2``, 256 x 32 x 32) and unit 23 (``c3``, 512 x 16 x 16).
* Feature pyramid: ``p2 = up(c3) + latlayer1(c2)``, ``p1 = up(p2) + latlayer2(c1)`` with bilinear
  upsampling (``align_corners=True``) and 1x1 lateral convs.
* Map2style heads ``styles.<i>`` (:class:`GradualStyleBlock`): styles 0-2 ("coarse") read ``c3``,
  3-6 ("middle") read ``p2``, 7.. ("fine") read ``p1``.

pSp forward: ``W+ = encoder(x) + latent_avg`` (when trained with ``start_from_latent_avg``), image =
StyleGAN2 synthesis of that W+ with the constant noise buffers, then ``AdaptiveAvgPool2d((256, 256))``
(a 4x4 mean for a 1024 generator).
"""
from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vidinv.io.checkpoints import (
    VIDINV_RECORD_KEY,
    CheckpointError,
    load_strict,
    read_checkpoint,
    read_vidinv_record,
    select_prefix,
)
from vidinv.models.irse import make_input_layer, make_irse_body
from vidinv.models.stylegan2 import EqualLinear, Generator, generator_from_architecture

__all__ = [
    "GradualStyleBlock",
    "GradualStyleEncoder",
    "PSP",
    "PSPCheckpoint",
    "n_styles_for_size",
    "read_psp_checkpoint",
    "load_psp",
    "load_psp_encoder",
    "official_psp_architecture",
    "psp_encoder_from_architecture",
    "SUPPORTED_ENCODER_TYPES",
    "PSP_INPUT_SIZE",
    "PSP_TASK_OUTPUT_SIZE",
    "PspTaskOptions",
    "psp_task_options",
    "load_psp_task",
]

SUPPORTED_ENCODER_TYPES = ("GradualStyleEncoder",)
#: Side (pixels) of the aligned face pSp's encoder reads, and of the pooled output of :meth:`PSP.decode`.
PSP_INPUT_SIZE = 256


def n_styles_for_size(size: int) -> int:
    """Number of W+ styles of a StyleGAN2 generator of output ``size`` (pSp ``2*log2(size) - 2``; 1024 → 18).

    Raises:
        ValueError: ``size`` is not a power of two >= 4.
    """
    log = int(round(math.log2(size))) if size > 0 else 0
    if size < 4 or 2 ** log != size:
        raise ValueError(f"generator output size must be a power of two >= 4, not {size}")
    return 2 * log - 2


class GradualStyleBlock(nn.Module):
    """pSp map2style head: feature map (B, C, s, s) → one style vector (B, C).

    ``convs`` = log2(s) x [Conv2d(3x3, stride 2, pad 1, bias) + LeakyReLU(0.01)] (keys ``convs.0``,
    ``convs.2``, ...), bringing s x s down to 1 x 1, then ``linear`` = ``EqualLinear(C, C, lr_mul=1)``.

    Args:
        in_c: input channels.
        out_c: style width (512).
        spatial: input resolution s (16, 32 or 64 in pSp).
        hidden: channels of the convs (None: ``out_c``, as the reference); ``linear`` is then
            ``EqualLinear(hidden, out_c)``. Smaller values give small test/experiment heads.
    """

    def __init__(self, in_c: int, out_c: int, spatial: int, hidden: int | None = None):
        super().__init__()
        self.out_c = out_c
        self.hidden = out_c if hidden is None else int(hidden)
        num_pools = int(round(math.log2(spatial)))
        layers: list[nn.Module] = []
        for i in range(num_pools):
            layers += [nn.Conv2d(in_c if i == 0 else self.hidden, self.hidden, kernel_size=3, stride=2, padding=1),
                       nn.LeakyReLU(0.01)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(self.hidden, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, in_c, spatial, spatial) → (B, out_c)."""
        x = self.convs(x)
        return self.linear(x.reshape(x.shape[0], self.hidden))


class GradualStyleEncoder(nn.Module):
    """pSp encoder: aligned face → W+ offsets (codes), one 512-d style per generator layer.

    ``state_dict()`` equals the ``encoder.`` part of ``psp_ffhq_encode.pt`` with the prefix removed
    (621 entries for 50 layers, IR-SE, 18 styles): ``input_layer.*``, ``body.<0..23>.*``,
    ``styles.<0..n_styles-1>.{convs,linear}.*``, ``latlayer1.*``, ``latlayer2.*``.

    Other sizes (small encoders for tests and experiments) keep the structure: stem of ``widths[0]``
    channels, IR(-SE) stages of ``widths`` x ``blocks`` units (first unit of each stride 2), taps c1/c2/c3
    at the ends of stages 2/3/4, laterals ``latlayer1`` (widths[2] → widths[3]) and ``latlayer2``
    (widths[1] → widths[3]), heads ``GradualStyleBlock(widths[3], style_dim, 16|32|64, head_width)``.

    Args:
        num_layers: IR-SE depth; only 50 (every official pSp file) is defined (used when ``blocks`` is None).
        mode: ``"ir_se"`` (official) or ``"ir"`` (no SE gates).
        n_styles: number of styles, ``2*log2(output_size) - 2`` (18 for 1024, 14 for 256).
        input_nc: input channels (3 for RGB faces).
        widths: channels of the 4 body stages (official ``(64, 128, 256, 512)``).
        blocks: units per stage, or None for the ``num_layers`` preset (50 → ``(3, 4, 14, 3)``).
        style_dim: width of each style (W+ row), 512 for StyleGAN2 FFHQ.
        head_width: channels of the map2style convs (None: ``style_dim``, the official heads).

    Raises:
        ValueError: ``num_layers`` other than 50 without ``blocks``, unknown ``mode``, ``n_styles < 1``,
            bad widths/blocks (SE gates need widths >= 16).
    """

    coarse_ind = 3
    middle_ind = 7

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18, input_nc: int = 3, *,
                 widths=(64, 128, 256, 512), blocks=None, style_dim: int = 512, head_width: int | None = None):
        super().__init__()
        if n_styles < 1:
            raise ValueError(f"n_styles must be positive, not {n_styles}")
        self.n_styles = n_styles
        self.input_nc = input_nc
        if blocks is None and num_layers != 50:
            # The reference taps units 6, 20 and 23, which are the stage ends only for 50 layers.
            raise ValueError(f"GradualStyleEncoder is defined for a 50-layer IR-SE body, not {num_layers}")
        widths = tuple(int(w) for w in widths)
        self.input_layer = make_input_layer(input_nc, widths[0])
        self.body = make_irse_body(num_layers, mode, widths=widths, blocks=blocks)
        self.widths = widths
        self.blocks = tuple(int(n) for n in blocks) if blocks is not None else (3, 4, 14, 3)
        self.style_dim = int(style_dim)
        self.mode = mode
        self.head_width = None if head_width is None else int(head_width)
        ends = [sum(self.blocks[:i + 1]) - 1 for i in range(4)]
        # c1: end of stage 2 (B, w1, 64, 64); c2: end of stage 3 (B, w2, 32, 32); c3: last unit (IR-SE50: 6, 20, 23)
        self.tap_c1, self.tap_c2 = ends[1], ends[2]
        self.styles = nn.ModuleList()
        for i in range(n_styles):
            spatial = 16 if i < self.coarse_ind else 32 if i < self.middle_ind else 64
            self.styles.append(GradualStyleBlock(widths[3], self.style_dim, spatial, head_width))
        self.latlayer1 = nn.Conv2d(widths[2], widths[3], kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(widths[1], widths[3], kernel_size=1, stride=1, padding=0)

    def architecture(self) -> dict[str, Any]:
        """Constructor arguments of this encoder (``mode``, ``n_styles``, ``input_nc``, ``widths``, ``blocks``,
        ``style_dim``, ``head_width``; plain values), as vidinv records them in the checkpoints it writes;
        :func:`psp_encoder_from_architecture` builds the same network back."""
        return {"mode": self.mode, "n_styles": int(self.n_styles), "input_nc": int(self.input_nc),
                "widths": list(self.widths), "blocks": list(self.blocks), "style_dim": self.style_dim,
                "head_width": self.head_width}

    @staticmethod
    def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode aligned faces.

        Args:
            x: (B, input_nc, 256, 256) float, RGB in [-1, 1] (pSp transforms: Resize(256), ToTensor,
                Normalize(0.5, 0.5)), any device; the module must be on the same device/dtype.

        Returns:
            codes (B, n_styles, style_dim): W+ *before* adding latent_avg (see :class:`PSP`).

        Raises:
            ValueError: wrong input shape (the heads assume 256x256 input).
        """
        if x.ndim != 4 or x.shape[1] != self.input_nc or tuple(x.shape[-2:]) != (PSP_INPUT_SIZE, PSP_INPUT_SIZE):
            raise ValueError(f"GradualStyleEncoder expects (B, {self.input_nc}, 256, 256) input, "
                             f"got shape {tuple(x.shape)}")
        x = self.input_layer(x)
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == self.tap_c1:
                c1 = x
            elif i == self.tap_c2:
                c2 = x
        c3 = x  # output of the last unit (index 23 in IR-SE50)
        latents = [self.styles[j](c3) for j in range(min(self.coarse_ind, self.n_styles))]
        if self.n_styles > self.coarse_ind:
            p2 = self._upsample_add(c3, self.latlayer1(c2))
            latents += [self.styles[j](p2) for j in range(self.coarse_ind, min(self.middle_ind, self.n_styles))]
        if self.n_styles > self.middle_ind:
            p1 = self._upsample_add(p2, self.latlayer2(c1))
            latents += [self.styles[j](p1) for j in range(self.middle_ind, self.n_styles)]
        return torch.stack(latents, dim=1)


class PSP(nn.Module):
    """pSp network: encoder + StyleGAN2 decoder + ``latent_avg``.

    Args:
        encoder: :class:`GradualStyleEncoder` with ``n_styles == decoder.n_latent``.
        decoder: :class:`vidinv.models.stylegan2.Generator`.
        latent_avg: (n_styles, 512) or (512,) mean W of the decoder, or None.
        start_from_latent_avg: add ``latent_avg`` to the codes (pSp ``--start_from_latent_avg``; True for
            ``psp_ffhq_encode.pt``). Requires ``latent_avg``.

    Raises:
        ValueError: inconsistent style counts or a missing/ill-shaped ``latent_avg``.
    """

    latent_avg: torch.Tensor | None

    def __init__(self, encoder: GradualStyleEncoder, decoder: Generator, latent_avg: torch.Tensor | None = None,
                 start_from_latent_avg: bool = True):
        super().__init__()
        n_latent = int(decoder.n_latent)
        if encoder.n_styles != n_latent:
            raise ValueError(f"encoder has {encoder.n_styles} styles but the decoder takes {n_latent}")
        self.encoder = encoder
        self.decoder = decoder
        self.start_from_latent_avg = bool(start_from_latent_avg)
        if latent_avg is not None:
            latent_avg = _latent_avg_to_wplus(latent_avg, n_latent, "latent_avg")
        elif self.start_from_latent_avg:
            raise ValueError("start_from_latent_avg=True needs a latent_avg")
        self.register_buffer("latent_avg", latent_avg, persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder input (B, input_nc, 256, 256) → W+ (B, n_styles, 512) fed to the decoder.

        The input is what the checkpoint's task was trained on: aligned RGB faces in [-1, 1] for
        ``input_nc=3``; a one-hot label map in {0, 1} for segmentation-to-face (``input_nc=label_nc=19``);
        a sketch in [0, 1] for sketch-to-face (``input_nc=1``) (pSp ``configs/transforms_config.py``).

        ``W+ = encoder(x) + latent_avg`` when ``start_from_latent_avg``, else ``encoder(x)``.
        """
        codes = self.encoder(x)
        if self.start_from_latent_avg:
            assert self.latent_avg is not None  # __init__ refuses start_from_latent_avg without one
            codes = codes + self.latent_avg.unsqueeze(0).to(codes.dtype)
        return codes

    def decode(self, wplus: torch.Tensor, resize: bool = True, noise: Any = "const") -> torch.Tensor:
        """W+ (B, n_styles, 512) → image (B, 3, S, S), S = 256 when ``resize`` else the generator size.

        ``resize`` applies pSp's ``face_pool = AdaptiveAvgPool2d((256, 256))`` (a 4x4 mean for 1024).
        ``noise`` is passed to ``Generator.synthesis`` (``"const"``: the loaded noise buffers, pSp's
        ``randomize_noise=False``). Images are in the generator's range (about [-1, 1] for trained weights).
        """
        img = self.decoder.synthesis(wplus, noise=noise)
        if resize:
            img = F.adaptive_avg_pool2d(img, (PSP_INPUT_SIZE, PSP_INPUT_SIZE))
        return img

    def forward(self, x: torch.Tensor, resize: bool = True, noise: Any = "const",
                return_latents: bool = False):
        """pSp inversion/reconstruction (reference ``pSp.forward(x, resize, randomize_noise=False, return_latents)``).

        Args:
            x: (B, input_nc, 256, 256) float (RGB in [-1, 1] for the encode task; see :meth:`encode`).
            resize: pool the output to 256x256.
            noise: ``"const"`` (default) or any value ``Generator.synthesis`` accepts.
            return_latents: also return the W+ fed to the decoder.

        Returns:
            image (B, 3, 256, 256) (or generator size), and W+ (B, n_styles, 512) when ``return_latents``.
        """
        wplus = self.encode(x)
        img = self.decode(wplus, resize=resize, noise=noise)
        return (img, wplus) if return_latents else img


def _latent_avg_to_wplus(latent_avg: torch.Tensor, n_styles: int, source: str) -> torch.Tensor:
    t = latent_avg.detach()
    if t.ndim == 1 or (t.ndim == 2 and t.shape[0] == 1):
        t = t.reshape(1, -1).repeat(n_styles, 1)
    if t.ndim != 2 or t.shape[0] != n_styles:
        raise ValueError(f"{source}: latent_avg has shape {list(latent_avg.shape)}; expected ({n_styles}, 512) "
                         "or (512,)")
    return t.float().clone()


@dataclass
class PSPCheckpoint:
    """The parts of a pSp checkpoint file, split and checked (no model built yet).

    Attributes:
        path: the file.
        encoder_state: ``encoder.`` entries with the prefix removed.
        decoder_state: ``decoder.`` entries with the prefix removed (StyleGAN2 generator keys).
        latent_avg: (n_styles, 512) float32 mean W repeated over the styles, or None.
        opts: the training options dict (empty when the file has none).
        output_size: generator resolution (``opts['output_size']``, default 1024).
        n_styles: ``2*log2(output_size) - 2``.
        input_nc: encoder input channels (``opts['input_nc']``, default 3).
        start_from_latent_avg: add latent_avg to the codes.
        encoder_arch: :class:`GradualStyleEncoder` constructor arguments (see
            :meth:`GradualStyleEncoder.architecture`): the official IR-SE50 encoder pSp builds from ``opts``
            for an official file, the record's ``architecture["encoder"]`` for a file vidinv wrote.
        decoder_arch: :class:`vidinv.models.stylegan2.Generator` constructor arguments: pSp's
            ``Generator(output_size, 512, 8, channel_multiplier=2)`` for an official file, the record's
            ``architecture["decoder"]`` for a file vidinv wrote.
        record: the vidinv record (``opts['vidinv_config']``, see :func:`vidinv.io.checkpoints.vidinv_record`),
            or None for an official file.
    """

    path: str
    encoder_state: dict[str, torch.Tensor]
    decoder_state: dict[str, torch.Tensor]
    latent_avg: torch.Tensor | None
    opts: dict = field(default_factory=dict)
    output_size: int = 1024
    n_styles: int = 18
    input_nc: int = 3
    start_from_latent_avg: bool = True
    encoder_arch: dict = field(default_factory=dict)
    decoder_arch: dict = field(default_factory=dict)
    record: dict | None = None

    @property
    def official(self) -> bool:
        """True when the file has no vidinv record, so it is held to the official architecture."""
        return self.record is None


def official_psp_architecture(output_size: int = 1024, input_nc: int = 3) -> dict[str, dict[str, Any]]:
    """``{"encoder": ..., "decoder": ...}``: the networks pSp's ``pSp(opts)`` builds for an official file.

    Encoder: ``GradualStyleEncoder(50, 'ir_se', opts)`` (IR-SE50, 512-wide styles, ``n_styles`` from
    ``output_size``); decoder: ``Generator(output_size, 512, 8)`` with rosinality's defaults
    (``channel_multiplier=2``, 512 channels at most).
    """
    return {"encoder": {"mode": "ir_se", "n_styles": n_styles_for_size(output_size), "input_nc": int(input_nc),
                        "widths": [64, 128, 256, 512], "blocks": [3, 4, 14, 3], "style_dim": 512,
                        "head_width": None},
            "decoder": {"size": int(output_size), "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2,
                        "max_channels": 512}}


_ENCODER_ARCH_KEYS = ("mode", "n_styles", "input_nc", "widths", "blocks", "style_dim", "head_width")


def psp_encoder_from_architecture(arch: Mapping[str, Any], source: str | os.PathLike = "architecture", *,
                                  device: str | torch.device | None = None) -> GradualStyleEncoder:
    """Build a :class:`GradualStyleEncoder` from constructor arguments (keys of
    :meth:`GradualStyleEncoder.architecture`; absent keys take the official values).

    ``device="meta"`` builds it without storage (to be filled by a strict load after ``to_empty``).

    Raises:
        CheckpointError: unknown keys or values the class refuses (names ``source``).
    """
    unknown = sorted(set(arch) - set(_ENCODER_ARCH_KEYS))
    if unknown:
        raise CheckpointError(f"{source}: unknown pSp encoder architecture key(s) {unknown}")
    a = {**official_psp_architecture()["encoder"], **dict(arch)}
    try:
        with torch.device(device) if device is not None else contextlib.nullcontext():
            return GradualStyleEncoder(50, str(a["mode"]), n_styles=int(a["n_styles"]), input_nc=int(a["input_nc"]),
                                       widths=tuple(int(w) for w in a["widths"]),
                                       blocks=tuple(int(b) for b in a["blocks"]), style_dim=int(a["style_dim"]),
                                       head_width=None if a["head_width"] is None else int(a["head_width"]))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the recorded pSp encoder architecture cannot be built: {exc}") from exc


def read_psp_checkpoint(path: str | os.PathLike) -> PSPCheckpoint:
    """Read and check a pSp checkpoint (e.g. ``psp_ffhq_encode.pt``).

    Layout (pSp ``models/psp.py``): ``ckpt['state_dict']`` (flat dict of ``encoder.<key>`` and
    ``decoder.<key>``; a file that is itself that flat dict is accepted, as pSp's ``get_keys`` does),
    ``ckpt['latent_avg']`` ((n_styles, 512), or (512,) which is repeated), ``ckpt['opts']`` (dict of
    training options; read: ``output_size`` (default 1024), ``encoder_type`` (default
    GradualStyleEncoder), ``input_nc`` (3), ``learn_in_w`` (False), ``start_from_latent_avg`` (default:
    whether the file has a latent_avg, since pSp saves it only then), and ``vidinv_config``).

    Architecture: an official file (no vidinv record in ``opts['vidinv_config']``) is held to the networks
    pSp builds from its ``opts`` (:func:`official_psp_architecture`); nothing is sized from the tensors,
    so a file missing keys (e.g. the last IR-SE unit ``body.23.*``) fails the strict load. A file vidinv's
    training wrote declares its encoder and decoder in the record (``architecture["encoder"]`` /
    ``["decoder"]``), which must agree with ``opts['output_size']``.

    Raises:
        CheckpointError: unreadable file; no ``encoder.`` keys; an unsupported encoder type
            (``BackboneEncoderUsingLastLayerIntoW``/``...IntoWPlus``) or ``learn_in_w``; a bad
            ``output_size``; ``start_from_latent_avg`` without a usable ``latent_avg``; a bad vidinv
            record, or one that contradicts ``opts``.
    """
    return _psp_checkpoint_from(read_checkpoint(path), path)


def _opts_dict(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    opts = ckpt.get("opts") or {}
    if not isinstance(opts, Mapping):
        opts = dict(vars(opts)) if hasattr(opts, "__dict__") else {}
    return dict(opts)


def _psp_checkpoint_from(ckpt: Any, path: str | os.PathLike) -> PSPCheckpoint:
    """:func:`read_psp_checkpoint` on the already-read content ``ckpt`` of ``path``."""
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: expected a pSp checkpoint dict, got a {type(ckpt).__name__}")
    sd = ckpt["state_dict"] if isinstance(ckpt.get("state_dict"), Mapping) else ckpt
    opts = _opts_dict(ckpt)

    encoder_type = opts.get("encoder_type", "GradualStyleEncoder")
    if encoder_type not in SUPPORTED_ENCODER_TYPES:
        raise CheckpointError(f"{path}: pSp encoder_type {encoder_type!r} is not supported; vidinv implements "
                              f"only {', '.join(SUPPORTED_ENCODER_TYPES)} (e.g. psp_ffhq_encode.pt)")
    if opts.get("learn_in_w", False):
        raise CheckpointError(f"{path}: this pSp checkpoint was trained with learn_in_w=True (a single W code); "
                              "only W+ GradualStyleEncoder checkpoints are supported")
    try:
        output_size = int(opts.get("output_size", 1024))
        n_styles = n_styles_for_size(output_size)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad opts['output_size'] {opts.get('output_size')!r}: {exc}") from exc
    input_nc = int(opts.get("input_nc", 3))

    encoder_state = select_prefix(sd, "encoder")
    decoder_state = select_prefix(sd, "decoder")
    if not encoder_state:
        raise CheckpointError(f"{path}: no 'encoder.' entries; not a pSp checkpoint "
                              f"(top-level keys: {sorted(ckpt)[:8]})")

    record = read_vidinv_record(opts.get(VIDINV_RECORD_KEY), path, "psp")
    arch = official_psp_architecture(output_size, input_nc)
    if record is not None:
        rec_arch = record["architecture"]
        if not isinstance(rec_arch.get("encoder"), Mapping) or not isinstance(rec_arch.get("decoder"), Mapping):
            raise CheckpointError(f"{path}: the vidinv record's architecture needs 'encoder' and 'decoder' mappings")
        arch = {"encoder": dict(rec_arch["encoder"]), "decoder": dict(rec_arch["decoder"])}
        enc_styles = int(arch["encoder"].get("n_styles", n_styles))
        dec_size = int(arch["decoder"].get("size", output_size))
        if enc_styles != n_styles or dec_size != output_size:
            raise CheckpointError(f"{path}: the vidinv record declares an encoder of {enc_styles} styles and a "
                                  f"decoder of size {dec_size}, but opts['output_size'] is {output_size} "
                                  f"({n_styles} styles)")

    raw_avg = ckpt.get("latent_avg")
    start = bool(opts.get("start_from_latent_avg", raw_avg is not None))
    latent_avg = None
    if raw_avg is not None:
        if not isinstance(raw_avg, torch.Tensor):
            raise CheckpointError(f"{path}: latent_avg is a {type(raw_avg).__name__}, not a tensor")
        try:
            latent_avg = _latent_avg_to_wplus(raw_avg, n_styles, str(path))
        except ValueError as exc:
            raise CheckpointError(str(exc)) from exc
    elif start:
        raise CheckpointError(f"{path}: opts say start_from_latent_avg=True but the file has no latent_avg")
    return PSPCheckpoint(str(path), encoder_state, decoder_state, latent_avg, opts, output_size, n_styles,
                         input_nc, start, arch["encoder"], arch["decoder"], record)


def _what(ck: PSPCheckpoint, part: str) -> str:
    return f"{part} ({'official pSp architecture' if ck.official else 'architecture from the vidinv record'})"


def _encoder_for_loading(ck: PSPCheckpoint) -> GradualStyleEncoder:
    """The checkpoint's encoder with uninitialised CPU storage, to be filled by a strict load (skips ~1 GB of
    random init). Safe because every parameter and buffer of :class:`GradualStyleEncoder` is in its
    state_dict, so :func:`load_strict` overwrites all of them."""
    return psp_encoder_from_architecture(ck.encoder_arch, ck.path, device="meta").to_empty(device="cpu")


def load_psp_encoder(path: str | os.PathLike) -> tuple[GradualStyleEncoder, torch.Tensor | None]:
    """Load only the encoder of a pSp checkpoint, strictly, in eval mode on CPU.

    Returns:
        ``(encoder, latent_avg)``: :class:`GradualStyleEncoder` and the (n_styles, 512) latent_avg to add
        to its codes, or None when the checkpoint was not trained with ``start_from_latent_avg``.

    Raises:
        CheckpointError / CheckpointMismatchError: see :func:`read_psp_checkpoint`; strict-load errors
            name the file and the first missing/unexpected keys.
    """
    ck = read_psp_checkpoint(path)
    enc = _encoder_for_loading(ck)
    load_strict(enc, ck.encoder_state, ck.path, _what(ck, "pSp GradualStyleEncoder"))
    return enc.eval(), (ck.latent_avg if ck.start_from_latent_avg else None)


def load_psp(path: str | os.PathLike) -> PSP:
    """Load a full pSp network (encoder + StyleGAN2 decoder + latent_avg), strictly, in eval mode on CPU.

    An official file gets the networks pSp builds from its ``opts`` (IR-SE50 encoder, decoder
    ``Generator(output_size, 512, 8, channel_multiplier=2)``); a file vidinv's training wrote gets the
    networks its record declares (see :func:`read_psp_checkpoint`). Either way every key and shape must match.

    Raises:
        CheckpointError / CheckpointMismatchError: see :func:`read_psp_checkpoint`; each half is loaded
            with :func:`vidinv.io.checkpoints.load_strict` (errors name the file and keys).
    """

    return _build_psp(read_psp_checkpoint(path))


def _build_psp(ck: PSPCheckpoint) -> PSP:
    """The :class:`PSP` of a checked checkpoint, both halves loaded strictly, eval mode, CPU."""
    enc = _encoder_for_loading(ck)
    load_strict(enc, ck.encoder_state, ck.path, _what(ck, "pSp GradualStyleEncoder"))
    dec = generator_from_architecture(ck.decoder_arch, ck.path)
    load_strict(dec, ck.decoder_state, ck.path, _what(ck, "pSp decoder (StyleGAN2 generator)"))
    net = PSP(enc, dec, ck.latent_avg, start_from_latent_avg=ck.start_from_latent_avg)
    return net.eval()


# ---------------------------------------------------------------------------------------------------- tasks

#: Generator size of every pSp task model: pSp's ``pSp.__init__`` builds ``Generator(1024, 512, 8)``.
PSP_TASK_OUTPUT_SIZE = 1024


@dataclass(frozen=True)
class PspTaskOptions:
    """The architecture options of a pSp task checkpoint, read from its ``opts`` (the official record).

    Attributes:
        input_nc: encoder input channels (3 for RGB faces: encode, super-resolution, frontalization,
            toonify; 19 for CelebAMask-HQ segmentation maps; 1 for sketches).
        label_nc: number of label classes of a label-map input (pSp ``--label_nc``; 0 for RGB input).
            A label map of ``label_nc`` classes is fed one-hot (pSp ``augmentations.ToOneHot``), so
            ``input_nc == label_nc`` whenever ``label_nc > 0``.
        output_size: generator resolution (1024 for every pSp task model).
        start_from_latent_avg: codes are offsets from ``latent_avg``.
        learn_in_w: one W code instead of W+ (refused: vidinv supports W+ only).
        encoder_type: pSp encoder class (only ``GradualStyleEncoder`` is supported).
        resize_factors: super-resolution down-sampling factors the model was trained with
            (pSp ``--resize_factors``, a comma-separated string in ``opts``), or None.
        dataset_type: pSp's ``--dataset_type`` (e.g. ``"celebs_super_resolution"``), or None.
    """

    input_nc: int = 3
    label_nc: int = 0
    output_size: int = PSP_TASK_OUTPUT_SIZE
    start_from_latent_avg: bool = True
    learn_in_w: bool = False
    encoder_type: str = "GradualStyleEncoder"
    resize_factors: tuple[int, ...] | None = None
    dataset_type: str | None = None


def _as_int(opts: Mapping[str, Any], key: str, default: int, problems: list[str]) -> int:
    v = opts.get(key, default)
    if isinstance(v, int) and not isinstance(v, bool):
        return int(v)
    problems.append(f"{key}={v!r} (not an integer)")
    return default


def psp_task_options(opts: Mapping[str, Any], has_latent_avg: bool = True,
                     source: str | os.PathLike = "opts") -> PspTaskOptions:
    """Read and check the architecture options of a pSp task checkpoint's ``opts``.

    Absent keys take pSp's defaults (``options/train_options.py``: ``encoder_type`` GradualStyleEncoder,
    ``input_nc`` 3, ``label_nc`` 0, ``resize_factors`` None; ``scripts/inference.py``: ``learn_in_w`` False,
    ``output_size`` 1024); ``start_from_latent_avg`` defaults to whether the file has a ``latent_avg``
    (pSp saves one only then).

    Raises:
        CheckpointError: one line naming every option (and its value) vidinv does not support:
            ``encoder_type`` other than GradualStyleEncoder, ``learn_in_w=True``, ``output_size`` other
            than 1024, ``input_nc < 1``, ``label_nc < 0``, ``label_nc > 0`` with ``input_nc != label_nc``,
            ``resize_factors`` that are not positive integers.
    """
    problems: list[str] = []
    encoder_type = opts.get("encoder_type", "GradualStyleEncoder")
    if encoder_type not in SUPPORTED_ENCODER_TYPES:
        problems.append(f"encoder_type={encoder_type!r} (only {', '.join(SUPPORTED_ENCODER_TYPES)})")
    learn_in_w = opts.get("learn_in_w", False)
    if learn_in_w:
        problems.append(f"learn_in_w={learn_in_w!r} (only W+ encoders, learn_in_w=False)")
    output_size = _as_int(opts, "output_size", PSP_TASK_OUTPUT_SIZE, problems)
    if output_size != PSP_TASK_OUTPUT_SIZE:
        problems.append(f"output_size={output_size} (pSp task models use a {PSP_TASK_OUTPUT_SIZE} generator)")
    input_nc = _as_int(opts, "input_nc", 3, problems)
    if input_nc < 1:
        problems.append(f"input_nc={input_nc} (must be >= 1)")
    label_nc = _as_int(opts, "label_nc", 0, problems)
    if label_nc < 0:
        problems.append(f"label_nc={label_nc} (must be >= 0)")
    elif label_nc > 0 and input_nc != label_nc:
        problems.append(f"label_nc={label_nc} with input_nc={input_nc} (a one-hot label map has "
                        "input_nc == label_nc channels)")
    raw_factors = opts.get("resize_factors")
    factors: tuple[int, ...] | None = None
    if raw_factors is not None:
        try:
            items = raw_factors.split(",") if isinstance(raw_factors, str) else list(raw_factors)
            factors = tuple(int(str(f).strip()) for f in items)
            if not factors or min(factors) < 1:
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"resize_factors={raw_factors!r} (expected positive integers such as '1,2,4,8,16,32')")
            factors = None
    if problems:
        raise CheckpointError(f"{source}: unsupported pSp task option(s): {'; '.join(problems)}")
    dataset_type = opts.get("dataset_type")
    return PspTaskOptions(input_nc=input_nc, label_nc=label_nc, output_size=output_size,
                          start_from_latent_avg=bool(opts.get("start_from_latent_avg", has_latent_avg)),
                          learn_in_w=False, encoder_type=str(encoder_type), resize_factors=factors,
                          dataset_type=None if dataset_type is None else str(dataset_type))


def load_psp_task(path: str | os.PathLike) -> tuple[PSP, PspTaskOptions]:
    """Load a pSp task checkpoint (super-resolution, frontalization, toonify, segmentation- or
    sketch-to-face) strictly, in eval mode on CPU, with the options its ``opts`` records.

    The file has pSp's layout (:func:`read_psp_checkpoint`) and must carry ``opts``: it is the official
    record of the architecture. The network is what pSp's ``pSp(opts)`` builds from it:
    ``GradualStyleEncoder(50, 'ir_se', opts)`` whose input layer reads ``opts['input_nc']`` channels and
    ``Generator(1024, 512, 8)``; every key and shape must match (a file vidinv wrote is held to its
    record instead, whose encoder ``input_nc`` must agree with ``opts``).

    Returns:
        ``(net, options)``: the :class:`PSP` network (``net.encoder.input_nc == options.input_nc``) and
        the :class:`PspTaskOptions`.

    Raises:
        CheckpointError: unreadable file, no ``opts``, unsupported options (:func:`psp_task_options`,
            one line naming each option and value), a record contradicting ``opts``.
        CheckpointMismatchError: missing/unexpected keys or wrong shapes (names the file and the keys).
    """
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: expected a pSp checkpoint dict, got a {type(ckpt).__name__}")
    opts = _opts_dict(ckpt)
    if not opts:
        raise CheckpointError(f"{path}: no 'opts' in the file; a pSp task checkpoint records its architecture "
                              "options there (input_nc, label_nc, output_size, ...)")
    options = psp_task_options(opts, ckpt.get("latent_avg") is not None, path)
    ck = _psp_checkpoint_from(ckpt, path)
    del ckpt
    rec_nc = int(ck.encoder_arch.get("input_nc", 3))
    if rec_nc != options.input_nc:
        raise CheckpointError(f"{path}: the vidinv record declares an encoder of input_nc={rec_nc}, but "
                              f"opts['input_nc'] is {options.input_nc}")
    return _build_psp(ck), options
