"""``vidinv invert``: invert the faces of a video into an export folder (see :mod:`vidinv.pipeline.invert`)."""
from __future__ import annotations

import sys

import click

from vidinv.cli.common import fail, install_signal_handlers, print_timings, progress_bar

#: What an export folder holds (vidinv.io.inversion): an input there would be replaced.
EXPORT_MEMBERS = ("manifest.json", "chunks", "images")


def check_files(src, dst) -> None:
    """The files of `vidinv invert`, checked before any weight file is resolved or model loaded: SRC is a
    readable video; the export folder OUT is not SRC, does not resolve to it, would not replace it (SRC
    inside OUT's manifest.json / chunks / images) and can be written.

    Raises:
        vidinv.io.outputs.InputFileError, vidinv.io.outputs.OutputPathError.
    """
    from vidinv.io.outputs import check_output, check_video_input

    check_video_input(src)
    check_output(dst, [src], kind="dir", members=EXPORT_MEMBERS, what="export folder")


@click.command("invert")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(file_okay=False), help="Export folder.")
@click.option("--encoder", type=click.Choice(["fs", "psp"]), default="fs", show_default=True)
@click.option("--face", type=click.Choice(["largest", "all"]), default="largest", show_default=True)
@click.option("--batch-size", type=int, default=4, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16"]), default="fp32", show_default=True)
@click.option("--start", type=float, default=None, help="Start of the window (seconds).")
@click.option("--end", type=float, default=None, help="End of the window (seconds, exclusive).")
@click.option("--weights-dir", type=click.Path(file_okay=False), default=None)
@click.option("--fetch/--no-fetch", default=False, show_default=True)
@click.option("--allow-hash-mismatch", is_flag=True, default=False,
              help="Accept a --weights-dir file whose sha256 differs from the registry's (default: an error naming "
                   "both hashes); also VIDINV_ALLOW_HASH_MISMATCH=1.")
@click.option("--encoder-checkpoint", type=click.Path(dir_okay=False), default=None,
              help="An encoder you trained with `vidinv train` (its exported file, e.g. run_fs_encoder.pth) instead of "
                   "the official one of --encoder.")
@click.option("--save-crops", is_flag=True, help="Also store each aligned crop as PNG.")
@click.option("--save-reconstructions", "save_recon", is_flag=True, help="Also store each reconstruction G(w, F).")
@click.option("--image-size", type=int, default=256, show_default=True, help="Side of the PNGs.")
@click.option("--overwrite", is_flag=True, help="Replace an existing export.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted export in OUT from its last completed chunk (same video, models "
                   "and options as the first run; the result equals one uninterrupted run).")
@click.option("-q", "--quiet", is_flag=True)
@click.option("-v", "--verbose", is_flag=True, help="Per-stage timings at the end.")
def invert_cmd(src, dst, encoder, face, batch_size, device, precision, start, end, weights_dir, fetch,
               allow_hash_mismatch, encoder_checkpoint, save_crops,
               save_recon, image_size, overwrite, resume, quiet, verbose):
    """Invert every tracked face of video SRC into the export folder OUT (w, F, quads per frame)."""
    from vidinv.pipeline.invert import InvertOptions, run_invert

    install_signal_handlers()
    opts = InvertOptions(src=src, dst=dst, encoder=encoder, face=face, batch_size=batch_size, device=device,
                         precision=precision, start=start, end=end, weights_dir=weights_dir, fetch=fetch,
                         allow_hash_mismatch=allow_hash_mismatch, encoder_checkpoint=encoder_checkpoint,
                         save_crops=save_crops, save_recon=save_recon, image_size=image_size, overwrite=overwrite,
                         resume=resume)
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
    if verbose:
        print_timings(res.stage_s, res.frames, res.wall_s)
