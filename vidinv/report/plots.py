"""PNG plots of a report (matplotlib, Agg canvas; no pyplot state, no display needed).

* :func:`plot_comparison_identity`: per-frame identity similarity (source frame i vs output frame i) and
  the identity-consistency curves ``cos(e_i, e_r)`` of source and output.
* :func:`plot_comparison_quality`: per-frame PSNR / SSIM of the face crop and of the background, and the
  frame-to-frame change of the face region (flicker) of source and output.
* :func:`plot_video_consistency`: ``cos(e_i, e_r)`` of one video, per identity network.
* :func:`plot_consistency_boxplot`: identity consistency across videos as box plots (the Feature-Style
  paper's Fig. 9 layout: one box per group of videos).

Colours are fixed so the report reads the same everywhere: source :data:`SOURCE_COLOUR` (blue), outputs
:data:`OUTPUT_COLOURS` (red first). Frames without a face are shaded grey.
"""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from vidinv.io.outputs import atomic_path

__all__ = ["SOURCE_COLOUR", "OUTPUT_COLOURS", "plot_comparison_identity", "plot_comparison_quality",
           "plot_video_consistency", "plot_consistency_boxplot", "plot_document", "output_group"]

SOURCE_COLOUR = "#1f77b4"
OUTPUT_COLOURS = ("#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")
_EXTRA = ("#ff7f0e", "#9467bd", "#17becf")
_NOFACE = "#d9d9d9"
DPI = 100


