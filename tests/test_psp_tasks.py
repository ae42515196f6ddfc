"""pSp task models (issue 10 foundation): the opts-driven strict loader, style mixing, SR degradation.

Tiny task checkpoints are written in pSp's layout (``{"state_dict": encoder.* + decoder.*, "latent_avg",
"opts"}``) with the ``opts`` the official files carry (``input_nc``/``label_nc`` 19 for segmentation, 1 for
sketches, 3 for super-resolution with ``resize_factors``). Their networks are small, so, like
tests/tiny_bundle.py's pSp file, they carry the vidinv record (``opts['vidinv_config']``) declaring the
architecture; files without one are held to the official IR-SE50 architecture.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_bundle import TASKS, TINY_PSP_ENCODER, task_checkpoint, tiny_generator

from vidinv.edit.mixing import mix_styles, parse_rows
from vidinv.io.checkpoints import CheckpointError, CheckpointMismatchError
from vidinv.models.psp import PspTaskOptions, load_psp_task, psp_task_options
from vidinv.models.sr_degradation import bicubic_downsample, bicubic_kernel, simulate_low_resolution


@pytest.fixture(scope="module")
def generator():
    return tiny_generator()


_task_ckpt = task_checkpoint


def _write(tmp_path, ck: dict, name: str):
    path = tmp_path / name
    torch.save(ck, path)
    return path


# ------------------------------------------------------------------------------------------------ loader

@pytest.mark.parametrize("name,input_nc,label_nc,dataset_type,factors", TASKS)
def test_task_checkpoint_loads_by_its_opts(tmp_path, generator, name, input_nc, label_nc, dataset_type, factors):
    ck = _task_ckpt(generator, input_nc, label_nc, dataset_type, factors, name)
    path = _write(tmp_path, ck, name)
    net, opts = load_psp_task(path)
    assert isinstance(opts, PspTaskOptions)
    assert (opts.input_nc, opts.label_nc, opts.output_size, opts.dataset_type) == (input_nc, label_nc, 1024,
                                                                                   dataset_type)
    assert opts.start_from_latent_avg and not opts.learn_in_w and opts.encoder_type == "GradualStyleEncoder"
    assert opts.resize_factors == (None if factors is None else tuple(int(f) for f in factors.split(",")))
    assert not net.training and net.encoder.input_nc == input_nc
    assert tuple(net.encoder.input_layer[0].weight.shape[:2]) == (TINY_PSP_ENCODER["widths"][0], input_nc)
    # every tensor came from the file
    sd = net.state_dict()
    for k, v in ck["state_dict"].items():
        assert torch.equal(sd[k], v), k
    x = torch.rand(1, input_nc, 256, 256) * 2 - 1
    with torch.no_grad():
        w = net.encode(x)
    assert tuple(w.shape) == (1, 18, 512)
    with pytest.raises(ValueError, match=rf"\(B, {input_nc}, 256, 256\)"):
        net.encode(torch.zeros(1, 3 if input_nc != 3 else 1, 256, 256))


def test_missing_key_is_named(tmp_path, generator):
    ck = _task_ckpt(generator, 19, 19, "celebs_seg_to_face", None, "psp_celebs_seg_to_face.pt")
    del ck["state_dict"]["encoder.styles.17.linear.bias"]
    path = _write(tmp_path, ck, "psp_celebs_seg_to_face.pt")
    with pytest.raises(CheckpointMismatchError) as info:
        load_psp_task(path)
    assert info.value.missing == ["styles.17.linear.bias"]
    assert "styles.17.linear.bias" in str(info.value) and "psp_celebs_seg_to_face.pt" in str(info.value)


def test_input_layer_must_have_input_nc_channels(tmp_path, generator):
    """A sketch file (input_nc 1) whose input layer reads 3 channels fails the strict load on that key."""
    ck = _task_ckpt(generator, 1, 1, "celebs_sketch_to_face", None, "psp_celebs_sketch_to_face.pt")
    w = ck["state_dict"]["encoder.input_layer.0.weight"]
    ck["state_dict"]["encoder.input_layer.0.weight"] = w.repeat(1, 3, 1, 1)
    path = _write(tmp_path, ck, "psp_celebs_sketch_to_face.pt")
    with pytest.raises(CheckpointMismatchError) as info:
        load_psp_task(path)
    assert [m[0] for m in info.value.shape_mismatches] == ["input_layer.0.weight"]


def test_record_must_agree_with_opts(tmp_path, generator):
    ck = _task_ckpt(generator, 3, 0, "celebs_super_resolution", "8", "sr.pt")
    ck["opts"]["input_nc"] = 1
    ck["opts"]["label_nc"] = 1
    path = _write(tmp_path, ck, "sr.pt")
    with pytest.raises(CheckpointError, match=r"input_nc=3, but opts\['input_nc'\] is 1"):
        load_psp_task(path)


@pytest.mark.parametrize("change,named", [
    ({"learn_in_w": True}, ["learn_in_w=True"]),
    ({"encoder_type": "BackboneEncoderUsingLastLayerIntoW"}, ["encoder_type='BackboneEncoderUsingLastLayerIntoW'"]),
    ({"output_size": 256}, ["output_size=256"]),
    ({"label_nc": 19}, ["label_nc=19 with input_nc=3"]),
    ({"resize_factors": "1,x"}, ["resize_factors='1,x'"]),
    ({"learn_in_w": True, "output_size": 512}, ["learn_in_w=True", "output_size=512"]),
])
def test_unsupported_options_fail_in_one_line(tmp_path, generator, change, named):
    ck = _task_ckpt(generator, 3, 0, "celebs_super_resolution", None, "task.pt")
    ck["opts"].update(change)
    path = _write(tmp_path, ck, "task.pt")
    with pytest.raises(CheckpointError) as info:
        load_psp_task(path)
    msg = str(info.value)
    assert "\n" not in msg and "task.pt" in msg and "unsupported pSp task option" in msg
    for n in named:
        assert n in msg


def test_task_file_needs_opts(tmp_path, generator):
    ck = _task_ckpt(generator, 3, 0, "celebs_super_resolution", None, "task.pt")
    del ck["opts"]
    path = _write(tmp_path, ck, "task.pt")
    with pytest.raises(CheckpointError, match="no 'opts'"):
        load_psp_task(path)


def test_task_options_defaults_follow_psp():
    o = psp_task_options({"dataset_type": "ffhq_frontalize"}, has_latent_avg=True)
    assert (o.input_nc, o.label_nc, o.output_size, o.learn_in_w, o.resize_factors) == (3, 0, 1024, False, None)
    assert o.start_from_latent_avg
    assert not psp_task_options({}, has_latent_avg=False).start_from_latent_avg
    assert psp_task_options({"resize_factors": "8"}).resize_factors == (8,)
    with pytest.raises(CheckpointError, match=r"input_nc='3' \(not an integer\)"):
        psp_task_options({"input_nc": "3"})


# ------------------------------------------------------------------------------------------ style mixing

def test_mix_styles_hand_computed():
    codes = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]])
    inject = torch.tensor([[[10.0, 20.0], [30.0, 40.0], [50.0, 60.0], [70.0, 80.0]]])
    before = codes.clone()
    out = mix_styles(codes, inject, [1, 3], alpha=0.25)
    # rows 1 and 3: 0.25 * inject + 0.75 * codes; rows 0 and 2 unchanged
    expected = torch.tensor([[[1.0, 2.0], [9.75, 13.0], [5.0, 6.0], [22.75, 26.0]]])
    assert torch.equal(out, expected)
    assert torch.equal(codes, before)  # not modified in place
    replaced = torch.tensor([[[1.0, 2.0], [30.0, 40.0], [5.0, 6.0], [70.0, 80.0]]])
    assert torch.equal(mix_styles(codes, inject, [3, 1], alpha=1.0), replaced)
    assert torch.equal(mix_styles(codes, inject, [1, 3], alpha=None), replaced)
    assert torch.equal(mix_styles(codes, inject, [], alpha=0.5), codes)
    # one injected style for a batch of two
    two = torch.cat([codes, codes + 1])
    out2 = mix_styles(two, inject, [0], alpha=0.5)
    assert torch.equal(out2[:, 0], torch.tensor([[5.5, 11.0], [6.0, 11.5]]))
    assert torch.equal(out2[:, 1:], two[:, 1:])


def test_mix_styles_errors():
    codes = torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match="out of range"):
        mix_styles(codes, codes, [4])
    with pytest.raises(ValueError, match="alpha"):
        mix_styles(codes, codes, [0], alpha=1.5)
    with pytest.raises(ValueError, match="inject"):
        mix_styles(codes, torch.zeros(1, 3, 2), [0])


def test_parse_rows():
    assert parse_rows("8-17") == list(range(8, 18))
    assert parse_rows("1-3,9,2") == [1, 2, 3, 9]
    for bad in ("", "a", "5-3", "17-18", "-1"):
        with pytest.raises(ValueError):
            parse_rows(bad)


# --------------------------------------------------------------------------------------- SR degradation

def test_bicubic_kernel_hand_values():
    # factor 1: taps at -1.5, -0.5, 0.5, 1.5 of the Keys cubic (a = -0.5): -1/16, 9/16, 9/16, -1/16 (sum 1)
    assert torch.equal(bicubic_kernel(1), torch.tensor([-0.0625, 0.5625, 0.5625, -0.0625]))
    # factor 2: taps at +-0.125, +-0.375, +-0.625, +-0.875 times 2 ... i.e. cubic(+-0.25, 0.75, 1.25, 1.75) / 2
    half = [-0.0234375, -0.0703125, 0.2265625, 0.8671875]
    expected = torch.tensor(half + half[::-1]) / 2
    assert torch.allclose(bicubic_kernel(2), expected, rtol=0, atol=1e-7)
    with pytest.raises(ValueError):
        bicubic_kernel(0)


def test_bicubic_downsample_hand_example():
    """Rows [0, 0, 1, 1], factor 1: reflect-padded (1 left, 2 right) to [0, 0, 0, 1, 1, 1, 0], filtered with
    [-1, 9, 9, -1] / 16: [-1/16, 8/16, 17/16, 17/16]; the columns are constant, so the vertical pass keeps them."""
    x = torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(1, 2, 4, 1)
    y = bicubic_downsample(x, 1)
    assert torch.equal(y, torch.tensor([-1 / 16, 0.5, 17 / 16, 17 / 16]).repeat(1, 2, 4, 1))
    assert tuple(bicubic_downsample(torch.rand(1, 3, 256, 256), 8).shape) == (1, 3, 32, 32)


def test_simulate_low_resolution_hand_example():
    """size 4, factor 1 on columns [0, 0, 255, 255]: /255 → the filtered rows of the previous test,
    clamped to [0, 1] → [0, 0.5, 1, 1], times 255 truncated (ToPILImage) → [0, 127, 255, 255] (rounding would
    give 128); both resizes are 4 → 4 (PIL copies)."""
    img = np.zeros((4, 4, 3), np.uint8)
    img[:, 2:] = 255
    out = simulate_low_resolution(img, 1, size=4)
    assert out.dtype == np.uint8 and out.shape == (4, 4, 3)
    assert (out == np.array([0, 127, 255, 255], np.uint8)[None, :, None]).all()


def test_simulate_low_resolution_uses_pil_bilinear_both_ways():
    """The chain of SuperResTransforms: PIL bilinear to 256, bicubic down-sample, truncate, PIL bilinear back."""
    from PIL import Image

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 280, 3), dtype=np.uint8)
    out = simulate_low_resolution(img, 8)
    hr = np.asarray(Image.fromarray(img).resize((256, 256), Image.Resampling.BILINEAR)).astype(np.float32) / 255
    lr = bicubic_downsample(torch.from_numpy(hr).permute(2, 0, 1)[None], 8)[0].clamp(0, 1)
    lr8 = np.floor(lr.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert lr8.shape == (32, 32, 3)
    expected = np.asarray(Image.fromarray(lr8).resize((256, 256), Image.Resampling.BILINEAR))
    assert out.shape == (256, 256, 3) and np.array_equal(out, expected)
    with pytest.raises(ValueError):
        simulate_low_resolution(img.astype(np.float32), 2)
    with pytest.raises(ValueError):
        simulate_low_resolution(img, 0)


# ------------------------------------------------------------------------------------------------ parity

@pytest.mark.slow  # ~1 GB encoder filled from the manifest, one 1024 decoder built
def test_super_resolution_file_encoder_parity(tmp_path):
    """An official-layout super-resolution file (no vidinv record; SR opts) holding the parity fixture's
    weights: load_psp_task builds the official IR-SE50 architecture (same as psp_ffhq_encode.pt's), and its
    encoder reproduces the reference codes."""
    from conftest import assert_parity, manifest_state_dict, require_shared

    fixture = require_shared("parity/psp_encoder_ffhq")
    inputs, expected = dict(np.load(fixture / "inputs.npz")), dict(np.load(fixture / "expected.npz"))
    sd = {f"encoder.{k}": v for k, v in manifest_state_dict("psp_encoder_ffhq").items()}
    sd.update({f"decoder.{k}": v for k, v in manifest_state_dict("stylegan2_ffhq1024").items()})
    opts = {"output_size": 1024, "encoder_type": "GradualStyleEncoder", "input_nc": 3, "label_nc": 0,
            "learn_in_w": False, "start_from_latent_avg": True, "dataset_type": "celebs_super_resolution",
            "resize_factors": "1,2,4,8,16,32"}
    path = tmp_path / "psp_celebs_super_resolution.pt"
    torch.save({"state_dict": sd, "latent_avg": torch.from_numpy(inputs["latent_avg"]).repeat(18, 1), "opts": opts},
               path)
    del sd
    net, o = load_psp_task(path)
    assert o.resize_factors == (1, 2, 4, 8, 16, 32) and o.dataset_type == "celebs_super_resolution"
    with torch.no_grad():
        codes = net.encoder(torch.from_numpy(inputs["x"]))
    assert_parity(codes, expected["codes"], "codes")
