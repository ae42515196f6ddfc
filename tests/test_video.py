"""Video decoding / encoding (vidinv.io.video) on the shared test videos and synthetic clips."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from conftest import require_shared
from vidinv.io.video import VideoReader, VideoWriter, probe, read_frames, upright

# The table of ../shared/videos/README.md: (width, height, fps, frames, audio codec or None, audio rate)
VIDEOS = {
    "crowd_1080p": (1920, 1080, 25, 105, "aac", 48000),
    "greenscreen_frontal": (512, 512, 25, 78, None, None),
    "interview_720p": (1280, 720, 30, 282, "aac", 44100),
    "selfie_portrait": (720, 1280, 30, 352, None, None),
    "talking_wink": (512, 512, 30, 354, "aac", 44100),
}


@pytest.mark.parametrize("name", sorted(VIDEOS))
def test_probe_and_decode_match_readme(name):
    path = require_shared("videos") / f"{name}.mp4"
    w, h, fps, n, acodec, arate = VIDEOS[name]
    info = probe(path)
    assert (info.width, info.height) == (w, h)
    assert info.display_size == (w, h) and info.rotation == 0
    assert info.fps == Fraction(fps)
    assert info.num_frames == n
    assert info.has_audio == (acodec is not None)
    assert info.audio_codec == acodec and info.audio_rate == arate
    count, last_t = 0, -1.0
    for frame in read_frames(path):
        assert frame.index == count
        assert frame.image.shape == (h, w, 3) and frame.image.dtype == np.uint8
        assert frame.time > last_t  # strictly increasing presentation times
        assert frame.time == pytest.approx(float(frame.pts * frame.time_base))
        last_t = frame.time
        count += 1
    assert count == n
    assert last_t == pytest.approx((n - 1) / fps, abs=1.5 / fps)


def test_reader_start_stop_and_len():
    path = require_shared("videos") / "greenscreen_frontal.mp4"
    r = VideoReader(path, start=10, stop=20)
    assert len(r) == 10
    idx = [f.index for f in r]
    assert idx == list(range(10, 20))
    with VideoReader(path) as r:
        assert len(r) == 78 and r.frame_size == (512, 512)


def _pattern(k: int, h: int, w: int) -> np.ndarray:
    """8x8 blocks of random colours (constant over every 2x2 chroma cell), different per frame."""
    rng = np.random.default_rng(k)
    blocks = rng.integers(16, 236, size=(h // 8, w // 8, 3))
    return np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1).astype(np.uint8)


def test_writer_round_trip(tmp_path):
    h, w, n = 48, 64, 12
    frames = [_pattern(k, h, w) for k in range(n)]
    out = tmp_path / "rt.mp4"
    with VideoWriter(out, w, h, fps=Fraction(30000, 1001), crf=0, preset="ultrafast") as wr:
        for f in frames:
            wr.write(f)
    info = probe(out)
    assert (info.width, info.height, info.num_frames, info.codec, info.pix_fmt) == (w, h, n, "h264", "yuv420p")
    assert info.fps == Fraction(30000, 1001) and not info.has_audio
    # nearest-neighbour chroma upsampling (FFmpeg's default conversion) keeps the inner pixels of each
    # 8x8 block free of the neighbouring blocks' chroma (accurate_color=True interpolates it)
    back = [f.image for f in read_frames(out)]
    assert len(back) == n
    for a, b in zip(frames, back):
        # crf 0 is lossless in YUV 4:2:0; what remains is the RGB <-> limited-range YUV conversion:
        # rounding inside the colour blocks, and the scaler's chroma filter across block edges
        err = np.abs(a.astype(np.int16) - b.astype(np.int16))
        inner = ((np.arange(h) % 8 >= 2) & (np.arange(h) % 8 <= 5))[:, None] & \
                ((np.arange(w) % 8 >= 2) & (np.arange(w) % 8 <= 5))[None, :]
        assert err[inner].max() <= 3
        psnr = 10 * np.log10(255.0 ** 2 / np.mean(err.astype(np.float64) ** 2))
        assert psnr > 28.0, psnr


def test_writer_pads_odd_sizes_and_rejects_bad_frames(tmp_path):
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 33, 21, fps=25) as wr:
        assert wr.size == (34, 22)
        with pytest.raises(ValueError):
            wr.write(np.zeros((22, 34, 3), np.uint8))
        with pytest.raises(ValueError):
            wr.write(np.zeros((21, 33, 3), np.float32))
        wr.write(np.full((21, 33, 3), 200, np.uint8))
    info = probe(out)
    assert (info.width, info.height, info.num_frames) == (34, 22, 1)


def test_rotation_is_applied(tmp_path):
    # a display matrix of -90 degrees (a "rotate=90" phone video) is shown turned 90 degrees clockwise
    img = np.zeros((32, 64, 3), np.uint8)
    img[:8, :8] = 255  # white block at the top-left
    out = tmp_path / "rot.mp4"
    with VideoWriter(out, 64, 32, fps=25, rotation=-90, crf=0) as wr:
        wr.write(img)
    info = probe(out)
    assert info.rotation == 270 and info.display_size == (32, 64)
    frame = next(iter(VideoReader(out)))
    assert frame.image.shape == (64, 32, 3)
    ys, xs = np.nonzero(frame.image[..., 0] > 128)
    assert ys.mean() < 8 and xs.mean() > 24  # top-left went to the top-right
    raw = next(iter(VideoReader(out, apply_rotation=False)))
    assert raw.image.shape == (32, 64, 3)
    np.testing.assert_array_equal(upright(raw.image, 270), frame.image)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        probe("/nonexistent/video.mp4")


def test_accurate_color_decode_is_unbiased(tmp_path):
    """Accurate YUV->RGB conversion removes the ~1.2-level darkening of FFmpeg's fast default: a uniform
    frame written by VideoWriter decodes to its own colour (within 1 level), the fast path does not."""
    colours = [(200, 30, 30), (30, 200, 30), (100, 100, 100), (20, 40, 230), (128, 96, 64)]
    out = tmp_path / "flat.mp4"
    with VideoWriter(out, 32, 32, fps=25, crf=0, preset="ultrafast") as wr:
        for c in colours:
            wr.write(np.zeros((32, 32, 3), np.uint8) + np.array(c, np.uint8))
    accurate = [f.image[16, 16].astype(int) for f in read_frames(out, accurate_color=True)]
    fast = [f.image[16, 16].astype(int) for f in read_frames(out)]
    err_acc = np.abs(np.array(accurate) - np.array(colours))
    err_fast = np.array(fast) - np.array(colours)
    assert err_acc.max() <= 1, err_acc
    assert err_fast.mean() < -0.5  # the fast path's darkening this option exists to avoid
