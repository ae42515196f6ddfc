"""Reports on the shared real videos with the offline dlib identity network.

To keep CPU time modest, the per-video identity consistency runs on subsampled frames: every 6th frame,
16 frames per video (so it spans 96 frames, 3-4 s of each clip). The face-swap comparison runs on the
first 16 frames of talking_wink.mp4.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import cached_detection, require_shared
from vidinv.metrics.identity import DlibEmbedder
from vidinv.metrics.temporal import identity_consistency
from vidinv.report import ReportOptions, run_report, validate
from vidinv.report.compute import analyse_video

VIDEOS = ["greenscreen_frontal", "talking_wink", "interview_720p", "selfie_portrait", "crowd_1080p"]
SINGLE_PERSON = VIDEOS[:4]
STRIDE, MAX_FRAMES = 6, 16


@pytest.fixture(scope="module", autouse=True)
def _shared_detections():
    """dlib detections memoised by frame content for the session (conftest.cached_detection)."""
    with cached_detection():
        yield


@pytest.fixture(scope="module")
def analyses():
    from vidinv.face.frontend import FaceFrontEnd

    d = require_shared("videos")
    emb = [DlibEmbedder()]
    fe = FaceFrontEnd()
    opts = ReportOptions(stride=STRIDE, max_frames=MAX_FRAMES, progress=False)
    return {n: analyse_video(d / f"{n}.mp4", emb, fe, opts) for n in VIDEOS}


@pytest.mark.parametrize("name", SINGLE_PERSON)
def test_source_identity_consistency_is_high(analyses, name):
    v = analyses[name]
    expected = min(MAX_FRAMES, math.ceil(v.info["num_frames"] / STRIDE))  # greenscreen has 78 frames: 13
    assert v.num_frames == expected
    assert v.frame_index == list(range(0, STRIDE * expected, STRIDE))
    assert v.has_face.all()
    ic = identity_consistency(v.embeddings["dlib"])
    print(f"{name}: identity consistency (dlib, every {STRIDE}th frame, {v.num_frames} frames) = {ic:.4f}; "
          f"{v.timing['ms_per_frame']:.0f} ms/frame")
    assert ic > 0.93


def test_crowd_identity_consistency_is_computed(analyses):
    v = analyses["crowd_1080p"]
    assert v.num_frames == MAX_FRAMES
    e = v.embeddings["dlib"]
    assert np.isnan(e[~v.has_face]).all() and np.isfinite(e[v.has_face]).all()
    ic = identity_consistency(e)
    print(f"crowd_1080p: identity consistency (dlib) = {ic:.4f} over {int(v.has_face.sum())} frames with a face")
    assert v.has_face.sum() >= 2 and -1.0 <= ic <= 1.0


# ---------------------------------------------------------------------------------------------- face swap

N = 16


def _write(path, frames, fps):
    from vidinv.io.video import VideoWriter

    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, fps=fps, crf=18) as wr:
        for f in frames:
            wr.write(f)


@pytest.fixture(scope="module")
def swap_report(tmp_path_factory):
    """Source = first 16 frames of talking_wink; outputs: a re-encoded copy whose last 2 frames are black,
    and a copy (2 frames shorter) whose face is replaced by another person's (shared FFHQ image)."""
    from PIL import Image

    from vidinv.face import align, blend
    from vidinv.face.frontend import FaceFrontEnd
    from vidinv.io.video import VideoReader, probe

    src = require_shared("videos") / "talking_wink.mp4"
    other_img = require_shared("images") / "ffhq_00020.jpg"
    tmp = tmp_path_factory.mktemp("swap")
    s = 256
    other = np.asarray(Image.open(other_img).convert("RGB").resize((s, s), Image.LANCZOS))
    copy, swap = [], []
    for ff in FaceFrontEnd().process(VideoReader(src, stop=N)):
        frame = ff.frame.image
        copy.append(frame if ff.index < N - 2 else np.zeros_like(frame))
        f = ff.faces[0]
        m = align.crop_matrix(f.quad, s)
        mask = blend.feather_mask(blend.mask_from_landmarks(f.landmarks @ m[:2, :2].T + m[:2, 2], s), 2, 6)
        swap.append(blend.composite(frame, other, f.quad, mask))
    fps = probe(src).fps
    _write(tmp / "talking_wink_copy.mp4", copy, fps)
    _write(tmp / "talking_wink_swap.mp4", swap[:N - 2], fps)
    messages: list[str] = []
    doc = run_report([src], [tmp / "talking_wink_copy.mp4", tmp / "talking_wink_swap.mp4"], tmp / "report",
                     embedder_keys=["dlib"], options=ReportOptions(max_frames=N, progress=False),
                     echo=messages.append)
    return doc, messages, tmp / "report"


