"""Running a report: videos in, ``report.json`` + PNG plots + ``report.html`` out (:func:`run_report`).

Steps: expand the inputs and pair outputs with sources (:mod:`vidinv.report.inputs`); choose the identity
networks and LPIPS; build the face front-end; analyse every source and compare every output with it
(:mod:`vidinv.report.compute`); build the document (:mod:`vidinv.report.document`), plot it
(:func:`vidinv.report.plots.plot_document`) and write it (:func:`write_outputs`).
"""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vidinv.face.detect import DlibLandmarkDetector
from vidinv.face.frontend import FaceFrontEnd
from vidinv.face.tracking import Tracker
from vidinv.io.outputs import atomic_write_text, json_safe
from vidinv.metrics.identity import select_embedders
from vidinv.metrics.image import LPIPSMetric, LPIPSUnavailable
from vidinv.report.compute import PairAnalysis, ReportOptions, VideoAnalysis, analyse_video, compare_videos
from vidinv.report.document import build_document
from vidinv.report.html import render_html
from vidinv.report.inputs import InputError, expand_videos, pair_outputs
from vidinv.report.plots import plot_document
from vidinv.report.restoration import RestorationResult, check_restoration_inputs, restoration_metrics
from vidinv.report.schema import validate
from vidinv.report.summary import timing_line

__all__ = ["run_report", "write_outputs"]


def write_outputs(out_dir: Path, doc: dict) -> tuple[Path, Path]:
    """Validate ``doc`` (JSON form) and write ``report.json`` and ``report.html`` into ``out_dir``
    (where its plots already are). Returns both paths.

    Raises:
        SchemaError: the document does not match the schema (a bug).
    """
    validate(doc)
    jpath = out_dir / "report.json"
    atomic_write_text(jpath, json.dumps(doc, indent=1, allow_nan=False) + "\n")
    hpath = out_dir / "report.html"
    atomic_write_text(hpath, render_html(doc, out_dir))
    return jpath, hpath


def _lpips(have_outputs: bool, lpips: bool | None, lpips_net: str, weights_dir, device) -> tuple[Any, str | None]:
    """``(LPIPS metric or None, reason it is absent or None)`` (see :func:`run_report`'s ``lpips``)."""
    if not have_outputs:
        return None, "no output video to compare with"
    if lpips is False:
        return None, "disabled (--no-lpips)"
    try:
        return LPIPSMetric(net=lpips_net, weights_dir=weights_dir, device=device), None
    except LPIPSUnavailable as e:
        if lpips:
            raise
        return None, str(e).splitlines()[0]


def _front_end(detector: str, detect_size: int | None, cnn_fallback: bool) -> FaceFrontEnd:
    """The default front-end of a report: dlib (at ``detect_size``, CNN fallback as asked) or ``detector``."""
    if detector == "dlib":
        kw: dict[str, Any] = {"cnn_fallback": bool(cnn_fallback)}
        if detect_size is not None:
            kw["max_side"] = int(detect_size)
        return FaceFrontEnd(detector=DlibLandmarkDetector(**kw))
    return FaceFrontEnd(detector=detector)


def _settings(fe, device) -> dict:
    """The document's front-end and device settings."""
    return {"frontend": {"detector": getattr(fe.detector, "name", str(fe.detector)),
                         "detect_max_side": getattr(fe.detector, "max_side", None),
                         "cnn_fallback": getattr(fe.detector, "cnn_fallback", None),
                         "smoothing": getattr(fe, "smoothing", None), "sigma": getattr(fe, "sigma", None),
                         "variant": getattr(fe, "variant", None)},
            "device": str(device or "cpu")}


