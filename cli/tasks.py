"""``vidinv restore`` / ``toonify`` / ``anonymize``: pSp's image-to-image tasks on video (and images).

Each command is the ``vidinv edit`` job run with the task's pSp model (:mod:`vidinv.pipeline.tasks`), so
it has the same input/output checks, progress, errors and output guarantees (timestamps, audio, frames
without a face untouched).
"""
from __future__ import annotations

from pathlib import Path

import click

from vidinv.cli.common import REPORT_MEMBERS, fail, install_signal_handlers, print_timings, progress_bar
from vidinv.cli.options import job_options, progress_options
from vidinv.io.outputs import check_output, check_video_input
from vidinv.pipeline.edit import plan_edit, run_edit
from vidinv.pipeline.frontalize import FrontalizeOptions, check_frontalize_options, run_frontalize
from vidinv.pipeline.tasks import TASK_OPTIONS, AnonymizeOptions, RestoreOptions, ToonifyOptions

#: The options every task command offers (fields of :class:`vidinv.pipeline.edit.EditOptions`).
TASK_FIELDS = ("face", "blend", "mask", "mix_rows", "mix_alpha", "seed", "latent_smoothing", "batch_size", "device",
               "precision", "crf", "codec", "pix_fmt", "start", "end", "weights_dir", "fetch", "allow_hash_mismatch",
               "noise")

_RESTORE_HELP = """Restore the faces of IN (a low-resolution or compressed video or image) with pSp's face
super-resolution model and write OUT, its frames up-scaled by --scale.

Each tracked face is aligned at its native resolution, resized to 256 and encoded by the model
(psp_celebs_super_resolution.pt: Richardson et al., CVPR 2021; trained on CelebA-HQ faces down-sampled
x1..x32); the 1024 face it renders is blended into the frame up-scaled with Lanczos. Timestamps and
audio are kept. --simulate-factor K first degrades a high-resolution input as the paper's evaluation
does; with --report DIR the restoration table (PSNR, SSIM, LPIPS, identity similarity to the
original) is written too. Licence: non-commercial (see `vidinv weights list`).

Example: vidinv restore old_interview.mp4 -o restored.mp4 --scale 4
"""

_TOONIFY_HELP = """Toonify the faces of IN with pSp's toonify model and write OUT (faces blended back as `vidinv edit`).

psp_ffhq_toonify.pt: pSp's FFHQ encoder into the toon StyleGAN2 generator of Doron Adler and Justin
Pinkney. Licence: non-commercial (see `vidinv weights list`).

Example: vidinv toonify clip.mp4 -o toon.mp4
"""


_ANONYMIZE_HELP = """Anonymize every tracked face of IN: replace it by a synthetic face that keeps its expression and
layout but not its identity, and write OUT (faces blended back as `vidinv edit`).

Each aligned face is parsed by BiSeNet (79999_iter.pth), its label map (CelebAMask-HQ's 19 classes)
is turned into a face by pSp's segmentation-to-face model (psp_celebs_seg_to_face.pt), whose fine
styles (--mix-rows 8-17) come from one random style per track (--seed), fixed for the whole clip.
Check the result with `vidinv report IN OUT`: identity similarity to the source should fall below the
verification threshold. Licence: non-commercial (CelebAMask-HQ, FFHQ; see `vidinv weights list`).

Example: vidinv anonymize street.mp4 -o anonymous.mp4 --face all --seed 3
"""


def _run_task(name: str, src, dst, report_dir, quiet: bool, verbose: bool, fields: dict) -> None:
    """The body of a task command: checks before any model loads, then the job (see the module doc)."""
    install_signal_handlers()
    opts = TASK_OPTIONS[name](src=src, dst=dst, **fields)
    bar = None
    try:
        check_video_input(src)
        check_output(dst, [src], kind="video", codec=opts.codec)
        if report_dir is not None:
            if not opts.simulate_factor:
                raise click.UsageError("--report needs --simulate-factor: restoration is measured against the "
                                       "high-resolution original (IN), degraded by that factor before restoring")
            check_output(report_dir, [src], kind="dir", members=REPORT_MEMBERS, also_written=[dst],
                         what="report folder")
        plan = plan_edit(opts, quiet=quiet)
        bar, update = progress_bar(quiet, name)
        res = run_edit(opts, plan=plan, progress=update, quiet=quiet)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        click.echo("vidinv: interrupted; no output written", err=True)
        raise SystemExit(130) from None
    except click.ClickException:
        raise
    except Exception as exc:  # one-line reason, exit != 0
        if bar is not None:
            bar.close()
        fail(exc)
    if bar is not None:
        bar.close()
    if not quiet:
        click.echo(f"{dst}: {res.frames} frames, {res.frames_edited} with a face ({len(res.tracks)} track(s)), "
                   f"{name} with {opts.encoder}" + (f", x{opts.scale}" if opts.scale != 1 else ""), err=True)
    if verbose:
        print_timings(res.stage_s, res.frames, res.wall_s, res.step_s)
    if report_dir is not None:
        _restoration_report(src, dst, report_dir, opts, quiet)


def _restoration_report(src, dst, report_dir, opts, quiet: bool) -> None:
    """``vidinv restore --simulate-factor K --report DIR``: the restoration table of ``dst`` against ``src``."""
    raise NotImplementedError


@click.command("restore", context_settings={"max_content_width": 110}, help=_RESTORE_HELP)
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False), help="Output video.")
@job_options(RestoreOptions, only=("scale", "simulate_factor") + TASK_FIELDS)
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="With --simulate-factor: write the restoration report (PSNR, SSIM, LPIPS, identity similarity "
                   "to IN) into this folder.")
@progress_options
def restore_cmd(src, dst, report_dir, quiet, verbose, **fields):
    _run_task("restore", src, dst, report_dir, quiet, verbose, fields)


@click.command("toonify", context_settings={"max_content_width": 110}, help=_TOONIFY_HELP)
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False), help="Output video.")
@job_options(ToonifyOptions, only=("attrs", "strengths") + TASK_FIELDS)
@progress_options
def toonify_cmd(src, dst, quiet, verbose, **fields):
    _run_task("toonify", src, dst, None, quiet, verbose, fields)


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
@job_options(FrontalizeOptions, only=("image_size", "frames", "face", "mix_rows", "mix_alpha", "seed",
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


@click.command("anonymize", context_settings={"max_content_width": 110}, help=_ANONYMIZE_HELP)
@click.argument("src", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False), help="Output video.")
@job_options(AnonymizeOptions, only=TASK_FIELDS)
@progress_options
def anonymize_cmd(src, dst, quiet, verbose, **fields):
    _run_task("anonymize", src, dst, None, quiet, verbose, fields)
