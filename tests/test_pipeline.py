"""End-to-end tests of the edit / invert pipeline on the shared real videos with the tiny model bundle
(tests/tiny_bundle.py) written in the official file formats into a temporary VIDINV_HOME, so the real
weight resolution and loaders run. Short windows (--start/--end) keep the runtime low."""
from __future__ import annotations

import collections
import json
import os
import signal
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

from conftest import cached_detection, require_shared
from tiny_bundle import write_tiny_bundle
from vidinv.face import blend
from vidinv.io.inversion import InversionReader
from vidinv.io.mux import frame_range, video_frame_times
from vidinv.pipeline import EditOptions, InvertOptions, StagePipeline, run_edit, run_invert
from vidinv.pipeline.faces import FaceCode, Item, latent_smoothing_stage
from vidinv.face.smoothing import gaussian_smooth
from vidinv.io.video import Frame, VideoReader

WINDOW = (0.0, 0.5)  # seconds of interview_720p.mp4 (15 frames at 30 fps; face off-centre, AAC audio)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    h = tmp_path_factory.mktemp("vidinv_home")
    write_tiny_bundle(h)
    old = os.environ.get("VIDINV_HOME")
    os.environ["VIDINV_HOME"] = str(h)
    yield h
    if old is None:
        os.environ.pop("VIDINV_HOME", None)
    else:
        os.environ["VIDINV_HOME"] = old


def _edit(src, dst, strength, supports=None, **kw):
    """Run ``vidinv edit`` (smile at ``strength``) in this process; returns the result and each frame's quads.
    With a dict ``supports``, also record per frame the blend support: the pixels where the weights
    :func:`blend.composite` used (``blend.frame_alpha``) are > 0 (the only pixels it may change)."""
    quads = {}
    pasted = collections.deque()  # composite stage thread -> main thread, in frame order

    def spy(frame, crop, quad, mask, **k):
        pasted.append(blend.frame_alpha(mask, quad, frame.shape[:2]) > 0)
        return real(frame, crop, quad, mask, **k)

    def on_frame(it):
        quads[it.frame.index] = [f.quad.copy() for f in it.faces]
        if supports is not None:
            m = np.zeros(it.frame.image.shape[:2], bool)
            for _ in it.faces:
                m |= pasted.popleft()
            supports[it.frame.index] = m
    # gate off: the tiny bundle's generator draws no face, so the confidence gate would keep every input face
    kw.setdefault("gate", "off")
    opts = EditOptions(src, dst, attrs=["smile"], strengths=[strength], start=kw.pop("start", WINDOW[0]),
                       end=kw.pop("end", WINDOW[1]), device="cpu", **kw)
    real = blend.composite
    with pytest.MonkeyPatch.context() as mp:
        if supports is not None:
            mp.setattr(blend, "composite", spy)
        res = run_edit(opts, on_frame=on_frame, quiet=True)
    return res, quads


def _frames(path, start=None, stop=None):
    return [f.image for f in VideoReader(path, start=start or 0, stop=stop)]