def _restoration_plan(reference, src_paths: Sequence[Path], out_paths: Sequence[Path],
                      opts: ReportOptions) -> Path | None:
    """For ``reference``: check the videos correspond (container level, before any network loads) and return
    the source to up-scale for the bicubic baseline (None when there is no reference or the source is the
    reference file itself).

    Raises:
        InputError: no output, or several sources; RestorationInputError: the videos do not correspond.
    """
    if reference is None:
        return None
    ref = Path(reference)
    if not ref.is_file():
        raise InputError(f"reference video {ref} does not exist")
    if not out_paths:
        raise InputError("--reference needs at least one OUTPUT video (the restored video) to measure against it")
    if len(src_paths) != 1:
        raise InputError(f"--reference takes one SOURCE video (the restorer's input); got {len(src_paths)}")
    src = src_paths[0]
    baseline = None if src.resolve() == ref.resolve() else src
    for o in out_paths:
        check_restoration_inputs(ref, o, baseline, start=opts.source_start, stop=opts.source_stop)
    return baseline


def _restoration_front_end(fe) -> FaceFrontEnd:
    """The front-end that tracks every face of the reference: the report's detector and smoothing, with a
    ``Tracker(mode="all")``."""
    kw: dict[str, Any] = {}
    for k in ("smoothing", "sigma", "variant"):
        if hasattr(fe, k):
            kw[k] = getattr(fe, k)
    return FaceFrontEnd(detector=getattr(fe, "detector", None), tracker=Tracker(mode="all"), **kw)


