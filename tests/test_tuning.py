"""Per-video tuning (issue 12, items 1-2): STIT's pivotal tuning and stitching tuning
(:mod:`vidinv.pipeline.tuning`), the seam metric (:mod:`vidinv.metrics.seam`), the tuned generator's
checkpoint and the ``vidinv invert --tune pti`` -> ``vidinv edit --from-inversion`` round trip.

The unit tests use the tiny test generator (tests/tiny_bundle.py) at 64 pixels: at 1024 one forward + backward
pass of even the tiny generator takes ~10 s on a shared CPU. The end-to-end test uses the tiny bundle (1024).
LPIPS has a seeded random AlexNet backbone (torchvision's ImageNet weights are not available offline); the
checks only use properties that hold for any backbone (a loss that decreases, a PSNR that rises).
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from conftest import invoke_cli as _invoke
from conftest import require_shared
from tiny_bundle import tiny_generator, write_tiny_bundle

from vidinv.metrics import image as im
from vidinv.metrics.seam import SEAM_WIDTH, seam_band, seam_metrics
from vidinv.pipeline import tuning as T


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    import torchvision

    torch.manual_seed(0)
    feats = {k: v for k, v in torchvision.models.alexnet().state_dict().items() if k.startswith("features.")}
    d = tmp_path_factory.mktemp("alex")
    torch.save(feats, d / "alexnet-owt-7be5be79.pth")
    return d / "alexnet-owt-7be5be79.pth"


@pytest.fixture(scope="module")
def lpips_net(alexnet_file):
    return T.tuning_lpips(backbone_path=alexnet_file)


def _faces(size: int, n: int = 3) -> list[np.ndarray]:
    root = require_shared("images")
    out = []
    for name in ("ffhq_00020.jpg", "ffhq_00109.jpg", "ffhq_00128.jpg")[:n]:
        img = cv2.cvtColor(cv2.imread(str(root / name)), cv2.COLOR_BGR2RGB)
        out.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    return out


def _pivots(G, n: int, seed: int = 0) -> tuple[torch.Tensor, list[np.ndarray]]:
    with torch.no_grad():
        avg = G.mean_latent(512, generator=torch.Generator().manual_seed(seed))[0].repeat(G.n_latent, 1)
    g = torch.Generator().manual_seed(seed + 1)
    return avg, [(avg + 0.3 * torch.randn(avg.shape, generator=g)).numpy() for _ in range(n)]


def _recon_psnr(G, samples, size) -> float:
    with torch.no_grad():
        vals = []
        for s in samples:
            img = G.synthesis(torch.from_numpy(s.w)[None], noise="const")
            img = torch.nn.functional.interpolate(img, size=(size, size), mode="area")
            x = ((img[0].clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy().astype(np.float64)
            vals.append(im.psnr(x, s.crop.astype(np.float64) / 255.0))
    return float(np.mean(vals))


def test_pti_loss_decreases_and_reconstruction_improves(lpips_net):
    size = 64
    G = tiny_generator(size=size)
    avg, ws = _pivots(G, 3)
    samples = [T.TuneSample(i, 0, np.zeros((4, 2)), np.zeros((68, 2)), w, None, c)
               for i, (w, c) in enumerate(zip(ws, _faces(size)))]
    before = _recon_psnr(G, samples, size)
    ref = {k: v.clone() for k, v in G.state_dict().items()}
    res = T.run_pti(G, avg, None, samples, lpips_net, T.TuneOptions(mode="pti", steps=6, size=size))
    after = _recon_psnr(G, samples, size)
    assert res.steps == 6 and res.updates == 18 and res.faces == 3
    assert res.recon_losses[-1] < res.recon_losses[0]
    assert res.losses[-1] < res.losses[0]
    assert after > before + 0.01, (before, after)
    assert not any(p.requires_grad for p in G.parameters())
    changed = [k for k, v in G.state_dict().items() if not torch.equal(v, ref[k])]
    assert changed and not any(k.startswith("noises.") for k in changed)  # noise maps are buffers: fixed


def test_pti_with_feature_pivots_tunes_only_what_f_reaches(lpips_net):
    size = 64
    G = tiny_generator(size=size)
    avg, ws = _pivots(G, 2, seed=5)
    k = 5
    with torch.no_grad():
        _, feats = G.synthesis(torch.from_numpy(ws[0])[None], return_features=True)
    F0 = feats[k][0].to(torch.float16).numpy()
    samples = [T.TuneSample(i, 0, np.zeros((4, 2)), np.zeros((68, 2)), w, F0, c)
               for i, (w, c) in enumerate(zip(ws, _faces(size, 2)))]
    res = T.run_pti(G, avg, k, samples, lpips_net, T.TuneOptions(mode="pti", steps=3, size=size))
    assert res.recon_losses[-1] < res.recon_losses[0]
    with pytest.raises(ValueError, match="feature_index"):
        T.run_pti(G, avg, None, samples, lpips_net, T.TuneOptions(mode="pti", steps=1, size=size))


def test_stitch_masks_follow_stit():
    face = np.zeros((32, 32), bool)
    face[2:20, 8:24] = True
    content, border, full = T.stitch_masks(face, 3)
    assert full[0, 8] == 1 and full[22, 8] == 1 and full[23, 8] == 0  # square dilation by 3
    assert border[21, 10] == 1 and content[21, 10] == 0  # the band outside the face
    assert border[2, 12] == 1 and content[2, 12] == 0  # face pixels within 3 of the crop edge
    assert content[10, 12] == 1 and border[10, 12] == 0
    assert not np.any((content > 0) & (border > 0))


def _stitch_case(steps):
    size = 64
    G = tiny_generator(size=size, seed=2)
    _, ws = _pivots(G, 1, seed=3)
    w = torch.from_numpy(ws[0])[None]
    with torch.no_grad():  # the frame as PTI leaves it: the tuned generator reproduces it (G(w) here)
        orig = np.rint(((G.synthesis(w, noise="const")[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy())
    orig = orig.astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    face = ((xx - 32) / 16) ** 2 + ((yy - 34) / 20) ** 2 <= 1
    D = round(T.OUTER_MASK_DILATION * size / 1024) + 4  # a band a few pixels wide at this small size
    content, border, _ = T.stitch_masks(face, D)
    with torch.no_grad():
        edited = G.synthesis(w + 0.5, noise="const")  # an "edit": w + a constant shift
    to_t = T._to_tensor
    tuned, losses = T.stitch_face(G, w + 0.5, None, None, to_t(orig, "cpu"), edited,
                                  torch.from_numpy(border)[None, None], torch.from_numpy(content)[None, None],
                                  steps=steps)
    return orig, face, D, edited, tuned, losses


def _paste(orig, img, alpha):
    x = ((img[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
    return np.rint(orig * (1 - alpha[..., None]) + x * alpha[..., None]).astype(np.uint8)


def test_stitching_tuning_lowers_the_border_loss_and_the_seam():
    orig, face, D, edited, tuned, losses = _stitch_case(steps=30)
    assert losses[-1] < 0.8 * losses[0]
    size = face.shape[0]
    stitched = T.stitched_blend_mask(face, D, T.BlendSettings(), size)
    assert stitched[~T.stitch_masks(face, D)[2].astype(bool)].max() == 0  # the fade stays inside STIT's full mask
    band = seam_band(face, max(1, round(SEAM_WIDTH * size)))
    # the same paste with and without the tuning (STIT's "mask" vs "stitching tuning" columns)
    before = seam_metrics(_paste(orig, edited, stitched), orig, band)
    after = seam_metrics(_paste(orig, tuned, stitched), orig, band)
    assert after["colour"] < 0.7 * before["colour"], (before, after)
    assert after["gradient"] < before["gradient"], (before, after)


def test_stitching_border_loss_threshold_stops_early():
    G = tiny_generator(size=32, seed=2)
    w = torch.zeros(1, G.n_latent, 512)
    with torch.no_grad():
        img = G.synthesis(w, noise="const")
    ones = torch.ones(1, 1, 32, 32)
    _, losses = T.stitch_face(G, w, None, None, img, img, ones, ones, steps=5, threshold=1e-6)
    assert losses == [0.0]  # the border already matches: stopped before the first update (STIT's check)
    _, losses = T.stitch_face(G, w, None, None, img + 0.5, img, ones, ones, steps=3, threshold=1e-6)
    assert len(losses) == 3


def test_seam_metric_by_hand():
    src = np.full((20, 20, 3), 100, np.uint8)
    inner = np.zeros((20, 20), bool)
    inner[5:15, 5:15] = True
    band = seam_band(inner, 2)
    assert band[4, 10] and band[3, 10] and not band[2, 10] and not band[10, 10]
    assert seam_metrics(src, src, band) == {"colour": 0.0, "gradient": 0.0, "pixels": int(band.sum())}
    out = src.copy()
    out[band] = 110  # a colour step of 10 levels over the whole ring
    m = seam_metrics(out, src, band)
    assert m["colour"] == pytest.approx(10.0)
    assert 0 < m["gradient"] < 10
    assert np.isnan(seam_metrics(out, src, np.zeros((20, 20), bool))["colour"])
    with pytest.raises(ValueError):
        seam_band(inner, 0)


def test_tuned_generator_checkpoint_round_trip_and_atomic(tmp_path, monkeypatch):
    G = tiny_generator(size=64)
    avg = torch.zeros(G.n_latent, 512)
    res = T.TuneResult(mode="pti", steps=1, updates=1, faces=1, seconds=1.0, seconds_per_update=1.0, losses=[1.0])
    rec = T.tuned_record(G, base_name="psp_ffhq_encode.pt", base_sha256="ab" * 32, result=res,
                         opts=T.TuneOptions(mode="pti"))
    path = tmp_path / T.TUNED_GENERATOR_FILE
    with torch.no_grad():
        G.style[1].weight.add_(1.0)  # "tuned"
    T.save_tuned_generator(G, avg, path, rec)
    G2 = tiny_generator(size=64)
    got = T.load_tuned_generator(G2, path, base_sha256="ab" * 32)
    assert got["network"] == T.TUNED_NETWORK and got["trained_from"]["generator"] == "psp_ffhq_encode.pt"
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))
    with pytest.raises(T.CheckpointError, match="tuned from"):
        T.load_tuned_generator(tiny_generator(size=64), path, base_sha256="cd" * 32)
    with pytest.raises(T.CheckpointError, match="size"):
        T.load_tuned_generator(tiny_generator(size=32), path)

    # a failure in the middle of torch.save: no file, no temporary file left, the old file intact
    old = path.read_bytes()
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        f.truncate(100)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        T.save_tuned_generator(G, avg, path, rec)
    assert path.read_bytes() == old
    fresh = tmp_path / "new" / T.TUNED_GENERATOR_FILE
    fresh.parent.mkdir()
    with pytest.raises(OSError, match="simulated"):
        T.save_tuned_generator(G, avg, fresh, rec)
    assert list(fresh.parent.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", T.TUNED_GENERATOR_FILE]


def test_tune_options_are_checked():
    T.check_tune_options(T.TuneOptions(mode="stitch"))
    for bad, match in ((T.TuneOptions(mode="full"), "--tune"), (T.TuneOptions(mode="pti", steps=0), "--tune-steps"),
                       (T.TuneOptions(mode="stitch", border_loss_threshold=float("nan")), "threshold")):
        with pytest.raises(ValueError, match=match):
            T.check_tune_options(bad)


# ------------------------------------------------------------------------------------------------ end to end


def test_invert_tune_pti_then_edit_from_inversion(tmp_path, alexnet_file):
    from vidinv.io.inversion import InversionReader
    from vidinv.io.outputs import sha256_file
    from vidinv.io.video import read_frames

    src = require_shared("videos") / "interview_720p.mp4"
    home = tmp_path / "home"
    write_tiny_bundle(home, directions=True)
    wd = alexnet_file.parent
    common = ["--end", "0.03", "--weights-dir", str(wd), "-q"]
    tuned, plain = tmp_path / "tuned.vinv", tmp_path / "plain.vinv"
    r = _invoke(["invert", str(src), "-o", str(tuned), "--tune", "pti", "--tune-steps", "1", *common], home)
    assert r.exit_code == 0, r.output
    assert "tuned generator:" in r.stdout and "MiB" in r.stdout and "s/update" in r.stdout
    man = json.loads((tuned / "manifest.json").read_text())
    entry = man["tuned_generator"]
    assert man["complete"] and entry["file"] == "tuned_generator.pt"
    assert entry["sha256"] == sha256_file(tuned / "tuned_generator.pt")
    assert entry["bytes"] == (tuned / "tuned_generator.pt").stat().st_size
    assert entry["tune"]["updates"] == entry["tune"]["faces"] == man["n_records"] >= 1 and entry["tune"]["seconds"] > 0
    assert InversionReader(tuned).tuned_generator == tuned / "tuned_generator.pt"
    assert not [p for p in tuned.iterdir() if ".part" in p.name]

    r = _invoke(["invert", str(src), "-o", str(plain), *common], home)
    assert r.exit_code == 0, r.output
    assert "tuned_generator" not in json.loads((plain / "manifest.json").read_text())

    outs = {}
    for name, export in (("tuned", tuned), ("plain", plain)):
        outs[name] = tmp_path / f"{name}.mp4"
        r = _invoke(["edit", "--from-inversion", str(export), "-o", str(outs[name]), "--attr", "smile",
                     "--mask", "landmarks", "--end", "0.03", "--gate", "off", "-q"], home)  # tiny G draws no face
        assert r.exit_code == 0, r.output
    a = [f.image for f in read_frames(outs["tuned"])]
    b = [f.image for f in read_frames(outs["plain"])]
    assert len(a) == len(b) == 1
    # same codes (the encoder ran on the same frame), another generator: the face differs, the rest does not
    d = np.abs(a[0].astype(int) - b[0].astype(int)).max(axis=2)
    assert d.max() > 8 and (d <= 3).mean() > 0.5


def test_report_gives_the_seam_of_each_output(tmp_path):
    """``vidinv report SRC A B`` reports each output's seam (before / after stitching are two outputs): an output
    equal to the source has none; one brighter by 20 levels everywhere has a colour seam of about 20 levels and
    no gradient seam (a flat offset has no texture)."""
    import json

    from conftest import cached_detection, require_shared

    from vidinv.cli.main import main
    from vidinv.io.video import VideoReader, VideoWriter, probe

    src = require_shared("videos") / "greenscreen_frontal.mp4"
    fps = probe(src).fps
    frames = [f.image for f in VideoReader(src, stop=3)]
    h, w = frames[0].shape[:2]
    paths = {}
    for name, off in (("same", 0), ("bright", 20)):
        paths[name] = tmp_path / f"{name}.mp4"
        with VideoWriter(paths[name], w, h, fps=fps, crf=0) as wr:
            for f in frames:
                wr.write(np.clip(f.astype(int) + off, 0, 255).astype(np.uint8))
    out = tmp_path / "rep"
    with cached_detection(), pytest.raises(SystemExit) as ex:
        main(["report", str(paths["same"]), str(paths["same"]), str(paths["bright"]), "-o", str(out),
              "--embedder", "dlib", "--no-lpips", "-q"])
    assert ex.value.code in (0, None)
    doc = json.loads((out / "report.json").read_text())
    labels = {v["id"]: v["label"] for v in doc["videos"]}
    seams = {labels[c["output"]]: c["seam"] for c in doc["comparisons"]}
    assert seams["same.mp4"]["colour"]["max"] == 0.0 and seams["same.mp4"]["gradient"]["max"] == 0.0
    bright = seams["bright.mp4"]
    assert bright["colour"]["count"] == 3 and 17 < bright["colour"]["mean"] < 21
    assert bright["gradient"]["mean"] < 1.0
