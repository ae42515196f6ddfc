"""The generator's eager fast path (cached demodulation terms, per-resolution memory layout) and the compiled
back-ends, ONNX Runtime and OpenVINO (:mod:`vidinv.models.export`, ``vidinv export onnx``, ``--backend``), on a
tiny generator and on the 256 parity fixture."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from conftest import assert_parity, invoke_cli
from vidinv.models import export as ex
from vidinv.models.stylegan2 import Generator, ModulatedConv2d, edit_image

needs_onnx = pytest.mark.skipif(not ex.onnx_available(), reason="onnx extra not installed (pip install 'vidinv[onnx]')")
#: Both compiled runtimes, each skipped with its reason where its extra is not installed.
RUNTIMES = [pytest.param(name, marks=pytest.mark.skipif(not ex.onnx_available(name), reason=f"{name} extra not installed "
                                                        f"(pip install 'vidinv[{name}]')")) for name in ex.RUNTIMES]


def tiny(seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    G = Generator(32, 64, 2, max_channels=32).eval()
    with torch.no_grad():  # non-trivial noise weights and biases, so that every term shows up
        for name, p in G.named_parameters():
            if name.endswith("noise.weight") or name.endswith("bias"):
                p.normal_(0, 0.3)
    return G


def inputs(G: Generator, b: int = 2):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(b, G.n_latent, G.style_dim, generator=g)
    F = torch.randn(b, *G.feature_shape(5), generator=g)
    return w, F, w + 0.5 * torch.randn(1, G.n_latent, G.style_dim, generator=g)


def reference_modconv(conv: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The StyleGAN2 modulated conv written out (rosinality's grouped form), 3x3, no upsampling."""
    b, c, h, w = x.shape
    s = conv.modulation(style).view(b, 1, c, 1, 1)
    weight = conv.scale * conv.weight * s
    if conv.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(b, -1, 1, 1, 1)
    weight = weight.view(b * conv.out_channel, c, 3, 3)
    out = torch.nn.functional.conv2d(x.reshape(1, b * c, h, w), weight, padding=1, groups=b)
    return out.view(b, conv.out_channel, h, w)


def test_cached_terms_follow_in_place_weight_changes():
    """The demodulation sums are cached per weight version: an optimiser step, a copy_ or load_state_dict made
    after a no-grad forward are seen by the next forward (equal to a fresh generator with those weights)."""
    G = tiny()
    w, _, _ = inputs(G)
    with torch.no_grad():
        before = G.synthesis(w)
    opt = torch.optim.SGD(G.parameters(), lr=0.1)
    G.synthesis(w).square().mean().backward()
    opt.step()
    with torch.no_grad():
        after = G.synthesis(w)
        fresh = copy.deepcopy(G)
        for m in fresh.modules():
            if isinstance(m, ModulatedConv2d):
                m._terms_cache = None
        assert not torch.equal(before, after)
        assert torch.equal(after, fresh.synthesis(w))
        G.load_state_dict(tiny(seed=3).state_dict())
        assert torch.equal(G.synthesis(w), tiny(seed=3).synthesis(w))
        G.convs[1].conv.weight.mul_(2.0)  # in place under no_grad: a new version
        ref = tiny(seed=3)
        ref.convs[1].conv.weight.data.mul_(2.0)
        assert torch.equal(G.synthesis(w), ref.synthesis(w))


