"""Unit tests of vidinv.metrics against values worked out by hand on small arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import manifest_state_dict, require_shared
from vidinv.metrics import image as im
from vidinv.metrics import temporal as tp
from vidinv.metrics.identity import (
    ArcFaceEmbedder,
    DlibEmbedder,
    EmbedderUnavailable,
    cosine_similarity,
    select_embedders,
)


# ------------------------------------------------------------------------------------------ MSE / PSNR

def test_mse_psnr_by_hand():
    x = np.zeros((2, 2, 1), np.uint8)
    y = x.copy()
    y[0, 0, 0] = 255  # one of four values differs by the full range: MSE = 1/4
    assert im.mse(x, y) == pytest.approx(0.25)
    assert im.psnr(x, y) == pytest.approx(10 * math.log10(4.0))  # 6.0206 dB
    # 8-bit difference of 10 everywhere: MSE = (10/255)^2, PSNR = 20 log10(255/10) = 28.1308 dB
    a = np.full((4, 5, 3), 100, np.uint8)
    b = np.full((4, 5, 3), 110, np.uint8)
    assert im.mse(a, b) == pytest.approx((10 / 255) ** 2)
    assert im.psnr(a, b) == pytest.approx(28.130803608679102)
    # float images with their own range give the same numbers
    assert im.psnr(a.astype(np.float64), b.astype(np.float64), data_range=255.0) == pytest.approx(28.130803608679102)
    assert im.mse(a / 255.0, b / 255.0) == pytest.approx((10 / 255) ** 2)


def test_psnr_of_identical_frames_is_infinite():
    a = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    v = im.psnr(a, a.copy())
    assert math.isinf(v) and v > 0
    assert im.mse(a, a) == 0.0
    batch = im.psnr(np.stack([a, a]), np.stack([a, 255 - a]))
    assert batch.shape == (2,) and np.isposinf(batch[0]) and np.isfinite(batch[1])
    assert math.isinf(im.psnr_from_mse(0.0)) and im.psnr_from_mse(0.01) == pytest.approx(20.0)


def test_masked_mse_uses_only_the_mask():
    a = np.zeros((3, 3, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255  # differs only at (0, 0)
    mask = np.zeros((3, 3), bool)
    mask[1:, 1:] = True
    assert im.mse(a, b, mask=mask) == 0.0
    assert math.isinf(im.psnr(a, b, mask=mask))
    mask[0, 0] = True  # 5 pixels, one of them fully wrong in all channels -> 1/5
    assert im.mse(a, b, mask=mask) == pytest.approx(0.2)
    assert math.isnan(im.mse(a, b, mask=np.zeros((3, 3), bool)))


def test_image_shape_errors():
    with pytest.raises(ValueError):
        im.mse(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError):
        im.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))  # smaller than the 11x11 window
    with pytest.raises(ValueError):
        im.mse(np.zeros((4, 4)), np.zeros((4, 4)))


# ------------------------------------------------------------------------------------------ SSIM

def test_gaussian_window():
    g = im.gaussian_window(11, 1.5)
    assert g.shape == (11,) and g.sum() == pytest.approx(1.0)
    assert np.allclose(g, g[::-1])
    r = np.arange(11) - 5
    ref = np.exp(-r ** 2 / 4.5)
    assert np.allclose(g, ref / ref.sum())


def _ssim_one_window(x, y, w2d):
    """SSIM of one window, straight from the definition (weighted moments)."""
    mx, my = (w2d * x).sum(), (w2d * y).sum()
    vx = (w2d * (x - mx) ** 2).sum()
    vy = (w2d * (y - my) ** 2).sum()
    cxy = (w2d * (x - mx) * (y - my)).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))


def test_ssim_constant_images_by_hand():
    # constant windows: variances 0, so SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a = np.full((11, 11, 1), 0.5)
    b = np.full((11, 11, 1), 0.25)
    c1 = 1e-4
    assert im.ssim(a, b) == pytest.approx((2 * 0.5 * 0.25 + c1) / (0.25 + 0.0625 + c1), rel=1e-12)
    assert im.ssim(a, a) == pytest.approx(1.0, abs=1e-12)


def test_ssim_map_matches_brute_force():
    rng = np.random.default_rng(1)
    x = rng.random((14, 13, 2))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    g = im.gaussian_window()
    w2d = np.outer(g, g)
    smap = im.ssim_map(x, y)
    assert smap.shape == (1, 4, 3, 2)  # valid positions only: (14-10) x (13-10)
    for i in range(4):
        for j in range(3):
            for c in range(2):
                ref = _ssim_one_window(x[i:i + 11, j:j + 11, c], y[i:i + 11, j:j + 11, c], w2d)
                assert smap[0, i, j, c] == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert im.ssim(x, y) == pytest.approx(smap.mean(), rel=1e-12)
    # identical images: exactly 1; uint8 input is scaled by 255
    assert im.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    xu = (x * 255).round().astype(np.uint8)
    yu = (y * 255).round().astype(np.uint8)
    assert im.ssim(xu, yu) == pytest.approx(im.ssim(xu / 255.0, yu / 255.0), abs=1e-5)


def test_ssim_mask_counts_only_windows_inside():
    rng = np.random.default_rng(2)
    x = rng.random((20, 20, 3))
    y = rng.random((20, 20, 3))
    smap = im.ssim_map(x, y).mean(axis=3)[0]
    mask = np.zeros((20, 20), bool)
    mask[3:14, 5:16] = True  # exactly one 11x11 window fits: the one at (3, 5)
    assert im.ssim(x, y, mask=mask) == pytest.approx(smap[3, 5], rel=1e-12)
    mask[3:15, 5:16] = True  # two windows: (3, 5) and (4, 5)
    assert im.ssim(x, y, mask=mask) == pytest.approx((smap[3, 5] + smap[4, 5]) / 2, rel=1e-12)
    assert math.isnan(im.ssim(x, y, mask=np.zeros((20, 20), bool)))


def test_ssim_accepts_torch_and_batches():
    rng = np.random.default_rng(3)
    x = rng.random((2, 12, 12, 3)).astype(np.float32)
    y = rng.random((2, 12, 12, 3)).astype(np.float32)
    out = im.ssim(torch.from_numpy(x), torch.from_numpy(y))
    assert out.shape == (2,)
    assert out[1] == pytest.approx(im.ssim(x[1], y[1]), abs=1e-6)


# ------------------------------------------------------------------------------------------ LPIPS

def test_lpips_unavailable_without_cached_backbone(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("VIDINV_HOME", str(tmp_path / "vidinv"))
    with pytest.raises(im.LPIPSUnavailable, match="alexnet-owt-7be5be79.pth"):
        im.LPIPSMetric(net="alex")
    with pytest.raises(im.LPIPSUnavailable):
        im.LPIPSMetric(net="resnet")


def test_lpips_loads_a_torchvision_backbone_file(tmp_path):
    """The loading path with a (random) torchvision AlexNet file: plumbing only, never a reported number."""
    import torchvision

    torch.manual_seed(0)
    feats = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(feats, path)
    metric = im.LPIPSMetric(net="alex", backbone_path=path)
    assert torch.equal(metric.model.net.slice1[0].weight, feats["features.0.weight"])
    assert torch.equal(getattr(metric.model.net.slice5, "10").bias, feats["features.10.bias"])
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert metric(a, a) == pytest.approx(0.0, abs=1e-7)
    assert metric(a, b) > 0
    assert metric.describe()["net"] == "alex"
    bad = tmp_path / "bad.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, bad)
    with pytest.raises(im.LPIPSUnavailable, match="layout"):
        im.LPIPSMetric(net="alex", backbone_path=bad)


# ------------------------------------------------------------------------------------------ identity

def test_cosine_similarity_by_hand():
    assert cosine_similarity([1, 0], [0, 1]) == pytest.approx(0.0)
    assert cosine_similarity([1, 1], [2, 2]) == pytest.approx(1.0)
    assert cosine_similarity([1, 0], [-3, 0]) == pytest.approx(-1.0)
    assert cosine_similarity([1, 0], [1, 1]) == pytest.approx(1 / math.sqrt(2))
    out = cosine_similarity(np.array([[1, 0], [0, 2]]), np.array([1, 0]))
    assert np.allclose(out, [1.0, 0.0])


def _face_of(image):
    from vidinv.face.detect import get_detector

    faces = get_detector("dlib").detect([image])[0]
    assert faces, "no face found in a shared aligned image"
    return faces[0]


def test_dlib_embedder_chip_and_identity():
    from PIL import Image

    d = require_shared("images")
    emb = DlibEmbedder()
    imgs = [np.asarray(Image.open(d / n).convert("RGB").resize((512, 512)))
            for n in ("ffhq_00020.jpg", "ffhq_00109.jpg")]
    faces = [_face_of(x) for x in imgs]
    chip = emb.align(imgs[0], faces[0])
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    e = emb.embed(imgs + [imgs[0]], faces + [faces[0]])
    assert e.shape == (3, 128) and e.dtype == np.float32
    assert cosine_similarity(e[0], e[2]) == pytest.approx(1.0, abs=1e-6)
    same = cosine_similarity(e[0], e[2])
    other = cosine_similarity(e[0], e[1])
    assert other < same - 0.05  # two different people
    assert np.linalg.norm(e[0] - e[1]) > 0.6  # dlib's own verdict: different persons
    info = emb.describe()
    assert info["key"] == "dlib" and info["dim"] == 128 and "get_face_chip" in info["alignment"]
    assert info["summary"] == "dlib face-recognition ResNet-29 on aligned 150×150 chips"
    assert "150×150" in info["crops"]
    assert len(info["sha256"]) == 16
    assert emb.embed_chips([]).shape == (0, 128)


@pytest.fixture(scope="module")
def arcface_dir(tmp_path_factory):
    sd = manifest_state_dict("arcface_iresnet50", keys_field="state_dict")
    d = tmp_path_factory.mktemp("arcface_weights")
    torch.save(sd, d / "backbone.pth")
    return d


def test_arcface_embedder_alignment_is_fs_idloss(arcface_dir):
    """FFHQ crop at 1024, [-1, 1], F.interpolate(x, (112, 112)) nearest = pixel floor(i * 1024 / 112)."""
    from vidinv.face import align as fa

    emb = ArcFaceEmbedder.from_weights(weights_dir=arcface_dir)
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (700, 600, 3), dtype=np.uint8)
    quad = np.array([[100.0, 120.0], [100.0, 520.0], [500.0, 520.0], [500.0, 120.0]])

    class F:
        pass

    face = F()
    face.quad, face.landmarks, face.box = quad, None, None
    chip = emb.align(frame, face)
    crop = fa.align_crop(frame, quad, 1024)
    idx = np.floor(np.arange(112) * 1024 / 112).astype(int)
    ref = (crop[idx][:, idx].astype(np.float32) / 255.0 - 0.5) / 0.5
    assert chip.shape == (3, 112, 112) and chip.dtype == np.float32
    assert np.allclose(chip, ref.transpose(2, 0, 1), atol=1e-6)
    e = emb.embed_chips([chip, chip, np.zeros_like(chip)])
    assert e.shape == (3, 512)
    assert cosine_similarity(e[0], e[1]) == pytest.approx(1.0, abs=1e-5)
    info = emb.describe()
    assert info["key"] == "arcface" and "nearest" in info["alignment"] and info["file"].endswith("backbone.pth")
    assert info["summary"] == "ArcFace IResNet-50 on 112×112 FFHQ-aligned crops"
    assert "1024×1024" in info["crops"] and "nearest" in info["crops"]


def test_arcface_missing_weights(monkeypatch, tmp_path):
    monkeypatch.setenv("VIDINV_HOME", str(tmp_path / "home"))
    with pytest.raises(EmbedderUnavailable, match="backbone.pth"):
        ArcFaceEmbedder.from_weights(weights_dir=tmp_path)
    embs, notes = select_embedders(["auto"], weights_dir=tmp_path)
    assert [e.key for e in embs] == ["dlib"]
    assert notes and "arcface not used" in notes[0] and "backbone.pth" in notes[0]
    with pytest.raises(EmbedderUnavailable):
        select_embedders(["arcface"], weights_dir=tmp_path)
    with pytest.raises(ValueError):
        select_embedders(["facenet"])


def test_select_embedders_auto_uses_arcface_when_present(arcface_dir):
    embs, notes = select_embedders(["auto"], weights_dir=arcface_dir)
    assert [e.key for e in embs] == ["dlib", "arcface"] and notes == []


# ------------------------------------------------------------------------------------------ temporal

def test_identity_consistency_constant_sequence_is_one():
    v = np.random.default_rng(6).standard_normal(16)
    e = np.stack([v * s for s in (1.0, 2.0, 0.5, 3.0)])  # same direction, any length
    assert tp.identity_consistency(e) == pytest.approx(1.0, abs=1e-12)


def test_identity_consistency_by_hand():
    e = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # cos(e1, e0) = 0, cos(e2, e0) = 1/sqrt(2): mean over i != 0
    assert tp.identity_consistency(e) == pytest.approx((0.0 + 1 / math.sqrt(2)) / 2)
    sims, r = tp.similarity_to_reference(e)
    assert r == 0 and np.allclose(sims, [1.0, 0.0, 1 / math.sqrt(2)])
    # a frame without a face (NaN row or valid=False) is left out; the reference is the first valid frame
    e2 = np.array([[np.nan, np.nan], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert tp.identity_consistency(e2) == pytest.approx((0.0 + 1 / math.sqrt(2)) / 2)
    assert tp.similarity_to_reference(e2)[1] == 1
    valid = np.array([True, True, False])
    assert tp.identity_consistency(e, valid) == pytest.approx(0.0)
    assert math.isnan(tp.identity_consistency(e[:1]))
    assert math.isnan(tp.identity_consistency(np.full((3, 2), np.nan)))


def test_adjacent_and_pairwise_similarity():
    e = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [np.nan, np.nan]])
    adj = tp.adjacent_similarity(e)
    s = 1 / math.sqrt(2)
    assert np.allclose(adj[:2], [s, s]) and np.isnan(adj[2])
    pw = tp.pairwise_similarity(e)
    assert pw.shape == (4, 4) and pw[0, 2] == pytest.approx(0.0) and np.isnan(pw[3]).all()
    assert np.allclose(np.diag(pw)[:3], 1.0)


def test_tl_id_tg_id_by_hand():
    src = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])  # perfectly consistent source
    out = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    s = 1 / math.sqrt(2)
    tl = tp.tl_id(out, src)
    assert tl.pairs == 2 and tl.source_mean == pytest.approx(1.0)
    assert tl.output_mean == pytest.approx(s) and tl.value == pytest.approx(s)
    tg = tp.tg_id(out, src)  # ordered pairs (0,1)=(1,0)=s, (0,2)=(2,0)=1, (1,2)=(2,1)=s
    assert tg.pairs == 6 and tg.value == pytest.approx((2 * s + 1) / 3)
    assert tg.skipped_frames == [] and tg.undefined_pairs == 0
    same = tp.tg_id(src, src)
    assert same.value == pytest.approx(1.0)
    # frames without a face in either video drop the pairs that touch them, and are listed
    out_valid = np.array([True, False, True])
    tl2 = tp.tl_id(out, src, output_valid=out_valid)
    assert tl2.pairs == 0 and math.isnan(tl2.value) and math.isnan(tl2.ratio_of_means)
    assert tl2.skipped_frames == [1]
    tg2 = tp.tg_id(out, src, output_valid=out_valid)
    assert tg2.pairs == 2 and tg2.value == pytest.approx(1.0) and tg2.skipped_frames == [1]
    src_nan = src.copy()
    src_nan[2] = np.nan  # no face in the source's last frame
    assert tp.tl_id(out, src_nan).skipped_frames == [2] and tp.tl_id(out, src_nan).pairs == 1
    # different lengths: the common frames count
    assert tp.tl_id(out[:2], src).pairs == 1


def _unit(deg, length=1.0):
    t = math.radians(deg)
    return [length * math.cos(t), length * math.sin(t)]


def test_tl_id_tg_id_are_means_of_ratios_not_ratios_of_means():
    """STIT: R = S_edit / S_src per pair, TL-ID = mean of R over (i, i+1), TG-ID = mean over i != j.

    Source at angles 0, 60, 60 degrees (a head turn: S_src(0,1) = 0.5, S_src(1,2) = 1, S_src(0,2) = 0.5),
    output constant (S_edit = 1 everywhere); lengths differ to check the L2 normalisation.
    """
    src = np.array([_unit(0, 2.0), _unit(60, 0.5), _unit(60, 3.0)])
    out = np.array([_unit(0), _unit(0, 4.0), _unit(0, 0.25)])
    r, s_edit, s_src, both = tp.ratio_matrix(out, src)
    assert both.all()
    np.testing.assert_allclose(s_src, [[1, 0.5, 0.5], [0.5, 1, 1], [0.5, 1, 1]], atol=1e-12)
    np.testing.assert_allclose(s_edit, np.ones((3, 3)), atol=1e-12)
    np.testing.assert_allclose(r, [[1, 2, 2], [2, 1, 1], [2, 1, 1]], atol=1e-12)
    tl = tp.tl_id(out, src)
    assert tl.value == pytest.approx((1 / 0.5 + 1 / 1) / 2)  # 1.5: mean of ratios (STIT)
    assert tl.ratio_of_means == pytest.approx(1 / 0.75)  # 1.333...: ratio of means (not STIT)
    assert tl.source_mean == pytest.approx(0.75) and tl.output_mean == pytest.approx(1.0)
    tg = tp.tg_id(out, src)
    assert tg.value == pytest.approx((2 + 2 + 1) / 3)  # 5/3 over the 6 ordered pairs
    assert tg.ratio_of_means == pytest.approx(1 / (2 / 3))  # 1.5
    assert tg.pairs == 6
    # swapping the roles gives the reciprocal ratios: means 0.75 (TL) and 2/3 (TG)
    assert tp.tl_id(src, out).value == pytest.approx(0.75)
    assert tp.tg_id(src, out).value == pytest.approx((0.5 + 0.5 + 1) / 3)
    # a pair with S_src = 0 has no ratio: counted apart, not in the mean
    src0 = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])  # exactly orthogonal: S_src(0, 1) = 0
    tl0 = tp.tl_id(out, src0)
    assert tl0.undefined_pairs == 1 and tl0.pairs == 1 and tl0.value == pytest.approx(1.0)


def test_frame_change_and_flicker_by_hand():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 12  # one pixel of four changes by 12 levels in all channels -> mean 3
    assert tp.frame_change(a, b) == pytest.approx(3.0)
    m = np.array([[True, False], [False, False]])
    assert tp.frame_change(a, b, m) == pytest.approx(12.0)
    assert math.isnan(tp.frame_change(a, b, np.zeros((2, 2), bool)))
    f = tp.flicker([4.0, 6.0, np.nan], [1.0, 3.0, 2.0])
    assert f["value"] == pytest.approx(5.0 - 2.0) and f["pairs"] == 2
    assert f["output_mean"] == pytest.approx(5.0) and f["source_mean"] == pytest.approx(2.0)
    assert tp.flicker([1.0], [1.0])["value"] == 0.0
    assert math.isnan(tp.flicker([np.nan], [1.0])["value"])
