"""``vidinv edit``: edit the faces of a video (see :mod:`vidinv.pipeline.edit`)."""
from __future__ import annotations

import sys

import click

from vidinv.cli.common import REPORT_MEMBERS, fail, install_signal_handlers, print_timings, progress_bar
from vidinv.edit.attributes import strength_table


def check_files(src, dst, codec: str, directions=(), from_inversion=None, report_dir=None) -> None:
    """The files of `vidinv edit`, checked before any weight file is resolved or model loaded: IN is a
    readable video; OUT is not (and would not replace) IN, a --direction file or the --from-inversion
    export, its folder is writable and its extension a container that holds ``codec``; the same for the
    --report folder.

    Raises:
        vidinv.io.outputs.InputFileError, vidinv.io.outputs.OutputPathError; InversionFormatError (export).
    """
    from pathlib import Path

    from vidinv.io.outputs import check_output, check_video_input

    inputs = [from_inversion, *directions]
    if src is None and from_inversion is not None:
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
@click.option("--attr", "attrs", multiple=True, help="Attribute NAME[=S][@ROWS] (repeatable), e.g. smile, stit:age.")
@click.option("--strength", "strengths", multiple=True, type=float,
              help="Strength per --attr then --direction, in order (one value: for all). Default 1.")
@click.option("--direction", "directions", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Your own direction file (.npy / .pt; repeatable).")
@click.option("--direction-convention", type=click.Choice(["fs", "unit", "raw"]), default="unit", show_default=True,
              help="How --direction files turn a strength into dw (see above).")
@click.option("--layers", default=None, help="Style rows to edit, e.g. 0-7 (default all).")
@click.option("--encoder", type=click.Choice(["fs", "psp"]), default="fs", show_default=True)
@click.option("--face", type=click.Choice(["largest", "all"]), default="largest", show_default=True)
@click.option("--blend", type=click.Choice(["alpha", "poisson"]), default="alpha", show_default=True)
@click.option("--mask", type=click.Choice(["auto", "parsing", "landmarks"]), default="auto", show_default=True,
              help="Blend mask: BiSeNet parsing (79999_iter.pth) or landmarks; auto = parsing when present.")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Faces per encoder/generator batch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N].")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True,
              help="fp16/bf16: autocast on CUDA only.")
@click.option("--crf", type=int, default=18, show_default=True)
@click.option("--codec", default="libx264", show_default=True)
@click.option("--pix-fmt", default=None, help="Output pixel format (default: the input's).")
@click.option("--start", type=float, default=None, help="Start of the window to process (seconds).")
@click.option("--end", type=float, default=None, help="End of the window (seconds, exclusive).")
@click.option("--weights-dir", type=click.Path(file_okay=False), default=None, help="Folder of weight files.")
@click.option("--fetch/--no-fetch", default=False, show_default=True, help="Download missing weight files.")
@click.option("--allow-hash-mismatch", is_flag=True, default=False,
              help="Accept a --weights-dir file whose sha256 differs from the registry's (default: an error naming "
                   "both hashes); also VIDINV_ALLOW_HASH_MISMATCH=1.")
@click.option("--encoder-checkpoint", type=click.Path(dir_okay=False), default=None,
              help="An encoder you trained with `vidinv train` (its exported file, e.g. run_fs_encoder.pth) instead of "
                   "the official one of --encoder.")
@click.option("--from-inversion", type=click.Path(file_okay=False), default=None,
              help="Re-render from a `vidinv invert` export (IN defaults to its source video).")
@click.option("--noise", type=click.Choice(["const", "random"]), default="const", show_default=True)
@click.option("--latent-smoothing", type=float, default=0.0, show_default=True,
              help="Temporal Gaussian sigma (frames) on w and F per track; 0 = off.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Also write the identity/quality report of the output against the input into this folder "
                   "(as `vidinv report IN OUT -o DIR`).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("-v", "--verbose", is_flag=True, help="Per-stage timings at the end.")
def edit_cmd(src, dst, attrs, strengths, directions, direction_convention, layers, encoder, face, blend, mask,
             batch_size, device, precision, crf, codec, pix_fmt, start, end, weights_dir, fetch, allow_hash_mismatch,
             encoder_checkpoint, from_inversion, noise, latent_smoothing, report_dir, quiet, verbose):
    from vidinv.pipeline.edit import EditOptions, plan_edit, run_edit

    install_signal_handlers()
    opts = EditOptions(src=src, dst=dst, attrs=attrs, strengths=strengths, directions=directions,
                       direction_convention=direction_convention, layers=layers, encoder=encoder, face=face,
                       blend=blend, mask=mask, batch_size=batch_size, device=device, precision=precision, crf=crf,
                       codec=codec, pix_fmt=pix_fmt, start=start, end=end, weights_dir=weights_dir, fetch=fetch,
                       allow_hash_mismatch=allow_hash_mismatch, encoder_checkpoint=encoder_checkpoint,
                       from_inversion=from_inversion, noise=noise, latent_smoothing=latent_smoothing)
    if src is None and from_inversion is None:
        fail(click.UsageError("give the input video IN (or --from-inversion DIR)"))
    bar = None
    try:
        check_files(src, dst, codec, directions, from_inversion, report_dir)  # before any weights or models
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
        _write_report(plan.src, dst, report_dir, start, end, weights_dir, device, quiet)


def _write_report(src, dst, report_dir, start, end, weights_dir, device, quiet) -> None:
    """``vidinv edit --report``: the report of ``dst`` against the frames of ``src`` it was made from."""
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
