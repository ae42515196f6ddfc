"""``vidinv edit`` (see :mod:`vidinv.pipeline.edit`) and pSp's image-to-image tasks that run as the same job
with a task model (:mod:`vidinv.pipeline.tasks`): ``vidinv restore``, ``toonify``, ``anonymize``. All take a
video, an image or a folder of images, with the same checks, progress, errors and output guarantees."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from vidinv.cli.common import REPORT_MEMBERS, fail, install_signal_handlers, print_timings, progress_bar
from vidinv.cli.options import SectionedCommand, job_options, progress_options
from vidinv.edit.attributes import strength_table
from vidinv.io.images import IMAGE_EXTENSIONS
from vidinv.pipeline.edit import EditOptions, check_options, job_kind, plan_edit, run_edit, run_edit_folder
from vidinv.pipeline.segments import run_segmented
from vidinv.pipeline.tasks import AnonymizeOptions, RestoreOptions, ToonifyOptions

#: The confidence gate's options (:mod:`vidinv.face.gate`), listed together at the end of ``--help``.
GATE_FIELDS = ("gate", "gate_yaw", "gate_pitch", "gate_score", "gate_jitter", "gate_identity", "gate_fade")
#: The file ``--report DIR`` writes the per-frame gates into (when the gate is on).
GATES_FILE = "gates.json"
#: The :class:`~vidinv.pipeline.edit.EditOptions` fields offered as options, in the order of ``--help``.
EDIT_FIELDS = ("attrs", "strengths", "directions", "direction_convention", "layers", "encoder", "face", "blend",
               "mask", "batch_size", "device", "precision", "backend", "crf", "codec", "pix_fmt", "start", "end",
               "weights_dir", "fetch", "allow_hash_mismatch", "encoder_checkpoint", "from_inversion", "noise",
               "latent_smoothing", "restore", "mix_rows", "mix_alpha", "seed", "detect_upscale", "tune", "tune_steps",
               "stitch_steps", "outer_mask_dilation", "border_loss_threshold", "keyframes", "tracks", "track_attrs",
               "track_keyframes", "segments") + GATE_FIELDS
#: ``vidinv edit --help`` headings of some options (the others are listed first, under ``Options``).
EDIT_SECTIONS = (("Keyframed and per-track strengths", ("keyframes", "tracks", "track_attrs", "track_keyframes")),
                 ("Per-video tuning (Stitch it in Time)", ("tune", "tune_steps", "stitch_steps", "outer_mask_dilation",
                                                           "border_loss_threshold")),
                 ("pSp tasks", ("restore", "mix_rows", "mix_alpha", "seed")),
                 ("Confidence gate", GATE_FIELDS))
_KEYFRAMES_HELP = """Keyframed and per-track strengths: --keyframes '0:0,1.0:2' ramps every edit's strength from 0 to 2
over the first second (times in seconds on the video timeline, smoothstep-eased). --track ID edits only
that face track; --track-attr ID NAME[=S] gives a track its own attributes (repeat it for several),
--track-keyframes ID KEYS its own keyframes; faces of other tracks keep the input's pixels. With any
per-track option every face is tracked (as --face all). Track ids are those of `vidinv track IN --face
all --json t.json` (its preview draws #ID; with --start the tracker starts at the window, so ids count
from there; a named track that never appears is reported with the ids found). A scene cut ends every
track and the faces after it get new ids, so per-track settings stop at the cut.

