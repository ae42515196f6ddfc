"""``vidinv batch JOBS.jsonl``: many jobs (edit, restore, invert, report) on one machine or a Ray cluster.

* :mod:`vidinv.batch.jobs`: the jobs file, every line checked before any model loads.
* :mod:`vidinv.batch.plan`: jobs into tasks (a long video edit into segment tasks and a join task) and the
  records that make a batch resumable.
* :mod:`vidinv.batch.worker`: a worker that keeps the loaded networks across jobs.
* :mod:`vidinv.batch.runner`: the local and Ray worker pools and the run.

The commands themselves (how a job's options become the command's options, its checks and its run)
are registered by :mod:`vidinv.cli.batch`, which calls the commands' own code paths.
"""
from vidinv.batch.jobs import BatchCommands, BatchJob, CommandSpec, JobsFileError, load_jobs
from vidinv.batch.plan import RecordStore, Task, expand_job
from vidinv.batch.runner import RAY_MISSING, BatchError, JobOutcome, run_batch
from vidinv.batch.worker import BundleCache, Worker

__all__ = ["BatchCommands", "BatchJob", "CommandSpec", "JobsFileError", "load_jobs", "RecordStore", "Task",
           "expand_job", "RAY_MISSING", "BatchError", "JobOutcome", "run_batch", "BundleCache", "Worker"]
