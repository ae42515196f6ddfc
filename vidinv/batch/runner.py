"""Run a checked batch: skip finished jobs, run the others' tasks on workers, write records, report.

Workers (:class:`~vidinv.batch.worker.Worker`, each with its own bundle cache):

* local (default): one worker on the CPU, run in this thread (Ctrl-C stops the running job as it stops
  ``vidinv edit``); with CUDA, one worker per GPU (``cuda:0``, ``cuda:1``, ...), each in its own thread,
  for the jobs whose device is ``auto``. (More than one GPU has not been run by the tests: the test
  machines have none or one.)
* Ray (``ray_address``: ``"auto"`` or an address): one actor per GPU of the cluster (``num_gpus=1``;
  Ray sets each actor's visible GPU, so ``auto`` resolves to it), or, without GPUs, ``workers`` CPU
  actors (default 1). Paths must mean the same on every node (a shared file system).

A task goes to the first idle worker once the tasks it depends on succeeded; a task whose dependency
failed fails with that reason. A failing job never stops the others.
"""
from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vidinv.batch.jobs import BatchCommands, BatchJob, load_jobs
from vidinv.batch.plan import RecordStore, Task, default_records_dir, expand_job, final_task_id
from vidinv.batch.worker import TaskOutcome, Worker

__all__ = ["JobOutcome", "BatchError", "LocalPool", "RayPool", "run_batch", "run_tasks", "RAY_MISSING"]

#: The message when ``--ray`` is asked for without Ray installed.
RAY_MISSING = "--ray needs Ray, which is not installed: pip install 'vidinv[ray]'"


class BatchError(RuntimeError):
    """The batch cannot start (e.g. Ray missing or unreachable); one-line message."""


@dataclass
class JobOutcome:
    """How a job ended: ``status`` ``"done"``, ``"skipped"`` (record and output already there) or
    ``"failed"`` (``error``: one line); ``seconds``: the seconds its tasks ran (summed over segments);
    ``result``: the summaries of its tasks (task id -> dict)."""

    job: BatchJob
    status: str
    seconds: float = 0.0
    error: str | None = None
    result: dict | None = None


class LocalPool:
    """Workers in this process: one (run in the calling thread) or one thread per device.

    Args:
        commands: as :class:`~vidinv.batch.worker.Worker`.
        devices: one entry per worker (None: ``auto``).
        threads: torch threads (set once, process-wide; put back by :meth:`close`).
    """

    def __init__(self, commands: Callable[[], BatchCommands], devices: list[str | None], threads: int | None = None):
        import torch

        self._threads = torch.get_num_threads()
        self.workers = [Worker(commands, d, threads) for d in devices]
        self._pools = [cf.ThreadPoolExecutor(1, thread_name_prefix=f"batch-{i}") for i in range(len(devices))] \
            if len(devices) > 1 else []

    @property
    def size(self) -> int:
        """Number of workers."""
        return len(self.workers)

    def submit(self, i: int, job: BatchJob, task: Task) -> cf.Future:
        """Run ``task`` on worker ``i``: a future of its :class:`TaskOutcome` (already done with one worker)."""
        if self._pools:
            return self._pools[i].submit(self.workers[i].run, job, task)
        fut: cf.Future = cf.Future()
        fut.set_result(self.workers[i].run(job, task))
        return fut

    def alive(self, i: int) -> bool:
        """Whether worker ``i`` can take another task (local workers always can)."""
        return True

    def stats(self) -> list[dict]:
        """Bundle-cache counts per worker."""
        return [w.stats() for w in self.workers]

    def close(self) -> None:
        """Stop the worker threads (after their current task) and put the torch thread count back."""
        import torch

        for p in self._pools:
            p.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(self._threads)


