"""Tests of vidinv.io.mux: edited-video writer (timestamps, audio copy, rotation, atomic output) and passthrough."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import REPO, require_shared
from vidinv.io.mux import EditedVideoWriter, MissingFrameError, frame_range, passthrough, video_frame_times
from vidinv.io.video import VideoReader, VideoWriter, probe

FAST = dict(preset="veryfast")


def _video(name: str) -> Path:
    return require_shared("videos") / name


def _packets(path) -> dict[str, list[tuple[Fraction, bytes]]]:
    """{stream type: [(pts in seconds, packet bytes), ...]} in file order (demuxer flush packets skipped)."""
    out: dict[str, list] = {}
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.size == 0:
                continue
            out.setdefault(p.stream.type, []).append((p.pts * p.time_base, bytes(p)))
    return out


def _video_times(path) -> list[Fraction]:
    pts, tb = video_frame_times(path)
    return [p * tb for p in pts]


def _decoded_times(path) -> list[Fraction]:
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(video=0)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def _copy_through(src, dst, **kw) -> EditedVideoWriter:
    with EditedVideoWriter(src, dst, **kw) as w:
        for f in VideoReader(src, start=w.frames.start, stop=w.frames.stop):
            w.write(f, f.image)
    return w


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_round_trip_talking_wink(tmp_path):
    src = _video("talking_wink.mp4")
    dst = tmp_path / "out.mp4"
    w = _copy_through(src, dst, crf=18, **FAST)
    assert dst.exists() and _no_leftovers(tmp_path) == []
    assert w.frames_written == 354 == len(w.frames)
    # timestamps of every frame (decoded, in seconds) equal the input's
    t_in, t_out = _decoded_times(src), _decoded_times(dst)
    assert len(t_out) == len(t_in) == 354
    assert t_out == t_in
    # audio: the same packets, byte for byte, at the same times (priming packets included)
    a_in, a_out = _packets(src)["audio"], _packets(dst)["audio"]
    assert len(a_in) == 509 and a_out == a_in
    # container/stream metadata and colour tags kept
    with av.open(str(src)) as ci, av.open(str(dst)) as co:
        for si, so in zip(ci.streams, co.streams):
            assert so.type == si.type
            assert so.metadata.get("language") == si.metadata.get("language")
            assert so.metadata.get("handler_name") == si.metadata.get("handler_name")
        vi, vo = ci.streams.video[0].codec_context, co.streams.video[0].codec_context
        assert (vo.pix_fmt, vo.width, vo.height) == (vi.pix_fmt, vi.width, vi.height)
    # pixels close to the input's (crf 18)
    psnrs = [_psnr(a.image, b.image) for a, b in zip(VideoReader(src), VideoReader(dst))]
    assert len(psnrs) == 354 and min(psnrs) > 35, (min(psnrs), float(np.mean(psnrs)))


def test_colour_tags_kept(tmp_path):
    src = _video("interview_720p.mp4")  # bt709, limited range
    dst = tmp_path / "out.mp4"
    _copy_through(src, dst, end=0.3, **FAST)
    with av.open(str(src)) as ci, av.open(str(dst)) as co:
        a, b = ci.streams.video[0].codec_context, co.streams.video[0].codec_context
        assert (b.color_range, b.colorspace, b.color_primaries, b.color_trc) == \
               (a.color_range, a.colorspace, a.color_primaries, a.color_trc) == (1, 1, 1, 1)
        assert co.metadata.get("creation_time") == ci.metadata.get("creation_time")
    fa = [f.image for f in VideoReader(src, stop=9)]
    fb = [f.image for f in VideoReader(dst)]
    assert len(fb) == 9
    assert min(_psnr(x, y) for x, y in zip(fa, fb)) > 35


def _make_vfr(path: Path, pts: list[int], tb=Fraction(1, 1000), size=(64, 48)) -> None:
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height = size
        s.pix_fmt = "yuv420p"
        s.time_base = tb
        s.codec_context.time_base = tb
        s.options = {"crf": "10", "preset": "veryfast"}
        base = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        for i, p in enumerate(pts):
            img = np.roll(base, 3 * i, axis=1)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = p, tb
            for pk in s.encode(f):
                c.mux(pk)
        for pk in s.encode():
            c.mux(pk)


def test_variable_frame_rate_survives(tmp_path):
    pts = [0, 33, 50, 120, 130, 300, 310, 311, 400, 650, 660, 700]  # ms, irregular
    src = tmp_path / "vfr.mp4"
    _make_vfr(src, pts)
    assert _decoded_times(src) == [Fraction(p, 1000) for p in pts]
    dst = tmp_path / "out.mp4"
    _copy_through(src, dst, **FAST)
    assert _decoded_times(dst) == [Fraction(p, 1000) for p in pts]
    # cutting keeps the irregular spacing, shifted to start at 0
    dst2 = tmp_path / "cut.mp4"
    w = _copy_through(src, dst2, start=0.1, end=0.5, **FAST)
    assert list(w.frames) == [3, 4, 5, 6, 7, 8]
    assert _decoded_times(dst2) == [Fraction(p - 120, 1000) for p in pts[3:9]]


def test_rotated_input_keeps_orientation(tmp_path):
    # a phone-style video: coded 64x32 landscape with a display matrix of -90 degrees (shown portrait)
    src = tmp_path / "rot.mp4"
    rng = np.random.default_rng(1)
    # grey 4x4 blocks (saturated colours would lose more to the 4:2:0 RGB<->YUV round trips than to the codec)
    coded = [np.kron(np.repeat(rng.integers(48, 208, (8, 16, 1)), 3, 2), np.ones((4, 4, 1))).astype(np.uint8)
             for _ in range(5)]
    with VideoWriter(src, 64, 32, fps=25, rotation=-90, crf=0) as wr:
        for img in coded:
            wr.write(img)
    assert probe(src).rotation == 270
    dst = tmp_path / "out.mp4"
    seen = []
    with EditedVideoWriter(src, dst, crf=0, **FAST) as w:
        for f in VideoReader(src):  # upright frames (32 wide, 64 high)
            assert f.image.shape == (64, 32, 3)
            seen.append(f.image)
            w.write(f, f.image)
    info = probe(dst)
    assert info.rotation == 270 and (info.width, info.height) == (64, 32)
    up = [f.image for f in VideoReader(dst)]
    raw = [f.image for f in VideoReader(dst, apply_rotation=False)]
    assert all(x.shape == (64, 32, 3) for x in up) and all(x.shape == (32, 64, 3) for x in raw)
    assert min(_psnr(a, b) for a, b in zip(seen, up)) > 40
    assert min(_psnr(a, b) for a, b in zip(coded, raw)) > 40
    assert max(_psnr(np.rot90(a, 2), b) for a, b in zip(seen, up)) < 20  # upside down would be caught
    # an image in the wrong orientation is refused
    with pytest.raises(ValueError, match="upright"):
        with EditedVideoWriter(src, tmp_path / "bad.mp4", **FAST) as w:
            f = next(iter(VideoReader(src, apply_rotation=False)))
            w.write(f, f.image)
    assert not (tmp_path / "bad.mp4").exists()


def test_start_end_restrict_frames_and_audio(tmp_path):
    src = _video("talking_wink.mp4")
    assert frame_range(src, 1.0, 2.0) == range(30, 60)
    dst = tmp_path / "cut.mp4"
    w = _copy_through(src, dst, start=1.0, end=2.0, **FAST)
    assert w.frames == range(30, 60)
    t_in = _video_times(src)[30:60]
    assert _decoded_times(dst) == [t - t_in[0] for t in t_in]
    a_in, a_out = _packets(src)["audio"], _packets(dst)["audio"]
    # the audio packets overlapping [1 s, 2 s): the same bytes, shifted by 1 s
    dur = Fraction(1024, 44100)
    kept = [(t - 1, b) for t, b in a_in if t + dur > 1 and t < 2]
    assert a_out == kept
    assert 43 <= len(kept) <= 45 and kept[0][0] <= 0 < kept[0][0] + dur


def test_passthrough_is_identical(tmp_path):
    src = _video("talking_wink.mp4")
    dst = passthrough(src, tmp_path / "same.mp4")
    assert _packets(dst) == _packets(src)
    assert _no_leftovers(tmp_path) == []
    # another container: remuxed, packets identical. Matroska cannot store the negative time of the AAC
    # priming packet, so its muxer shifts every stream by the same amount (as `ffmpeg -c copy` does):
    # the times agree up to that one shift, to the mkv's millisecond precision (A/V sync is kept).
    mkv = passthrough(src, tmp_path / "same.mkv")
    a, b = _packets(src), _packets(mkv)
    shift = b["audio"][0][0] - a["audio"][0][0]
    assert abs(float(shift) - 1024 / 44100) <= 0.001
    for kind in ("video", "audio"):
        assert [x[1] for x in a[kind]] == [x[1] for x in b[kind]]
        assert max(abs(float(y[0] - x[0] - shift)) for x, y in zip(a[kind], b[kind])) <= 0.001
    assert _no_leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interruption_leaves_nothing(tmp_path, exc):
    src = _video("talking_wink.mp4")
    dst = tmp_path / "out.mp4"
    with pytest.raises(exc):
        with EditedVideoWriter(src, dst, **FAST) as w:
            for f in VideoReader(src, stop=20):
                w.write(f, f.image)
                if f.index == 15:
                    assert w.temp_path.exists() and w.temp_path.parent == tmp_path
                    raise exc("stop")
    assert not dst.exists()
    assert _no_leftovers(tmp_path) == []
    # an existing destination is left untouched
    dst.write_bytes(b"previous result")
    with pytest.raises(exc):
        with EditedVideoWriter(src, dst, **FAST) as w:
            for f in VideoReader(src, stop=5):
                w.write(f, f.image)
            raise exc("stop")
    assert dst.read_bytes() == b"previous result"
    assert _no_leftovers(tmp_path) == []


def test_missing_frames_raise(tmp_path):
    src = _video("talking_wink.mp4")
    dst = tmp_path / "out.mp4"
    frames = list(VideoReader(src, stop=3))
    with pytest.raises(MissingFrameError, match="frame 2 written where frame 1"):
        with EditedVideoWriter(src, dst, end=0.2, **FAST) as w:
            w.write(frames[0], frames[0].image)
            w.write(frames[2], frames[2].image)
    assert not dst.exists() and _no_leftovers(tmp_path) == []
    # too few frames: close() raises and no output appears
    with pytest.raises(MissingFrameError, match="missing"):
        with EditedVideoWriter(src, dst, end=0.2, **FAST) as w:
            for f in frames:
                w.write(f, f.image)
    assert not dst.exists() and _no_leftovers(tmp_path) == []


_KILL_SCRIPT = """
import sys, time
from vidinv.io.mux import EditedVideoWriter
from vidinv.io.video import VideoReader
src, dst = sys.argv[1], sys.argv[2]
with EditedVideoWriter(src, dst, preset="veryfast") as w:
    for f in VideoReader(src):
        w.write(f, f.image)
        if f.index == 60:
            print("writing", flush=True)
            time.sleep(60)
"""


def test_sigkill_leaves_no_destination(tmp_path):
    src = _video("talking_wink.mp4")
    dst = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(src), str(dst)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "writing", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    time.sleep(0.1)
    assert not dst.exists()
    parts = _no_leftovers(tmp_path)
    assert len(parts) == 1 and parts[0].startswith(".out.") and parts[0].endswith(".part.mp4")


def test_refuses_to_overwrite_its_input(tmp_path):
    src = tmp_path / "v.mp4"
    _make_vfr(src, [0, 40, 80])
    with pytest.raises(ValueError, match="is the input"):
        EditedVideoWriter(src, src)
    with pytest.raises(ValueError, match="is the input"):
        passthrough(src, src)
