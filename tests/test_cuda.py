"""The CUDA path: parity of the official-size networks on the GPU, fp16 / bf16 against fp32, batch
invariance, and ``vidinv edit --device cuda`` end to end. Every test here skips without a CUDA device;
``benchmarks/gpu_check.sh`` runs them on a GPU machine.

* fp32 parity: the 1024 generator (``../shared/parity/stylegan2_ffhq1024``, cases b, c and the edit d),
  the Feature-Style encoder (``fs_encoder_r50``: forward, ``encode`` at 1024, encoder + generator
  composite) and pSp (``psp_encoder_ffhq``: codes, forward) on CUDA, with the fixtures, weights (fill.py,
  official key layouts, read through the real loaders with ``device="cuda"``) and tolerance
  (:func:`conftest.assert_parity`: rtol 1e-4, atol 5e-5 * max|expected|) of the CPU parity tests, whose
  helpers are imported from them. TF32 is switched off for these (:func:`true_fp32`): cuDNN convolutions
  use TF32 by default on Ampere and newer GPUs, whose 10-bit mantissa (relative step 2**-10 ~ 1e-3)
  cannot meet rtol 1e-4; the fixtures are true fp32.
* fp16 / bf16: the networks under :meth:`vidinv.device.Runtime.autocast` (what ``vidinv edit
  --precision`` does) against true fp32 on the same GPU; tolerances in :data:`PRECISION_TOL`.
* batch sizes 1 / 8 / 32: the generator's edit path (:func:`vidinv.models.stylegan2.edit_image`) on a
  batch gives, per sample, the batch-1 result within the parity tolerance.
* ``vidinv edit --device cuda`` on the tiny bundle (tests/tiny_bundle.py), lossless output (``--crf 0``):
  fp32 (TF32 off) against the same command on the CPU, fp16 / bf16 against CUDA fp32.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from conftest import assert_parity, invoke_cli, manifest_state_dict, require_shared
from vidinv.device import PRECISIONS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device (torch.cuda.is_available() is False); "
                                       "run benchmarks/gpu_check.sh on a GPU machine")

#: Unit roundoff of the autocast dtypes: 2**-(significand bits) (fp16: 11 bits, bf16: 8 bits).
UNIT_ROUNDOFF = {"fp16": 2.0 ** -11, "bf16": 2.0 ** -8}
#: Error budget in units of the unit roundoff u, for the relative L2 error ||out - out_fp32|| / ||out_fp32||
#: of a network output under autocast. Why 32 u: with fp32 accumulation (tensor cores, autocast's default),
#: each layer's error is the rounding of its inputs and weights to the low dtype, ~u relative, adding up
#: over L layers in quadrature (~u sqrt(L)) and amplified by the network's conditioning. Measured through
#: this module's own cases with CPU autocast (same rounding of the inputs, fp32 accumulation; torch 2.14),
#: fill.py weights, in u for fp16 / bf16: generator edit path image 9.8 / 8.9, F_edit 12.8 / 12.0;
#: Feature-Style encoder + generator w 3.3 / 4.9, F 5.0 / 5.4, image - / 14.5 (the largest). CUDA autocast
#: also keeps activations in the low dtype between element-wise ops (bias, activation, noise, upfirdn) and
#: cuBLAS may reduce fp16 in fp16 (split-K), which the CPU does not: about 2x headroom over the largest CPU
#: measurement for that, no more.
BUDGET_U = 32
#: The resulting relative L2 tolerances (fp16: 1.6e-2, i.e. SNR >= 36 dB; bf16: 1.25e-1, SNR >= 18 dB).
#: For a natural image in [-1, 1] (RMS ~0.5) that is a PSNR (peak-to-peak 2) of about 48 / 30 dB. The
#: fill.py images are not natural (values up to ~7e3, nearly all outside [-1, 1]), so the check is on the
#: unclamped output, where saturation cannot hide an error.
PRECISION_TOL = {p: BUDGET_U * u for p, u in UNIT_ROUNDOFF.items()}


def rel_l2(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref||_2 / ||ref||_2 over the whole tensor, in float64."""
    out, ref = out.detach().double(), ref.detach().double()
    return float((out - ref).norm() / ref.norm())


