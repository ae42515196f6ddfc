"""Face detection + 68 landmarks (vidinv.face.detect)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from conftest import require_shared
from vidinv.face import detect as detect_mod
from vidinv.face.detect import DetectorUnavailableError, DlibLandmarkDetector, Face, get_detector


@pytest.fixture(scope="module")
def dlib_detector():
    return get_detector("dlib")


@pytest.fixture(scope="module")
def ffhq_align():
    from PIL import Image

    d = require_shared("parity/ffhq_align")
    z = np.load(d / "ffhq_align.npz")
    frames = [np.asarray(Image.open(d / f"frame_{i:02d}.png").convert("RGB")) for i in range(6)]
    return frames, z


def _check_plausible(f: Face, frame_hw) -> None:
    lm = f.landmarks
    assert lm.shape == (68, 2) and lm.dtype == np.float64
    assert f.box.shape == (4,) and f.box[2] > f.box[0] and f.box[3] > f.box[1]
    h, w = frame_hw
    assert np.all(lm[:, 0] > -0.1 * w) and np.all(lm[:, 0] < 1.1 * w)
    # anatomy: eyes above the nose tip above the mouth, left eye left of the right eye (image coords)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    nose, mouth = lm[30], lm[48:68].mean(0)
    assert eye_l[0] < eye_r[0]
    assert max(eye_l[1], eye_r[1]) < nose[1] < mouth[1]
    iod = np.linalg.norm(eye_r - eye_l)
    assert 0.2 * f.size < iod < 0.6 * f.size
    # landmarks centred on the box
    c = lm.mean(0)
    assert np.linalg.norm(c - f.center) < 0.3 * f.size


def test_ffhq_align_frames_reproduce_reference_landmarks(dlib_detector, ffhq_align):
    """dlib ``detector(img, 1)`` + 68-point predictor, as the fixture ran it: bit-identical landmarks on the
    frames where the fixture says re-running dlib reproduces them (frames 0, 1 of d3 = talking_wink, and the
    two 1024² images at full resolution)."""
    frames, z = ffhq_align
    res = dlib_detector.detect(frames[:2])
    for i in (0, 1):
        assert len(res[i]) == 1
        np.testing.assert_array_equal(res[i][0].landmarks, z["landmarks"][i])
        np.testing.assert_array_equal(res[i][0].box, z["dlib_rects"][i])
        assert res[i][0].detector == "dlib_hog"
    full = DlibLandmarkDetector(max_side=None, cnn_fallback=False)
    res = full.detect([frames[4], frames[5]])
    for r, i in zip(res, (4, 5)):
        assert len(r) == 1
        np.testing.assert_array_equal(r[0].landmarks, z["landmarks"][i])


def test_downscaled_detection_stays_close(dlib_detector, ffhq_align):
    """Big frames are searched on a copy downscaled to 960 px; the landmarks (predicted at full
    resolution from the rescaled box) stay within 2 % of the face size of the full-resolution ones."""
    frames, z = ffhq_align
    (faces,) = dlib_detector.detect([frames[4]])
    assert len(faces) == 1
    err = np.linalg.norm(faces[0].landmarks - z["landmarks"][4], axis=1)
    assert err.mean() < 0.02 * faces[0].size, err.mean()
    # the cropped frames (dlib on the crop differs from the fixture's full-frame run by up to ~6 px)
    for i in (2, 3):
        (faces,) = dlib_detector.detect([frames[i]])
        assert len(faces) == 1
        _check_plausible(faces[0], frames[i].shape[:2])
        assert np.abs(faces[0].landmarks - z["landmarks"][i]).max() <= 8.0


def test_greenscreen_frames_one_face(dlib_detector):
    from vidinv.io.video import read_frames

    path = require_shared("videos") / "greenscreen_frontal.mp4"
    frames = [f.image for f in read_frames(path) if f.index in (0, 39, 77)]
    res = dlib_detector.detect(frames)
    assert len(res) == 3
    for faces, fr in zip(res, frames):
        assert len(faces) == 1
        _check_plausible(faces[0], fr.shape[:2])
        assert 150 < faces[0].size < 400  # the face fills about half of the 512² frame
        assert faces[0].score > 0


def test_blank_and_noise_frames(dlib_detector):
    black = np.zeros((360, 640, 3), np.uint8)
    grey = np.full((200, 200, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    before = dict(dlib_detector.stats)
    res = dlib_detector.detect([black, grey, noise])
    assert res[0] == [] and res[1] == []
    assert isinstance(res[2], list)
    assert dlib_detector.stats["blank_frames"] - before["blank_frames"] == 2
    assert dlib_detector.detect([]) == []


def test_cnn_fallback_when_hog_finds_nothing(ffhq_align):
    """With the HOG threshold raised so that HOG finds nothing, the CNN (MMOD) detector takes over; its
    box, shifted to HOG's convention, gives landmarks close to the HOG ones."""
    frames, z = ffhq_align
    det = DlibLandmarkDetector(adjust_threshold=10.0, cnn_fallback=True, cnn_max_side=256)
    (faces,) = det.detect([frames[0]])
    assert det.stats["cnn_frames"] == 1
    assert len(faces) == 1 and faces[0].detector == "dlib_cnn"
    _check_plausible(faces[0], frames[0].shape[:2])
    err = np.linalg.norm(faces[0].landmarks - z["landmarks"][0], axis=1).mean()
    assert err < 0.05 * faces[0].size, err
    no_cnn = DlibLandmarkDetector(adjust_threshold=10.0, cnn_fallback=False)
    assert no_cnn.detect([frames[0]]) == [[]]


def test_bad_input(dlib_detector):
    with pytest.raises(ValueError):
        dlib_detector.detect([np.zeros((64, 64), np.uint8)])
    with pytest.raises(ValueError):
        dlib_detector.detect([np.zeros((64, 64, 3), np.float32)])
    with pytest.raises(ValueError):
        get_detector("mtcnn")


def test_fan_without_package_gives_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(detect_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_alignment" else real(name, *a))
    with pytest.raises(DetectorUnavailableError, match=r"face_alignment.*pip install face-alignment"):
        get_detector("fan")


def test_fan_without_weights_names_the_missing_files(monkeypatch, tmp_path):
    """With the package importable but an empty torch hub cache, the error lists the weight files."""
    real = importlib.util.find_spec
    fake_spec = importlib.util.spec_from_loader("face_alignment", loader=None)
    monkeypatch.setattr(detect_mod.importlib.util, "find_spec",
                        lambda name, *a: fake_spec if name == "face_alignment" else real(name, *a))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import torch

    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    with pytest.raises(DetectorUnavailableError) as e:
        get_detector("fan")
    msg = str(e.value)
    assert "2DFAN4" in msg and "s3fd-619a316812.pth" in msg and str(tmp_path) in msg
    assert "--detector dlib" in msg


def test_fan_backend_runs_when_available():
    if importlib.util.find_spec("face_alignment") is None:
        pytest.skip("face_alignment is not installed (optional 'fan' back-end)")
    if not all(p.is_file() for p in detect_mod.fan_weight_files()):
        pytest.skip("face_alignment weights are not in the torch hub cache")
    from PIL import Image

    d = require_shared("parity/ffhq_align")
    frame = np.asarray(Image.open(d / "frame_00.png").convert("RGB"))
    (faces,) = get_detector("fan").detect([frame])
    assert len(faces) == 1
    _check_plausible(faces[0], frame.shape[:2])
    ref = np.load(d / "ffhq_align.npz")["landmarks"][0]
    assert np.linalg.norm(faces[0].landmarks - ref, axis=1).mean() < 0.05 * faces[0].size
