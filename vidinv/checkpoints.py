"""Reading official checkpoint files and loading them strictly into our models.

The official networks vidinv runs are published as PyTorch pickles in a few layouts:

* pSp (Richardson et al. 2021), e.g. ``psp_ffhq_encode.pt``: a dict with ``state_dict`` (one flat
  dict whose keys start with ``encoder.`` and ``decoder.``), ``latent_avg`` (18, 512) and ``opts``.
* rosinality StyleGAN2, e.g. ``stylegan2-ffhq-config-f.pt``: a dict with ``g_ema`` (the generator
  state_dict), usually also ``g``, ``d`` and ``latent_avg``.
* plain state_dicts: ``143_enc.pth`` (Feature-Style encoder), ``backbone.pth`` (ArcFace IResNet-50),
  ``model_ir_se50.pth`` (IR-SE50), ``79999_iter.pth`` (BiSeNet).

This module holds the generic parts: reading a file safely (:func:`read_checkpoint`), taking a
prefixed sub-dict (:func:`select_prefix`) and a strict load whose error names the file, the first
missing/unexpected keys and every shape mismatch (:func:`load_strict`). The per-network loaders
live next to each model in :mod:`vidinv.models`.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "read_checkpoint",
    "select_prefix",
    "compare_state_dicts",
    "load_strict",
]

_MAX_LISTED = 8


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read or does not have the expected layout."""


class CheckpointMismatchError(CheckpointError):
    """A state_dict's keys or shapes do not match the model it is loaded into.

    Attributes:
        source: the file (or description) the state_dict came from.
        missing: keys the model has and the file lacks.
        unexpected: keys the file has and the model lacks.
        shape_mismatches: ``(key, file_shape, model_shape)`` triples.
    """

    def __init__(self, source: str, what: str, missing: list[str], unexpected: list[str],
                 shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]]):
        self.source = source
        self.missing = missing
        self.unexpected = unexpected
        self.shape_mismatches = shape_mismatches
        lines = [f"{source}: not a valid {what} checkpoint (strict load failed)."]
        if missing:
            lines.append(f"  {len(missing)} missing key(s), first: " + ", ".join(missing[:_MAX_LISTED]))
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected key(s), first: " + ", ".join(unexpected[:_MAX_LISTED]))
        for key, got, want in shape_mismatches[:_MAX_LISTED]:
            lines.append(f"  shape mismatch for {key}: file has {list(got)}, model expects {list(want)}")
        if len(shape_mismatches) > _MAX_LISTED:
            lines.append(f"  ... and {len(shape_mismatches) - _MAX_LISTED} more shape mismatch(es)")
        lines.append("  The file may be truncated, renamed from another model, or built with another configuration "
                     "(resolution, channel multiplier, number of styles). Re-download it with `vidinv weights fetch`.")
        super().__init__("\n".join(lines))


def read_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False) -> Any:
    """Read a ``.pt``/``.pth`` file onto the CPU.

    Uses ``torch.load(weights_only=True)``: these files come from the internet and a full unpickle
    can run arbitrary code. All official vidinv files load this way (pSp's ``opts`` is a plain dict).

    Args:
        path: file to read.
        allow_pickle: fall back to a full unpickle (``weights_only=False``) only when True. Use it
            only for files you trust.

    Returns:
        Whatever the file holds (a state_dict or a dict of them).

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a PyTorch file, or needs a full
            unpickle and ``allow_pickle`` is False (the message says how to allow it).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (an interrupted download?)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_pickle:
            raise CheckpointError(
                f"{path}: the file holds Python objects beyond tensors and plain containers, so it cannot be "
                f"read with torch.load(weights_only=True) ({exc}). Official vidinv checkpoints never need this. "
                "If you trust the file, load it with allow_pickle=True (full unpickle: it can run code).") from exc
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:  # pragma: no cover - depends on the file
            raise CheckpointError(f"{path}: cannot be read as a PyTorch checkpoint: {exc2}") from exc2
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint ({type(exc).__name__}: {exc}). "
            "It is probably truncated or corrupted: delete it and fetch it again.") from exc


def select_prefix(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """Return the entries whose key starts with ``prefix + '.'``, with that prefix removed.

    This is how pSp's ``get_keys(ckpt, 'encoder')`` splits its checkpoint.
    """
    p = prefix + "."
    return {k[len(p):]: v for k, v in state_dict.items() if k.startswith(p)}


def compare_state_dicts(
    got: Mapping[str, Any], want: Mapping[str, Any]
) -> tuple[list[str], list[str], list[tuple[str, tuple[int, ...], tuple[int, ...]]]]:
    """Compare a file's state_dict with a model's.

    Returns:
        ``(missing, unexpected, shape_mismatches)``: keys in ``want`` not in ``got``, keys in ``got`` not
        in ``want`` (both in the model's/file's order), and ``(key, got_shape, want_shape)`` for shared
        keys whose shapes differ.
    """
    missing = [k for k in want if k not in got]
    unexpected = [k for k in got if k not in want]
    shapes = []
    for k, v in want.items():
        if k in got and hasattr(got[k], "shape") and tuple(got[k].shape) != tuple(v.shape):
            shapes.append((k, tuple(got[k].shape), tuple(v.shape)))
    return missing, unexpected, shapes


def load_strict(module: nn.Module, state_dict: Mapping[str, Any], source: str | os.PathLike,
                what: str) -> nn.Module:
    """Load ``state_dict`` into ``module`` with every key and shape required to match.

    Buffers are loaded too (StyleGAN2's FIR kernels and noise buffers are part of the official files).

    Args:
        module: the model.
        state_dict: tensors keyed by the official names.
        source: the file the tensors came from, named in errors.
        what: a short name of the network (e.g. ``"StyleGAN2 generator"``), named in errors.

    Returns:
        ``module``, loaded.

    Raises:
        CheckpointMismatchError: keys missing or unexpected, or shapes differ.
        CheckpointError: an entry is not a tensor.
    """
    for k, v in state_dict.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: entry {k!r} of the {what} state_dict is a {type(v).__name__}, "
                                  "not a tensor")
    missing, unexpected, shapes = compare_state_dicts(state_dict, module.state_dict())
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(str(source), what, missing, unexpected, shapes)
    module.load_state_dict(state_dict, strict=True)
    return module
