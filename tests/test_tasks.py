"""pSp's image-to-image tasks end to end (issue 10): ``vidinv restore``, ``frontalize``, ``toonify``,
``anonymize`` and ``edit --restore`` on shared clips and images with the tiny bundle's task files
(tests/tiny_bundle.py, ``tasks=True``: pSp's layout and ``opts``, tiny networks).

The tiny networks do not draw faces, except the segmentation-to-face decoder, a hand-set generator that
draws one fixed real face of another person (:func:`tiny_bundle.face_drawing_generator`): that is what lets
the anonymize test check that the output still holds a face dlib detects, with another identity. What
the official models draw is not tested here (no official weights offline); geometry, timestamps, audio,
background, files and the task inputs are.

The CLI runs in this process (click's runner).
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import invoke_cli as _invoke
from conftest import require_shared
from PIL import Image
from tiny_bundle import write_tiny_bundle

from vidinv.face import align
from vidinv.inverters import build_inverter
from vidinv.io.video import VideoReader, probe, read_frames
from vidinv.models.sr_degradation import simulate_low_resolution_frame
from vidinv.pipeline.faces import Item, style_mixing_stage, track_style, upscale_frame


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    h = tmp_path_factory.mktemp("tiny_tasks")
    write_tiny_bundle(h, directions=True, parser=True, tasks=True)
    return h



def _frames(path, n=None):
    return [f for f, _ in zip(read_frames(path), range(n or 10 ** 9))]


def _decoded(path, n):
    with VideoReader(path, stop=n, accurate_color=True) as v:
        return [f for f in v]


# ------------------------------------------------------------------------------------------------ restore

def test_restore_simulated_x8_output_x4(tiny_home, tmp_path):
    src = require_shared("videos") / "interview_720p.mp4"
    out = tmp_path / "restored.mp4"
    r = _invoke(["restore", str(src), "-o", str(out), "--simulate-factor", "8", "--scale", "4", "--end", "0.1",
                 "--mask", "landmarks", "-q"], tiny_home)
    assert r.exit_code == 0, r.stderr
    pin, pout = probe(src), probe(out)
    assert (pout.width, pout.height) == (4 * pin.width, 4 * pin.height)
    assert pout.has_audio and pout.audio_codec == pin.audio_codec
    fin = _decoded(src, 3)
    fout = _frames(out)
    assert len(fout) == 3
    assert [f.time for f in fout] == pytest.approx([f.time for f in fin], abs=1e-9)
    # the background is the degraded input up-scaled (Lanczos), within codec noise; the face is not
    for a, b in zip(fin, fout):
        ref = upscale_frame(simulate_low_resolution_frame(a.image, 8), 4).astype(np.int16)
        diff = np.abs(b.image.astype(np.int16) - ref).max(axis=2)
        h, w = diff.shape
        border = np.ones_like(diff, bool)
        border[h // 10: -h // 10, w // 4: -w // 4] = False  # the face is in the middle of this interview
        # crf 18 codec noise on this clip: mean ~1.8, 99th percentile 4 (max over RGB, 8-bit levels)
        assert diff[border].mean() < 2.5 and np.percentile(diff[border], 99) <= 6
        assert diff[~border].mean() > 3 * diff[border].mean()
        sharp = np.abs(b.image.astype(np.int16) - upscale_frame(a.image, 4).astype(np.int16)).max(axis=2)
        assert np.percentile(sharp[border], 99) >= 2 * np.percentile(diff[border], 99)  # the input was degraded


def test_restore_encodes_the_face_at_its_native_resolution(tiny_home):
    paths = {"psp_celebs_super_resolution.pt": tiny_home / "weights" / "psp_celebs_super_resolution.pt"}
    inv = build_inverter("psp-sr", paths)
    frame = next(read_frames(require_shared("videos") / "talking_wink.mp4")).image
    h, w = frame.shape[:2]
    quad = np.array([[w * .3, h * .2], [w * .3, h * .2 + 60], [w * .3 + 60, h * .2 + 60], [w * .3 + 60, h * .2]])
    crop = inv.crop(frame, quad)
    native = align.align_crop(frame, quad, 60)  # the quad is 60 px: the face's native resolution
    expected = np.asarray(Image.fromarray(native).resize((256, 256), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(crop, expected)
    assert inv.generator_path.name == "psp_celebs_super_resolution.pt"
    w_codes, F = inv.encode(crop[None])
    assert w_codes.shape == (1, 18, 512) and F is None


def test_edit_restore_is_restore_then_edit_in_one_pass(tiny_home, tmp_path):
    src = require_shared("videos") / "talking_wink.mp4"
    common = ["--end", "0.1", "--mask", "landmarks", "-q"]
    a, b, c = tmp_path / "restore.mp4", tmp_path / "edit0.mp4", tmp_path / "edit2.mp4"
    assert _invoke(["restore", str(src), "-o", str(a), "--scale", "1", *common], tiny_home).exit_code == 0
    r = _invoke(["edit", str(src), "-o", str(b), "--restore", "--attr", "smile", "--strength", "0", *common], tiny_home)
    assert r.exit_code == 0, r.stderr
    r = _invoke(["edit", str(src), "-o", str(c), "--restore", "--attr", "smile", "--strength", "2", *common], tiny_home)
    assert r.exit_code == 0, r.stderr
    fa, fb, fc = _frames(a), _frames(b), _frames(c)
    assert len(fa) == len(fb) == len(fc) == 3
    for x, y, z in zip(fa, fb, fc):
        np.testing.assert_array_equal(x.image, y.image)  # strength 0: exactly the restoration
        assert np.abs(x.image.astype(int) - z.image.astype(int)).max() > 10  # the edit moved the restored face
    r = _invoke(["edit", str(src), "-o", str(tmp_path / "x.mp4"), "--restore", "--attr", "smile",
                 "--from-inversion", str(tmp_path)], tiny_home)
    assert r.exit_code != 0 and "--restore" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_restore_image_in_image_out(tiny_home, tmp_path):
    src = tmp_path / "face.jpg"
    Image.open(require_shared("images") / "celebahq_1.jpg").convert("RGB").resize((160, 160)).save(src, quality=95)
    out = tmp_path / "face_x2.png"
    r = _invoke(["restore", str(src), "-o", str(out), "--scale", "2", "--mask", "landmarks"], tiny_home)
    assert r.exit_code == 0, r.stderr
    with Image.open(out) as im:
        assert im.size == (320, 320) and im.format == "PNG"


def test_task_options_are_checked_before_any_model(tmp_path):
    src = require_shared("videos") / "talking_wink.mp4"
    empty = tmp_path / "empty_home"
    for args, says in ((["restore", str(src), "-o", str(tmp_path / "o.mp4"), "--scale", "3"], "--scale"),
                       (["restore", str(src), "-o", str(tmp_path / "o.mp4"), "--report", str(tmp_path / "r")],
                        "--simulate-factor"),
                       (["toonify", str(src), "-o", str(tmp_path / "o.mp4"), "--mix-rows", "3-40"], "rows"),
                       (["anonymize", str(src), "-o", str(tmp_path / "o.mp4"), "--mix-alpha", "2"], "--mix-alpha"),
                       (["frontalize", str(src), "-o", str(tmp_path / "o.mp4"), "--frames"], "folder")):
        r = _invoke(args, empty)
        assert r.exit_code != 0 and says in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


# ------------------------------------------------------------------------------------------------ frontalize

def test_frontalize_folder_per_track_with_timestamps(tiny_home, tmp_path):
    src = require_shared("videos") / "talking_wink.mp4"
    out = tmp_path / "fronts"
    r = _invoke(["frontalize", str(src), "-o", str(out), "--frames", "--start", "0.1", "--end", "0.3",
                 "--image-size", "128", "-q"], tiny_home)
    assert r.exit_code == 0, r.stderr
    doc = json.loads((out / "frames.json").read_text())
    assert list(doc["tracks"]) == ["0"]
    recs = doc["tracks"]["0"]
    src_frames = {f.index: f for f in _decoded(src, 12)}
    written = _frames(out / "track_0.mp4")
    assert len(written) == len(recs) == 6
    assert [f.time for f in written] == pytest.approx([src_frames[r["frame"]].time for r in recs], abs=1e-9)
    assert [r["frame"] for r in recs] == list(range(3, 9))
    pngs = sorted((out / "track_0").glob("*.png"))
    assert [p.name for p in pngs] == [f"{r['frame']:06d}.png" for r in recs]
    with Image.open(pngs[0]) as im:
        assert im.size == (128, 128)
    one = tmp_path / "front.mp4"
    r = _invoke(["frontalize", str(src), "-o", str(one), "--end", "0.1", "--image-size", "64", "-q"], tiny_home)
    assert r.exit_code == 0, r.stderr
    assert (probe(one).width, probe(one).height, probe(one).num_frames) == (64, 64, 3)


# ------------------------------------------------------------------------------------------------ toonify

def test_toonify_blends_the_toon_generator_face(tiny_home, tmp_path):
    src = require_shared("videos") / "talking_wink.mp4"
    toon, sr = tmp_path / "toon.mp4", tmp_path / "sr.mp4"
    common = ["--end", "0.1", "--mask", "landmarks", "-q"]
    assert _invoke(["toonify", str(src), "-o", str(toon), *common], tiny_home).exit_code == 0
    assert _invoke(["restore", str(src), "-o", str(sr), "--scale", "1", *common], tiny_home).exit_code == 0
    fin, ft, fs = _decoded(src, 3), _frames(toon), _frames(sr)
    for a, t, s in zip(fin, ft, fs):
        d = np.abs(t.image.astype(int) - a.image.astype(int)).max(axis=2)
        assert np.median(d[: a.height // 8]) <= 2  # the top strip (no face) is the input within codec noise
        assert d.max() > 30  # the face was replaced
        assert np.abs(t.image.astype(int) - s.image.astype(int)).max() > 30  # another model than restore's


# ------------------------------------------------------------------------------------------------ anonymize

def test_anonymize_changes_identity_and_keeps_a_face(tiny_home, tmp_path):
    src = require_shared("videos") / "talking_wink.mp4"
    out = tmp_path / "anon.mp4"
    r = _invoke(["anonymize", str(src), "-o", str(out), "--end", "0.2", "-q"], tiny_home)
    assert r.exit_code == 0, r.stderr
    rep = tmp_path / "rep"
    r = _invoke(["report", str(src), str(out), "-o", str(rep), "--source-end", "6", "--embedder", "dlib", "-q"],
                tiny_home)
    assert r.exit_code == 0, r.stderr
    doc = json.loads((rep / "report.json").read_text())
    ident = doc["comparisons"][0]["identity"]["dlib"]
    assert ident["excluded_no_face_output"] == 0  # dlib finds a face in every anonymized frame
    assert ident["same_person"]["threshold"] == 0.6
    assert ident["same_person"]["distance"]["min"] > 0.6  # and it is nobody dlib takes for the source
    assert ident["same_person"]["same_person_fraction"] == 0.0


def test_anonymize_image(tiny_home, tmp_path):
    src = tmp_path / "face.png"
    Image.open(require_shared("images") / "celebahq_3.jpg").convert("RGB").resize((320, 320)).save(src)
    out = tmp_path / "anon.jpg"
    r = _invoke(["anonymize", str(src), "-o", str(out)], tiny_home)
    assert r.exit_code == 0, r.stderr
    with Image.open(out) as im:
        assert im.size == (320, 320) and im.format == "JPEG"


# ------------------------------------------------------------------------------------------------ style mixing

def test_track_styles_are_fixed_per_track_and_seed(tiny_home):
    from vidinv.io.video import Frame
    from vidinv.pipeline.faces import FaceCode

    paths = {"psp_ffhq_toonify.pt": tiny_home / "weights" / "psp_ffhq_toonify.pt"}
    G = build_inverter("psp-toon", paths, need_encoder=False).generator
    a, b = track_style(G, 1, seed=5), track_style(G, 1, seed=5)
    assert torch.equal(a, b) and a.shape == (1, 18, 512)
    assert not torch.equal(a, track_style(G, 2, seed=5)) and not torch.equal(a, track_style(G, 1, seed=6))
    assert torch.equal(a[0, 0], a[0, 17])  # one w on every row, as pSp's input_code injection
    w0 = torch.zeros(18, 512)
    items = [Item(Frame(i, np.zeros((4, 4, 3), np.uint8), None, None, None),
                  [FaceCode(t, np.zeros((4, 2)), np.zeros((68, 2)), w=w0 + i) for t in (1, 2)]) for i in range(3)]
    out = list(style_mixing_stage(G, range(8, 18), 0.25, seed=5)(items))
    for i, it in enumerate(out):
        for f in it.faces:
            inj = track_style(G, f.track_id, 5)[0]
            assert torch.allclose(f.w[8:], 0.25 * inj[8:] + 0.75 * (w0[8:] + i), atol=1e-6)
            assert torch.equal(f.w[:8], w0[:8] + i)


def test_degradation_of_a_frame_matches_the_face_rule():
    """The frame degradation is the face rule without its first resize: on a 256 x 256 picture they agree."""
    from vidinv.models.sr_degradation import simulate_low_resolution

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (5, 5), 2)
    for k in (2, 4, 8):
        np.testing.assert_array_equal(simulate_low_resolution_frame(img, k), simulate_low_resolution(img, k))
    with pytest.raises(ValueError):
        simulate_low_resolution_frame(img[:4, :4], 8)


def test_restore_simulated_report_in_one_command(tiny_home, tmp_path):
    src = require_shared("videos") / "greenscreen_frontal.mp4"
    out, rep = tmp_path / "restored.mp4", tmp_path / "rep"
    r = _invoke(["restore", str(src), "-o", str(out), "--simulate-factor", "4", "--scale", "2", "--start", "0.1",
                 "--end", "0.2", "--mask", "landmarks", "--report", str(rep), "-q"], tiny_home)
    assert r.exit_code == 0, r.stderr
    assert "PSNR" in r.stdout and "bicubic" in r.stdout
    doc = json.loads((rep / "report.json").read_text())
    (entry,) = doc["restoration"]
    assert entry["reference"]["path"] == str(src)
    inside = [f.index for f in _decoded(src, 10) if 0.1 - 1e-9 <= f.time < 0.2 - 1e-9]
    assert entry["window"]["start"] == inside[0] and entry["frames"]["analysed"] == len(inside)
    assert entry["scale"]["output"] == [2.0, 2.0]
    n = len(inside)
    assert entry["restored"]["psnr"]["count"] == n and entry["bicubic"]["psnr"]["count"] == n
    # the simulated input the report up-scales for the baseline is the degraded IN, frame for frame
    low = _frames(rep / "simulated_input.mp4")
    fin = _decoded(src, len(low))
    for a, b in zip(fin, low):
        d = np.abs(b.image.astype(int) - simulate_low_resolution_frame(a.image, 4).astype(int))
        assert d.mean() < 1.5
