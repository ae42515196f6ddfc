"""``vidinv track IN -o preview.mp4``: run the face front-end on a video and draw what it found.

Every frame of the preview shows, per tracked face: the raw landmarks (dots; orange when the frame's
landmarks were interpolated across a detection gap), the smoothed crop quad (its top edge, the aligned
crop's top, drawn thicker), the track id, and the outline of the blend mask (the landmark mask of
:func:`vidinv.face.blend.mask_from_landmarks` built in the aligned crop and warped back into the frame
with the inverse warp), and the confidence gate ``vidinv edit`` would apply to the face (:mod:`vidinv.face.gate`,
default thresholds, without the ``identity`` component, which needs the generator): ``gate 0.62 yaw`` = the
faded gate and the component limiting it, in green (1), orange (partly open) or red (0, the input is kept).
Frames without a tracked face are copied unchanged. ``--json`` also writes the per-frame landmarks, quads and
gates of every track.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import click
import numpy as np

from vidinv.cli.common import one_line_errors

# colours (RGB) of the preview overlay
_TRACK_COLOURS = [(0, 255, 0), (255, 0, 255), (0, 200, 255), (255, 255, 0), (255, 128, 0), (128, 128, 255)]
_INTERP = (255, 140, 0)
_MASK = (0, 255, 255)
_GATE_OPEN, _GATE_PARTIAL, _GATE_CLOSED = (0, 230, 0), (255, 165, 0), (255, 40, 40)
MASK_SIZE = 256  # resolution of the aligned mask used for the outline


def mask_outline(landmarks: np.ndarray, quad: np.ndarray, frame_hw: tuple[int, int]) -> list[np.ndarray]:
    """Outline of the landmark blend mask in frame pixels.

    The smoothed ``landmarks`` (68, 2) are mapped into the aligned crop of ``quad`` (``MASK_SIZE``²), the
    mask :func:`vidinv.face.blend.mask_from_landmarks` is drawn there, warped back with
    :func:`vidinv.face.align.unalign_roi` (zero outside the crop) and thresholded at 0.5.

    Returns:
        list of (K, 2) int32 contours in frame pixel coordinates (x, y), possibly empty.
    """
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    import cv2

    from vidinv.face import align, blend

    m = align.crop_matrix(quad, MASK_SIZE)
    lm_aligned = landmarks @ m[:2, :2].T + m[:2, 2]
    mask = blend.mask_from_landmarks(lm_aligned, MASK_SIZE)
    warped, coverage, (x0, y0, _x1, _y1) = align.unalign_roi(mask, quad, frame_hw, border_mode="constant")
    if warped.size == 0:
        return []
    binary = ((warped * (coverage > 0)) >= 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2) + np.array([x0, y0], dtype=np.int32) for c in contours]


def gate_label(gate: dict | None) -> tuple[str, tuple[int, int, int]]:
    """Text and colour of one face's gate (a record as in ``gates.json``, or None: no label)."""
    if gate is None:
        return "", _GATE_OPEN
    g = gate["gate"]
    colour = _GATE_OPEN if g >= 1.0 else _GATE_CLOSED if g <= 0.0 else _GATE_PARTIAL
    return f"gate {g:.2f}" + (f" {gate['limit']}" if gate.get("limit") else ""), colour


