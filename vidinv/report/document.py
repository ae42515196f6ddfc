"""Turn analyses into the report document (the content of report.json; schema in ``report.schema.json``).

Numbers in the document follow one convention: a metric is a JSON number, the string ``"inf"`` /
``"-inf"`` (PSNR of identical images is infinite and is written as such), or ``null`` when it could not
be computed (no face, no frames, LPIPS unavailable: a ``reason`` field next to it says why).
Per-frame lists are indexed by *analysed* frame (``frames.frame_index`` gives the original indices).

TL-ID / TG-ID follow Stitch it in Time's definition (mean over frame pairs of ``S_edit / S_src``, see
:mod:`vidinv.metrics.temporal`); the ratio of means is reported next to them under another name
(``tl_id_ratio_of_means``), and ``models.temporal_identity`` says which network and crops produced the
numbers and why they are not the paper's.
"""
from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence

import numpy as np

from vidinv import __version__
from vidinv.metrics.identity import cosine_similarity
from vidinv.metrics.temporal import (
    adjacent_similarity,
    flicker,
    identity_consistency,
    pairwise_similarity,
    similarity_to_reference,
    tg_id,
    tl_id,
)
from vidinv.report.compute import PairAnalysis, ReportOptions, VideoAnalysis, detection_summary

__all__ = ["SCHEMA_ID", "TEMPORAL_IDENTITY_DEFINITION", "TEMPORAL_IDENTITY_COMPARABILITY", "stats",
           "video_entry", "comparison_entry", "restoration_entry", "build_document"]

#: Value of the document's ``schema`` field (bump on incompatible changes). 2: TL-ID / TG-ID are STIT's
#: mean of per-pair ratios (1 had the ratio of means under that name); per-video ``detection``. The optional
#: ``restoration`` section (``--reference``) was added within 2: documents without it are unchanged.
SCHEMA_ID = "vidinv-report/2"

#: What TL-ID / TG-ID mean and how far they compare with the paper (``models.temporal_identity``).
TEMPORAL_IDENTITY_DEFINITION = (
    "Stitch it in Time (Tzaban et al. 2022): with E the L2-normalised identity embeddings, S_src = E_src E_src^T, "
    "S_edit = E_edit E_edit^T and R = S_edit / S_src per pair; TL-ID = mean of R over adjacent pairs (i, i+1), "
    "TG-ID = mean of R over all ordered pairs i != j (mean of ratios). A pair counts only when both frames have a "
    "face in both videos; frames without one are listed in skipped_frames.")
TEMPORAL_IDENTITY_COMPARABILITY = (
    "STIT computed these with insightface on full frames; vidinv embeds aligned face crops with the network "
    "named here, so the values are not directly comparable with the paper's tables.")
RATIO_OF_MEANS_NOTE = ("tl_id_ratio_of_means / tg_id_ratio_of_means = mean(S_edit) / mean(S_src) over the same "
                       "pairs: not STIT's definition (differs when the source similarities vary, e.g. head turns)")