def test_modulated_conv_gradients_match_the_written_out_form():
    """Training path (weights require grad): the forward and the gradients w.r.t. weight, style and input equal
    those of the plain formula, in float64."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(8, 6, 3, 16).double()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    style = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        conv(x, style)  # fills the cache: it must not be used while the weight needs a gradient
    out = conv(x, style)
    ref = reference_modconv(conv, x, style)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    grads = torch.autograd.grad((out * g).sum(), [conv.weight, style, x])
    grads_ref = torch.autograd.grad((ref * g).sum(), [conv.weight, style, x])
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)


def test_frozen_generator_gradients_through_w_use_the_cache_safely():
    """A frozen generator (inversion by optimisation): gradients reach w whether or not the cache was filled,
    also when it was filled under inference_mode."""
    G = tiny()
    w, _, _ = inputs(G, 1)
    w1 = w.clone().requires_grad_(True)
    G.synthesis(w1).sum().backward()  # weights require grad: uncached path
    G.requires_grad_(False)
    with torch.inference_mode():
        G.synthesis(w)
    w2 = w.clone().requires_grad_(True)
    G.synthesis(w2).sum().backward()
    torch.testing.assert_close(w2.grad, w1.grad)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_onnx_backend_matches_eager_and_falls_back(tmp_path, runtime):
    G = tiny()
    w, F, w_edit = inputs(G)
    with torch.no_grad():
        full, fs, edit = G.synthesis(w), G.synthesis(w, feature=F, k=5), edit_image(G, w, F, w_edit)
        st = G.coarse(w)
    lines: list[str] = []
    be = ex.build_backend(G, 5, cache_dir=tmp_path, log=lines.append, runtime=runtime)
    assert len(lines) == 1 and lines[0].startswith(f"vidinv: {runtime} back-end ready in ") and "export" in lines[0]
    G.backend = be
    with torch.no_grad():
        G.reset_layer_count()
        assert_parity(G.synthesis(w), full.numpy(), "onnx synthesis")
        assert_parity(G.synthesis(w, feature=F, k=5), fs.numpy(), "onnx synthesis with F")
        assert G.layers_run == 2 * G.num_layers
        G.reset_layer_count()
        assert_parity(edit_image(G, w, F, w_edit), edit.numpy(), "onnx edit")
        assert G.layers_run == G.num_layers + 5
        st2 = G.coarse(w)
        assert_parity(st2.feature, st.feature.numpy(), "onnx coarse")
        assert_parity(G.fine(F, w, st2, feature_scale=0.5), G.fine(F, w, st, feature_scale=0.5).numpy(), "fine s")
        # calls the export does not cover run eagerly: random noise, another k, features, grad through w
        assert be.usable(G, "const", (w,))
        assert not be.usable(G, "random", (w,))
        assert not be.usable(G, G.make_noise(2), (w,))
        img, feats = G.synthesis(w, return_features=True)
        assert torch.equal(img, full) and len(feats) == G.n_latent  # eager: bit-equal to the eager image
    wg = w.clone().requires_grad_(True)
    G.requires_grad_(False)
    G.synthesis(wg).sum().backward()
    assert wg.grad is not None
    # changed weights: the sessions hold the old ones, so the generator runs eagerly again
    with torch.no_grad():
        G.convs[0].conv.weight.mul_(1.5)
        assert not be.usable(G, "const", (w,))
        G.backend = None
        changed = G.synthesis(w)
        G.backend = be
        assert torch.equal(G.synthesis(w), changed)
    # the same weights again: the export is found in the cache
    lines.clear()
    ex.build_backend(tiny(), 5, cache_dir=tmp_path, log=lines.append, runtime=runtime)
    assert "cached export" in lines[0]


@needs_onnx
def test_auto_uses_onnx_only_where_measured_faster(tmp_path):
    G = tiny()
    assert ex.choose_backend(G, "auto", frames=10_000, cache_dir=tmp_path) == "eager"  # nothing exported
    be = ex.build_backend(G, 5, cache_dir=tmp_path, log=None)
    folder = be.folder
    assert folder is not None
    rec = ex.measure_backend(G, be, folder, repeats=1, sessions_s=2.0)
    assert set(rec) == {"eager_s", "onnx_s", "onnx_sessions_s", "threads"} and rec["onnx_s"] > 0
    assert rec["onnx_sessions_s"] == 2.0
    for eager_s, onnx_s, frames, want in ((3.0, 2.0, 2, "onnx"), (3.0, 2.0, 1, "eager"), (2.0, 3.0, 10_000, "eager"),
                                          (3.0, 2.0, None, "eager")):
        (folder / ex.TIMING_FILE).write_text(json.dumps({**rec, "eager_s": eager_s, "onnx_s": onnx_s}))
        assert ex.choose_backend(G, "auto", frames=frames, cache_dir=tmp_path) == want
    # both runtimes measured: the one saving the most seconds on the clip (start included) wins
    both = {**rec, "eager_s": 3.0, "onnx_s": 2.0, "onnx_sessions_s": 0.5, "openvino_s": 1.0, "openvino_sessions_s": 4.0}
    (folder / ex.TIMING_FILE).write_text(json.dumps(both))
    ov = "openvino" if ex.onnx_available("openvino") else "onnx"  # an uninstalled runtime is never picked
    assert ex.choose_backend(G, "auto", frames=2, cache_dir=tmp_path) == "onnx"  # 2*1-0.5 > 2*2-4
    assert ex.choose_backend(G, "auto", frames=100, cache_dir=tmp_path) == ov
    assert ex.choose_backend(G, "eager", frames=10, cache_dir=tmp_path) == "eager"
    with pytest.raises(ValueError, match="unknown back-end"):
        ex.choose_backend(G, "tensorrt", cache_dir=tmp_path)
    with pytest.raises(ex.BackendUnavailable, match="float32"):
        ex.build_backend(tiny().double(), cache_dir=tmp_path)


@needs_onnx
def test_cli_export_onnx(tmp_path):
    G = tiny()
    path = tmp_path / "gen.pt"
    torch.save(G.state_dict(), path)
    r = invoke_cli(["export", "onnx", "--generator", str(path), "--no-measure"], tmp_path / "home")
    assert r.exit_code == 0, r.output
    assert "vidinv: onnx back-end ready in " in r.stderr
    folder = tmp_path / "home" / "onnx" / ex.weights_key(G)
    assert f"export: {folder}" in r.stdout
    assert (folder / "coarse.onnx").is_file() and (folder / "fine.onnx").is_file()


def test_missing_onnx_packages_name_the_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    gone = {"onnxruntime", "openvino"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in gone else real(name, *a))
    with pytest.raises(ex.BackendUnavailable, match=r"pip install 'vidinv\[onnx\]'"):
        ex.require_onnx()
    with pytest.raises(ex.BackendUnavailable, match=r"^the openvino back-end needs openvino: pip install 'vidinv\[openvino\]'$"):
        ex.require_onnx("openvino")
    assert ex.choose_backend(tiny(), "auto", frames=10_000, cache_dir=tmp_path) == "eager"
    path = tmp_path / "gen.pt"
    torch.save(tiny().state_dict(), path)
    r = invoke_cli(["export", "onnx", "--generator", str(path)], tmp_path / "home")
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [  # neither runtime: the message names the onnx extra
        "vidinv: error: the onnx back-end needs onnxruntime: pip install 'vidinv[onnx]'"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_onnx_backend_parity_fixture_256(tmp_path, runtime):
    """The 256 parity fixture (official key names and shapes, ``fill.py`` weights) through ONNX Runtime: cases b
    (W+ synthesis) and c (feature code injected at 5), at the fixtures' tolerance. (The 1024 export alone takes
    longer than this suite allows per test on 2 cores.)"""
    from test_stylegan2_parity import Run

    run = Run(256, tmp_path)
    assert ex.attach_backend(run.G, runtime, cache_dir=tmp_path / "onnx") == runtime
    with torch.no_grad():
        image = run.G.synthesis(run.inputs["wplus"], noise="const")
        fs = run.G.synthesis(run.inputs["wplus"], noise="const", feature=run.inputs["F"], k=5)
    assert_parity(image, run.expected["image_wplus"], f"{runtime} image_wplus")
    assert_parity(fs, run.expected["image_fs"], f"{runtime} image_fs")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_edit_job_with_backend_onnx(tmp_path, runtime):
    """`vidinv edit --backend onnx` (and `openvino`) on the tiny bundle: the export goes to $VIDINV_HOME/onnx and
    its cost is one stderr line; the edit completes."""
    import os
    import subprocess
    import sys

    from conftest import REPO, require_shared
    from tiny_bundle import write_tiny_bundle

    video = require_shared("videos") / "greenscreen_frontal.mp4"
    home = tmp_path / "home"
    write_tiny_bundle(home)
    out = tmp_path / "out.mp4"
    env = {**os.environ, "VIDINV_HOME": str(home),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "vidinv.cli", "edit", str(video), "-o", str(out), "--attr", "stit:age",
                        "--start", "0", "--end", "0.04", "--backend", runtime, "-q"], capture_output=True, text=True,
                       timeout=600, env=env, cwd=REPO)
    assert p.returncode == 0, p.stderr
    ready = [ln for ln in p.stderr.splitlines() if ln.startswith(f"vidinv: {runtime} back-end ready in ")]
    assert len(ready) == 1 and str(home / "onnx") in ready[0], p.stderr
    assert out.is_file() and len(list((home / "onnx").glob("*/fine.onnx"))) == 1
