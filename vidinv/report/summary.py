"""What a report prints: the summary of a document and the per-video timing lines."""
from __future__ import annotations

from vidinv.report.compute import VideoAnalysis

__all__ = ["summary_lines", "timing_line", "restoration_lines", "restoration_rows"]


def timing_line(v: VideoAnalysis) -> str:
    """One line on how long a video's analysis took: frames, seconds, ms/frame per part (front-end,
    identity, pixel metrics), frames with a face, and the CNN-fallback count."""
    t = v.timing
    n = v.num_frames
    if not n:
        return f"{v.role} {v.label}: no frames decoded"
    per = 1000.0 / n
    det = v.detection or {}
    cnn = ""
    if det.get("cnn_fallback"):
        cnn = f"; CNN fallback on {det['cnn_frames']} frame(s)"
    elif det.get("cnn_fallback") is False and det.get("hog_missed"):
        cnn = f"; HOG found no face in {det['hog_missed']} frame(s), CNN fallback off"
    return (f"{v.role} {v.label}: {n} frames in {t['total']:.1f} s = {t['ms_per_frame']:.0f} ms/frame "
            f"(front-end {t['frontend'] * per:.0f}, identity {t['identity'] * per:.0f}, pixel metrics "
            f"{t['pixel'] * per:.0f} ms/frame); {int(v.has_face.sum())} with a face{cnn}")


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


def restoration_rows(entry: dict) -> list[tuple[str, str, str]]:
    """The restoration table of one ``restoration[]`` entry: ``(metric, restored, bicubic baseline)`` rows of
    formatted means (PSNR dB 2 decimals, "inf" for identical crops; SSIM / LPIPS / identity 4 decimals; "n/a"
    when not computed, e.g. no baseline or LPIPS unavailable), with the direction of better values."""
    r, b = entry["restored"], entry["bicubic"]

    def mean(block, *path):
        x = block
        for k in path:
            if x is None:
                return None
            x = x.get(k)
        return x

    rows = [("PSNR (dB, higher is better)", _f(mean(r, "psnr", "mean"), 2), _f(mean(b, "psnr", "mean"), 2)),
            ("SSIM (higher is better)", _f(mean(r, "ssim", "mean")), _f(mean(b, "ssim", "mean"))),
            ("LPIPS alex (lower is better)", _f(mean(r, "lpips", "mean")), _f(mean(b, "lpips", "mean")))]
    for net in entry["identity_networks"]:
        k = net["key"]
        rows.append((f"identity similarity [{k}] (higher)", _f(mean(r, "identity", k, "mean")),
                     _f(mean(b, "identity", k, "mean"))))
    return rows


def restoration_lines(doc: dict) -> list[str]:
    """The printed restoration section (``--reference``): per output, a header (reference, frames, face
    samples, crops) and the table metric / restored / bicubic baseline; empty without the section."""
    lines: list[str] = []
    vids = {v["id"]: v for v in doc["videos"]}
    for e in doc.get("restoration", []):
        fr = e["frames"]
        lines.append(f"restoration: {vids[e['output']]['label']} vs reference {e['reference']['label']} "
                     f"({fr['samples']} face samples in {fr['with_face']} of {fr['analysed']} frames, FFHQ-aligned "
                     f"{e['crop_size']}x{e['crop_size']} crops; means over samples)")
        rows = [("metric", "restored", "bicubic")] + restoration_rows(e)
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        w2 = max(len(r[2]) for r in rows)
        for m, a, b in rows:
            lines.append(f"  {m:<{w0}}  {a:>{w1}}  {b:>{w2}}")
        notes = []
        if e["baseline_reason"]:
            notes.append(f"no bicubic baseline: {e['baseline_reason']}")
        if not e["lpips"]["available"]:
            notes.append(f"LPIPS not reported: {e['lpips']['reason']}")
        if len(e["tracks"]) > 1:
            notes.append(f"{len(e['tracks'])} face tracks (per-track values in report.json)")
        lines.extend(f"  ({n})" for n in notes)
    return lines


def summary_lines(doc: dict) -> list[str]:
    """The printed summary of a report document (JSON form): per video frames, faces, identity
    consistency and the CNN-fallback count; per comparison identity similarity, TL-ID / TG-ID (STIT's
    definition) with their pairs and skipped frames, the ratio of means under its own name; and which
    identity network / crops produced TL-ID / TG-ID; with ``--reference``, the restoration table
    (:func:`restoration_lines`)."""
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
            same = ci.get("same_person")
            verdict = ""
            if same and same.get("same_person_fraction") is not None:
                verdict = (f"; same person by {k}'s own rule ({same['metric']} distance < {same['threshold']:g}) in "
                           f"{100 * same['same_person_fraction']:.0f}% of frames")
            lines.append(f"{name}: identity similarity [{k}] {_f(ci['similarity']['mean'])}{verdict}")
            tl, tg = ci["tl_id"], ci["tg_id"]
            skipped = ci["skipped_frames"]
            shown = ", ".join(str(i) for i in skipped[:12]) + (", ..." if len(skipped) > 12 else "")
            lines.append(f"  TL-ID [{k}] {_f(tl['value'])} ({tl['pairs']} adjacent pairs)  TG-ID [{k}] "
                         f"{_f(tg['value'])} ({tg['pairs']} ordered pairs)  skipped frames: {len(skipped)}"
                         + (f" [{shown}]" if skipped else ""))
            lines.append(f"  ratio of means (not STIT's TL-ID/TG-ID) [{k}]: {_f(ci['tl_id_ratio_of_means'])} / "
                         f"{_f(ci['tg_id_ratio_of_means'])}")
        seam = c.get("seam")
        if seam and seam["colour"].get("count"):
            lines.append(f"{name}: seam at the face boundary (colour / gradient, 8-bit levels, 0 = seamless): "
                         f"{_f(seam['colour']['mean'], 2)} / {_f(seam['gradient']['mean'], 2)}")
    if doc["comparisons"]:
        ti = doc["models"]["temporal_identity"]
        nets = "; ".join(f"{k} = {ti['embeddings'][k]}" for k in keys if k in ti["embeddings"])
        lines.append(f"TL-ID/TG-ID (STIT: mean over frame pairs of S_edit/S_src) from {nets}. "
                     f"{ti['comparability']}")
    lines.extend(restoration_lines(doc))
    return lines