def stats(values) -> dict:
    """Aggregate per-frame values: ``count`` (non-NaN), ``mean``, ``median``, ``min``, ``max``, ``std``.

    Infinite values take part (a mean over frames containing ``inf`` is ``inf``; ``std`` is then NaN).
    All NaN (or empty) gives count 0 and NaN statistics.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        nan = float("nan")
        return {"count": 0, "mean": nan, "median": nan, "min": nan, "max": nan, "std": nan}
    with np.errstate(invalid="ignore"):
        std = float(np.std(v)) if np.all(np.isfinite(v)) else float("nan")
        return {"count": int(v.size), "mean": float(np.mean(v)), "median": float(np.median(v)),
                "min": float(np.min(v)), "max": float(np.max(v)), "std": std}


def _nanmean(v) -> float:
    v = np.asarray(v, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def _video_identity(e: np.ndarray, frame_index: Sequence[int]) -> dict:
    sims, r = similarity_to_reference(e)
    pw = pairwise_similarity(e)
    iu = np.triu_indices(e.shape[0], k=1)
    valid = np.all(np.isfinite(e), axis=1)
    return {
        "consistency": identity_consistency(e),
        "reference_frame": None if r is None else int(frame_index[r]),
        "frames_used": int(valid.sum()),
        "adjacent_similarity_mean": _nanmean(adjacent_similarity(e)),
        "all_pairs_similarity_mean": _nanmean(pw[iu]) if e.shape[0] > 1 else float("nan"),
        "similarity_to_reference": sims,
    }


def video_entry(v: VideoAnalysis, vid: str, source_id: str | None = None) -> dict:
    """Document entry of one analysed video (id ``vid``; ``source_id``: id of the source of an output)."""
    has = v.has_face
    track = [None if f is None else f.track_id for f in v.faces]
    interp = [False if f is None else f.interpolated for f in v.faces]
    return {
        "id": vid,
        "label": v.label,
        "path": str(v.path),
        "role": v.role,
        "source": source_id,
        "info": v.info,
        "frames": {
            "analysed": v.num_frames,
            "with_face": int(has.sum()),
            "without_face": int((~has).sum()),
            "interpolated": int(sum(interp)),
            "without_face_frames": [int(v.frame_index[i]) for i in np.flatnonzero(~has)],
            "frame_index": [int(k) for k in v.frame_index],
            "has_face": has.tolist(),
            "track_id": track,
        },
        "identity": {k: _video_identity(e, v.frame_index) for k, e in v.embeddings.items()},
        "detection": v.detection or detection_summary([], [], None),
        "frontend": v.frontend_stats,
        "timing": v.timing,
        "notes": list(v.notes),
    }


def _temporal_entry(t) -> dict:
    return {"value": t.value, "pairs": t.pairs, "output_mean": t.output_mean, "source_mean": t.source_mean,
            "undefined_pairs": t.undefined_pairs}


def _comparison_identity(s: np.ndarray, o: np.ndarray, same_person: tuple[str, float] | None = None,
                         frame_index: Sequence[int] | None = None) -> dict:
    n = min(s.shape[0], o.shape[0])
    s, o = s[:n], o[:n]
    vs = np.all(np.isfinite(s), axis=1)
    vo = np.all(np.isfinite(o), axis=1)
    both = vs & vo
    sim = np.full(n, np.nan)
    if both.any():
        sim[both] = cosine_similarity(s[both], o[both])
    s_b = np.where(both[:, None], s, np.nan)
    o_b = np.where(both[:, None], o, np.nan)
    ic_s = identity_consistency(s_b)
    ic_o = identity_consistency(o_b)
    tl, tg = tl_id(o, s), tg_id(o, s)
    fi = list(frame_index) if frame_index is not None else list(range(n))
    verdict = None
    if same_person is not None:
        metric, thr = same_person
        if metric != "euclidean":
            raise ValueError(f"unsupported same-person metric {metric!r}")
        dist = np.full(n, np.nan)
        if both.any():
            dist[both] = np.linalg.norm(s[both].astype(np.float64) - o[both], axis=1)
        ok = dist[both] < thr
        verdict = {"metric": metric, "threshold": float(thr), "distance": stats(dist),
                   "same_person_fraction": float(ok.mean()) if ok.size else float("nan")}
    return {
        "similarity": stats(sim),
        "similarity_per_frame": sim,
        "consistency_source": ic_s,
        "consistency_output": ic_o,
        "consistency_change": ic_o - ic_s,
        "source_similarity_to_reference": similarity_to_reference(s_b)[0],
        "output_similarity_to_reference": similarity_to_reference(o_b)[0],
        "tl_id": _temporal_entry(tl),
        "tg_id": _temporal_entry(tg),
        "tl_id_ratio_of_means": tl.ratio_of_means,
        "tg_id_ratio_of_means": tg.ratio_of_means,
        "skipped_frames": [int(fi[i]) for i in tl.skipped_frames],
        "same_person": verdict,
        "frames_used": int(both.sum()),
        "excluded_no_face_source": int((~vs).sum()),
        "excluded_no_face_output": int((vs & ~vo).sum()),
    }


def comparison_entry(p: PairAnalysis, cid: str, source_id: str, output_id: str, crop_size: int,
                     same_person: dict[str, tuple[str, float] | None] | None = None) -> dict:
    """Document entry of one source/output comparison (id ``cid``); ``same_person`` maps identity keys to
    their network's verification rule (:attr:`IdentityEmbedder.same_person`)."""
    same_person = same_person or {}
    pf = p.per_frame
    ks, ko = p.source.num_frames, p.output.num_frames
    psnr_stats = stats(pf["crop_psnr"])
    mean_mse = _nanmean(pf["crop_mse"])
    with np.errstate(divide="ignore"):
        psnr_stats["from_mean_mse"] = (float("inf") if mean_mse == 0 else
                                       (10.0 * math.log10(1.0 / mean_mse) if math.isfinite(mean_mse) else float("nan")))
    fl = flicker(pf["change_output"], pf["change_source"])
    fl.update({"unit": "8-bit levels (0-255), mean |frame t - frame t-1| inside the face mask",
               "per_frame": {"source": pf["change_source"], "output": pf["change_output"]}})
    return {
        "id": cid,
        "source": source_id,
        "output": output_id,
        "frames": {"source": ks, "output": ko, "compared": p.compared, "count_mismatch": ks != ko,
                   "identity_frames": min(ks, ko)},
        "identity": {k: _comparison_identity(p.source.embeddings[k], p.output.embeddings[k], same_person.get(k),
                                             p.source.frame_index)
                     for k in p.source.embeddings if k in p.output.embeddings},
        "face_crop": {
            "crop_size": crop_size,
            "quad": "source front-end quad for both videos",
            "mse": stats(pf["crop_mse"]),
            "psnr": psnr_stats,
            "ssim": stats(pf["crop_ssim"]),
            "lpips": {"available": p.lpips is not None, "reason": p.lpips_reason,
                      **(stats(pf["crop_lpips"]) if p.lpips is not None else {})},
            "per_frame": {"mse": pf["crop_mse"], "psnr": pf["crop_psnr"], "ssim": pf["crop_ssim"],
                          "lpips": pf["crop_lpips"] if p.lpips is not None else None},
        },
        "background": {
            "psnr": stats(pf["bg_psnr"]),
            "ssim": stats(pf["bg_ssim"]),
            "fraction_mean": _nanmean(pf["bg_fraction"]),
            "per_frame": {"psnr": pf["bg_psnr"], "ssim": pf["bg_ssim"]},
        },
        "seam": {
            "colour": stats(pf["seam_colour"]),
            "gradient": stats(pf["seam_gradient"]),
            "definition": "vidinv.metrics.seam on the aligned crops (output vs source, source quad): mean |D| and "
                          "mean gradient of D = output - source in the ring of width 0.1 x crop side just outside "
                          "the face region (8-bit levels); 0 = seamless",
            "per_frame": {"colour": pf["seam_colour"], "gradient": pf["seam_gradient"]},
        },
        "flicker": fl,
        "pixel_metrics_reason": p.pixel_reason,
        "warnings": list(p.warnings),
    }


