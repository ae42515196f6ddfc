"""Confidence gate of an edit: per frame and track, how far the generated face can be trusted.

``vidinv edit`` blends each edited face with the weight ``mask × gate`` (:mod:`vidinv.pipeline.gating`), so
where the gate is 0 the output keeps the input pixels exactly, and where it is 1 the edit is pasted as
without a gate. The gate of one face in one frame is built in three steps:

1. **Components**, each a number in [0, 1] from a measured quantity through a :class:`Ramp` (smoothstep
   between two thresholds; defaults in :class:`GateSettings`, with the reasons there):

   * ``yaw`` / ``pitch``: head pose from the 68 landmarks (:func:`head_pose`: the nose tip against the
     symmetry axis of the eye and mouth corners, Gee and Cipolla 1994, with a generic face model's depths).
     Side faces are outside what the FFHQ generator and the 68-point landmark model cover.
   * ``score``: how far the face detector's confidence (dlib HOG's SVM margin) fell below its typical value
     on this track (:class:`ScoreReference`). An occluding object lowers it sharply; the absolute value
     says little (it depends on pose, size and light: 0.2-1.4 on a clean 35° face of the shared clips,
     1.9-3.1 on a clean frontal one).
   * ``jitter`` (off by default): the mean distance between the raw landmarks and the temporally smoothed
     landmarks the crop is aligned with, in interocular distances (:func:`landmark_jitter`).
   * ``interpolated``: 0 when the tracker bridged a detection gap (no landmarks were measured in that
     frame), else 1.
   * ``identity``: how well the inversion reproduces the face: the Euclidean distance of dlib's
     face-recognition descriptors of the aligned crop and of the reconstruction ``G(w, F)`` (computed
     by the pipeline, :mod:`vidinv.pipeline.gating`; dlib calls two faces the same person below 0.6).

2. **Combination** (:func:`combine`): the minimum of the components. The minimum (not the product) keeps
   each threshold meaning what it says (the gate is fully open only when every component is past its
   "full" threshold and closed as soon as one is past its "zero" threshold; two half-open components give
   0.5, not 0.25) and names the component that limits the gate (reported as ``limit``).

3. **Temporal fade** per track (:func:`fade_gate`, streamed by :class:`StreamingFade`): the largest
   sequence below the raw gate whose slope is at most ``1 / fade`` per frame,
   ``s[t] = min(1, min_k (g[t + k] + |k| / fade))`` over the frames ``t + k`` of the same track. So the
   edit fades out linearly over ``fade`` frames *before* a frame where the gate closes and back in over
   ``fade`` frames after it; ``s <= g`` in every frame (the fade never pastes more of the edit than the
   raw gate allows), ``s = 0`` wherever ``g = 0``, and a track's first and last frames are not faded
   (a track starting at the start of the video or after a scene cut is edited from its first frame).
   Streaming needs a look-ahead of ``fade`` frames.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Ramp", "GateSettings", "parse_ramp", "head_pose", "landmark_jitter", "interocular",
           "ScoreReference", "landmark_components", "combine", "fade_gate", "StreamingFade", "FrameFades",
           "MODEL_POINTS", "POSE_LANDMARKS", "MIRROR_68", "COMPONENTS"]

#: The components, in the order they are reported.
COMPONENTS = ("yaw", "pitch", "score", "jitter", "interpolated", "identity")

#: Landmarks (68-point iBUG indices) used for the pose: nose tip, chin, outer corner of the eye on the image
#: left (the subject's right eye), outer corner of the other eye, mouth corners (image left, image right).
POSE_LANDMARKS = (30, 8, 36, 45, 48, 54)
#: The generic 3-D face model of those six points (LearnOpenCV's model, arbitrary units about a tenth of a
#: millimetre), here in camera axes: x to the image right, y down, z away from the camera, nose tip at the
#: origin. A face looking straight at the camera has rotation identity.
MODEL_POINTS = np.array([
    [0.0, 0.0, 0.0],            # nose tip (30)
    [0.0, 330.0, 65.0],         # chin (8)
    [-225.0, -170.0, 135.0],    # outer eye corner, image left (36)
    [225.0, -170.0, 135.0],     # outer eye corner, image right (45)
    [-150.0, 150.0, 125.0],     # mouth corner, image left (48)
    [150.0, 150.0, 125.0],      # mouth corner, image right (54)
], dtype=np.float64)

#: Index permutation of the 68-point layout under a horizontal mirror: point ``i`` of a mirrored face is
#: point ``MIRROR_68[i]`` of the original (jaw 0<->16, brows 17<->26, eyes 36<->45, mouth 48<->54, ...).
MIRROR_68 = np.array(
    list(range(16, -1, -1))                      # jaw
    + list(range(26, 16, -1))                    # brows
    + [27, 28, 29, 30]                           # nose bridge
    + [35, 34, 33, 32, 31]                       # nostrils
    + [45, 44, 43, 42, 47, 46]                   # eye on the image left <- eye on the right
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]   # outer lip
    + [64, 63, 62, 61, 60, 67, 66, 65])          # inner lip


@dataclass(frozen=True)
class Ramp:
    """A smooth ramp from 0 to 1 between two thresholds: 1 at ``full`` and beyond it, 0 at ``zero`` and
    beyond it, smoothstep ``3 t^2 - 2 t^3`` of ``t = (x - zero) / (full - zero)`` between (continuous
    slope at both ends). ``full`` may be above ``zero`` (larger is better, e.g. a score) or below
    (smaller is better, e.g. an angle). A NaN value gives 0.

    Raises:
        ValueError: non-finite or equal thresholds.
    """

    full: float
    zero: float

    def __post_init__(self):
        if not (math.isfinite(self.full) and math.isfinite(self.zero)) or self.full == self.zero:
            raise ValueError(f"a gate ramp needs two different finite thresholds, got full={self.full}, "
                             f"zero={self.zero}")

    def __call__(self, x: float) -> float:
        x = float(x)
        if math.isnan(x):
            return 0.0
        t = min(1.0, max(0.0, (x - self.zero) / (self.full - self.zero)))
        return t * t * (3.0 - 2.0 * t)

    def __str__(self) -> str:
        return f"{self.full:g},{self.zero:g}"


def parse_ramp(text: str | Ramp | None, what: str) -> Ramp | None:
    """``"FULL,ZERO"`` -> :class:`Ramp`; ``"off"`` / None -> None (the component is not used).

    Raises:
        ValueError: anything else (the message names the option ``what``).
    """
    if text is None or isinstance(text, Ramp):
        return text
    s = str(text).strip().lower()
    if s == "off":
        return None
    parts = s.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return Ramp(float(parts[0]), float(parts[1]))
    except ValueError:
        raise ValueError(f"{what} takes FULL,ZERO (two different finite numbers: the component is 1 at FULL "
                         f"and 0 at ZERO) or 'off', got {text!r}") from None


@dataclass
class GateSettings:
    """Thresholds of the gate components (a :class:`Ramp` each, or None: not used) and the fade length.

    Defaults and why:

    * ``yaw`` 40° -> 60°: the 68-point landmark model (dlib's, trained on iBUG 300-W, whose images are
      "semi-frontal") and FFHQ, the generator's training set, are mostly near-frontal; beyond about 50°
      the far half of the face is hidden, the jaw-line landmarks sit on the occluding contour and the
      FFHQ alignment (eyes and mouth) degenerates, so a generated face would be pasted onto a side view.
      :func:`head_pose` reads up to 46° on the shared FFHQ / CelebA-HQ stills (faces inside the
      generator's domain, which should still be edited: at 46° the gate is 0.78) and 41-63° on the
      crowd clip's turned-away face.
    * ``pitch`` 40° -> 60°: the nose-between-eyes-and-mouth ratio is biased by expression (a broad smile
      raises the mouth corners: smiling FFHQ stills read down to -36°), so only strong up / down views
      (eyes or chin hidden) close the gate.
    * ``score`` 1.2 -> 2.0 (drop of the dlib HOG SVM margin below the track's reference,
      :class:`ScoreReference`): on the shared clips the drop of unoccluded faces stays below 1.11 (95th
      percentile 0.38-0.98; only the crowd clip's face turning to 58° reaches 1.9), while the same frontal
      face half covered by a grey rectangle drops by 2.2-3.0, or is missed by HOG and found by the CNN
      fallback (drop >= the reference, about 2.9; tests/test_gate.py). Used for dlib detections only (other
      detectors' scores have other scales).
    * ``jitter`` off: raw-vs-smoothed landmark deviation is 0.005-0.06 interocular distances on the close
      clips but 0.16-0.29 (median) on the crowd clip's small faces, so no fixed threshold separates an
      occlusion from small-face noise; ``--gate-jitter 0.06,0.15`` suits close faces.
    * ``identity`` 0.45 -> 0.6 (dlib descriptor distance crop vs reconstruction): dlib's own verification
      threshold is 0.6 (same person below), so at 0.6 the reconstruction would no longer pass for the
      person in the frame; 0.45 leaves room for the normal loss of an encoder inversion.
    * ``interpolated``: a bridged detection gap closes the gate (True) or is ignored (False).
    * ``fade`` 8 frames (about a third of a second at 25-30 fps): the edit fades out over 8 frames before
      a closed frame and back in over 8 after it, short enough to follow a head turn, long enough not to
      be seen as a cut.
    """

    yaw: Ramp | None = field(default_factory=lambda: Ramp(40.0, 60.0))
    pitch: Ramp | None = field(default_factory=lambda: Ramp(40.0, 60.0))
    score: Ramp | None = field(default_factory=lambda: Ramp(1.2, 2.0))
    jitter: Ramp | None = None
    identity: Ramp | None = field(default_factory=lambda: Ramp(0.45, 0.6))
    interpolated: bool = True
    fade: int = 8

    def __post_init__(self):
        if int(self.fade) != self.fade or self.fade < 0:
            raise ValueError(f"the gate fade must be a whole number of frames >= 0, got {self.fade}")
        self.fade = int(self.fade)

    def describe(self) -> dict:
        """JSON-ready settings: ``{component: "FULL,ZERO" or "off", "interpolated": bool, "fade": frames}``."""
        out: dict = {k: (str(getattr(self, k)) if getattr(self, k) is not None else "off")
                     for k in ("yaw", "pitch", "score", "jitter", "identity")}
        out["interpolated"] = bool(self.interpolated)
        out["fade"] = self.fade
        return out


def interocular(landmarks: np.ndarray) -> float:
    """Distance (pixels) between the centres of the two eyes (points 36-41 and 42-47) of (68, 2) landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return float(np.linalg.norm(lm[36:42].mean(axis=0) - lm[42:48].mean(axis=0)))


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """Head pose (yaw, pitch, roll) in degrees from 68 landmarks, by the geometry of the nose tip against the
    face's symmetry axis (the facial-normal idea of A. Gee and R. Cipolla, "Determining the gaze of faces in
    images", Image and Vision Computing 12(10), 1994), under weak perspective, with the depths of the generic
    face model :data:`MODEL_POINTS` (LearnOpenCV's head-pose model).

    The symmetry axis runs from ``e``, the midpoint of the outer eye corners (36, 45), to ``m``, the midpoint
    of the mouth corners (48, 54); ``u`` is its unit vector and ``n`` (landmark 30) the nose tip. In the model
    the nose tip stands 135 units in front of the eye corners (450 apart) and 125 in front of the mouth
    corners, so a head turned by ``yaw`` moves the nose off the axis by about ``130 sin(yaw)`` while the eye
    corners close to ``450 cos(yaw)``:

    * yaw = ``atan(o / 0.289)`` with ``o`` the signed distance of ``n`` from the axis (positive towards the
      image right of the axis) over the eye-corner distance (``130 / 450 = 0.289``): positive when the face
      turns towards the image right;
    * pitch from ``q = ((n - e) . u) / ((m - e) . u)``, where the nose tip sits between the eye and mouth
      lines (0.531 in the frontal model: eyes 170 above the nose, mouth 150 below): ``tan(pitch) =
      (320 q - 170) / (10 q - 135)``, positive when the face looks up;
    * roll = the angle of the eye-corner line against the image x axis (positive clockwise on screen).

    The ratio is independent of the face's proportions left-right (a frontal face reads about 0° whatever
    its width, unlike a perspective fit of the rigid model) and a horizontally mirrored face (x -> -x,
    indices permuted by :data:`MIRROR_68`) reads ``-yaw``, the same pitch and ``-roll`` exactly. Pitch keeps
    the model's bias for noses shorter or longer than its own (a few degrees to about 20°).

    Args:
        landmarks: (68, 2) float landmarks, frame pixels (x = column).

    Returns:
        ``(yaw, pitch, roll)`` floats in degrees; NaN for all three when the points are not finite or
        degenerate (eye or mouth corners on top of each other).

    Raises:
        ValueError: not (68, 2).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks must be (68, 2), got {lm.shape}")
    pts = lm[list(POSE_LANDMARKS)]
    if not np.isfinite(pts).all():
        return (math.nan, math.nan, math.nan)
    nose, eye_l, eye_r, mouth_l, mouth_r = pts[0], pts[2], pts[3], pts[4], pts[5]
    e = 0.5 * (eye_l + eye_r)
    m = 0.5 * (mouth_l + mouth_r)
    axis = m - e
    eye_w = float(np.linalg.norm(eye_r - eye_l))
    height = float(np.linalg.norm(axis))
    if eye_w < 1e-6 or height < 1e-6:
        return (math.nan, math.nan, math.nan)
    u = axis / height
    side = np.array([u[1], -u[0]])  # the axis turned by -90° on screen: the image right of a downward axis
    o = float((nose - e) @ side) / eye_w
    yaw = math.degrees(math.atan(o / (130.0 / 450.0)))
    q = float((nose - e) @ u) / height
    pitch = math.degrees(math.atan((320.0 * q - 170.0) / (10.0 * q - 135.0)))
    d = eye_r - eye_l
    roll = math.degrees(math.atan2(d[1], d[0]))
    return (yaw, pitch, roll)


def landmark_jitter(raw: np.ndarray, smoothed: np.ndarray) -> float:
    """Mean Euclidean distance between raw and smoothed (68, 2) landmarks in interocular distances
    (:func:`interocular` of the smoothed ones); NaN when either is not finite."""
    a = np.asarray(raw, dtype=np.float64)
    b = np.asarray(smoothed, dtype=np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan
    return float(np.linalg.norm(a - b, axis=1).mean() / max(interocular(b), 1e-6))


class ScoreReference:
    """The typical detector score of one track and how far each new score falls below it.

    The reference is the largest median of ``window`` consecutive previous scores seen so far on the track
    (a rolling median, so single odd frames do not set it; its running maximum, so a long occlusion does not
    lower it). Only ``dlib_hog`` detections join it (other detectors' scores have other scales); interpolated
    frames (no detection) are skipped. A ``dlib_cnn`` detection means the HOG detector found no face in that
    frame (vidinv's dlib back-end runs its CNN only then), i.e. the HOG score was below the HOG threshold:
    its drop is taken as ``reference - hog_threshold``, a lower bound.

    Args:
        window: frames of the rolling median (15: half a second).
        min_frames: previous detections needed before a drop is reported (5).
        hog_threshold: the HOG detector's threshold (its ``adjust_threshold``, 0 by default).
    """

    def __init__(self, window: int = 15, min_frames: int = 5, hog_threshold: float = 0.0):
        self.window = int(window)
        self.min_frames = int(min_frames)
        self.hog_threshold = float(hog_threshold)
        self._recent: deque[float] = deque(maxlen=self.window)
        self.reference = -math.inf

    def push(self, score: float, detector: str | None, interpolated: bool = False) -> float:
        """The drop ``reference - score`` of this frame's detection (NaN when not measurable: another
        detector, an interpolated frame, a NaN score or fewer than ``min_frames`` previous detections),
        then ``score`` joins the history. A ``dlib_cnn`` detection: ``reference - hog_threshold`` (see the
        class doc), not added to the history."""
        s = float(score)
        if interpolated:
            return math.nan
        if detector == "dlib_cnn":
            return self.reference - self.hog_threshold if math.isfinite(self.reference) else math.nan
        if detector != "dlib_hog" or math.isnan(s):
            return math.nan
        if len(self._recent) >= self.min_frames:
            self.reference = max(self.reference, float(np.median(self._recent)))
        drop = self.reference - s if math.isfinite(self.reference) else math.nan
        self._recent.append(s)
        return drop


def landmark_components(settings: GateSettings, landmarks: np.ndarray, landmarks_raw: np.ndarray | None = None, *,
                        score_drop: float = math.nan, interpolated: bool = False
                        ) -> tuple[dict[str, float], dict[str, float]]:
    """The components that need only the front-end's output (see the module doc).

    Args:
        settings: the thresholds (a None ramp leaves its component out).
        landmarks: (68, 2) smoothed landmarks (the crop's; the pose is estimated from them: less noisy than
            the raw ones). landmarks_raw: (68, 2) detector landmarks, or None (no jitter component).
        score_drop: :meth:`ScoreReference.push` of this detection (NaN: no score component).
        interpolated: the tracker bridged a detection gap here.

    Returns:
        ``(components, measures)``: component name -> value in [0, 1]; measure name -> the measured
        quantity (``yaw``, ``pitch``, ``roll`` degrees; ``score_drop``; ``jitter`` interocular distances).
    """
    comps: dict[str, float] = {}
    yaw, pitch, roll = head_pose(landmarks)
    meas: dict[str, float] = {"yaw": yaw, "pitch": pitch, "roll": roll}
    if settings.yaw is not None:
        comps["yaw"] = settings.yaw(abs(yaw))
    if settings.pitch is not None:
        comps["pitch"] = settings.pitch(abs(pitch))
    if settings.score is not None and math.isfinite(score_drop):
        meas["score_drop"] = float(score_drop)
        comps["score"] = settings.score(score_drop)
    if landmarks_raw is not None and settings.jitter is not None and not interpolated:
        meas["jitter"] = landmark_jitter(landmarks_raw, landmarks)
        comps["jitter"] = settings.jitter(meas["jitter"])
    if settings.interpolated:
        comps["interpolated"] = 0.0 if interpolated else 1.0
    return comps, meas


def combine(components: Mapping[str, float]) -> tuple[float, str | None]:
    """``(gate, limit)``: the minimum of the component values (1.0 with none) and the name of the component
    that sets it (None when the gate is 1)."""
    if not components:
        return 1.0, None
    name = min(components, key=lambda k: components[k])
    v = float(min(1.0, max(0.0, components[name])))
    return v, (name if v < 1.0 else None)


def fade_gate(values: Sequence[float] | np.ndarray, fade: int, frames: Sequence[int] | None = None) -> np.ndarray:
    """Temporal fade of one track's raw gate: ``s[t] = min(1, min_k (g[k] + |frame_k - frame_t| / fade))``
    over the track's samples ``k`` (see the module doc). ``fade`` 0 returns ``g`` clipped to [0, 1].

    Args:
        values: the raw gate per sample, in [0, 1] (NaN counts as 0).
        fade: frames of a full fade (>= 0).
        frames: the frame index of each sample (default 0, 1, 2, ...); samples more than ``fade`` frames
            apart do not interact.

    Returns:
        (N,) float64 in [0, 1].
    """
    g = np.nan_to_num(np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0), nan=0.0)
    if fade <= 0 or g.size == 0:
        return g
    idx = np.arange(g.size) if frames is None else np.asarray(frames, dtype=np.int64)
    dist = np.abs(idx[:, None] - idx[None, :]).astype(np.float64)
    env = np.where(dist <= fade, g[None, :] + dist / fade, np.inf).min(axis=1)
    return np.minimum(env, 1.0)


class StreamingFade:
    """:func:`fade_gate` of one track, streamed: :meth:`push` the raw gate of each frame (increasing frame
    indices) and get back the faded values that became final (``fade`` frames later); :meth:`flush` at the
    end of the track. The results equal :func:`fade_gate` of the whole track."""

    def __init__(self, fade: int):
        self.fade = int(fade)
        self._hist: deque[tuple[int, float]] = deque()  # (frame, g), the last 2 fade + 1 frames' worth
        self._pending: deque[int] = deque()  # frames not released yet

    def _value(self, t: int) -> float:
        if self.fade <= 0:
            return next(g for k, g in self._hist if k == t)
        return min(1.0, min(g + abs(k - t) / self.fade for k, g in self._hist if abs(k - t) <= self.fade))

    def push(self, frame: int, value: float) -> list[tuple[int, float]]:
        """Add the raw gate of ``frame``; returns ``[(frame, faded gate)]`` of the frames now final."""
        v = float(value)
        v = 0.0 if math.isnan(v) else min(1.0, max(0.0, v))
        if self._pending and frame <= self._pending[-1]:
            raise ValueError(f"frame indices must increase: {frame} after {self._pending[-1]}")
        self._hist.append((int(frame), v))
        self._pending.append(int(frame))
        return self._release(lambda t: t + self.fade <= frame)

    def flush(self) -> list[tuple[int, float]]:
        """The end of the track: every frame still pending, with its faded gate."""
        return self._release(lambda t: True)

    def _release(self, ready) -> list[tuple[int, float]]:
        out = []
        while self._pending and ready(self._pending[0]):
            t = self._pending.popleft()
            out.append((t, self._value(t)))
        lo = (self._pending[0] if self._pending else (self._hist[-1][0] + 1 if self._hist else 0)) - self.fade
        while self._hist and self._hist[0][0] < lo:
            self._hist.popleft()
        return out


class FrameFades:
    """:class:`StreamingFade` of every track of a stream of frames, releasing whole frames in order.

    :meth:`push` one frame (its index, any ``payload``, and ``{track id: raw gate}`` of its faces); it returns
    the frames now final as ``[(payload, {track id: faded gate})]``, in frame order, at most ``fade`` frames
    later. A track missing from a frame has ended (the tracker's tracks are contiguous): its last frames are
    finalised then. :meth:`flush` at the end returns the rest.
    """

    def __init__(self, fade: int):
        self.fade = int(fade)
        self._faders: dict[int, StreamingFade] = {}
        self._pending: deque[tuple[int, object, dict[int, float | None]]] = deque()
        self._slots: dict[tuple[int, int], dict[int, float | None]] = {}

    def _deliver(self, tid: int, results: list[tuple[int, float]]) -> None:
        for frame, v in results:
            self._slots.pop((tid, frame))[tid] = v

    def push(self, frame: int, payload: object, raw: Mapping[int, float]) -> list[tuple[object, dict[int, float]]]:
        """Add a frame (see the class doc). Raises ValueError for frame indices that do not increase within
        a track."""
        for tid in [t for t in self._faders if t not in raw]:
            self._deliver(tid, self._faders.pop(tid).flush())
        gates: dict[int, float | None] = {int(t): None for t in raw}
        self._pending.append((int(frame), payload, gates))
        for tid, g in raw.items():
            tid = int(tid)
            self._slots[(tid, int(frame))] = gates
            fader = self._faders.setdefault(tid, StreamingFade(self.fade))
            self._deliver(tid, fader.push(int(frame), g))
        return self._ready()

    def flush(self) -> list[tuple[object, dict[int, float]]]:
        """The end of the stream: every pending frame with its faded gates."""
        for tid in list(self._faders):
            self._deliver(tid, self._faders.pop(tid).flush())
        return self._ready()

    def _ready(self) -> list[tuple[object, dict[int, float]]]:
        out = []
        while self._pending and all(v is not None for v in self._pending[0][2].values()):
            _, payload, gates = self._pending.popleft()
            out.append((payload, {t: float(v) for t, v in gates.items() if v is not None}))
        return out
