"""Numerical parity of IR-SE50 (pSp ID-loss backbone) with the reference fixture ../shared/parity/irse50_backbone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_parity, manifest_state_dict, require_shared
from vidinv.io.checkpoints import CheckpointMismatchError
from vidinv.models.irse import IRSE50Backbone, id_loss_crop, load_irse50


@pytest.fixture(scope="module")
def fixture():
    d = require_shared("parity/irse50_backbone")
    return dict(np.load(d / "irse50_backbone.npz"))


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory):
    sd = manifest_state_dict("irse50_backbone", keys_field="state_dict")
    path = tmp_path_factory.mktemp("irse") / "model_ir_se50.pth"
    torch.save(sd, path)
    return path


@pytest.fixture(scope="module")
def model(ckpt_path):
    return load_irse50(ckpt_path)


def test_state_dict_layout_matches_manifest():
    sd = manifest_state_dict("irse50_backbone", keys_field="state_dict")
    ours = IRSE50Backbone().state_dict()
    assert len(ours) == len(sd) == 397
    assert set(ours) == set(sd)
    for k, v in sd.items():
        assert tuple(ours[k].shape) == tuple(v.shape), k


def test_id_loss_crop_matches_fixture(fixture):
    x112 = id_loss_crop(torch.from_numpy(fixture["x256"]))
    assert_parity(x112, fixture["x112"], "x112")


def test_embedding_parity(model, fixture):
    with torch.no_grad():
        emb = model.identity_embedding(torch.from_numpy(fixture["x256"]))
        pre = model(torch.from_numpy(fixture["x112"]), normalize=False)
    assert_parity(emb, fixture["embedding"], "embedding")
    assert_parity(pre, fixture["embedding_prenorm"], "embedding_prenorm")
    # README's own suggestion as well: max |diff| <= 1e-5 on the unit-norm embedding.
    assert float((emb - torch.from_numpy(fixture["embedding"])).abs().max()) <= 1e-5
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-6)


def test_strict_load_names_file(tmp_path):
    sd = manifest_state_dict("irse50_backbone", keys_field="state_dict")
    sd.pop("output_layer.3.weight")
    path = tmp_path / "broken_ir_se50.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError, match="broken_ir_se50.pth") as info:
        load_irse50(path)
    assert "output_layer.3.weight" in str(info.value)


def test_input_shape_errors():
    with torch.device("meta"):
        model = IRSE50Backbone()
    with pytest.raises(ValueError, match="112"):
        model(torch.zeros(1, 3, 128, 128, device="meta"))
    with pytest.raises(ValueError, match="256"):
        id_loss_crop(torch.zeros(1, 3, 224, 224))
    assert id_loss_crop(torch.zeros(2, 3, 256, 256)).shape == (2, 3, 112, 112)
