"""Self-contained report.html: tables of the report document and its plots embedded as PNG data URIs.

The page has no external resource (no scripts, fonts, style sheets or image files), so it can be mailed
or archived alone and opens offline.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from vidinv.report.summary import restoration_rows

__all__ = ["render_html", "fmt"]

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 6px}table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f2f2f2}
td.l,th.l{text-align:left}.muted{color:#777;font-size:12px}.warn{color:#a33}
figure{margin:10px 0 22px}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:12px;color:#555}
code{background:#f6f6f6;padding:0 3px}
"""


def fmt(v: Any, nd: int = 3) -> str:
    """Display a metric of the document: numbers with ``nd`` decimals, "inf" as ∞, null as n/a."""
    if v is None:
        return "n/a"
    if v == "inf":
        return "∞"
    if v == "-inf":
        return "-∞"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return html.escape(str(v))


def _e(s: Any) -> str:
    return html.escape("" if s is None else str(s))


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{h}</th>' for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _cnn_cell(det: dict) -> str:
    if det.get("cnn_fallback") is None:
        return "n/a"
    if det["cnn_fallback"]:
        return f"{det['cnn_frames']} frames ({det['cnn_face_frames']} with a face)"
    return f"off (HOG missed {det['hog_missed']})"


def _skipped_cell(frames: list) -> str:
    if not frames:
        return "0"
    shown = ", ".join(str(i) for i in frames[:20]) + (", …" if len(frames) > 20 else "")
    return f"{len(frames)} <span class='muted'>({shown})</span>"