def draw_overlay(image: np.ndarray, faces, draw_mask: bool = True, gates: dict | None = None) -> np.ndarray:
    """Draw landmarks, quads, track ids and mask outlines of ``faces`` (list of
    :class:`~vidinv.face.frontend.TrackedFace`) on a copy of an RGB uint8 ``(H, W, 3)`` frame; with ``gates``
    (track id -> a record as in ``gates.json``) each face's gate is written under its label."""
    import cv2

    out = image.copy()
    if not faces:
        return out
    h, w = out.shape[:2]
    scale = max(h, w) / 1000.0
    thick = max(1, int(round(2 * scale)))
    radius = max(1, int(round(2 * scale)))
    for f in faces:
        colour = _TRACK_COLOURS[f.track_id % len(_TRACK_COLOURS)]
        if draw_mask:
            for c in mask_outline(f.landmarks, f.quad, (h, w)):
                cv2.polylines(out, [c.reshape(-1, 1, 2)], True, _MASK, thick, cv2.LINE_AA)
        q = np.rint(f.quad).astype(np.int32)
        cv2.polylines(out, [q.reshape(-1, 1, 2)], True, colour, thick, cv2.LINE_AA)
        cv2.line(out, tuple(int(v) for v in q[0]), tuple(int(v) for v in q[3]), colour, 3 * thick, cv2.LINE_AA)
        dot = _INTERP if f.interpolated else colour
        for x, y in f.landmarks_raw:
            if math.isfinite(x) and math.isfinite(y):
                cv2.circle(out, (int(round(x)), int(round(y))), radius, dot, -1, cv2.LINE_AA)
        label = f"#{f.track_id}" + (" interp" if f.interpolated else "")
        fs = max(0.5, 0.9 * scale)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, fs, thick)
        x = int(np.clip(q[:, 0].min(), 0, max(w - tw - 4, 0)))
        y = int(np.clip(q[:, 1].min() - 3 * thick, th + 4, h - base - 2))
        cv2.rectangle(out, (x, y - th - 3), (x + tw + 4, y + base), (0, 0, 0), -1)
        cv2.putText(out, label, (x + 2, y), cv2.FONT_HERSHEY_SIMPLEX, fs, colour, thick, cv2.LINE_AA)
        text, gcol = gate_label((gates or {}).get(f.track_id))
        if text:
            (gw, gh), gbase = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, thick)
            gy = int(np.clip(q[:, 1].max() + gh + 3 * thick, gh + 4, h - gbase - 2))
            gx = int(np.clip(q[:, 0].min(), 0, max(w - gw - 4, 0)))
            cv2.rectangle(out, (gx, gy - gh - 3), (gx + gw + 4, gy + gbase), (0, 0, 0), -1)
            cv2.putText(out, text, (gx + 2, gy), cv2.FONT_HERSHEY_SIMPLEX, fs, gcol, thick, cv2.LINE_AA)
    return out


class PreviewGates:
    """The gate of the track preview: the landmark components of :mod:`vidinv.face.gate` (pose, score drop,
    interpolation; default thresholds and fade, no ``identity``) per face, faded per track. :meth:`push` a
    front-end frame; it returns the frames now final as ``[((index, frame, faces), {track id: record})]``
    (records as in ``vidinv edit --report``'s ``gates.json``), ``fade`` frames later; :meth:`flush` at the end."""

    def __init__(self, settings=None):
        # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
        from vidinv.face.gate import FrameFades, GateSettings

        self.settings = settings or GateSettings(identity=None)
        self._fades = FrameFades(self.settings.fade)
        self._refs: dict = {}
        self._info: dict = {}

    def push(self, index: int, frame, faces) -> list:
        # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
        from vidinv.face.gate import ScoreReference, combine, landmark_components

        raw = {}
        for f in faces:
            ref = self._refs.setdefault(f.track_id, ScoreReference())
            drop = ref.push(f.score, f.detector, f.interpolated)
            comps, meas = landmark_components(self.settings, f.landmarks, f.landmarks_raw, score_drop=drop,
                                              interpolated=f.interpolated)
            g, limit = combine(comps)
            raw[f.track_id] = g
            self._info[(index, f.track_id)] = (g, limit, comps, meas)
        return self._records(self._fades.push(index, (index, frame, faces), raw))

    def flush(self) -> list:
        return self._records(self._fades.flush())

    def _records(self, done) -> list:
        out = []
        for (index, frame, faces), gates in done:
            recs = {}
            for f in faces:
                g, limit, comps, meas = self._info.pop((index, f.track_id))
                recs[f.track_id] = {"gate": round(gates[f.track_id], 4), "raw": round(g, 4), "limit": limit,
                                    "components": {k: round(v, 4) for k, v in comps.items()},
                                    "measures": {k: (round(v, 3) if math.isfinite(v) else None)
                                                 for k, v in meas.items()}}
            out.append(((index, frame, faces), recs))
        return out


