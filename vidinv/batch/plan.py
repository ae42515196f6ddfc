"""Jobs into tasks, and the records that make a batch resumable.

A job runs as one task, or, with ``"segments": N`` (an edit of a long video), as N segment tasks that
any worker may run (each writes one lossless part file: :func:`vidinv.pipeline.segments.run_segment`)
followed by one join task that needs them all (:func:`vidinv.pipeline.segments.join_segments`: the output
from the parts, with the source's timestamps and audio). A job that reads another job's output waits for
that job's last task.

Records: one JSON file per finished job in the records folder (default ``<jobs file without suffix>.records/``
beside the jobs file), named by the job's :func:`~vidinv.batch.jobs.job_key` and written atomically
(:func:`vidinv.io.outputs.atomic_write_text`) once its output is in place. A job whose record and output
both exist is skipped when the batch runs again; a job whose record exists but whose output is gone runs
again.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidinv import __version__
from vidinv.batch.jobs import BatchCommands, BatchJob
from vidinv.io.outputs import atomic_write_text

__all__ = ["Task", "expand_job", "final_task_id", "RecordStore", "default_records_dir", "PART_SUFFIX"]

#: Container of the segment part files (lossless video, written by ``run_segment``).
PART_SUFFIX = ".mkv"


@dataclass
class Task:
    """One unit of work for a worker.

    Attributes:
        id: ``"<line>"`` (a whole job), ``"<line>.s<i>"`` (segment i) or ``"<line>.join"``.
        line: the job's line number.
        kind: ``"job"``, ``"segment"`` or ``"join"``.
        deps: ids of the tasks that must have succeeded first.
        segment: the :class:`vidinv.pipeline.segments.Segment` (segment tasks).
        part: the part file a segment task writes.
        segments, parts: all segments and part files of the job (join task).
    """

    id: str
    line: int
    kind: str = "job"
    deps: tuple[str, ...] = ()
    segment: Any = None
    part: Path | None = None
    segments: list = field(default_factory=list)
    parts: list[Path] = field(default_factory=list)


def final_task_id(job: BatchJob) -> str:
    """The id of the task that ends ``job`` (its output is written when this task succeeds)."""
    return f"{job.line}.join" if job.segments else str(job.line)


def expand_job(job: BatchJob, parts_dir: Path, after: dict[int, str] | None = None,
               plan: Callable[[BatchJob], list] | None = None) -> list[Task]:
    """The tasks of ``job`` (see the module doc).

    Args:
        job: the job; with ``job.segments`` its input is split by
            :func:`vidinv.pipeline.segments.plan_segments` (imported here, on use).
        parts_dir: the folder of this job's part files (segments only; created).
        after: line -> final task id of the jobs ``job`` depends on that still run (a dependency already
            done is left out).
        plan: ``plan(job) -> [Segment]`` (the command's :attr:`~vidinv.batch.jobs.CommandSpec.segment_plan`);
            None: ``plan_segments(job.input, job.segments)`` with the planner's defaults.

    Returns:
        ``[Task]`` (one, or the segment tasks then the join task).

    Raises:
        What ``plan_segments`` raises (the job then fails; the others go on).
    """
    deps = tuple((after or {})[d] for d in job.deps if d in (after or {}))
    if not job.segments:
        return [Task(str(job.line), job.line, "job", deps)]
    if plan is not None:
        segments = plan(job)
    else:
        # on use: the segment planner reads the video
        from vidinv.pipeline.segments import plan_segments

        segments = plan_segments(job.input, job.segments)
    parts_dir.mkdir(parents=True, exist_ok=True)
    parts = [parts_dir / f"part_{s.index:04d}{PART_SUFFIX}" for s in segments]
    tasks = [Task(f"{job.line}.s{s.index}", job.line, "segment", deps, segment=s, part=p)
             for s, p in zip(segments, parts)]
    tasks.append(Task(f"{job.line}.join", job.line, "join", tuple(t.id for t in tasks) + deps,
                      segments=list(segments), parts=parts))
    return tasks


def default_records_dir(jobs_file: str | os.PathLike) -> Path:
    """``jobs.jsonl`` -> ``jobs.records`` beside it."""
    p = Path(jobs_file)
    return p.with_name(p.stem + ".records")


class RecordStore:
    """The records folder of a batch (see the module doc): ``<key>.json`` per finished job."""

    def __init__(self, folder: str | os.PathLike, commands: BatchCommands):
        self.folder = Path(folder)
        self.commands = commands

    def path(self, job: BatchJob) -> Path:
        """The record file of ``job``."""
        return self.folder / f"{job.key}.json"

    def parts_dir(self, job: BatchJob) -> Path:
        """The folder of ``job``'s segment part files."""
        return self.folder / "parts" / job.key

    def done(self, job: BatchJob) -> bool:
        """Whether ``job`` can be skipped: its record says ``done`` and its output exists."""
        rec = self.path(job)
        if not rec.is_file() or not self.commands.specs[job.command].done_file(job.output).exists():
            return False
        try:
            return json.loads(rec.read_text(encoding="utf-8")).get("status") == "done"
        except (OSError, ValueError):
            return False

    def write(self, job: BatchJob, seconds: float, result: dict) -> Path:
        """Write ``job``'s record (atomically): line, command, paths, options, seconds, the task results, the
        vidinv version and the time (UTC, ISO 8601)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        doc = {"status": "done", "line": job.line, "command": job.command, "input": str(job.input),
               "output": str(job.output), "options": job.options, "segments": job.segments,
               "seconds": round(seconds, 3), "result": result, "vidinv": __version__,
               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        return atomic_write_text(self.path(job), json.dumps(doc, indent=1, default=str) + "\n")