def _audio_packets(path):
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def _outside(quads, hw, margin=24):
    """Boolean (H, W): pixels farther than ``margin`` px from every quad (alpha there is exactly 0)."""
    m = np.zeros(hw, np.uint8)
    for q in quads:
        cv2.fillConvexPoly(m, np.rint(q + 0.5).astype(np.int32), 1)
    if margin:
        m = cv2.dilate(m, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    return m == 0


# ---------------------------------------------------------------- "only the face changed", at codec-noise precision
#: The blend support is dilated by one x264 macroblock (16 px) before comparing: a changed pixel can alter the
#: coding of its whole 16x16 macroblock (and the deblocking filter reaches 3 px into the next one).
MACROBLOCK_PX = 16
#: Margins over the codec noise of the strength-0 control run, per frame: mean |out - in| +0.1 level, its
#: 99.9th percentile +1 level, per-channel signed mean +-0.1 level. Measured on interview_720p (15 frames):
#: control and edit differ by <= 0.005 (mean), 0 (99.9th percentile) and <= 0.01 (signed mean).
MARGIN_MEAN, MARGIN_P999, MARGIN_BIAS = 0.1, 1.0, 0.1
#: Codec noise is unbiased: the control's signed mean difference per channel over the clip stays within
#: +-0.25 level (measured: +0.013 at most); the old fast YUV->RGB decode darkened every pixel by ~1.2.
CONTROL_BIAS = 0.25


def _outside_stats(out_frames, in_frames, supports):
    """Per frame, over the pixels outside the blend support dilated by :data:`MACROBLOCK_PX`: mean and
    99.9th percentile of |out - in| (levels, all channels) and the signed mean per channel; plus the
    pixel count."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * MACROBLOCK_PX + 1, 2 * MACROBLOCK_PX + 1))
    stats = []
    for o, i, sup in zip(out_frames, in_frames, supports):
        outside = cv2.dilate(sup.astype(np.uint8), disc) == 0
        d = np.asarray(o)[outside].astype(np.float32) - i[outside].astype(np.float32)  # (n, 3)
        a = np.abs(d)
        stats.append({"mean": float(a.mean(dtype=np.float64)), "p999": float(np.percentile(a, 99.9)),
                      "bias": d.mean(axis=0, dtype=np.float64), "n": int(outside.sum())})
    return stats


def _assert_only_face_changed(edit, control):
    """The edit's frames outside the dilated blend support equal the decoded input within the codec noise
    the control run (strength 0: same faces replaced, same encoder) shows there, plus the stated margins;
    and the control's own difference is unbiased (a colour drift of the pass-through pixels fails here)."""
    n = sum(c["n"] for c in control)
    bias = sum(c["bias"] * c["n"] for c in control) / n
    assert np.all(np.abs(bias) <= CONTROL_BIAS), f"untouched pixels drift by {bias} levels (codec noise is unbiased)"
    for k, (e, c) in enumerate(zip(edit, control)):
        assert e["n"] == c["n"] and e["n"] > 0, k
        assert e["mean"] <= c["mean"] + MARGIN_MEAN, (k, e["mean"], c["mean"])
        assert e["p999"] <= c["p999"] + MARGIN_P999, (k, e["p999"], c["p999"])
        assert np.all(np.abs(e["bias"] - c["bias"]) <= MARGIN_BIAS), (k, e["bias"], c["bias"])


@pytest.fixture(scope="module")
def interview(home, tmp_path_factory):
    """Edit at strength 2 and the strength-0 control on WINDOW of interview_720p, with each frame's blend
    support (detection run once for both)."""
    src = require_shared("videos") / "interview_720p.mp4"
    out = tmp_path_factory.mktemp("edit")
    sup2, sup0 = {}, {}
    with cached_detection():
        r2, quads = _edit(src, out / "s2.mp4", 2.0, supports=sup2)
        r0, _ = _edit(src, out / "s0.mp4", 0.0, supports=sup0)
    supports = {i: sup2[i] | sup0[i] for i in sup2}
    return src, out, r2, r0, quads, supports


@pytest.fixture(scope="module")
def interview_frames(interview):
    """Decoded frames (input over WINDOW, edit, control), the blend supports, and the outside statistics of
    the edit and of the control."""
    src, out = interview[:2]
    rng = frame_range(src, *WINDOW)
    inp, f2, f0 = _frames(src, rng.start, rng.stop), _frames(out / "s2.mp4"), _frames(out / "s0.mp4")
    sup = [interview[5][i] for i in rng]
    return inp, f2, f0, sup, _outside_stats(f2, inp, sup), _outside_stats(f0, inp, sup)


def test_output_frames_timestamps_audio(interview):
    src, out, r2 = interview[:3]
    rng = frame_range(src, *WINDOW)
    assert r2.frames == len(rng) and r2.frames_edited > 0 and r2.layers_per_face == 22
    pts_in, tb_in = video_frame_times(src)
    pts_out, tb_out = video_frame_times(out / "s2.mp4")
    t_in = [p * tb_in for p in pts_in[rng.start:rng.stop]]
    t_out = [p * tb_out for p in pts_out]
    assert len(t_out) == len(t_in)
    assert [t - t_in[0] for t in t_in] == t_out  # shifted to start at 0, exact
    frames = _frames(out / "s2.mp4")
    assert len(frames) == len(rng) and frames[0].shape == _frames(src, 0, 1)[0].shape
    a_in, a_out = _audio_packets(src), _audio_packets(out / "s2.mp4")
    assert a_out, "the output lost its audio"
    i = a_in.index(a_out[0])
    assert a_in[i:i + len(a_out)] == a_out  # byte-identical packets (cut on packet boundaries)


def test_only_the_face_changed_and_strengths_differ_inside(interview, interview_frames):
    inp, f2, f0, sup, edit_stats, control_stats = interview_frames
    assert len(inp) == len(f2) == len(f0) == len(frame_range(interview[0], *WINDOW))
    assert all(s.any() for s in sup) and max(s.mean() for s in sup) < 0.2  # a face in every frame, not the frame
    _assert_only_face_changed(edit_stats, control_stats)
    inside_diff = [np.abs(a.astype(int) - b.astype(int))[m].mean() for a, b, m in zip(f2, f0, sup)]
    assert np.mean(inside_diff) > 2.0  # the edit changes the face


def test_only_face_check_catches_a_colour_drift(interview_frames):
    """The check above fails on the ~1.2-level darkening of untouched pixels that the fast YUV->RGB decode
    caused: injected into the edit run only (relative check) or into both runs (the control's bias check).
    First 5 frames, to keep it short."""
    inp, f2, f0, sup, edit_stats, control_stats = (x[:5] for x in interview_frames)
    drifted_edit = _outside_stats([f.astype(np.float32) - 1.2 for f in f2], inp, sup)
    with pytest.raises(AssertionError):
        _assert_only_face_changed(drifted_edit, control_stats)
    drifted_control = _outside_stats([f.astype(np.float32) - 1.2 for f in f0], inp, sup)
    with pytest.raises(AssertionError, match="drift"):
        _assert_only_face_changed(drifted_edit, drifted_control)
    _assert_only_face_changed(edit_stats, control_stats)  # and passes without it


INVERT_ARGS = dict(start=WINDOW[0], end=WINDOW[1], device="cpu", save_crops=True, save_recon=True)


@pytest.fixture(scope="module")
def inverted(interview, tmp_path_factory):
    """``vidinv invert`` of WINDOW in one uninterrupted run (crops and reconstructions saved)."""
    src = interview[0]
    inv = tmp_path_factory.mktemp("inv") / "inv.vinv"
    with cached_detection():
        ri = run_invert(InvertOptions(src, inv, **INVERT_ARGS), quiet=True)
    return inv, ri


def test_from_inversion_gives_the_same_frames(interview, inverted, tmp_path):
    src, out, r2 = interview[:3]
    inv, ri = inverted
    assert ri.records == r2.faces_edited and ri.frames == r2.frames and ri.resumed_from is None
    assert len(list((inv / "images" / "recon").iterdir())) == ri.records
    res, _ = _edit(None, tmp_path / "re.mp4", 2.0, from_inversion=inv)
    assert res.frames == r2.frames and res.faces_edited == r2.faces_edited
    a, b = _frames(out / "s2.mp4"), _frames(tmp_path / "re.mp4")
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)