def _r(a, nd: int = 3):
    return np.round(np.asarray(a, dtype=np.float64), nd).tolist()


def face_record(f) -> dict:
    """JSON-ready dict of one :class:`~vidinv.face.frontend.TrackedFace` (pixels, 3 decimals)."""
    return {
        "track_id": int(f.track_id),
        "interpolated": bool(f.interpolated),
        "score": None if not math.isfinite(f.score) else round(float(f.score), 4),
        "box": _r(f.box),
        "landmarks_raw": _r(f.landmarks_raw),
        "landmarks": _r(f.landmarks),
        "quad": _r(f.quad),
        "qsize": round(float(f.qsize), 3),
        "quad_raw": _r(f.quad_raw),
        "qsize_raw": round(float(f.qsize_raw), 3),
    }


@click.command("track")
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Preview video to write (H.264 MP4, same frame count and rate as IN, no audio).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write per-frame landmarks and quads of every track to this JSON file.")
@click.option("--face", "face_mode", type=click.Choice(["largest", "all"]), default="largest", show_default=True,
              help="largest: the largest face where faces first appear; all: every face.")
@click.option("--detector", type=click.Choice(["dlib", "fan"]), default="dlib", show_default=True,
              help="Landmark detector back-end (fan needs the face_alignment package and its cached weights).")
@click.option("--smoothing", type=click.Choice(["gaussian", "one_euro", "none"]), default="gaussian",
              show_default=True, help="Temporal smoothing of landmarks and quads.")
@click.option("--sigma", type=float, default=3.0, show_default=True,
              help="Gaussian smoothing sigma of the landmarks in frames (quads use 2 sigma).")
@click.option("--variant", type=click.Choice(["ffhq", "fs_video"]), default="ffhq", show_default=True,
              help="Quad rule: official FFHQ (6-point eye centres) or the Feature-Style video variant.")
@click.option("--max-gap", type=int, default=8, show_default=True,
              help="Longest detection gap (frames) bridged by interpolation.")
@click.option("--lk/--no-lk", default=False, show_default=True,
              help="Refine landmarks with Lucas-Kanade optical flow before smoothing.")
@click.option("--max-side", type=int, default=960, show_default=True,
              help="dlib: run the HOG detector on a copy with this longest side (0 = full resolution).")
@click.option("--upsample", type=int, default=1, show_default=True, help="dlib: HOG pyramid upsampling.")
@click.option("--cnn-fallback/--no-cnn-fallback", default=True, show_default=True,
              help="dlib: try the (slow) CNN detector on frames where HOG finds no face.")
