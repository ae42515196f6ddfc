"""Multi-process training through ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m vidinv.training fs --config ...`` (or ``python -m torch.distributed.run``)
sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup`
reads them, picks the device (``cuda:LOCAL_RANK`` when CUDA is used, else CPU;
:func:`vidinv.device.resolve_device`) and joins the process
group with NCCL on CUDA and Gloo on CPU. Without those variables the run is single-process.

Only rank 0 writes files (logs, grids, checkpoints, exports); every rank reads the checkpoint to
resume. Each rank draws its own real-image shard and its own synthetic samples; DDP averages the
gradients, so all ranks keep identical weights.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from vidinv.device import resolve_device

__all__ = ["DistInfo", "setup", "teardown", "all_mean", "gather_objects", "barrier"]


@dataclass
class DistInfo:
    """Process placement: ``rank``, ``world_size``, ``local_rank``, the ``device`` and whether a group was joined."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized: bool = False

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the only writer)."""
        return self.rank == 0


def setup(device_spec: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the torchrun process group when the environment asks for one; pick this rank's device.

    Returns:
        :class:`DistInfo` (single process when ``WORLD_SIZE`` is unset or 1).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    # run.device: cuda / auto (on a CUDA machine) mean cuda:LOCAL_RANK, and so does cuda:N under torchrun
    device = resolve_device(device_spec, local_rank=local, option="run.device")
    if world <= 1:
        return DistInfo(0, 1, 0, device, False)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        kw: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s),
                                **kw)
    return DistInfo(rank, world, local, device, True)


def teardown(info: DistInfo) -> None:
    """Leave the process group (when this module joined one)."""
    if info.initialized and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op in a single process)."""
    if info.initialized:
        dist.barrier()


def all_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over ranks (the tensor itself in a single process)."""
    if not info.initialized:
        return values
    t = values.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / info.world_size


def gather_objects(obj, info: DistInfo) -> list:
    """Every rank's ``obj`` (picklable) as a list indexed by rank (``[obj]`` in a single process)."""
    if not info.initialized:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
