"""Behaviour of vidinv's StyleGAN2 generator and its ops on tiny configurations (no fixtures needed).

Numerical parity with the reference implementation is in ``test_stylegan2_parity.py``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidinv.io.checkpoints import CheckpointError, CheckpointMismatchError
from vidinv.models.ops import fused_leaky_relu, upfirdn2d
from vidinv.models.stylegan2 import (CoarseState, Generator, _channel_table, edit_image, edit_layer_count,
                                     load_generator, make_kernel)


def randomize(G: Generator, seed: int = 0) -> Generator:
    """Give every parameter and buffer N(0, 1) values (noise weights, biases and FIR kernels too),
    like the parity fill, so that noise, biases and kernel orientation all matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(G.parameters()) + list(G.buffers()):
            t.copy_(torch.randn(t.shape, generator=g))
    return G.eval()


@pytest.fixture(scope="module")
def G() -> Generator:
    return randomize(Generator(64, max_channels=32))


def wplus(G: Generator, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(seed))


def reference_forward(G: Generator, w: torch.Tensor, noise: list, features_in: list | None = None,
                      feature_scale: float = 1.0):
    """The reference (Feature-Style repo) Generator.forward loop, written out with G's layers."""
    out = G.input(w.shape[0])
    outs = [out]
    out = G.conv1(out, w[:, 0], noise[0])
    outs.append(out)
    skip = G.to_rgb1(out, w[:, 1])
    i = 1
    for conv1, conv2, noise1, noise2, to_rgb in zip(G.convs[::2], G.convs[1::2], noise[1::2], noise[2::2],
                                                    G.to_rgbs):
        if features_in is not None and features_in[i] is not None:
            out = (1 - feature_scale) * out + feature_scale * features_in[i]
        out = conv1(out, w[:, i], noise1)
        outs.append(out)
        if features_in is not None and features_in[i + 1] is not None:
            out = (1 - feature_scale) * out + feature_scale * features_in[i + 1]
        out = conv2(out, w[:, i + 1], noise2)
        outs.append(out)
        skip = to_rgb(out, w[:, i + 2], skip)
        i += 2
    return skip, outs


def const_noise(G: Generator) -> list:
    return [getattr(G.noises, f"noise_{i}") for i in range(G.num_layers)]


# ---------------------------------------------------------------------------------------- ops
def upfirdn2d_direct(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple) -> np.ndarray:
    """Literal definition: zero insertion, zero pad (negative crops), true convolution, decimation."""
    x0, x1, y0, y1 = pad if len(pad) == 4 else (pad[0], pad[1], pad[0], pad[1])
    b, c, h, w = x.shape
    u = np.zeros((b, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    u = u[:, :, max(-y0, 0):u.shape[2] - max(-y1, 0), max(-x0, 0):u.shape[3] - max(-x1, 0)]
    kh, kw = k.shape
    ho, wo = (u.shape[2] - kh) // down + 1, (u.shape[3] - kw) // down + 1
    out = np.zeros((b, c, ho, wo))
    for oy in range(ho):
        for ox in range(wo):
            patch = u[:, :, oy * down:oy * down + kh, ox * down:ox * down + kw]
            out[:, :, oy, ox] = (patch * k[::-1, ::-1]).sum(axis=(2, 3))
    return out


@pytest.mark.parametrize("up,down,pad", [
    (1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (1, 2)), (1, 1, (0, 0)),
    (1, 1, (-1, 2)), (2, 1, (-1, 0)), (1, 1, (2, 0, 1, 3)), (3, 1, (1, 1)), (1, 3, (2, 2)),
    # up > 1 runs as one transposed conv where the pads fit (the first four here), else (the last) through
    # the zero-stuffed buffer
    (2, 1, (1, 0)), (2, 1, (2, 2)), (2, 1, (0, 0, 1, 0)), (4, 1, (2, 1)), (2, 1, (3, 1))])
def test_upfirdn2d_matches_direct_definition(up, down, pad):
    g = torch.Generator().manual_seed(up * 10 + down)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    k = torch.randn(4, 3, generator=g, dtype=torch.float64)  # non-symmetric, non-square
    out = upfirdn2d(x, k, up=up, down=down, pad=pad)
    ref = upfirdn2d_direct(x.numpy(), k.numpy(), up, down, pad)
    assert out.shape == ref.shape and out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)


def test_upfirdn2d_bias_dtype_and_errors():
    x = torch.randn(2, 3, 5, 5)
    k = torch.randn(4, 4, dtype=torch.float64)  # cast to x's dtype
    bias = torch.randn(3)
    out = upfirdn2d(x, k, pad=(1, 2), bias=bias)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, upfirdn2d(x, k, pad=(1, 2)) + bias.view(1, 3, 1, 1))
    up = upfirdn2d(x, k, up=2, pad=(2, 1), bias=bias)  # the transposed-conv path
    torch.testing.assert_close(up, upfirdn2d(x, k, up=2, pad=(2, 1)) + bias.view(1, 3, 1, 1))
    ref = upfirdn2d_direct(x.double().numpy(), k.numpy(), 2, 1, (2, 1)) + bias.double().view(1, 3, 1, 1).numpy()
    np.testing.assert_allclose(up.numpy(), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="pad"):
        upfirdn2d(x, k, pad=(1, 1, 1))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        upfirdn2d(x, k, pad=(-2, -2))
    with pytest.raises(ValueError, match="B, C, H, W"):
        upfirdn2d(x[0], k)


