"""Behaviour of the ArcFace IResNet-50 and the Feature-Style encoder (shapes, dtypes, latent_avg
broadcasting, input checks, strict-load errors). Numerical parity is in test_arcface_parity.py and
test_fs_encoder_parity.py."""
from __future__ import annotations

import pytest
import torch

from vidinv.io.checkpoints import CheckpointError, CheckpointMismatchError
from vidinv.models.fs_encoder import (FS_FEATURE_LAYER, FeatureStyleEncoder, downscale, load_fs_encoder)
from vidinv.models.iresnet import IBasicBlock, iresnet50, load_arcface


@pytest.fixture(scope="module")
def arcface():
    torch.manual_seed(0)
    return iresnet50().eval()


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    return FeatureStyleEncoder().eval()


def test_arcface_shapes_and_dtype(arcface):
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        emb, feats = arcface(x, return_features=True)
    assert emb.shape == (2, 512) and emb.dtype == torch.float32
    assert [tuple(f.shape) for f in feats] == [(2, 64, 56, 56), (2, 128, 28, 28), (2, 256, 14, 14),
                                               (2, 512, 7, 7), (2, 512)]
    model64 = iresnet50().double().eval()
    with torch.no_grad():
        assert model64(x.double()).dtype == torch.float64


def test_arcface_gradient_reaches_input(arcface):
    """The identity loss back-propagates through the frozen network to the image."""
    x = (torch.rand(1, 3, 112, 112) * 2 - 1).requires_grad_()
    arcface(x).pow(2).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_arcface_rejects_wrong_size(arcface):
    with pytest.raises(ValueError, match="112"):
        arcface(torch.zeros(1, 3, 128, 128))


def test_blocks_shared_with_encoder(arcface, encoder):
    assert isinstance(arcface.layer3[0], IBasicBlock) and isinstance(encoder.block_3[0], IBasicBlock)
    assert type(arcface.layer3) is type(encoder.block_3)


def test_fs_encoder_shapes_and_heads(encoder):
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        latents, feat = encoder(x)
    assert latents.shape == (1, 18, 512) and feat.shape == (1, 512, 16, 16)
    assert latents.dtype == feat.dtype == torch.float32
    assert FS_FEATURE_LAYER == encoder.feature_layer == 5
    # The 18 heads are separate and stacked in order: silencing head 3 changes row 3 only.
    enc2 = FeatureStyleEncoder().eval()
    enc2.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        enc2.styles[3].weight.zero_()
        enc2.styles[3].bias.zero_()
        latents2, feat2 = enc2(x)
    assert torch.equal(latents2[:, 3], torch.zeros(1, 512))
    keep = [i for i in range(18) if i != 3]
    assert torch.equal(latents2[:, keep], latents[:, keep]) and torch.equal(feat2, feat)


def test_fs_encoder_float64():
    enc = FeatureStyleEncoder(n_styles=2).double().eval()
    with torch.no_grad():
        w, feat = enc.encode(torch.rand(1, 3, 256, 256, dtype=torch.float64), torch.zeros(512))
    assert w.dtype == feat.dtype == torch.float64  # latent_avg (float32) follows the latents
    assert w.shape == (1, 2, 512)


def test_encode_downscales_and_adds_latent_avg(encoder):
    torch.manual_seed(1)
    x512 = torch.rand(1, 3, 512, 512) * 2 - 1
    avg = torch.randn(512)
    with torch.no_grad():
        latents, feat = encoder(downscale(x512, 1))
        w1, f1 = encoder.encode(x512, avg)                      # (512,)
        w18, _ = encoder.encode(x512, avg.expand(18, 512))      # pSp's (18, 512) of identical rows
        w118, _ = encoder.encode(x512, avg.expand(1, 18, 512))
        w256, f256 = encoder.encode(downscale(x512, 1), avg)    # already at 256: used as is
    assert torch.equal(w1, latents + avg) and torch.equal(f1, feat)
    assert torch.equal(w18, w1) and torch.equal(w118, w1)
    assert torch.equal(w256, w1) and torch.equal(f256, f1)
    with pytest.raises(ValueError, match="latent_avg"):
        encoder.encode(x512, torch.zeros(17, 512))


def test_fs_encoder_rejects_bad_sizes(encoder):
    with pytest.raises(ValueError, match="encode"):
        encoder(torch.zeros(1, 3, 1024, 1024))
    with pytest.raises(ValueError, match="256"):
        encoder.encode(torch.zeros(1, 3, 300, 300), torch.zeros(512))
    with pytest.raises(ValueError, match="square"):
        encoder.encode(torch.zeros(1, 3, 512, 256), torch.zeros(512))


