"""``vidinv report SOURCE [OUTPUT ...] -o DIR``: identity-consistency and quality report of face videos."""
from __future__ import annotations

from pathlib import Path

import click

from vidinv.cli.common import REPORT_MEMBERS, fail, one_line_errors


def check_files(source: str, outputs, out_dir, reference: str | None = None) -> None:
    """The files of `vidinv report`, checked before any network is loaded: every video SOURCE and OUTPUT
    name (files, folders, globs) and the --reference video are readable, and the report folder does not
    replace any of them (a video named report.json/report.html/*.png in it) or resolve to one, and can be
    written. (With --reference, :func:`vidinv.report.run.run_report` then checks that the reference, the
    outputs and the source correspond, also before loading any network.)

    Raises:
        vidinv.report.InputError, vidinv.io.outputs.InputFileError, vidinv.io.outputs.OutputPathError.
    """
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.io.outputs import check_output, check_video_input
    from vidinv.report.inputs import expand_videos

    videos = [v for spec in (source, *outputs) for v in expand_videos(spec)]
    for v in videos:
        check_video_input(v)
    if reference is not None:
        videos.append(check_video_input(reference, what="reference video"))
    check_output(out_dir, videos, kind="dir", members=REPORT_MEMBERS, what="report folder")


@click.command("report")
@click.argument("source")
@click.argument("outputs", nargs=-1)
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("report"),
              show_default=True, help="Folder for report.json, the PNG plots and report.html.")
@click.option("--embedder", "embedders", multiple=True, type=click.Choice(["auto", "dlib", "arcface"]),
              default=("auto",), show_default=True,
              help="Identity network(s). auto = dlib (offline) plus ArcFace IResNet-50 when backbone.pth is "
                   "present. Repeat to use several.")
@click.option("--weights-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of hand-placed weight files, searched before the cache.")
@click.option("--lpips/--no-lpips", "lpips", default=None,
              help="Require / skip LPIPS (default: reported when its backbone weights are cached).")
@click.option("--crop-size", type=click.IntRange(32, 1024), default=256, show_default=True,
              help="Side of the aligned face crops for MSE/PSNR/SSIM/LPIPS and flicker.")
@click.option("--stride", type=click.IntRange(1), default=1, show_default=True,
              help="Analyse every N-th frame only (faster; temporal metrics then compare frames N apart).")
@click.option("--max-frames", type=click.IntRange(1), default=None,
              help="Analyse at most this many frames per video.")
@click.option("--source-start", type=click.IntRange(0), default=0, show_default=True,
              help="First source frame (compared with output frame 0), e.g. the start of an edited window.")
@click.option("--source-end", type=click.IntRange(1), default=None,
              help="Source frames from --source-start up to this one (exclusive).")
@click.option("--detector", type=click.Choice(["dlib", "fan"]), default="dlib", show_default=True,
              help="Landmark detector of the face front-end.")
@click.option("--detect-size", type=click.IntRange(160), default=None,
              help="dlib detector: longest side of the image its face scan runs at (default 960). 640 is about "
                   "twice as fast but misses faces smaller than ~120 px in 1080p video.")
@click.option("--cnn-fallback/--no-cnn-fallback", default=False, show_default=True,
              help="dlib detector: run dlib's CNN face detector on frames where HOG finds no face. Off by "
                   "default because a report often measures outputs that lost their face, where the CNN would "
                   "run on every frame at 2-4 s/frame on CPU (HOG: ~0.1 s); the summary says how many frames "
                   "HOG missed, so turn it on for footage with turned or dark faces. The summary and "
                   "report.json (videos[].detection) count the frames it ran on.")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="High-resolution original of a restoration (e.g. HR.mp4 for `vidinv restore`): each OUTPUT is "
                   "measured against it on FFHQ-aligned 256x256 face crops (PSNR, SSIM, LPIPS, identity similarity; "
                   "pSp's super-resolution protocol), next to SOURCE up-scaled bicubically (the baseline). OUTPUT "
                   "may be any multiple of the reference size; aspect ratio, frame rate and frames must correspond.")
