"""Small faces in low-resolution frames: the dlib detector's ``upscale`` option (for ``vidinv restore``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidinv.face.detect import UPSCALE_MAX, DlibLandmarkDetector, Face, _scale_face, upscale_factor

VIDEOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "videos"


def _frame(name: str, index: int) -> np.ndarray:
    from vidinv.io.video import VideoReader

    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"shared test video {path} is absent")
    with VideoReader(path) as reader:
        for f in reader:
            if f.index == index:
                return f.image
    raise AssertionError(f"{name} has no frame {index}")


@pytest.fixture(scope="module")
def detectors():
    """(plain, auto): one loaded dlib detector (the shape predictor takes seconds to load), and a shallow
    copy of it with ``upscale="auto"`` sharing the loaded models."""
    import copy

    plain = DlibLandmarkDetector()
    auto = copy.copy(plain)
    auto.upscale = "auto"
    return plain, auto


def test_upscale_factor_rule():
    assert upscale_factor((90, 160, 3), "auto") == 6  # 720p / 8
    assert upscale_factor((45, 80, 3), "auto") == 8  # 720p / 16: 960 // 80 = 12, capped
    assert upscale_factor((180, 320), "auto") == 3
    assert upscale_factor((270, 480), "auto") == 2  # 1080p / 4
    assert upscale_factor((160, 90), "auto") == 6  # portrait
    assert upscale_factor((32, 32), "auto") == UPSCALE_MAX  # 960 // 32 = 30, capped
    assert upscale_factor((512, 512), "auto") == 1
    assert upscale_factor((720, 1280), "auto") == 1
    assert upscale_factor((720, 1280), 3) == 3
    assert upscale_factor((10, 10), 1) == 1
    for bad in (0, -2, 1.5, "x", True):
        with pytest.raises(ValueError):
            upscale_factor((10, 10), bad)
    with pytest.raises(ValueError):
        DlibLandmarkDetector(upscale="big")


def test_scale_face_mapping():
    # landmarks: half-pixel centres, (x + 0.5) / s - 0.5; box: pixel span [l, r] -> [l / s, (r + 1) / s - 1]
    f = Face(box=np.array([8.0, 4.0, 15.0, 19.0]), landmarks=np.array([[1.5, 3.5], [7.5, 0.0]]), score=1.0,
             detector="dlib_hog")
    g = _scale_face(f, 4)
    np.testing.assert_allclose(g.box, [2.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(g.landmarks, [[0.0, 0.5], [1.5, -0.375]])
    assert g.score == 1.0 and g.detector == "dlib_hog"


def _check_against_full_resolution(name, index, factor, detectors):
    import cv2

    plain, auto = detectors
    img = _frame(name, index)
    ref = plain.detect([img])[0][0]  # the full-resolution detection
    h, w = img.shape[:2]
    small = cv2.resize(img, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    centre = ref.center / factor
    side = ref.size / factor

    def near(faces):
        return [f for f in faces if np.linalg.norm(f.center - centre) < 0.5 * side]

    assert near(plain.detect([small])[0]) == []  # too small for the default front-end
    found = near(auto.detect([small])[0])
    assert len(found) == 1
    f = found[0]
    # coordinates are in the small frame: the full-resolution landmarks mapped down agree to a fraction
    # of a small-frame pixel (measured 0.09-0.15 px mean); the box has the same size
    expected = (ref.landmarks + 0.5) / factor - 0.5
    assert float(np.abs(f.landmarks - expected).mean()) < 0.5
    assert 0.85 < f.size / side < 1.15
    return small, f


def test_720p_down_by_8_found_only_with_upscale(detectors):
    # interview_720p frame 40 / 8 = 160x90, face box ~31 px (inter-ocular ~12.6 px)
    _check_against_full_resolution("interview_720p.mp4", 40, 8, detectors)


def test_512_down_by_16_found_only_with_upscale(detectors):
    # talking_wink frame 0 / 16 = 32x32, face box ~20 px (inter-ocular ~8.3 px)
    _check_against_full_resolution("talking_wink.mp4", 0, 16, detectors)


def test_fixed_factor_equals_manual_upscale(detectors):
    import copy

    import cv2

    plain, _ = detectors
    two = copy.copy(plain)
    two.upscale = 2
    img = _frame("talking_wink.mp4", 0)
    small = cv2.resize(img, (64, 64), interpolation=cv2.INTER_AREA)
    up = two.detect([small])[0]
    big = cv2.resize(small, (128, 128), interpolation=cv2.INTER_CUBIC)
    manual = plain.detect([big])[0]
    assert len(up) == len(manual) >= 1
    for a, b in zip(up, manual):
        np.testing.assert_allclose(a.landmarks, (b.landmarks + 0.5) / 2 - 0.5)
        np.testing.assert_allclose(a.box, _scale_face(b, 2).box)
        assert a.score == b.score


def test_default_unchanged_on_large_frames(detectors):
    # "auto" leaves frames of 480 px and more alone (960 // 512 = 1): same faces as the default
    plain, auto = detectors
    img = _frame("talking_wink.mp4", 0)  # 512x512 -> factor 1
    a, b = plain.detect([img])[0], auto.detect([img])[0]
    assert len(a) == len(b) == 1
    np.testing.assert_array_equal(a[0].landmarks, b[0].landmarks)
    assert plain.upscale == 1  # the constructor default


def test_frontend_detector_options(monkeypatch, detectors):
    from vidinv.face import frontend

    calls = []

    def fake_get_detector(name, **kwargs):
        calls.append((name, kwargs))
        return detectors[0]

    monkeypatch.setattr(frontend, "get_detector", fake_get_detector)
    frontend.FaceFrontEnd("dlib", detector_options={"upscale": "auto"}, scene_cut=False)
    frontend.FaceFrontEnd(scene_cut=False)
    assert calls == [("dlib", {"upscale": "auto"}), ("dlib", {})]
    with pytest.raises(ValueError, match="detector_options"):
        frontend.FaceFrontEnd(detectors[0], detector_options={"upscale": 2})