def need_dtype(precision: str) -> None:
    """Skip (with the reason) bf16 on a GPU without bf16 support (before Ampere, e.g. V100)."""
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} does not support bfloat16")


def snr_db(err: float) -> float:
    """The relative L2 error as a signal-to-noise ratio in dB (-20 log10 err)."""
    return -20 * math.log10(err) if err > 0 else math.inf


@contextlib.contextmanager
def no_tf32():
    """TF32 off for matmuls and cuDNN convolutions inside the block (restored afterwards)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture
def true_fp32():
    """:func:`no_tf32` for the whole test."""
    with no_tf32():
        yield


# ------------------------------------------------------------------------------ generator, 1024
@pytest.fixture(scope="module")
def sg2(tmp_path_factory):
    """The 1024 fixture (tests/test_stylegan2_parity.py's ``Run``: pSp / rosinality files from the manifest)
    and its generator loaded from the pSp-layout file straight onto the GPU."""
    from test_stylegan2_parity import Run

    from vidinv.models.stylegan2 import load_generator

    run = Run(1024, tmp_path_factory.mktemp("sg2_cuda"))
    G, latent_avg = load_generator(run.psp_path, device="cuda")
    assert next(G.parameters()).device.type == "cuda" and latent_avg is not None
    run.G = G.eval()
    return run


def _cuda(t: torch.Tensor) -> torch.Tensor:
    return t.to("cuda")


def test_generator_fp32_parity(sg2, true_fp32):
    from test_stylegan2_parity import check

    from vidinv.models.stylegan2 import edit_image

    G, inp = sg2.G, sg2.inputs
    w, F = _cuda(inp["wplus"]), _cuda(inp["F"])
    w_edit = _cuda(torch.from_numpy(sg2.expected["w_edit"]))
    with torch.no_grad():
        image, feats = G.synthesis(w, noise="const", return_features=True)
        fs = G.synthesis(w, noise="const", feature=F, k=5, feature_scale=1.0)
        edited, f_edit = edit_image(G, w, F, w_edit, k=5, return_feature=True)
    assert image.device.type == "cuda" and image.dtype == torch.float32
    for name, out in sg2.views("image_wplus", image).items():
        check(out, sg2.expected[name], f"cuda {name}")
    check(feats[5], sg2.expected["feat5_wplus"], "cuda feat5_wplus")
    check(feats[4], sg2.expected["feat4_wplus"], "cuda feat4_wplus")
    for name, out in sg2.views("image_fs", fs).items():
        check(out, sg2.expected[name], f"cuda {name}")
    check(f_edit, sg2.expected["F_edit"], "cuda F_edit")
    for name, out in sg2.views("image_edit", edited).items():
        check(out, sg2.expected[name], f"cuda {name}")


@pytest.mark.parametrize("batch", [1, 8, 32])
def test_generator_batch_matches_batch_1(sg2, true_fp32, batch):
    """The edit path on a batch of ``batch`` distinct codes equals, per sample, the same code run alone
    (parity tolerance). The codes: the fixture's two W+ / F plus seeded perturbations, edited along a
    seeded direction."""
    from vidinv.models.stylegan2 import edit_image

    g = torch.Generator().manual_seed(batch)
    base_w, base_F = sg2.inputs["wplus"], sg2.inputs["F"]
    idx = torch.arange(batch) % base_w.shape[0]
    w = base_w[idx] + 0.1 * torch.randn(batch, *base_w.shape[1:], generator=g)
    F = base_F[idx] + 0.1 * base_F.std() * torch.randn(batch, *base_F.shape[1:], generator=g)
    w_edit = w + 0.5 * torch.randn(1, *base_w.shape[1:], generator=g)
    G = sg2.G
    with torch.no_grad():
        together = edit_image(G, _cuda(w), _cuda(F), _cuda(w_edit)).cpu()
        assert together.shape == (batch, 3, 1024, 1024)
        for i in range(batch):
            alone = edit_image(G, _cuda(w[i:i + 1]), _cuda(F[i:i + 1]), _cuda(w_edit[i:i + 1])).cpu()
            assert_parity(together[i:i + 1], alone.numpy(), f"batch {batch}, sample {i}")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_generator_low_precision_near_fp32(sg2, true_fp32, precision):
    """The edit path (full pass + coarse pass + feature-injected pass) under autocast vs true fp32:
    finite, and relative L2 error <= PRECISION_TOL[precision] on the image and the edited F."""
    from vidinv.device import Runtime
    from vidinv.models.stylegan2 import edit_image

    need_dtype(precision)
    w, F = _cuda(sg2.inputs["wplus"]), _cuda(sg2.inputs["F"])
    w_edit = _cuda(torch.from_numpy(sg2.expected["w_edit"]))
    rt = Runtime("cuda", precision)
    assert rt.precision == precision
    with torch.no_grad():
        ref, f_ref = edit_image(sg2.G, w, F, w_edit, return_feature=True)
        with rt.autocast():
            out, f_out = edit_image(sg2.G, w, F, w_edit, return_feature=True)
    _check_precision(precision, {"image": (out, ref), "F_edit": (f_out, f_ref)})


def _check_precision(precision: str, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Each (out, fp32 reference) pair: finite and relative L2 error <= PRECISION_TOL[precision]. A pair whose
    reference exceeds the dtype's largest finite value cannot be represented in it and is reported, not
    compared (the fp16 encoder + generator composite with the fill.py weights: see
    test_fs_composite_low_precision_near_fp32); at least one pair must be compared."""
    tol, dtype = PRECISION_TOL[precision], PRECISIONS[precision]
    errs, out_of_range = {}, {}
    for name, (out, ref) in pairs.items():
        assert out.shape == ref.shape, name
        peak = float(ref.abs().max())
        if peak > torch.finfo(dtype).max:
            out_of_range[name] = peak
            continue
        assert torch.isfinite(out).all(), f"{precision} {name}: non-finite values (overflow?)"
        errs[name] = rel_l2(out.float(), ref)
    print(f"{precision}: " + ", ".join(f"{k} relL2 {e:.3e} ({e / UNIT_ROUNDOFF[precision]:.1f} u, "
                                       f"SNR {snr_db(e):.1f} dB)" for k, e in errs.items())
          + f"; tolerance {tol:.3e} ({BUDGET_U} u)"
          + "".join(f"; {k} not compared: fp32 max |{k}| {v:.3g} > {torch.finfo(dtype).max:.3g}"
                    for k, v in out_of_range.items()))
    assert errs, f"{precision}: nothing compared"
    bad = {k: e for k, e in errs.items() if e > tol}
    assert not bad, f"{precision}: relative L2 error above {tol:.3e} ({BUDGET_U} u): {bad}"


# ------------------------------------------------------------------------------ encoders
@pytest.fixture(scope="module")
def fs(tmp_path_factory):
    """(encoder on CUDA, generator on CUDA, inputs, expected) of the fs_encoder_r50 fixture, both networks
    written in their official layouts and read through the real loaders, as tests/test_fs_encoder_parity.py."""
    from vidinv.models.fs_encoder import load_fs_encoder
    from vidinv.models.stylegan2 import load_generator

    d = require_shared("parity/fs_encoder_r50")
    inputs, expected = dict(np.load(d / "inputs.npz")), dict(np.load(d / "expected.npz"))
    tmp = tmp_path_factory.mktemp("fs_cuda")
    torch.save(manifest_state_dict("fs_encoder_r50"), tmp / "143_enc.pth")
    enc = load_fs_encoder(tmp / "143_enc.pth", device="cuda")
    latent_avg = torch.from_numpy(inputs["latent_avg"])
    torch.save({"state_dict": {"decoder." + k: v for k, v in manifest_state_dict("stylegan2_ffhq1024").items()},
                "latent_avg": latent_avg, "opts": {}}, tmp / "psp_ffhq_encode.pt")
    G, file_latent_avg = load_generator(tmp / "psp_ffhq_encode.pt", device="cuda")
    assert next(enc.parameters()).device.type == "cuda" and file_latent_avg is not None
    return enc, G.eval(), file_latent_avg.to("cuda"), inputs, expected


def _fs_composite(fs, precision: str | None = None):
    """x1024 (the fixture's real face) -> Trainer.encode -> G(w, F at K) on CUDA: (w, F, image)."""
    from test_fs_encoder_parity import x1024_from_uint8

    from vidinv.device import Runtime

    enc, G, latent_avg, inputs, _ = fs
    x = _cuda(x1024_from_uint8(inputs["x1024_uint8"]))
    amp = Runtime("cuda", precision).autocast() if precision else torch.autocast("cuda", enabled=False)
    with torch.no_grad(), amp:
        w, feat = enc.encode(x, latent_avg)
        img = G.synthesis(w, noise="const", feature=feat, k=enc.feature_layer, feature_scale=1.0)
    return w, feat, img


def test_fs_encoder_fp32_parity(fs, true_fp32):
    enc, _, _, inputs, expected = fs
    with torch.no_grad():
        latents, content = enc(_cuda(torch.from_numpy(inputs["x"])))
    assert latents.device.type == "cuda"
    assert_parity(latents, expected["latents"], "cuda latents")
    assert_parity(content, expected["content"], "cuda content")
    w, feat, img = _fs_composite(fs)
    assert_parity(w, expected["w_recon"], "cuda w_recon")
    assert_parity(feat, expected["content_1024"], "cuda content_1024")
    assert_parity(tF.avg_pool2d(img, 4), expected["recon_pool4"], "cuda recon_pool4")
    assert_parity(img[:, :, 480:544, 480:544], expected["recon_crop"], "cuda recon_crop")


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_fs_composite_low_precision_near_fp32(fs, true_fp32, precision):
    """Encoder + generator under autocast (the pipeline's inversion and rendering) vs true fp32 on the
    real face of the fixture: finite, relative L2 error of w, F and the image <= PRECISION_TOL.

    With the fill.py weights the encoder's F reaches ~1.7e3 and the generator, fed that F at layer 5,
    reaches ~2e8 in the image (measured on the CPU in fp32), far beyond fp16's largest value (65504): the
    fp16 image is then inf / NaN by construction, not by a fault of the code, so for fp16 only w and F are
    compared here (the fp16 image is covered by test_generator_low_precision_near_fp32, whose activations
    stay in range). Real FFHQ weights give images in about [-1, 1]."""
    need_dtype(precision)
    ref = _fs_composite(fs)
    out = _fs_composite(fs, precision)
    _check_precision(precision, dict(zip(("w", "F", "image"), zip(out, ref))))


def test_psp_fp32_parity(tmp_path, true_fp32):
    """pSp (IR-SE50 encoder + decoder) on CUDA against psp_encoder_ffhq, as tests/test_psp_parity.py."""
    from test_psp_parity import OPTS

    from vidinv.models.psp import load_psp

    d = require_shared("parity/psp_encoder_ffhq")
    inputs, expected = dict(np.load(d / "inputs.npz")), dict(np.load(d / "expected.npz"))
    sd = {f"encoder.{k}": v for k, v in manifest_state_dict("psp_encoder_ffhq").items()}
    sd.update({f"decoder.{k}": v for k, v in manifest_state_dict("stylegan2_ffhq1024").items()})
    path = tmp_path / "psp_ffhq_encode.pt"
    torch.save({"state_dict": sd, "latent_avg": torch.from_numpy(inputs["latent_avg"]).repeat(18, 1),
                "opts": dict(OPTS)}, path)
    del sd
    net = load_psp(path).to("cuda")
    x = _cuda(torch.from_numpy(inputs["x"]))
    with torch.no_grad():
        codes = net.encoder(x)
        img, wplus = net(x[:1], resize=True, noise="const", return_latents=True)
    assert codes.device.type == "cuda"
    assert_parity(codes, expected["codes"], "cuda codes")
    assert_parity(wplus, expected["psp_latent"], "cuda psp_latent")
    assert_parity(img, expected["psp_out"], "cuda psp_out")


# ------------------------------------------------------------------------------ vidinv edit, end to end
@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    from tiny_bundle import write_tiny_bundle

    h = tmp_path_factory.mktemp("tiny_home_cuda")
    write_tiny_bundle(h)
    return h


#: The first second of the clip: 25 frames of one frontal face.
E2E_CLIP, E2E_END = "greenscreen_frontal.mp4", 1.0
#: fp32 on CUDA (TF32 off) vs the CPU, lossless 8-bit output: the same networks with other kernels
#: (differences ~1e-6 relative) flip a rounding of the 8-bit colour now and then, which the YUV 4:2:0
#: round trip can spread to +-3 in RGB; at most this share of the values may differ at all.
E2E_FP32_MAX_DIFF, E2E_FP32_SHARE = 3, 0.01
#: fp16 / bf16 vs fp32 on CUDA: PSNR (peak 255) over the edited pixels (those where the fp32 output differs
#: from the input by more than 2 levels): 45 dB = RMS 1.4 levels (fp16), 35 dB = RMS 4.5 levels (bf16). The
#: same runs with CPU autocast (the proxy of PRECISION_TOL) gave 58.2 / 49.7 dB: 13-15 dB (4-5x in RMS)
#: are left for CUDA's extra roundings.
E2E_PSNR = {"fp16": 45.0, "bf16": 35.0}


def edit_frames(home, out, device: str, precision: str = "fp32") -> np.ndarray:
    """``vidinv edit <first second of E2E_CLIP> --attr smile --crf 0 --device D --precision P``; its
    decoded frames (N, H, W, 3) uint8. The confidence gate is off: the tiny generator draws no face, which
    the gate's identity check would fade out (leaving little of the networks' output in the frames)."""
    import av

    video = require_shared("videos") / E2E_CLIP
    res = invoke_cli(["edit", str(video), "-o", str(out), "--attr", "smile", "--strength", "2",
                      "--end", str(E2E_END), "--crf", "0", "--mask", "landmarks", "--gate", "off",
                      "--device", device, "--precision", precision, "-q"], home)
    assert res.exit_code == 0, (res.stdout, res.stderr, res.exception)
    with av.open(str(out)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def psnr8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of two uint8 arrays (peak 255) in dB; inf when equal."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255.0 ** 2 / mse) if mse > 0 else math.inf


@pytest.fixture(scope="module")
def cpu_frames(tiny_home, tmp_path_factory):
    with _detections():
        return edit_frames(tiny_home, tmp_path_factory.mktemp("e2e_cpu") / "cpu.mp4", "cpu")


def _detections():
    from conftest import cached_detection

    return cached_detection()


@pytest.fixture(scope="module")
def cuda_fp32_frames(tiny_home, tmp_path_factory):
    """The CUDA fp32 run, in true fp32 (:func:`no_tf32`; with TF32, the default of cuDNN convolutions on Ampere
    and newer, the face's colours would differ from the CPU's by a fraction of a level, flipping many 8-bit
    roundings)."""
    with _detections(), no_tf32():
        return edit_frames(tiny_home, tmp_path_factory.mktemp("e2e_cuda") / "cuda_fp32.mp4", "cuda")


def test_vidinv_edit_on_cuda_matches_cpu(cpu_frames, cuda_fp32_frames):
    frames = cuda_fp32_frames
    assert frames.shape == cpu_frames.shape
    # the face was edited (a pass-through differs from the input by the YUV round trip only, a level or two)
    assert np.abs(frames.astype(int) - input_frames(len(frames))).max() > 10
    diff = np.abs(frames.astype(int) - cpu_frames)
    share = float((diff > 0).mean())
    print(f"vidinv edit --device cuda: max |diff| {diff.max()} levels, {share:.2%} of the values differ from the CPU")
    assert diff.max() <= E2E_FP32_MAX_DIFF and share <= E2E_FP32_SHARE


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_vidinv_edit_on_cuda_low_precision(tiny_home, cuda_fp32_frames, tmp_path, precision):
    need_dtype(precision)
    ref = cuda_fp32_frames
    with _detections():
        frames = edit_frames(tiny_home, tmp_path / f"cuda_{precision}.mp4", "cuda", precision)
    assert frames.shape == ref.shape
    src = input_frames(len(ref))
    assert np.abs(frames.astype(int) - src).max() > 10
    edited = (np.abs(ref.astype(int) - src) > 2).any(-1)
    assert edited.any()
    p = psnr8(frames[edited], ref[edited])
    print(f"vidinv edit --device cuda --precision {precision}: PSNR {p:.1f} dB over {int(edited.sum())} edited "
          f"pixels against CUDA fp32 (max |diff| {np.abs(frames.astype(int) - ref).max()} levels)")
    assert p >= E2E_PSNR[precision]


def input_frames(n: int) -> np.ndarray:
    """The first ``n`` decoded frames of E2E_CLIP, (n, H, W, 3) uint8."""
    import av

    with av.open(str(require_shared("videos") / E2E_CLIP)) as c:
        frames = []
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            if len(frames) == n:
                break
    return np.stack(frames)
