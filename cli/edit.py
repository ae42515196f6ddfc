"""``vidinv edit``: edit the faces of a video (see :mod:`vidinv.pipeline.edit`)."""
from __future__ import annotations

import sys

import click

from vidinv.cli.common import REPORT_MEMBERS, fail, install_signal_handlers, print_timings, progress_bar
from vidinv.cli.options import job_options, progress_options
from vidinv.edit.attributes import strength_table
from vidinv.pipeline.edit import EditOptions, plan_edit, run_edit

#: The :class:`~vidinv.pipeline.edit.EditOptions` fields offered as options, in the order of ``--help``.
EDIT_FIELDS = ("attrs", "strengths", "directions", "direction_convention", "layers", "encoder", "face", "blend",
               "mask", "batch_size", "device", "precision", "crf", "codec", "pix_fmt", "start", "end",
               "weights_dir", "fetch", "allow_hash_mismatch", "encoder_checkpoint", "from_inversion", "noise",
               "latent_smoothing")


def check_files(src, dst, codec: str, directions=(), from_inversion=None, report_dir=None) -> None:
    """The files of `vidinv edit`, checked before any weight file is resolved or model loaded: IN is a
    readable video; OUT is not (and would not replace) IN, a --direction file or the --from-inversion
    export, its folder is writable and its extension a container that holds ``codec``; the same for the
    --report folder.

    Raises:
        vidinv.io.outputs.InputFileError, vidinv.io.outputs.OutputPathError; InversionFormatError (export).
    """
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from pathlib import Path

    from vidinv.io.outputs import check_output, check_video_input

    inputs = [from_inversion, *directions]
    if src is None and from_inversion is not None:
        # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
        from vidinv.io.inversion import InversionReader

        src = InversionReader(from_inversion).source.get("path")
    if src is not None:
        check_video_input(src)
        inputs.append(src)
    size = Path(src).stat().st_size if src is not None else None
    check_output(dst, inputs, kind="video", codec=codec, expect_bytes=size)
    if report_dir is not None:
        check_output(report_dir, inputs, kind="dir", members=REPORT_MEMBERS, also_written=[dst], what="report folder")


@click.command("edit", context_settings={"max_content_width": 110},
               help="Edit the faces of video IN and write the result to OUT.\n\n" + strength_table(for_click=True))
@click.argument("src", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False), help="Output video.")
@job_options(EditOptions, only=EDIT_FIELDS)
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Also write the identity/quality report of the output against the input into this folder "
                   "(as `vidinv report IN OUT -o DIR`).")
@progress_options
def edit_cmd(src, dst, report_dir, quiet, verbose, **fields):
    install_signal_handlers()
    opts = EditOptions(src=src, dst=dst, **fields)
    if src is None and opts.from_inversion is None:
        fail(click.UsageError("give the input video IN (or --from-inversion DIR)"))
    bar = None
    try:
        # before any weights or models
        check_files(src, dst, opts.codec, opts.directions, opts.from_inversion, report_dir)
        plan = plan_edit(opts, quiet=quiet)  # every file checked before any video work
        bar, update = progress_bar(quiet, "edit")
        res = run_edit(opts, plan=plan, progress=update, quiet=quiet)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        click.echo("vidinv: interrupted; no output written", err=True)
        sys.exit(130)
    except Exception as exc:  # one-line reason, exit != 0
        if bar is not None:
            bar.close()
        fail(exc)
    if bar is not None:
        bar.close()
    if res.passthrough:
        click.echo(f"no face found: {dst} is a copy of the input", err=True)
    elif not quiet:
        click.echo(f"{dst}: {res.frames} frames, {res.frames_edited} edited ({len(res.tracks)} track(s)), "
                   f"{res.edit}", err=True)
    if verbose:
        print_timings(res.stage_s, res.frames, res.wall_s, res.step_s)
    if report_dir is not None:
        _write_report(plan.src, dst, report_dir, opts.start, opts.end, opts.weights_dir, opts.device, quiet)


def _write_report(src, dst, report_dir, start, end, weights_dir, device, quiet) -> None:
    """``vidinv edit --report``: the report of ``dst`` against the frames of ``src`` it was made from."""
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.io.mux import frame_range
    from vidinv.report import run_report
    from vidinv.report.compute import ReportOptions

    window = frame_range(src, start, end)
    try:
        run_report([src], [dst], report_dir, weights_dir=weights_dir,
                   device=None if device == "auto" else device,
                   options=ReportOptions(progress=not quiet, source_start=window.start, source_stop=window.stop))
    except Exception as exc:  # the edit itself succeeded; say why the report did not
        fail(RuntimeError(f"{dst} was written, but the report failed: {exc}"))
    if not quiet:
        click.echo(f"report: {report_dir}/report.html", err=True)