\b
Example:
  vidinv edit clip.mp4 -o out.mp4 --track-attr 0 smile=1 \\
    --track-attr 1 age=-1 --track-keyframes 1 '0:0,1:1'"""
#: The low-resolution input ``restore --simulate-factor --report DIR`` writes into DIR.
SIMULATED_INPUT = "simulated_input.mp4"
#: The options of the task commands (``restore``, ``toonify``, ``anonymize``).
TASK_FIELDS = ("face", "detect_upscale", "blend", "mask", "mix_rows", "mix_alpha", "seed", "latent_smoothing",
               "batch_size", "device", "precision", "crf", "codec", "pix_fmt", "start", "end", "weights_dir", "fetch",
               "allow_hash_mismatch", "noise") + GATE_FIELDS


def check_files(src, dst, codec: str, directions=(), from_inversion=None, report_dir=None,
                report_members=REPORT_MEMBERS):
    """The files of `vidinv edit`, checked before any weight file is resolved or model loaded: IN is a
    readable video (OUT then a video: not IN, a --direction file or the --from-inversion export, its folder
    writable, its extension a container that holds ``codec``), a readable still image (OUT an image) or a
    folder of images (OUT a folder, :func:`vidinv.pipeline.images.plan_folder`: existing outputs refused);
    the same for the --report folder (videos only).

    Returns:
        The :class:`~vidinv.pipeline.images.FolderPlan` for a folder IN, else None.

    Raises:
        vidinv.io.outputs.InputFileError, vidinv.io.outputs.OutputPathError; InversionFormatError (export);
        click.UsageError: --report with an image or folder IN.
    """
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.io.images import check_media_io
    from vidinv.io.outputs import check_output

    inputs = [from_inversion, *directions]
    if src is None and from_inversion is not None:
        # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
        from vidinv.io.inversion import InversionReader

        src = InversionReader(from_inversion).source.get("path")
    if src is not None and Path(src).is_dir():
        # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
        from vidinv.pipeline.images import plan_folder

        if report_dir is not None:
            raise click.UsageError("--report compares videos; IN is a folder of images")
        return plan_folder(src, dst, inputs)
    if src is not None:
        kind = check_media_io(src, dst, inputs, codec=codec)
        if kind == "image" and report_dir is not None:
            raise click.UsageError("--report compares videos; IN is an image")
        inputs.append(src)
    else:
        check_output(dst, inputs, kind="video", codec=codec)
    if report_dir is not None:
        check_output(report_dir, inputs, kind="dir", members=report_members, also_written=[dst], what="report folder")
    return None


@click.command("edit", context_settings={"max_content_width": 110}, cls=SectionedCommand, sections=EDIT_SECTIONS,
               help="Edit the faces of IN and write the result to OUT: a video to a video, an image (.jpg, .png, "
                    ".webp, .tif, .bmp) to an image, a folder of images to a folder (same file names; the models "
                    "load once).\n\n" + strength_table(for_click=True) + "\n\n" + _KEYFRAMES_HELP)
@click.argument("src", required=False, type=click.Path())
@click.option("-o", "--output", "dst", required=True, type=click.Path(),
              help="Output video, image or folder (as IN).")
@job_options(EditOptions, only=EDIT_FIELDS)
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Also write the identity/quality report of the output against the input into this folder "
                   "(as `vidinv report IN OUT -o DIR`).")
@progress_options
def edit_cmd(src, dst, report_dir, quiet, verbose, **fields):
    opts = EditOptions(src=src, dst=dst, **fields)
    if src is None and opts.from_inversion is None:
        fail(click.UsageError("give the input video IN (or --from-inversion DIR)"))
    run_job_command("edit", opts, report_dir, quiet, verbose)


def run_job_command(name: str, opts: EditOptions, report_dir, quiet: bool, verbose: bool) -> None:
    """The body of ``vidinv edit`` and of the task commands (``restore``, ``toonify``, ``anonymize``: the same
    job with a pSp task model, :mod:`vidinv.pipeline.tasks`): checks before any model loads, the run on a
    video, an image or a folder, the summary line, ``-v`` timings, the ``--report``."""
    install_signal_handlers()
    src, dst = opts.src, opts.dst
    bar = folder = None
    try:
        check_options(opts)  # video-only options with an image IN, before the files
        if report_dir is not None and name == "restore" and not opts.simulate_factor:
            raise click.UsageError("--report needs --simulate-factor: restoration is measured against the "
                                   "high-resolution original (IN), degraded by that factor before restoring")
        # before any weights or models
        members = REPORT_MEMBERS + (GATES_FILE,) + ((SIMULATED_INPUT,) if name == "restore" else ())
        folder = check_files(src, dst, opts.codec, opts.directions, opts.from_inversion, report_dir, members)
        plan = plan_edit(opts, quiet=quiet)  # every file checked before any video work
        bar, update = progress_bar(quiet, name)
        if folder is not None:
            fres = run_edit_folder(opts, folder, plan=plan, progress=update, quiet=quiet)
        else:
            res = (run_segmented(opts, opts.segments, plan=plan, progress=update) if opts.segments > 1 else
                   run_edit(opts, plan=plan, progress=update, quiet=quiet))
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        click.echo("vidinv: interrupted; " + ("the images done so far are written" if folder is not None
                                              else "no output written"), err=True)
        sys.exit(130)
    except Exception as exc:  # one-line reason, exit != 0
        if bar is not None:
            bar.close()
        fail(exc)
    if bar is not None:
        bar.close()
    if folder is not None:
        for line in fres.summary_lines():
            click.echo(line, err=True)
        if fres.failed:
            fail(RuntimeError(f"{len(fres.failed)} of {len(fres.outcomes)} images failed (listed above)"))
        return
    what = res.edit if name == "edit" else f"{name} ({job_kind(opts)})" + (f" x{opts.scale}" if opts.scale != 1
                                                                            else "")
    if res.passthrough:
        click.echo(f"no face found: {dst} is a copy of the input", err=True)
    elif not quiet and res.frames == 1 and Path(dst).suffix.lower() in IMAGE_EXTENSIONS:
        click.echo(f"{dst}: {res.faces_edited} face(s) {'edited' if name == 'edit' else 'done'}, {what}", err=True)
    elif not quiet:
        click.echo(f"{dst}: {res.frames} frames, {res.frames_edited} with a face ({len(res.tracks)} track(s)), "
                   f"{what}", err=True)
    if res.tune and not quiet:
        click.echo(tune_line(res.tune), err=True)
    if verbose:
        print_timings(res.stage_s, res.frames, res.wall_s, res.step_s)
    if report_dir is not None:
        if res.gate is not None:
            _write_gates(Path(report_dir) / GATES_FILE, opts, res)
        if name == "restore":
            _restoration_report(plan.src, dst, report_dir, opts, quiet)
        else:
            _write_report(plan.src, dst, report_dir, opts.start, opts.end, opts.weights_dir, opts.device, quiet)


def tune_line(t: dict) -> str:
    """One line on what per-video tuning did (``EditResult.tune`` / ``InvertResult.tune``)."""
    parts = []
    if t.get("updates"):
        parts.append(f"pivotal tuning {t['steps']} pass(es) x {t['faces']} face(s) = {t['updates']} updates in "
                     f"{t['seconds']:.1f} s ({t['seconds_per_update']:.2f} s/update), loss {t['first_loss']:.4f} -> "
                     f"{t['last_loss']:.4f}")
    if t.get("stitch_faces"):
        parts.append(f"stitching tuning {t['stitch_faces']} face(s) in {t['stitch_seconds']:.1f} s, border loss "
                     f"{t['border_loss_first']:.4f} -> {t['border_loss_last']:.4f}")
    return "tuning: " + "; ".join(parts) if parts else "tuning: the export's tuned generator"


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


@click.command("restore", context_settings={"max_content_width": 110}, help=_RESTORE_HELP)
@click.argument("src", type=click.Path())
@click.option("-o", "--output", "dst", required=True, type=click.Path(),
              help="Output video, image or folder (as IN).")
@job_options(RestoreOptions, only=("scale", "simulate_factor") + TASK_FIELDS)
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="With --simulate-factor: write the restoration report (PSNR, SSIM, LPIPS, identity similarity "
                   "to IN) into this folder.")
@progress_options
def restore_cmd(src, dst, report_dir, quiet, verbose, **fields):
    run_job_command("restore", RestoreOptions(src=src, dst=dst, **fields), report_dir, quiet, verbose)


@click.command("toonify", context_settings={"max_content_width": 110}, help=_TOONIFY_HELP)
@click.argument("src", type=click.Path())
@click.option("-o", "--output", "dst", required=True, type=click.Path(),
              help="Output video, image or folder (as IN).")
@job_options(ToonifyOptions, only=("attrs", "strengths") + TASK_FIELDS)
@progress_options
def toonify_cmd(src, dst, quiet, verbose, **fields):
    run_job_command("toonify", ToonifyOptions(src=src, dst=dst, **fields), None, quiet, verbose)


@click.command("anonymize", context_settings={"max_content_width": 110}, help=_ANONYMIZE_HELP)
@click.argument("src", type=click.Path())
@click.option("-o", "--output", "dst", required=True, type=click.Path(),
              help="Output video, image or folder (as IN).")
@job_options(AnonymizeOptions, only=TASK_FIELDS)
@progress_options
def anonymize_cmd(src, dst, quiet, verbose, **fields):
    run_job_command("anonymize", AnonymizeOptions(src=src, dst=dst, **fields), None, quiet, verbose)


def _restoration_report(src, dst, report_dir, opts, quiet: bool) -> None:
    """``vidinv restore --simulate-factor K --report DIR``: the low-resolution input the model was given is
    written to ``DIR/simulated_input.mp4`` (:func:`vidinv.pipeline.tasks.write_simulated_input`), then the
    report of ``dst`` with the restoration table against the high-resolution ``src`` (``vidinv report
    DIR/simulated_input.mp4 OUT --reference IN``: PSNR, SSIM, LPIPS, identity similarity of the restored
    and of the bicubic up-scaled faces, :func:`vidinv.report.restoration.restoration_metrics`)."""
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from pathlib import Path

    from vidinv.io.mux import frame_range
    from vidinv.pipeline.tasks import write_simulated_input
    from vidinv.report import run_report
    from vidinv.report.compute import ReportOptions
    from vidinv.report.summary import restoration_lines

    window = frame_range(src, opts.start, opts.end)
    try:  # the simulated input from frame 0 (same frame numbers as IN), the window compared
        low = write_simulated_input(src, Path(report_dir) / SIMULATED_INPUT, int(opts.simulate_factor),
                                    end=opts.end, crf=opts.crf, codec=opts.codec)
        doc = run_report([low], [dst], report_dir, weights_dir=opts.weights_dir,
                         device=None if opts.device == "auto" else opts.device,
                         options=ReportOptions(progress=not quiet, source_start=window.start,
                                               source_stop=window.stop),
                         reference=src, echo=lambda m: click.echo(m, err=True) if not quiet else None)
    except Exception as exc:  # the restoration itself succeeded; say why the report did not
        fail(RuntimeError(f"{dst} was written, but the report failed: {exc}"))
    for line in restoration_lines(doc):
        click.echo(line)
    if not quiet:
        click.echo(f"report: {report_dir}/report.html", err=True)


def _write_gates(path: Path, opts: EditOptions, res) -> None:
    """``--report DIR`` with the gate on: ``DIR/gates.json``, the gate's settings and, per frame with a face,
    each face's gate (faded), raw gate, limiting component, components and measures
    (:func:`vidinv.pipeline.gating.gate_record`), and a summary per track (frames, mean gate, frames
    with the gate closed / partly open)."""
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    import json

    from vidinv.io.outputs import atomic_write_text

    tracks: dict[int, list[float]] = {}
    for fr in res.gates:
        for f in fr["faces"]:
            tracks.setdefault(f["track_id"], []).append(f["gate"] if f["gate"] is not None else 0.0)
    summary = {str(t): {"frames": len(v), "mean_gate": round(sum(v) / len(v), 4),
                        "closed": sum(1 for g in v if g <= 0.0), "partial": sum(1 for g in v if 0.0 < g < 1.0)}
               for t, v in sorted(tracks.items())}
    doc = {"video": str(opts.src), "output": str(opts.dst), "settings": res.gate, "tracks": summary,
           "units": "gate: blend weight factor in [0, 1] (faded); raw: before the fade; measures: yaw/pitch/roll "
                    "degrees, score_drop dlib HOG margin, jitter interocular distances, identity_distance dlib "
                    "descriptor distance",
           "frames": res.gates}
    atomic_write_text(path, json.dumps(doc))


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