def _figure(w: float, h: float, rows: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    return fig, axes


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", dpi=DPI)
    return path


def _shade(ax, x: np.ndarray, missing: np.ndarray, label: str | None = "no face") -> None:
    """Grey spans over runs of frames where ``missing`` is True."""
    if x.size == 0 or not missing.any():
        return
    step = float(np.median(np.diff(x))) if x.size > 1 else 1.0
    first = True
    i = 0
    n = x.size
    while i < n:
        if missing[i]:
            j = i
            while j + 1 < n and missing[j + 1]:
                j += 1
            ax.axvspan(x[i] - step / 2, x[j] + step / 2, color=_NOFACE, alpha=0.7, lw=0,
                       label=label if first else None)
            first = False
            i = j + 1
        else:
            i += 1


def _finite(v) -> np.ndarray:
    a = np.array([np.nan if (x is None or isinstance(x, str)) else x for x in v], dtype=np.float64) \
        if isinstance(v, list) else np.asarray(v, dtype=np.float64).copy()
    a[~np.isfinite(a)] = np.nan
    return a


def plot_comparison_identity(path: Path, frame_index: Sequence[int], similarity: dict[str, np.ndarray],
                             source_curve: np.ndarray, output_curve: np.ndarray, primary: str,
                             source_label: str, output_label: str, colour: str = OUTPUT_COLOURS[0],
                             consistency: tuple[float, float] = (float("nan"), float("nan"))) -> Path:
    """Two panels: identity similarity per frame (one line per identity network) and the identity
    consistency curves ``cos(e_i, e_r)`` of source and output (network ``primary``).

    Args:
        path: PNG to write.
        frame_index: original frame indices (x axis), length K.
        similarity: network key -> (K,) per-frame similarity source vs output (NaN = excluded).
        source_curve, output_curve: (K,) similarity to the reference frame (NaN = excluded).
        primary: key of the network of the curves.
        source_label, output_label: legend names.
        colour: colour of the output.
        consistency: (source, output) identity consistency values for the legend.
    """
    x = np.asarray(frame_index, dtype=np.float64)
    fig, (a1, a2) = _figure(10, 6.4, rows=2)
    missing = None
    for i, (key, sim) in enumerate(similarity.items()):
        s = _finite(sim)
        if missing is None:
            missing = np.isnan(s)
            _shade(a1, x, missing)
        c = colour if key == primary else _EXTRA[i % len(_EXTRA)]
        a1.plot(x, s, color=c, lw=1.6, label=f"{key}: mean {np.nanmean(s):.3f}" if np.isfinite(s).any() else key)
    a1.set_ylabel("identity similarity\n(source i vs output i)")
    a1.set_title(f"Identity similarity: {output_label} vs {source_label}")
    a1.legend(loc="lower left", fontsize=8)
    a1.grid(alpha=0.3)
    s, o = _finite(source_curve), _finite(output_curve)
    _shade(a2, x, np.isnan(s) | np.isnan(o))
    a2.plot(x, s, color=SOURCE_COLOUR, lw=1.6, label=f"source (IC {consistency[0]:.3f})")
    a2.plot(x, o, color=colour, lw=1.6, label=f"output (IC {consistency[1]:.3f})")
    a2.set_ylabel(f"cos(e_i, e_ref)  [{primary}]")
    a2.set_xlabel("frame")
    a2.set_title("Identity consistency curves (similarity to the first frame with a face)")
    a2.legend(loc="lower left", fontsize=8)
    a2.grid(alpha=0.3)
    return _save(fig, path)


def plot_comparison_quality(path: Path, frame_index: Sequence[int], per_frame: dict[str, np.ndarray],
                            source_label: str, output_label: str, colour: str = OUTPUT_COLOURS[0]) -> Path:
    """Three panels: PSNR (face crop, background), SSIM (face crop, background) and the frame-to-frame
    change of the face region of source and output. Infinite PSNR (identical pixels) is drawn at the top
    of the panel with triangle markers."""
    n = len(per_frame["crop_psnr"])
    x = np.asarray(frame_index[:n], dtype=np.float64)
    fig, (a1, a2, a3) = _figure(10, 8, rows=3)
    for key, lab, ls in (("crop_psnr", "face crop", "-"), ("bg_psnr", "background", "--")):
        v = np.asarray(per_frame[key], dtype=np.float64)
        fin = np.where(np.isfinite(v), v, np.nan)
        a1.plot(x, fin, ls, color=colour, lw=1.4, label=lab)
        inf = np.isposinf(v)
        if inf.any():
            top = np.nanmax(fin) + 2 if np.isfinite(fin).any() else 60.0
            a1.plot(x[inf], np.full(inf.sum(), top), "^", color=colour, ms=4,
                    label=f"{lab}: identical (PSNR = inf)")
    a1.set_ylabel("PSNR (dB)")
    a1.set_title(f"Reconstruction quality: {output_label} vs {source_label}")
    a1.legend(loc="lower left", fontsize=8)
    a1.grid(alpha=0.3)
    for key, lab, ls in (("crop_ssim", "face crop", "-"), ("bg_ssim", "background", "--")):
        a2.plot(x, _finite(per_frame[key]), ls, color=colour, lw=1.4, label=lab)
    a2.set_ylabel("SSIM")
    a2.legend(loc="lower left", fontsize=8)
    a2.grid(alpha=0.3)
    a3.plot(x, _finite(per_frame["change_source"]), color=SOURCE_COLOUR, lw=1.4, label="source")
    a3.plot(x, _finite(per_frame["change_output"]), color=colour, lw=1.4, label="output")
    a3.set_ylabel("face change\n(8-bit levels / frame)")
    a3.set_xlabel("frame")
    a3.legend(loc="upper left", fontsize=8)
    a3.grid(alpha=0.3)
    return _save(fig, path)


def plot_video_consistency(path: Path, frame_index: Sequence[int], curves: dict[str, np.ndarray], label: str,
                           consistency: dict[str, float], colour: str = SOURCE_COLOUR) -> Path:
    """``cos(e_i, e_ref)`` per frame of one video, one line per identity network (legend: its identity
    consistency from ``consistency``)."""
    x = np.asarray(frame_index, dtype=np.float64)
    fig, (ax,) = _figure(10, 3.6)
    missing = None
    for i, (key, c) in enumerate(curves.items()):
        v = _finite(c)
        if missing is None:
            missing = np.isnan(v)
            _shade(ax, x, missing)
        ic = consistency.get(key, float("nan"))
        ax.plot(x, v, color=colour if i == 0 else _EXTRA[i % len(_EXTRA)], lw=1.6, label=f"{key} (IC {ic:.3f})")
    ax.set_title(f"Identity consistency curve: {label}")
    ax.set_xlabel("frame")
    ax.set_ylabel("cos(e_i, e_ref)")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_consistency_boxplot(path: Path, groups: Mapping[str, Sequence[float] | np.ndarray], title: str,
                             ylabel: str, colours: dict[str, str] | None = None) -> Path:
    """Box plot (quartiles, 1.5 IQR whiskers) of values per group with the individual values overlaid.

    Args:
        path: PNG to write.
        groups: group name -> values (NaN ignored); empty groups are skipped.
        title, ylabel: texts.
        colours: group name -> colour (default: source blue, others red/green/...).
    """
    names = [g for g, v in groups.items() if np.isfinite(np.asarray(v, dtype=np.float64)).any()]
    data = [np.asarray(groups[g], dtype=np.float64) for g in names]
    data = [d[np.isfinite(d)] for d in data]
    fig, (ax,) = _figure(max(7.0, 1.4 * len(names) + 3.0), 4.8)
    if names:
        bp = ax.boxplot(data, patch_artist=True, widths=0.5, showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=20 if len(names) > 4 else 0)
        for i, (g, box) in enumerate(zip(names, bp["boxes"])):
            c = (colours or {}).get(g) or (SOURCE_COLOUR if g == "source" else OUTPUT_COLOURS[i % len(OUTPUT_COLOURS)])
            box.set_facecolor(c)
            box.set_alpha(0.45)
            box.set_edgecolor(c)
            jitter = (np.arange(data[i].size) % 7 - 3) * 0.03
            ax.plot(np.full(data[i].size, i + 1.0) + jitter, data[i], "o", color=c, ms=4)
    ax.set_title("\n".join(textwrap.wrap(title, 85)), fontsize=11)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


# ---------------------------------------------------------------------- a whole document
def output_group(output: Path | str, source: Path | str) -> str:
    """Group name of an output in the box plot: what its file stem adds to the source's stem
    (``talking_fs.mp4`` of ``talking.mp4`` -> ``"fs"``), or ``"output"``."""
    o, s = Path(output).stem, Path(source).stem
    if o.lower().startswith(s.lower()) and len(o) > len(s):
        rest = o[len(s):].lstrip("_-. ")
        if rest:
            return rest
    return "output"


def _arr(values) -> np.ndarray:
    """A document list (numbers, None, "inf"/"-inf") as float64 (None -> NaN)."""
    if values is None:
        return np.zeros(0)
    conv = {"inf": np.inf, "-inf": -np.inf}
    return np.array([np.nan if v is None else conv.get(v, v) if isinstance(v, str) else v for v in values],
                    dtype=np.float64)


def _num(v) -> float:
    return float(_arr([v])[0])


def plot_document(out_dir: Path, doc: dict) -> list[dict]:
    """Write the PNG plots of a report document (JSON form, as :func:`vidinv.io.outputs.json_safe` makes
    it) into ``out_dir``: per comparison the identity and quality plots, per source without an output its
    consistency curve, and the consistency box plot when there are two videos or more.

    Returns:
        The document's ``plots`` entries (``file``, ``kind``, ``videos``, ``title``), in the order written.
    """
    primary = doc["models"]["primary_identity"]
    vids = {v["id"]: v for v in doc["videos"]}
    entries: list[dict] = []
    colour_of: dict[str, str] = {}
    for i, c in enumerate(doc["comparisons"]):
        colour = OUTPUT_COLOURS[i % len(OUTPUT_COLOURS)]
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
        plot_comparison_identity(out_dir / name, fidx, sims, _arr(ident[primary]["source_similarity_to_reference"]),
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
            plot_comparison_quality(out_dir / name, sv["frames"]["frame_index"], per_frame, sv["label"],
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
            plot_video_consistency(out_dir / name, v["frames"]["frame_index"], curves, v["label"], ics)
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
                cols[v["label"]] = (SOURCE_COLOUR if v["role"] == "source"
                                    else colour_of.get(v["id"], OUTPUT_COLOURS[0]))
            data = per_video
            title = f"Identity consistency per video ({primary}; one point per frame: cos(e_i, e_ref))"
            ylabel = "cos(e_i, e_ref)"
        plot_consistency_boxplot(out_dir / "consistency_boxplot.png", data, title, ylabel, colours=cols)
        entries.append({"file": "consistency_boxplot.png", "kind": "consistency_boxplot",
                        "videos": [v["id"] for v in doc["videos"]], "title": title})
    return entries
