"""Restoration metrics against a high-resolution reference (`vidinv report --reference`, issue 10 item 6).

Clips: the first 3 frames of ../shared/videos/greenscreen_frontal.mp4 scaled to 256x256 (the *reference*);
its x4 bicubic down-scale (64x64, the *low-resolution source*); a *degraded copy* (the source scaled back to
256x256 bilinearly); a 2x copy (512x512 bicubic); and mismatching videos (256x192; 2 frames; 50 fps).

LPIPS: the AlexNet ImageNet weights are not assumed to be cached, so the LPIPS network here has a seeded
random AlexNet backbone (the lpips package's linear heads): the checks use only properties that hold for any
backbone (0 for identical crops, > 0 for different ones), never a reported number.
"""
from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from conftest import cached_detection, require_shared

from vidinv.face import align
from vidinv.face.frontend import FaceFrontEnd
from vidinv.face.tracking import Tracker
from vidinv.io.outputs import json_safe
from vidinv.io.video import VideoReader, VideoWriter, probe
from vidinv.metrics.identity import DlibEmbedder
from vidinv.report.compute import FaceRecord
from vidinv.report.restoration import (
    RestorationInputError,
    bicubic_upscale,
    check_restoration_inputs,
    restoration_metrics,
    scale_face,
)
from vidinv.report.schema import validate

N = 3


def _write(path, frames, fps):
    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, fps=fps, crf=18) as wr:
        for f in frames:
            wr.write(f)


def _resize(img, size, method):
    from PIL import Image

    return np.asarray(Image.fromarray(img).resize(size, method))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from PIL import Image

    src = require_shared("videos") / "greenscreen_frontal.mp4"
    d = tmp_path_factory.mktemp("restoration")
    fps = probe(src).fps
    ref = [_resize(f.image, (256, 256), Image.Resampling.LANCZOS) for f in VideoReader(src, stop=N)]
    lr = [_resize(f, (64, 64), Image.Resampling.BICUBIC) for f in ref]
    videos = {"ref": (ref, fps), "lr": (lr, fps),
              "deg": ([_resize(f, (256, 256), Image.Resampling.BILINEAR) for f in lr], fps),
              "big": ([_resize(f, (512, 512), Image.Resampling.BICUBIC) for f in ref], fps),
              "wide": ([_resize(f, (256, 192), Image.Resampling.BICUBIC) for f in ref], fps),
              "short": (ref[:N - 1], fps), "fast": (ref, 50)}
    paths = {}
    for name, (frames, rate) in videos.items():
        paths[name] = d / f"{name}.mp4"
        _write(paths[name], frames, rate)
    return paths


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    """(dlib embedder, front-end tracking every face, LPIPS with a seeded random AlexNet backbone)."""
    import torch
    import torchvision

    from vidinv.metrics.image import LPIPSMetric

    torch.manual_seed(0)
    feats = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    path = tmp_path_factory.mktemp("lpips") / "alexnet-owt-7be5be79.pth"
    torch.save(feats, path)
    with cached_detection():
        yield [DlibEmbedder()], FaceFrontEnd(tracker=Tracker(mode="all")), LPIPSMetric(net="alex", backbone_path=path)


def _run(tools, ref, out, source=None):
    emb, fe, lp = tools
    return restoration_metrics(ref, out, source=source, embedders=emb, frontend=fe, lpips_metric=lp)


def _quads(tools, path):
    """Reference frames and the front-end's quads (the geometry restoration_metrics uses)."""
    _, fe, _ = tools
    frames, quads = [], []
    for ff in fe.process(VideoReader(path)):
        frames.append(ff.frame.image)
        quads.append(ff.faces[0].quad)
    return frames, quads


