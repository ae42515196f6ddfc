"""Which networks a job loads, and that every substitution is said: the face-parsing blend mask end to end
(tiny BiSeNet of tests/tiny_bundle.py), ``--mask auto`` without ``79999_iter.pth`` (landmark masks, WARNING),
a generator file without ``latent_avg`` (estimated, WARNING), and the user's own encoder checkpoint."""
from __future__ import annotations

import logging
import os

import cv2
import numpy as np
import pytest
import torch

from conftest import require_shared
from tiny_bundle import TINY_BISENET_WIDTH, tiny_bisenet, tiny_fs_encoder, write_tiny_bundle
from vidinv.io.checkpoints import CheckpointMismatchError
from vidinv.io.mux import frame_range
from vidinv.pipeline import EditOptions, run_edit
from vidinv.pipeline.runtime import (GENERATOR_FILE, LATENT_AVG_SAMPLES, PARSER_FILE, Runtime, load_bundle,
                                     required_weights, resolve_weights)
from vidinv.io.video import VideoReader

RUNTIME_LOG = "vidinv.pipeline.runtime"
INVERTER_LOG = "vidinv.inverters.base"  # the generator (and its latent_avg) is loaded by the inverter


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A VIDINV_HOME with the tiny bundle and its face parser."""
    h = tmp_path / "home"
    write_tiny_bundle(h, parser=True)
    monkeypatch.setenv("VIDINV_HOME", str(h))
    return h


def _warnings(caplog, text, logger=RUNTIME_LOG):
    return [r for r in caplog.records if r.name == logger and r.levelno == logging.WARNING and text in r.message]


# ----------------------------------------------------------------------------- the tiny face parser
def test_tiny_parser_loads_from_its_record_and_labels_skin(home):
    from vidinv.models.bisenet import CLASS_INDEX, BiSeNet, load_bisenet

    net = load_bisenet(home / "weights" / PARSER_FILE)
    assert net.base_width == TINY_BISENET_WIDTH and net.n_classes == 19
    ref = tiny_bisenet()
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in net.state_dict().items())
    img = (torch.rand(2, 3, 300, 300) * 255).to(torch.uint8)
    assert (net.parse(img) == CLASS_INDEX["skin"]).all()
    # the official network is the base_width-64 one, with the same key names
    with torch.device("meta"):
        assert list(BiSeNet().state_dict()) == list(net.state_dict())


def test_tiny_parser_without_record_is_refused(tmp_path):
    from vidinv.models.bisenet import load_bisenet

    torch.save(tiny_bisenet().state_dict(), tmp_path / PARSER_FILE)
    with pytest.raises(CheckpointMismatchError, match="official 79999_iter.pth") as info:
        load_bisenet(tmp_path / PARSER_FILE)
    assert info.value.shape_mismatches and not info.value.missing


# ----------------------------------------------------------------------------- --mask auto
def test_mask_auto_without_parser_warns_once(tmp_path, monkeypatch, caplog):
    h = tmp_path / "home"
    write_tiny_bundle(h, directions=False)  # no 79999_iter.pth
    monkeypatch.setenv("VIDINV_HOME", str(h))
    caplog.set_level(logging.WARNING)
    paths = resolve_weights(required_weights("fs"), mask="auto", quiet=True)
    assert PARSER_FILE not in paths
    (rec,) = _warnings(caplog, PARSER_FILE)
    assert "landmark masks" in rec.message and "instead of face parsing" in rec.message
    assert f"vidinv weights fetch {PARSER_FILE}" in rec.message
    caplog.clear()
    resolve_weights(required_weights("fs"), tmp_path / "wd", mask="auto", quiet=True)
    (rec,) = _warnings(caplog, PARSER_FILE)
    assert f"--weights-dir {tmp_path / 'wd'}" in rec.message
    caplog.clear()
    resolve_weights(required_weights("fs"), mask="landmarks", quiet=True)  # chosen explicitly: nothing to say
    assert not _warnings(caplog, PARSER_FILE)


def test_mask_auto_with_parser_is_silent(home, caplog):
    caplog.set_level(logging.WARNING)
    paths = resolve_weights(required_weights("fs"), mask="auto", quiet=True)
    assert paths[PARSER_FILE] == home / "weights" / PARSER_FILE
    assert not _warnings(caplog, PARSER_FILE)


# ----------------------------------------------------------------------------- parsing mask end to end
def _quad_mask(quad, hw, grow):
    """Boolean (H, W) of the quad's pixels, grown (grow > 0) or shrunk (grow < 0) by |grow| pixels."""
    m = np.zeros(hw, np.uint8)
    cv2.fillConvexPoly(m, np.rint(quad + 0.5).astype(np.int32), 1)
    k = np.ones((2 * abs(grow) + 1,) * 2, np.uint8)
    m = cv2.dilate(m, k) if grow > 0 else cv2.erode(m, k) if grow < 0 else m
    return m > 0


