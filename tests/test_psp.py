"""Behaviour of the pSp encoder, the PSP network and the pSp checkpoint reader (small configurations)."""
from __future__ import annotations

import pytest
import torch

from vidinv.io.checkpoints import CheckpointError, CheckpointMismatchError
from vidinv.models.psp import (PSP, GradualStyleEncoder, load_psp, load_psp_encoder, n_styles_for_size,
                               read_psp_checkpoint)
from vidinv.models.stylegan2 import Generator


def _fake_ckpt(tmp_path, name="fake_psp.pt", opts=None, latent_avg=None, with_avg=True, encoder=True):
    """A pSp-layout file with placeholder tensors (enough for read_psp_checkpoint, not for a model)."""
    sd = {"decoder.input.input": torch.zeros(1, 512, 4, 4)}
    if encoder:
        sd["encoder.input_layer.0.weight"] = torch.zeros(64, 3, 3, 3)
    ckpt = {"state_dict": sd}
    if opts is not None:
        ckpt["opts"] = opts
    if with_avg:
        ckpt["latent_avg"] = torch.arange(512, dtype=torch.float32) if latent_avg is None else latent_avg
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def test_n_styles_for_size():
    assert n_styles_for_size(1024) == 18
    assert n_styles_for_size(256) == 14
    assert n_styles_for_size(8) == 4
    for bad in (0, 2, 100, 1000):
        with pytest.raises(ValueError):
            n_styles_for_size(bad)