def render_html(doc: dict, plot_dir: Path) -> str:
    """The HTML page of a report document (:func:`vidinv.io.outputs.json_safe` form); plots are read from
    ``plot_dir`` and embedded as base64 ``data:image/png`` URIs."""
    vids = {v["id"]: v for v in doc["videos"]}
    keys = [m["key"] for m in doc["models"]["identity"]]
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width,initial-scale=1'>",
           f"<title>vidinv report</title><style>{_CSS}</style></head><body>",
           "<h1>vidinv identity &amp; quality report</h1>",
           f"<div class='muted'>{_e(doc['generator']['created'])} · vidinv {_e(doc['generator']['vidinv_version'])}"
           f" · {doc['timing']['frames']} frames in {doc['timing']['seconds']:.1f} s"
           f" ({fmt(doc['timing']['ms_per_frame'], 1)} ms/frame)</div>"]

    # models
    out.append("<h2>Networks</h2>")
    rows = [[_e(m["key"]), _e(m["network"]), _e(m["crops"]), _e(m["alignment"]),
             f"<code>{_e(Path(m['file']).name)}</code>", _e(m.get("sha256"))] for m in doc["models"]["identity"]]
    out.append(_table(["key", "identity network", "input crops", "face alignment", "file", "sha256 (prefix)"], rows,
                      left=6))
    lp = doc["models"]["lpips"]
    if lp["available"]:
        out.append(f"<p>LPIPS: <code>{_e(lp.get('net'))}</code>, lpips {_e(lp.get('package_version'))}, backbone "
                   f"<code>{_e(Path(str(lp.get('backbone_file'))).name)}</code>.</p>")
    else:
        out.append(f"<p>LPIPS: <b>not reported</b> — {_e(lp['reason'])}</p>")
    for n in doc["models"].get("notes", []):
        out.append(f"<p class='muted'>{_e(n)}</p>")

    # videos
    out.append("<h2>Videos</h2>")
    rows = []
    for v in doc["videos"]:
        f = v["frames"]
        src = vids[v["source"]]["label"] if v["source"] else ""
        r = [_e(v["label"]), _e(v["role"]), _e(src), str(f["analysed"]), str(f["with_face"]), str(f["without_face"])]
        r += [fmt(v["identity"].get(k, {}).get("consistency")) for k in keys]
        r += [_cnn_cell(v["detection"]), fmt(v["timing"].get("ms_per_frame"), 0)]
        rows.append(r)
    out.append(_table(["video", "role", "source", "frames", "with face", "without face"]
                      + [f"identity consistency ({k})" for k in keys] + ["CNN detector fallback", "ms/frame"], rows,
                      left=3))

    # comparisons
    if doc["comparisons"]:
        out.append("<h2>Source vs output</h2>")
        rows = []
        for c in doc["comparisons"]:
            for k in keys:
                ci = c["identity"].get(k)
                if ci is None:
                    continue
                rows.append([_e(vids[c["output"]]["label"]), _e(k), fmt(ci["similarity"]["mean"]),
                             fmt(ci["similarity"]["min"]), fmt(ci["consistency_source"]),
                             fmt(ci["consistency_output"]), fmt(ci["tl_id"]["value"]), fmt(ci["tg_id"]["value"]),
                             fmt(ci["tl_id_ratio_of_means"]), fmt(ci["tg_id_ratio_of_means"]),
                             fmt(ci["same_person"]["same_person_fraction"] * 100.0, 1) + " %"
                             if ci["same_person"] and ci["same_person"]["same_person_fraction"] is not None else "n/a",
                             str(ci["frames_used"]), _skipped_cell(ci["skipped_frames"])])
        out.append("<h3>Identity</h3>")
        out.append(_table(["output", "network", "ID similarity (mean)", "ID similarity (min)", "IC source",
                           "IC output", "TL-ID (STIT)", "TG-ID (STIT)", "TL-ID ratio of means (not STIT)",
                           "TG-ID ratio of means (not STIT)", "same person (frames)", "frames used",
                           "skipped frames"], rows, left=2))
        ti = doc["models"]["temporal_identity"]
        nets = "; ".join(f"<b>{_e(k)}</b>: {_e(v)}" for k, v in ti["embeddings"].items())
        out.append(f"<p>TL-ID / TG-ID: {_e(ti['definition'])} Embeddings: {nets}. {_e(ti['comparability'])} "
                   f"<span class='muted'>{_e(ti['ratio_of_means'])}.</span></p>")
        rows = []
        for c in doc["comparisons"]:
            fc, bg, fl = c["face_crop"], c["background"], c["flicker"]
            lp_cell = fmt(fc["lpips"].get("mean"), 4) if fc["lpips"]["available"] else "n/a"
            mismatch = " <span class='warn'>(frame counts differ)</span>" if c["frames"]["count_mismatch"] else ""
            rows.append([_e(vids[c["output"]]["label"]), fmt(fc["mse"]["mean"], 5), fmt(fc["psnr"]["mean"], 2),
                         fmt(fc["ssim"]["mean"], 4), lp_cell, fmt(bg["psnr"]["mean"], 2), fmt(bg["ssim"]["mean"], 4),
                         fmt(fl["value"], 3), f"{c['frames']['compared']}" + mismatch])
        out.append(f"<h3>Quality (aligned {doc['settings']['crop_size']}² face crops; background outside the "
                   f"blend mask)</h3>")
        out.append(_table(["output", "MSE", "PSNR (dB)", "SSIM", "LPIPS", "background PSNR (dB)", "background SSIM",
                           "flicker (levels)", "frames compared"], rows))

    # restoration (--reference)
    if doc.get("restoration"):

        out.append("<h2>Restoration vs high-resolution reference</h2>")
        for e in doc["restoration"]:
            fr = e["frames"]
            src = vids[e["source"]]["label"] if e["source"] else None
            out.append(f"<h3>{_e(vids[e['output']]['label'])} vs {_e(e['reference']['label'])}</h3>")
            out.append(f"<p class='muted'>{fr['samples']} face samples in {fr['with_face']} of {fr['analysed']} "
                       f"frames; "
                       f"reference {e['reference']['width']}×{e['reference']['height']}, output "
                       f"{e['output_size'][0]}×{e['output_size'][1]}"
                       + (f", bicubic baseline from {_e(src)} ({e['source_size'][0]}×{e['source_size'][1]})" if src
                          else f"; no bicubic baseline ({_e(e['baseline_reason'])})") + "</p>")
            rows = [[_e(m), _e(a).replace("inf", "∞"), _e(b).replace("inf", "∞")] for m, a, b in restoration_rows(e)]
            out.append(_table(["metric (mean over samples)", "restored", "bicubic baseline"], rows))
            if len(e["tracks"]) > 1:
                trows = [[str(tr["track_id"]), str(tr["samples"]), f"{tr['first_frame']}–{tr['last_frame']}",
                          fmt((tr["restored"] or {}).get("psnr", {}).get("mean"), 2),
                          fmt((tr["bicubic"] or {}).get("psnr", {}).get("mean"), 2),
                          fmt((tr["restored"] or {}).get("ssim", {}).get("mean"), 4),
                          fmt((tr["bicubic"] or {}).get("ssim", {}).get("mean"), 4)] for tr in e["tracks"]]
                out.append(_table(["track", "samples", "frames", "PSNR restored", "PSNR bicubic", "SSIM restored",
                                   "SSIM bicubic"], trows))
            out.append(f"<p class='muted'>{_e(e['definition'])}</p>")

    # warnings
    if doc["warnings"]:
        out.append("<h2>Warnings</h2><ul>")
        out.extend(f"<li class='warn'>{_e(w)}</li>" for w in doc["warnings"])
        out.append("</ul>")

    # plots
    if doc["plots"]:
        out.append("<h2>Plots</h2>")
        for p in doc["plots"]:
            data = base64.b64encode((Path(plot_dir) / p["file"]).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt='{_e(p['title'])}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{_e(p['title'])} (<code>{_e(p['file'])}</code>)</figcaption></figure>")

    out.append("<h2>Definitions</h2><ul class='muted'>"
               "<li><b>Identity similarity</b>: cosine similarity of the identity embeddings of source frame i and "
               "output frame i (each face aligned the way its network expects).</li>"
               "<li><b>Same person</b>: share of frames the network itself calls the same person (dlib: "
               "descriptor distance &lt; 0.6); n/a for networks without such a rule.</li>"
               "<li><b>Identity consistency (IC)</b>: Feature-Style encoder eq. 9, mean over frames i of "
               "cos(e_i, e_ref) with ref the first frame with a face (the reference itself left out).</li>"
               "<li><b>TL-ID / TG-ID</b> (Stitch it in Time): per frame pair, the output's identity similarity "
               "divided by the source's (R = S_edit / S_src); TL-ID is the mean of R over adjacent pairs, TG-ID "
               "over all ordered pairs i ≠ j; 1 = as consistent as the source. Pairs count only where both frames "
               "have a face in both videos. The <i>ratio of means</i> columns divide the mean similarities "
               "instead; they are not STIT's metric.</li>"
               "<li><b>CNN detector fallback</b>: frames where dlib's HOG detector found no face and its CNN "
               "detector was tried (only with <code>--cnn-fallback</code>; 2–4 s per frame on CPU).</li>"
               "<li><b>MSE / PSNR / SSIM / LPIPS</b>: aligned face crops of source and output cut with the source's "
               "quad; MSE on [0, 1]; PSNR = 10 log10(1/MSE), ∞ for identical crops; SSIM with an 11×11 Gaussian "
               "window (σ 1.5).</li>"
               "<li><b>Background</b>: PSNR / SSIM of the frame outside the (dilated, feathered) landmark blend "
               "mask.</li>"
               "<li><b>Flicker</b>: mean absolute frame-to-frame change of the output's face region minus that "
               "of the source (8-bit levels); &gt; 0 = less stable than the source.</li>"
               "<li>Frames without a tracked face are excluded from identity metrics and counted above.</li></ul>")
    out.append("</body></html>")
    return "\n".join(out)