def _psnr_by_hand(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def test_reference_against_itself_is_perfect(clips, tools):
    r = _run(tools, clips["ref"], clips["ref"], source=clips["ref"])
    assert r.frame_index == list(range(N)) and r.sample_frame.tolist() == list(range(N))
    assert r.sample_track.tolist() == [0] * N  # one face, one track
    for which in (r.restored, r.bicubic):  # a same-size source is its own bicubic "up-scale"
        assert which is not None
        assert np.all(which["mse"] == 0.0)
        assert np.all(np.isposinf(which["psnr"]))
        np.testing.assert_allclose(which["ssim"], 1.0, atol=1e-6)
        np.testing.assert_allclose(which["lpips"], 0.0, atol=1e-6)
        np.testing.assert_allclose(which["identity:dlib"], 1.0, atol=1e-6)
    d = json_safe(r.as_dict())
    assert d["restored"]["psnr"]["mean"] == "inf" and d["restored"]["psnr"]["from_mean_mse"] == "inf"
    assert d["restored"]["psnr"]["count"] == N and d["restored"]["psnr"]["std"] is None  # std of inf: undefined
    assert d["tracks"][0]["samples"] == N and d["baseline_reason"] is None
    json.dumps(d, allow_nan=False)


def test_degraded_copy_scores_lower_and_matches_hand_computation(clips, tools):
    r = _run(tools, clips["ref"], clips["deg"], source=clips["lr"])
    assert r.scale == {"output": (1.0, 1.0), "source": (0.25, 0.25)}
    rest, bic = r.restored, r.bicubic
    assert bic is not None
    for v in (rest, bic):
        assert np.all(np.isfinite(v["psnr"])) and np.all(v["psnr"] < 40.0)
        assert np.all(v["ssim"] < 0.97) and np.all(v["lpips"] > 1e-4)
        assert np.all(v["identity:dlib"] < 1.0 - 1e-4) and np.all(v["identity:dlib"] > 0.9)  # same person
    # frame 0 by hand: crops with the reference quad; PSNR = 10 log10(255^2 / MSE) on 8-bit crops
    frames, quads = _quads(tools, clips["ref"])
    deg0 = next(iter(VideoReader(clips["deg"]))).image
    lr0 = next(iter(VideoReader(clips["lr"]))).image
    rc = align.align_crop(frames[0], quads[0], 256)
    assert rest["psnr"][0] == pytest.approx(_psnr_by_hand(rc, align.align_crop(deg0, quads[0], 256)), abs=1e-9)
    from PIL import Image

    up = np.asarray(Image.fromarray(lr0).resize((256, 256), Image.Resampling.BICUBIC))
    assert bic["psnr"][0] == pytest.approx(_psnr_by_hand(rc, align.align_crop(up, quads[0], 256)), abs=1e-9)
    d = r.as_dict()
    assert d["restored"]["psnr"]["mean"] == pytest.approx(float(np.mean(rest["psnr"])))
    assert d["bicubic"]["ssim"]["mean"] == pytest.approx(float(np.mean(bic["ssim"])))
    print(f"degraded copy vs reference: PSNR {np.mean(rest['psnr']):.2f} dB (bicubic {np.mean(bic['psnr']):.2f}), "
          f"SSIM {np.mean(rest['ssim']):.4f} ({np.mean(bic['ssim']):.4f}), identity [dlib] "
          f"{np.mean(rest['identity:dlib']):.4f} ({np.mean(bic['identity:dlib']):.4f})")


def test_scale_face_pixel_centres_by_hand():
    q = np.array([[0.0, 0.0], [0.0, 9.0], [9.0, 9.0], [9.0, 0.0]])
    rec = FaceRecord(track_id=3, interpolated=False, landmarks=np.zeros((68, 2)), quad=q, qsize=10.0,
                     box=np.array([0.0, 0.0, 9.0, 9.0]))
    s = scale_face(rec, (2.0, 4.0))
    # pixel 0 spans [0, 1]; at 2x it spans [0, 2], whose centre is index 0.5; at 4x [0, 4], centre 1.5
    np.testing.assert_allclose(s.quad[0], [0.5, 1.5])
    np.testing.assert_allclose(s.quad[2], [2 * 9.5 - 0.5, 4 * 9.5 - 0.5])
    np.testing.assert_allclose(s.box, [0.5, 1.5, 18.5, 37.5])
    np.testing.assert_allclose(s.landmarks, np.tile([0.5, 1.5], (68, 1)))
    assert s.qsize == 30.0 and s.track_id == 3
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert bicubic_upscale(img, (3, 2)) is img and bicubic_upscale(img, (6, 4)).shape == (4, 6, 3)


def test_double_size_output_is_measured_with_the_scaled_quad(clips, tools):
    r = _run(tools, clips["ref"], clips["big"])
    assert r.scale["output"] == (2.0, 2.0) and r.bicubic is None and r.baseline_reason
    v = r.restored
    assert np.all(v["psnr"] > 35.0) and np.all(v["ssim"] > 0.95)  # a bicubic 2x copy of the reference
    assert np.all(v["identity:dlib"] > 0.99)
    # the unscaled quad on the 2x frame would cut another region: far from the reference crop
    frames, quads = _quads(tools, clips["ref"])
    big0 = next(iter(VideoReader(clips["big"]))).image
    rc = align.align_crop(frames[0], quads[0], 256)
    assert _psnr_by_hand(rc, align.align_crop(big0, quads[0], 256)) < 20.0 < v["psnr"][0] - 15.0
    d = json_safe(r.as_dict())
    assert d["bicubic"] is None and d["per_sample"]["bicubic"] is None and d["output_size"] == [512, 512]


def test_videos_that_do_not_correspond_are_refused(clips, tools):
    with pytest.raises(RestorationInputError, match=r"wide\.mp4 \(256x192\) does not have the aspect ratio of the "
                                                    r"reference ref\.mp4 \(256x256\)"):
        _run(tools, clips["ref"], clips["wide"])
    short_out = re.escape(f"frame counts differ: the output short.mp4 has {N - 1} frames")
    with pytest.raises(RestorationInputError, match=short_out):
        _run(tools, clips["ref"], clips["short"])
    with pytest.raises(RestorationInputError, match=re.escape("fast.mp4 runs at 50.000 fps, the reference ref.mp4")):
        _run(tools, clips["ref"], clips["fast"])
    short_src = re.escape(f"frame counts differ: the source short.mp4 has {N - 1} frames")
    with pytest.raises(RestorationInputError, match=short_src):
        check_restoration_inputs(clips["ref"], clips["deg"], clips["short"])
    # the container checks accept a proper set and report the sizes
    assert check_restoration_inputs(clips["ref"], clips["big"], clips["lr"]) == {
        "reference": (256, 256), "output": (512, 512), "source": (64, 64), "frames": N}
    # a window: reference frames [1, 3) against output frames [output_start, output_start + 2)
    kw = {"start": 1, "stop": 3, "embedders": tools[0], "frontend": tools[1], "lpips": False}
    same = restoration_metrics(clips["ref"], clips["ref"], output_start=1, **kw)
    assert same.frame_index == [1, 2] and same.lpips_reason == "disabled (--no-lpips)"
    assert np.all(np.isposinf(same.restored["psnr"])) and np.all(np.isnan(same.restored["lpips"]))
    shifted = restoration_metrics(clips["ref"], clips["ref"], output_start=0, **kw)  # frames 1, 2 vs 0, 1
    assert np.all(np.isfinite(shifted.restored["psnr"])) and np.all(shifted.restored["mse"] > 0)


def test_cli_report_reference_prints_the_table(clips, tmp_path, monkeypatch):
    from vidinv.cli.main import main

    out = tmp_path / "rep"
    with cached_detection(), pytest.raises(SystemExit) as ex:
        main(["report", str(clips["lr"]), str(clips["deg"]), "--reference", str(clips["ref"]), "-o", str(out),
              "--embedder", "dlib", "--no-lpips", "-q"])
    assert ex.value.code in (0, None)
    doc = json.loads((out / "report.json").read_text())
    validate(doc)
    (e,) = doc["restoration"]
    vids = {v["id"]: v["label"] for v in doc["videos"]}
    assert vids[e["output"]] == "deg.mp4" and vids[e["source"]] == "lr.mp4" and e["frames"]["samples"] == N
    assert e["lpips"] == {"available": False, "reason": "disabled (--no-lpips)"}
    assert "Restoration vs high-resolution reference" in (out / "report.html").read_text()
    from vidinv.report.summary import restoration_lines

    lines = restoration_lines(doc)
    assert lines[0].startswith(f"restoration: deg.mp4 vs reference ref.mp4 ({N} face samples in {N} of {N} frames")
    psnr_line = next(ln for ln in lines if "PSNR" in ln).split()
    assert float(psnr_line[-2]) == pytest.approx(e["restored"]["psnr"]["mean"], abs=0.005)
    assert float(psnr_line[-1]) == pytest.approx(e["bicubic"]["psnr"]["mean"], abs=0.005)


def test_cli_reference_errors_before_any_network(clips, tmp_path, monkeypatch, capsys):
    import vidinv.report.run as run_mod
    from vidinv.cli.main import main

    def boom(*a, **k):
        raise AssertionError("an identity network was loaded")

    monkeypatch.setattr(run_mod, "select_embedders", boom)
    cases = [([str(clips["lr"]), str(clips["wide"])], "does not have the aspect ratio of the reference"),
             ([str(clips["lr"])], "--reference needs at least one OUTPUT video"),
             ([str(clips["short"]), str(clips["deg"])],
              f"frame counts differ: the source short.mp4 has {N - 1} frames")]
    for args, msg in cases:
        with pytest.raises(SystemExit) as ex:
            main(["report", *args, "--reference", str(clips["ref"]), "-o", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip().splitlines()
        assert ex.value.code == 1 and len(err) == 1 and err[0].startswith("vidinv: error: ") and msg in err[0], err
        assert not (tmp_path / "r").exists()
