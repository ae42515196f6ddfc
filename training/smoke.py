"""Tiny CPU-sized training setups: weight files in the official layouts with random weights, and configs.

For checking an installation or a code change without the official weights and without a GPU:
:func:`write_smoke_weights` writes a small StyleGAN2 generator (rosinality layout ``{"g_ema", "latent_avg"}``)
and, on request, randomly initialised networks in the exact official layouts (ArcFace ``backbone.pth``,
BiSeNet ``79999_iter.pth``, IR-SE50 ``model_ir_se50.pth``, torchvision AlexNet); :func:`smoke_config`
builds a config that trains small encoders (the official classes with reduced widths and depths) on
those files. The numbers such a run produces say nothing about real training quality.

Sizes: Feature-Style: generator 128 px, style_dim 64, 32 channels (F at 16x16 for K = 5), encoder
widths (16, 16, 32, 32), one block per stage, 128 px input with content stride 1. pSp: generator
64 px, style_dim 64, 32 channels, IR-SE encoder widths (16, 16, 32, 32), one unit per stage.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vidinv.models.bisenet import BiSeNet
from vidinv.models.iresnet import iresnet50
from vidinv.models.irse import IRSE50Backbone
from vidinv.models.stylegan2 import Generator
from vidinv.training.config import FSTrainConfig, PSPTrainConfig, config_from_dict

__all__ = ["SMOKE_GENERATOR", "write_smoke_generator", "write_smoke_weights", "smoke_config"]

#: Generator arguments of the smoke setups (Generator(size, style_dim, n_mlp, channel_multiplier, max_channels)).
SMOKE_GENERATOR = {
    "fs": dict(size=128, style_dim=64, n_mlp=2, channel_multiplier=1, max_channels=32),
    "psp": dict(size=64, style_dim=64, n_mlp=2, channel_multiplier=1, max_channels=32),
}


def write_smoke_generator(path: str | os.PathLike, seed: int = 0, **arch) -> Path:
    """Write a random StyleGAN2 generator in rosinality's layout ``{"g_ema": state_dict, "latent_avg": (style_dim,)}``.

    Args:
        path: output file.
        seed: torch seed of the random weights.
        arch: :class:`vidinv.models.stylegan2.Generator` arguments (size, style_dim, n_mlp, channel_multiplier,
            max_channels).
    """

    torch.manual_seed(seed)
    G = Generator(**arch)
    avg = G.mean_latent(4096, generator=torch.Generator().manual_seed(seed))[0]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"g_ema": G.state_dict(), "latent_avg": avg}, path)
    return path


def write_smoke_weights(folder: str | os.PathLike, task: str, *, arcface: bool = False, parsing: bool = False,
                        irse50: bool = False, alexnet: bool = False, seed: int = 0) -> dict[str, Path]:
    """Write the files a smoke run of ``task`` uses into ``folder``; returns ``{role: path}``.

    The generator is always written (``generator.pt``). The others (random weights, official layouts and
    file names) only when asked: ``arcface`` → ``backbone.pth`` (ArcFace IResNet-50, ~175 MB),
    ``parsing`` → ``79999_iter.pth`` (BiSeNet, ~53 MB), ``irse50`` → ``model_ir_se50.pth`` (~175 MB),
    ``alexnet`` → ``alexnet-owt-7be5be79.pth`` (torchvision AlexNet, ~244 MB).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {"generator": write_smoke_generator(folder / "generator.pt", seed, **SMOKE_GENERATOR[task])}
    torch.manual_seed(seed + 1)
    if arcface:

        out["arcface"] = folder / "backbone.pth"
        torch.save(iresnet50().state_dict(), out["arcface"])
    if parsing:

        out["parsing"] = folder / "79999_iter.pth"
        torch.save(BiSeNet(19).state_dict(), out["parsing"])
    if irse50:

        out["irse50"] = folder / "model_ir_se50.pth"
        torch.save(IRSE50Backbone().state_dict(), out["irse50"])
    if alexnet:
        from torchvision.models import alexnet as tv_alexnet

        out["lpips_alexnet"] = folder / "alexnet-owt-7be5be79.pth"
        torch.save(tv_alexnet(weights=None).state_dict(), out["lpips_alexnet"])
    return out


def _fs_settings(data: dict, files: dict[str, Path], real_dir: str | os.PathLike | None) -> None:
    """Feature-Style part of :func:`smoke_config` (``data`` updated in place)."""
    data["encoder"].update({"input_size": 128, "stride": 1})
    data["loss"] = {"use_id": "arcface" in files, "use_parsing": "parsing" in files, "parsing_size": 128}
    data["feature_warmup_steps"] = 2
    if not real_dir:
        data["real_per_batch"] = 0


def _psp_settings(data: dict, files: dict[str, Path], real_dir: str | os.PathLike | None) -> None:
    """pSp part of :func:`smoke_config` (``data`` updated in place)."""
    data["loss"] = {"use_id": "irse50" in files}
    data["batch_size"] = 2


#: The task-specific settings of :func:`smoke_config`, by task name (as :data:`SMOKE_GENERATOR`).
_SMOKE_SETTINGS: dict[str, Callable[[dict, dict[str, Path], str | os.PathLike | None], None]] = {
    "fs": _fs_settings, "psp": _psp_settings}


def smoke_config(task: str, files: dict[str, Path], out_dir: str | os.PathLike, real_dir: str | os.PathLike | None,
                 overrides: dict | None = None) -> FSTrainConfig | PSPTrainConfig:
    """A tiny config training on ``files`` (from :func:`write_smoke_weights`).

    Losses whose file is absent from ``files`` are disabled explicitly (``loss.use_*: false``); LPIPS
    uses ``files["lpips_alexnet"]`` when given, else a random trunk (``weights.lpips_random_backbone``).
    ``overrides`` (nested dict) is applied last.
    """
    weights = {"generator": str(files["generator"]), "lpips_random_backbone": "lpips_alexnet" not in files}
    for role in ("arcface", "parsing", "irse50", "lpips_alexnet"):
        if role in files:
            weights[role] = str(files[role])
    data: dict[str, Any] = {
        "run": {"out_dir": str(out_dir), "max_steps": 4, "steps_per_epoch": 2, "log_every": 1, "sample_every": 2,
                "checkpoint_every": 2, "progress": False, "num_threads": 1},
        "data": {"real_dir": str(real_dir) if real_dir else None, "train_split": 1.0, "num_workers": 0},
        "weights": weights,
        "encoder": {"widths": [16, 16, 32, 32], "blocks": [1, 1, 1, 1]},
    }
    settings = _SMOKE_SETTINGS.get(task)
    if settings is not None:  # an unknown task is refused by config_from_dict
        settings(data, files, real_dir)
    cfg_dict = _deep_update(data, overrides or {})
    return config_from_dict(task, cfg_dict)


def _deep_update(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out
