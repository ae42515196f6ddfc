"""What the browser preview does, without the browser: analyse a video once, preview an edit on a few frames
from the cached inversion, render the whole clip with its report.

:class:`PreviewSession` is the state of one ``vidinv ui`` server (Gradio is not imported here;
:mod:`vidinv.ui.app` wires these calls to the page):

1. :meth:`PreviewSession.analyse`: the uploaded video is copied into the session's cache folder under its
   sha256, and inverted once (:func:`vidinv.pipeline.invert.run_invert`: detection, tracking, smoothing,
   encoding; the ``vidinv invert`` export) into ``<cache>/<sha>/inversion``. A second upload of the same
   file with the same settings reuses the export. The result (:class:`Analysis`) holds the tracks and an
   overview frame with each tracked face's crop quad and track id drawn.
2. :meth:`PreviewSession.preview`: a few frames (spread over the frames that hold a face) re-rendered with
   the chosen edit from the export (``vidinv edit --from-inversion`` with a one-frame ``--start/--end``
   window per frame; :func:`vidinv.pipeline.edit.edit_input`); the networks load once per export and stay
   loaded, so a preview costs only the generator runs (seconds on CPU with the official weights).
3. :meth:`PreviewSession.render`: the whole clip from the export (as ``vidinv edit IN -o OUT
   --from-inversion DIR``), then, optionally, its report (as ``vidinv edit --report``:
   :func:`vidinv.report.run_report`), zipped for download.

Everything is written under :attr:`PreviewSession.cache_dir` (a new temporary folder unless given); nothing
leaves the machine.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidinv.edit.attributes import ATTRIBUTES, DEFAULT_SOURCE
from vidinv.io.inversion import MANIFEST, InversionReader
from vidinv.io.mux import video_frame_times
from vidinv.io.outputs import atomic_path, sha256_file
from vidinv.io.video import VideoReader, probe
from vidinv.pipeline.edit import EditOptions, edit_input, load_edit_job, plan_edit
from vidinv.pipeline.invert import InvertOptions, run_invert
from vidinv.pipeline.job import Job
from vidinv.report import run_report
from vidinv.report.compute import ReportOptions

log = logging.getLogger(__name__)

__all__ = ["UiSettings", "Analysis", "PreviewFrame", "RenderResult", "PreviewSession", "direction_choices",
           "gate_options", "draw_tracks", "MASKS"]

#: Blend masks offered (as ``vidinv edit --mask``).
MASKS = ("landmarks", "auto", "parsing")
#: Colours (RGB) of the track outlines of the overview frame, by track id.
TRACK_COLOURS = [(0, 255, 0), (255, 0, 255), (0, 200, 255), (255, 255, 0), (255, 128, 0), (128, 128, 255)]

Progress = Callable[[int, "int | None"], None]


def direction_choices() -> list[str]:
    """Every named attribute direction as ``SOURCE:NAME`` (:data:`vidinv.edit.attributes.ATTRIBUTES`), the
    default source of each name first, then the others; names sorted."""
    out = []
    for name in sorted(ATTRIBUTES):
        srcs = ATTRIBUTES[name]
        first = DEFAULT_SOURCE[name]
        out += [f"{first}:{name}"] + [f"{s}:{name}" for s in srcs if s != first]
    return out


def gate_options(enabled: bool) -> dict:
    """The :class:`~vidinv.pipeline.edit.EditOptions` keyword of the confidence gate (``vidinv edit --gate``):
    ``{"gate": ...}`` in the type of that field's default (a bool, or ``"on"`` / ``"off"``), or ``{}`` when
    this vidinv's edit has no gate (the setting then has no effect)."""
    fields = {f.name: f for f in dataclasses.fields(EditOptions)}
    f = fields.get("gate")
    if f is None:
        return {}
    if isinstance(f.default, bool):
        return {"gate": bool(enabled)}
    return {"gate": "on" if enabled else "off"}


@dataclass(kw_only=True)
class UiSettings:
    """Settings of a ``vidinv ui`` server (fixed for its lifetime; the page picks the edit).

    Attributes:
        weights_dir: folder of hand-placed weight files (``--weights-dir``), searched before $VIDINV_HOME.
        device, precision: as ``vidinv edit --device / --precision``.
        encoder: inversion encoder kind (``"fs"`` or ``"psp"``).
        face: ``"largest"`` or ``"all"`` (tracks inverted).
        batch_size: faces per encoder / generator batch.
        cache_dir: where uploads, exports and renders go (None: a new temporary folder).
        gate: the initial state of the page's confidence-gate setting (``vidinv edit --gate``; the page
            can change it per preview / render).
    """

    weights_dir: str | os.PathLike | None = None
    device: str = "auto"
    precision: str = "fp32"
    encoder: str = "fs"
    face: str = "largest"
    batch_size: int = 4
    cache_dir: str | os.PathLike | None = None
    gate: bool = True


