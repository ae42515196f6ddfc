"""The confidence gate (vidinv.face.gate, vidinv.pipeline.gating): ramps, the fade (hand-computed sequences),
the pose estimate, the score reference, and end to end: a synthetic occlusion closes the gate and the output
there is the input (within codec noise), while open frames are edited; a generator that draws no face
(the tiny bundle's) fails the reconstruction check, so nothing is pasted."""
from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from conftest import require_shared
from tiny_bundle import write_tiny_bundle

from vidinv.face.gate import (
    MIRROR_68,
    MODEL_POINTS,
    POSE_LANDMARKS,
    FrameFades,
    GateSettings,
    Ramp,
    ScoreReference,
    StreamingFade,
    combine,
    fade_gate,
    head_pose,
    parse_ramp,
)

# ---------------------------------------------------------------- ramps, combination


def test_ramp_both_directions_and_smoothstep():
    up = Ramp(full=2.0, zero=1.0)  # larger is better
    assert up(0.5) == 0.0 and up(1.0) == 0.0 and up(2.0) == 1.0 and up(9.0) == 1.0
    assert up(1.5) == pytest.approx(0.5) and up(1.25) == pytest.approx(3 * 0.25**2 - 2 * 0.25**3)
    down = Ramp(full=35.0, zero=55.0)  # smaller is better
    assert down(10) == 1.0 and down(60) == 0.0 and down(45) == pytest.approx(0.5)
    assert up(math.nan) == 0.0
    with pytest.raises(ValueError):
        Ramp(1.0, 1.0)


def test_parse_ramp():
    assert parse_ramp("35,55", "--gate-yaw") == Ramp(35.0, 55.0)
    assert parse_ramp("off", "--gate-yaw") is None and parse_ramp("OFF", "x") is None
    for bad in ("35", "a,b", "1,1", "1,2,3", "nan,1"):
        with pytest.raises(ValueError, match="--gate-yaw"):
            parse_ramp(bad, "--gate-yaw")
    assert str(Ramp(35.0, 55.0)) == "35,55"


def test_combine_is_the_minimum_and_names_it():
    assert combine({"yaw": 0.8, "score": 0.3, "identity": 1.0}) == (0.3, "score")
    assert combine({"yaw": 1.0}) == (1.0, None)
    assert combine({}) == (1.0, None)


# ---------------------------------------------------------------- the fade


def test_fade_hand_computed():
    # one closed frame: linear ramps of 1/4 per frame on both sides, the closed frame stays 0
    g = [1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1]
    np.testing.assert_allclose(fade_gate(g, 4), [1, 1, 0.75, 0.5, 0.25, 0, 0.25, 0.5, 0.75, 1, 1])
    # a partial dip: s[t] = min(g[k] + |k - t| / 2)
    np.testing.assert_allclose(fade_gate([1, 1, 0.2, 1, 1, 1], 2), [1, 0.7, 0.2, 0.7, 1, 1])
    # a step: the fade ends where the gate closes and stays below the raw gate
    s = fade_gate([1, 1, 1, 1, 0, 0, 0], 3)
    np.testing.assert_allclose(s, [1, 1, 2 / 3, 1 / 3, 0, 0, 0], atol=1e-12)
    # the track's ends are not faded; fade 0 is the raw gate; NaN counts as closed
    np.testing.assert_allclose(fade_gate([1, 1, 1], 5), [1, 1, 1])
    np.testing.assert_allclose(fade_gate([0.3, 1.4, np.nan], 0), [0.3, 1.0, 0.0])
    # samples farther apart than the fade do not interact (frame indices)
    np.testing.assert_allclose(fade_gate([1, 1, 0, 1, 1], 4, frames=[0, 1, 2, 10, 11]), [0.5, 0.25, 0, 1, 1])


def test_fade_never_exceeds_the_raw_gate_and_is_slope_limited():
    rng = np.random.default_rng(0)
    g = np.clip(rng.normal(0.7, 0.4, 200), 0, 1)
    s = fade_gate(g, 6)
    assert np.all(s <= g + 1e-12)
    assert np.max(np.abs(np.diff(s))) <= 1 / 6 + 1e-12
    assert np.all(s[g == 0] == 0)


