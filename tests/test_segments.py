"""A video edited as segments (``vidinv edit --segments N``, :mod:`vidinv.pipeline.segments`) equals the single
run: the plan (owned ranges cover the window without gap or overlap, contexts reach the temporal stages'
support, clamped at the ends), the front-end (tracker + landmark smoother) over a segment's context gives the
single run's faces bit for bit on the owned frames, also for a track with a detection gap across the cut,
and an end-to-end segmented run of a shared clip with audio is the single run's output file byte for byte
(frames, timestamps, audio packets, pixels: max abs diff 0). Options that cannot be split are refused with
one line."""
from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import invoke_cli, require_shared
from tiny_bundle import write_tiny_bundle

from vidinv.face.detect import Face, LandmarkDetector
from vidinv.face.frontend import FaceFrontEnd
from vidinv.face.gate import GateSettings
from vidinv.face.smoothing import StreamingGaussian
from vidinv.face.tracking import Tracker
from vidinv.io.mux import video_frame_times
from vidinv.io.video import Frame, VideoReader
from vidinv.pipeline.edit import EditOptions, check_options
from vidinv.pipeline.segments import (
    DETECT_BATCH,
    SEAM_CHECK,
    SegmentError,
    plan_segments,
    required_overlap,
)


def _clip() -> Path:
    return require_shared("videos") / "talking_wink.mp4"


class _ScriptedDetector(LandmarkDetector):
    """Detections read from a script by the frame number written into pixel (0, 0) / (0, 1) of each frame."""

    name = "scripted"

    def __init__(self, script: dict[int, list[Face]]):
        self.script = script

    def detect(self, frames):
        return [list(self.script.get(int(f[0, 0, 0]) + 256 * int(f[0, 1, 0]), [])) for f in frames]


def _script(n: int, seed: int = 0) -> dict[int, list[Face]]:
    """Two faces with jittered landmarks: track A over the whole clip with a 5-frame detection gap around
    frame ``n // 2``, track B entering at ``n // 3``."""
    rng = np.random.default_rng(seed)
    template = rng.uniform(0.15, 0.85, size=(68, 2))
    out: dict[int, list[Face]] = {}
    for i in range(n):
        faces = []
        if not n // 2 - 2 <= i < n // 2 + 3:
            x0, s = 40 + 0.8 * i, 90.0
            faces.append(Face(np.array([x0, 30, x0 + s, 30 + s]), template * s + [x0, 30] + rng.normal(0, 0.7, (68, 2)),
                              1.0, "dlib_hog"))
        if i >= n // 3:
            x0, s = 300 - 0.5 * i, 70.0
            faces.append(Face(np.array([x0, 150, x0 + s, 150 + s]),
                              template * s + [x0, 150] + rng.normal(0, 0.7, (68, 2)), 1.0, "dlib_hog"))
        out[i] = faces
    return out


def _frames(r: range):
    for i in r:
        img = np.zeros((240, 400, 3), np.uint8)
        img[0, 0, 0], img[0, 1, 0] = i % 256, i // 256
        yield Frame(i, img, i, Fraction(1, 25), i / 25)


def _faces(script, frames: range) -> dict[int, list[tuple[bytes, bytes, bool]]]:
    fe = FaceFrontEnd(_ScriptedDetector(script), Tracker(mode="all"), scene_cut=False)
    return {ff.index: sorted((f.quad.tobytes(), f.landmarks.tobytes(), f.interpolated) for f in ff.faces)
            for ff in fe.process(_frames(frames))}


def test_default_overlap_covers_every_temporal_support():
    fe = FaceFrontEnd(_ScriptedDetector({}))
    base = Tracker().max_gap + 1 + fe.delay + SEAM_CHECK
    assert required_overlap(EditOptions(src=None, dst="o.mp4", gate="off")) == base
    assert required_overlap() == base + GateSettings().fade
    opts = EditOptions(src=None, dst="o.mp4", latent_smoothing=2.0, gate="on", gate_fade=5)
    assert required_overlap(opts) == base + StreamingGaussian(2.0).delay + 5


