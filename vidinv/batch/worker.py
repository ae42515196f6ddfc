"""A batch worker: runs tasks one after the other with the networks loaded once and kept.

One worker runs on the CPU, or one per GPU (local: a thread each; Ray: an actor each,
:mod:`vidinv.batch.runner`). Each holds a :class:`BundleCache`: the jobs' loaders
(:func:`vidinv.pipeline.job.load_job`) get the networks loaded by an earlier job when the files, encoder,
face-parser use, device and precision are the same. Jobs that change the generator's weights (per-video
tuning, an export's tuned generator) load their own copy and leave the cache alone (the command's
``run`` decides: :attr:`vidinv.batch.jobs.CommandSpec.run`).
"""
from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidinv.batch.jobs import BatchCommands, BatchJob
from vidinv.batch.plan import Task
from vidinv.pipeline.runtime import PARSER_FILE, ModelBundle, Runtime, load_bundle, required_weights

__all__ = ["BundleCache", "WorkerContext", "TaskOutcome", "Worker"]


class BundleCache:
    """A :class:`vidinv.pipeline.job.BundleLoader` that keeps up to ``size`` loaded bundles (least recently used
    dropped first) and hands one back for the same files, encoder kind, encoder use, face parser, device and
    precision. ``loads`` / ``hits`` count what it did."""

    def __init__(self, size: int = 2):
        self.size = max(1, int(size))
        self._bundles: OrderedDict[tuple, ModelBundle] = OrderedDict()
        self.loads = 0
        self.hits = 0

    def __call__(self, paths: dict[str, Path], encoder: str = "fs", runtime: Runtime | None = None, *,
                 need_encoder: bool = True, mask: str = "auto",
                 encoder_checkpoint: str | os.PathLike | None = None) -> ModelBundle:
        """:func:`vidinv.pipeline.runtime.load_bundle`, or the bundle it loaded before for the same key."""
        runtime = runtime or Runtime()
        names = required_weights(encoder, need_encoder=need_encoder, encoder_checkpoint=encoder_checkpoint)
        files = tuple(sorted((n, str(Path(paths[n]).resolve())) for n in names if n in paths))
        own = str(Path(encoder_checkpoint).resolve()) if encoder_checkpoint is not None else None
        parser = str(Path(paths[PARSER_FILE]).resolve()) if mask != "landmarks" and PARSER_FILE in paths else None
        key = (encoder, need_encoder, files, own, parser, str(runtime.torch_device), runtime.precision)
        if key in self._bundles:
            self.hits += 1
            self._bundles.move_to_end(key)
            return self._bundles[key]
        bundle = load_bundle(paths, encoder, runtime, need_encoder=need_encoder, mask=mask,
                             encoder_checkpoint=encoder_checkpoint)
        self.loads += 1
        self._bundles[key] = bundle
        while len(self._bundles) > self.size:
            self._bundles.popitem(last=False)
        return bundle


@dataclass
class WorkerContext:
    """What a command's ``run`` gets from its worker: the bundle ``cache`` and the ``device`` jobs with
    ``device auto`` run on (None: as ``auto`` resolves in this process, e.g. the GPU Ray assigned)."""

    cache: BundleCache
    device: str | None = None


@dataclass
class TaskOutcome:
    """A task's end: ``ok``, the seconds it ran, its summary (``result``) or the one-line ``error``."""

    task_id: str
    ok: bool
    seconds: float
    result: dict | None = None
    error: str | None = None


class Worker:
    """Runs tasks (:meth:`run`) with one :class:`BundleCache`.

    Args:
        commands: a function returning the :class:`~vidinv.batch.jobs.BatchCommands` (called here, so that a
            Ray actor builds them in its own process; pickled by reference).
        device: see :class:`WorkerContext`.
        threads: torch CPU threads of this worker (None: unchanged).
        cache_size: bundles kept (:class:`BundleCache`).
    """

    def __init__(self, commands: Callable[[], BatchCommands], device: str | None = None, threads: int | None = None,
                 cache_size: int = 2):
        self.commands = commands()
        if threads is not None:
            import torch

            torch.set_num_threads(int(threads))
        self.context = WorkerContext(BundleCache(cache_size), device)

    def run(self, job: BatchJob, task: Task) -> TaskOutcome:
        """Run ``task`` of ``job``; any error becomes a failed :class:`TaskOutcome` with its one-line reason (the
        first line of ``describe``; Ctrl-C is not caught)."""
        t0 = time.perf_counter()
        try:
            result = self.commands.specs[job.command].run(job, task, self.context)
        except Exception as exc:  # a failing job never stops the others
            reason = self.commands.describe(exc).strip().splitlines() or [type(exc).__name__]
            return TaskOutcome(task.id, False, time.perf_counter() - t0, error=reason[0])
        return TaskOutcome(task.id, True, time.perf_counter() - t0, result=_plain(result))

    def stats(self) -> dict[str, Any]:
        """``{"loads": n, "hits": n}`` of the bundle cache."""
        return {"loads": self.context.cache.loads, "hits": self.context.cache.hits}


def _plain(result: Any) -> dict:
    """``result`` as a JSON-able dict (the record's ``result``)."""
    import json

    return json.loads(json.dumps(result or {}, default=str))
