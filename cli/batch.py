"""``vidinv batch JOBS.jsonl``: run many ``edit`` / ``restore`` / ``invert`` / ``report`` jobs (:mod:`vidinv.batch`).

This module registers the commands a batch may hold (:func:`batch_commands`): each job's options go through
the command's own click parser, its checks are the command's own (``check_files`` of :mod:`vidinv.cli.edit`,
:mod:`vidinv.cli.invert`, :mod:`vidinv.cli.report`, :func:`vidinv.pipeline.edit.plan_edit`) and its run is
the command's code path (:func:`vidinv.pipeline.edit.run_edit` / ``run_edit_folder``,
:func:`vidinv.pipeline.invert.run_invert`, :func:`vidinv.cli.report.run_report_command`) with the worker's
bundle cache as the networks' loader.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from vidinv.cli.common import fail, format_table, install_signal_handlers

_HELP = """Run many jobs (edit, restore, invert, report) listed in JOBS, a JSON Lines file, on this machine or a Ray
cluster; jobs already done are skipped when the batch runs again.

One job per line, e.g.

\b
  {"command": "edit", "input": "a.mp4", "output": "b.mp4", "options": {"attr": "smile", "strength": 2}}
  {"command": "invert", "input": "a.mp4", "output": "a_inv"}
  {"command": "report", "input": "a.mp4", "output": "rep", "options": {"outputs": ["b.mp4"]}}

"options" are the command's long options (as on its command line: a flag takes true/false, a
repeatable option a list); relative paths resolve against the folder of JOBS. An edit may carry
"segments": N to split its video into N segments run by different workers, then joined. A job that
reads another job's output runs after it. Every line is checked before any model loads.

Each finished job gets a record (JOBS without its suffix + .records/, or --records DIR); a job whose
record and output exist is skipped. Models load once per worker and are reused by the jobs that need
the same ones: one worker on the CPU, one per GPU; with --ray, one Ray actor per GPU of the cluster
(or --workers CPU actors). A failing job never stops the others; the summary lists every job and the
exit status is 1 when any failed.
"""

#: Options of ``edit`` / ``restore`` a batch job may not give, and why.
_EDIT_REFUSED = {"report_dir": "not in a batch: add a \"report\" job (input: the source, options: {\"outputs\": "
                               "[the edited video]})",
                 "quiet": "a batch runs quietly", "verbose": "a batch runs quietly",
                 "segments": "give \"segments\": N on the job's line (the batch spreads them over its workers)"}


def _edit_options(job, device: str | None = None):
    """The job's :class:`~vidinv.pipeline.edit.EditOptions` (``restore``: ``RestoreOptions``); ``device``
    replaces ``auto``."""
    # on use: keeps `vidinv --help` free of torch
    from vidinv.pipeline.edit import EditOptions
    from vidinv.pipeline.tasks import RestoreOptions

    fields = {k: v for k, v in job.params.items() if k not in ("src", "dst", "report_dir", "quiet", "verbose")}
    cls = RestoreOptions if job.command == "restore" else EditOptions
    opts = cls(src=str(job.input), dst=str(job.output), **fields)
    if device is not None and opts.device == "auto":
        opts = replace(opts, device=device)
    return opts


def _edit_files(opts):
    """``vidinv edit``'s file checks (:func:`vidinv.cli.edit.check_files`); the folder plan or None."""
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.cli.common import REPORT_MEMBERS
    from vidinv.cli.edit import GATES_FILE, check_files

    return check_files(opts.src, opts.dst, opts.codec, opts.directions, opts.from_inversion, None,
                       REPORT_MEMBERS + (GATES_FILE,))


def _check_edit(job) -> None:
    """Before any model: the options, the files, every weight and direction file (:func:`plan_edit`)."""
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.pipeline.edit import check_options, check_segmentable, plan_edit

    opts = _edit_options(job)
    check_options(opts)
    _edit_files(opts)
    if job.segments:
        check_segmentable(opts)
    plan_edit(opts, quiet=True)


def _plan_segments(job) -> list:
    """The segments of a job with ``"segments": N``: its window (``start`` / ``end``) cut with the context its
    options need (:func:`vidinv.pipeline.segments.required_overlap`)."""
    # on use: only segmented jobs need the segments module
    from vidinv.pipeline.segments import plan_segments, required_overlap

    opts = _edit_options(job)
    return plan_segments(Path(opts.src), job.segments, required_overlap(opts), start=opts.start, end=opts.end)


def _shared(opts, plan) -> bool:
    """Whether the job may use the worker's cached networks: not when it changes the generator (per-video
    tuning, or an export's tuned generator)."""
    return opts.tune == "none" and (plan.reader is None or plan.reader.tuned_generator is None)


def _run_edit(job, task, context) -> dict:
    """One task of an ``edit`` / ``restore`` job (the whole job, a segment, or the join)."""
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.pipeline.edit import check_options, load_edit_job, plan_edit, run_edit, run_edit_folder

    opts = _edit_options(job, context.device)
    if task.kind == "join":
        # on use: only segmented jobs need the segments module
        from vidinv.pipeline.segments import join_segments

        res = join_segments(opts, task.segments, task.parts)
        return {"frames": res.frames, "frames_edited": res.frames_edited}
    check_options(opts)
    folder = _edit_files(opts) if task.kind == "job" else None
    plan = plan_edit(opts, quiet=True)
    loader = context.cache if _shared(opts, plan) else None
    if task.kind == "segment":
        # on use: only segmented jobs need the segments module
        from vidinv.pipeline.segments import run_segment

        part = run_segment(opts, task.segment, task.part, job=load_edit_job(opts, plan, loader))
        return {"part": str(part), "start": task.segment.start, "stop": task.segment.stop}
    if folder is not None:
        fres = run_edit_folder(opts, folder, plan=plan, quiet=True, loader=loader)
        if fres.failed:
            raise RuntimeError(f"{len(fres.failed)} of {len(fres.outcomes)} images failed; first: "
                               f"{fres.failed[0].src.name}: {fres.failed[0].error}")
        return {"images": len(fres.outcomes)}
    res = run_edit(opts, plan=plan, quiet=True, loader=loader)
    return {"frames": res.frames, "frames_edited": res.frames_edited, "tracks": res.tracks,
            "passthrough": res.passthrough, "edit": res.edit}