def test_fused_leaky_relu():
    x = torch.randn(2, 5, 3, 3, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    y = x + b.view(1, 5, 1, 1)
    ref = torch.where(y >= 0, y, 0.2 * y) * math.sqrt(2)
    torch.testing.assert_close(fused_leaky_relu(x, b), ref, rtol=0, atol=1e-14)
    x2 = torch.randn(4, 5)
    torch.testing.assert_close(fused_leaky_relu(x2, b.float(), 0.1, 2.0),
                               torch.nn.functional.leaky_relu(x2 + b.float(), 0.1) * 2.0)
    torch.testing.assert_close(fused_leaky_relu(x2), torch.nn.functional.leaky_relu(x2, 0.2) * math.sqrt(2))
    with pytest.raises(ValueError):
        fused_leaky_relu(x2, torch.zeros(3))


# ---------------------------------------------------------------------------------- structure
def test_layout_and_attributes(G):
    assert (G.size, G.num_layers, G.n_latent, G.style_dim) == (64, 9, 10, 512)
    sd = G.state_dict()
    # 16 mapping + input + 5 conv1 + 4 to_rgb1 + 16 per resolution block + one noise map per layer
    assert len(sd) == 26 + 16 * 4 + 9
    assert sd["convs.0.conv.blur.kernel"].shape == (4, 4) and sd["to_rgbs.3.upsample.kernel"].shape == (4, 4)
    assert sd["noises.noise_8"].shape == (1, 1, 64, 64)
    assert all(c == 32 for c in G.channels.values())
    assert [G.feature_shape(j) for j in (0, 1, 2, 3, 4, 5, 9)] == [
        (32, 4, 4), (32, 4, 4), (32, 8, 8), (32, 8, 8), (32, 16, 16), (32, 16, 16), (32, 64, 64)]
    # the official channel table (config-f) and the FIR kernels' initial value
    assert _channel_table(2, 512, 10) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128,
                                          512: 64, 1024: 32}
    k = make_kernel([1, 3, 3, 1]) * 4
    assert torch.equal(Generator(8, max_channels=4).state_dict()["convs.0.conv.blur.kernel"], k)


def test_shapes_mapping_and_broadcast(G):
    z = torch.randn(3, 512)
    with torch.no_grad():
        w = G.mapping(z)
        assert w.shape == (3, 512)
        img, feats = G.synthesis(w, return_features=True)
        img_plus = G.synthesis(w.unsqueeze(1).repeat(1, G.n_latent, 1))
        assert G.mean_latent(16, generator=torch.Generator().manual_seed(0)).shape == (1, 512)
    assert img.shape == (3, 3, 64, 64) and img.dtype == torch.float32 and img.is_contiguous()
    assert len(feats) == G.n_latent
    for j, f in enumerate(feats):
        assert f.shape == (3, *G.feature_shape(j))
    torch.testing.assert_close(img, img_plus, rtol=0, atol=0)
    with pytest.raises(ValueError, match="W\\+"):
        G.synthesis(torch.randn(2, 5, 512))
    with pytest.raises(ValueError, match="z of shape"):
        G.mapping(torch.randn(2, 3, 512))


def test_matches_reference_forward_loop(G):
    w = wplus(G)
    with torch.no_grad():
        img, feats = G.synthesis(w, return_features=True)
        ref_img, ref_feats = reference_forward(G, w, const_noise(G))
    torch.testing.assert_close(img, ref_img, rtol=0, atol=0)
    for a, b in zip(feats, ref_feats):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ------------------------------------------------------------------------------------- noise
