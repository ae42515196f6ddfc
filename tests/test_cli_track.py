"""``vidinv track``: preview video with overlays and the per-frame JSON."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import cached_detection, require_shared
from vidinv.io.video import VideoWriter, probe, read_frames

# frame counts of ../shared/videos/README.md
COUNTS = {"crowd_1080p": 105, "greenscreen_frontal": 78, "interview_720p": 282, "selfie_portrait": 352,
          "talking_wink": 354}



@pytest.fixture(scope="module", autouse=True)
def _shared_detections():
    """dlib detections are memoised by frame content for the session (conftest.cached_detection)."""
    with cached_detection():
        yield

@pytest.fixture(scope="module")
def cli_app():
    from vidinv.cli.main import cli

    return cli


def _invoke(cli_app, args):
    res = CliRunner().invoke(cli_app, args, catch_exceptions=False)
    return res


def _overlay_hits(inp: np.ndarray, out: np.ndarray, points: np.ndarray, thresh: float = 40.0) -> float:
    """Fraction of points around which (3x3 neighbourhood) the preview differs strongly from the input."""
    h, w = inp.shape[:2]
    diff = np.abs(out.astype(np.int16) - inp.astype(np.int16)).max(axis=2)
    hits = 0
    for x, y in np.rint(points).astype(int):
        if 1 <= x < w - 1 and 1 <= y < h - 1:
            hits += diff[y - 1:y + 2, x - 1:x + 2].max() > thresh
    return hits / len(points)


def test_track_greenscreen_preview_and_json(cli_app, tmp_path):
    src = require_shared("videos") / "greenscreen_frontal.mp4"
    out, js = tmp_path / "prev.mp4", tmp_path / "tracks.json"
    res = _invoke(cli_app, ["track", str(src), "-o", str(out), "--json", str(js)])
    assert res.exit_code == 0, res.output
    info = probe(out)
    assert info.num_frames == 78 and (info.width, info.height) == (512, 512)
    doc = json.loads(js.read_text())
    assert doc["num_frames"] == 78 and len(doc["frames"]) == 78
    assert [f["index"] for f in doc["frames"]] == list(range(78))
    assert doc["tracks"] == {"0": {"first": 0, "last": 77, "frames": 78, "interpolated": 0}}
    rec = doc["frames"][10]["faces"][0]
    assert np.array(rec["landmarks"]).shape == (68, 2) and np.array(rec["quad"]).shape == (4, 2)
    assert rec["qsize"] > 100
    # the overlays are there: pixels differ from the input at the landmarks and on the quad's edges
    src_frames = {f.index: f.image for f in read_frames(src) if f.index in (0, 40, 77)}
    out_frames = {f.index: f.image for f in read_frames(out) if f.index in (0, 40, 77)}
    for k in (0, 40, 77):
        face = doc["frames"][k]["faces"][0]
        assert _overlay_hits(src_frames[k], out_frames[k], np.array(face["landmarks_raw"])) > 0.9
        q = np.array(face["quad"])
        edge_pts = np.concatenate([q[i] + np.linspace(0, 1, 20)[:, None] * (q[(i + 1) % 4] - q[i]) for i in range(4)])
        assert _overlay_hits(src_frames[k], out_frames[k], edge_pts) > 0.9
        # away from the face (left border strip), only codec noise
        strip = (slice(100, 400), slice(0, 30))
        assert np.abs(src_frames[k][strip].astype(float) - out_frames[k][strip]).mean() < 3.0


def test_track_passes_faceless_frames_and_all_mode(cli_app, tmp_path):
    """A clip of 6 face frames then 6 black frames: the black frames come out unchanged (up to the codec),
    with no face in the JSON; --face all / --smoothing none / --no-mask work."""
    src = require_shared("videos") / "greenscreen_frontal.mp4"
    clip = tmp_path / "clip.mp4"
    faces = [f.image for f in read_frames(src, stop=6)]
    with VideoWriter(clip, 512, 512, fps=25, crf=10) as w:
        for img in faces + [np.zeros_like(faces[0])] * 6:
            w.write(img)
    out, js = tmp_path / "prev.mp4", tmp_path / "t.json"
    res = _invoke(cli_app, ["track", str(clip), "-o", str(out), "--json", str(js), "--face", "all",
                            "--smoothing", "none", "--no-mask", "--quiet"])
    assert res.exit_code == 0, res.output
    doc = json.loads(js.read_text())
    assert [len(f["faces"]) for f in doc["frames"]] == [1] * 6 + [0] * 6
    back = [f.image for f in read_frames(out)]
    assert len(back) == 12
    for img in back[6:]:
        assert img.max() <= 20  # black stays black (only codec noise)
    # smoothing none: the quad is the raw one
    rec = doc["frames"][3]["faces"][0]
    np.testing.assert_allclose(rec["quad"], rec["quad_raw"], atol=2e-3)


def test_track_fan_unavailable_is_a_clear_error(cli_app, tmp_path, monkeypatch):
    import importlib.util

    from vidinv.face import detect as detect_mod

    real = importlib.util.find_spec
    monkeypatch.setattr(detect_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_alignment" else real(name, *a))
    src = require_shared("videos") / "greenscreen_frontal.mp4"
    res = CliRunner().invoke(cli_app, ["track", str(src), "-o", str(tmp_path / "x.mp4"), "--detector", "fan"])
    assert res.exit_code != 0
    assert "face_alignment" in res.output and "pip install" in res.output
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COUNTS))
def test_track_every_shared_video(cli_app, tmp_path, name):
    """Acceptance: ``vidinv track`` runs on each shared video on CPU; same frame count; overlays drawn."""
    src = require_shared("videos") / f"{name}.mp4"
    out, js = tmp_path / "prev.mp4", tmp_path / "t.json"
    res = _invoke(cli_app, ["track", str(src), "-o", str(out), "--json", str(js), "--quiet"])
    assert res.exit_code == 0, res.output
    info_in, info_out = probe(src), probe(out)
    assert info_out.num_frames == COUNTS[name]
    assert info_out.display_size == info_in.display_size
    doc = json.loads(js.read_text())
    with_face = [f for f in doc["frames"] if f["faces"]]
    assert len(with_face) > 0.5 * COUNTS[name]
    k = with_face[len(with_face) // 2]["index"]
    face = next(f for f in doc["frames"] if f["index"] == k)["faces"][0]
    a = next(f.image for f in read_frames(src) if f.index == k)
    b = next(f.image for f in read_frames(out) if f.index == k)
    assert _overlay_hits(a, b, np.array(face["landmarks_raw"])) > 0.8
