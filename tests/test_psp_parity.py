"""Numerical parity of the pSp encoder and pSp forward with ../shared/parity/psp_encoder_ffhq.

A pSp-format checkpoint is written from the fixtures' manifests (official key names, fill.py values):
``encoder.`` keys from psp_encoder_ffhq, ``decoder.`` keys from stylegan2_ffhq1024, latent_avg repeated
to (18, 512), opts a plain dict, exactly as the fixture README describes the reference run.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_parity, manifest_state_dict, require_shared
from vidinv.models.psp import GradualStyleEncoder, load_psp, load_psp_encoder, read_psp_checkpoint

pytestmark = pytest.mark.slow  # ~1 GB encoder filled and run at 256x256, one 1024 decoder pass

OPTS = {"output_size": 1024, "encoder_type": "GradualStyleEncoder", "input_nc": 3, "label_nc": 0,
        "learn_in_w": False, "start_from_latent_avg": True}


@pytest.fixture(scope="module")
def fixture_dir():
    return require_shared("parity/psp_encoder_ffhq")


@pytest.fixture(scope="module")
def data(fixture_dir):
    return dict(np.load(fixture_dir / "inputs.npz")), dict(np.load(fixture_dir / "expected.npz"))


@pytest.fixture(scope="module")
def manifest(fixture_dir):
    return json.loads((fixture_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory, data):
    inputs, _ = data
    sd = {f"encoder.{k}": v for k, v in manifest_state_dict("psp_encoder_ffhq").items()}
    sd.update({f"decoder.{k}": v for k, v in manifest_state_dict("stylegan2_ffhq1024").items()})
    latent_avg = torch.from_numpy(inputs["latent_avg"]).repeat(18, 1)
    path = tmp_path_factory.mktemp("psp") / "psp_ffhq_encode.pt"
    torch.save({"state_dict": sd, "latent_avg": latent_avg, "opts": dict(OPTS)}, path)
    del sd
    return path


@pytest.fixture(scope="module")
def net(ckpt_path):
    return load_psp(ckpt_path)


def test_checkpoint_layout_matches_fixture(ckpt_path, manifest):
    layout = manifest["checkpoint_layout"]
    raw = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    assert sorted(raw) == sorted(layout["fixture_ckpt_top_level_keys"])
    ck = read_psp_checkpoint(ckpt_path)
    assert len(ck.encoder_state) == manifest["n_keys"] == 621
    assert len(ck.decoder_state) == 171
    assert tuple(ck.latent_avg.shape) == tuple(layout["fixture_ckpt_latent_avg_shape"]) == (18, 512)
    assert (ck.output_size, ck.n_styles, ck.input_nc, ck.start_from_latent_avg) == (1024, 18, 3, True)
    # Our encoder's own state_dict has exactly the manifest's keys and shapes, in the same order.
    with torch.device("meta"):
        ours = GradualStyleEncoder(50, "ir_se", n_styles=18, input_nc=3).state_dict()
    assert [(k, list(v.shape)) for k, v in ours.items()] == [(e["key"], e["shape"]) for e in manifest["keys"]]


def test_codes_parity(net, data):
    inputs, expected = data
    with torch.no_grad():
        codes = net.encoder(torch.from_numpy(inputs["x"]))
    assert_parity(codes, expected["codes"], "codes")


def test_psp_forward_parity(net, data):
    inputs, expected = data
    with torch.no_grad():
        img, wplus = net(torch.from_numpy(inputs["x"][:1]), resize=True, noise="const", return_latents=True)
    assert_parity(wplus, expected["psp_latent"], "psp_latent")
    assert_parity(img, expected["psp_out"], "psp_out")


def test_load_psp_encoder_alone(ckpt_path, net):
    enc, latent_avg = load_psp_encoder(ckpt_path)
    assert not enc.training
    assert tuple(latent_avg.shape) == (18, 512)
    assert torch.equal(latent_avg, net.latent_avg)
    # Same tensors as the encoder half of the full network, whose outputs are checked above.
    full = net.encoder.state_dict()
    mine = enc.state_dict()
    assert list(mine) == list(full)
    assert all(torch.equal(mine[k], full[k]) for k in full)
