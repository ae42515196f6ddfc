"""Blend masks, feathering and compositing back into the frame."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import distance_transform_edt

from conftest import require_shared
from vidinv.face import align as A
from vidinv.face import blend as B


@pytest.fixture(scope="module")
def face():
    d = require_shared("parity/ffhq_align")
    z = np.load(d / "ffhq_align.npz")
    frame = np.array(Image.open(d / "frame_00.png").convert("RGB"))
    return frame, z["quad_ffhq"][0], z["landmarks"][0]


def _aligned_landmarks(lm, quad, size):
    m = A.crop_matrix(quad, size)
    return lm @ m[:2, :2].T + m[:2, 2]


def test_mask_from_parsing():
    labels = np.arange(19, dtype=np.int64).reshape(1, 19).repeat(3, axis=0)
    m = B.mask_from_parsing(labels)
    assert m.shape == (3, 19) and m.dtype == np.float32
    np.testing.assert_array_equal(np.flatnonzero(m[0]), B.FACE_CLASSES)
    assert set(np.unique(m)) == {0.0, 1.0}
    assert B.CELEBAMASK_HQ_CLASSES[17] == "hair" and 17 not in B.FACE_CLASSES
    np.testing.assert_array_equal(np.flatnonzero(B.mask_from_parsing(labels.astype(np.uint8), B.FS_MASK_CLASSES)[0]),
                                  B.FS_MASK_CLASSES)
    with pytest.raises(ValueError):
        B.mask_from_parsing(labels.astype(np.float32))


def test_mask_from_landmarks(face):
    _, quad, lm = face
    size = 256
    lma = _aligned_landmarks(lm, quad, size)
    m = B.mask_from_landmarks(lma, size)
    assert m.shape == (size, size) and m.dtype == np.float32
    assert set(np.unique(m)) == {0.0, 1.0}
    ij = np.rint(lma).astype(int)
    assert m[ij[:, 1], ij[:, 0]].min() == 1.0  # every landmark inside
    # the forehead extension reaches above the brows; without it the mask is smaller
    plain = B.mask_from_landmarks(lma, size, forehead=0.0)
    assert plain.sum() < m.sum() and not (plain > m).any()
    top_brow = lma[17:27, 1].min()
    assert np.flatnonzero(m.any(axis=1))[0] < top_brow - 0.2 * (lma[8, 1] - top_brow)
    assert np.flatnonzero(plain.any(axis=1))[0] >= int(top_brow) - 1
    assert B.mask_from_landmarks(lma * 2, (512, 600)).shape == (512, 600)


@pytest.mark.parametrize("dilate,feather", [(0, 0), (0, 6), (5, 0), (4, 9), (10, 15), (12, 8)])
def test_feather_bounds(dilate, feather):
    m = np.zeros((200, 230), np.float32)
    m[40:140, 30:130] = 1
    m[160:165, 150:200] = 1
    out = B.feather_mask(m, dilate, feather)
    assert out.dtype == np.float32 and out.shape == m.shape
    assert out.min() >= 0 and out.max() <= 1
    dist_out = distance_transform_edt(m == 0)  # Euclidean distance to the mask
    assert not out[dist_out > dilate + feather].any()  # exactly 0 beyond dilate + feather
    assert not ((out > 0) & (out < 1 / 512)).any()  # tiny values clipped to 0
    if dilate == 0 and feather == 0:
        np.testing.assert_array_equal(out, m)
    depth = distance_transform_edt(m)  # distance inside the mask to its edge
    core = depth > feather * 1.5 + 1
    assert core.any() and out[core].min() >= 1 - 1e-5  # core stays 1
    if dilate >= feather > 0:
        assert out[m > 0].min() > 0.99  # dilation covers the feathering of the original mask
    # bool and uint8 inputs
    np.testing.assert_array_equal(B.feather_mask(m > 0, dilate, feather), out)
    np.testing.assert_array_equal(B.feather_mask((m * 255).astype(np.uint8), dilate, feather), out)


def test_feather_empty_and_errors():
    assert not B.feather_mask(np.zeros((10, 10), np.float32), 3, 3).any()
    with pytest.raises(ValueError):
        B.feather_mask(np.zeros((10, 10)), -1, 3)


def _warped_alpha(mask, quad, hw):
    a, _ = A.unalign(mask, quad, hw, border_mode="constant")
    return np.clip(a, 0, 1)


@pytest.mark.parametrize("mode", ["alpha", "poisson"])
@pytest.mark.parametrize("shift", [(0.0, 0.0), (-180.0, 150.0)])
def test_composite_outside_mask_is_byte_identical(face, mode, shift):
    frame, quad, lm = face
    quad = quad + np.asarray(shift)  # second case: the quad leaves the frame
    size = 256
    rng = np.random.default_rng(5)
    edited = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    mask = B.feather_mask(B.mask_from_landmarks(_aligned_landmarks(lm + shift, quad, size), size), 4, 8)
    before = frame.copy()
    out = B.composite(frame, edited, quad, mask, mode=mode)
    np.testing.assert_array_equal(frame, before)  # input untouched
    assert out.shape == frame.shape and out.dtype == np.uint8
    alpha = _warped_alpha(mask, quad, frame.shape[:2])
    outside = alpha == 0
    np.testing.assert_array_equal(out[outside], frame[outside])
    changed = (out != frame).any(axis=-1)
    assert changed.sum() > 0.5 * (alpha >= 0.999).sum()
    # everything outside the quad's square (coverage 0) is untouched
    _, cov = A.unalign(edited, quad, frame.shape[:2])
    np.testing.assert_array_equal(out[cov == 0], frame[cov == 0])


def test_composite_zero_mask_and_full_mask(face):
    frame, quad, _ = face
    size = 256
    crop = A.align_crop(frame, quad, size)
    np.testing.assert_array_equal(B.composite(frame, 255 - crop, quad, np.zeros((size, size), np.float32)), frame)
    edited = np.full((size, size, 3), 40, np.uint8)
    ones = np.ones((size, size), np.float32)
    out = B.composite(frame, edited, quad, ones)
    _, cov = A.unalign(edited, quad, frame.shape[:2])
    np.testing.assert_array_equal(out[cov >= 1], 40)  # alpha 1 inside the square -> crop colour
    # identity edit: pasting the frame's own crop back changes little
    same = B.composite(frame, crop, quad, B.feather_mask(np.pad(np.ones((160, 160), np.float32), 48), 0, 16))
    assert np.abs(same.astype(float) - frame).mean() < 1.0


def test_poisson_runs_and_matches_colours(face):
    frame, quad, lm = face
    size = 256
    crop = A.align_crop(frame, quad, size).astype(np.int16)
    tinted = np.clip(crop + [30, -20, 10], 0, 255).astype(np.uint8)  # colour cast on the edited face
    mask = B.feather_mask(B.mask_from_landmarks(_aligned_landmarks(lm, quad, size), size), 3, 6)
    out_p = B.composite(frame, tinted, quad, mask, mode="poisson")
    out_a = B.composite(frame, tinted, quad, mask, mode="alpha")
    alpha = _warped_alpha(mask, quad, frame.shape[:2])
    inside = alpha >= 0.999
    # gradient-domain blending removes most of the constant colour cast that alpha blending keeps
    err_p = np.abs(out_p.astype(float) - frame)[inside].mean()
    err_a = np.abs(out_a.astype(float) - frame)[inside].mean()
    assert err_p < 0.5 * err_a
    with pytest.raises(ValueError):
        B.composite(frame, tinted, quad, mask, mode="laplacian")


def test_frame_alpha_is_what_composite_uses(face):
    """``frame_alpha`` gives the weights of ``composite``: where it is 0 the frame is kept byte for byte, where
    it is 1 the crop's colour is pasted, and it equals the independently warped mask (zero border)."""
    frame, quad, lm = face
    size = 256
    mask = B.feather_mask(B.mask_from_landmarks(_aligned_landmarks(lm, quad, size), size), 4, 8)
    alpha = B.frame_alpha(mask, quad, frame.shape[:2])
    assert alpha.shape == frame.shape[:2] and alpha.dtype == np.float32
    _, cov = A.unalign(mask, quad, frame.shape[:2])
    np.testing.assert_allclose(alpha, np.where(cov > 0, _warped_alpha(mask, quad, frame.shape[:2]), 0), atol=1e-6)
    edited = np.full((size, size, 3), 7, np.uint8)
    out = B.composite(frame, edited, quad, mask)
    np.testing.assert_array_equal(out[alpha == 0], frame[alpha == 0])
    assert (alpha == 0).any() and (alpha >= 0.999).any()
    np.testing.assert_array_equal(out[alpha >= 0.999], 7)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("mode", ["alpha", "poisson"])
def test_composite_refuses_non_finite_face(face, bad, mode):
    """A NaN / inf generated face is an error, not a black patch (NaN cast to uint8 is 0)."""
    frame, quad, lm = face
    size = 128
    crop = A.align_crop(frame, quad, size).astype(np.float32)
    crop[40:50, 60:70] = bad
    mask = B.feather_mask(B.mask_from_landmarks(_aligned_landmarks(lm, quad, size), size), 2, 4)
    before = frame.copy()
    with pytest.raises(B.NonFiniteFaceError, match=r"300 NaN or infinite value\(s\)"):
        B.composite(frame, crop, quad, mask, mode=mode)
    np.testing.assert_array_equal(frame, before)
    bad_mask = mask.copy()
    bad_mask[10, 10] = np.nan
    with pytest.raises(B.NonFiniteFaceError, match="mask"):
        B.composite(frame, np.nan_to_num(crop, nan=0, posinf=255, neginf=0), quad, bad_mask, mode=mode)
    # the same finite crop composites normally
    ok = B.composite(frame, np.nan_to_num(crop, nan=0, posinf=255, neginf=0), quad, mask, mode=mode)
    assert ok.dtype == np.uint8 and ok.shape == frame.shape
