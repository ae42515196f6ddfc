"""Numerical parity of vidinv's BiSeNet face parser with the reference (FeatureStyleEncoder
``face_parsing`` BiSeNet(19), official ``79999_iter.pth`` keys).

Fixture: ``../shared/parity/bisenet_parsing`` (see its README). The weights are the fixture's
deterministic fill of the OFFICIAL key list from the manifest, saved as a plain state_dict and read
back through :func:`vidinv.models.bisenet.load_bisenet`.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_parity, manifest_state_dict, require_shared
from vidinv.io.checkpoints import CheckpointMismatchError
from vidinv.models.bisenet import (CLASS_INDEX, CLASS_NAMES, FS_VIDEO_MASK_LABELS, BiSeNet, class_mask,
                                   load_bisenet, to_bisenet_input)

FIXTURE = "bisenet_parsing"
# README: "allow roughly <= 0.01 % label mismatches" (argmax near-ties flipped by float32 rounding).
MAX_LABEL_MISMATCH_FRACTION = 1e-4
# A flipped label is only acceptable where the top-2 logits are nearly tied (README: 56 pixels have
# a margin < 1e-3, the smallest is 1.0e-5).
TIE_MARGIN = 1e-3


@pytest.fixture(scope="module")
def fixture_data():
    d = require_shared(f"parity/{FIXTURE}")
    with np.load(d / "bisenet_parsing.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    sd = manifest_state_dict(FIXTURE, keys_field="state_dict")
    path = tmp_path_factory.mktemp("bisenet") / "79999_iter.pth"
    torch.save(sd, path)
    return path


@pytest.fixture(scope="module")
def net(checkpoint):
    return load_bisenet(checkpoint)


@pytest.fixture(scope="module")
def run(net, fixture_data):
    """One forward pass on the fixture input: low-res heads and full-resolution outputs."""
    x = torch.from_numpy(fixture_data["x"])
    with torch.no_grad():
        lowres = net.forward_lowres(x)
        full = net(x)
    return {"x": x, "lowres": lowres, "full": full}


def _labels_match(labels: np.ndarray, expected: np.ndarray, logits: torch.Tensor, name: str) -> int:
    """Labels equal, up to a handful of near-tie flips. Returns the mismatch count."""
    assert labels.shape == expected.shape, f"{name}: shape {labels.shape} != {expected.shape}"
    diff = labels != expected
    n = int(diff.sum())
    assert n <= MAX_LABEL_MISMATCH_FRACTION * expected.size, f"{name}: {n} of {expected.size} labels differ"
    if n:
        top2 = logits.topk(2, dim=1).values  # (B, 2, H, W)
        margin = (top2[:, 0] - top2[:, 1]).numpy()
        assert margin[diff].max() < TIE_MARGIN, f"{name}: a label differs where the top-2 margin is " \
                                                f"{margin[diff].max():.3e} (not a near-tie)"
    return n


def test_state_dict_layout_is_official(net):
    import json

    man = json.loads((require_shared(f"parity/{FIXTURE}") / "manifest.json").read_text())
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in BiSeNet().state_dict().items()]
    ref = [(e["key"], e["shape"], e["dtype"]) for e in man["state_dict"]]
    assert ours == ref
    assert not net.training and not any(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("i,name", [(0, "out_lowres"), (1, "out16_lowres"), (2, "out32_lowres")])
def test_head_logits_before_upsampling(run, fixture_data, i, name):
    assert_parity(run["lowres"][i], fixture_data[name], name)


@pytest.mark.parametrize("i,name", [(0, "out"), (1, "out16"), (2, "out32")])
def test_full_resolution_outputs(run, fixture_data, i, name):
    full = run["full"][i]
    assert full.shape == (2, 19, 512, 512)
    assert_parity(full[:, :, ::8, ::8], fixture_data[f"{name}_stride8"], f"{name}_stride8")
    # per (sample, class) over all pixels: mean, unbiased std, min, max
    stats = torch.stack([full.mean(dim=(2, 3)), full.flatten(2).std(dim=2, unbiased=True),
                         full.amin(dim=(2, 3)), full.amax(dim=(2, 3))], dim=-1)
    assert_parity(stats, fixture_data[f"{name}_chstats"], f"{name}_chstats")


def test_full_resolution_window(run, fixture_data):
    assert_parity(run["full"][0][:, :, 224:288, 224:288], fixture_data["out_window"], "out_window")


def test_upsample_reproduces_forward(net, run):
    """``forward`` is exactly ``upsample(forward_lowres)``, the public route to the full outputs."""
    for lo, full in zip(run["lowres"], run["full"]):
        assert torch.equal(net.upsample(lo, 512), full)


def test_argmax_labels(net, run, fixture_data):
    out = run["full"][0]
    exp = fixture_data["out_argmax"].astype(np.int64)
    _labels_match(out.argmax(dim=1).numpy(), exp, out, "out.argmax")
    with torch.no_grad():
        labels = net.labels(run["x"])
    assert labels.dtype == torch.int64 and labels.shape == (2, 512, 512)
    _labels_match(labels.numpy(), exp, out, "net.labels")


def test_to_bisenet_input_reproduces_fixture_row0(fixture_data):
    """Row 0 of the fixture input is frame_04.png through the Feature-Style trainer's path."""
    png = require_shared("parity/ffhq_align/frame_04.png")
    rgb = torch.from_numpy(np.asarray(Image.open(png).convert("RGB")).copy()).permute(2, 0, 1)[None]
    assert rgb.shape == (1, 3, 1024, 1024)
    stylegan = (rgb.float() / 255.0 - 0.5) / 0.5  # [-1, 1]
    assert_parity(to_bisenet_input(stylegan), fixture_data["x"][:1], "x[0] from [-1,1]")
    assert_parity(to_bisenet_input(rgb), fixture_data["x"][:1], "x[0] from uint8")