def test_parsing_mask_end_to_end(home, tmp_path, detection_cache, caplog):
    """``--mask auto`` with the (tiny) face parser present runs the parsing path: the tiny parser labels the whole
    aligned square ``skin``, so the blend replaces the whole face square, while the landmark mask (same clip,
    ``--mask landmarks``) leaves the square's corners as they were. Away from the square both equal the input."""
    src = require_shared("videos") / "interview_720p.mp4"
    window = (0.0, 0.2)
    rng = frame_range(src, *window)
    runs = {}
    caplog.set_level(logging.WARNING)
    for mask in ("auto", "landmarks"):
        quads = {}
        # gate off: the tiny generator draws no face, which the gate's identity component would fade out
        opts = EditOptions(src, tmp_path / f"{mask}.mp4", attrs=["smile"], strengths=[2.0], start=window[0],
                           end=window[1], device="cpu", mask=mask, gate="off")
        res = run_edit(opts, on_frame=lambda it: quads.__setitem__(it.frame.index, [f.quad.copy() for f in it.faces]),
                       quiet=True)
        assert res.frames == len(rng) and res.faces_edited > 0
        runs[mask] = ([f.image for f in VideoReader(tmp_path / f"{mask}.mp4")], quads)
    assert not _warnings(caplog, PARSER_FILE)
    inp = [f.image for f in VideoReader(src, start=rng.start, stop=rng.stop)]
    (parsed, quads), (landm, _) = runs["auto"], runs["landmarks"]
    assert len(parsed) == len(landm) == len(inp)
    checked = 0
    for k, idx in enumerate(rng):
        for q in quads[idx]:
            side = float(np.mean(np.linalg.norm(q - np.roll(q, 1, axis=0), axis=1)))
            inner = _quad_mask(q, inp[k].shape[:2], -int(0.08 * side))  # clear of the mask's feathered edge
            d_l = np.abs(landm[k].astype(int) - inp[k].astype(int)).max(axis=2)
            d_p = np.abs(parsed[k].astype(int) - inp[k].astype(int)).max(axis=2)
            kept = inner & (d_l <= 4)  # inside the square, left as it was by the landmark mask (codec noise)
            assert kept.sum() > 0.1 * inner.sum(), (idx, kept.sum(), inner.sum())
            assert d_p[kept].mean() > 8 * 1.5, (idx, d_p[kept].mean())  # replaced by the parsing mask
            checked += 1
        outside = ~np.any([_quad_mask(q, inp[k].shape[:2], 24) for q in quads[idx]] or [np.zeros(1, bool)], axis=0)
        d = np.abs(parsed[k].astype(int) - inp[k].astype(int))[outside]
        assert d.mean() < 1.5 and np.percentile(d, 99) <= 8, (idx, d.mean())  # codec noise only
    assert checked >= len(rng) - 1


# ----------------------------------------------------------------------------- latent_avg estimate
def test_generator_without_latent_avg_warns_that_it_is_estimated(home, caplog):
    path = home / "weights" / GENERATOR_FILE
    ckpt = torch.load(path, weights_only=True)
    del ckpt["latent_avg"]
    ckpt["opts"]["start_from_latent_avg"] = False
    torch.save(ckpt, path)
    caplog.set_level(logging.WARNING)
    bundle = load_bundle({GENERATOR_FILE: path}, "fs", Runtime("cpu"), need_encoder=False, mask="landmarks")
    (rec,) = _warnings(caplog, "latent_avg", INVERTER_LOG)
    assert str(path) in rec.message and "has no latent_avg" in rec.message
    assert f"estimating the average latent from {LATENT_AVG_SAMPLES} random z" in rec.message
    G = bundle.G
    want = G.mean_latent(LATENT_AVG_SAMPLES, generator=torch.Generator().manual_seed(0))[0]
    assert torch.equal(bundle.inverter.latent_avg, want.expand(G.n_latent, -1))
    caplog.clear()
    load_bundle({GENERATOR_FILE: path}, "fs", Runtime("cpu"), need_encoder=False, mask="landmarks")
    assert len(_warnings(caplog, "latent_avg", INVERTER_LOG)) == 1  # once per load, not per frame or per call site


def test_generator_with_latent_avg_is_silent(home, caplog):
    caplog.set_level(logging.WARNING)
    load_bundle({GENERATOR_FILE: home / "weights" / GENERATOR_FILE}, "fs", Runtime("cpu"), need_encoder=False,
                mask="landmarks")
    assert not _warnings(caplog, "latent_avg", INVERTER_LOG)


# ----------------------------------------------------------------------------- the user's encoder
def test_user_trained_encoder_checkpoint(home, tmp_path):
    """An encoder exported by training/ under its own name is used through ``encoder_checkpoint=``; 143_enc.pth
    is then not needed, and a file named like a registry file is refused."""
    from vidinv.training.export import export_fs_encoder, fs_export_name

    enc = tiny_fs_encoder(seed=7)
    own = export_fs_encoder(enc, tmp_path / "exp" / fs_export_name("myrun"))
    os.remove(home / "weights" / "143_enc.pth")
    names = required_weights("fs", encoder_checkpoint=own)
    assert names == [GENERATOR_FILE]
    paths = resolve_weights(names, mask="landmarks", encoder_checkpoint=own, quiet=True)
    assert paths == {GENERATOR_FILE: home / "weights" / GENERATOR_FILE, "myrun_fs_encoder.pth": own}
    bundle = load_bundle(paths, "fs", Runtime("cpu"), mask="landmarks", encoder_checkpoint=own)
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in bundle.inverter.encoder.state_dict().items())
    crops = np.full((1, 1024, 1024, 3), 127, np.uint8)
    w, F = bundle.inverter.encode(crops)
    assert w.shape == (1, 18, 512) and F.shape == (1, 8, 16, 16)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        resolve_weights(names, encoder_checkpoint=tmp_path / "nope.pth", quiet=True)
    os.rename(own, tmp_path / "143_enc.pth")
    with pytest.raises(ValueError, match="official file 143_enc.pth"):
        resolve_weights(names, encoder_checkpoint=tmp_path / "143_enc.pth", quiet=True)