@pytest.mark.parametrize("fade", [0, 1, 3, 8])
def test_streaming_fade_equals_offline(fade):
    rng = np.random.default_rng(fade)
    g = np.clip(rng.normal(0.6, 0.5, 60), 0, 1)
    frames = np.cumsum(rng.integers(1, 3, 60))
    sf = StreamingFade(fade)
    out = []
    for k, v in zip(frames, g):
        got = sf.push(int(k), float(v))
        assert all(t + fade <= k for t, _ in got)  # released at most `fade` frames late, never early
        out += got
    out += sf.flush()
    assert [t for t, _ in out] == list(frames)
    np.testing.assert_allclose([v for _, v in out], fade_gate(g, fade, frames), atol=1e-12)


def test_frame_fades_two_tracks_in_frame_order():
    ff = FrameFades(2)
    got = []
    # track 0 in frames 0-5 (closed at 3), track 1 appears at 2 and ends after 4
    raw = {0: {0: 1.0}, 1: {0: 1.0}, 2: {0: 1.0, 1: 1.0}, 3: {0: 0.0, 1: 1.0}, 4: {0: 1.0, 1: 0.5}, 5: {0: 1.0}}
    for i in range(6):
        got += ff.push(i, f"frame{i}", raw[i])
    got += ff.flush()
    assert [p for p, _ in got] == [f"frame{i}" for i in range(6)]
    g0 = fade_gate([raw[i][0] for i in range(6)], 2)
    g1 = fade_gate([raw[i][1] for i in (2, 3, 4)], 2)
    assert [gates[0] for _, gates in got] == pytest.approx(list(g0))
    assert [got[i][1][1] for i in (2, 3, 4)] == pytest.approx(list(g1))
    assert 1 not in got[5][1]


# ---------------------------------------------------------------- pose, score reference


def _landmarks_from_model(yaw_deg: float, pitch_deg: float = 0.0, scale: float = 0.5) -> np.ndarray:
    """68 landmarks whose six pose points are the generic model turned by yaw (then pitch), projected
    orthographically (the other points are unused by the pose and set to the nose tip)."""
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(a), 0, -math.sin(a)], [0, 1, 0], [math.sin(a), 0, math.cos(a)]])  # + : to the right
    rx = np.array([[1, 0, 0], [0, math.cos(b), math.sin(b)], [0, -math.sin(b), math.cos(b)]])
    p = MODEL_POINTS @ (rx @ ry).T
    lm = np.tile(p[0, :2], (68, 1))
    lm[list(POSE_LANDMARKS)] = p[:, :2]
    return lm * scale + 300.0


def test_pose_of_a_generated_rotation():
    assert head_pose(_landmarks_from_model(0))[0] == pytest.approx(0.0, abs=1e-9)
    for yaw in (-50, -30, -10, 20, 40):
        assert head_pose(_landmarks_from_model(yaw))[0] == pytest.approx(yaw, abs=3.0)
    for pitch in (-20, 15):
        assert head_pose(_landmarks_from_model(0, pitch))[1] == pytest.approx(pitch, abs=3.0)


@pytest.fixture(scope="module")
def frontal_landmarks():
    from PIL import Image

    from vidinv.face.detect import get_detector

    img = np.asarray(Image.open(require_shared("images") / "ffhq_00020.jpg").convert("RGB"))
    faces = get_detector("dlib").detect([img])[0]
    assert len(faces) == 1
    return faces[0].landmarks, img.shape[1]


def test_pose_frontal_image_and_mirror(frontal_landmarks):
    lm, width = frontal_landmarks
    yaw, pitch, roll = head_pose(lm)
    assert abs(yaw) < 5 and abs(roll) < 3  # ffhq_00020: a frontal, upright face
    mirrored = np.stack([width - 1 - lm[:, 0], lm[:, 1]], axis=1)[MIRROR_68]
    myaw, mpitch, mroll = head_pose(mirrored)
    assert myaw == pytest.approx(-yaw, abs=1e-9) and mpitch == pytest.approx(pitch, abs=1e-9)
    assert mroll == pytest.approx(-roll, abs=1e-9)
    assert sorted(MIRROR_68) == list(range(68)) and np.all(MIRROR_68[MIRROR_68] == np.arange(68))


