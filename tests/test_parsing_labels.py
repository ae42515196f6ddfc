"""BiSeNet (face-parsing.PyTorch) -> CelebAMask-HQ label order, and pSp's segmentation input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vidinv.face import parsing_labels as P
from vidinv.models import bisenet


def test_bisenet_order_is_the_parser_s():
    assert P.BISENET_CLASSES == bisenet.CLASS_NAMES
    assert len(P.CELEBAMASK_HQ_CLASSES) == P.N_CLASSES == bisenet.N_CLASSES
    assert set(P.CELEBAMASK_HQ_CLASSES) == set(P.BISENET_CLASSES)


def test_mapping_by_hand():
    # written out from the two tables (face-parsing.PyTorch prepropess_data.py atts, CelebAMask-HQ g_mask.py)
    expected = {"background": (0, 0), "skin": (1, 1), "l_brow": (2, 6), "r_brow": (3, 7), "l_eye": (4, 4),
                "r_eye": (5, 5), "eye_g": (6, 3), "l_ear": (7, 8), "r_ear": (8, 9), "ear_r": (9, 15),
                "nose": (10, 2), "mouth": (11, 10), "u_lip": (12, 11), "l_lip": (13, 12), "neck": (14, 17),
                "neck_l": (15, 16), "cloth": (16, 18), "hair": (17, 13), "hat": (18, 14)}
    for name, (b, c) in expected.items():
        assert P.BISENET_CLASSES[b] == name and P.CELEBAMASK_HQ_CLASSES[c] == name
        assert P.BISENET_TO_CELEBAMASK_HQ[b] == c
        assert P.CELEBAMASK_HQ_TO_BISENET[c] == b
    assert P.BISENET_TO_CELEBAMASK_HQ != tuple(range(19))  # the orders differ


def test_relabel_numpy_and_torch():
    m = np.array([[0, 1, 2], [10, 17, 14], [16, 18, 9]], dtype=np.int64)  # bg skin l_brow / nose hair neck / ...
    want = np.array([[0, 1, 6], [2, 13, 17], [18, 14, 15]])
    out = P.bisenet_to_celebamask_hq(m)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    np.testing.assert_array_equal(out, want)
    t = P.bisenet_to_celebamask_hq(torch.from_numpy(m)[None])
    assert isinstance(t, torch.Tensor) and t.shape == (1, 3, 3) and t.dtype == torch.int64
    np.testing.assert_array_equal(t[0].numpy(), want)
    # round trip through the inverse table
    back = np.asarray(P.CELEBAMASK_HQ_TO_BISENET)[out]
    np.testing.assert_array_equal(back, m)


def test_one_hot_at_target_size():
    # a 4x4 map already at the output size is not resampled: one-hot of the relabelled values
    m = np.array([[0, 1, 17, 17], [2, 3, 10, 10], [4, 5, 11, 12], [13, 14, 16, 18]], dtype=np.int64)
    x = P.to_psp_segmentation_input(m, size=4)
    assert x.shape == (1, 19, 4, 4) and x.dtype == torch.float32
    assert set(torch.unique(x).tolist()) == {0.0, 1.0}
    assert torch.equal(x.sum(1), torch.ones(1, 4, 4))
    celeb = np.asarray(P.BISENET_TO_CELEBAMASK_HQ)[m]
    np.testing.assert_array_equal(x[0].argmax(0).numpy(), celeb)
    assert x[0, 13, 0, 2] == 1.0 and x[0, 17, 0, 2] == 0.0  # BiSeNet hair (17) -> channel 13
    # the CelebAMask-HQ order is taken as is
    y = P.to_psp_segmentation_input(celeb, order="celebamask_hq", size=4)
    assert torch.equal(x, y)


def test_resize_is_pil_bilinear_on_label_values():
    # 8x8 -> 4x4: left half background, right half CelebAMask-HQ hair (13). PIL bilinear shrink by 2 weighs
    # input columns 2j-1..2j+2 by 1/8, 3/8, 3/8, 1/8 (edges renormalised): column 1 = 13/8 -> 2 (nose),
    # column 2 = 13*7/8 -> 11 (u_lip). Nearest-neighbour would give [0, 0, 13, 13].
    m = np.zeros((8, 8), dtype=np.uint8)
    m[:, 4:] = 13
    x = P.to_psp_segmentation_input(m, order="celebamask_hq", size=4)
    np.testing.assert_array_equal(x[0].argmax(0).numpy(), np.tile([0, 2, 11, 13], (4, 1)))
    # the relabelling happens before the resize: BiSeNet hair (17) -> 13 first, same result
    mb = np.where(m == 13, 17, 0)
    assert torch.equal(P.to_psp_segmentation_input(mb, size=4), x)


def test_default_size_and_batch():
    m = np.zeros((2, 512, 512), dtype=np.int64)
    m[1, 100:300, 200:400] = 17
    x = P.to_psp_segmentation_input(torch.from_numpy(m))
    assert x.shape == (2, 19, P.PSP_SEG_SIZE, P.PSP_SEG_SIZE)
    assert torch.equal(x.sum(1), torch.ones(2, 256, 256))
    assert x[0, 0].all() and not x[0, 1:].any()
    # block interior (rows 50..149, cols 100..199 at 256) is hair = channel 13
    assert x[1, 13, 51:149, 101:199].all()
    assert x[1, 0, :49].all()


def test_matches_torchvision_pipeline():
    tv = pytest.importorskip("torchvision.transforms")
    from PIL import Image

    rng = np.random.default_rng(0)
    m = rng.integers(0, 19, size=(64, 48)).astype(np.uint8)  # CelebAMask-HQ order, non-square
    pil = tv.Resize((256, 256))(Image.fromarray(m).convert("L"))  # pSp's Resize on the 'L' image
    arr = np.array(pil)
    one_hot = np.zeros(arr.shape + (19,), dtype=int)  # pSp ToOneHot: int array, 1 at [i, j, label]
    ii, jj = np.indices(arr.shape)
    one_hot[ii, jj, arr] = 1
    ref = tv.ToTensor()(one_hot)  # not divided by 255 (not uint8)
    assert ref.dtype == torch.int64 and int(ref.max()) == 1
    x = P.to_psp_segmentation_input(m, order="celebamask_hq")
    assert torch.equal(x[0], ref.float())


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.float32), np.full((2, 2), 19), np.full((2, 2), -1),
                                 np.zeros((1, 1, 2, 2), np.int64), np.zeros((2, 2), bool)])
def test_bad_labels(bad):
    with pytest.raises(ValueError):
        P.to_psp_segmentation_input(bad)


def test_bad_order_and_names():
    with pytest.raises(ValueError, match="order"):
        P.to_psp_segmentation_input(np.zeros((2, 2), np.int64), order="lapa")
    with pytest.raises(ValueError):
        P.bisenet_to_celebamask_hq(np.array([19]))
    assert P.class_names("bisenet") is P.BISENET_CLASSES
    assert P.class_names("celebamask_hq") is P.CELEBAMASK_HQ_CLASSES
    with pytest.raises(ValueError):
        P.class_names("x")
