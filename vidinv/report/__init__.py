"""Identity-consistency and quality reports of face videos (``vidinv report``).

:func:`run_report` analyses one or more source videos and optionally edited/reconstructed outputs of
them, and writes into an output folder:

* ``report.json`` — every number, per frame and aggregated, with the identifiers of the networks that
  produced them; it validates against ``report.schema.json`` (:mod:`vidinv.report.schema`);
* PNG plots (:mod:`vidinv.report.plots`): per-frame identity similarity and identity-consistency
  curves, face-crop / background quality and flicker, and a box plot of identity consistency across
  videos (Feature-Style Fig. 9 layout) when there are several videos;
* ``report.html`` — a self-contained page showing the tables and the plots (:mod:`vidinv.report.html`).

The per-frame work is in :mod:`vidinv.report.compute`, the document in :mod:`vidinv.report.document`,
the metric definitions in :mod:`vidinv.metrics`.

TL-ID / TG-ID are Stitch it in Time's mean of per-pair ratios (:mod:`vidinv.metrics.temporal`); the
document names the identity network and crops behind them. dlib's CNN detector fallback is off unless
``cnn_fallback=True`` (``--cnn-fallback``); each video's ``detection`` entry counts the frames it ran on.

``vidinv edit --report DIR`` should call ``run_report([source], [output], DIR)`` after writing its output
(with ``options=ReportOptions(source_start=first_frame, source_stop=stop_frame)`` when the output was cut to
a window of the source).
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vidinv.io.outputs import atomic_write_text, json_safe
from vidinv.report.compute import PairAnalysis, ReportOptions, VideoAnalysis, analyse_video, compare_videos
from vidinv.report.document import SCHEMA_ID, build_document
from vidinv.report.inputs import InputError, expand_videos, pair_outputs
from vidinv.report.schema import SchemaError, validate

__all__ = ["run_report", "ReportOptions", "VideoAnalysis", "PairAnalysis", "InputError", "SchemaError",
           "SCHEMA_ID", "validate", "write_outputs", "output_group", "summary_lines"]


def output_group(output: Path | str, source: Path | str) -> str:
    """Group name of an output in the box plot: what its file stem adds to the source's stem
    (``talking_fs.mp4`` of ``talking.mp4`` -> ``"fs"``), or ``"output"``."""
    o, s = Path(output).stem, Path(source).stem
    if o.lower().startswith(s.lower()) and len(o) > len(s):
        rest = o[len(s):].lstrip("_-. ")
        if rest:
            return rest
    return "output"


def _echo_timing(echo: Callable[[str], None], v: VideoAnalysis) -> None:
    t = v.timing
    n = v.num_frames
    if not n:
        echo(f"{v.role} {v.label}: no frames decoded")
        return
    per = 1000.0 / n
    det = v.detection or {}
    cnn = ""
    if det.get("cnn_fallback"):
        cnn = f"; CNN fallback on {det['cnn_frames']} frame(s)"
    elif det.get("cnn_fallback") is False and det.get("hog_missed"):
        cnn = f"; HOG found no face in {det['hog_missed']} frame(s), CNN fallback off"
    echo(f"{v.role} {v.label}: {n} frames in {t['total']:.1f} s = {t['ms_per_frame']:.0f} ms/frame "
         f"(front-end {t['frontend'] * per:.0f}, identity {t['identity'] * per:.0f}, pixel metrics "
         f"{t['pixel'] * per:.0f} ms/frame); {int(v.has_face.sum())} with a face{cnn}")


def _arr(values) -> np.ndarray:
    """A document list (numbers, None, "inf"/"-inf") as float64 (None -> NaN)."""
    if values is None:
        return np.zeros(0)
    conv = {"inf": np.inf, "-inf": -np.inf}
    return np.array([np.nan if v is None else conv.get(v, v) if isinstance(v, str) else v for v in values],
                    dtype=np.float64)


def _num(v) -> float:
    return float(_arr([v])[0])


def _plots(out_dir: Path, doc: dict) -> list[dict]:
    """Write the PNG plots of a (JSON-form) document into ``out_dir``; returns their ``plots`` entries."""
    from vidinv.report import plots as pl

    primary = doc["models"]["primary_identity"]
    vids = {v["id"]: v for v in doc["videos"]}
    entries: list[dict] = []
    colour_of: dict[str, str] = {}
    for i, c in enumerate(doc["comparisons"]):
        colour = pl.OUTPUT_COLOURS[i % len(pl.OUTPUT_COLOURS)]
        colour_of[c["output"]] = colour
        sv, ov = vids[c["source"]], vids[c["output"]]
        ident = c["identity"]
        if primary not in ident:
            continue
        n = c["frames"]["identity_frames"]
        fidx = sv["frames"]["frame_index"][:n]
        sims = {primary: _arr(ident[primary]["similarity_per_frame"])}
        sims.update({k: _arr(d["similarity_per_frame"]) for k, d in ident.items() if k != primary})
        name = f"identity_{c['id']}.png"
        pl.plot_comparison_identity(out_dir / name, fidx, sims, _arr(ident[primary]["source_similarity_to_reference"]),
                                    _arr(ident[primary]["output_similarity_to_reference"]), primary, sv["label"],
                                    ov["label"], colour=colour,
                                    consistency=(_num(ident[primary]["consistency_source"]),
                                                 _num(ident[primary]["consistency_output"])))
        entries.append({"file": name, "kind": "identity", "videos": [sv["id"], ov["id"]],
                        "title": f"Identity similarity and consistency: {ov['label']} vs {sv['label']}"})
        if c["frames"]["compared"]:
            fc, bg, fl = c["face_crop"]["per_frame"], c["background"]["per_frame"], c["flicker"]["per_frame"]
            per_frame = {"crop_psnr": _arr(fc["psnr"]), "crop_ssim": _arr(fc["ssim"]), "bg_psnr": _arr(bg["psnr"]),
                         "bg_ssim": _arr(bg["ssim"]), "change_source": _arr(fl["source"]),
                         "change_output": _arr(fl["output"])}
            name = f"quality_{c['id']}.png"
            pl.plot_comparison_quality(out_dir / name, sv["frames"]["frame_index"], per_frame, sv["label"],
                                       ov["label"], colour=colour)
            entries.append({"file": name, "kind": "quality", "videos": [sv["id"], ov["id"]],
                            "title": f"Face-crop and background quality, flicker: {ov['label']} vs {sv['label']}"})
    compared = {c["source"] for c in doc["comparisons"]}
    for v in doc["videos"]:
        if v["role"] == "source" and v["id"] not in compared and v["identity"]:
            keys = [primary] + [k for k in v["identity"] if k != primary]
            curves = {k: _arr(v["identity"][k]["similarity_to_reference"]) for k in keys if k in v["identity"]}
            ics = {k: _num(v["identity"][k]["consistency"]) for k in curves}
            name = f"consistency_{v['id']}.png"
            pl.plot_video_consistency(out_dir / name, v["frames"]["frame_index"], curves, v["label"], ics)
            entries.append({"file": name, "kind": "consistency", "videos": [v["id"]],
                            "title": f"Identity consistency curve: {v['label']}"})
    if len(doc["videos"]) >= 2:
        groups: dict[str, list[float]] = {}
        for v in doc["videos"]:
            if primary not in v["identity"]:
                continue
            g = "source" if v["role"] == "source" else output_group(v["path"], vids[v["source"]]["path"])
            groups.setdefault(g, []).append(_num(v["identity"][primary]["consistency"]))
        data: Mapping[str, Sequence[float] | np.ndarray]
        cols: dict[str, str] | None
        if any(len(x) >= 2 for x in groups.values()):
            title = f"Identity consistency across videos ({primary}; one point per video)"
            data, ylabel, cols = groups, "identity consistency (eq. 9)", None
        else:  # one video per group: each video's per-frame similarity to its reference frame
            per_video: dict[str, np.ndarray] = {}
            cols = {}
            for v in doc["videos"]:
                if primary not in v["identity"]:
                    continue
                vi = v["identity"][primary]
                ref_sims = _arr(vi["similarity_to_reference"])
                if vi["reference_frame"] is not None:
                    r = v["frames"]["frame_index"].index(vi["reference_frame"])
                    ref_sims = np.delete(ref_sims, r)
                per_video[v["label"]] = ref_sims
                cols[v["label"]] = (pl.SOURCE_COLOUR if v["role"] == "source"
                                    else colour_of.get(v["id"], pl.OUTPUT_COLOURS[0]))
            data = per_video
            title = f"Identity consistency per video ({primary}; one point per frame: cos(e_i, e_ref))"
            ylabel = "cos(e_i, e_ref)"
        pl.plot_consistency_boxplot(out_dir / "consistency_boxplot.png", data, title, ylabel, colours=cols)
        entries.append({"file": "consistency_boxplot.png", "kind": "consistency_boxplot",
                        "videos": [v["id"] for v in doc["videos"]], "title": title})
    return entries


def _f(x, nd: int = 4) -> str:
    """A document metric for the summary: number with ``nd`` decimals, "inf"/"-inf" as is, null as n/a."""
    if x is None:
        return "n/a"
    return x if isinstance(x, str) else f"{x:.{nd}f}"


def _detection_text(det: dict) -> str:
    if det.get("cnn_fallback") is None:
        return ""
    if det["cnn_fallback"]:
        return f"  CNN fallback on {det['cnn_frames']} frame(s), found a face in {det['cnn_face_frames']}"
    return f"  CNN fallback off (HOG found no face in {det['hog_missed']} frame(s))"


def summary_lines(doc: dict) -> list[str]:
    """The printed summary of a report document (JSON form): per video frames, faces, identity
    consistency and the CNN-fallback count; per comparison identity similarity, TL-ID / TG-ID (STIT's
    definition) with their pairs and skipped frames, the ratio of means under its own name; and which
    identity network / crops produced TL-ID / TG-ID."""
    lines: list[str] = []
    vids = {v["id"]: v for v in doc["videos"]}
    key = doc["models"]["primary_identity"]
    for v in doc["videos"]:
        ic = v["identity"].get(key, {}).get("consistency")
        lines.append(f"{v['label']:<32} {v['role']:<7} frames {v['frames']['analysed']:>5} "
                     f"(no face {v['frames']['without_face']:>4})  identity consistency [{key}] {_f(ic)}"
                     f"{_detection_text(v['detection'])}")
    keys = [m["key"] for m in doc["models"]["identity"]]
    keys = [key] + [k for k in keys if k != key]
    for c in doc["comparisons"]:
        name = f"{vids[c['output']]['label']} vs {vids[c['source']]['label']}"
        for k in keys:
            ci = c["identity"].get(k)
            if ci is None:
                continue
            lines.append(f"{name}: identity similarity [{k}] {_f(ci['similarity']['mean'])}")
            tl, tg = ci["tl_id"], ci["tg_id"]
            skipped = ci["skipped_frames"]
            shown = ", ".join(str(i) for i in skipped[:12]) + (", ..." if len(skipped) > 12 else "")
            lines.append(f"  TL-ID [{k}] {_f(tl['value'])} ({tl['pairs']} adjacent pairs)  TG-ID [{k}] "
                         f"{_f(tg['value'])} ({tg['pairs']} ordered pairs)  skipped frames: {len(skipped)}"
                         + (f" [{shown}]" if skipped else ""))
            lines.append(f"  ratio of means (not STIT's TL-ID/TG-ID) [{k}]: {_f(ci['tl_id_ratio_of_means'])} / "
                         f"{_f(ci['tg_id_ratio_of_means'])}")
    if doc["comparisons"]:
        ti = doc["models"]["temporal_identity"]
        nets = "; ".join(f"{k} = {ti['embeddings'][k]}" for k in keys if k in ti["embeddings"])
        lines.append(f"TL-ID/TG-ID (STIT: mean over frame pairs of S_edit/S_src) from {nets}. "
                     f"{ti['comparability']}")
    return lines


def write_outputs(out_dir: Path, doc: dict) -> tuple[Path, Path]:
    """Validate ``doc`` (JSON form) and write ``report.json`` and ``report.html`` into ``out_dir``
    (where its plots already are). Returns both paths.

    Raises:
        SchemaError: the document does not match the schema (a bug).
    """
    from vidinv.report.html import render_html

    validate(doc)
    jpath = out_dir / "report.json"
    atomic_write_text(jpath, json.dumps(doc, indent=1, allow_nan=False) + "\n")
    hpath = out_dir / "report.html"
    atomic_write_text(hpath, render_html(doc, out_dir))
    return jpath, hpath


def run_report(sources: Sequence[str | os.PathLike], outputs: Sequence[str | os.PathLike] = (),
               out_dir: str | os.PathLike = "report", *, embedders: Sequence | None = None,
               embedder_keys: Sequence[str] = ("auto",), weights_dir: str | os.PathLike | None = None,
               device: str | None = None, options: ReportOptions | None = None, lpips: bool | None = None,
               lpips_net: str = "alex", frontend=None, detector: str = "dlib", detect_size: int | None = None,
               cnn_fallback: bool = False, echo: Callable[[str], None] | None = None) -> dict:
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

    Returns:
        The report document (as written to report.json).

    Raises:
        InputError: videos not found / outputs that match no source.
        vidinv.metrics.identity.EmbedderUnavailable: a requested identity network is missing.
        vidinv.metrics.image.LPIPSUnavailable: ``lpips=True`` and LPIPS cannot run.
    """
    import sys

    from vidinv.face.frontend import FaceFrontEnd
    from vidinv.metrics.identity import select_embedders
    from vidinv.metrics.image import LPIPSMetric, LPIPSUnavailable

    if echo is None:
        def echo(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

    opts = options or ReportOptions()
    src_paths: list[Path] = []
    for s in sources:
        src_paths.extend(expand_videos(s))
    out_paths: list[Path] = []
    for o in outputs:
        out_paths.extend(expand_videos(o))
    if not src_paths:
        raise InputError("no source video given")
    plan = pair_outputs(src_paths, out_paths)

    notes: list[str] = []
    if embedders is None:
        embedders, notes = select_embedders(embedder_keys, weights_dir=weights_dir, device=device)
    embedders = list(embedders)
    if not embedders:
        raise ValueError("a report needs at least one identity network")
    keys = [e.key for e in embedders]
    primary = "arcface" if "arcface" in keys else keys[0]

    lpips_metric, lpips_reason = None, None
    if not out_paths:
        lpips_reason = "no output video to compare with"
    elif lpips is False:
        lpips_reason = "disabled (--no-lpips)"
    else:
        try:
            lpips_metric = LPIPSMetric(net=lpips_net, weights_dir=weights_dir, device=device)
        except LPIPSUnavailable as e:
            if lpips:
                raise
            lpips_reason = str(e).splitlines()[0]

    if frontend is not None:
        fe = frontend
    elif detector == "dlib":
        from vidinv.face.detect import DlibLandmarkDetector

        kw: dict[str, Any] = {"cnn_fallback": bool(cnn_fallback)}
        if detect_size is not None:
            kw["max_side"] = int(detect_size)
        fe = FaceFrontEnd(detector=DlibLandmarkDetector(**kw))
    else:
        fe = FaceFrontEnd(detector=detector)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    videos: list[VideoAnalysis] = []
    pairs: list[PairAnalysis] = []
    for src, outs in plan:
        sv = analyse_video(src, embedders, fe, opts, role="source")
        _echo_timing(echo, sv)
        videos.append(sv)
        for o in outs:
            p = compare_videos(sv, o, embedders, fe, opts, lpips_metric=lpips_metric, lpips_reason=lpips_reason)
            _echo_timing(echo, p.output)
            for w in p.warnings:
                echo(f"warning: {w}")
            videos.append(p.output)
            pairs.append(p)

    lp_model = {"available": lpips_metric is not None, "reason": lpips_reason}
    if lpips_metric is not None:
        lp_model.update(lpips_metric.describe())
    models = {"identity": [e.describe() for e in embedders], "primary_identity": primary, "lpips": lp_model,
              "notes": notes}
    fe_settings = {"frontend": {"detector": getattr(fe.detector, "name", str(fe.detector)),
                                "detect_max_side": getattr(fe.detector, "max_side", None),
                                "cnn_fallback": getattr(fe.detector, "cnn_fallback", None),
                                "smoothing": getattr(fe, "smoothing", None), "sigma": getattr(fe, "sigma", None),
                                "variant": getattr(fe, "variant", None)},
                   "device": str(device or "cpu")}
    doc = json_safe(build_document(videos, pairs, opts, models, settings_extra=fe_settings,
                                   same_person={e.key: e.same_person for e in embedders}))
    plot_entries = _plots(out_dir, doc)
    doc["plots"] = plot_entries
    jpath, hpath = write_outputs(out_dir, doc)
    t = doc["timing"]
    if t["frames"]:
        echo(f"total: {t['frames']} frames in {t['seconds']:.1f} s = {t['ms_per_frame']:.0f} ms/frame")
    echo(f"wrote {jpath}, {hpath} and {len(plot_entries)} plot(s)")
    return doc