def test_score_reference_hand_computed():
    ref = ScoreReference(window=3, min_frames=2)
    assert math.isnan(ref.push(2.0, "dlib_hog"))  # nothing before
    assert math.isnan(ref.push(3.0, "dlib_hog"))  # one before
    assert ref.push(1.0, "dlib_hog") == pytest.approx(2.5 - 1.0)  # median(2, 3)
    assert ref.push(0.0, "dlib_hog") == pytest.approx(2.5 - 0.0)  # median(2, 3, 1) = 2 < 2.5: kept
    assert math.isnan(ref.push(math.nan, "dlib_hog", interpolated=True)) and math.isnan(ref.push(0.5, "fan"))
    assert ref.push(0.0, "dlib_hog") == pytest.approx(2.5)  # median(3, 1, 0) = 1: the reference does not fall
    assert ref.push(0.7, "dlib_cnn") == pytest.approx(2.5)  # HOG missed the face: its score was below 0


# ---------------------------------------------------------------- end to end (tiny bundle)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("gate_home")
    write_tiny_bundle(h)
    old = os.environ.get("VIDINV_HOME")
    os.environ["VIDINV_HOME"] = str(h)
    yield h
    if old is None:
        os.environ.pop("VIDINV_HOME", None)
    else:
        os.environ["VIDINV_HOME"] = old


N_FRAMES, OCCLUDED = 24, range(11, 16)
OPEN = [*range(0, 7), *range(20, N_FRAMES)]  # 1 s of the clip; the fade (3 frames) is between


@pytest.fixture(scope="module")
def occluded_clip(tmp_path_factory):
    """The first 24 frames of greenscreen_frontal.mp4 with the lower 65% of the face covered by a grey
    rectangle in frames 11-15 (as if a hand went over it), written at crf 12."""
    from vidinv.face.detect import get_detector
    from vidinv.io.video import VideoReader, VideoWriter

    src = require_shared("videos") / "greenscreen_frontal.mp4"
    frames = [f.image.copy() for f in VideoReader(src, stop=N_FRAMES)]
    lm = get_detector("dlib").detect([frames[0]])[0][0].landmarks
    (x0, y0), (x1, y1) = lm.min(axis=0), lm.max(axis=0)
    box = (int(x0) - 5, int(y0 + 0.35 * (y1 - y0)), int(x1) + 5, int(y1) + 5)
    for i in OCCLUDED:
        frames[i][box[1]:box[3], box[0]:box[2]] = 128
    path = tmp_path_factory.mktemp("occluded") / "occluded.mp4"
    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, fps=25, crf=12) as wr:
        for f in frames:
            wr.write(f)
    face = (int(x0), int(y0), int(x1), int(y1))
    return path, face


def _decoded(path):
    from vidinv.io.video import VideoReader

    return [f.image.astype(np.int16) for f in VideoReader(path, accurate_color=True)]


def test_occlusion_closes_the_gate_and_keeps_the_input(home, occluded_clip, tmp_path):
    from vidinv.pipeline.edit import EditOptions, run_edit

    src, (x0, y0, x1, y1) = occluded_clip
    out = tmp_path / "out.mp4"
    # the tiny generator draws no face: its reconstruction would close the gate everywhere (next test)
    same = {}
    res = run_edit(EditOptions(src, out, attrs=["smile"], device="cpu", gate_identity="off", gate_fade=3,
                               batch_size=8), quiet=True,
                   on_frame=lambda it: same.__setitem__(it.frame.index, np.array_equal(it.image, it.frame.image)))
    assert [i for i in range(N_FRAMES) if same[i]] == list(OCCLUDED)  # before encoding: the input, exactly
    gates = {fr["index"]: fr["faces"][0] for fr in res.gates}
    assert len(gates) == N_FRAMES and res.gate["fade"] == 3 and res.gate["identity"] == "off"
    for i in OCCLUDED:  # HOG misses the covered face (the CNN fallback finds it) or its score collapses
        assert gates[i]["gate"] == 0.0 and gates[i]["limit"] == "score", (i, gates[i])
        assert gates[i]["measures"]["score_drop"] > 2.0
    for i in OPEN:  # frontal, clean: fully open
        assert gates[i]["gate"] == 1.0 and gates[i]["raw"] == 1.0, (i, gates[i])
        assert abs(gates[i]["measures"]["yaw"]) < 10
    # the fade: at most 1/3 per frame, from 1 down to 0 before the first occluded frame
    g = [gates[i]["gate"] for i in range(N_FRAMES)]
    assert np.max(np.abs(np.diff(g))) <= 1 / 3 + 1e-4  # records are rounded to 4 decimals
    assert g[OCCLUDED.start - 1] == pytest.approx(1 / 3, abs=1e-4)

    a, b = _decoded(src), _decoded(out)
    assert len(a) == len(b) == N_FRAMES
    diff = [np.abs(a[i][y0:y1, x0:x1] - b[i][y0:y1, x0:x1]).mean() for i in range(N_FRAMES)]
    noise = max(diff[i] for i in OCCLUDED)
    edited = min(diff[i] for i in OPEN)
    assert noise < 1.0, diff  # the input, re-encoded: codec noise only
    assert edited > 10 * noise and edited > 5.0, diff  # open frames carry the (tiny, non-face) generated face


