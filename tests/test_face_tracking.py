"""Tracker and scene-cut detection on synthetic detection sequences."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import require_shared
from vidinv.face.detect import Face
from vidinv.face.tracking import SceneCutDetector, Tracker, box_iou

_RNG = np.random.default_rng(1234)
_TEMPLATE = _RNG.uniform(0.1, 0.9, size=(68, 2))  # landmark layout in a unit face box


def face(cx: float, cy: float, size: float, score: float = 1.0) -> Face:
    """A synthetic detection: box of side ``size`` centred at (cx, cy), landmarks from a fixed template."""
    x0, y0 = cx - size / 2, cy - size / 2
    return Face(box=np.array([x0, y0, x0 + size, y0 + size]), landmarks=_TEMPLATE * size + [x0, y0],
                score=score, detector="synthetic")


def run(tracker: Tracker, seq: list[list[Face]], cuts: set[int] = frozenset()):
    """Push a whole sequence; return ({index: {track_id: TrackPoint}}, ended ids, max latency)."""
    frames, ended, latency = {}, [], 0
    order = []
    for i, faces in enumerate(seq):
        out = tracker.push(i, faces, cut=i in cuts)
        for k, pts in out.frames:
            order.append(k)
            frames[k] = {p.track_id: p for p in pts}
            latency = max(latency, i - k)
        ended += out.ended
    out = tracker.flush()
    for k, pts in out.frames:
        order.append(k)
        frames[k] = {p.track_id: p for p in pts}
    ended += out.ended
    assert order == list(range(len(seq))), "every frame exactly once, in order"
    return frames, ended, latency


def test_gap_within_max_gap_is_interpolated():
    seq = [[face(100 + 3 * i, 120, 80)] for i in range(20)]
    for i in (5, 6, 7):
        seq[i] = []
    frames, ended, latency = run(Tracker(max_gap=4), seq)
    ids = {tid for f in frames.values() for tid in f}
    assert ids == {0} and ended == [0]
    assert latency <= 4 + 1
    for i in range(20):
        p = frames[i][0]
        assert p.interpolated == (i in (5, 6, 7))
        # motion is linear, so interpolation recovers the true landmarks
        np.testing.assert_allclose(p.landmarks, face(100 + 3 * i, 120, 80).landmarks, atol=1e-9)
    assert np.isnan(frames[6][0].score) and frames[4][0].score == 1.0


def test_longer_gap_ends_the_track_and_a_new_id_follows():
    seq = [[face(200, 200, 90)] for i in range(40)]
    for i in range(10, 22):  # 12 missing frames > max_gap 8
        seq[i] = []
    frames, ended, latency = run(Tracker(max_gap=8), seq)
    assert latency <= 9
    assert all(frames[i] == {} for i in range(10, 22))
    first, second = set(frames[0]), set(frames[30])
    assert first == {0} and len(second) == 1 and second != first
    assert all(set(frames[i]) == first for i in range(10))
    assert all(set(frames[i]) == second for i in range(22, 40))
    assert sorted(ended) == sorted(first | second)
    assert not any(p.interpolated for f in frames.values() for p in f.values())


def test_face_leaving_passes_frames_through():
    # the face moves right and leaves the picture at frame 15; the video goes on without faces
    seq = [[face(100 + 30 * i, 240, 100)] if i < 15 else [] for i in range(40)]
    tr = Tracker(max_gap=6)
    frames, ended, _ = run(tr, seq)
    assert all(set(frames[i]) == {0} for i in range(15))
    assert all(frames[i] == {} for i in range(15, 40))
    assert ended == [0] and tr.active_tracks == []


def test_scene_cut_ends_tracks_and_blocks_interpolation():
    # same face position before and after a cut at frame 10, with a detection gap around the cut
    seq = [[face(150, 150, 100)] for _ in range(20)]
    seq[9] = []
    frames, ended, _ = run(Tracker(max_gap=8), seq, cuts={10})
    assert frames[9] == {}  # not bridged across the cut
    before, after = set(frames[8]), set(frames[10])
    assert before and after and before != after
    assert len(ended) == 2
    # without the cut, the same gap is bridged by one track
    frames2, _, _ = run(Tracker(max_gap=8), seq)
    assert {tid for f in frames2.values() for tid in f} == {0} and frames2[9][0].interpolated


def test_largest_face_where_faces_first_appear_is_kept():
    # frames 0-2: no face; from 3: a small face A and a big face B; from 15 A grows bigger than B
    seq = [[] for _ in range(3)]
    for i in range(3, 30):
        a_size = 60 if i < 15 else 160
        seq.append([face(100, 200, a_size), face(400, 200, 120)])
    frames, _, _ = run(Tracker(), seq)
    assert all(frames[i] == {} for i in range(3))
    tids = {tid for i in range(3, 30) for tid in frames[i]}
    assert len(tids) == 1
    tid = tids.pop()
    for i in range(3, 30):
        p = frames[i][tid]
        assert p.box[0] > 300  # always face B, also after A became the largest


def test_false_detection_as_first_target_is_replaced():
    # frame 0: a big false detection plus the real face; afterwards only the real face
    seq = [[face(400, 100, 200), face(150, 300, 100)]] + [[face(150 + i, 300, 100)] for i in range(1, 30)]
    frames, _, latency = run(Tracker(max_gap=8), seq)
    fp_id = next(iter(frames[0]))
    assert frames[0][fp_id].box[0] == 300  # frame 0 went to the (largest) false detection
    ids = {tid for i in range(1, 30) for tid in frames[i]}
    assert len(ids) == 1 and fp_id not in ids
    assert all(len(frames[i]) == 1 for i in range(1, 30))  # the held frames were handed to the real face
    assert latency <= 9


def test_mode_all_follows_every_face_and_new_faces_get_new_ids():
    seq = []
    for i in range(30):
        faces = [face(100 + 10 * i, 100, 80), face(500 - 10 * i, 300, 90)]  # they pass each other
        if i >= 12:
            faces.append(face(300, 500, 70))  # enters later
        seq.append(faces)
    frames, ended, _ = run(Tracker(mode="all"), seq)
    ids = sorted({tid for f in frames.values() for tid in f})
    assert len(ids) == 3
    for tid in ids:
        xs = [(i, frames[i][tid].box) for i in range(30) if tid in frames[i]]
        # each track stays on one trajectory: small steps between consecutive frames
        steps = [np.abs(b1 - b0).max() for (_, b0), (_, b1) in zip(xs, xs[1:])]
        assert max(steps) <= 10 + 1e-9
    late = [tid for tid in ids if min(i for i in range(30) if tid in frames[i]) == 12]
    assert len(late) == 1
    assert sorted(ended) == ids


def test_target_lost_in_crowd_passes_through_unless_immediate_reselect():
    # target (big, left) leaves at frame 10 while a smaller face stays visible
    seq = [([face(150, 200, 150)] if i < 10 else []) + [face(500, 200, 80)] for i in range(30)]
    frames, ended, _ = run(Tracker(max_gap=3), seq)
    assert all(len(frames[i]) == 1 and frames[i][next(iter(frames[i]))].box[0] < 300 for i in range(10))
    assert all(frames[i] == {} for i in range(10, 30))
    assert len(ended) == 1
    frames, _, _ = run(Tracker(max_gap=3, reselect="immediate"), seq)
    later = [frames[i] for i in range(14, 30)]
    assert all(len(f) == 1 and next(iter(f.values())).box[0] > 300 for f in later)


def test_after_empty_frames_a_new_target_is_chosen():
    # the first person leaves, the picture is empty for a while, then someone else enters
    seq = [[face(150, 200, 120)] if i < 10 else ([] if i < 25 else [face(400, 220, 110)]) for i in range(40)]
    frames, _, _ = run(Tracker(max_gap=4), seq)
    a, b = set(frames[5]), set(frames[30])
    assert a and b and a != b
    assert all(frames[i] == {} for i in range(10, 25))


def test_association_survives_fast_motion_and_rejects_far_jumps():
    # constant fast motion (0.4 face sizes per frame) with two missed frames: still one track
    seq = [[face(100 + 40 * i, 300, 100)] for i in range(15)]
    seq[6] = seq[7] = []
    frames, _, _ = run(Tracker(max_gap=4), seq)
    assert {tid for f in frames.values() for tid in f} == {0}
    # a detection jumping across the picture is a different face
    seq = [[face(100, 300, 100)] for _ in range(5)] + [[face(900, 300, 100)] for _ in range(5)]
    frames, _, _ = run(Tracker(mode="all", max_gap=2), seq)
    assert set(frames[4]) != set(frames[5])


def test_bad_arguments():
    with pytest.raises(ValueError):
        Tracker(mode="biggest")
    with pytest.raises(ValueError):
        Tracker(reselect="never")
    tr = Tracker()
    tr.push(3, [])
    with pytest.raises(ValueError):
        tr.push(3, [])


def test_box_iou():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert box_iou(a, a) == 1.0
    assert box_iou(a, a + 20) == 0.0
    assert box_iou(a, np.array([5.0, 0.0, 15.0, 10.0])) == pytest.approx(50 / 150)


def test_scene_cut_detector_synthetic():
    rng = np.random.default_rng(0)
    base = (rng.uniform(0, 1, (90, 160, 1)) * np.array([200, 120, 60])).astype(np.uint8)
    det = SceneCutDetector()
    assert det(base) is False  # first frame
    assert det(np.roll(base, 3, axis=1)) is False  # small motion
    assert det(np.zeros_like(base)) is True  # black frame
    assert det(np.zeros_like(base)) is False
    assert det(255 - base) is True


def test_scene_cut_detector_on_shared_videos():
    from vidinv.io.video import read_frames

    videos = require_shared("videos")
    det = SceneCutDetector()
    cuts, dmax = 0, 0.0
    for f in read_frames(videos / "greenscreen_frontal.mp4", stop=40):
        cuts += det(f.image)
        dmax = max(dmax, det.last_distance)
    assert cuts == 0 and dmax < det.threshold / 2
    other = next(iter(read_frames(videos / "talking_wink.mp4", stop=1))).image
    assert det(other) is True