@click.option("--no-mask", is_flag=True, help="Do not draw the blend-mask outline.")
@click.option("--crf", type=int, default=20, show_default=True, help="x264 quality of the preview.")
@click.option("--max-frames", type=int, default=None, help="Only the first N frames (quick look).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@one_line_errors
def track_cmd(input_path: Path, output: Path, json_path: Path | None, face_mode: str, detector: str,
              smoothing: str, sigma: float, variant: str, max_gap: int, lk: bool, max_side: int, upsample: int,
              cnn_fallback: bool, no_mask: bool, crf: int, max_frames: int | None, quiet: bool) -> None:
    """Detect, track and smooth faces in IN; write a preview with the overlays to -o.

    The preview shows landmarks (dots, orange when interpolated), the smoothed crop quad (thick edge =
    top of the aligned crop), the track id and the blend-mask outline (landmark hull mask warped back
    from the aligned crop). Runs on CPU; uses no model weights beyond dlib's bundled files.
    """
    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from vidinv.io.outputs import atomic_write_text, check_output, check_video_input

    # every file checked before any work; the preview and the JSON are written atomically
    check_video_input(input_path)
    check_output(output, [input_path], kind="video", codec="libx264", expect_bytes=input_path.stat().st_size)
    if json_path is not None:
        check_output(json_path, [input_path], also_written=[output], what="JSON file")

    # on use: keeps `vidinv --help` and the light commands free of torch (start-up time)
    from tqdm import tqdm

    from vidinv.face.detect import DetectorUnavailableError, get_detector
    from vidinv.face.frontend import FaceFrontEnd
    from vidinv.face.tracking import Tracker
    from vidinv.io.video import VideoReader, VideoWriter

    try:
        if detector == "dlib":
            det = get_detector("dlib", max_side=max_side or None, upsample=upsample, cnn_fallback=cnn_fallback)
        else:
            det = get_detector(detector)
    except DetectorUnavailableError as e:
        raise click.ClickException(str(e)) from None
    reader = VideoReader(input_path, stop=max_frames)
    info = reader.info
    fps = info.fps or 30
    width, height = reader.frame_size
    frontend = FaceFrontEnd(det, Tracker(mode=face_mode, max_gap=max_gap), smoothing=smoothing, sigma=sigma,
                            variant=variant, lk_refine=lk)
    frames_json = []
    tracks: dict[int, dict] = {}
    t0 = time.perf_counter()
    total = info.estimated_frames if max_frames is None else min(max_frames, info.estimated_frames or max_frames)
    bar = tqdm(total=total, unit="frame", desc=f"track {input_path.name}", file=sys.stderr,
               disable=quiet, dynamic_ncols=True)
    n = 0
    try:
        with VideoWriter(output, width, height, fps=fps, crf=crf, preset="veryfast") as writer:
            gating = PreviewGates()

            def emit(done) -> None:
                nonlocal n
                for (index, frame, faces), gates in done:
                    writer.write(draw_overlay(frame.image, faces, draw_mask=not no_mask, gates=gates))
                    n += 1
                    bar.update(1)
                    if json_path is not None:
                        frames_json.append({"index": index, "time": frame.time,
                                            "faces": [dict(face_record(f), gate=gates[f.track_id]) for f in faces]})
                    for f in faces:
                        t = tracks.setdefault(int(f.track_id), {"first": index, "last": index, "frames": 0,
                                                                "interpolated": 0})
                        t["last"] = index
                        t["frames"] += 1
                        t["interpolated"] += int(f.interpolated)

            for index, frame, faces in frontend.process(reader):
                emit(gating.push(index, frame, faces))
            emit(gating.flush())
            if json_path is not None:  # before the preview is moved into place: an error here leaves neither
                doc = {
                    "video": str(input_path), "width": width, "height": height, "fps": float(fps),
                    "num_frames": n, "detector": detector, "face": face_mode, "smoothing": smoothing,
                    "sigma": sigma, "variant": variant, "max_gap": max_gap, "lk": lk,
                    "gate": gating.settings.describe(),
                    "units": "frame pixels, x = column, y = row; quad corners: top-left, bottom-left, "
                             "bottom-right, top-right of the aligned crop",
                    "tracks": {str(k): v for k, v in sorted(tracks.items())},
                    "frames": frames_json,
                }
                atomic_write_text(json_path, json.dumps(doc))
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    st = frontend.stats
    click.echo(f"{n} frames, {st['frames_with_face']} with a tracked face, {len(tracks)} track(s), "
               f"{st['interpolated']} interpolated, {st['cuts']} scene cut(s); {elapsed:.1f} s "
               f"({n / max(elapsed, 1e-9):.1f} frames/s) -> {output}", err=True)
