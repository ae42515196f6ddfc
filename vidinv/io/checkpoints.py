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

Official files versus files vidinv wrote
----------------------------------------
A file without a vidinv record is held to the **official architecture** of its network: the loaders
build exactly the network the reference code builds (e.g. pSp's IR-SE50 ``GradualStyleEncoder`` for
``opts['output_size']``, the Feature-Style ``fs_encoder_v2`` with IResNet-50 stages) and load
strictly, so a truncated or altered file fails with :class:`CheckpointMismatchError` naming the missing
keys; nothing is sized from the file's shapes.

Other sizes load only from files vidinv itself wrote (its training export, the test bundle), which
carry a **vidinv record** (:func:`vidinv_record`) under the key :data:`VIDINV_RECORD_KEY`
(``"vidinv_config"``): top level for plain-state_dict networks (``{"state_dict": ..., "vidinv_config":
record}``), inside ``opts`` for pSp-layout files. The record declares the network's constructor
arguments (``architecture``); the loader builds that network and loads strictly, so a file whose keys
do not match its own record fails too. The record also carries the weights' licence label and, for
trained encoders, the training configuration.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "read_checkpoint",
    "select_prefix",
    "compare_state_dicts",
    "load_strict",
    "VIDINV_RECORD_KEY",
    "VIDINV_RECORD_FORMAT",
    "USER_TRAINED_LICENCE",
    "vidinv_record",
    "read_vidinv_record",
]

_MAX_LISTED = 8

_M = TypeVar("_M", bound=nn.Module)

#: Key of the vidinv record in a checkpoint (top level, or in pSp's ``opts``).
VIDINV_RECORD_KEY = "vidinv_config"
#: Version of the record layout written by :func:`vidinv_record`.
VIDINV_RECORD_FORMAT = 1
#: Licence label of encoders trained with vidinv's ``training/`` code.
USER_TRAINED_LICENCE = (
    "Trained by the user with vidinv: the terms of these weights are the user's. The generator, the training "
    "data and any initialisation weights it was trained from (e.g. psp_ffhq_encode.pt / "
    "stylegan2-ffhq-config-f.pt, FFHQ, backbone.pth, model_ir_se50.pth) carry their own terms; see "
    "`vidinv weights list --long`.")


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
                     "(resolution, channel multiplier, number of styles). An official file is held to the official "
                     "architecture: re-download it with `vidinv weights fetch`. A file vidinv wrote is built from "
                     "the architecture in its vidinv_config record.")
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


def load_strict(module: _M, state_dict: Mapping[str, Any], source: str | os.PathLike,
                what: str) -> _M:
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


def vidinv_record(network: str, architecture: Mapping[str, Any], *, licence: str, name: str | None = None,
                  trained_from: Mapping[str, Any] | None = None,
                  training_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The record vidinv writes into checkpoints it produces (see the module doc).

    Args:
        network: which network the file holds: ``"fs_encoder"``, ``"psp"`` or ``"bisenet"``.
        architecture: the constructor arguments of the network (plain values: ints, strings, lists,
            nested dicts; for ``"psp"``: ``{"encoder": {...}, "decoder": {...}}``). Tuples are stored as
            lists so that the file loads with ``torch.load(weights_only=True)``.
        licence: the licence label of the weights (:data:`USER_TRAINED_LICENCE` for trained encoders).
        name: the name the weights were exported under (e.g. ``"myrun_fs_encoder.pth"``).
        trained_from: what the weights were trained from (e.g. ``{"generator": "psp_ffhq_encode.pt"}``).
        training_config: the vidinv training configuration (nested plain dict).

    Returns:
        ``{"format": 1, "network", "architecture", "licence", "name", "trained_from", "training_config"}``.
    """
    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return {"format": VIDINV_RECORD_FORMAT, "network": str(network), "architecture": plain(architecture),
            "licence": str(licence), "name": name, "trained_from": plain(trained_from or {}),
            "training_config": plain(training_config) if training_config is not None else None}


def read_vidinv_record(raw: Any, source: str | os.PathLike, network: str) -> dict[str, Any] | None:
    """Check the vidinv record found in a checkpoint (the value under :data:`VIDINV_RECORD_KEY`).

    Args:
        raw: that value, or None when the file has none.
        source: the file, named in errors.
        network: the network the caller loads (``"fs_encoder"``, ``"psp"``, ``"bisenet"``).

    Returns:
        The record (a dict with ``architecture`` a dict), or None when ``raw`` is None or not a vidinv
        record (no ``format`` key: e.g. a bare training configuration); such files are then held to the
        official architecture.

    Raises:
        CheckpointError: a record of another format version, of another network, or without an
            ``architecture`` mapping.
    """
    if raw is None or not isinstance(raw, Mapping) or "format" not in raw:
        return None
    if raw.get("format") != VIDINV_RECORD_FORMAT:
        raise CheckpointError(f"{source}: vidinv record format {raw.get('format')!r} is not known to this vidinv "
                              f"(it reads format {VIDINV_RECORD_FORMAT}); update vidinv")
    if raw.get("network") != network:
        raise CheckpointError(f"{source}: the file's vidinv record says it holds a {raw.get('network')!r} network, "
                              f"not a {network!r} one")
    if not isinstance(raw.get("architecture"), Mapping):
        raise CheckpointError(f"{source}: the file's vidinv record has no 'architecture' mapping")
    return dict(raw)