def test_noise_modes(G):
    w = wplus(G)
    with torch.no_grad():
        a = G.synthesis(w)  # "const" is the default
        b = G.synthesis(w, noise="const")
        c = G.synthesis(w, noise=const_noise(G))
        torch.manual_seed(0)
        r1 = G.synthesis(w, noise="random")
        r2 = G.synthesis(w, noise="random")
        fixed = G.make_noise(2, generator=torch.Generator().manual_seed(3))
        f1 = G.synthesis(w, noise=fixed)
        f2 = G.synthesis(w, noise=fixed)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.allclose(r1, r2) and not torch.allclose(r1, a)
    assert torch.equal(f1, f2) and not torch.allclose(f1, a)
    assert [t.shape for t in fixed] == [(2, 1, *getattr(G.noises, f"noise_{i}").shape[-2:])
                                       for i in range(G.num_layers)]
    with pytest.raises(ValueError, match="noise"):
        G.synthesis(w, noise="zeros")
    with pytest.raises(ValueError, match="entries"):
        G.synthesis(w, noise=const_noise(G)[:-1])


# --------------------------------------------------------------------------- feature injection
@pytest.mark.parametrize("k,scale", [(5, 1.0), (5, 0.3), (1, 1.0), (2, 0.7), (4, 1.0), (8, 1.0)])
def test_feature_injection_matches_reference(G, k, scale):
    w = wplus(G)
    Fk = torch.randn(2, *G.feature_shape(k), generator=torch.Generator().manual_seed(k))
    features_in = [None] * G.n_latent
    features_in[k] = Fk
    with torch.no_grad():
        img, feats = G.synthesis(w, feature=Fk, k=k, feature_scale=scale, return_features=True)
        ref_img, ref_feats = reference_forward(G, w, const_noise(G), features_in, scale)
        plain = G.synthesis(w)
    torch.testing.assert_close(img, ref_img, rtol=1e-6, atol=1e-6 * float(ref_img.abs().max()))
    assert not torch.allclose(img, plain)
    torch.testing.assert_close(feats[k], ref_feats[k], rtol=0, atol=0)  # the original activation


def test_feature_injection_batch_broadcast_and_errors(G):
    w = wplus(G)
    F1 = torch.randn(1, 32, 16, 16)
    with torch.no_grad():
        a = G.synthesis(w, feature=F1)
        b = G.synthesis(w, feature=F1.expand(2, -1, -1, -1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    for bad_k in (0, G.num_layers, -1):
        with pytest.raises(ValueError, match="feature index k"):
            G.synthesis(w, feature=F1, k=bad_k)
    with pytest.raises(ValueError, match="feature code"):
        G.synthesis(w, feature=torch.randn(2, 32, 8, 8), k=5)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6, 7, 8])
