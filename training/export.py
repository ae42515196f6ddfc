"""Writing trained encoders in the official checkpoint layouts, so vidinv's loaders read them directly.

* Feature-Style encoder: a plain ``state_dict`` (the layout of ``143_enc.pth``; the reference
  ``test.py`` does ``enc.load_state_dict(torch.load(path))``), read by
  :func:`vidinv.models.fs_encoder.load_fs_encoder`.
* pSp: ``{"state_dict": {"encoder.<key>": ..., "decoder.<key>": ...}, "latent_avg": (n_styles, 512),
  "opts": {...}}`` (``training/coach.py`` ``__get_save_dict``), read by
  :func:`vidinv.models.psp.load_psp`. ``opts`` holds plain values only (``output_size``,
  ``encoder_type``, ``input_nc``, ``label_nc``, ``start_from_latent_avg``, ``learn_in_w``,
  ``dataset_type``, the loss weights, ``resize_factors`` for super-resolution, and vidinv's config
  under ``vidinv_config``), so the file loads with ``torch.load(weights_only=True)``.

Put the exported file in a folder and pass it as ``--weights-dir`` (the file names are the registry
names: ``143_enc.pth``, ``psp_ffhq_encode.pt``, ``psp_celebs_super_resolution.pt``).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from training.state import atomic_torch_save

__all__ = ["FS_EXPORT_NAME", "PSP_EXPORT_NAMES", "export_fs_encoder", "export_psp", "cpu_state_dict"]

FS_EXPORT_NAME = "143_enc.pth"
PSP_EXPORT_NAMES = {"encode": "psp_ffhq_encode.pt", "super_resolution": "psp_celebs_super_resolution.pt"}
_PSP_DATASET = {"encode": "ffhq_encode", "super_resolution": "celebs_super_resolution"}


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every tensor detached, cloned to the CPU and contiguous."""
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


def export_fs_encoder(encoder: nn.Module, path: str | os.PathLike) -> Path:
    """Write a Feature-Style encoder as a plain state_dict (``143_enc.pth`` layout), atomically.

    Args:
        encoder: :class:`vidinv.models.fs_encoder.FeatureStyleEncoder` (unwrapped from DDP).
        path: output file.

    Returns:
        ``path``.
    """
    return atomic_torch_save(cpu_state_dict(encoder), path)


def export_psp(encoder: nn.Module, decoder: nn.Module, latent_avg: torch.Tensor, path: str | os.PathLike, *,
               task: str = "encode", loss: dict | None = None, resize_factors=None,
               config: dict | None = None) -> Path:
    """Write a pSp network in the official checkpoint layout (``psp_ffhq_encode.pt``), atomically.

    Args:
        encoder: :class:`vidinv.models.psp.GradualStyleEncoder`.
        decoder: the StyleGAN2 :class:`vidinv.models.stylegan2.Generator` it was trained with.
        latent_avg: (n_styles, 512) W+ average added to the codes (``start_from_latent_avg``).
        path: output file.
        task: ``"encode"`` or ``"super_resolution"`` (sets ``opts['dataset_type']``).
        loss: loss weights to record (``{"l2": ..., "lpips": ..., "id": ..., "w_norm": ...}``).
        resize_factors: super-resolution factors (recorded as pSp's comma-separated string).
        config: the vidinv training config (nested plain dict), recorded as ``opts['vidinv_config']``.

    Returns:
        ``path``.
    """
    sd = {f"encoder.{k}": v for k, v in cpu_state_dict(encoder).items()}
    sd.update({f"decoder.{k}": v for k, v in cpu_state_dict(decoder).items()})
    loss = loss or {}
    opts = {
        "encoder_type": "GradualStyleEncoder",
        "input_nc": 3,
        "label_nc": 0,
        "output_size": int(decoder.size),
        "start_from_latent_avg": True,
        "learn_in_w": False,
        "dataset_type": _PSP_DATASET.get(task, task),
        "l2_lambda": float(loss.get("l2", 0.0)),
        "lpips_lambda": float(loss.get("lpips", 0.0)),
        "id_lambda": float(loss.get("id", 0.0)),
        "w_norm_lambda": float(loss.get("w_norm", 0.0)),
    }
    if resize_factors:
        opts["resize_factors"] = ",".join(str(int(f)) for f in resize_factors)
    if config is not None:
        opts["vidinv_config"] = config
    ckpt = {"state_dict": sd, "latent_avg": latent_avg.detach().to("cpu").float().clone(), "opts": opts}
    return atomic_torch_save(ckpt, path)