def _export_contents(path):
    """Every record field (byte strings of the concatenated arrays) and every PNG of an export."""
    rd = InversionReader(path)
    fields = {}
    for b in rd.iter_batches():
        for k, a in b.arrays.items():
            fields.setdefault(k, []).append(a)
    arrays = {k: np.concatenate(v) for k, v in fields.items()}
    pngs = {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted((path / "images").rglob("*.png"))}
    return arrays, pngs


def test_invert_interrupted_then_resumed_equals_one_run(interview, inverted, tmp_path, detection_cache):
    """``vidinv invert`` stopped after 9 frames (KeyboardInterrupt from the progress callback, raised in the main
    thread as Ctrl-C / SIGTERM are: the stages are cancelled and the writer aborts), then continued with
    ``vidinv invert --resume`` (the CLI command, run in this process), gives the export of one uninterrupted
    run: every record array byte-equal, the same PNGs."""
    src = interview[0]
    ref, ref_res = inverted
    part = tmp_path / "part.vinv"
    opts = InvertOptions(src, part, chunk_size=4, **INVERT_ARGS)  # chunk size is not part of the records

    def stop_after_9(done, total):
        if done == 9:
            raise KeyboardInterrupt("test: interrupted after 9 frames")

    with pytest.raises(KeyboardInterrupt):
        run_invert(opts, progress=stop_after_9, quiet=True)
    rd = InversionReader(part, allow_incomplete=True)
    man = rd.manifest
    assert not rd.complete and man.get("error") and 4 <= len(rd) < ref_res.records, (len(rd), man.get("error"))
    next_frame = man["chunks"][-1]["frames"][1] + 1
    # other settings than the export's: refused before any change
    before = (part / "manifest.json").read_bytes()
    with pytest.raises(ValueError, match="extra.batch_size: 4 in the export, 2 now"):
        run_invert(InvertOptions(src, part, resume=True, batch_size=2, **INVERT_ARGS), quiet=True)
    assert (part / "manifest.json").read_bytes() == before

    # the CLI, in this process (click's runner; the detection cache applies)
    from click.testing import CliRunner

    from vidinv.cli.main import cli

    old = signal.getsignal(signal.SIGTERM)
    try:
        r = CliRunner().invoke(cli, ["invert", str(src), "-o", str(part), "--start", str(WINDOW[0]), "--end",
                                     str(WINDOW[1]), "--device", "cpu", "--save-crops", "--save-reconstructions",
                                     "--resume"])
    finally:
        signal.signal(signal.SIGTERM, old)  # the command installs a SIGTERM handler
    assert r.exit_code == 0, (r.stderr, r.exc_info)
    assert f"{ref_res.records} record(s) (resumed at frame {next_frame}: " in r.stderr, r.stderr
    got, want = _export_contents(part), _export_contents(ref)
    assert InversionReader(part).complete and "error" not in json.loads((part / "manifest.json").read_text())
    assert sorted(got[0]) == sorted(want[0])
    for k in want[0]:
        assert got[0][k].dtype == want[0][k].dtype and got[0][k].tobytes() == want[0][k].tobytes(), k
    assert got[1] == want[1]


