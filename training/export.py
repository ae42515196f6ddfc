"""Writing trained encoders in the official checkpoint layouts, under the user's own names and licence label.

An encoder trained with ``training/`` is the user's: it is exported under a name derived from the run
(:func:`fs_export_name`, :func:`psp_export_name`; by default the run folder's name, e.g.
``runs/faces_v2`` → ``faces_v2_fs_encoder.pth`` / ``faces_v2_psp_encode.pt``), never under an official
registry name such as ``143_enc.pth`` (whose registry entry carries InterDigital's licence), and every
file carries a vidinv record (:func:`vidinv.io.checkpoints.vidinv_record`) with

* ``architecture``: the encoder's (and for pSp the decoder's) constructor arguments, from which
  vidinv's loaders build the network (official files are held to the official architecture instead);
* ``licence``: :data:`vidinv.io.checkpoints.USER_TRAINED_LICENCE` (the weights' terms are the user's; the
  generator, data and initialisation weights they were trained from keep their own terms);
* ``name``, ``trained_from`` (generator file, initialisation file, data) and ``training_config``.

Layouts:

* Feature-Style encoder: ``{"state_dict": <the 143_enc.pth keys>, "vidinv_config": record}``, read by
  :func:`vidinv.models.fs_encoder.load_fs_encoder`.
* pSp: ``{"state_dict": {"encoder.<key>": ..., "decoder.<key>": ...}, "latent_avg": (n_styles, 512),
  "opts": {...}}`` (pSp ``training/coach.py`` ``__get_save_dict``), read by
  :func:`vidinv.models.psp.load_psp`. ``opts`` holds plain values only (``output_size``,
  ``encoder_type``, ``input_nc``, ``label_nc``, ``start_from_latent_avg``, ``learn_in_w``,
  ``dataset_type``, the loss weights, ``resize_factors`` for super-resolution, and the record under
  ``vidinv_config``), so the file loads with ``torch.load(weights_only=True)``.

Use an exported encoder with the library's ``encoder_checkpoint=`` parameter of
:func:`vidinv.pipeline.runtime.load_bundle` (the generator still comes from ``psp_ffhq_encode.pt``).
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vidinv.io.checkpoints import USER_TRAINED_LICENCE, vidinv_record
from vidinv.io.outputs import atomic_save
from vidinv.weights import registry

if TYPE_CHECKING:  # annotations only: exporting needs no model code at import time
    from vidinv.models.fs_encoder import FeatureStyleEncoder
    from vidinv.models.psp import GradualStyleEncoder
    from vidinv.models.stylegan2 import Generator

__all__ = ["fs_export_name", "psp_export_name", "run_name", "export_fs_encoder", "export_psp", "cpu_state_dict",
           "check_export_name", "fs_encoder_checkpoint", "psp_checkpoint"]

_PSP_DATASET = {"encode": "ffhq_encode", "super_resolution": "celebs_super_resolution"}


def run_name(out_dir: str | os.PathLike) -> str:
    """The run's name: the last part of its output folder, reduced to ``[A-Za-z0-9._-]`` (``"run"`` if empty)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(os.path.abspath(out_dir)).name).strip("._")
    return name or "run"


def fs_export_name(name: str) -> str:
    """File name of an exported Feature-Style encoder: ``<name>_fs_encoder.pth``."""
    return f"{name}_fs_encoder.pth"


def psp_export_name(name: str, task: str = "encode") -> str:
    """File name of an exported pSp network: ``<name>_psp_<task>.pt`` (task ``encode`` / ``super_resolution``)."""
    return f"{name}_psp_{task}.pt"


def check_export_name(path: str | os.PathLike) -> None:
    """Refuse to export under the name of an official registry file (e.g. ``143_enc.pth``): the registry
    would list the user's weights with the official file's source and licence.

    Raises:
        ValueError: the file name is a registry name.
    """

    name = Path(path).name
    if name in registry.names():
        raise ValueError(f"{name} is the name of an official file in vidinv's registry; export your trained "
                         f"weights under your own name (e.g. {fs_export_name('myrun')}), then pass the file as the "
                         "encoder checkpoint")


