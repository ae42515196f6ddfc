"""Building the trained encoders and loading the frozen networks a training run needs.

Weight files (:func:`resolve_weight_files`): every file the enabled losses need is resolved before
anything is built, with :func:`vidinv.weights.resolve` for registry names (one
:class:`vidinv.weights.MissingWeightsError` listing every missing file) and as explicit paths
otherwise. A loss is never dropped silently: its file is required unless the loss is disabled in the
config (``loss.use_id``, ``loss.use_parsing``, ``loss.use_lpips``; ``--no-*-loss`` on the command line).

Encoders (:func:`build_fs_encoder`, :func:`build_psp_encoder`) are instances of the official classes
:class:`vidinv.models.fs_encoder.FeatureStyleEncoder` and :class:`vidinv.models.psp.GradualStyleEncoder`.
With the default (official) architecture their ``state_dict`` has the official layout. Other
widths/depths (small encoders for tests and experiments): both constructors take them, and
:func:`vidinv.models.fs_encoder.load_fs_encoder` / :func:`vidinv.models.psp.load_psp_encoder` build them
from the vidinv record (``vidinv_config``) that :mod:`training.export` writes into the exported file.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from vidinv.models.fs_encoder import FeatureStyleEncoder
from vidinv.models.iresnet import IResNet
from vidinv.models.irse import IRSE50Backbone
from vidinv.models.psp import GradualStyleEncoder
from vidinv.models.stylegan2 import Generator, load_generator
from vidinv.training.config import WeightsConfig

log = logging.getLogger(__name__)

__all__ = [
    "OFFICIAL_WIDTHS",
    "OFFICIAL_BLOCKS",
    "WeightFiles",
    "ExplicitWeightsError",
    "resolve_weight_files",
    "load_training_generator",
    "latent_avg_wplus",
    "build_fs_encoder",
    "build_psp_encoder",
    "is_official_arch",
    "init_fs_encoder_from_arcface",
    "init_psp_encoder_from_irse50",
]

OFFICIAL_WIDTHS = (64, 128, 256, 512)
OFFICIAL_BLOCKS = (3, 4, 14, 3)


class ExplicitWeightsError(FileNotFoundError):
    """Weight files given as explicit paths in the config do not exist (the message lists them)."""


@dataclass
class WeightFiles:
    """Resolved weight files of a run (None: not needed, or optional and absent).

    Attributes:
        generator: StyleGAN2 checkpoint (pSp, rosinality or plain layout).
        arcface: ArcFace IResNet-50 ``backbone.pth``.
        parsing: BiSeNet ``79999_iter.pth``.
        irse50: IR-SE50 ``model_ir_se50.pth``.
        lpips_alexnet: torchvision ``alexnet-owt-7be5be79.pth``.
    """

    generator: Path
    arcface: Path | None = None
    parsing: Path | None = None
    irse50: Path | None = None
    lpips_alexnet: Path | None = None


def _is_explicit(value: str) -> bool:
    return os.sep in value or "/" in value or Path(value).is_file()


def resolve_weight_files(weights: WeightsConfig, required: dict[str, str],
                         optional: dict[str, str] | None = None) -> WeightFiles:
    """Find every weight file the run needs, before building anything.

    Args:
        weights: the config's ``weights`` section (``weights_dir``, ``fetch``).
        required: role (a :class:`WeightFiles` field) -> registry name or path, for the files the
            enabled losses and options need (:meth:`training.task.TrainingTask.weight_roles`).
        optional: the same for files used when present (None in :class:`WeightFiles` when absent).

    Registry names are resolved together with :func:`vidinv.weights.resolve` (``weights.weights_dir``
    first, then the cache; downloaded when ``weights.fetch``); explicit paths must exist.

    Raises:
        ExplicitWeightsError: configured paths that do not exist (all listed).
        vidinv.weights.MissingWeightsError: registry files missing; its message lists every one with
            its download URL and the path to put it at.
    """
    from vidinv.weights import locate, resolve

    found: dict[str, Path] = {}
    bad = []
    registry: dict[str, list[str]] = {}
    for role, value in required.items():
        if _is_explicit(value):
            p = Path(value).expanduser()
            if p.is_file():
                found[role] = p
            else:
                bad.append(f"  weights.{role}: {p} (no such file)")
        else:
            registry.setdefault(value, []).append(role)
    if bad:
        raise ExplicitWeightsError("weight files given as paths in the config do not exist:\n" + "\n".join(bad))
    if registry:
        paths = resolve(list(registry), weights_dir=weights.weights_dir, fetch=weights.fetch)
        for name, roles in registry.items():
            for role in roles:
                found[role] = Path(paths[name])
    for role, value in (optional or {}).items():
        if _is_explicit(value):
            p = Path(value).expanduser()
            if p.is_file():
                found[role] = p
        else:
            loc = locate(value, weights.weights_dir)
            if loc is not None:
                found[role] = Path(loc)
    return WeightFiles(**found)


def latent_avg_wplus(latent_avg: torch.Tensor, n_latent: int) -> torch.Tensor:
    """``latent_avg`` as an (n_latent, style_dim) W+ code ((style_dim,), (1, d), (n_latent, d) accepted).

    Raises:
        ValueError: another shape.
    """
    t = latent_avg.detach().float()
    if t.ndim == 1 or (t.ndim == 2 and t.shape[0] == 1):
        return t.reshape(1, -1).repeat(n_latent, 1)
    if t.ndim == 2 and t.shape[0] == n_latent:
        return t.clone()
    raise ValueError(f"latent_avg has shape {list(t.shape)}; expected ({n_latent}, d) or (d,)")


def load_training_generator(path: str | os.PathLike, latent_avg_samples: int = 100_000, seed: int = 0,
                            device: torch.device | str = "cpu") -> tuple[Generator, torch.Tensor]:
    """The frozen StyleGAN2 generator and its W+ ``latent_avg`` (n_latent, style_dim), on ``device``.

    The file's ``latent_avg`` is used when present (pSp and rosinality files have one); otherwise it is
    the mean of ``mapping(z)`` over ``latent_avg_samples`` z (pSp coach: ``mean_latent(1e5)``), drawn from
    a CPU generator seeded by ``seed``.

    Raises:
        vidinv.io.checkpoints.CheckpointError: unreadable file or no generator in it.
    """
    G, avg = load_generator(path)
    G.requires_grad_(False).eval().to(device)
    if avg is None:
        log.warning("%s has no latent_avg; estimating the average latent from %d random z (mean of mapping(z), "
                    "seed %d)", path, int(latent_avg_samples), int(seed))
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(int(latent_avg_samples), G.style_dim, generator=g)
        with torch.no_grad():
            ws = [G.mapping(chunk.to(device)) for chunk in z.split(4096)]
        avg = torch.cat(ws).mean(0)
    return G, latent_avg_wplus(avg, G.n_latent).to(device)


def is_official_arch(widths, blocks) -> bool:
    """True when the widths and blocks are the official IResNet-50 / IR-SE50 ones."""
    return tuple(widths) == OFFICIAL_WIDTHS and tuple(blocks) == OFFICIAL_BLOCKS


def build_fs_encoder(n_styles: int, style_dim: int, feature_channels: int, widths=OFFICIAL_WIDTHS,
                     blocks=OFFICIAL_BLOCKS, input_size: int = 256, stride: int = 2) -> FeatureStyleEncoder:
    """A :class:`FeatureStyleEncoder` (``fs_encoder_v2``) of the given sizes.

    The official encoder (``143_enc.pth``) is ``widths (64, 128, 256, 512)``, ``blocks (3, 4, 14, 3)``,
    ``input_size 256``, ``stride 2``, ``style_dim 512``, ``feature_channels 512``; it is built by the
    class's constructor. Other sizes keep the official structure: IResNet stem (3 -> widths[0]), four
    IResNet stages, ``content_layer`` (BN(w3) - conv3x3 w3->C - BN - PReLU(C) - conv3x3 C->C stride -
    BN) on stage 3, 3x3-pooled stage outputs concatenated (``sum(widths) * 9`` values) and
    ``n_styles`` linear heads to ``style_dim``.

    Args:
        n_styles: W+ rows (the generator's n_latent).
        style_dim: latent width (the generator's style_dim, 512 for FFHQ).
        feature_channels: channels C of the feature code F (the generator's channels at layer K).
        widths, blocks: stage channels and IBasicBlocks per stage.
        input_size: encoder input side (the instance's ``enc_resolution``).
        stride: stride of the last content conv (F side = input_size / 8 / stride).

    Returns:
        The encoder (train mode, CPU, float32). F has shape (B, C, input_size / (8 * stride), same).
    """
    # four stages (the config checks the lengths); the encoder's constructor checks them again
    w = cast(tuple[int, int, int, int], tuple(int(x) for x in widths))
    d = cast(tuple[int, int, int, int], tuple(int(b) for b in blocks))
    enc = FeatureStyleEncoder(n_styles, stride, widths=w, depths=d, stem_width=w[0],
                              content_channels=int(feature_channels), style_dim=int(style_dim))
    enc.enc_resolution = int(input_size)
    return enc


def build_psp_encoder(n_styles: int, style_dim: int = 512, widths=OFFICIAL_WIDTHS,
                      blocks=OFFICIAL_BLOCKS) -> GradualStyleEncoder:
    """A pSp :class:`GradualStyleEncoder` (IR-SE body, feature pyramid, map2style heads) of the given sizes.

    The official encoder (``psp_ffhq_encode.pt``) is IR-SE50 (``widths (64, 128, 256, 512)``,
    ``blocks (3, 4, 14, 3)``) with 512-wide styles; it is built by the class's constructor. Other sizes
    keep the structure (the class's ``widths``/``blocks``/``style_dim`` arguments): input layer (conv3x3
    3->w0, BN, PReLU), IR-SE units (the first of each stage with stride 2), taps c1/c2/c3 at the ends of
    stages 2/3/4, laterals ``latlayer1`` (w2->w3) and ``latlayer2`` (w1->w3), and map2style heads
    ``GradualStyleBlock(w3, style_dim, 16|32|64)``. The input stays (B, 3, 256, 256). Such encoders,
    exported by :func:`training.export.export_psp`, load with :func:`vidinv.models.psp.load_psp_encoder`
    (sizes from the file's vidinv record).

    Returns:
        The encoder (train mode, CPU, float32) producing (B, n_styles, style_dim) codes.
    """
    if is_official_arch(widths, blocks) and style_dim == 512:
        return GradualStyleEncoder(50, "ir_se", n_styles=n_styles)
    return GradualStyleEncoder(50, "ir_se", n_styles=n_styles, widths=tuple(int(x) for x in widths),
                               blocks=tuple(int(n) for n in blocks), style_dim=int(style_dim))


def init_fs_encoder_from_arcface(enc: FeatureStyleEncoder, arcface: IResNet) -> None:
    """Copy ArcFace's stem and ``layer1..layer4`` into the encoder's ``conv`` and ``block_1..block_4``.

    The reference ``fs_encoder_v2`` builds its backbone from ``iresnet50()`` loaded with ``backbone.pth``.

    Raises:
        RuntimeError: shapes differ (non-official widths/blocks).
    """
    enc.conv[0].load_state_dict(arcface.conv1.state_dict())
    enc.conv[1].load_state_dict(arcface.bn1.state_dict())
    enc.conv[2].load_state_dict(arcface.prelu.state_dict())
    for i, layer in enumerate((arcface.layer1, arcface.layer2, arcface.layer3, arcface.layer4), 1):
        getattr(enc, f"block_{i}").load_state_dict(layer.state_dict())


def init_psp_encoder_from_irse50(enc: GradualStyleEncoder, irse: IRSE50Backbone) -> None:
    """Copy IR-SE50's ``input_layer`` and ``body`` into the pSp encoder (pSp ``load_weights``, strict=False)."""
    enc.input_layer.load_state_dict(irse.input_layer.state_dict())
    enc.body.load_state_dict(irse.body.state_dict())
