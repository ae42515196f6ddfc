"""Numerical parity of ArcFace IResNet-50 with the reference fixture ../shared/parity/arcface_iresnet50.

The weights come from the manifest's OFFICIAL key names (``backbone.pth`` layout), filled by fill.py,
saved to a file and read back through ``load_arcface`` (the same path as the real checkpoint).
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from conftest import assert_parity, manifest_state_dict, require_shared
from vidinv.models.iresnet import iresnet50, load_arcface

FEATURE_NAMES = ["feat_layer1", "feat_layer2", "feat_layer3", "feat_layer4", "feat_features_bn"]


@pytest.fixture(scope="module")
def fixture():
    d = require_shared("parity/arcface_iresnet50")
    return dict(np.load(d / "arcface_iresnet50.npz")), json.loads((d / "manifest.json").read_text())


@pytest.fixture(scope="module")
def official_sd():
    return manifest_state_dict("arcface_iresnet50", keys_field="state_dict")


@pytest.fixture(scope="module")
def outputs(official_sd, fixture, tmp_path_factory):
    path = tmp_path_factory.mktemp("arcface") / "backbone.pth"
    torch.save(official_sd, path)
    model = load_arcface(path)
    assert not model.training
    with torch.no_grad():
        emb_only = model(torch.from_numpy(fixture[0]["x"]))
        emb, feats = model(torch.from_numpy(fixture[0]["x"]), return_features=True)
    return emb_only, emb, feats


def test_fill_matches_manifest_hash(official_sd, fixture):
    """Our reading of fill.py gives the very weights the fixture was computed with."""
    h = hashlib.sha256()
    for k, v in official_sd.items():
        h.update(k.encode("utf-8"))
        h.update(v.numpy().tobytes())
    assert h.hexdigest() == fixture[1]["state_dict_sha256_over_keys_and_bytes"]


def test_state_dict_layout_is_official(official_sd):
    ours = iresnet50().state_dict()
    assert len(ours) == len(official_sd) == 475
    assert list(ours) == list(official_sd)  # same keys, same order as backbone.pth
    for k, v in official_sd.items():
        assert tuple(ours[k].shape) == tuple(v.shape), k


def test_embedding_parity(outputs, fixture):
    emb_only, emb, _ = outputs
    exp = fixture[0]["embedding"]
    assert_parity(emb_only, exp, "embedding")
    assert torch.equal(emb_only, emb)
    # README's extra check: per-row cosine with the reference embedding.
    cos = torch.nn.functional.cosine_similarity(emb_only.double(), torch.from_numpy(exp).double(), dim=1)
    assert float(cos.min()) > 0.99999


def test_return_features_parity(outputs, fixture):
    _, emb, feats = outputs
    assert len(feats) == len(FEATURE_NAMES)
    for name, out in zip(FEATURE_NAMES, feats):
        assert_parity(out, fixture[0][name], name)
    assert feats[-1] is emb