def test_failed_reconstruction_keeps_every_frame(home, tmp_path):
    from vidinv.pipeline.edit import EditOptions, run_edit

    src = require_shared("videos") / "greenscreen_frontal.mp4"
    out = tmp_path / "out.mp4"
    same = []
    res = run_edit(EditOptions(src, out, attrs=["smile"], device="cpu", end=0.2, batch_size=8), quiet=True,
                   on_frame=lambda it: same.append(np.array_equal(it.image, it.frame.image)))
    assert same == [True] * 5  # before encoding: the input, exactly
    faces = [fr["faces"][0] for fr in res.gates]
    assert len(faces) == res.frames == 5 and res.frames_edited == 5
    for f in faces:  # dlib: not the same person (distance > 0.6) -> closed
        assert f["gate"] == 0.0 and f["limit"] == "identity" and f["measures"]["identity_distance"] > 0.6
    a, b = _decoded(src)[:5], _decoded(out)
    assert max(np.abs(x - y).mean() for x, y in zip(a, b)) < 2.0  # re-encoding the whole frame (crf 18): ~1.2
    json.dumps(res.gates)  # JSON-ready


def test_gate_off_and_anonymize_default():
    from vidinv.pipeline.edit import EditOptions, gate_settings
    from vidinv.pipeline.tasks import AnonymizeOptions, RestoreOptions, ToonifyOptions

    assert gate_settings(EditOptions("a.mp4", "b.mp4", gate="off")) is None
    assert gate_settings(AnonymizeOptions("a.mp4", "b.mp4")) is None
    on = gate_settings(EditOptions("a.mp4", "b.mp4"))
    assert on is not None and on.identity is not None and on == GateSettings()
    for cls in (RestoreOptions, ToonifyOptions):
        s = gate_settings(cls("a.mp4", "b.mp4"))
        assert s is not None and s.identity is None and s.yaw is not None
    with pytest.raises(ValueError, match="--gate-pitch"):
        gate_settings(EditOptions("a.mp4", "b.mp4", gate_pitch="up"))
    with pytest.raises(ValueError, match="--gate"):
        gate_settings(EditOptions("a.mp4", "b.mp4", gate="maybe"))


def test_track_preview_shows_the_gate(occluded_clip, tmp_path):
    from click.testing import CliRunner

    from vidinv.cli.track import track_cmd
    from vidinv.io.video import VideoReader

    src, (x0, _y0, x1, y1) = occluded_clip
    out, js = tmp_path / "preview.mp4", tmp_path / "track.json"
    r = CliRunner().invoke(track_cmd, [str(src), "-o", str(out), "--json", str(js), "--quiet"])
    assert r.exit_code == 0, r.output
    doc = json.loads(js.read_text())
    assert doc["gate"]["identity"] == "off" and doc["gate"]["fade"] == 8
    gates = [fr["faces"][0]["gate"] for fr in doc["frames"]]
    assert len(gates) == N_FRAMES
    for i in OCCLUDED:
        assert gates[i]["gate"] == 0.0 and gates[i]["limit"] == "score", (i, gates[i])
    assert gates[0]["gate"] == 1.0 and gates[-1]["gate"] == 1.0
    # the label under the face: red in a closed frame only
    frames = [f.image for f in VideoReader(out)]
    below = (slice(y1 + 5, min(y1 + 90, frames[0].shape[0])), slice(max(x0 - 60, 0), x1 + 60))

    def reddish(img):
        p = img[below].astype(int)
        return int(((p[..., 0] > 180) & (p[..., 1] < 100) & (p[..., 2] < 100)).sum())

    i = OCCLUDED.start + 2
    assert reddish(frames[i]) > 20 and reddish(frames[0]) == 0 and reddish(frames[-1]) == 0
