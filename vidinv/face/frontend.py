"""Streaming face front-end: decoded frames -> detection -> tracking -> temporal smoothing -> quads.

:class:`FaceFrontEnd` turns an iterator of video frames into an iterator of :class:`FaceFrame`
``(index, frame, faces)`` in frame order, where ``faces`` lists a :class:`TrackedFace` per tracked face
in that frame (empty when no tracked face is there: such frames pass through untouched):

1. frames are detected in small batches (``batch_size``) with a :class:`~vidinv.face.detect.LandmarkDetector`;
2. a :class:`~vidinv.face.tracking.SceneCutDetector` flags shot changes;
3. a :class:`~vidinv.face.tracking.Tracker` chooses the face(s) and bridges short detection gaps;
4. each track's landmarks are (optionally refined with Lucas-Kanade optical flow, then) smoothed over
   time by one smoother per track, and the crop quad is computed from them
   (:func:`vidinv.face.align.quad_from_landmarks`):

   * ``"gaussian"`` (default): :class:`vidinv.face.smoothing.QuadSmoother`, the Feature-Style video
     rule (landmarks G_sigma, quad and qsize G_2sigma; sigma = 3 frames), streamed with a look-ahead of
     ``r1 + r2`` = 36 frames; identical to the offline reference over each track;
   * ``"one_euro"``: :class:`vidinv.face.smoothing.OneEuroFilter` on the landmarks (causal, no delay);
   * ``"none"``: quads from the raw landmarks.

Memory is bounded: at most ``batch_size + (max_gap + 1) + delay`` decoded frames are held
(:attr:`FaceFrontEnd.max_buffered_frames`), whatever the video length.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from vidinv.face import align, smoothing
from vidinv.face.detect import LandmarkDetector, get_detector
from vidinv.face.tracking import SceneCutDetector, Tracker, TrackerOutput, TrackPoint
from vidinv.io.video import Frame

__all__ = ["TrackedFace", "FaceFrame", "FaceFrontEnd", "SMOOTHING_MODES"]

SMOOTHING_MODES = ("gaussian", "one_euro", "none")


@dataclass
class TrackedFace:
    """One tracked face in one frame (all coordinates float64 frame pixels, x = column, y = row).

    Attributes:
        track_id: track identity (see :class:`~vidinv.face.tracking.Tracker`).
        landmarks_raw: ``(68, 2)`` detector landmarks (linearly interpolated inside a bridged gap).
        landmarks: ``(68, 2)`` smoothed landmarks (the smoother's input is ``landmarks_raw`` after the
            optional Lucas-Kanade refinement).
        quad: ``(4, 2)`` crop quad (top-left, bottom-left, bottom-right, top-right corners of the aligned
            crop, frame index coordinates) after smoothing; the one to crop and paste back with.
        qsize: side of the crop square in frame pixels (smoothed with the quad).
        quad_raw: ``(4, 2)`` quad computed from ``landmarks_raw`` without smoothing (for diagnostics).
        qsize_raw: its side.
        interpolated: True when the frame had no matching detection (gap bridged by the tracker).
        box: ``(4,)`` detector box ``(x0, y0, x1, y1)`` (interpolated inside gaps).
        score: detector score (``nan`` when interpolated).
        detector: name of the detector of the (last) detection (``"dlib_hog"``, ``"dlib_cnn"``, ``"fan"``).
    """

    track_id: int
    landmarks_raw: np.ndarray
    landmarks: np.ndarray
    quad: np.ndarray
    qsize: float
    quad_raw: np.ndarray
    qsize_raw: float
    interpolated: bool
    box: np.ndarray
    score: float
    detector: str = ""


class FaceFrame(NamedTuple):
    """One output of the front-end: ``(index, frame, faces)``.

    ``frame`` is the :class:`vidinv.io.video.Frame` as it came in (RGB uint8 ``frame.image``); ``faces``
    is a list of :class:`TrackedFace` sorted by track id (empty: no tracked face in this frame).
    """

    index: int  # type: ignore[assignment]  # a field named like tuple.index, part of the public API
    frame: Frame
    faces: list[TrackedFace]


@dataclass
class _Slot:
    frame: Frame
    tracked: bool = False  # the tracker has finalised this frame
    points: dict[int, TrackPoint] = field(default_factory=dict)
    results: dict[int, tuple] = field(default_factory=dict)  # tid -> (landmarks, quad, qsize)
    waiting: set[int] = field(default_factory=set)


class _TrackSmoother:
    """Smoothing state of one track: maps the track's own sample counter to frame indices."""

    def __init__(self, mode: str, variant: str, sigma: float, sigma_quad: float | None, one_euro: dict):
        self.mode = mode
        self.variant = variant
        self.frames: deque[int] = deque()  # frame indices pushed, not yet output (gaussian)
        self.prev_gray: np.ndarray | None = None
        self.prev_landmarks: np.ndarray | None = None
        self.smoother: smoothing.QuadSmoother | smoothing.OneEuroFilter | None
        if mode == "gaussian":
            self.smoother = smoothing.QuadSmoother(sigma_landmarks=sigma, sigma_quad=sigma_quad, variant=variant)
        elif mode == "one_euro":
            self.smoother = smoothing.OneEuroFilter(**one_euro)
        else:
            self.smoother = None

    def push(self, index: int, landmarks: np.ndarray, time: float | None) -> list[tuple]:
        """-> [(frame index, smoothed landmarks, quad, qsize)]"""
        if isinstance(self.smoother, smoothing.QuadSmoother):  # mode "gaussian"
            self.frames.append(index)
            return self._convert(self.smoother.push(landmarks))
        if isinstance(self.smoother, smoothing.OneEuroFilter):  # mode "one_euro"
            lm = self.smoother(landmarks, time)
        else:
            lm = np.array(landmarks, dtype=np.float64)
        quad, qsize = align.quad_from_landmarks(lm, self.variant)
        return [(index, lm, quad, float(qsize))]

    def _convert(self, items) -> list[tuple]:
        out = []
        for sf in items:
            # outputs come in track order; the oldest pushed frame is the one being output
            idx = self.frames.popleft()
            out.append((idx, sf.landmarks, sf.quad, float(sf.qsize)))
        return out

    def flush(self) -> list[tuple]:
        if isinstance(self.smoother, smoothing.QuadSmoother):  # mode "gaussian"
            return self._convert(self.smoother.flush())
        return []


