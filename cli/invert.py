"""``vidinv invert``: invert the faces of a video into an export folder (see :mod:`vidinv.pipeline.invert`)."""
from __future__ import annotations

import sys

import click

from vidinv.cli.common import fail, install_signal_handlers, print_timings, progress_bar
from vidinv.cli.options import job_options, progress_options
from vidinv.pipeline.invert import InvertOptions, run_invert

#: What an export folder holds (vidinv.io.inversion): an input there would be replaced.
EXPORT_MEMBERS = ("manifest.json", "chunks", "images")

#: The :class:`~vidinv.pipeline.invert.InvertOptions` fields offered as options, in the order of ``--help``.
INVERT_FIELDS = ("encoder", "face", "batch_size", "device", "precision", "start", "end", "weights_dir", "fetch",
                 "allow_hash_mismatch", "encoder_checkpoint", "save_crops", "save_recon", "image_size", "overwrite",
                 "resume", "tune", "tune_steps")


def check_files(src, dst) -> None:
    """The files of `vidinv invert`, checked before any weight file is resolved or model loaded: SRC is a
    readable video; the export folder OUT is not SRC, does not resolve to it, would not replace it (SRC
    inside OUT's manifest.json / chunks / images) and can be written.

    Raises:
        vidinv.io.outputs.InputFileError, vidinv.io.outputs.OutputPathError.
    """
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.io.outputs import check_output, check_video_input

    check_video_input(src)
    check_output(dst, [src], kind="dir", members=EXPORT_MEMBERS, what="export folder")


@click.command("invert")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(file_okay=False), help="Export folder.")
@job_options(InvertOptions, only=INVERT_FIELDS)
@progress_options
def invert_cmd(src, dst, quiet, verbose, **fields):
    """Invert every tracked face of video SRC into the export folder OUT (w, F, quads per frame).

    With --tune pti the generator is then tuned on the clip's faces (Stitch it in Time's pivotal tuning) and
    saved in OUT as tuned_generator.pt; `vidinv edit --from-inversion OUT` renders with it.
    """
    install_signal_handlers()
    opts = InvertOptions(src=src, dst=dst, **fields)
    try:
        check_files(src, dst)  # before any weights or models
    except Exception as exc:
        fail(exc)
    bar, update = progress_bar(quiet, "invert")
    try:
        res = run_invert(opts, progress=update, quiet=quiet)
    except KeyboardInterrupt:
        click.echo("vidinv: interrupted; the export is left incomplete: continue it with the same command and "
                   "--resume", err=True)
        sys.exit(130)
    except Exception as exc:
        fail(exc)
    finally:
        if bar is not None:
            bar.close()
    if not quiet:
        again = "" if res.resumed_from is None else f" (resumed at frame {res.resumed_from}: {res.records_new} new)"
        click.echo(f"{dst}: {res.records} record(s){again} over {res.frames} frames, {len(res.tracks)} track(s)",
                   err=True)
    if res.tuned_path is not None:
        t = res.tune
        click.echo(f"tuned generator: {res.tuned_path} ({res.tuned_bytes / 2 ** 20:.1f} MiB), {t['steps']} pass(es) x "
                   f"{t['faces']} face(s) = {t['updates']} updates in {t['seconds']:.1f} s "
                   f"({t['seconds_per_update']:.2f} s/update)")
    if verbose:
        print_timings(res.stage_s, res.frames, res.wall_s)