def run_report(sources: Sequence[str | os.PathLike], outputs: Sequence[str | os.PathLike] = (),
               out_dir: str | os.PathLike = "report", *, embedders: Sequence | None = None,
               embedder_keys: Sequence[str] = ("auto",), weights_dir: str | os.PathLike | None = None,
               device: str | None = None, options: ReportOptions | None = None, lpips: bool | None = None,
               lpips_net: str = "alex", frontend=None, detector: str = "dlib", detect_size: int | None = None,
               cnn_fallback: bool = False, echo: Callable[[str], None] | None = None,
               reference: str | os.PathLike | None = None) -> dict:
    """Analyse videos and write report.json, the PNG plots and report.html into ``out_dir``.

    Args:
        sources: source videos: files, folders or glob patterns (each expanded by
            :func:`vidinv.report.inputs.expand_videos`).
        outputs: output videos (files, folders, globs) compared with their source (see
            :func:`vidinv.report.inputs.pair_outputs`): with one source every output is compared with
            it; with several, outputs are matched by file name.
        out_dir: folder to write into (created).
        embedders: ready :class:`vidinv.metrics.identity.IdentityEmbedder` objects (overrides
            ``embedder_keys``).
        embedder_keys: identity networks by key (``"auto"`` = dlib + ArcFace when ``backbone.pth`` is
            present, ``"dlib"``, ``"arcface"``).
        weights_dir: folder of hand-placed weight files, searched first.
        device: torch device for ArcFace / LPIPS (default CPU).
        options: :class:`ReportOptions`.
        lpips: True = LPIPS required (error if unavailable), False = skip, None = when available.
        lpips_net: LPIPS backbone (``"alex"``).
        frontend: a ready :class:`vidinv.face.frontend.FaceFrontEnd` (default one with ``detector``).
        detector: landmark detector of the default front-end (``"dlib"`` or ``"fan"``).
        detect_size: for the dlib detector, the longest image side its HOG scan runs at (default: the
            detector's own, 960); 640 roughly halves detection time but misses faces under ~120 px in 1080p.
        cnn_fallback: for the dlib detector, run dlib's CNN MMOD detector on non-blank frames where HOG finds
            no face. Off by default: on an output that lost its face it would run on every frame (2-4 s per
            frame on CPU instead of ~0.1 s); the report counts the frames HOG missed either way
            (``videos[].detection``) and how many went to the CNN when it is on.
        echo: progress/timing messages (default: print to stderr).
        reference: the high-resolution original of a restoration (``--reference``): every output is measured
            against it with :func:`vidinv.report.restoration.restoration_metrics` (faces tracked on the
            reference, every track; the same identity networks and LPIPS; frames ``[source_start, source_stop)``
            of the reference and source against the output from its frame 0, with the stride / max_frames of
            ``options``) and the bicubic-upscaled source is the baseline (none when the source is the reference
            file itself). Adds the document's ``restoration`` section. Needs exactly one source and at least one
            output; the videos must correspond (checked before any network is loaded).

    Returns:
        The report document (as written to report.json).

    Raises:
        InputError: videos not found / outputs that match no source; ``reference`` without an output or with
            several sources.
        vidinv.report.restoration.RestorationInputError: the reference, outputs and source do not correspond.
        vidinv.metrics.identity.EmbedderUnavailable: a requested identity network is missing.
        vidinv.metrics.image.LPIPSUnavailable: ``lpips=True`` and LPIPS cannot run.
    """
    if echo is None:
        def echo(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

    opts = options or ReportOptions()
    src_paths = [p for s in sources for p in expand_videos(s)]
    out_paths = [p for o in outputs for p in expand_videos(o)]
    if not src_paths:
        raise InputError("no source video given")
    plan = pair_outputs(src_paths, out_paths)
    baseline = _restoration_plan(reference, src_paths, out_paths, opts)

    notes: list[str] = []
    if embedders is None:
        embedders, notes = select_embedders(embedder_keys, weights_dir=weights_dir, device=device)
    embedders = list(embedders)
    if not embedders:
        raise ValueError("a report needs at least one identity network")
    keys = [e.key for e in embedders]
    primary = "arcface" if "arcface" in keys else keys[0]
    lpips_metric, lpips_reason = _lpips(bool(out_paths), lpips, lpips_net, weights_dir, device)
    fe = frontend if frontend is not None else _front_end(detector, detect_size, cnn_fallback)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    videos: list[VideoAnalysis] = []
    pairs: list[PairAnalysis] = []
    for src, outs in plan:
        sv = analyse_video(src, embedders, fe, opts, role="source")
        echo(timing_line(sv))
        videos.append(sv)
        for o in outs:
            p = compare_videos(sv, o, embedders, fe, opts, lpips_metric=lpips_metric, lpips_reason=lpips_reason)
            echo(timing_line(p.output))
            for w in p.warnings:
                echo(f"warning: {w}")
            videos.append(p.output)
            pairs.append(p)

    restored: list[tuple[RestorationResult, VideoAnalysis, VideoAnalysis]] = []
    if reference is not None:
        rfe = _restoration_front_end(fe)
        for p in pairs:
            r = restoration_metrics(reference, p.output.path, source=baseline, start=opts.source_start,
                                    stop=opts.source_stop, stride=opts.stride, max_frames=opts.max_frames,
                                    crop_size=opts.crop_size, embedders=embedders, lpips_metric=lpips_metric,
                                    lpips=None if lpips_metric is not None else False, lpips_reason=lpips_reason,
                                    frontend=rfe, progress=opts.progress)
            if baseline is None:
                r.baseline_reason = "the source is the reference itself"
            t = r.timing
            echo(f"restoration {p.output.label} vs reference {Path(reference).name}: {len(r.frame_index)} frames, "
                 f"{r.sample_frame.size} face samples in {t['seconds']:.1f} s")
            restored.append((r, p.source, p.output))

    lp_model = {"available": lpips_metric is not None, "reason": lpips_reason}
    if lpips_metric is not None:
        lp_model.update(lpips_metric.describe())
    models = {"identity": [e.describe() for e in embedders], "primary_identity": primary, "lpips": lp_model,
              "notes": notes}
    doc = json_safe(build_document(videos, pairs, opts, models, settings_extra=_settings(fe, device),
                                   same_person={e.key: e.same_person for e in embedders},
                                   restoration=restored))
    plot_entries = plot_document(out_dir, doc)
    doc["plots"] = plot_entries
    jpath, hpath = write_outputs(out_dir, doc)
    t = doc["timing"]
    if t["frames"]:
        echo(f"total: {t['frames']} frames in {t['seconds']:.1f} s = {t['ms_per_frame']:.0f} ms/frame")
    echo(f"wrote {jpath}, {hpath} and {len(plot_entries)} plot(s)")
    return doc
