"""Temporal smoothing of landmarks and crop quads for video (against crop jitter).

* :func:`gaussian_smooth` — 1-D Gaussian smoothing along time with scipy ``gaussian_filter1d``
  semantics (radius floor(4 sigma + 0.5), mode "reflect" = mirror including the edge sample,
  repeated for signals shorter than the radius).
* :class:`StreamingGaussian` — the same filter, one sample at a time, with bounded memory (2r + 1
  samples) and bounded look-ahead (r samples); its outputs equal :func:`gaussian_smooth` over the
  whole track bit for bit, ends included.
* :class:`QuadSmoother` — the two-stage pipeline of the Feature-Style encoder's video alignment
  (Yao et al., ECCV 2022, ``utils/video_utils.align_frames`` with ``gaussian=True``): landmarks
  smoothed with sigma, rounded to float32, quad + qsize computed per frame, then quad and qsize
  smoothed with 2 sigma. Streaming; total look-ahead ``delay`` frames.
* :class:`OneEuroFilter` — causal low-latency alternative (Casiez, Roussel, Vogel, "1 euro filter",
  CHI 2012).
* :func:`refine_landmarks_lk` — optional pyramidal Lucas-Kanade refinement of detected landmarks
  with the Feature-Style blend rule.
* :func:`jitter`, :func:`jitter_px`, :func:`lag_per_frame`, :func:`max_lag` — evaluation measures
  (``../shared/parity/temporal_smoothing/README.md``).

Units: frame pixels (x = column, y = row), float64; time in frames unless stated (seconds for the
One-Euro filter).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .align import VARIANTS, quad_from_landmarks

__all__ = [
    "gaussian_kernel",
    "gaussian_smooth",
    "reflect_index",
    "StreamingGaussian",
    "SmoothedFrame",
    "QuadSmoother",
    "OneEuroFilter",
    "refine_landmarks_lk",
    "jitter",
    "jitter_px",
    "lag_per_frame",
    "max_lag",
]


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Normalised 1-D Gaussian weights w_k, k = -r..r, r = floor(truncate sigma + 0.5).

    w_k = exp(-k^2 / (2 sigma^2)) / sum_j exp(-j^2 / (2 sigma^2)) (scipy ``_gaussian_kernel1d``,
    order 0). ``sigma == 0`` gives the identity kernel [1.0].

    Raises:
        ValueError: negative or non-finite sigma / truncate.
    """
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0; got {sigma}")
    if not math.isfinite(truncate) or truncate <= 0:
        raise ValueError(f"truncate must be > 0; got {truncate}")
    if sigma == 0:
        return np.ones(1, dtype=np.float64)
    r = int(truncate * sigma + 0.5)
    x = np.arange(-r, r + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    return phi / phi.sum()


def reflect_index(idx, n: int) -> np.ndarray:
    """Map integer indices into [0, n) by mirroring that includes the edge sample (scipy
    ``mode="reflect"``: ... b a | a b c d | d c ...), periodic with period 2n for any distance."""
    idx = np.asarray(idx, dtype=np.int64)
    if n < 1:
        raise ValueError("cannot index an empty signal")
    i = np.mod(idx, 2 * n)
    return np.where(i >= n, 2 * n - 1 - i, i)


def gaussian_smooth(x, sigma: float, axis: int = 0, truncate: float = 4.0) -> np.ndarray:
    """Gaussian smoothing along one axis, scipy ``gaussian_filter1d`` semantics.

    out_t = sum_{k=-r..r} w_k v_{reflect(t+k)} with the weights of :func:`gaussian_kernel` and
    scipy's "reflect" boundary (mirror including the edge sample; repeated for short signals).
    Agrees with scipy to rounding (about 1e-15 relative); :class:`StreamingGaussian` reproduces this
    function bit for bit.

    Args:
        x: array of any shape; float64 is used internally (output is float64).
        sigma: standard deviation in samples (>= 0; 0 = copy).
        axis: time axis.
        truncate: radius in standard deviations (scipy default 4.0).

    Returns:
        float64 array of x's shape.
    """
    v = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    n = v.shape[0]
    w = gaussian_kernel(sigma, truncate)
    r = len(w) // 2
    if n == 0:
        return np.moveaxis(v.copy(), 0, axis)
    padded = v[reflect_index(np.arange(-r, n + r), n)]
    out = w[0] * padded[0:n]
    for j in range(1, len(w)):
        out += w[j] * padded[j:j + n]
    return np.moveaxis(out, 0, axis)


class StreamingGaussian:
    """Causal-with-delay Gaussian smoother: push samples one by one, get final outputs.

    Output t needs samples t - r .. t + r, so it is emitted when sample t + r arrives (look-ahead
    ``delay`` = r samples); :meth:`flush` at the end of the track emits the last r outputs using the
    reflect boundary. Outputs equal :func:`gaussian_smooth` of the whole track bit for bit (same
    weights, same summation order), both ends included, for every track length (lengths shorter
    than r behave as scipy, by repeated mirroring). Memory: at most 2r + 1 samples.

    Args:
        sigma: standard deviation in samples (>= 0). truncate: radius in standard deviations.

    Example::

        sm = StreamingGaussian(3.0)
        for x in samples:
            for t, y in sm.push(x): ...
        for t, y in sm.flush(): ...
    """

    def __init__(self, sigma: float, truncate: float = 4.0):
        self.sigma = float(sigma)
        self.weights = gaussian_kernel(sigma, truncate)
        self.radius = len(self.weights) // 2
        self.max_buffer = 2 * self.radius + 1
        self._buf: deque = deque(maxlen=self.max_buffer)
        self._n = 0
        self._next = 0
        self._shape: tuple[int, ...] | None = None
        self._flushed = False

    @property
    def delay(self) -> int:
        """Look-ahead in samples (= r): output t is final once sample t + r has been pushed."""
        return self.radius

    @property
    def buffer_len(self) -> int:
        """Samples held now (never more than ``max_buffer`` = 2r + 1)."""
        return len(self._buf)

    @property
    def num_pushed(self) -> int:
        return self._n

    def reset(self) -> None:
        """Forget the track (start a new one)."""
        self._buf.clear()
        self._n = 0
        self._next = 0
        self._shape = None
        self._flushed = False

    def _sample(self, i: int) -> np.ndarray:
        first = self._n - len(self._buf)
        if i < first:
            raise AssertionError("internal error: sample left the buffer")  # cannot happen (see class doc)
        return self._buf[i - first]

    def _compute(self, t: int, n: int | None) -> np.ndarray:
        r = self.radius
        acc: np.ndarray | None = None
        for j, w in enumerate(self.weights):
            i = t - r + j
            if n is not None:
                i = int(reflect_index(i, n))
            elif i < 0:
                i = -i - 1
            term = w * self._sample(i)
            acc = term if acc is None else acc + term
        assert acc is not None  # the kernel has 2 * radius + 1 >= 1 taps
        return acc

    def push(self, sample) -> list[tuple[int, np.ndarray]]:
        """Add the next sample (any array shape, same for the whole track).

        Returns:
            list of ``(index, smoothed)`` (float64, sample's shape) for the outputs that became
            final, in order (0 or 1 element).

        Raises:
            RuntimeError: after :meth:`flush` (call :meth:`reset` first). ValueError: shape change.
        """
        if self._flushed:
            raise RuntimeError("push after flush: call reset() to start a new track")
        x = np.array(sample, dtype=np.float64)
        if self._shape is None:
            self._shape = x.shape
        elif x.shape != self._shape:
            raise ValueError(f"sample shape {x.shape} differs from the track's {self._shape}")
        self._buf.append(x)
        self._n += 1
        out = []
        while self._next + self.radius <= self._n - 1:
            out.append((self._next, self._compute(self._next, None)))
            self._next += 1
        return out

    def flush(self) -> list[tuple[int, np.ndarray]]:
        """End of track: emit the remaining outputs (the last min(r, N) samples), reflect boundary."""
        if self._flushed:
            return []
        self._flushed = True
        out = []
        while self._next < self._n:
            out.append((self._next, self._compute(self._next, self._n)))
            self._next += 1
        return out


@dataclass
class SmoothedFrame:
    """One output of :class:`QuadSmoother`: frame ``index`` in the track, smoothed ``landmarks``
    (68, 2), final ``quad`` (4, 2) and ``qsize`` (pixels), all float64 frame pixels."""

    index: int
    landmarks: np.ndarray
    quad: np.ndarray
    qsize: float


class QuadSmoother:
    """Two-stage streaming smoothing of a face track (Feature-Style ``align_frames``, gaussian=True).

    1. Each landmark coordinate is smoothed over time with G_sigma_landmarks (and rounded to float32,
       as the reference stores it, when ``round_float32``).
    2. Per frame, quad and qsize are computed from the smoothed landmarks (:func:`quad_from_landmarks`).
    3. The 8 quad coordinates and qsize are smoothed with G_sigma_quad (default 2 sigma_landmarks).

    With ``variant="fs_video"`` and sigma 3 this reproduces the reference's ``stat_dict['coord']``
    and ``stat_dict['qsize']`` (see ``../shared/parity/temporal_smoothing``). The default
    ``variant="ffhq"`` uses the official FFHQ eye centres (the generator's training distribution).
    Strength: larger sigmas smooth more and delay more; 0 disables a stage.

    Lag: the filter is symmetric (non-causal, with look-ahead), so within a constant-velocity motion
    the smoothed quad does not trail the raw one at all; at a velocity change |dv| (px/frame) it
    deviates by at most |dv| sqrt(sigma_landmarks^2 + sigma_quad^2) / sqrt(2 pi) px (2.68 |dv| for
    sigma 3 / 6), e.g. 32 px = 0.06 qsize for a 12 px/frame head motion of a 520 px face.

    Attributes:
        delay: total look-ahead in frames, r1 + r2 (36 for sigma 3 / 6): the output for frame t is
            emitted when frame t + delay has been pushed (or at :meth:`flush`).
    """

    def __init__(self, sigma_landmarks: float = 3.0, sigma_quad: float | None = None, variant: str = "ffhq",
                 round_float32: bool = True, truncate: float = 4.0):
        if variant not in VARIANTS:
            raise ValueError(f"unknown quad variant {variant!r}; expected one of {VARIANTS}")
        self.sigma_landmarks = float(sigma_landmarks)
        self.sigma_quad = 2.0 * self.sigma_landmarks if sigma_quad is None else float(sigma_quad)
        self.variant = variant
        self.round_float32 = bool(round_float32)
        self._lm = StreamingGaussian(self.sigma_landmarks, truncate)
        self._q = StreamingGaussian(self.sigma_quad, truncate)
        self._pending: dict[int, np.ndarray] = {}
        self.delay = self._lm.delay + self._q.delay

    def reset(self) -> None:
        self._lm.reset()
        self._q.reset()
        self._pending.clear()

    def _stage2(self, items, final: bool) -> list[SmoothedFrame]:
        done = []
        for t, lm in items:
            if self.round_float32:
                lm = lm.astype(np.float32).astype(np.float64)
            quad, qsize = quad_from_landmarks(lm, self.variant)
            self._pending[t] = lm
            done.extend(self._q.push(np.concatenate([quad.reshape(8), [qsize]])))
        if final:
            done.extend(self._q.flush())
        return [SmoothedFrame(t, self._pending.pop(t), v[:8].reshape(4, 2), float(v[8])) for t, v in done]

    def push(self, landmarks) -> list[SmoothedFrame]:
        """Add the raw landmarks (68, 2) of the next frame; returns the frames that became final."""
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.shape != (68, 2):
            raise ValueError(f"landmarks must be (68, 2); got {lm.shape}")
        return self._stage2(self._lm.push(lm), final=False)

    def flush(self) -> list[SmoothedFrame]:
        """End of track: returns the remaining frames (reflect boundary, as the offline reference)."""
        return self._stage2(self._lm.flush(), final=True)

    def smooth_track(self, landmarks) -> list[SmoothedFrame]:
        """Convenience: smooth a whole (N, 68, 2) track (resets first)."""
        self.reset()
        out = []
        for lm in np.asarray(landmarks, dtype=np.float64):
            out.extend(self.push(lm))
        out.extend(self.flush())
        return out


class OneEuroFilter:
    """1-euro filter (Casiez et al., CHI 2012), element-wise over an array of any shape.

    Per element: dx = (x - x_hat_prev)/dt, dx_hat = lowpass(dx, alpha(d_cutoff)),
    cutoff = min_cutoff + beta |dx_hat|, x_hat = lowpass(x, alpha(cutoff)), with
    alpha(fc) = 1 / (1 + tau/dt), tau = 1/(2 pi fc) and lowpass(x) = x_hat_prev + alpha (x - x_hat_prev).
    At a constant speed v (units/s) the steady-state lag is v/(2 pi cutoff) <= min(v/(2 pi min_cutoff),
    1/(2 pi beta)) units: slow motion is smoothed strongly, fast motion follows closely.

    Args:
        min_cutoff: cutoff (Hz) at rest; lower = smoother, more lag at low speed.
        beta: speed coefficient (Hz per unit/s); higher = less lag during fast motion.
        d_cutoff: cutoff (Hz) of the speed estimate.
        freq: assumed rate (Hz) when no timestamps are given.

    Call ``f(x, t)`` with t in seconds (variable frame rate; strictly increasing) or ``f(x)``.
    Returns float64 filtered values of x's shape. Defaults are for landmarks in pixels at 25-30 fps:
    on the 354-frame talking-head fixture they cut the crop jitter J from 0.0081 to 0.0026 (the
    offline :class:`QuadSmoother` reaches 0.00036), and the lag at high speed is at most
    1/(2 pi 0.02) = 8 px (one frame of motion during the first frames of a sudden movement).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.02, d_cutoff: float = 1.0, freq: float = 30.0):
        for name, v in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff), ("freq", freq)):
            if not v > 0:
                raise ValueError(f"{name} must be > 0; got {v}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0; got {beta}")
        self.min_cutoff, self.beta = float(min_cutoff), float(beta)
        self.d_cutoff, self.freq = float(d_cutoff), float(freq)
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x, t: float | None = None) -> np.ndarray:
        x = np.array(x, dtype=np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        if x.shape != self._x.shape:
            raise ValueError(f"shape {x.shape} differs from the filter's {self._x.shape}")
        if t is not None and self._t is not None:
            dt = float(t) - float(self._t)
            if not dt > 0:
                raise ValueError(f"timestamps must increase (dt = {dt})")
        else:
            dt = 1.0 / self.freq
        dx = (x - self._x) / dt
        self._dx = self._dx + self._alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + self._alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()


def refine_landmarks_lk(prev_image, image, prev_landmarks, landmarks, sigma: float = 100.0,
                        win_size: int | None = None, max_level: int = 5, max_iter: int = 10,
                        eps: float = 0.03) -> np.ndarray:
    """Blend detected landmarks with landmarks tracked by pyramidal Lucas-Kanade optical flow.

    Rule of the Feature-Style reference (``align_frames``, optical_flow=True): track the previous
    frame's (refined) landmarks into this frame with ``cv2.calcOpticalFlowPyrLK`` (window s x s with
    s = int(|eye_to_eye| / 4) from the 6-point eye centres of the detected landmarks, 5 pyramid
    levels, 10 iterations / eps 0.03); then for each point, with d = |prev_landmark - detected|,
    alpha = exp(-d^2 / sigma) and result = (1 - alpha) detected + alpha tracked. Small detector
    motion (likely jitter) follows the flow; large motion follows the detector. Unlike the
    reference, points that LK fails to track (status 0 or non-finite) keep the detection, and the
    window is at least 5 px.

    Args:
        prev_image, image: (H, W) uint8 grey (or (H, W, 3) uint8; the reference passes RGB).
        prev_landmarks: (68, 2) refined landmarks of the previous frame (pass this function's
            previous output), frame pixels. landmarks: (68, 2) detections of this frame.
        sigma: blend scale in px^2 (reference: 100).

    Returns:
        (68, 2) float64 refined landmarks.
    """
    import cv2

    prev = np.asarray(prev_landmarks, dtype=np.float64)
    det = np.asarray(landmarks, dtype=np.float64)
    if prev.shape != det.shape or prev.ndim != 2 or prev.shape[1] != 2:
        raise ValueError(f"landmark arrays must both be (K, 2); got {prev.shape} and {det.shape}")
    if win_size is None:
        if det.shape[0] == 68:
            d_ee = det[42:48].mean(0) - det[36:42].mean(0)
            win_size = int(np.hypot(*d_ee) / 4)
        else:
            win_size = 21
    win_size = max(int(win_size), 5)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, int(max_iter), float(eps))
    p0 = prev.astype(np.float32).reshape(-1, 1, 2)
    # nextPts=None (OpenCV allocates the output) is valid, but the opencv-python stubs do not allow it
    tracked, status, _ = cv2.calcOpticalFlowPyrLK(np.ascontiguousarray(prev_image), np.ascontiguousarray(image), p0,
                                                  None, winSize=(win_size, win_size), maxLevel=int(max_level),
                                                  criteria=criteria)  # type: ignore[call-overload]
    tracked = tracked.reshape(-1, 2).astype(np.float64)
    ok = (status.reshape(-1) == 1) & np.all(np.isfinite(tracked), axis=1)
    d2 = np.sum((prev - det) ** 2, axis=1)
    alpha = np.where(ok, np.exp(-d2 / float(sigma)), 0.0)[:, None]
    tracked = np.where(ok[:, None], tracked, det)
    return (1.0 - alpha) * det + alpha * tracked


def _second_diff_norm(quads) -> np.ndarray:
    q = np.asarray(quads, dtype=np.float64)
    if q.ndim != 3 or q.shape[1:] != (4, 2):
        raise ValueError(f"quads must be (N, 4, 2); got {q.shape}")
    if q.shape[0] < 3:
        raise ValueError("jitter needs at least 3 frames")
    acc = q[2:] - 2.0 * q[1:-1] + q[:-2]
    return np.hypot(acc[..., 0], acc[..., 1])  # (N-2, 4)


def jitter(quads, qsize) -> float:
    """Crop jitter J = mean over t = 1..N-2 and corners k of |Q_{t+1,k} - 2 Q_{t,k} + Q_{t-1,k}| / s_t.

    Args:
        quads: (N, 4, 2) frame pixels. qsize: (N,) per-frame size s_t (pixels).

    Returns:
        J (dimensionless; J * 1024 = pixels of an aligned 1024^2 crop).
    """
    a = _second_diff_norm(quads)
    s = np.asarray(qsize, dtype=np.float64)
    if s.shape != (a.shape[0] + 2,):
        raise ValueError(f"qsize must be (N,) = ({a.shape[0] + 2},); got {s.shape}")
    return float((a / s[1:-1, None]).mean())


def jitter_px(quads) -> float:
    """The "px" jitter: mean |second temporal difference| of the quad corners in frame pixels."""
    return float(_second_diff_norm(quads).mean())


def lag_per_frame(raw_quads, smoothed_quads, qsize=None) -> np.ndarray:
    """Per-frame trailing of a smoothed quad: max corner distance |smoothed - raw| / qsize.

    Args:
        raw_quads, smoothed_quads: (N, 4, 2) frame pixels. qsize: (N,) normaliser (default: the
            side of the raw quad, :func:`vidinv.face.align.quad_size`).

    Returns:
        (N,) float64, in units of the crop side (x 1024 = pixels of an aligned 1024^2 crop).
    """
    from .align import quad_size

    r = np.asarray(raw_quads, dtype=np.float64)
    s = np.asarray(smoothed_quads, dtype=np.float64)
    if r.shape != s.shape or r.ndim != 3 or r.shape[1:] != (4, 2):
        raise ValueError(f"quads must both be (N, 4, 2); got {r.shape} and {s.shape}")
    size = quad_size(r) if qsize is None else np.asarray(qsize, dtype=np.float64)
    d = np.hypot(*(s - r).transpose(2, 0, 1)).max(axis=1)
    return d / size


def max_lag(raw_quads, smoothed_quads, qsize=None) -> float:
    """max over frames of :func:`lag_per_frame` (how far the smoothed crop trails the raw one)."""
    return float(lag_per_frame(raw_quads, smoothed_quads, qsize).max())