@click.option("--device", default=None, help="Torch device for ArcFace / LPIPS (default cpu).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@one_line_errors
def report(source: str, outputs: tuple[str, ...], out_dir: Path, embedders: tuple[str, ...], weights_dir: Path | None,
           lpips: bool | None, crop_size: int, stride: int, max_frames: int | None, source_start: int,
           source_end: int | None, detector: str, detect_size: int | None, cnn_fallback: bool, reference: str | None,
           device: str | None, quiet: bool) -> None:
    """Measure whether edited videos kept the person recognisable and stable.

    SOURCE is the original video (or a folder of videos, or a quoted glob such as "clips/*.mp4");
    each OUTPUT (files, folders or globs) is an edited/reconstructed version compared frame by frame with
    its source (with several sources, outputs are matched by name: SRC.mp4 <- SRC_anything.mp4).

    Per frame and per video: identity similarity source vs output, identity consistency (Feature-Style
    eq. 9) of source and output, TL-ID / TG-ID (Stitch it in Time's definition: mean over frame pairs of
    the output's similarity divided by the source's), MSE / PSNR / SSIM / LPIPS of the aligned face crops,
    PSNR / SSIM of the background outside the blend mask, and face-region flicker. Frames without a face
    are excluded from identity metrics and listed. Writes DIR/report.json, DIR/report.html
    (self-contained) and PNG plots; prints the time per frame.

    With --reference HR.mp4 (SOURCE = the low-resolution input, OUTPUT = the restored video), also the
    restoration table: PSNR / SSIM / LPIPS / identity similarity of the restored faces and of the bicubic
    up-scaled SOURCE against the reference's faces.

    \b
    TL-ID / TG-ID here come from the identity network named in the summary on aligned face crops; STIT
    used insightface on full frames, so they are not directly the paper's numbers.
    """
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.face.detect import DetectorUnavailableError
    from vidinv.metrics.identity import EmbedderUnavailable
    from vidinv.metrics.image import LPIPSUnavailable
    from vidinv.report import InputError, summary_lines

    try:
        doc = run_report_command(source, outputs, out_dir, embedders=embedders, weights_dir=weights_dir, lpips=lpips,
                                 crop_size=crop_size, stride=stride, max_frames=max_frames, source_start=source_start,
                                 source_end=source_end, detector=detector, detect_size=detect_size,
                                 cnn_fallback=cnn_fallback, reference=reference, device=device, quiet=quiet,
                                 echo=lambda m: click.echo(m, err=True))
    except (InputError, EmbedderUnavailable, LPIPSUnavailable, DetectorUnavailableError, FileNotFoundError,
            ValueError) as e:
        fail(e)
    for line in summary_lines(doc):
        click.echo(line)


def run_report_command(source: str, outputs, out_dir, *, embedders, weights_dir, lpips, crop_size, stride, max_frames,
                       source_start, source_end, detector, detect_size, cnn_fallback, reference, device, quiet,
                       echo=None) -> dict:
    """The work of ``vidinv report`` (also a ``vidinv batch`` job): :func:`check_files`, then
    :func:`vidinv.report.run_report`; the arguments are the command's parameters (see ``vidinv report
    --help``), ``echo`` receives the progress messages.

    Returns:
        The report document (what ``DIR/report.json`` holds).

    Raises:
        What :func:`check_files` and :func:`vidinv.report.run_report` raise.
    """
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.report import ReportOptions, run_report

    opts = ReportOptions(crop_size=crop_size, stride=stride, max_frames=max_frames, progress=not quiet,
                         source_start=source_start, source_stop=source_end)
    check_files(source, outputs, out_dir, reference)
    return run_report([source], list(outputs), out_dir, embedder_keys=embedders, weights_dir=weights_dir,
                      device=device, options=opts, lpips=lpips, detector=detector, detect_size=detect_size,
                      cnn_fallback=cnn_fallback, echo=echo or (lambda m: None), reference=reference)