def test_coarse_fine_equal_full_synthesis(G, k):
    w = wplus(G)
    Fk = torch.randn(2, *G.feature_shape(k), generator=torch.Generator().manual_seed(100 + k))
    with torch.no_grad():
        _, feats = G.synthesis(w, return_features=True)
        full = G.synthesis(w, feature=Fk, k=k, feature_scale=0.8)
        G.reset_layer_count()
        state = G.coarse(w, k)
        assert G.layers_run == k
        fine = G.fine(Fk, w, state, feature_scale=0.8)
        assert G.layers_run == G.num_layers
        same = G.fine(state.feature, w, state)  # injecting the model's own feature changes nothing
        plain = G.synthesis(w)
    assert isinstance(state, CoarseState) and state.k == k
    torch.testing.assert_close(state.feature, feats[k], rtol=0, atol=0)
    expected_skip = 4 * 2 ** ((k - 1) // 2)
    assert state.skip.shape == (2, 3, expected_skip, expected_skip)
    torch.testing.assert_close(fine, full, rtol=0, atol=0)
    torch.testing.assert_close(same, plain, rtol=0, atol=0)


# ------------------------------------------------------------------------------------- edits
@pytest.mark.parametrize("k", [5, 4, 6])
def test_edit_image_equals_full_pass_formula(G, k):
    w = wplus(G)
    w_edit = w + 0.5 * torch.randn(1, G.n_latent, G.style_dim, generator=torch.Generator().manual_seed(9))
    Fk = torch.randn(2, *G.feature_shape(k), generator=torch.Generator().manual_seed(10 + k))
    with torch.no_grad():
        G.reset_layer_count()
        img, f_edit = edit_image(G, w, Fk, w_edit, k=k, return_feature=True)
        assert G.layers_run == edit_layer_count(G.num_layers, k) == G.num_layers + k
        _, feats_w = G.synthesis(w, return_features=True)
        _, feats_e = G.synthesis(w_edit, return_features=True)
        f_ref = Fk + feats_e[k] - feats_w[k]
        img_ref = G.synthesis(w_edit, feature=f_ref, k=k)
    torch.testing.assert_close(f_edit, f_ref, rtol=0, atol=0)
    torch.testing.assert_close(img, img_ref, rtol=0, atol=0)
    assert edit_layer_count(17, 5) == 22


def test_edit_without_change_reproduces_the_inversion(G):
    w = wplus(G)
    F5 = torch.randn(2, 32, 16, 16)
    with torch.no_grad():
        img, f_edit = edit_image(G, w, F5, w, return_feature=True)
        inv = G.synthesis(w, feature=F5)
        torch.manual_seed(0)
        _, f_rand = edit_image(G, w, F5, w, noise="random", return_feature=True)  # one shared draw
    torch.testing.assert_close(f_edit, F5, rtol=0, atol=1e-5)
    torch.testing.assert_close(img, inv, rtol=1e-6, atol=1e-5 * float(inv.abs().max()))
    torch.testing.assert_close(f_rand, F5, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------- forward / truncation
def test_forward_z_truncation_and_wplus(G):
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(4))
    t = torch.randn(512, generator=torch.Generator().manual_seed(5))
    t_rows = torch.randn(G.n_latent, 512, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        w = G.mapping(z)
        torch.testing.assert_close(G(z), G.synthesis(w), rtol=0, atol=0)
        torch.testing.assert_close(G(w, input_is_latent=True, truncation=0.5, truncation_latent=t),
                                   G.synthesis(t + 0.5 * (w - t)), rtol=0, atol=0)
        wp = wplus(G)
        torch.testing.assert_close(G(wp, input_is_latent=True, truncation=0.7, truncation_latent=t_rows),
                                   G.synthesis(t_rows + 0.7 * (wp - t_rows)), rtol=0, atol=0)
        torch.testing.assert_close(G(wp, input_is_latent=True, truncation=0.7, truncation_latent=t.view(1, 512)),
                                   G.synthesis(t + 0.7 * (wp - t)), rtol=0, atol=0)
        img, feats = G(wp, input_is_latent=True, return_features=True)
        assert len(feats) == G.n_latent
        torch.testing.assert_close(G([wp], input_is_latent=True), img, rtol=0, atol=0)
    with pytest.raises(ValueError, match="truncation_latent"):
        G(z, truncation=0.5)
    with pytest.raises(ValueError, match="style mixing"):
        G([wp, wp], input_is_latent=True)


# ------------------------------------------------------------------------------ dtype / device
def test_float64_and_dtype_follow_generator(G):
    w = wplus(G)
    F5 = torch.randn(2, 32, 16, 16)
    G64 = randomize(Generator(64, max_channels=32)).double()
    with torch.no_grad():
        out32 = G.synthesis(w, feature=F5)
        out64 = G64.synthesis(w.double(), feature=F5.double())
        state = G64.coarse(w.double())
        assert state.feature.dtype == torch.float64
        from_float = G64.synthesis(w, feature=F5)  # float32 codes are moved to the generator's dtype
    assert out64.dtype == torch.float64 and from_float.dtype == torch.float64
    torch.testing.assert_close(out64, from_float, rtol=0, atol=0)
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-5 * float(out64.abs().max()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(G):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    w = wplus(G)
    F5 = torch.randn(2, 32, 16, 16)
    Gc = randomize(Generator(64, max_channels=32)).cuda()
    with torch.no_grad():
        cpu = G.synthesis(w, feature=F5)
        gpu = Gc.synthesis(w.cuda(), feature=F5.cuda())
        edit = edit_image(Gc, w.cuda(), F5.cuda(), w.cuda() + 0.1)
    assert gpu.device.type == "cuda" and edit.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=5e-5 * float(cpu.abs().max()))


def test_gradients_flow_through_synthesis():
    """The in-place ops of the fused layers must keep autograd correct (encoder training)."""
    G = randomize(Generator(8, style_dim=8, n_mlp=1, max_channels=4)).double()
    w = torch.randn(1, G.n_latent, 8, dtype=torch.float64, requires_grad=True)
    F1 = torch.randn(1, *G.feature_shape(1), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda w_: G.synthesis(w_), (w,))
    assert torch.autograd.gradcheck(lambda w_, f_: G.synthesis(w_, feature=f_, k=1, feature_scale=0.5), (w, F1))


# ------------------------------------------------------------------------------- checkpoints
def _tiny_sd(seed: int = 0, **kw) -> dict:
    return randomize(Generator(**({"size": 64, "max_channels": 32} | kw)), seed).state_dict()


def test_load_generator_layouts(tmp_path, G):
    sd = G.state_dict()
    la18 = torch.randn(G.n_latent, 512)
    la = torch.randn(512)
    from vidinv.io.checkpoints import vidinv_record

    # A small pSp-layout decoder loads only with vidinv's record declaring it; without one the file is held to
    # the decoder pSp builds from opts (Generator(64, 512, 8, channel_multiplier=2)).
    psp_sd = {**{f"decoder.{k}": v for k, v in sd.items()}, "encoder.x": torch.zeros(1)}
    record = vidinv_record("psp", {"encoder": {}, "decoder": G.architecture()}, licence="test weights")
    torch.save({"state_dict": psp_sd, "latent_avg": la18, "opts": {"output_size": 64, "vidinv_config": record}},
               tmp_path / "psp.pt")
    torch.save({"state_dict": psp_sd, "latent_avg": la18, "opts": {"output_size": 64}}, tmp_path / "psp_official.pt")
    with pytest.raises(CheckpointMismatchError, match="psp_official.pt") as e:
        load_generator(tmp_path / "psp_official.pt")
    assert e.value.shape_mismatches and e.value.shape_mismatches[0][:2] == ("input.input", (1, 32, 4, 4))
    torch.save({"g_ema": sd, "g": sd, "latent_avg": la}, tmp_path / "rosinality.pt")
    torch.save(sd, tmp_path / "plain.pt")
    w = wplus(G)
    with torch.no_grad():
        ref = G.synthesis(w)
    for name, want in (("psp.pt", la18), ("rosinality.pt", la), ("plain.pt", None)):
        G2, latent_avg = load_generator(tmp_path / name)
        assert not G2.training
        assert (G2.size, G2.max_channels, G2.n_latent) == (64, 32, G.n_latent)
        assert (latent_avg is None) if want is None else torch.equal(latent_avg, want)
        with torch.no_grad():
            torch.testing.assert_close(G2.synthesis(w), ref, rtol=0, atol=0)
    G3, _ = load_generator(tmp_path / "plain.pt", dtype=torch.float64)
    assert G3.input.input.dtype == torch.float64


def test_load_generator_infers_configuration(tmp_path):
    sd = Generator(512, style_dim=64, n_mlp=3, channel_multiplier=1, max_channels=64).state_dict()
    torch.save(sd, tmp_path / "g.pt")
    G, _ = load_generator(tmp_path / "g.pt")
    assert (G.size, G.style_dim, G.n_mlp, G.channel_multiplier, G.max_channels) == (512, 64, 3, 1, 64)
    assert G.channels[512] == 32


def test_load_generator_strict_errors(tmp_path):
    sd = _tiny_sd()
    keys = list(sd)
    # truncated key set: the last entries (noise buffers) are gone
    torch.save({k: sd[k] for k in keys[:-3]}, tmp_path / "truncated.pt")
    with pytest.raises(CheckpointMismatchError) as e:
        load_generator(tmp_path / "truncated.pt")
    msg = str(e.value)
    assert "truncated.pt" in msg and "3 missing key(s)" in msg and "noises.noise_8" in msg
    # one renamed key
    renamed = {("to_rgb1.biass" if k == "to_rgb1.bias" else k): v for k, v in sd.items()}
    torch.save(renamed, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointMismatchError) as e:
        load_generator(tmp_path / "renamed.pt")
    assert "missing key(s), first: to_rgb1.bias" in str(e.value)
    assert "unexpected key(s), first: to_rgb1.biass" in str(e.value)
    # wrong configuration requested
    torch.save(sd, tmp_path / "ok.pt")
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        load_generator(tmp_path / "ok.pt", max_channels=16)
    with pytest.raises(CheckpointMismatchError, match="unexpected"):
        load_generator(tmp_path / "ok.pt", size=32)
    # a file cut short on disk, a non-generator dict and a pSp file without a decoder
    raw = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_generator(tmp_path / "cut.pt")
    torch.save({"module.conv1.conv.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no StyleGAN2 generator found"):
        load_generator(tmp_path / "other.pt")
    torch.save({"state_dict": {"encoder.a": torch.zeros(1)}, "latent_avg": torch.zeros(512)}, tmp_path / "enc.pt")
    with pytest.raises(CheckpointError, match="no 'decoder.' entries"):
        load_generator(tmp_path / "enc.pt")