def test_encoder_config_errors_and_ir_mode():
    with pytest.raises(ValueError, match="50"):
        GradualStyleEncoder(100)
    with pytest.raises(ValueError, match="mode"):
        GradualStyleEncoder(50, "resnet")
    with torch.device("meta"):
        se = GradualStyleEncoder(50, "ir_se", n_styles=1).state_dict()
        ir = GradualStyleEncoder(50, "ir", n_styles=1).state_dict()
    assert {k for k in se if ".res_layer.5." in k} == set(se) - set(ir)
    assert len(set(se) - set(ir)) == 2 * 24  # fc1/fc2 of the SE gate in each of the 24 units
    # Heads: styles 0-2 read the 16x16 map (4 convs), 3-6 the 32x32 (5), 7.. the 64x64 (6).
    with torch.device("meta"):
        enc = GradualStyleEncoder(n_styles=8)
    assert [len(s.convs) // 2 for s in enc.styles] == [4, 4, 4, 5, 5, 5, 5, 6]


def test_encoder_rejects_wrong_input_shape():
    with torch.device("meta"):
        enc = GradualStyleEncoder(n_styles=1)
    for shape in [(1, 3, 128, 128), (1, 4, 256, 256), (3, 256, 256)]:
        with pytest.raises(ValueError, match="256"):
            enc(torch.zeros(shape, device="meta"))


@pytest.fixture(scope="module")
def tiny():
    """8-style encoder (coarse, middle and fine heads) + a 32x32 generator with 16 channels."""
    torch.manual_seed(0)
    G = Generator(32, 512, 2, channel_multiplier=1, max_channels=16).eval()
    enc = GradualStyleEncoder(n_styles=G.n_latent).eval()
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        codes = enc(x)
    return enc, G, x, codes


def test_psp_forward_semantics(tiny):
    enc, G, x, codes = tiny
    assert codes.shape == (1, 8, 512) and torch.isfinite(codes).all()
    avg = torch.randn(512)
    net = PSP(enc, G, avg, start_from_latent_avg=True).eval()
    assert net.latent_avg.shape == (8, 512)
    assert "latent_avg" not in net.state_dict()  # the state_dict mirrors the file's encoder./decoder. keys
    with torch.no_grad():
        img, wplus = net(x, return_latents=True)
        full = net.decode(wplus, resize=False)
        direct = G.synthesis(wplus, noise="const")
    torch.testing.assert_close(wplus, codes + avg, rtol=0, atol=0)
    assert full.shape == (1, 3, 32, 32) and img.shape == (1, 3, 256, 256)
    torch.testing.assert_close(full, direct, rtol=0, atol=0)
    # face_pool is AdaptiveAvgPool2d((256, 256)) whatever the generator size (pSp).
    torch.testing.assert_close(img, torch.nn.functional.adaptive_avg_pool2d(direct, 256), rtol=0, atol=0)


def test_psp_without_latent_avg(tiny):
    enc, G, x, codes = tiny
    net = PSP(enc, G, None, start_from_latent_avg=False)
    with torch.no_grad():
        torch.testing.assert_close(net.encode(x), codes, rtol=0, atol=0)
    with pytest.raises(ValueError, match="latent_avg"):
        PSP(enc, G, None, start_from_latent_avg=True)
    with pytest.raises(ValueError, match="latent_avg"):
        PSP(enc, G, torch.zeros(5, 512))
    with pytest.raises(ValueError, match="styles"):
        PSP(enc, Generator(16, 512, 1, channel_multiplier=1, max_channels=8), torch.zeros(512))


def test_read_checkpoint_defaults_and_latent_avg_repeat(tmp_path):
    ck = read_psp_checkpoint(_fake_ckpt(tmp_path))  # no opts: pSp defaults, start from latent_avg as saved
    assert (ck.output_size, ck.n_styles, ck.input_nc, ck.start_from_latent_avg) == (1024, 18, 3, True)
    assert ck.latent_avg.shape == (18, 512)
    assert torch.equal(ck.latent_avg[17], torch.arange(512, dtype=torch.float32))
    assert list(ck.encoder_state) == ["input_layer.0.weight"] and list(ck.decoder_state) == ["input.input"]

    ck = read_psp_checkpoint(_fake_ckpt(tmp_path, opts={"output_size": 256, "start_from_latent_avg": False}))
    assert ck.n_styles == 14 and ck.start_from_latent_avg is False and ck.latent_avg.shape == (14, 512)

    ck = read_psp_checkpoint(_fake_ckpt(tmp_path, with_avg=False, opts={"start_from_latent_avg": False}))
    assert ck.latent_avg is None and ck.start_from_latent_avg is False


@pytest.mark.parametrize("kwargs, message", [
    ({"opts": {"encoder_type": "BackboneEncoderUsingLastLayerIntoW"}}, "BackboneEncoderUsingLastLayerIntoW"),
    ({"opts": {"learn_in_w": True}}, "learn_in_w"),
    ({"opts": {"output_size": 1000}}, "output_size"),
    ({"opts": {"start_from_latent_avg": True}, "with_avg": False}, "no latent_avg"),
    ({"latent_avg": torch.zeros(3, 512)}, "latent_avg has shape"),
    ({"encoder": False}, "no 'encoder.' entries"),
])
def test_read_checkpoint_refuses(tmp_path, kwargs, message):
    path = _fake_ckpt(tmp_path, name="refused_psp.pt", **kwargs)
    with pytest.raises(CheckpointError, match=message) as info:
        read_psp_checkpoint(path)
    assert "refused_psp.pt" in str(info.value)
    with pytest.raises(CheckpointError):
        load_psp(path)


@pytest.fixture(scope="module")
def small_psp_state():
    """Real state_dicts of a pSp with output_size 8 (4 styles; the decoder is pSp's Generator(8, 512, 8))."""
    torch.manual_seed(1)
    enc = GradualStyleEncoder(n_styles=4)
    dec = Generator(8, 512, 8, channel_multiplier=2)
    sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    sd.update({f"decoder.{k}": v for k, v in dec.state_dict().items()})
    return sd


def _save_psp(path, sd):
    torch.save({"state_dict": sd, "latent_avg": torch.ones(512), "opts": {"output_size": 8, "input_nc": 3,
                "encoder_type": "GradualStyleEncoder", "start_from_latent_avg": True}}, path)
    return path


def test_load_psp_round_trip(tmp_path, small_psp_state):
    path = _save_psp(tmp_path / "small_psp.pt", small_psp_state)
    net = load_psp(path)
    assert not net.training and net.encoder.n_styles == 4 and net.decoder.size == 8
    assert torch.equal(net.latent_avg, torch.ones(4, 512))
    got = net.state_dict()
    assert set(got) == set(small_psp_state)
    assert all(torch.equal(got[k], v) for k, v in small_psp_state.items())
    enc, avg = load_psp_encoder(path)
    assert torch.equal(avg, torch.ones(4, 512))
    assert all(torch.equal(v, small_psp_state[f"encoder.{k}"]) for k, v in enc.state_dict().items())


def test_load_psp_strict_errors_name_file(tmp_path, small_psp_state):
    sd = dict(small_psp_state)
    sd.pop("encoder.latlayer2.bias")
    path = _save_psp(tmp_path / "missing_key_psp.pt", sd)
    with pytest.raises(CheckpointMismatchError, match="missing_key_psp.pt") as info:
        load_psp(path)
    assert "latlayer2.bias" in str(info.value) and "GradualStyleEncoder" in str(info.value)
    with pytest.raises(CheckpointMismatchError, match="missing_key_psp.pt"):
        load_psp_encoder(path)

    sd = dict(small_psp_state)
    sd["decoder.conv1.conv.weight"] = torch.zeros(1, 8, 8, 3, 3)
    path = _save_psp(tmp_path / "bad_shape_psp.pt", sd)
    with pytest.raises(CheckpointMismatchError, match="bad_shape_psp.pt") as info:
        load_psp(path)
    assert "conv1.conv.weight" in str(info.value)


def test_small_encoder_taps_and_sizes():
    with torch.device("meta"):
        off = GradualStyleEncoder(n_styles=8)
        small = GradualStyleEncoder(n_styles=8, widths=(16, 24, 32, 48), blocks=(2, 1, 3, 1), style_dim=64,
                                    head_width=16)
    assert (off.tap_c1, off.tap_c2, len(off.body)) == (6, 20, 24)  # IR-SE50 stage ends, as the reference
    assert (small.tap_c1, small.tap_c2, len(small.body)) == (2, 5, 7)
    assert small.input_layer[0].weight.shape == (16, 3, 3, 3)
    assert small.latlayer1.weight.shape == (48, 32, 1, 1) and small.latlayer2.weight.shape == (48, 24, 1, 1)
    assert small.styles[7].convs[0].weight.shape == (16, 48, 3, 3) and small.styles[7].linear.weight.shape == (64, 16)
    with pytest.raises(ValueError, match="16"):
        GradualStyleEncoder(n_styles=1, widths=(8, 8, 16, 16), blocks=(1, 1, 1, 1))  # SE gate would have 0 channels
    torch.manual_seed(0)
    enc = GradualStyleEncoder(n_styles=8, widths=(16, 24, 32, 48), blocks=(2, 1, 3, 1), style_dim=64).eval()
    taps = {}
    for i in (2, 5, 6):
        enc.body[i].register_forward_hook(lambda m, a, out, i=i: taps.__setitem__(i, out.shape))
    with torch.no_grad():
        codes = enc(torch.rand(2, 3, 256, 256) * 2 - 1)
    assert codes.shape == (2, 8, 64)
    assert taps == {2: (2, 24, 64, 64), 5: (2, 32, 32, 32), 6: (2, 48, 16, 16)}


def _small_psp_export(tmp_path, name, **enc_kw):
    """A small pSp written by vidinv's training export (with its vidinv record): encoder of ``enc_kw`` sizes,
    decoder Generator(32, 512, 2, channel_multiplier=1, max_channels=16) (8 styles)."""
    from vidinv.training.export import export_psp

    torch.manual_seed(0)
    G = Generator(32, 512, 2, channel_multiplier=1, max_channels=16).eval()
    enc = GradualStyleEncoder(n_styles=G.n_latent, **enc_kw).eval()
    avg = torch.randn(G.n_latent, 512)
    return export_psp(enc, G, avg, tmp_path / name), enc, G, avg


def test_official_psp_file_is_held_to_the_official_architecture(tmp_path):
    """The IR-SE50 encoder of the official file with its last unit (body.23.*, 15 keys) removed is refused,
    naming the missing keys; nothing is sized from the file. The full official key set loads
    (tests/test_psp_parity.py)."""
    from conftest import manifest_state_dict

    enc_sd = manifest_state_dict("psp_encoder_ffhq")
    cut = {f"encoder.{k}": v for k, v in enc_sd.items() if not k.startswith("body.23.")}
    assert len(enc_sd) - len(cut) == 15
    path = tmp_path / "psp_ffhq_encode.pt"
    torch.save({"state_dict": cut, "latent_avg": torch.zeros(18, 512),
                "opts": {"output_size": 1024, "encoder_type": "GradualStyleEncoder", "start_from_latent_avg": True}},
               path)
    ck = read_psp_checkpoint(path)
    assert ck.official and ck.encoder_arch["blocks"] == [3, 4, 14, 3]
    with pytest.raises(CheckpointMismatchError) as info:
        load_psp_encoder(path)
    err = info.value
    assert sorted(err.missing) == sorted(k for k in enc_sd if k.startswith("body.23."))
    assert not err.unexpected and not err.shape_mismatches
    assert "psp_ffhq_encode.pt" in str(err) and "15 missing key(s)" in str(err) and "official pSp" in str(err)


def test_official_psp_decoder_is_held_to_psp_generator(tmp_path, small_psp_state):
    """pSp builds Generator(output_size, 512, 8): a decoder missing its last mapping layer (style.8.*) is refused
    by load_psp and load_generator alike (it would otherwise pass as an n_mlp=7 generator)."""
    from vidinv.models.stylegan2 import load_generator

    sd = {k: v for k, v in small_psp_state.items() if not k.startswith("decoder.style.8.")}
    path = _save_psp(tmp_path / "no_style8_psp.pt", sd)
    for load in (load_psp, load_generator):
        with pytest.raises(CheckpointMismatchError) as info:
            load(path)
        assert sorted(info.value.missing) == ["style.8.bias", "style.8.weight"]


def test_vidinv_trained_small_psp_loads_by_its_record(tmp_path):
    path, enc, G, avg = _small_psp_export(tmp_path, "mine_psp_encode.pt", mode="ir", widths=(8, 12, 16, 20),
                                          blocks=(1, 2, 1, 2), head_width=8)
    ck = read_psp_checkpoint(path)
    assert not ck.official
    assert ck.encoder_arch == {"mode": "ir", "n_styles": 8, "input_nc": 3, "widths": [8, 12, 16, 20],
                               "blocks": [1, 2, 1, 2], "style_dim": 512, "head_width": 8}
    assert ck.decoder_arch == G.architecture()
    got, got_avg = load_psp_encoder(path)
    assert (got.widths, got.blocks, got.tap_c1, got.tap_c2) == ((8, 12, 16, 20), (1, 2, 1, 2), 2, 3)
    assert torch.equal(got_avg, avg)
    x = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        assert torch.equal(got(x), enc(x))
    net = load_psp(path)
    assert net.decoder.architecture() == G.architecture()
    # Adjacent stages of equal width are fine too: the record says where the stages end.
    path2, enc2, _, _ = _small_psp_export(tmp_path, "equal_psp.pt", mode="ir", widths=(8, 8, 16, 16),
                                          blocks=(1, 2, 1, 1))
    with torch.no_grad():
        assert torch.equal(load_psp_encoder(path2)[0](x), enc2(x))


def test_vidinv_trained_psp_whose_keys_differ_from_its_record_is_refused(tmp_path):
    path, _, _, _ = _small_psp_export(tmp_path, "mine_psp_encode.pt", mode="ir", widths=(8, 12, 16, 20),
                                      blocks=(1, 2, 1, 2))
    ckpt = torch.load(path, weights_only=True)
    ckpt["opts"]["vidinv_config"]["architecture"]["encoder"]["blocks"] = [1, 1, 1, 2]  # the record lies
    torch.save(ckpt, tmp_path / "lying_psp.pt")
    with pytest.raises(CheckpointMismatchError, match="lying_psp.pt") as info:
        load_psp_encoder(tmp_path / "lying_psp.pt")
    assert info.value.unexpected and "vidinv record" in str(info.value)
    ckpt = torch.load(path, weights_only=True)
    ckpt["opts"]["vidinv_config"]["architecture"]["decoder"]["n_mlp"] = 3
    torch.save(ckpt, tmp_path / "lying_dec_psp.pt")
    with pytest.raises(CheckpointMismatchError, match="lying_dec_psp.pt") as info:
        load_psp(tmp_path / "lying_dec_psp.pt")
    assert info.value.missing == ["style.3.weight", "style.3.bias"]
    # a record that contradicts opts, or names another network
    ckpt = torch.load(path, weights_only=True)
    ckpt["opts"]["output_size"] = 64
    torch.save(ckpt, tmp_path / "bad_size_psp.pt")
    with pytest.raises(CheckpointError, match="output_size"):
        read_psp_checkpoint(tmp_path / "bad_size_psp.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["opts"]["vidinv_config"]["network"] = "fs_encoder"
    torch.save(ckpt, tmp_path / "other_psp.pt")
    with pytest.raises(CheckpointError, match="fs_encoder"):
        read_psp_checkpoint(tmp_path / "other_psp.pt")


def test_small_psp_without_record_is_not_sized_from_the_file(tmp_path):
    """The same small encoder saved without vidinv's record is an official-looking file of the wrong shape."""
    enc = GradualStyleEncoder(n_styles=4, mode="ir", widths=(8, 12, 16, 20), blocks=(1, 2, 1, 2))
    path = _save_psp(tmp_path / "small_enc_psp.pt", {f"encoder.{k}": v for k, v in enc.state_dict().items()})
    with pytest.raises(CheckpointMismatchError, match="small_enc_psp.pt") as info:
        load_psp_encoder(path)
    assert "body.23.res_layer.1.weight" in info.value.missing and info.value.shape_mismatches


def test_load_psp_reads_the_tiny_bundle(tmp_path):
    from tiny_bundle import TINY_PSP_ENCODER, write_tiny_bundle

    path = write_tiny_bundle(tmp_path, directions=False)["psp_ffhq_encode.pt"]
    net = load_psp(path)  # small encoder and small decoder (max_channels 8, n_mlp 2), built from the file's record
    assert (net.encoder.widths, net.encoder.blocks) == (TINY_PSP_ENCODER["widths"], TINY_PSP_ENCODER["blocks"])
    assert net.decoder.size == 1024 and net.encoder.n_styles == 18
    with torch.no_grad():
        img, w = net(torch.zeros(1, 3, 256, 256), return_latents=True)
    assert img.shape == (1, 3, 256, 256) and w.shape == (1, 18, 512) and torch.isfinite(img).all()