class RayPool:
    """Ray actors, each a :class:`~vidinv.batch.worker.Worker` (see the module doc).

    Args:
        commands: as :class:`~vidinv.batch.worker.Worker` (pickled by reference: an importable function).
        address: ``"auto"`` (a running cluster, else a local Ray on this machine) or a cluster address. When
            Ray is already initialised in this process, that session is used as it is.
        workers: CPU actors when the cluster has no GPU (default 1).
        threads: torch threads per actor (None: as Ray sets them, one per reserved CPU).

    Raises:
        BatchError: Ray is not installed (:data:`RAY_MISSING`) or the cluster cannot be reached.
    """

    def __init__(self, commands: Callable[[], BatchCommands], address: str, workers: int | None = None,
                 threads: int | None = None):
        try:
            import ray
        except ImportError:
            raise BatchError(RAY_MISSING) from None
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self._ray = ray
        self._own = not ray.is_initialized()
        if self._own:
            try:
                if address == "auto":
                    try:
                        ray.init(address="auto", include_dashboard=False, logging_level=logging.ERROR)
                    except ConnectionError:  # no cluster running: a local one
                        ray.init(include_dashboard=False, logging_level=logging.ERROR)
                else:
                    ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR)
            except Exception as exc:
                raise BatchError(f"cannot start or reach Ray at {address}: {exc}") from None
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus > 0:
            actor = ray.remote(num_gpus=1, num_cpus=1)(Worker)
            n = gpus if workers is None else min(workers, gpus)
        else:
            actor = ray.remote(num_cpus=1)(Worker)
            n = workers or 1
        self.actors: list[Any] = [actor.remote(commands, None, threads) for _ in range(n)]
        self._dead: set[int] = set()

    @property
    def size(self) -> int:
        """Number of actors."""
        return len(self.actors)

    def submit(self, i: int, job: BatchJob, task: Task) -> cf.Future:
        """Run ``task`` on actor ``i``: a future of its :class:`TaskOutcome`."""
        return self.actors[i].run.remote(job, task).future()

    def alive(self, i: int) -> bool:
        """False once actor ``i`` died (a task on it failed with a Ray actor error)."""
        return i not in self._dead

    def mark_dead(self, i: int) -> None:
        """Take actor ``i`` out of the pool."""
        self._dead.add(i)

    def stats(self) -> list[dict]:
        """Bundle-cache counts per live actor."""
        return self._ray.get([a.stats.remote() for i, a in enumerate(self.actors) if i not in self._dead])

    def close(self) -> None:
        """End the actors; shut Ray down when this pool started it."""
        for a in self.actors:
            self._ray.kill(a)
        if self._own:
            self._ray.shutdown()


def run_tasks(jobs: dict[int, BatchJob], tasks: list[Task], pool: Any, on_task: Callable[[Task, TaskOutcome], None],
              done: set[str] | None = None, failed: set[str] | None = None) -> None:
    """Run ``tasks`` on ``pool`` (a :class:`LocalPool` or :class:`RayPool`) in dependency order, each on the
    first idle worker; ``on_task(task, outcome)`` after each (a task whose dependency failed gets a failed
    outcome naming it, without running). ``done`` / ``failed``: ids of tasks outside ``tasks`` that already
    succeeded / failed."""
    status: dict[str, bool] = {t: True for t in (done or ())} | {t: False for t in (failed or ())}
    waiting = {t.id: t for t in tasks}
    running: dict[cf.Future, tuple[Task, int]] = {}
    idle = list(range(pool.size))

    def finish(t: Task, outcome: TaskOutcome) -> None:
        status[t.id] = outcome.ok
        on_task(t, outcome)

    while waiting or running:
        changed = True
        while changed:  # also the tasks that need a task failed just now
            changed = False
            for t in list(waiting.values()):
                bad = [d for d in t.deps if status.get(d) is False]
                if bad:
                    del waiting[t.id]
                    finish(t, TaskOutcome(t.id, False, 0.0, error=f"not run: task {bad[0]} it needs failed"))
                    changed = True
        ready = [t for t in waiting.values() if all(status.get(d) for d in t.deps)]
        while idle and ready:
            t, i = ready.pop(0), idle.pop(0)
            del waiting[t.id]
            running[pool.submit(i, jobs[t.line], t)] = (t, i)
        if not running:
            for t in list(waiting.values()):  # no worker left (or an impossible dependency)
                del waiting[t.id]
                finish(t, TaskOutcome(t.id, False, 0.0, error="not run: no worker left"))
            break
        finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
        for fut in finished:
            t, i = running.pop(fut)
            try:
                outcome = fut.result()
            except Exception as exc:  # the worker itself failed (e.g. a Ray actor died)
                if hasattr(pool, "mark_dead"):
                    pool.mark_dead(i)
                outcome = TaskOutcome(t.id, False, 0.0, error=f"worker failed: {str(exc).strip().splitlines()[0]}"
                                      if str(exc).strip() else f"worker failed: {type(exc).__name__}")
            if pool.alive(i):
                idle.append(i)
            finish(t, outcome)


def _local_devices() -> list[str | None]:
    """One worker per CUDA device, or one CPU worker."""
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(n)] if n > 1 else [None]