def test_parse_uint8_frame_matches_fixture_labels(net, run, fixture_data):
    png = require_shared("parity/ffhq_align/frame_04.png")
    rgb = torch.from_numpy(np.asarray(Image.open(png).convert("RGB")).copy()).permute(2, 0, 1)[None]
    labels = net.parse(rgb, 512)
    assert labels.dtype == torch.int64 and labels.shape == (1, 512, 512)
    _labels_match(labels.numpy(), fixture_data["out_argmax"][:1].astype(np.int64), run["full"][0][:1],
                  "parse(frame_04)")


def test_parse_default_size_follows_input(net):
    g = torch.Generator().manual_seed(0)
    img = torch.rand((1, 3, 96, 80), generator=g) * 2 - 1
    labels = net.parse(img)
    assert labels.shape == (1, 96, 80) and labels.dtype == torch.int64
    assert int(labels.min()) >= 0 and int(labels.max()) < 19
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net.parse(img[0])
    with pytest.raises(ValueError, match="dtype"):
        net.parse(torch.zeros((1, 3, 8, 8), dtype=torch.int32))


def test_class_table_and_mask():
    assert len(CLASS_NAMES) == 19 and CLASS_NAMES[0] == "background" and CLASS_NAMES[18] == "hat"
    assert [CLASS_INDEX[n] for n in ("skin", "l_brow", "nose", "mouth", "u_lip", "l_lip", "hair")] == \
        [1, 2, 10, 11, 12, 13, 17]
    labels = torch.arange(19).view(1, 1, 19)
    m = class_mask(labels, FS_VIDEO_MASK_LABELS)
    assert m.dtype == torch.bool and m.nonzero()[:, 2].tolist() == list(FS_VIDEO_MASK_LABELS)
    assert class_mask(labels, ["nose", 17]).nonzero()[:, 2].tolist() == [10, 17]
    with pytest.raises(KeyError):
        class_mask(labels, ["beard"])
    with pytest.raises(ValueError):
        class_mask(labels, [19])


def test_strict_load_errors(tmp_path):
    sd = manifest_state_dict(FIXTURE, keys_field="state_dict")
    missing = dict(sd)
    del missing["ffm.conv1.weight"]
    p = tmp_path / "missing.pth"
    torch.save(missing, p)
    with pytest.raises(CheckpointMismatchError, match="ffm.conv1.weight") as ei:
        load_bisenet(p)
    assert str(p) in str(ei.value) and ei.value.missing == ["ffm.conv1.weight"]

    wrong = dict(sd)
    wrong["conv_out.conv_out.weight"] = torch.zeros(18, 256, 1, 1)  # an 18-class head
    wrong["resnet.extra"] = torch.zeros(1)
    p = tmp_path / "wrong.pth"
    torch.save(wrong, p)
    with pytest.raises(CheckpointMismatchError) as ei:
        load_bisenet(p)
    assert ei.value.unexpected == ["resnet.extra"]
    assert ei.value.shape_mismatches == [("conv_out.conv_out.weight", (18, 256, 1, 1), (19, 256, 1, 1))]
