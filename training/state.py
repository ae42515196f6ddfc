"""Resumable training checkpoints: RNG states and the checkpoint folder.

A checkpoint (``out_dir/checkpoints/step_XXXXXXXX.pt``) is one ``torch.save`` dict readable with
``torch.load(weights_only=True)`` (:func:`vidinv.io.checkpoints.read_checkpoint`):

``format`` (``"vidinv-train-state/1"``), ``task`` (``"fs"``/``"psp"``), ``step`` (completed optimisation
steps), ``config`` (the run's config as a nested dict), ``encoder`` (state_dict), ``optimizer``,
``scheduler``, ``scaler`` (or None), ``rng`` (one entry per rank: python, numpy, torch CPU and CUDA
states), ``data`` (``{"items_per_rank": ...}``: real images consumed by each rank), ``world_size``.

Checkpoints are written with :func:`vidinv.io.outputs.atomic_save` (a temporary file in the same folder,
flushed to disk, then renamed onto the final name), so a crash never leaves a truncated checkpoint;
``latest`` (a one-line text file, also replaced atomically: :func:`vidinv.io.outputs.atomic_write_text`)
names the newest one.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from vidinv.io.checkpoints import CheckpointError, read_checkpoint

__all__ = [
    "STATE_FORMAT",
    "capture_rng",
    "restore_rng",
    "checkpoint_name",
    "list_checkpoints",
    "latest_checkpoint",
    "prune_checkpoints",
    "read_state",
]

STATE_FORMAT = "vidinv-train-state/1"
_STEP_RE = re.compile(r"^step_(\d+)\.pt$")


def capture_rng() -> dict:
    """This process's RNG states: python ``random``, numpy's global generator, torch CPU and every CUDA device.

    Returned as tensors and plain Python values only (loadable with ``weights_only=True``).
    """
    py = random.getstate()
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)  # the global RandomState is MT19937: the legacy tuple
    out = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return out


def restore_rng(state: dict) -> None:
    """Restore states captured by :func:`capture_rng` (CUDA states only for devices present)."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint after ``step`` completed steps."""
    return f"step_{int(step):08d}.pt"


def list_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """``(step, path)`` of every step checkpoint in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_RE.match(p.name))]
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint named by ``folder/latest`` (when it exists), else the highest step file, else None."""
    folder = Path(folder)
    pointer = folder / "latest"
    if pointer.is_file():
        p = folder / pointer.read_text(encoding="utf-8").strip()
        if p.is_file():
            return p
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def prune_checkpoints(folder: str | os.PathLike, keep: int) -> list[Path]:
    """Delete the oldest step checkpoints so that ``max(keep, 1)`` remain; returns the deleted files."""
    found = list_checkpoints(folder)
    doomed = found[: max(0, len(found) - max(1, int(keep)))]
    for _, p in doomed:
        p.unlink(missing_ok=True)
    return [p for _, p in doomed]


def read_state(path: str | os.PathLike) -> dict:
    """Read a training checkpoint and check its format.

    Raises:
        vidinv.io.checkpoints.CheckpointError: unreadable, or not a vidinv training checkpoint.
    """
    state = read_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a vidinv training checkpoint (expected format {STATE_FORMAT!r}); "
                              "to start from trained weights, use them as the encoder initialisation instead")
    return state