def run_batch(jobs_file: str | os.PathLike, commands: Callable[[], BatchCommands], *,
              records_dir: str | os.PathLike | None = None, ray_address: str | None = None,
              workers: int | None = None, threads: int | None = None,
              on_job: Callable[[JobOutcome], None] | None = None,
              on_start: Callable[[int, int], None] | None = None) -> list[JobOutcome]:
    """Run the jobs file ``jobs_file`` (see :mod:`vidinv.batch`).

    Args:
        jobs_file: the JSON Lines file (:mod:`vidinv.batch.jobs`).
        commands: the function returning the commands (:class:`~vidinv.batch.jobs.BatchCommands`); workers
            call it too.
        records_dir: the records folder (default :func:`~vidinv.batch.plan.default_records_dir`).
        ray_address: None (local workers) or as :class:`RayPool`.
        workers: Ray CPU actors (:class:`RayPool`); local: ignored (one CPU worker, or one per GPU).
        threads: torch threads per worker (None: unchanged; Ray: one per actor).
        on_job: called with each job's :class:`JobOutcome` as it ends (skipped jobs first).
        on_start: ``on_start(jobs, skipped)`` once the jobs are checked, before any worker starts.

    Returns:
        The outcomes, in file order.

    Raises:
        FileNotFoundError, :class:`~vidinv.batch.jobs.JobsFileError`: the jobs file (every line is checked
            before any worker starts or model loads).
        BatchError: Ray missing or unreachable.
    """
    specs = commands()
    jobs = load_jobs(jobs_file, specs)
    store = RecordStore(records_dir if records_dir is not None else default_records_dir(jobs_file), specs)
    outcomes: dict[int, JobOutcome] = {}
    todo: list[BatchJob] = []
    for job in jobs:
        if store.done(job):
            outcomes[job.line] = JobOutcome(job, "skipped")
        else:
            todo.append(job)
    if on_start is not None:
        on_start(len(jobs), len(outcomes))
    for o in outcomes.values():
        if on_job is not None:
            on_job(o)
    if not todo:
        return [outcomes[j.line] for j in jobs]
    by_line = {j.line: j for j in jobs}
    after = {j.line: final_task_id(j) for j in todo}
    tasks: list[Task] = []
    pending: dict[int, set[str]] = {}
    seconds: dict[int, float] = {}
    results: dict[int, dict] = {}
    errors: dict[int, str] = {}

    def end(job: BatchJob, error: str | None) -> None:
        if error is None:
            try:
                store.write(job, seconds[job.line], results[job.line])
            except OSError as exc:
                error = f"the output was written, but its record was not: {exc}"
            else:
                shutil.rmtree(store.parts_dir(job), ignore_errors=True)
        o = JobOutcome(job, "failed" if error else "done", seconds[job.line], error, results[job.line])
        outcomes[job.line] = o
        if on_job is not None:
            on_job(o)

    for job in todo:
        seconds[job.line], results[job.line] = 0.0, {}
        try:
            job_tasks = expand_job(job, store.parts_dir(job), after, specs.specs[job.command].segment_plan)
        except Exception as exc:  # the job fails, the others run
            errors[job.line] = (specs.describe(exc).strip().splitlines() or [type(exc).__name__])[0]
            end(job, errors[job.line])
            continue
        pending[job.line] = {t.id for t in job_tasks}
        tasks += job_tasks

    def on_task(task: Task, outcome: TaskOutcome) -> None:
        line = task.line
        seconds[line] += outcome.seconds
        if outcome.ok:
            results[line][task.id] = outcome.result or {}
        elif line not in errors:
            errors[line] = outcome.error or "failed"
        pending[line].discard(task.id)
        if not pending[line]:
            end(by_line[line], errors.get(line))

    # jobs skipped count as done for those that read their output; jobs that could not be expanded as failed
    done_ids = {final_task_id(j) for j in jobs if outcomes.get(j.line) and outcomes[j.line].status == "skipped"}
    failed_early = {final_task_id(by_line[n]) for n in errors}
    pool: LocalPool | RayPool
    if ray_address is not None:
        pool = RayPool(commands, ray_address, workers, threads)
    else:
        pool = LocalPool(commands, _local_devices(), threads)
    try:
        run_tasks(by_line, tasks, pool, on_task, done_ids, failed_early)
    finally:
        pool.close()
    return [outcomes[j.line] for j in jobs]
