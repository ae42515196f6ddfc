"""Numerical parity of vidinv's StyleGAN2 generator with the reference (Feature-Style repo's
rosinality generator), on the fixtures ``../shared/parity/stylegan2_ffhq1024`` and ``stylegan2_256``.

The weights are made by ``fill.py`` from the OFFICIAL key names and shapes in each manifest (not
from our model), written to disk in the pSp and rosinality checkpoint layouts and read back through
:func:`vidinv.models.stylegan2.load_generator`. Cases (see the fixture READMEs):

a. mapping z -> w;  b. W+ synthesis with the feature list;  c. feature code injected at index 5;
d. (1024 only) the Smiling edit F_edit = F + f5(w_edit) - f5(w), by the fast coarse/fine path and
by the plain full-pass formula; plus the natural-FIR-kernel variant of b (and c at 256).

Full 1024 syntheses take seconds on the CPU, so each output is computed once per module
(cached on the module-scoped ``run`` fixture).
"""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from conftest import assert_parity, manifest_state_dict, require_shared
from vidinv.models.stylegan2 import Generator, edit_image, edit_layer_count, load_generator

FIXTURES = {256: "stylegan2_256", 1024: "stylegan2_ffhq1024"}


def check(out: torch.Tensor, exp: np.ndarray, name: str) -> None:
    """``assert_parity`` plus a line with the max |diff| relative to the allowed atol (see -rP)."""
    o = out.detach().cpu().double().numpy()
    atol = 5e-5 * float(np.abs(exp).max())
    print(f"{name:>28}: max|diff| {np.abs(o - exp).max():.3e}  (atol {atol:.3e}, max|exp| {np.abs(exp).max():.3e})")
    assert_parity(out, exp, name)


