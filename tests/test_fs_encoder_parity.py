"""Numerical parity of the Feature-Style encoder with the reference fixture ../shared/parity/fs_encoder_r50.

Weights: the manifest's OFFICIAL key names (``143_enc.pth`` layout), filled by fill.py, saved to a file
and read back through ``load_fs_encoder``. The 1024 composite (reference ``Trainer.encode`` then the
generator with F injected at layer K = 5) also uses the generator of ../shared/parity/stylegan2_ffhq1024,
saved in pSp's checkpoint layout and read through ``load_generator``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import assert_parity, manifest_state_dict, require_shared
from vidinv.models.fs_encoder import FeatureStyleEncoder, downscale, load_fs_encoder


@pytest.fixture(scope="module")
def data():
    d = require_shared("parity/fs_encoder_r50")
    return dict(np.load(d / "inputs.npz")), dict(np.load(d / "expected.npz"))


@pytest.fixture(scope="module")
def official_sd():
    return manifest_state_dict("fs_encoder_r50")


@pytest.fixture(scope="module")
def encoder(official_sd, tmp_path_factory):
    path = tmp_path_factory.mktemp("fs") / "143_enc.pth"
    torch.save(official_sd, path)
    enc = load_fs_encoder(path)
    assert not enc.training
    return enc


def x1024_from_uint8(u8: np.ndarray) -> torch.Tensor:
    """The fixture's (and reference test.py's) uint8 -> [-1, 1] conversion, (1, 3, 1024, 1024)."""
    return torch.from_numpy(u8).permute(2, 0, 1).float().div(255).sub(0.5).div(0.5)[None]


def test_state_dict_layout_is_official(official_sd):
    ours = FeatureStyleEncoder(n_styles=18, stride=2).state_dict()
    assert len(ours) == len(official_sd) == 517
    assert list(ours) == list(official_sd)  # same keys, same order as 143_enc.pth
    for k, v in official_sd.items():
        assert tuple(ours[k].shape) == tuple(v.shape), k


def test_forward_parity(encoder, data):
    inputs, expected = data
    # README: x[0] is the PIL-bilinear 256 resize of the real face, reproduced bit for bit this way.
    x0 = torch.from_numpy(inputs["x0_uint8_256"]).permute(2, 0, 1).float().div(255).sub(0.5).div(0.5)
    assert torch.equal(x0, torch.from_numpy(inputs["x"][0]))
    with torch.no_grad():
        latents, content = encoder(torch.from_numpy(inputs["x"]))  # the batch of 2, as the fixture
    assert_parity(latents, expected["latents"], "latents")
    assert_parity(content, expected["content"], "content")


@pytest.fixture(scope="module")
def encoded_1024(encoder, data):
    inputs, _ = data
    x1024 = x1024_from_uint8(inputs["x1024_uint8"])
    with torch.no_grad():
        w, feat = encoder.encode(x1024, torch.from_numpy(inputs["latent_avg"]))
    return x1024, w, feat


def test_encode_1024_parity(encoded_1024, data):
    _, expected = data
    x1024, w, feat = encoded_1024
    x256 = downscale(x1024, 2)
    assert_parity(x256, expected["x256_from_downscale"], "x256_from_downscale")
    # The README states the bilinear halvings are bit-identical to the reference.
    assert np.array_equal(x256.numpy(), expected["x256_from_downscale"])
    assert_parity(w, expected["w_recon"], "w_recon")
    assert_parity(feat, expected["content_1024"], "content_1024")


@pytest.mark.slow
def test_composite_generator_parity(encoder, data, tmp_path):
    """Trainer.encode + generator with F at layer K = 5, constant noise, feature_scale 1."""
    from vidinv.models.stylegan2 import load_generator

    inputs, expected = data
    latent_avg = torch.from_numpy(inputs["latent_avg"])
    g_sd = manifest_state_dict("stylegan2_ffhq1024")
    path = tmp_path / "psp_ffhq_encode.pt"
    torch.save({"state_dict": {"decoder." + k: v for k, v in g_sd.items()}, "latent_avg": latent_avg,
                "opts": {}}, path)
    G, file_latent_avg = load_generator(path)
    assert file_latent_avg is not None and torch.equal(file_latent_avg, latent_avg)
    G.eval()

    x1024 = x1024_from_uint8(inputs["x1024_uint8"])
    with torch.no_grad():
        w, feat = encoder.encode(x1024, file_latent_avg)
        img = G.synthesis(w, noise="const", feature=feat, k=encoder.feature_layer, feature_scale=1.0)
    assert img.shape == (1, 3, 1024, 1024)
    assert_parity(w, expected["w_recon"], "w_recon")
    assert_parity(F.avg_pool2d(img, 4), expected["recon_pool4"], "recon_pool4")
    assert_parity(img[:, :, 480:544, 480:544], expected["recon_crop"], "recon_crop")