def restoration_entry(result, rid: str, output_id: str, source_id: str | None) -> dict:
    """Document entry (``restoration[]``) of one :class:`vidinv.report.restoration.RestorationResult`: its
    :meth:`~vidinv.report.restoration.RestorationResult.as_dict` with the entry id ``rid`` and the ids of the
    output video and of the source video (None when the source gave no baseline)."""
    return {"id": rid, "output": output_id, "source": source_id, **result.as_dict()}


def build_document(videos: Sequence[VideoAnalysis], pairs: Sequence[PairAnalysis], options: ReportOptions,
                   models: dict, plots: Sequence[dict] = (), warnings: Sequence[str] = (),
                   settings_extra: dict | None = None,
                   same_person: dict[str, tuple[str, float] | None] | None = None,
                   restoration: Sequence[tuple] = ()) -> dict:
    """The whole report document (JSON-ready after :func:`vidinv.io.outputs.json_safe`).

    Args:
        videos: every analysed video (sources and outputs), in display order.
        pairs: the comparisons (their source/output must be in ``videos``).
        options: the :class:`ReportOptions` used.
        models: ``{"identity": [describe()...], "lpips": {...}, "notes": [...]}``.
        plots: ``[{"file", "title", "kind", "videos"}]`` written next to report.json.
        warnings: report-level warnings.
        settings_extra: more settings to record (front-end, device...).
        same_person: identity key -> verification rule of its network (adds ``same_person`` blocks).
        restoration: ``(RestorationResult, source VideoAnalysis, output VideoAnalysis)`` triples (``--reference``):
            adds the ``restoration`` section (absent when empty); the source id is recorded only when the result
            has a bicubic baseline.
    """

    ids = {id(v): f"v{i}" for i, v in enumerate(videos)}
    src_of = {id(p.output): ids[id(p.source)] for p in pairs}
    vids = [video_entry(v, ids[id(v)], src_of.get(id(v))) for v in videos]
    comps = [comparison_entry(p, f"c{i}", ids[id(p.source)], ids[id(p.output)], options.crop_size, same_person)
             for i, p in enumerate(pairs)]
    all_warn = list(warnings) + [w for c in comps for w in c["warnings"]]
    for v in vids:
        all_warn.extend(v["notes"])
        tracks = sorted({t for t in v["frames"]["track_id"] if t is not None})
        if len(tracks) > 1:
            all_warn.append(f"{v['label']}: the tracked target face changed during the video (tracks {tracks}); "
                            f"identity consistency then compares different face tracks")
        if v["frames"]["without_face"]:
            all_warn.append(f"{v['label']}: {v['frames']['without_face']} of {v['frames']['analysed']} frames without "
                            f"a tracked face (excluded from identity metrics)")
        det = v["detection"]
        if det["cnn_frames"]:
            all_warn.append(f"{v['label']}: dlib's CNN fallback ran on {det['cnn_frames']} of "
                            f"{v['frames']['analysed']} frames (HOG found no face; it found one in "
                            f"{det['cnn_face_frames']})")
        elif det["cnn_fallback"] is False and det["hog_missed"]:
            all_warn.append(f"{v['label']}: HOG found no face in {det['hog_missed']} of {v['frames']['analysed']} "
                            f"frames and the CNN fallback was off (--cnn-fallback tries dlib's CNN detector on "
                            f"them, about 2-4 s per frame on CPU)")
    rest = [restoration_entry(r, f"r{i}", ids[id(o)], ids[id(s)] if r.bicubic is not None else None)
            for i, (r, s, o) in enumerate(restoration)]
    for e in rest:
        label = vids[int(e["output"][1:])]["label"]
        if e["frames"]["samples"] == 0:
            all_warn.append(f"restoration of {label}: no face was tracked on the reference "
                            f"{e['reference']['label']}; no restoration metrics")
        if e["baseline_reason"]:
            all_warn.append(f"restoration of {label}: no bicubic baseline ({e['baseline_reason']})")
    total_frames = sum(v.num_frames for v in videos)
    total_s = sum(v.timing.get("total", 0.0) for v in videos)
    settings = options.as_dict()
    settings.update(settings_extra or {})
    models = dict(models)
    models["temporal_identity"] = {
        "definition": TEMPORAL_IDENTITY_DEFINITION,
        "embeddings": {m["key"]: m.get("summary", m["network"]) for m in models["identity"]},
        "comparability": TEMPORAL_IDENTITY_COMPARABILITY,
        "ratio_of_means": RATIO_OF_MEANS_NOTE,
    }
    doc = {
        "schema": SCHEMA_ID,
        "generator": {"name": "vidinv report", "vidinv_version": __version__,
                      "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")},
        "settings": settings,
        "models": models,
        "videos": vids,
        "comparisons": comps,
        "plots": list(plots),
        "timing": {"frames": total_frames, "seconds": total_s,
                   "ms_per_frame": 1000.0 * total_s / total_frames if total_frames else None},
        "warnings": all_warn,
    }
    if rest:
        doc["restoration"] = rest
    return doc