def test_downscale_is_bilinear_halving():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = downscale(x, 1)
    # align_corners=False halving = mean of each 2x2 block.
    assert torch.allclose(y, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert downscale(x, 0) is x


def test_strict_load_errors_name_file_and_keys(encoder, tmp_path):
    # A state_dict cut short: only the stem survives.
    cut = dict(list(encoder.state_dict().items())[:7])
    path = tmp_path / "short_143_enc.pth"
    torch.save(cut, path)
    with pytest.raises(CheckpointMismatchError, match="short_143_enc.pth") as info:
        load_fs_encoder(path)
    assert "block_1.0.bn1.weight" in str(info.value) and "Feature-Style encoder" in str(info.value)

    # ArcFace given the encoder's stem: wrong names, reported both ways.
    path2 = tmp_path / "not_backbone.pth"
    torch.save(cut, path2)
    with pytest.raises(CheckpointMismatchError, match="not_backbone.pth") as info:
        load_arcface(path2)
    msg = str(info.value)
    assert "conv1.weight" in msg and "conv.0.weight" in msg

    # A pSp-style wrapper is not the plain state_dict 143_enc.pth is.
    path3 = tmp_path / "wrapped.pt"
    torch.save({"state_dict": cut, "opts": {}}, path3)
    with pytest.raises(CheckpointError, match="wrapped.pt"):
        load_fs_encoder(path3)

    # Bytes cut off the end of the file.
    data = path.read_bytes()
    path4 = tmp_path / "truncated.pth"
    path4.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        load_fs_encoder(path4)


# ---------------------------------------------------------------- official files vs vidinv-trained files
def test_official_fs_file_is_held_to_the_official_architecture(tmp_path):
    """143_enc.pth's key set (manifest of ../shared/parity/fs_encoder_r50) loads; the same file without its
    last IResNet block (block_4.2.*, 18 keys) is refused with the missing keys named, not resized."""
    from conftest import manifest_state_dict

    sd = manifest_state_dict("fs_encoder_r50")
    full = tmp_path / "143_enc.pth"
    torch.save(sd, full)
    enc = load_fs_encoder(full)
    assert enc.depths == (3, 4, 14, 3) and enc.n_styles == 18
    assert all(torch.equal(v, sd[k]) for k, v in enc.state_dict().items())
    del enc
    cut = {k: v for k, v in sd.items() if not k.startswith("block_4.2.")}
    assert len(sd) - len(cut) == 18
    path = tmp_path / "cut_143_enc.pth"
    torch.save(cut, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_fs_encoder(path)
    err = info.value
    assert sorted(err.missing) == sorted(k for k in sd if k.startswith("block_4.2."))
    assert not err.unexpected and not err.shape_mismatches
    assert "cut_143_enc.pth" in str(err) and "18 missing key(s)" in str(err) and "official" in str(err)


def _small_fs():
    torch.manual_seed(2)
    enc = FeatureStyleEncoder(6, 1, widths=(8, 12, 16, 20), depths=(1, 2, 1, 1), stem_width=8, content_channels=8,
                              style_dim=32).eval()
    enc.enc_resolution = 128
    return enc


def test_vidinv_trained_fs_encoder_loads_by_its_record(tmp_path):
    from vidinv.training.export import export_fs_encoder

    enc = _small_fs()
    path = export_fs_encoder(enc, tmp_path / "mine_fs_encoder.pth")
    got = load_fs_encoder(path)
    assert got.architecture() == enc.architecture() and got.enc_resolution == 128 and got.stride == 1
    x = torch.rand(1, 3, 128, 128) * 2 - 1  # the recorded input size
    with torch.no_grad():
        for a, b in zip(got(x), enc(x)):
            assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="declares 6"):
        load_fs_encoder(path, n_styles=18)


def test_fs_files_not_matching_their_architecture_are_refused(tmp_path):
    from vidinv.training.export import export_fs_encoder

    enc = _small_fs()
    path = export_fs_encoder(enc, tmp_path / "mine_fs_encoder.pth")
    ckpt = torch.load(path, weights_only=True)
    ckpt["vidinv_config"]["architecture"]["depths"] = [1, 1, 1, 1]  # the record does not describe the tensors
    torch.save(ckpt, tmp_path / "lying_fs_encoder.pth")
    with pytest.raises(CheckpointMismatchError, match="lying_fs_encoder.pth") as info:
        load_fs_encoder(tmp_path / "lying_fs_encoder.pth")
    assert info.value.unexpected == [k for k in ckpt["state_dict"] if k.startswith("block_2.1.")]
    assert "vidinv record" in str(info.value)
    ckpt["vidinv_config"]["network"] = "bisenet"
    torch.save(ckpt, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="bisenet"):
        load_fs_encoder(tmp_path / "other.pth")
    # the small encoder as a plain state_dict (no record): held to the official network, not sized from it
    torch.save(enc.state_dict(), tmp_path / "small_plain.pth")
    with pytest.raises(CheckpointMismatchError, match="small_plain.pth") as info:
        load_fs_encoder(tmp_path / "small_plain.pth")
    assert "block_4.2.bn1.weight" in info.value.missing and info.value.shape_mismatches
