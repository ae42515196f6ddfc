"""The Inverter seam (vidinv/inverters): the registry, and the Feature-Style and pSp inverters on the tiny bundle
(tests/tiny_bundle.py, official file layouts) against the networks called directly."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_bundle import tiny_fs_encoder, tiny_generator, tiny_psp_encoder, write_tiny_bundle

from vidinv.device import Runtime
from vidinv.edit import Direction, LatentEdit
from vidinv.inverters import (
    F_STORAGE_DTYPE,
    FS_ENCODER_FILE,
    GENERATOR_FILE,
    INVERTERS,
    FeatureStyleInverter,
    PSPInverter,
    build_inverter,
    inverter_class,
)
from vidinv.models.fs_encoder import FS_FEATURE_LAYER
from vidinv.models.psp import PSP_INPUT_SIZE


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return write_tiny_bundle(tmp_path_factory.mktemp("home"), directions=False)


def _crops(size: int, n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _x(crops: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def test_registry():
    assert list(INVERTERS) == ["fs", "psp", "psp-sr", "psp-front", "psp-toon", "psp-seg"]
    assert inverter_class("fs") is FeatureStyleInverter and inverter_class("psp") is PSPInverter
    for bad in ("e4e", "", None):
        with pytest.raises(ValueError, match=r"encoder must be one of \('fs', 'psp'\)"):
            inverter_class(bad)
    assert FeatureStyleInverter.feature_index == FS_FEATURE_LAYER == 5 and PSPInverter.feature_index is None
    assert FeatureStyleInverter.default_feature_shape == (512, 16, 16) and PSPInverter.default_feature_shape is None
    assert FeatureStyleInverter.weight_names() == [FS_ENCODER_FILE, GENERATOR_FILE]
    assert FeatureStyleInverter.weight_names(encoder_checkpoint="own.pth") == [GENERATOR_FILE]
    assert FeatureStyleInverter.weight_names(need_encoder=False) == [GENERATOR_FILE]
    assert PSPInverter.weight_names() == PSPInverter.weight_names(need_encoder=False) == [GENERATOR_FILE]


def test_feature_style_inverter_is_the_encoder_and_generator(paths):
    inv = build_inverter("fs", paths, Runtime("cpu"))
    G, enc = tiny_generator(), tiny_fs_encoder()
    assert isinstance(inv, FeatureStyleInverter) and inv.kind == "fs"
    assert inv.align_size == G.size == 1024 and inv.feature_shape == tuple(G.feature_shape(5)) == (8, 16, 16)
    crops = _crops(inv.align_size)
    w, F = inv.encode(crops)
    with torch.no_grad():
        w_ref, F_ref = enc.encode(_x(crops), inv.latent_avg)
    assert w.dtype == F.dtype == torch.float32 and w.shape == (2, 18, 512) and F.shape == (2, 8, 16, 16)
    assert torch.equal(w, w_ref) and torch.equal(F, F_ref.to(F_STORAGE_DTYPE).float())
    with torch.no_grad():
        assert torch.equal(inv.synthesize(w, F), G.synthesis(w, feature=F, k=5))
        d = Direction.from_array(torch.randn(18, 512, generator=torch.Generator().manual_seed(5)), "unit")
        edit = LatentEdit([(d, 1.5)])
        w_e = w + edit.delta()
        _, fe = G.synthesis(w_e, return_features=True)
        _, f0 = G.synthesis(w, return_features=True)
        torch.testing.assert_close(inv.edit(w, F, edit), G.synthesis(w_e, feature=F + fe[5] - f0[5], k=5),
                                   rtol=1e-5, atol=1e-5)


def test_psp_inverter_uses_psp_encode(paths):
    inv = build_inverter("psp", paths, Runtime("cpu"))
    G, enc = tiny_generator(), tiny_psp_encoder()
    assert isinstance(inv, PSPInverter) and inv.kind == "psp" and inv.feature_shape is None
    assert inv.align_size == PSP_INPUT_SIZE == 256 and inv.model.decoder is inv.generator
    crops = _crops(inv.align_size)
    w, F = inv.encode(crops)
    with torch.no_grad():
        w_ref = enc(_x(crops)) + inv.model.latent_avg.unsqueeze(0)  # W+ = encoder(x) + latent_avg (pSp)
    assert F is None and w.dtype == torch.float32 and torch.equal(w, w_ref)
    with torch.no_grad():
        assert torch.equal(inv.synthesize(w), G.synthesis(w))
        d = Direction.from_array(torch.randn(18, 512, generator=torch.Generator().manual_seed(6)), "unit")
        assert torch.equal(inv.edit(w, None, LatentEdit([(d, -1.0)])), G.synthesis(w - d.delta()))
    with pytest.raises(ValueError, match="the psp inverter has no feature code"):
        inv.synthesize(w, torch.zeros(2, 8, 16, 16))


def test_without_encoder(paths):
    inv = build_inverter("fs", {GENERATOR_FILE: paths[GENERATOR_FILE]}, Runtime("cpu"), need_encoder=False)
    assert inv.encoder is None and inv.generator.n_latent == 18
    with pytest.raises(RuntimeError, match="loaded without an encoder"):
        inv.encode(_crops(inv.align_size, 1))