@dataclass
class Analysis:
    """One analysed video.

    Attributes:
        key: the cache key (first 16 hex digits of the video's sha256, the encoder and face mode).
        video: the session's copy of the upload.
        export: the inversion export folder (:mod:`vidinv.io.inversion`).
        fps, frames, duration: the video's rate, frame count and length in seconds.
        tracks: ``{track id: frames with that face}``.
        face_frames: indices of the frames with at least one face, ascending.
        overview: (H, W, 3) uint8 RGB frame with each face's crop quad and ``#id`` drawn (the first frame
            with the most faces), or the first frame when no face was found; overview_frame: its index.
        invert_s: seconds the inversion took (0 when reused from the cache).
    """

    key: str
    video: Path
    export: Path
    fps: float
    frames: int
    duration: float
    tracks: dict[int, int]
    face_frames: list[int]
    overview: np.ndarray
    overview_frame: int
    invert_s: float = 0.0

    def summary(self) -> str:
        """One line: frames, length, tracks and their frame counts."""
        if not self.tracks:
            return f"{self.frames} frames ({self.duration:.1f} s): no face found"
        per = ", ".join(f"#{t}: {n} frames" for t, n in sorted(self.tracks.items()))
        return f"{self.frames} frames ({self.duration:.1f} s), {len(self.tracks)} track(s) ({per})"


@dataclass
class PreviewFrame:
    """One previewed frame: its index and time (s), the original and the edited picture ((H, W, 3) uint8 RGB)."""

    index: int
    time: float
    original: np.ndarray
    edited: np.ndarray

    def side_by_side(self) -> np.ndarray:
        """The original (left) and the edited frame (right), (H, 2W, 3) uint8."""
        return np.concatenate([self.original, self.edited], axis=1)


@dataclass
class RenderResult:
    """A rendered clip: the video, the report folder and its zip (None without a report), frames written and
    edited, and the edit's description (``fs:smile x2 (rows all)``)."""

    video: Path
    report_dir: Path | None
    report_zip: Path | None
    frames: int
    frames_edited: int
    edit: str
    wall_s: float = 0.0
    files: list[Path] = field(default_factory=list)