def _invert_options(job, device: str | None = None):
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.pipeline.invert import InvertOptions

    fields = {k: v for k, v in job.params.items() if k not in ("src", "dst", "quiet", "verbose")}
    opts = InvertOptions(src=str(job.input), dst=str(job.output), **fields)
    if device is not None and opts.device == "auto":
        opts = replace(opts, device=device)
    return opts


def _check_invert(job) -> None:
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.cli.invert import check_files

    check_files(str(job.input), str(job.output))


def _run_invert(job, task, context) -> dict:
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.cli.invert import check_files
    from vidinv.pipeline.invert import run_invert

    opts = _invert_options(job, context.device)
    check_files(opts.src, opts.dst)
    res = run_invert(opts, quiet=True, loader=context.cache if opts.tune == "none" else None)
    return {"frames": res.frames, "records": res.records, "tracks": res.tracks}


def _report_params(job, device: str | None = None) -> dict:
    params = {k: v for k, v in job.params.items() if k != "quiet"}
    if device is not None and params.get("device") is None:
        params["device"] = device
    return params


def _check_report(job) -> None:
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.cli.report import check_files

    p = job.params
    check_files(p["source"], p["outputs"], p["out_dir"], p["reference"])


def _run_report(job, task, context) -> dict:
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.cli.report import run_report_command

    p = _report_params(job, context.device)
    doc = run_report_command(p.pop("source"), p.pop("outputs"), p.pop("out_dir"), quiet=True, **p)
    return {"videos": len(doc.get("videos", []))}


def batch_commands():
    """The commands of ``vidinv batch`` (:class:`vidinv.batch.BatchCommands`): ``edit``, ``restore``,
    ``invert``, ``report``; failures described as ``vidinv: error:`` describes them
    (:func:`vidinv.cli.common.error_message`). Workers (Ray actors too) call this to build them."""
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.batch import BatchCommands, CommandSpec
    from vidinv.cli.common import error_message
    from vidinv.cli.edit import edit_cmd, restore_cmd
    from vidinv.cli.invert import invert_cmd
    from vidinv.cli.report import report

    quiet = {"quiet": "a batch runs quietly", "verbose": "a batch runs quietly"}
    specs = {
        "edit": CommandSpec(edit_cmd, "src", "-o", _check_edit, _run_edit, refused=_EDIT_REFUSED, segmentable=True,
                            segment_plan=_plan_segments),
        "restore": CommandSpec(restore_cmd, "src", "-o", _check_edit, _run_edit, refused=_EDIT_REFUSED,
                               segmentable=True, segment_plan=_plan_segments),
        "invert": CommandSpec(invert_cmd, "src", "-o", _check_invert, _run_invert, refused=quiet,
                              done_file=lambda out: Path(out) / "manifest.json"),
        "report": CommandSpec(report, "source", "-o", _check_report, _run_report, refused=quiet,
                              done_file=lambda out: Path(out) / "report.json"),
    }
    return BatchCommands(specs, error_message)


@click.command("batch", context_settings={"max_content_width": 110}, help=_HELP)
@click.argument("jobs_file", metavar="JOBS", type=click.Path(dir_okay=False))
@click.option("--records", "records_dir", type=click.Path(file_okay=False), default=None,
              help="Folder of the job records (default: JOBS without its suffix + .records, beside it).")
@click.option("--ray", "ray_address", default=None, metavar="auto|ADDRESS",
              help="Run on Ray: 'auto' (a running cluster, else a local Ray) or a cluster address. Needs "
                   "pip install 'vidinv[ray]'.")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="With --ray on a cluster without GPUs: CPU actors (default 1).")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="Torch CPU threads of each worker (default: this process's; Ray actors: 1).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def batch_cmd(jobs_file, records_dir, ray_address, workers, threads, quiet):
    # on use: keeps `vidinv --help` free of torch
    from vidinv.batch import BatchError, JobsFileError, run_batch

    install_signal_handlers()
    bar = None

    def start(total: int, skipped: int) -> None:
        nonlocal bar
        if not quiet:
            from tqdm import tqdm

            bar = tqdm(total=total, desc="batch", unit="job", dynamic_ncols=True, file=sys.stderr)

    failed = 0

    def on_job(o) -> None:
        nonlocal failed
        failed += o.status == "failed"
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=failed, refresh=False)

    try:
        outcomes = run_batch(jobs_file, batch_commands, records_dir=records_dir, ray_address=ray_address,
                             workers=workers, threads=threads, on_job=on_job, on_start=start)
    except JobsFileError as exc:
        for line in exc.lines:
            click.echo(f"vidinv: error: {line}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        click.echo("vidinv: interrupted; the jobs done so far have their records (run the batch again to go on)",
                   err=True)
        sys.exit(130)
    except (BatchError, FileNotFoundError) as exc:
        fail(exc)
    if bar is not None:
        bar.close()
    rows = [[o.job.name, o.job.command, o.status, f"{o.seconds:.1f}", o.error or ""] for o in outcomes]
    click.echo(format_table(rows, ["job", "command", "status", "seconds", "error"], align="<<<><"))
    if failed:
        fail(f"{failed} of {len(outcomes)} job(s) failed (listed above)")