def test_plan_covers_the_window_without_gaps():
    src = _clip()
    n_frames = len(video_frame_times(src)[0])
    for n in (1, 2, 3, 5):
        segs = plan_segments(src, n)
        assert [s.index for s in segs] == list(range(n))
        assert segs[0].start == 0 and segs[-1].stop == n_frames
        assert all(a.stop == b.start for a, b in itertools.pairwise(segs))
        lengths = [s.stop - s.start for s in segs]
        assert max(lengths) - min(lengths) <= 1
        for s in segs:
            assert s.context_start <= s.start < s.stop <= s.context_stop
            assert s.context_start == 0 or s.start - s.context_start >= s.overlap  # clamped at the start only
            assert s.context_start % DETECT_BATCH == 0
            assert s.context_stop == min(n_frames, s.stop + s.overlap)
    # a window: frame indices of [1, 3) s at 30 fps, contexts clamped to it
    segs = plan_segments(src, 3, 8, start=1.0, end=3.0)
    assert [(s.start, s.stop, s.context_start, s.context_stop) for s in segs] == [
        (30, 50, 30, 58), (50, 70, 38, 78), (70, 90, 62, 90)]  # 42 -> 38 and 62: multiples of 8 from 30
    with pytest.raises(SegmentError, match="only 60 frame"):
        plan_segments(src, 61, start=1.0, end=3.0)
    with pytest.raises(SegmentError, match=">= 1"):
        plan_segments(src, 0)


def test_front_end_over_a_context_equals_the_single_run():
    """Tracker + landmark smoother on a segment's context: the owned frames' quads and landmarks are the
    single run's bit for bit (a gap bridged across the cut, a track entering before the context); with a
    context shorter than the support they are not."""
    n = 150
    script = _script(n)
    single = _faces(script, range(n))
    assert any(any(f[2] for f in v) for v in single.values())  # the gap was bridged
    for overlap, equal in ((required_overlap(EditOptions(src=None, dst="o.mp4", gate="off")), True), (12, False)):
        diffs = 0
        for k in range(3):
            s, e = k * n // 3, (k + 1) * n // 3
            c0, c1 = max(0, s - overlap), min(n, e + overlap)
            part = _faces(script, range(c0, c1))
            diffs += sum(part[i] != single[i] for i in range(s, e))
        assert (diffs == 0) == equal, (overlap, diffs)


@pytest.mark.parametrize(("args", "what"), [
    (["--tune", "pti"], "--tune"), (["--track", "0"], "--track"), (["--mix-rows", "8-17"], "--mix-rows"),
    (["--noise", "random"], "--noise const"), (["--gate", "on"], "--gate-score off")])
def test_options_that_cannot_be_split_are_refused(args, what):
    opts = dict(tune="none", tracks=(), mix_rows=None, noise="const", gate="off")
    key = {"--tune": "tune", "--track": "tracks", "--mix-rows": "mix_rows", "--noise": "noise",
           "--gate": "gate"}[args[0]]
    opts[key] = (0,) if key == "tracks" else args[1]
    with pytest.raises(ValueError, match=what.replace("-", r"\-")):
        check_options(EditOptions(src=_clip(), dst="o.mp4", segments=2, **opts))
    check_options(EditOptions(src=_clip(), dst="o.mp4", segments=2, gate="on", gate_score="off"))


def test_images_are_refused(tmp_path):
    img = require_shared("images") / "ffhq_00020.jpg"
    r = invoke_cli(["edit", str(img), "-o", str(tmp_path / "o.png"), "--segments", "2", "--gate", "off"], tmp_path)
    assert r.exit_code != 0 and "vidinv: error: --segments splits a video" in r.stderr


def _stream_info(path: Path):
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        vid = [(p.pts, p.time_base) for p in c.demux(v) if p.size]
    with av.open(str(path)) as c:
        aud = [(p.pts, p.duration, bytes(p)) for p in c.demux(audio=0) if p.size]
    return sorted(vid), aud