def test_face_swap_drops_identity_similarity(swap_report):
    doc, _, _ = swap_report
    vids = {v["id"]: v for v in doc["videos"]}
    by_label = {vids[c["output"]]["label"]: c for c in doc["comparisons"]}
    copy = by_label["talking_wink_copy.mp4"]["identity"]["dlib"]
    swap = by_label["talking_wink_swap.mp4"]["identity"]["dlib"]
    sim_copy = np.array([np.nan if x is None else x for x in copy["similarity_per_frame"]])
    sim_swap = np.array([np.nan if x is None else x for x in swap["similarity_per_frame"]])
    print(f"identity similarity (dlib) source vs copy: mean {copy['similarity']['mean']:.4f} min "
          f"{copy['similarity']['min']:.4f}; vs face-swapped copy: mean {swap['similarity']['mean']:.4f} max "
          f"{swap['similarity']['max']:.4f}; same-person frames {copy['same_person']['same_person_fraction']:.2f} "
          f"vs {swap['same_person']['same_person_fraction']:.2f}")
    assert copy["similarity"]["mean"] > 0.97
    assert swap["similarity"]["mean"] < copy["similarity"]["mean"] - 0.05
    assert np.nanmax(sim_swap) < np.nanmin(sim_copy)  # every swapped frame below every copied frame
    assert copy["same_person"]["same_person_fraction"] == 1.0
    assert swap["same_person"]["same_person_fraction"] == 0.0
    # the swap only touched the face: background preserved, face crop changed
    sw = by_label["talking_wink_swap.mp4"]
    assert sw["background"]["psnr"]["mean"] == "inf" or sw["background"]["psnr"]["mean"] > 35
    assert sw["face_crop"]["psnr"]["mean"] < 20
    assert by_label["talking_wink_copy.mp4"]["face_crop"]["psnr"]["median"] > 35
    # identity consistency of source and output are both reported
    assert swap["consistency_source"] > 0.9 and swap["consistency_output"] is not None


def test_report_counts_missing_faces_and_frame_mismatch(swap_report):
    doc, messages, _ = swap_report
    vids = {v["id"]: v for v in doc["videos"]}
    by_label = {vids[c["output"]]["label"]: c for c in doc["comparisons"]}
    copy_c = by_label["talking_wink_copy.mp4"]
    copy_v = vids[copy_c["output"]]
    assert copy_v["frames"]["without_face"] == 2 and copy_v["frames"]["without_face_frames"] == [N - 2, N - 1]
    ci = copy_c["identity"]["dlib"]
    assert ci["excluded_no_face_output"] == 2 and ci["frames_used"] == N - 2
    assert ci["similarity_per_frame"][N - 1] is None
    assert copy_c["frames"]["count_mismatch"] is False
    swap_c = by_label["talking_wink_swap.mp4"]
    assert swap_c["frames"] == {"source": N, "output": N - 2, "compared": N - 2, "count_mismatch": True,
                                "identity_frames": N - 2}
    assert any("frame counts differ" in w for w in swap_c["warnings"])
    assert len(swap_c["face_crop"]["per_frame"]["psnr"]) == N - 2
    assert any("frame counts differ" in m for m in messages)
    assert sum("ms/frame" in m for m in messages) >= 3  # time per frame printed for each video
    validate(doc)
    lp = doc["models"]["lpips"]
    if lp["available"]:
        assert swap_c["face_crop"]["lpips"]["count"] == N - 2
    else:
        assert lp["reason"] and swap_c["face_crop"]["per_frame"]["lpips"] is None
    assert [m["key"] for m in doc["models"]["identity"]] == ["dlib"]


def test_report_files(swap_report):
    _, _, out = swap_report
    names = sorted(p.name for p in out.iterdir())
    assert "report.json" in names and "report.html" in names
    assert {"identity_c0.png", "identity_c1.png", "quality_c0.png", "quality_c1.png",
            "consistency_boxplot.png"} <= set(names)


def test_video_without_faces_is_reported_not_crashed(tmp_path):
    """A clip of blank frames: no face anywhere, identity metrics are null with the frames counted."""
    from vidinv.io.video import probe

    src = require_shared("videos") / "greenscreen_frontal.mp4"
    blank = [np.full((64, 64, 3), 30, np.uint8)] * 5
    _write(tmp_path / "blank.mp4", blank, probe(src).fps)
    doc = run_report([tmp_path / "blank.mp4"], [], tmp_path / "rep", embedder_keys=["dlib"],
                     options=ReportOptions(progress=False), echo=lambda m: None)
    v = doc["videos"][0]
    assert v["frames"]["analysed"] == 5 and v["frames"]["without_face"] == 5
    assert v["identity"]["dlib"]["consistency"] is None and v["identity"]["dlib"]["frames_used"] == 0
    assert math.isfinite(doc["timing"]["ms_per_frame"])
    validate(doc)


