"""``vidinv frontalize``: per face track, pSp's frontalized faces as a video (see :mod:`vidinv.pipeline.frontalize`)."""
from __future__ import annotations

from pathlib import Path

import click

from vidinv.cli.common import fail, install_signal_handlers, print_timings, progress_bar
from vidinv.cli.options import job_options, progress_options
from vidinv.io.outputs import check_output, check_video_input
from vidinv.pipeline.frontalize import FrontalizeOptions, check_frontalize_options, run_frontalize

_FRONTALIZE_HELP = """Frontalize the faces of IN with pSp's frontalization model: per face track, the frontal
aligned faces as a video with the input's timestamps, written to OUT (a .mp4: one track) or to a
folder (track_<id>.mp4 per track, frames.json, and PNGs with --frames).

psp_ffhq_frontalization.pt (Richardson et al., CVPR 2021, section 4.2). Licence: non-commercial
(see `vidinv weights list`).

Example: vidinv frontalize interview.mp4 -o fronts/ --frames
"""




@click.command("frontalize", context_settings={"max_content_width": 110}, help=_FRONTALIZE_HELP)
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(),
              help="A .mp4 (one track) or a folder (one video per track).")
@job_options(FrontalizeOptions, only=("image_size", "frames", "face", "detect_upscale", "mix_rows", "mix_alpha", "seed",
                                      "latent_smoothing", "batch_size", "device", "precision", "crf", "start", "end",
                                      "weights_dir", "fetch", "allow_hash_mismatch", "noise"))
@progress_options
def frontalize_cmd(src, dst, quiet, verbose, **fields):
    install_signal_handlers()
    opts = FrontalizeOptions(src=src, dst=dst, **fields)
    bar = None
    try:
        check_video_input(src)
        if Path(dst).suffix:
            check_output(dst, [src], kind="video", codec="libx264")
        else:
            check_output(dst, [src], kind="dir", members=("track_*", "frames.json"))
        check_frontalize_options(opts)
        bar, update = progress_bar(quiet, "frontalize")
        res = run_frontalize(opts, progress=update, quiet=quiet)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        click.echo("vidinv: interrupted; no output written", err=True)
        raise SystemExit(130) from None
    except Exception as exc:  # one-line reason, exit != 0
        if bar is not None:
            bar.close()
        fail(exc)
    if bar is not None:
        bar.close()
    if not quiet:
        tracks = ", ".join(f"track {t}: {n} faces" for t, n in res.tracks.items())
        click.echo(f"{dst}: {res.frames} frames read, {tracks}", err=True)
    if verbose:
        print_timings(res.stage_s, res.frames, res.wall_s)