@pytest.mark.parametrize("bad", [float("nan"), -float("inf")])
def test_non_finite_generated_face_stops_the_edit(home, tmp_path, detection_cache, monkeypatch, bad):
    """A generator that returns NaN for a face (overflow) stops ``vidinv edit`` with an error naming the frame and
    track; no output (not a video of black patches)."""
    from vidinv.face.blend import NonFiniteFaceError
    from vidinv.models import stylegan2

    real = stylegan2.edit_image

    def overflowing(G, w, F, w_edit, *a, **k):
        img = real(G, w, F, w_edit, *a, **k)
        img[-1, :, 5:9, 5:9] = bad  # the last face of the batch (-inf used to clamp to a black patch)
        return img

    monkeypatch.setattr(stylegan2, "edit_image", overflowing)
    src = require_shared("videos") / "interview_720p.mp4"
    out = tmp_path / "nan.mp4"
    with pytest.raises(NonFiniteFaceError, match=r"frame 0 \(0\.000 s\), track 0: the generated face holds NaN"):
        _edit(src, out, 1.0, start=0.0, end=0.1, batch_size=1)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_edit_with_psp_encoder(home, tmp_path, detection_cache):
    """``--encoder psp`` end to end: the tiny bundle's pSp GradualStyleEncoder (``encoder.*`` of
    psp_ffhq_encode.pt, read by load_psp_encoder) inverts each face, then the edit and blend run as for ``fs``."""
    src = require_shared("videos") / "interview_720p.mp4"
    window = (0.0, 0.3)
    sup2, sup0 = {}, {}
    r2, quads = _edit(src, tmp_path / "p2.mp4", 2.0, sup2, start=window[0], end=window[1], encoder="psp")
    r0, _ = _edit(src, tmp_path / "p0.mp4", 0.0, sup0, start=window[0], end=window[1], encoder="psp")
    rng = frame_range(src, *window)
    assert r2.frames == len(rng) and r0.frames == len(rng) and r2.faces_edited > 0
    inp = _frames(src, rng.start, rng.stop)
    f2, f0 = _frames(tmp_path / "p2.mp4"), _frames(tmp_path / "p0.mp4")
    assert len(f2) == len(f0) == len(rng)
    sup = [sup2[i] | sup0[i] for i in rng]
    _assert_only_face_changed(_outside_stats(f2, inp, sup), _outside_stats(f0, inp, sup))
    inside_diff = [np.abs(f2[k].astype(int) - f0[k].astype(int))[sup[k]].mean()
                   for k in range(len(rng)) if sup[k].any()]
    assert inside_diff and np.mean(inside_diff) > 2.0  # strength 2 vs 0 changes the face