class Run:
    """One fixture: files on disk, the loaded generator, inputs, expected arrays, cached outputs."""

    def __init__(self, size: int, tmp):
        self.size = size
        self.fixture = FIXTURES[size]
        folder = require_shared(f"parity/{self.fixture}")
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.inputs = {k: torch.from_numpy(v) for k, v in np.load(folder / "inputs.npz").items()}
        self.expected = dict(np.load(folder / "expected.npz"))
        self.expected_natural = dict(np.load(folder / "expected_natural_kernels.npz"))
        self.sd = manifest_state_dict(self.fixture)
        n_latent = self.manifest["n_latent"]
        g = torch.Generator().manual_seed(1234)
        self.latent_avg_psp = torch.randn(n_latent, 512, generator=g)
        self.latent_avg_ros = torch.randn(512, generator=g)
        self.psp_path = tmp / "psp_ffhq_encode.pt"
        torch.save({"state_dict": {**{f"decoder.{k}": v for k, v in self.sd.items()},
                                   "encoder.input_layer.0.weight": torch.zeros(64, 3, 3, 3)},
                    "latent_avg": self.latent_avg_psp,
                    "opts": {"encoder_type": "GradualStyleEncoder", "output_size": size,
                             "start_from_latent_avg": True}},
                   self.psp_path)
        self.ros_path = tmp / "stylegan2-ffhq-config-f.pt"
        torch.save({"g_ema": self.sd, "latent_avg": self.latent_avg_ros}, self.ros_path)
        self.G, self.psp_latent_avg_loaded = load_generator(self.psp_path)

    def views(self, prefix: str, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The stored views of an image: full at 256; 4x average pool and centre 64x64 crop at 1024."""
        if self.size == 1024:
            return {f"{prefix}_pool4": tF.avg_pool2d(image, 4), f"{prefix}_crop": image[:, :, 480:544, 480:544]}
        return {prefix: image}

    @functools.cached_property
    def case_b(self):
        with torch.no_grad():
            return self.G.synthesis(self.inputs["wplus"], noise="const", return_features=True)

    @functools.cached_property
    def case_c(self):
        with torch.no_grad():
            return self.G.synthesis(self.inputs["wplus"], noise="const", feature=self.inputs["F"], k=5,
                                    feature_scale=1.0)

    @functools.cached_property
    def natural(self):
        """Case b (and c at 256) with the FIR kernel buffers set back to the [1,3,3,1] kernel."""
        sd = dict(self.sd)
        for key in self.manifest["fir_kernel_buffer_keys"]:
            field = "natural_blur_kernel" if key.endswith("blur.kernel") else "natural_upsample_kernel"
            sd[key] = torch.tensor(self.manifest[field], dtype=torch.float32)
        path = self.psp_path.parent / "generator_natural_kernels.pt"
        torch.save(sd, path)  # plain generator state_dict, the third accepted layout
        G, latent_avg = load_generator(path)
        assert latent_avg is None
        with torch.no_grad():
            img, feats = G.synthesis(self.inputs["wplus"], return_features=True)
            out = {**self.views("image_wplus", img), "feat5_wplus": feats[5], "feat4_wplus": feats[4]}
            if any(k.startswith("image_fs") for k in self.expected_natural):
                out.update(self.views("image_fs", G.synthesis(self.inputs["wplus"], feature=self.inputs["F"], k=5)))
        return out


@pytest.fixture(scope="module", params=[256, 1024], ids=["256", "1024"])
def run(request, tmp_path_factory):
    return Run(request.param, tmp_path_factory.mktemp(f"sg2_{request.param}"))


def test_official_layout(run):
    man = run.manifest
    G = run.G
    assert (G.size, G.num_layers, G.n_latent, G.style_dim) == (run.size, man["num_layers"], man["n_latent"], 512)
    ours = {k: tuple(v.shape) for k, v in Generator(run.size).state_dict().items()}
    official = {e["key"]: tuple(e["shape"]) for e in man["keys"]}
    assert len(ours) == man["n_keys"] == len(official)
    assert ours == official
    loaded = G.state_dict()
    for k, v in run.sd.items():  # every entry, FIR kernels and noise buffers included
        assert torch.equal(loaded[k], v), k


def test_both_official_layouts_load(run):
    assert torch.equal(run.psp_latent_avg_loaded, run.latent_avg_psp)
    G2, latent_avg = load_generator(run.ros_path)
    assert torch.equal(latent_avg, run.latent_avg_ros)
    sd2 = G2.state_dict()
    assert list(sd2) == list(run.G.state_dict())
    for k, v in run.G.state_dict().items():
        assert torch.equal(sd2[k], v), k
    with torch.no_grad():
        check(G2.mapping(run.inputs["z"]), run.expected["w_from_z"], "w_from_z (rosinality file)")


def test_case_a_mapping(run):
    with torch.no_grad():
        w = run.G.mapping(run.inputs["z"])
    check(w, run.expected["w_from_z"], "w_from_z")


def test_case_b_wplus(run):
    image, feats = run.case_b
    assert image.shape == (2, 3, run.size, run.size) and image.dtype == torch.float32
    assert len(feats) == run.manifest["n_latent"]
    for name, out in run.views("image_wplus", image).items():
        check(out, run.expected[name], name)
    check(feats[5], run.expected["feat5_wplus"], "feat5_wplus")
    check(feats[4], run.expected["feat4_wplus"], "feat4_wplus")


def test_case_c_feature_injection(run):
    for name, out in run.views("image_fs", run.case_c).items():
        check(out, run.expected[name], name)


@pytest.mark.parametrize("run", [1024], indirect=True, ids=["1024"])  # case d is stored at 1024 only
def test_case_d_edit_fast_path(run):
    G = run.G
    w_edit = torch.from_numpy(run.expected["w_edit"])
    G.reset_layer_count()
    with torch.no_grad():
        image, f_edit = edit_image(G, run.inputs["wplus"], run.inputs["F"], w_edit, k=5, return_feature=True)
    assert G.layers_run == edit_layer_count(G.num_layers, 5) == 17 + 5
    check(f_edit, run.expected["F_edit"], "F_edit")
    for name, out in run.views("image_edit", image).items():
        check(out, run.expected[name], name)


@pytest.mark.parametrize("run", [1024], indirect=True, ids=["1024"])
def test_case_d_edit_plain_formula(run):
    """The same edit with full passes: F + feat5(w_edit) - feat5(w), then a feature-injected synthesis.

    Done on sample 0 only (two extra full 1024 passes); sample 1 is covered by the fast path.
    """
    G = run.G
    w_edit = torch.from_numpy(run.expected["w_edit"][:1])
    with torch.no_grad():
        _, feats_edit = G.synthesis(w_edit, return_features=True)
        f_edit = run.inputs["F"][:1] + feats_edit[5] - run.case_b[1][5][:1]
        image = G.synthesis(w_edit, feature=f_edit, k=5)
    check(f_edit, run.expected["F_edit"][:1], "F_edit (full passes)")
    for name, out in run.views("image_edit", image).items():
        check(out, run.expected[name][:1], f"{name} (full passes)")


def test_natural_kernels(run):
    out = run.natural
    assert set(out) == set(run.expected_natural)
    for name, exp in run.expected_natural.items():
        check(out[name], exp, f"natural {name}")
