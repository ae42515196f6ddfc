"""Temporal smoothing against scipy and the temporal_smoothing parity fixture (Feature-Style align_frames)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from conftest import require_shared
from vidinv.face import smoothing as S
from vidinv.face.align import quad_from_landmarks, quad_size


@pytest.fixture(scope="module")
def ts():
    d = require_shared("parity/temporal_smoothing")
    return dict(np.load(d / "temporal_smoothing.npz")), json.loads((d / "meta.json").read_text())


def _stream(sm, xs):
    out = []
    for k, x in enumerate(xs):
        got = sm.push(x)
        assert sm.buffer_len <= sm.max_buffer == 2 * sm.radius + 1
        # output t is emitted exactly when sample t + r arrives
        assert [t for t, _ in got] == ([k - sm.radius] if k >= sm.radius else [])
        out.extend(got)
    out.extend(sm.flush())
    assert [t for t, _ in out] == list(range(len(xs)))
    return np.stack([v for _, v in out]) if out else np.zeros((0,))


# ------------------------------------------------------------------------------------ Gaussian filter

@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0, 3.0, 6.0, 10.0])
def test_gaussian_smooth_matches_scipy(sigma):
    rng = np.random.default_rng(int(sigma * 10))
    for n in range(1, 31):  # includes tracks shorter than the radius (repeated mirroring)
        x = rng.normal(size=(n, 4, 2)) * 100
        ref = gaussian_filter1d(x, sigma, axis=0)
        np.testing.assert_allclose(S.gaussian_smooth(x, sigma), ref, rtol=0, atol=1e-12)
    x = rng.normal(size=(3, 57))
    np.testing.assert_allclose(S.gaussian_smooth(x, sigma, axis=1), gaussian_filter1d(x, sigma, axis=1), atol=1e-12)


def test_gaussian_kernel_radius():
    assert len(S.gaussian_kernel(3.0)) == 2 * 12 + 1
    assert len(S.gaussian_kernel(6.0)) == 2 * 24 + 1
    np.testing.assert_array_equal(S.gaussian_kernel(0.0), [1.0])
    with pytest.raises(ValueError):
        S.gaussian_kernel(-1.0)


@pytest.mark.parametrize("sigma", [0.0, 0.7, 1.0, 3.0, 6.0])
def test_streaming_gaussian_equals_batch_exactly(sigma):
    rng = np.random.default_rng(1)
    for n in list(range(1, 40)) + [61, 100]:
        x = rng.normal(size=(n, 3)) * 50 + 300
        sm = S.StreamingGaussian(sigma)
        got = _stream(sm, x)
        np.testing.assert_array_equal(got, S.gaussian_smooth(x, sigma))  # bit for bit, ends included
        if sigma > 0:
            np.testing.assert_allclose(got, gaussian_filter1d(x, sigma, axis=0), rtol=0, atol=1e-11)


def test_streaming_gaussian_state_errors():
    sm = S.StreamingGaussian(2.0)
    sm.push(np.zeros(3))
    with pytest.raises(ValueError):
        sm.push(np.zeros(4))
    sm.flush()
    with pytest.raises(RuntimeError):
        sm.push(np.zeros(3))
    sm.reset()
    assert sm.push(np.ones(3)) == [] and sm.num_pushed == 1
    assert S.StreamingGaussian(1.0).flush() == []


# -------------------------------------------------------------------------------- Feature-Style pipeline

def test_quad_smoother_reproduces_reference(ts):
    z, _ = ts
    qs = S.QuadSmoother(3.0, variant="fs_video")
    assert qs.sigma_quad == 6.0 and qs.delay == 12 + 24
    frames = []
    for k, lm in enumerate(z["landmarks_raw"]):
        got = qs.push(lm)
        assert [f.index for f in got] == ([k - qs.delay] if k >= qs.delay else [])
        frames.extend(got)
    frames.extend(qs.flush())
    assert [f.index for f in frames] == list(range(len(z["landmarks_raw"])))
    lm = np.stack([f.landmarks for f in frames])
    quads = np.stack([f.quad for f in frames])
    qsize = np.array([f.qsize for f in frames])
    # fixture tolerance 1e-4 px over the whole track (reflect ends included)
    np.testing.assert_allclose(lm, z["landmarks_smoothed"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(quads, z["quads_smoothed"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(qsize, z["qsize_smoothed"], rtol=0, atol=1e-4)
    # with the reference's float32 rounding the landmarks are bit-identical (measured quads 4.5e-13 px)
    np.testing.assert_array_equal(lm, z["landmarks_smoothed"])
    np.testing.assert_allclose(quads, z["quads_smoothed"], rtol=0, atol=1e-9)
    # offline convenience gives the same
    again = qs.smooth_track(z["landmarks_raw"])
    np.testing.assert_array_equal(np.stack([f.quad for f in again]), quads)


def test_quad_smoother_intermediate_quads(ts):
    z, _ = ts
    quad, qsize = quad_from_landmarks(z["landmarks_smoothed"], "fs_video")
    np.testing.assert_allclose(quad, z["quads_from_smoothed_landmarks"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(qsize, z["qsize_from_smoothed_landmarks"], rtol=0, atol=1e-9)
    quad, qsize = quad_from_landmarks(z["landmarks_raw"], "fs_video")
    np.testing.assert_allclose(quad, z["quads_raw"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(quad_from_landmarks(z["landmarks_raw"])[0], z["quads_ffhq_raw"], rtol=0, atol=1e-9)


def test_jitter_table(ts):
    z, meta = ts
    j = meta["jitter"]
    stit = z["quads_stit_smoothed"]
    cases = {
        "fs_raw": (z["quads_raw"], z["qsize_raw"]),
        "fs_landmarks_smoothed_only": (z["quads_from_smoothed_landmarks"], z["qsize_from_smoothed_landmarks"]),
        "fs_smoothed": (z["quads_smoothed"], z["qsize_smoothed"]),
        "ffhq_raw": (z["quads_ffhq_raw"], quad_size(z["quads_ffhq_raw"])),
        # The README's text says s = 2|x|, but its number uses STIT crop_image's qsize
        # |Q3 - Q1| = 2 sqrt(2) |x| (with 2|x| J is sqrt(2) larger: 0.000922).
        "stit_smoothed": (stit, np.hypot(*(stit[:, 3] - stit[:, 1]).T)),
    }
    for name, (q, s) in cases.items():
        assert S.jitter(q, s) == pytest.approx(j[name]["mean_over_qsize"], rel=1e-9), name
        assert S.jitter_px(q) == pytest.approx(j[name]["mean_px"], rel=1e-9), name
    # README table: 0.00805 -> 0.000355 (about 23x)
    assert S.jitter(z["quads_raw"], z["qsize_raw"]) / S.jitter(z["quads_smoothed"], z["qsize_smoothed"]) > 22


def test_quad_smoother_ffhq_variant_reduces_jitter(ts):
    z, _ = ts
    frames = S.QuadSmoother(3.0).smooth_track(z["landmarks_raw"])  # default: FFHQ eye centres
    q = np.stack([f.quad for f in frames])
    s = np.array([f.qsize for f in frames])
    raw_q, raw_s = quad_from_landmarks(z["landmarks_raw"])
    assert S.jitter(q, s) < S.jitter(raw_q, raw_s) / 15
    # strength: sigma 1.5 smooths less, with less look-ahead
    weak = S.QuadSmoother(1.5)
    assert weak.delay == 6 + 12
    fw = weak.smooth_track(z["landmarks_raw"])
    jw = S.jitter(np.stack([f.quad for f in fw]), np.array([f.qsize for f in fw]))
    assert S.jitter(q, s) < jw < S.jitter(raw_q, raw_s)


def _translated_track(base, velocity_px_per_frame, n_still=40, n_move=110, n_end=40):
    pos = np.concatenate([np.zeros(n_still), np.arange(1, n_move + 1) * velocity_px_per_frame,
                          np.full(n_end, n_move * velocity_px_per_frame)])
    direction = np.array([1.0, 0.3]) / math.hypot(1.0, 0.3)
    return base[None] + pos[:, None, None] * direction, pos


def test_quad_smoother_lag_bound_fast_motion(ts):
    """Piecewise-constant velocity: the smoothed quad trails by at most |dv| sigma_tot / sqrt(2 pi) px
    at a velocity change (sigma_tot = sqrt(sigma_lm^2 + sigma_quad^2)) and not at all inside a
    constant-velocity segment longer than 2 x delay."""
    z, _ = ts
    v = 12.0  # px/frame, a fast head motion (360 px/s at 30 fps, 0.7 qsize per second)
    track, _ = _translated_track(z["landmarks_raw"][0], v)
    qs = S.QuadSmoother(3.0)
    frames = qs.smooth_track(track)
    q = np.stack([f.quad for f in frames])
    raw_q, raw_s = quad_from_landmarks(track)
    dist = np.linalg.norm(q - raw_q, axis=-1).max(axis=-1)
    bound = v * math.sqrt(3.0 ** 2 + 6.0 ** 2) / math.sqrt(2 * math.pi)
    assert dist.max() <= bound * (1 + 1e-3) + 1e-3
    assert dist.max() > 0.9 * bound  # the bound is tight
    interior = slice(40 + qs.delay + 1, 40 + 110 - qs.delay - 1)
    assert dist[interior].max() < 1e-3
    assert S.max_lag(raw_q, q, raw_s) == pytest.approx(dist.max() / raw_s[0], rel=1e-6)


# ----------------------------------------------------------------------------------------- One-Euro

def test_one_euro_reduces_jitter(ts):
    z, _ = ts
    f = S.OneEuroFilter()
    lm = np.stack([f(x, k / 30.0) for k, x in enumerate(z["landmarks_raw"])])
    q, s = quad_from_landmarks(lm, "fs_video")
    j_raw = S.jitter(z["quads_raw"], z["qsize_raw"])
    assert S.jitter(q, s) < 0.5 * j_raw  # measured 0.00261 vs 0.00805


def test_one_euro_bounded_lag_fast_motion(ts):
    """Constant speed v: steady-state lag v / (2 pi cutoff) <= 1 / (2 pi beta) px; never more than
    one frame of motion."""
    z, _ = ts
    fps, v = 30.0, 20.0  # 600 px/s
    track, pos = _translated_track(z["landmarks_raw"][0], v)
    f = S.OneEuroFilter(min_cutoff=1.0, beta=0.02)
    out = np.stack([f(x, k / fps) for k, x in enumerate(track)])
    lag = np.linalg.norm(out - track, axis=-1).max(axis=-1)
    assert lag.max() <= v  # at most one frame of motion
    steady = slice(40 + 15, 40 + 110)  # 0.5 s after the motion starts
    assert lag[steady].max() <= 1.0 / (2 * math.pi * f.beta)
    assert lag[-1] < 0.05  # converges after the stop
    raw_q, raw_s = quad_from_landmarks(track)
    assert S.max_lag(raw_q, quad_from_landmarks(out)[0], raw_s) <= v / raw_s.min()


def test_one_euro_timestamps():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 68, 2))
    a, b = S.OneEuroFilter(freq=25.0), S.OneEuroFilter(freq=25.0)
    ya = np.stack([a(v) for v in x])
    yb = np.stack([b(v, 10.0 + k / 25.0) for k, v in enumerate(x)])
    np.testing.assert_allclose(ya, yb, rtol=0, atol=1e-9)
    # variable frame rate: a longer gap follows the new value more
    c1, c2 = S.OneEuroFilter(), S.OneEuroFilter()
    c1(np.zeros(2), 0.0)
    c2(np.zeros(2), 0.0)
    assert c2(np.ones(2), 0.5)[0] > c1(np.ones(2), 1 / 30)[0]
    with pytest.raises(ValueError):
        c1(np.ones(2), 0.0)  # time going backwards


# ------------------------------------------------------------------------------------ Lucas-Kanade

def test_refine_landmarks_lk():
    import cv2

    rng = np.random.default_rng(4)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, size=(260, 340)).astype(np.float32), (0, 0), 2.0)
    tex = cv2.normalize(tex, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    dx, dy = 3, 2
    prev = tex[20:240, 20:320]
    cur = tex[20 - dy:240 - dy, 20 - dx:320 - dx]  # content moves by (+dx, +dy)
    prev_lm = rng.uniform(50, 170, size=(68, 2)) * [1.3, 1.0]
    truth = prev_lm + [dx, dy]
    det = truth + rng.normal(scale=1.5, size=truth.shape)
    ref = S.refine_landmarks_lk(prev, cur, prev_lm, det, win_size=21)
    assert ref.shape == (68, 2)
    err_det = np.linalg.norm(det - truth, axis=1).mean()
    err_ref = np.linalg.norm(ref - truth, axis=1).mean()
    assert err_ref < 0.5 * err_det
    # large detector motion (d^2 >> sigma): the detection wins
    far = truth + 40.0
    out = S.refine_landmarks_lk(prev, cur, prev_lm, far, win_size=21)
    np.testing.assert_allclose(out, far, atol=1e-6)