@pytest.mark.parametrize("name", ["greenscreen_frontal", "selfie_portrait", "talking_wink"])
def test_edit_every_other_shared_video(home, tmp_path, detection_cache, name):
    """The same end-to-end checks on the other single-face clips (0.4 s each; interview_720p and crowd_1080p
    above): output decodes, frame count and timestamps equal the input's, audio packets identical where the
    clip has audio, faces edited, pixels away from the face equal to the input within codec noise."""
    src = require_shared("videos") / f"{name}.mp4"
    window = (0.0, 0.4)
    res, quads = _edit(src, tmp_path / "e.mp4", 2.0, start=window[0], end=window[1])
    rng = frame_range(src, *window)
    assert res.frames == len(rng) and res.frames_edited == len(rng)
    pts_in, tb_in = video_frame_times(src)
    pts_out, tb_out = video_frame_times(tmp_path / "e.mp4")
    t_in = [p * tb_in for p in pts_in[rng.start:rng.stop]]
    assert [p * tb_out for p in pts_out] == [t - t_in[0] for t in t_in]
    a_in, a_out = _audio_packets(src), _audio_packets(tmp_path / "e.mp4")
    assert bool(a_in) == bool(a_out)
    if a_out:
        i = a_in.index(a_out[0])
        assert a_in[i:i + len(a_out)] == a_out
    inp, outp = _frames(src, rng.start, rng.stop), _frames(tmp_path / "e.mp4")
    assert len(outp) == len(inp)
    checked = 0
    for k, idx in enumerate(rng):
        outside = _outside(quads[idx], inp[k].shape[:2])
        if outside.sum() < 1000:  # the face square covers (almost) the whole frame
            continue
        d = np.abs(outp[k].astype(int) - inp[k].astype(int))[outside]
        assert d.mean() < 1.5 and np.percentile(d, 99) <= 8, (idx, d.mean())
        checked += 1
    assert checked or name == "talking_wink", "no frame had pixels away from the face to compare"


def test_face_all_on_crowd_edits_several_tracks(home, tmp_path):
    src = require_shared("videos") / "crowd_1080p.mp4"
    res, quads = _edit(src, tmp_path / "crowd.mp4", 1.0, face="all", start=0.0, end=0.32)
    assert len(res.tracks) > 1, res.tracks
    assert max(len(q) for q in quads.values()) > 1