def cpu_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with every tensor detached, cloned to the CPU and contiguous."""
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in module.state_dict().items()}


def fs_encoder_checkpoint(encoder: FeatureStyleEncoder, name: str, *, config: Mapping[str, Any] | None = None,
                          trained_from: Mapping[str, Any] | None = None,
                          licence: str = USER_TRAINED_LICENCE) -> dict[str, Any]:
    """The exported Feature-Style encoder file's content: ``{"state_dict", "vidinv_config"}`` (see the module doc).

    Args:
        encoder: :class:`vidinv.models.fs_encoder.FeatureStyleEncoder` (unwrapped from DDP).
        name: the file name recorded in the record.
        config, trained_from, licence: see :func:`export_fs_encoder`.
    """
    record = vidinv_record("fs_encoder", encoder.architecture(), licence=licence, name=name,
                           trained_from=trained_from, training_config=config)
    return {"state_dict": cpu_state_dict(encoder), "vidinv_config": record}


def export_fs_encoder(encoder: FeatureStyleEncoder, path: str | os.PathLike, *, config: Mapping[str, Any] | None = None,
                      trained_from: Mapping[str, Any] | None = None, licence: str = USER_TRAINED_LICENCE) -> Path:
    """Write a Feature-Style encoder with its vidinv record (:func:`fs_encoder_checkpoint`), atomically.

    Args:
        encoder: :class:`vidinv.models.fs_encoder.FeatureStyleEncoder` (unwrapped from DDP).
        path: output file; its name must not be a registry name (see :func:`check_export_name`).
        config: the vidinv training config (nested plain dict), recorded as ``training_config``.
        trained_from: what the weights were trained from (generator file, data), recorded as is.
        licence: the licence label (default :data:`vidinv.io.checkpoints.USER_TRAINED_LICENCE`).

    Returns:
        ``path``.

    Raises:
        ValueError: ``path`` has a registry name.
    """
    check_export_name(path)
    ckpt = fs_encoder_checkpoint(encoder, Path(path).name, config=config, trained_from=trained_from, licence=licence)
    return atomic_save(ckpt, path)


def psp_checkpoint(encoder: GradualStyleEncoder, decoder: Generator, latent_avg: torch.Tensor, name: str, *,
                   task: str = "encode", loss: dict | None = None, resize_factors=None,
                   config: Mapping[str, Any] | None = None, trained_from: Mapping[str, Any] | None = None,
                   licence: str = USER_TRAINED_LICENCE) -> dict[str, Any]:
    """The exported pSp file's content: ``{"state_dict", "latent_avg", "opts"}`` with the vidinv record in
    ``opts['vidinv_config']`` (arguments as :func:`export_psp`; ``name`` is the file name recorded)."""
    sd = {f"encoder.{k}": v for k, v in cpu_state_dict(encoder).items()}
    sd.update({f"decoder.{k}": v for k, v in cpu_state_dict(decoder).items()})
    loss = loss or {}
    opts = {
        "encoder_type": "GradualStyleEncoder",
        "input_nc": int(encoder.input_nc),
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
    opts["vidinv_config"] = vidinv_record(
        "psp", {"encoder": encoder.architecture(), "decoder": decoder.architecture()}, licence=licence,
        name=name, trained_from=trained_from, training_config=config)
    return {"state_dict": sd, "latent_avg": latent_avg.detach().to("cpu").float().clone(), "opts": opts}


def export_psp(encoder: GradualStyleEncoder, decoder: Generator, latent_avg: torch.Tensor, path: str | os.PathLike, *,
               task: str = "encode", loss: dict | None = None, resize_factors=None,
               config: Mapping[str, Any] | None = None, trained_from: Mapping[str, Any] | None = None,
               licence: str = USER_TRAINED_LICENCE) -> Path:
    """Write a pSp network in pSp's checkpoint layout with its vidinv record (:func:`psp_checkpoint`), atomically.

    Args:
        encoder: :class:`vidinv.models.psp.GradualStyleEncoder`.
        decoder: the StyleGAN2 :class:`vidinv.models.stylegan2.Generator` it was trained with.
        latent_avg: (n_styles, 512) W+ average added to the codes (``start_from_latent_avg``).
        path: output file; its name must not be a registry name (see :func:`check_export_name`).
        task: ``"encode"`` or ``"super_resolution"`` (sets ``opts['dataset_type']``).
        loss: loss weights to record (``{"l2": ..., "lpips": ..., "id": ..., "w_norm": ...}``).
        resize_factors: super-resolution factors (recorded as pSp's comma-separated string).
        config: the vidinv training config (nested plain dict), recorded as the record's ``training_config``.
        trained_from: what the weights were trained from, recorded as is.
        licence: the licence label (default :data:`vidinv.io.checkpoints.USER_TRAINED_LICENCE`).

    Returns:
        ``path``.

    Raises:
        ValueError: ``path`` has a registry name.
    """
    check_export_name(path)
    ckpt = psp_checkpoint(encoder, decoder, latent_avg, Path(path).name, task=task, loss=loss,
                          resize_factors=resize_factors, config=config, trained_from=trained_from, licence=licence)
    return atomic_save(ckpt, path)