def test_report_with_both_identity_networks(tmp_path):
    """dlib + ArcFace (IResNet-50 with the parity fixture's filled weights: structure only, not real
    identity numbers) in one report; comparing a clip with itself gives similarity 1 for both."""
    import torch

    from conftest import manifest_state_dict

    wdir = tmp_path / "weights"
    wdir.mkdir()
    torch.save(manifest_state_dict("arcface_iresnet50", keys_field="state_dict"), wdir / "backbone.pth")
    src = require_shared("videos") / "greenscreen_frontal.mp4"
    doc = run_report([src], [src], tmp_path / "rep", weights_dir=wdir, embedder_keys=["auto"],
                     options=ReportOptions(max_frames=4, progress=False), lpips=False, echo=lambda m: None)
    validate(doc)
    assert [m["key"] for m in doc["models"]["identity"]] == ["dlib", "arcface"]
    assert doc["models"]["primary_identity"] == "arcface"
    assert doc["models"]["lpips"] == {"available": False, "reason": "disabled (--no-lpips)"}
    c = doc["comparisons"][0]
    for key in ("dlib", "arcface"):
        ci = c["identity"][key]
        assert ci["frames_used"] == 4 and ci["similarity"]["min"] == pytest.approx(1.0, abs=1e-5)
        assert ci["tl_id"]["value"] == pytest.approx(1.0) and ci["tg_id"]["value"] == pytest.approx(1.0)
    assert c["identity"]["arcface"]["same_person"] is None
    assert c["face_crop"]["psnr"]["mean"] == "inf" and c["background"]["ssim"]["mean"] == pytest.approx(1.0)
    assert c["flicker"]["value"] == pytest.approx(0.0)
    assert len(doc["videos"][0]["identity"]["arcface"]["similarity_to_reference"]) == 4


def test_output_of_a_source_window(tmp_path):
    """An output cut to source frames [10, 14) is compared with those frames (source_start)."""
    from vidinv.io.video import VideoReader, probe

    src = require_shared("videos") / "greenscreen_frontal.mp4"
    frames = [f.image for f in VideoReader(src, start=10, stop=14)]
    _write(tmp_path / "window.mp4", frames, probe(src).fps)
    docs = {}
    for start in (10, 0):
        docs[start] = run_report([src], [tmp_path / "window.mp4"], tmp_path / f"rep{start}", embedder_keys=["dlib"],
                                 options=ReportOptions(progress=False, source_start=start, source_stop=start + 4),
                                 lpips=False, echo=lambda m: None)
    aligned, shifted = docs[10], docs[0]
    assert aligned["videos"][0]["frames"]["frame_index"] == [10, 11, 12, 13]
    assert aligned["videos"][1]["frames"]["frame_index"] == [0, 1, 2, 3]
    assert aligned["settings"]["source_start"] == 10 and aligned["settings"]["source_stop"] == 14
    c_al, c_sh = aligned["comparisons"][0], shifted["comparisons"][0]
    assert c_al["frames"]["compared"] == 4 and not c_al["frames"]["count_mismatch"]
    assert c_al["face_crop"]["psnr"]["mean"] > 35
    assert c_al["face_crop"]["psnr"]["mean"] > c_sh["face_crop"]["psnr"]["mean"] + 3
    validate(aligned)


def _noise_clip(path, seed, n=3):
    """A face-free, non-blank clip: ``n`` frames of uniform noise, 128x96."""
    rng = np.random.default_rng(seed)
    _write(path, [rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(n)], 25)
    return path


def test_cnn_fallback_is_a_switch_and_counted(tmp_path, monkeypatch):
    """On a clip without a face, dlib's CNN fallback never runs by default (the frames HOG missed are
    counted); switched on, it runs on every frame and report.json and the timing line say so."""
    from vidinv.face import detect as dm

    clip = _noise_clip(tmp_path / "noise.mp4", seed=91)
    ran: list[int] = []
    real = dm.DlibLandmarkDetector._cnn_faces

    def counting(self, frames):
        ran.append(len(frames))
        return real(self, frames)

    monkeypatch.setattr(dm.DlibLandmarkDetector, "_cnn_faces", counting)
    msgs: list[str] = []
    off = run_report([clip], [], tmp_path / "off", embedder_keys=["dlib"], options=ReportOptions(progress=False),
                     echo=msgs.append)
    assert ran == []
    validate(off)
    assert off["settings"]["frontend"]["cnn_fallback"] is False
    assert off["videos"][0]["detection"] == {"detector": "dlib", "cnn_fallback": False, "cnn_frames": 0,
                                             "cnn_face_frames": 0, "cnn_frame_index": [], "hog_missed": 3,
                                             "blank_frames": 0}
    assert any("HOG found no face in 3 frame(s), CNN fallback off" in m for m in msgs)
    assert any("CNN fallback was off (--cnn-fallback" in w for w in off["warnings"])
    msgs.clear()
    on = run_report([clip], [], tmp_path / "on", embedder_keys=["dlib"], options=ReportOptions(progress=False),
                    cnn_fallback=True, echo=msgs.append)
    assert sum(ran) == 3  # the CNN really ran, once per frame
    validate(on)
    det = on["videos"][0]["detection"]
    assert det["cnn_fallback"] is True and det["cnn_frames"] == 3 and det["cnn_frame_index"] == [0, 1, 2]
    assert det["cnn_face_frames"] == 0 and on["videos"][0]["frames"]["without_face"] == 3
    assert any("CNN fallback on 3 frame(s)" in m for m in msgs)
    assert any("CNN fallback ran on 3 of 3 frames" in w for w in on["warnings"])