class FaceFrontEnd:
    """Streaming detection + tracking + smoothing of face crops (see the module docstring).

    Args:
        detector: a :class:`~vidinv.face.detect.LandmarkDetector` or a back-end name (``"dlib"``,
            ``"fan"``); default dlib.
        tracker: a :class:`~vidinv.face.tracking.Tracker` (default ``Tracker()``: largest face,
            ``max_gap=8``). It is reset at the start of every :meth:`process` call.
        smoothing: ``"gaussian"`` (default), ``"one_euro"`` or ``"none"``.
        sigma: landmark smoothing sigma in frames for ``"gaussian"`` (FS reference: 3).
        sigma_quad: quad/qsize smoothing sigma (default 2 * sigma, as the FS reference).
        variant: quad rule, ``"ffhq"`` (default, official FFHQ alignment) or ``"fs_video"``.
        one_euro: keyword arguments of :class:`~vidinv.face.smoothing.OneEuroFilter` (``min_cutoff``,
            ``beta``, ``d_cutoff``, ``freq``); times come from the frames (seconds).
        lk_refine: refine each track's landmarks with Lucas-Kanade optical flow against the previous frame
            (:func:`~vidinv.face.smoothing.refine_landmarks_lk`, FS ``optical_flow=True``) before smoothing.
        batch_size: frames per detector call.
        scene_cut: a :class:`~vidinv.face.tracking.SceneCutDetector`, ``None`` for the default one, or
            ``False`` to disable cut detection.
        detector_options: keyword arguments for the back-end when ``detector`` is a name (or ``None``),
            passed to :func:`~vidinv.face.detect.get_detector`; e.g. ``{"upscale": "auto"}`` makes the dlib
            back-end enlarge small frames before detection (low-resolution video; see
            :class:`~vidinv.face.detect.DlibLandmarkDetector`). Default: none (the back-end's defaults).

    Raises:
        ValueError: unknown smoothing mode, or ``detector_options`` given with a detector object.
        DetectorUnavailableError: the named detector cannot run here.
    """

    def __init__(self, detector: LandmarkDetector | str | None = None, tracker: Tracker | None = None, *,
                 smoothing: str = "gaussian", sigma: float = 3.0, sigma_quad: float | None = None,
                 variant: str = "ffhq", one_euro: dict | None = None, lk_refine: bool = False,
                 batch_size: int = 8, scene_cut: SceneCutDetector | bool | None = None,
                 detector_options: dict[str, Any] | None = None):
        if smoothing not in SMOOTHING_MODES:
            raise ValueError(f"smoothing must be one of {SMOOTHING_MODES}, got {smoothing!r}")
        if variant not in align.VARIANTS:
            raise ValueError(f"variant must be one of {align.VARIANTS}, got {variant!r}")
        if isinstance(detector, str) or detector is None:
            detector = get_detector(detector or "dlib", **(detector_options or {}))
        elif detector_options:
            raise ValueError("detector_options apply to a detector given by name, not to a detector object")
        self.detector = detector
        self.tracker = tracker if tracker is not None else Tracker()
        self.smoothing = smoothing
        self.sigma = float(sigma)
        self.sigma_quad = sigma_quad
        self.variant = variant
        self.one_euro = dict(one_euro or {})
        self.lk_refine = bool(lk_refine)
        self.batch_size = max(1, int(batch_size))
        if scene_cut is None or scene_cut is True:
            scene_cut = SceneCutDetector()
        self.scene_cut = scene_cut or None
        self.stats: dict = {}

    @property
    def delay(self) -> int:
        """Look-ahead of the smoother in frames (0 for ``"one_euro"`` / ``"none"``)."""
        if self.smoothing == "gaussian":
            return smoothing.QuadSmoother(self.sigma, self.sigma_quad, self.variant).delay
        return 0

    @property
    def max_buffered_frames(self) -> int:
        """Upper bound of decoded frames held at once: batch + tracker latency + smoother look-ahead."""
        return self.batch_size + self.tracker.max_gap + 1 + self.delay

    def _new_smoother(self) -> _TrackSmoother:
        return _TrackSmoother(self.smoothing, self.variant, self.sigma, self.sigma_quad, self.one_euro)

    def process(self, frames: Iterable[Frame | np.ndarray]) -> Iterator[FaceFrame]:
        """Run the front-end over ``frames`` (a :class:`~vidinv.io.video.VideoReader`, any iterable of
        :class:`~vidinv.io.video.Frame`, or of ``(H, W, 3)`` uint8 RGB arrays, indexed from 0).

        Yields:
            :class:`FaceFrame` for every input frame, in order. ``self.stats`` holds counters afterwards
            (``frames``, ``frames_with_face``, ``interpolated``, ``tracks``, ``cuts``,
            ``max_buffered``).
        """
        self.tracker.reset()
        if self.scene_cut is not None:
            self.scene_cut.reset()
        slots: dict[int, _Slot] = {}
        order: deque[int] = deque()
        states: dict[int, _TrackSmoother] = {}
        stats: dict[str, Any] = {"frames": 0, "frames_with_face": 0, "interpolated": 0, "tracks": set(), "cuts": 0,
                 "max_buffered": 0}
        self.stats = stats

        def apply(out: TrackerOutput) -> None:
            for k, points in out.frames:
                slot = slots[k]
                slot.tracked = True
                for p in points:
                    slot.points[p.track_id] = p
                    slot.waiting.add(p.track_id)
                    st = states.get(p.track_id)
                    if st is None:
                        st = states[p.track_id] = self._new_smoother()
                        stats["tracks"].add(p.track_id)
                    lm = p.landmarks
                    if self.lk_refine:
                        lm = self._refine(st, slot.frame.image, lm)
                    for idx, slm, quad, qsize in st.push(k, lm, slot.frame.time):
                        deliver(idx, p.track_id, slm, quad, qsize)
            for tid in out.ended:
                st = states.pop(tid, None)
                if st is not None:
                    for idx, slm, quad, qsize in st.flush():
                        deliver(idx, tid, slm, quad, qsize)

        def deliver(idx: int, tid: int, slm, quad, qsize) -> None:
            slot = slots[idx]
            slot.results[tid] = (slm, quad, qsize)
            slot.waiting.discard(tid)

        def ready() -> Iterator[FaceFrame]:
            while order:
                slot = slots[order[0]]
                if not slot.tracked or slot.waiting:
                    return
                k = order.popleft()
                del slots[k]
                yield self._emit(k, slot, stats)

        batch: list[Frame] = []
        for i, item in enumerate(frames):
            frame = item if isinstance(item, Frame) else Frame(index=i, image=np.asarray(item), pts=None,
                                                               time_base=None, time=None)
            slots[frame.index] = _Slot(frame)
            order.append(frame.index)
            batch.append(frame)
            stats["max_buffered"] = max(stats["max_buffered"], len(slots))
            if len(batch) >= self.batch_size:
                self._detect_batch(batch, apply, stats)
                batch = []
                yield from ready()
        if batch:
            self._detect_batch(batch, apply, stats)
        apply(self.tracker.flush())
        for tid in list(states):
            for idx, slm, quad, qsize in states.pop(tid).flush():
                deliver(idx, tid, slm, quad, qsize)
        yield from ready()
        if order:  # pragma: no cover - would be a bookkeeping bug
            raise RuntimeError(f"front-end finished with {len(order)} frames not emitted")
        stats["tracks"] = len(stats["tracks"])

    __call__ = process

    def _detect_batch(self, batch: list[Frame], apply, stats) -> None:
        detections = self.detector.detect([f.image for f in batch])
        for frame, faces in zip(batch, detections):
            cut = bool(self.scene_cut(frame.image)) if self.scene_cut is not None else False
            stats["cuts"] += int(cut)
            apply(self.tracker.push(frame.index, faces, cut=cut))

    def _refine(self, st: _TrackSmoother, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        import cv2

        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if st.prev_gray is not None:
            landmarks = smoothing.refine_landmarks_lk(st.prev_gray, gray, st.prev_landmarks, landmarks)
        st.prev_gray, st.prev_landmarks = gray, landmarks
        return landmarks

    def _emit(self, k: int, slot: _Slot, stats) -> FaceFrame:
        faces = []
        for tid in sorted(slot.points):
            p = slot.points[tid]
            slm, quad, qsize = slot.results[tid]
            quad_raw, qsize_raw = align.quad_from_landmarks(p.landmarks, self.variant)
            faces.append(TrackedFace(track_id=tid, landmarks_raw=p.landmarks, landmarks=slm, quad=quad,
                                     qsize=float(qsize), quad_raw=quad_raw, qsize_raw=float(qsize_raw),
                                     interpolated=p.interpolated, box=p.box, score=p.score,
                                     detector=p.detector))
            stats["interpolated"] += int(p.interpolated)
        stats["frames"] += 1
        stats["frames_with_face"] += int(bool(faces))
        return FaceFrame(k, slot.frame, faces)