def draw_tracks(image: np.ndarray, faces: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """Draw each face's crop quad (the aligned crop's outline; its top edge thicker) and ``#id`` on a copy of
    an RGB uint8 ``(H, W, 3)`` frame. ``faces``: ``(track id, quad (4, 2) float in frame pixels x, y)``."""
    import cv2

    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    thick = max(1, int(round(2 * max(h, w) / 1000.0)))
    for tid, quad in faces:
        colour = TRACK_COLOURS[tid % len(TRACK_COLOURS)]
        q = np.rint(np.asarray(quad, np.float64)).astype(np.int32)
        cv2.polylines(out, [q.reshape(-1, 1, 2)], True, colour, thick, cv2.LINE_AA)
        cv2.line(out, tuple(int(v) for v in q[0]), tuple(int(v) for v in q[3]), colour, 3 * thick, cv2.LINE_AA)
        x, y = int(q[:, 0].min()), int(q[:, 1].min())
        scale = max(0.5, max(h, w) / 1000.0)
        cv2.putText(out, f"#{tid}", (max(0, x), max(int(22 * scale), y - 6)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.8 * scale, colour, thick + 1, cv2.LINE_AA)
    return out


def _read_frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """The pictures of frames ``indices`` of ``path`` (decoded as the edit pipeline decodes: accurate colour)."""
    want = set(indices)
    out: dict[int, np.ndarray] = {}
    if not want:
        return out
    with VideoReader(path, start=min(want), stop=max(want) + 1, accurate_color=True) as r:
        for fr in r:
            if fr.index in want:
                out[fr.index] = fr.image
    return out


def _window(times: list[float], i: int) -> tuple[float | None, float | None]:
    """``(start, end)`` seconds that select exactly frame ``i`` (midpoints to the neighbours)."""
    start = None if i == 0 else (times[i - 1] + times[i]) / 2
    end = None if i == len(times) - 1 else (times[i] + times[i + 1]) / 2
    return start, end


def _spread(frames: list[int], n: int) -> list[int]:
    """``n`` indices of ``frames`` evenly spread (first and last included), without repeats."""
    if n <= 0 or not frames:
        return []
    if n >= len(frames):
        return list(frames)
    pos = np.linspace(0, len(frames) - 1, n).round().astype(int)
    return sorted({frames[p] for p in pos})


class PreviewSession:
    """The state of one ``vidinv ui`` server: the cache folder, the analysed videos and the loaded networks.

    Calls are serialised (one model job at a time; the page's requests run in threads).

    Args:
        settings: :class:`UiSettings`.
    """

    def __init__(self, settings: UiSettings | None = None):
        self.settings = settings or UiSettings()
        if self.settings.cache_dir is None:
            self.cache_dir = Path(tempfile.mkdtemp(prefix="vidinv-ui-"))
        else:
            self.cache_dir = Path(self.settings.cache_dir)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._analyses: dict[str, Analysis] = {}
        self._jobs: dict[tuple, Job] = {}
        self._renders = 0

    # ------------------------------------------------------------------ analyse
    def analyse(self, video: str | os.PathLike, progress: Progress | None = None) -> Analysis:
        """Copy ``video`` into the cache and invert it (or reuse the export of an earlier upload of the same file).

        Args:
            video: a video file.
            progress: ``progress(frames_done, frames_total)`` during the inversion.

        Returns:
            :class:`Analysis`.

        Raises:
            FileNotFoundError / ValueError: not a readable video.
            What :func:`vidinv.pipeline.invert.run_invert` raises (missing weights: all listed).
        """
        src = Path(video)
        if not src.is_file():
            raise FileNotFoundError(f"{src}: no such video")
        s = self.settings
        info = probe(src)  # not a video: error before any copy
        key = f"{sha256_file(src)[:16]}-{s.encoder}-{s.face}"
        with self._lock:
            if key in self._analyses:
                return self._analyses[key]
            folder = self.cache_dir / key
            folder.mkdir(parents=True, exist_ok=True)
            copy = folder / ("source" + (src.suffix.lower() or ".mp4"))
            if not copy.is_file():
                with atomic_path(copy, fsync=False) as tmp:
                    shutil.copyfile(src, tmp)
            export = folder / "inversion"
            invert_s = 0.0
            if not self._complete(export):
                res = run_invert(InvertOptions(src=copy, dst=export, encoder=s.encoder, face=s.face,
                                               batch_size=s.batch_size, device=s.device, precision=s.precision,
                                               weights_dir=s.weights_dir, overwrite=True),
                                 progress=progress, quiet=True)
                invert_s = res.wall_s
            analysis = self._summarise(key, copy, export, float(info.fps or 0.0), invert_s)
            self._analyses[key] = analysis
            return analysis

    @staticmethod
    def _complete(export: Path) -> bool:
        if not (export / MANIFEST).is_file():
            return False
        try:
            return InversionReader(export, allow_incomplete=True).complete
        except Exception:  # unreadable: invert again (overwrite)
            return False

    def _summarise(self, key: str, video: Path, export: Path, fps: float, invert_s: float) -> Analysis:
        pts, tb = video_frame_times(video)
        n = len(pts)
        reader = InversionReader(export)
        tracks: dict[int, int] = {}
        per_frame: dict[int, list[tuple[int, np.ndarray]]] = {}
        for rec in reader:
            tracks[rec.track_id] = tracks.get(rec.track_id, 0) + 1
            per_frame.setdefault(rec.frame_index, []).append((rec.track_id, rec.quad))
        face_frames = sorted(per_frame)
        best = max(face_frames, key=lambda i: (len(per_frame[i]), -i)) if face_frames else 0
        image = _read_frames(video, [best])[best]
        overview = draw_tracks(image, per_frame.get(best, []))
        duration = float((pts[-1] - pts[0]) * tb) + (1.0 / fps if fps else 0.0) if n else 0.0
        return Analysis(key, video, export, fps, n, duration, tracks, face_frames, overview, best, invert_s)

    def get(self, key: str) -> Analysis:
        """The :class:`Analysis` of ``key`` (as returned by :meth:`analyse`).

        Raises:
            KeyError: no video with that key was analysed by this session.
        """
        with self._lock:
            return self._analyses[key]

    # ------------------------------------------------------------------ edit
    def _options(self, analysis: Analysis, dst: Path, attr: str, strength: float, *, mask: str, gate: bool | None,
                 start: float | None = None, end: float | None = None) -> EditOptions:
        s = self.settings
        gate = s.gate if gate is None else gate
        return EditOptions(src=analysis.video, dst=dst, attrs=[f"{attr}={float(strength)!r}"], mask=mask,
                           from_inversion=analysis.export, start=start, end=end, weights_dir=s.weights_dir,
                           device=s.device, precision=s.precision, batch_size=s.batch_size, **gate_options(gate))

    def _job(self, opts: EditOptions, plan) -> Job:
        """The loaded networks for the export and mask of ``opts`` (loaded on first use, then kept)."""
        key = (str(opts.from_inversion), opts.mask, opts.device, opts.precision)
        if key not in self._jobs:
            self._jobs[key] = load_edit_job(opts, plan)
        return self._jobs[key].for_input(plan.src)

    def preview(self, analysis: Analysis, attr: str, strength: float, *, frames: int = 3, mask: str = "landmarks",
                gate: bool | None = None, indices: list[int] | None = None) -> list[PreviewFrame]:
        """Render ``frames`` frames (spread over the frames with a face; or exactly ``indices``) with the edit
        ``attr`` (a name or ``SOURCE:NAME``) at ``strength``, from the analysis' export; ``mask`` as ``vidinv
        edit --mask``, ``gate`` the confidence gate on/off (None: the settings' :attr:`UiSettings.gate`).

        Returns:
            one :class:`PreviewFrame` per frame, in frame order (none when the video has no face and no
            ``indices`` are given).

        Raises:
            vidinv.edit.DirectionError: unknown attribute, non-finite strength.
            vidinv.weights.MissingWeightsError: the direction file (or a model) is missing.
        """
        chosen = sorted(set(indices)) if indices is not None else _spread(analysis.face_frames, int(frames))
        if not chosen:
            return []
        pts, tb = video_frame_times(analysis.video)
        times = [float(p * tb) for p in pts]
        out: list[PreviewFrame] = []
        with self._lock:
            folder = Path(tempfile.mkdtemp(prefix="preview-", dir=self.cache_dir / analysis.key))
            try:
                base = self._options(analysis, folder / "frame.mp4", attr, strength, mask=mask, gate=gate)
                plan = plan_edit(base, quiet=True)
                job = self._job(base, plan)
                for i in chosen:
                    start, end = _window(times, i)
                    opts = dataclasses.replace(base, start=start, end=end, dst=folder / f"frame_{i}.mp4")
                    got: dict[int, tuple[np.ndarray, np.ndarray]] = {}

                    def keep(it, got=got):
                        got[it.frame.index] = (it.frame.image, it.image)

                    edit_input(job, dataclasses.replace(plan, opts=opts), plan.src, opts.dst, on_frame=keep)
                    if i not in got:
                        raise RuntimeError(f"frame {i} was not rendered (window {start}..{end} s)")
                    original, edited = got[i]
                    out.append(PreviewFrame(i, times[i], np.asarray(original), np.asarray(edited)))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        return out

    def render(self, analysis: Analysis, attr: str, strength: float, *, mask: str = "landmarks",
               gate: bool | None = None, report: bool = True, progress: Progress | None = None,
               echo: Callable[[str], None] | None = None) -> RenderResult:
        """Render the whole clip with the edit from the export, and (``report``) its report.

        Args:
            progress: ``progress(frames_done, frames_total)`` while rendering.
            echo: the report's progress messages (default: dropped).

        Returns:
            :class:`RenderResult` (``files``: the video and, with a report, its zip and report.html).

        Raises:
            What :meth:`preview` raises; errors of the render and the report.
        """
        t0 = time.perf_counter()
        with self._lock:
            self._renders += 1
            folder = self.cache_dir / analysis.key / f"render_{self._renders}"
            folder.mkdir(parents=True, exist_ok=True)
            opts = self._options(analysis, folder / f"{Path(attr.split(':')[-1]).name}_edited.mp4", attr, strength,
                                 mask=mask, gate=gate)
            plan = plan_edit(opts, quiet=True)
            job = self._job(opts, plan)
            res = edit_input(job, plan, plan.src, opts.dst, progress=progress)
            rep_dir = rep_zip = None
            files = [Path(opts.dst)]
            if report:
                rep_dir = folder / "report"
                run_report([analysis.video], [opts.dst], rep_dir, weights_dir=self.settings.weights_dir,
                           device=None if self.settings.device == "auto" else self.settings.device,
                           options=ReportOptions(progress=False), echo=echo or (lambda m: None))
                rep_zip = Path(shutil.make_archive(str(folder / "report"), "zip", root_dir=rep_dir))
                files += [rep_zip, rep_dir / "report.html"]
        return RenderResult(Path(opts.dst), rep_dir, rep_zip, res.frames, res.frames_edited, res.edit,
                            time.perf_counter() - t0, files)