def _black_video_with_audio(path, n=20, fps=10):
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width = v.height = 96
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=44100)
        for i in range(n):
            for p in v.encode(av.VideoFrame.from_ndarray(np.zeros((96, 96, 3), np.uint8), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        samples = int(44100 * n / fps)
        t = np.arange(samples) / 44100
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for k in range(0, samples, 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(tone[:, k:k + 1024]), format="fltp", layout="mono")
            af.sample_rate = 44100
            for p in a.encode(af):
                c.mux(p)
        for p in a.encode():
            c.mux(p)


def test_no_face_clip_is_passed_through(home, tmp_path):
    src = tmp_path / "black.mp4"
    _black_video_with_audio(src)
    res = run_edit(EditOptions(src, tmp_path / "out.mp4", attrs=["smile"], device="cpu"), quiet=True)
    assert res.passthrough and res.frames_edited == 0
    assert (tmp_path / "out.mp4").read_bytes() == src.read_bytes()
    assert not [p for p in tmp_path.iterdir() if ".part" in p.name]


def test_latent_smoothing_stage_equals_offline_smoothing():
    rng = np.random.default_rng(0)
    n, sigma = 12, 1.5
    # track 0 on every frame, track 1 on frames 3..7 (ends in the middle)
    ws = {0: rng.normal(size=(n, 18, 512)).astype(np.float32), 1: rng.normal(size=(5, 18, 512)).astype(np.float32)}
    Fs = {0: rng.normal(size=(n, 4, 16, 16)).astype(np.float16).astype(np.float32),
          1: rng.normal(size=(5, 4, 16, 16)).astype(np.float16).astype(np.float32)}
    items = []
    for i in range(n):
        faces = [FaceCode(0, np.zeros((4, 2)), np.zeros((68, 2)), torch.from_numpy(ws[0][i]), torch.from_numpy(Fs[0][i]))]
        if 3 <= i < 8:
            faces.append(FaceCode(1, np.zeros((4, 2)), np.zeros((68, 2)), torch.from_numpy(ws[1][i - 3]),
                                  torch.from_numpy(Fs[1][i - 3])))
        items.append(Item(Frame(i, np.zeros((2, 2, 3), np.uint8), i, Fraction(1, 30), i / 30), faces))
    out = list(StagePipeline(items, [("smooth", latent_smoothing_stage(sigma))], maxsize=2))
    assert [it.frame.index for it in out] == list(range(n))
    exp_w0 = gaussian_smooth(ws[0].astype(np.float64), sigma).astype(np.float32)
    exp_w1 = gaussian_smooth(ws[1].astype(np.float64), sigma).astype(np.float32)
    exp_f1 = gaussian_smooth(Fs[1].astype(np.float64), sigma).astype(np.float16).astype(np.float32)
    for i, it in enumerate(out):
        assert np.array_equal(it.faces[0].w.numpy(), exp_w0[i])
        if 3 <= i < 8:
            assert np.array_equal(it.faces[1].w.numpy(), exp_w1[i - 3])
            assert np.array_equal(it.faces[1].F.numpy(), exp_f1[i - 3])


def test_stage_error_stops_every_stage_and_is_reraised():
    seen = []

    def boom(items):
        for x in items:
            if x == 5:
                raise RuntimeError("stage failed at 5")
            yield x

    def tail(items):
        try:
            for x in items:
                seen.append(x)
                yield x
        finally:
            seen.append("cleanup")

    pipe = StagePipeline(iter(range(10 ** 9)), [("boom", boom), ("tail", tail)], maxsize=2)
    with pytest.raises(RuntimeError, match="stage failed at 5"):
        for _ in pipe:
            pass
    assert seen[-1] == "cleanup" and 5 not in seen
    assert all(not t.is_alive() for t in pipe._threads)