def test_segmented_run_equals_the_single_run(tmp_path, detection_cache):
    """`--segments 2` on the first 0.66 s (20 frames, AAC audio) of a shared clip, tiny bundle: the joined
    file is the single run's byte for byte, so frames, pts / time base, audio packets and pixels are equal
    (max abs diff 0), and the one face track crossing the cut is one track in the summary."""
    home = tmp_path / "home"
    write_tiny_bundle(home)
    src = _clip()
    common = ["--attr", "smile", "--gate", "off", "--start", "0", "--end", "0.66", "-q"]
    one, two = tmp_path / "single.mp4", tmp_path / "seg.mp4"
    r1 = invoke_cli(["edit", str(src), "-o", str(one), *common], home)
    assert r1.exit_code == 0, r1.stderr
    r2 = invoke_cli(["edit", str(src), "-o", str(two), "--segments", "2", *common[:-1]], home)
    assert r2.exit_code == 0, r2.stderr
    assert "20 frames, 20 with a face (1 track(s))" in r2.stderr
    assert not list(tmp_path.glob(".vidinv-segments-*"))  # parts deleted
    v1, a1 = _stream_info(one)
    v2, a2 = _stream_info(two)
    assert len(v1) == len(v2) == 20 and v1 == v2
    assert len(a1) > 0 and a1 == a2
    f1 = [f.image for f in VideoReader(one)]
    f2 = [f.image for f in VideoReader(two)]
    assert len(f1) == len(f2) == 20
    assert max(int(np.abs(a.astype(np.int16) - b).max()) for a, b in zip(f1, f2)) == 0
    assert one.read_bytes() == two.read_bytes()


def test_part_files_are_lossless_and_carry_their_record(tmp_path):
    """A part holds the owned pictures bit for bit (odd sizes too) and its JSON record (float64 quads exact)."""
    from vidinv.pipeline.segments import _part_frames, _PartWriter, read_part

    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (37, 51, 3), dtype=np.uint8) for _ in range(4)]
    w = _PartWriter(tmp_path / "p.mkv", range(10, 14), Fraction(30))
    with w:
        for i, img in enumerate(imgs):
            w.write(Frame(10 + i, img, 1000 + i, Fraction(1, 90000), None), img)
    q = [0.1 + 0.2, 1e-17, 123.456789012345678]
    part = w.finish({"segment": 0, "seam": {"10": [[0, q, None]]}})
    assert not w.raw.exists()
    back = list(_part_frames(part))
    assert len(back) == 4 and all(np.array_equal(a, b) for a, b in zip(imgs, back))
    rec = read_part(part)
    assert rec["seam"]["10"][0][1] == q and rec["pts"] == [1000, 1001, 1002, 1003] and rec["time_base"] == "1/90000"
    w2 = _PartWriter(tmp_path / "q.mkv", range(0, 3), Fraction(30))
    with pytest.raises(SegmentError, match="frame 1 came where 0"):
        w2.write(Frame(1, imgs[0], 1, Fraction(1, 30), None), imgs[0])


def test_join_refuses_segments_that_disagree_at_a_seam():
    """The seam check: same faces on both sides -> the track keeps segment 0's id; a quad differing in the last
    bit -> one-line error naming the frame."""
    from vidinv.pipeline.segments import Segment, _check_seams

    segs = [Segment(0, 0, 50, 0, 99, 49, 0, 100), Segment(1, 50, 100, 0, 100, 49, 0, 100)]
    quad = [float(v) for v in np.linspace(1.0, 8.0, 8)]
    seam = {str(i): [[0, quad, None]] for i in range(48, 52)}
    a = {"tracks": [0], "seam": seam}
    b = {"tracks": [3], "seam": {k: [[3, quad, None]] for k in seam}}
    assert _check_seams(segs, [a, b]) == {0: {0: 0}, 1: {3: 0}}
    bad = dict(b, seam={**b["seam"], "51": [[3, [*quad[:-1], np.nextafter(quad[-1], 9.0)], None]]})
    with pytest.raises(SegmentError, match="disagree at frame 51"):
        _check_seams(segs, [a, bad])
