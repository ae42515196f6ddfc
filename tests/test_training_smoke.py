"""Training pipeline smoke tests on CPU with tiny networks: losses logged, weights refused, config schema,
data streams, exports through the official loaders, the ``vidinv train`` alias, and a small overfit run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from conftest import require_shared
from vidinv.training.config import (ConfigError, config_to_dict, default_config, describe, load_config, to_yaml)
from vidinv.training.data import ShardedStream, list_images
from vidinv.training.networks import ExplicitWeightsError, build_fs_encoder, build_psp_encoder
from vidinv.training.records import read_scalars_csv
from vidinv.training.runner import train
from vidinv.training.smoke import SMOKE_GENERATOR, smoke_config, write_smoke_generator, write_smoke_weights
from vidinv.training.state import read_state
from vidinv.io.checkpoints import USER_TRAINED_LICENCE
import yaml


def _small_faces(tmp_path: Path, n: int, size: int) -> Path:
    """``n`` shared aligned faces resized to ``size`` px PNGs (fast to decode in tests)."""
    from PIL import Image

    src = sorted(list_images(require_shared("images")))[:n]
    out = tmp_path / f"faces{size}"
    out.mkdir(exist_ok=True)
    for p in src:
        with Image.open(p) as im:
            im.convert("RGB").resize((size, size), Image.BILINEAR).save(out / (p.stem + ".png"))
    return out


def _check_logged(run: Path, terms: list[str], steps: int) -> list[dict]:
    rows = read_scalars_csv(run / "logs" / "scalars.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, steps + 1))
    for r in rows:
        for t in terms:
            assert t in r and r[t] != "", f"{t} not logged"
            assert math.isfinite(float(r[t])), f"{t} = {r[t]}"
    assert list((run / "logs").glob("events.out.tfevents.*")), "no TensorBoard event file"
    return rows


def test_fs_smoke_every_loss_computed_logged_and_finite(tmp_path):
    faces = _small_faces(tmp_path, 3, 128)
    files = write_smoke_weights(tmp_path / "w", "fs", arcface=True, parsing=True)
    cfg = smoke_config("fs", files, tmp_path / "run", faces, {"run": {"max_steps": 2, "sample_every": 1}})
    assert cfg.loss.use_id and cfg.loss.use_parsing and cfg.loss.use_lpips
    res = train(cfg)
    assert res.step == 2
    terms = ["l2", "lpips", "f_recon", "id", "parsing", "total", "feature_scale", "lr"]
    rows = _check_logged(res.out_dir, terms, 2)
    assert float(rows[0]["feature_scale"]) == 0.0 and float(rows[1]["feature_scale"]) == 0.5
    total = (float(rows[1]["l2"]) + 0.2 * float(rows[1]["lpips"]) + 0.01 * float(rows[1]["f_recon"])
             + 0.1 * float(rows[1]["id"]) + 0.1 * float(rows[1]["parsing"]))
    assert float(rows[1]["total"]) == pytest.approx(total, rel=1e-5)
    grids = sorted((res.out_dir / "samples").glob("*.png"))
    assert len(grids) == 2
    from PIL import Image

    with Image.open(grids[0]) as im:  # rows: 1 synthetic + 1 real; columns input | G(w) | G(w, F)
        assert im.size == (3 * 128, 2 * 128)
    state = read_state(res.checkpoint)
    assert state["step"] == 2 and state["task"] == "fs" and state["data"]["items_per_rank"] == 2
    assert res.export.name == "run_fs_encoder.pth"  # the run's own name, never the official 143_enc.pth
    export = torch.load(res.export, weights_only=True)
    sd, record = export["state_dict"], export["vidinv_config"]
    assert set(sd) == set(res.encoder_state)
    assert all(torch.equal(sd[k], res.encoder_state[k]) for k in sd)
    assert record["licence"] == USER_TRAINED_LICENCE and record["name"] == "run_fs_encoder.pth"
    assert record["training_config"]["loss"]["parsing"] == cfg.loss.parsing
    assert record["trained_from"]["generator"] == files["generator"].name


def test_psp_super_resolution_smoke_every_loss_logged(tmp_path):
    faces = _small_faces(tmp_path, 3, 256)
    files = write_smoke_weights(tmp_path / "w", "psp", irse50=True)
    cfg = smoke_config("psp", files, tmp_path / "run", faces,
                       {"objective": "super_resolution", "run": {"max_steps": 2}})
    assert cfg.loss.w_norm == 0.0 and cfg.sr_factors == [1, 2, 4, 8, 16] and not cfg.data.hflip
    res = train(cfg)
    _check_logged(res.out_dir, ["l2", "lpips", "id", "total", "lr"], 2)
    with open(res.out_dir / "logs" / "scalars.csv") as f:
        assert "w_norm" not in f.readline()  # super-resolution: L2 + LPIPS + identity, no W-norm term
    assert res.export.name == "run_psp_super_resolution.pt"
    ckpt = torch.load(res.export, weights_only=True)
    assert ckpt["opts"]["vidinv_config"]["licence"] == USER_TRAINED_LICENCE
    assert ckpt["opts"]["dataset_type"] == "celebs_super_resolution"
    assert ckpt["opts"]["resize_factors"] == "1,2,4,8,16"


def test_training_refuses_missing_weights_unless_losses_disabled(tmp_path, monkeypatch):
    from vidinv.training.cli import training_cli

    monkeypatch.setenv("VIDINV_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    faces = _small_faces(tmp_path, 2, 128)
    gen = write_smoke_generator(tmp_path / "gen.pt", **SMOKE_GENERATOR["fs"])
    args = ["fs", "--real-dir", str(faces), "--out-dir", str(tmp_path / "run"), "--weights-dir", str(tmp_path / "wd"),
            "--set", f"weights.generator={gen}", "--set", "encoder.widths=[16, 16, 32, 32]",
            "--set", "encoder.blocks=[1, 1, 1, 1]", "--set", "encoder.input_size=128", "--set", "encoder.stride=1",
            "--set", "run.num_threads=1", "--set", "data.num_workers=0", "--set", "run.progress=false",
            "--set", "loss.parsing_size=128", "--max-steps", "1"]
    res = CliRunner().invoke(training_cli, args)
    assert res.exit_code == 2, res.output
    for name in ("backbone.pth", "79999_iter.pth", "alexnet-owt-7be5be79.pth"):
        assert name in res.output
    assert "--no-id-loss" in res.output and "put it at" in res.output
    assert not (tmp_path / "run" / "checkpoints").exists()
    # one loss left enabled is still refused
    res = CliRunner().invoke(training_cli, args + ["--no-id-loss", "--no-parsing-loss"])
    assert res.exit_code == 2 and "alexnet-owt-7be5be79.pth" in res.output and "backbone.pth" not in res.output
    res = CliRunner().invoke(training_cli, args + ["--no-id-loss", "--no-parsing-loss", "--no-lpips-loss"])
    assert res.exit_code == 0, res.output
    rows = read_scalars_csv(tmp_path / "run" / "logs" / "scalars.csv")
    assert "id" not in rows[0] and "parsing" not in rows[0] and "lpips" not in rows[0]


def test_explicit_weight_path_must_exist(tmp_path):
    files = write_smoke_weights(tmp_path / "w", "fs")
    cfg = smoke_config("fs", files, tmp_path / "run", None,
                       {"weights": {"arcface": str(tmp_path / "nowhere" / "backbone.pth")}, "loss": {"use_id": True}})
    with pytest.raises(ExplicitWeightsError, match="nowhere"):
        train(cfg)


def test_config_schema_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="unknown key.*lpips_lamda"):
        load_config("fs", overrides=["loss.lpips_lamda=0.2"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config("psp", extra={"runn": {"seed": 1}})
    with pytest.raises(ConfigError, match="run.max_steps.*integer"):
        load_config("fs", overrides=["run.max_steps=many"])
    with pytest.raises(ConfigError, match="optim.name"):
        load_config("fs", overrides=["optim.name=sgd"])
    with pytest.raises(ConfigError, match="sr_factors"):
        load_config("psp", overrides=["sr_factors=[3]"])
    with pytest.raises(ConfigError, match="loss.use_parsing"):
        load_config("psp", overrides=["loss.use_parsing=false"])
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"loss": {"use_id": False}, "optim": {"name": "adam", "lr": 0.001}}))
    cfg = load_config("fs", p)
    assert cfg.loss.use_id is False and cfg.optim.name == "adam" and cfg.optim.lr == 0.001
    assert cfg.loss.lpips == 0.2  # untouched defaults stay official


def test_config_defaults_are_the_official_recipes_and_documented():
    fs = default_config("fs")
    assert (fs.loss.l2, fs.loss.lpips, fs.loss.f_recon, fs.loss.id, fs.loss.parsing) == (1.0, 0.2, 0.01, 0.1, 0.1)
    assert fs.loss.lpips_scales == 3 and fs.feature_layer == 5 and fs.feature_warmup_steps == 10_000
    assert (fs.optim.name, fs.optim.lr, fs.optim.betas, fs.optim.lr_step_epochs, fs.optim.lr_gamma) == \
        ("ranger", 1e-4, [0.95, 0.999], 10, 0.1)
    assert fs.run.max_steps == 120_000 and fs.run.steps_per_epoch == 10_000
    assert (fs.synthetic_per_batch, fs.real_per_batch) == (1, 1)
    enc = default_config("psp", "encode")
    assert (enc.loss.l2, enc.loss.lpips, enc.loss.id, enc.loss.w_norm) == (1.0, 0.8, 0.1, 0.0)
    assert enc.batch_size == 8 and enc.run.max_steps == 500_000 and enc.optim.lr_step_epochs is None
    assert enc.data.hflip
    sr = default_config("psp", "super_resolution")
    assert sr.loss.w_norm == 0.0 and not sr.data.hflip
    for task in ("fs", "psp"):
        text = describe(task)
        for line in text.splitlines():
            if line.startswith("      "):
                assert line.strip(), "a field without documentation"
        from vidinv.training.config import _docs, TASKS

        undocumented = [k for k, d in _docs(TASKS[task]).items() if not d.strip()]
        assert not undocumented, undocumented


def test_config_yaml_round_trip(tmp_path):
    cfg = load_config("psp", overrides=["objective=super_resolution", "run.seed=7", "data.real_dir=/data/celeba hq",
                                        "encoder.blocks=[1, 2, 3, 4]"])
    text = to_yaml(cfg)
    assert yaml.safe_load(text) == config_to_dict(cfg)
    assert "# " in text  # every field's documentation is written as a comment
    p = tmp_path / "c.yaml"
    p.write_text(text)
    assert config_to_dict(load_config("psp", p)) == config_to_dict(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  seed: 1\n    bad: 2\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config("psp", bad)


def test_config_errors_are_one_line_naming_the_key(tmp_path):
    cases = [
        ("fs", ["run.max_steps=0"], "run.max_steps: must be > 0, got 0"),
        ("fs", ["data.train_split=1.5"], "data.train_split: must be in (0, 1], got 1.5"),
        ("fs", ["run.precision=fp8"], "run.precision: must be one of 'fp32', 'bf16', 'fp16', got 'fp8'"),
        ("fs", ["encoder.widths=[16, x, 32, 32]"], "encoder.widths[1]: expected an integer, got 'x'"),
        ("fs", ["optim.lr=fast"], "optim.lr: expected a number, got 'fast'"),
        ("fs", ["run.progress=maybe"], "run.progress: expected true/false, got 'maybe'"),
        ("fs", ["data.videos=a.mp4"], "data.videos: expected a list, got str 'a.mp4'"),
        ("fs", ["run=3"], "run: expected a mapping (a section), got 3"),
        ("fs", ["optim.lr_step_epochs=2", "run.steps_per_epoch=null"],
         "optim.lr_step_epochs needs run.steps_per_epoch (an epoch length in steps)"),
        ("psp", ["encoder.widths=[16, 16, 32, 40]"],
         "encoder.widths: multiples of 16 (IR-SE gates reduce by 16), got [16, 16, 32, 40]"),
        ("psp", ["objective=deblur"], "objective: must be one of 'encode', 'super_resolution', got 'deblur'"),
    ]
    for task, overrides, message in cases:
        with pytest.raises(ConfigError) as info:
            load_config(task, overrides=overrides)
        assert str(info.value) == message
    p = tmp_path / "c.yaml"
    p.write_text("run:\n  max_steps: many\n")
    with pytest.raises(ConfigError) as info:
        load_config("fs", p)
    assert str(info.value) == "run.max_steps: expected an integer, got 'many'"
    # values are parsed as YAML by OmegaConf: exponents are numbers, null clears an optional field
    cfg = load_config("fs", overrides=["optim.lr=3e-4", "run.num_threads=null", "run.steps_per_epoch=5"])
    assert cfg.optim.lr == 3e-4 and cfg.run.num_threads is None and cfg.run.steps_per_epoch == 5


def test_psp_task_key_is_read_as_objective_with_a_deprecation_warning(tmp_path):
    from vidinv.training.cli import training_cli
    from vidinv.training.config import ConfigDeprecationWarning, upgrade_legacy_keys
    from vidinv.training.runner import config_differences

    new = load_config("psp", overrides=["objective=super_resolution"])
    assert new.objective == "super_resolution" and not new.data.hflip and new.run.out_dir == "runs/psp_super_resolution"
    old_yaml = tmp_path / "old.yaml"
    old_yaml.write_text("task: super_resolution\nbatch_size: 4\n")
    with pytest.warns(ConfigDeprecationWarning, match="'task' is deprecated; call it 'objective'"):
        old = load_config("psp", old_yaml)
    assert config_to_dict(old) == {**config_to_dict(new), "batch_size": 4}
    with pytest.warns(ConfigDeprecationWarning, match="--set"):
        assert load_config("psp", overrides=["task=super_resolution"]).objective == "super_resolution"
    with pytest.raises(ConfigError, match="give only 'objective'"):
        load_config("psp", extra={"task": "encode", "objective": "encode"})
    with pytest.raises(ConfigError, match="unknown key: 'task'"):
        load_config("fs", overrides=["task=encode"])  # only pSp had the old name
    # a checkpoint written before the rename resumes: its config compares equal after the rename
    saved = {**config_to_dict(new)}
    saved["task"] = saved.pop("objective")
    assert config_differences(upgrade_legacy_keys("psp", saved, warn=False), config_to_dict(new)) == []
    # the command line: --objective, and the old --task with a one-line warning
    res = CliRunner().invoke(training_cli, ["psp", "--task", "super_resolution", "--print-config"])
    assert res.exit_code == 0, res.output
    assert "warning: --task is deprecated; use --objective" in res.output
    assert "objective: super_resolution" in res.output
    res = CliRunner().invoke(training_cli, ["psp", "--config", str(old_yaml), "--print-config"])
    assert res.exit_code == 0 and "warning: " in res.output and "objective: super_resolution" in res.output
    res = CliRunner().invoke(training_cli, ["psp", "--objective", "encode", "--task", "super_resolution"])
    assert res.exit_code == 2 and "disagree" in res.output


def test_training_tasks_name_their_config_and_weight_files():
    from vidinv.training.fs_task import FSTask
    from vidinv.training.psp_task import PSPTask
    from vidinv.training.runner import TRAINING_TASKS, task_type
    from vidinv.training.task import TrainingTask

    assert TRAINING_TASKS == {"fs": FSTask, "psp": PSPTask}
    assert task_type(default_config("fs")) is FSTask and task_type(default_config("psp")) is PSPTask
    with pytest.raises(TypeError, match="no training task"):
        task_type(object())
    with pytest.raises(TypeError):
        TrainingTask(None, None, None)  # abstract
    fs = default_config("fs")
    assert FSTask.weight_roles(fs) == ({"generator": "psp_ffhq_encode.pt", "lpips_alexnet": "alexnet-owt-7be5be79.pth",
                                        "arcface": "backbone.pth", "parsing": "79999_iter.pth"}, {})
    fs.loss.use_id = fs.loss.use_parsing = fs.loss.use_lpips = False
    assert FSTask.weight_roles(fs) == ({"generator": "psp_ffhq_encode.pt"}, {"arcface": "backbone.pth"})
    fs.encoder.init_from_arcface = "never"
    assert FSTask.weight_roles(fs) == ({"generator": "psp_ffhq_encode.pt"}, {})
    psp = default_config("psp")
    psp.weights.generator = "/w/g.pt"
    assert PSPTask.weight_roles(psp) == ({"generator": "/w/g.pt", "lpips_alexnet": "alexnet-owt-7be5be79.pth",
                                          "irse50": "model_ir_se50.pth"}, {})
    psp.loss.use_id = False
    psp.weights.lpips_random_backbone = True
    assert PSPTask.weight_roles(psp) == ({"generator": "/w/g.pt"}, {"irse50": "model_ir_se50.pth"})


def test_sharded_stream_partitions_each_pass_and_is_stateless():
    n, world = 10, 3
    streams = [ShardedStream(n, r, world, seed=5) for r in range(world)]
    per = streams[0].per_rank
    assert per == 4
    for p in range(3):
        seen = [streams[r].key(p * per + o).index for r in range(world) for o in range(per)]
        assert set(seen) == set(range(n)) and len(seen) == 12  # padded like DistributedSampler
    again = ShardedStream(n, 1, world, seed=5)
    assert [again.key(g) for g in (7, 3, 11)] == [streams[1].key(g) for g in (7, 3, 11)]
    assert [k.index for k in streams[0].keys(0, per)] != [k.index for k in streams[0].keys(per, per)]


def test_exports_load_through_the_official_loaders(tmp_path):
    from vidinv.training.export import export_fs_encoder, export_psp, fs_export_name, psp_export_name
    from vidinv.models.fs_encoder import load_fs_encoder
    from vidinv.models.psp import load_psp
    from vidinv.models.stylegan2 import Generator

    torch.manual_seed(0)
    enc = build_fs_encoder(8, 512, 512)  # the official fs_encoder_v2 for an 8-style generator
    path = export_fs_encoder(enc, tmp_path / "exp" / fs_export_name("mine"), trained_from={"generator": "g.pt"})
    assert path.name == "mine_fs_encoder.pth"
    loaded = load_fs_encoder(path)  # 8 heads: declared by the file's vidinv record
    assert loaded.n_styles == 8
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in loaded.state_dict().items())
    record = torch.load(path, weights_only=True)["vidinv_config"]
    assert record["licence"] == USER_TRAINED_LICENCE and record["trained_from"] == {"generator": "g.pt"}

    G = Generator(32, 512, 8, channel_multiplier=2)  # the decoder load_psp builds for output_size 32
    penc = build_psp_encoder(G.n_latent)
    avg = torch.randn(G.n_latent, 512)
    path = export_psp(penc, G, avg, tmp_path / "exp" / psp_export_name("mine"), loss={"l2": 1, "lpips": 0.8, "id": 0.1},
                      config={"task": "encode", "nested": {"a": [1, 2]}})
    assert path.name == "mine_psp_encode.pt"
    net = load_psp(path)
    assert torch.equal(net.latent_avg, avg)
    assert all(torch.equal(v, penc.state_dict()[k]) for k, v in net.encoder.state_dict().items())
    assert all(torch.equal(v, G.state_dict()[k]) for k, v in net.decoder.state_dict().items())
    assert torch.load(path, weights_only=True)["opts"]["vidinv_config"]["training_config"] == {
        "task": "encode", "nested": {"a": [1, 2]}}
    # never under an official registry name (the registry would show InterDigital's / pSp's licence for it)
    for name in ("143_enc.pth", "psp_ffhq_encode.pt", "psp_celebs_super_resolution.pt"):
        with pytest.raises(ValueError, match="official file"):
            (export_fs_encoder if name.endswith(".pth") else export_psp)(
                *((enc,) if name.endswith(".pth") else (penc, G, avg)), tmp_path / "exp" / name)
        assert not (tmp_path / "exp" / name).exists()


def test_vidinv_train_alias():
    from vidinv.cli.main import cli

    res = CliRunner().invoke(cli, ["train", "fs", "--describe"])
    assert res.exit_code == 0, res.output
    assert "loss.use_parsing" in res.output and "feature_warmup_steps" in res.output
    res = CliRunner().invoke(cli, ["train", "psp", "--objective", "super_resolution", "--print-config"])
    assert res.exit_code == 0 and "w_norm: 0.0" in res.output and "sr_factors: [1, 2, 4, 8, 16]" in res.output


def test_video_faces_dataset(tmp_path):
    from vidinv.training.video_faces import VideoFaceDataset, VideoFacesUnavailable

    video = require_shared("videos") / "greenscreen_frontal.mp4"
    if not video.is_file():
        pytest.skip(f"{video} is absent")
    try:
        ds = VideoFaceDataset([video], tmp_path / "cache", 64, every=2, max_frames=5)
    except VideoFacesUnavailable as exc:  # pragma: no cover - depends on the environment
        pytest.skip(str(exc))
    assert len(ds) == 3  # frames 0, 2, 4
    item = ds[0]
    assert item["target"].shape == (3, 64, 64) and -1 <= float(item["target"].min()) <= float(item["target"].max()) <= 1
    again = VideoFaceDataset([video], tmp_path / "cache", 64, every=2, max_frames=5)  # cached
    assert again.files == ds.files


@pytest.mark.slow
def test_fs_overfit_four_images_halves_the_reconstruction_loss(tmp_path):
    faces = _small_faces(tmp_path, 4, 128)
    files = write_smoke_weights(tmp_path / "w", "fs")
    cfg = smoke_config("fs", files, tmp_path / "run", faces, {
        "run": {"max_steps": 80, "log_every": 5, "sample_every": 0, "checkpoint_every": 80},
        "synthetic_per_batch": 0, "real_per_batch": 4, "loss": {"l2_on_real": True},
        "optim": {"lr": 1e-3, "lr_step_epochs": None}, "feature_warmup_steps": 20})
    res = train(cfg)
    rows = read_scalars_csv(res.out_dir / "logs" / "scalars.csv")
    first, last = rows[0], rows[-1]
    print(f"overfit: l2 {first['l2']} -> {last['l2']}, lpips {first['lpips']} -> {last['lpips']}")
    assert float(last["l2"]) < 0.5 * float(first["l2"])
    assert float(last["lpips"]) < 0.5 * float(first["lpips"])


def test_official_encoders_start_from_the_recognition_networks():
    from vidinv.training.networks import init_fs_encoder_from_arcface, init_psp_encoder_from_irse50
    from vidinv.models.iresnet import iresnet50
    from vidinv.models.irse import IRSE50Backbone

    torch.manual_seed(0)
    arc = iresnet50()
    enc = build_fs_encoder(1, 512, 512)
    init_fs_encoder_from_arcface(enc, arc)
    assert torch.equal(enc.conv[0].weight, arc.conv1.weight)
    assert torch.equal(enc.block_3[13].conv2.weight, arc.layer3[13].conv2.weight)
    assert torch.equal(enc.block_4[0].downsample[1].running_var, arc.layer4[0].downsample[1].running_var)
    irse = IRSE50Backbone()
    penc = build_psp_encoder(1)
    init_psp_encoder_from_irse50(penc, irse)
    assert torch.equal(penc.input_layer[0].weight, irse.input_layer[0].weight)
    assert torch.equal(penc.body[23].res_layer[5].fc2.weight, irse.body[23].res_layer[5].fc2.weight)


@pytest.mark.slow
def test_fs_official_encoder_trains_and_exports_for_load_fs_encoder(tmp_path):
    """The full-size fs_encoder_v2 (IResNet-50, 256 px input, 512-d styles, F 512x16x16), initialised from an
    ArcFace file, trains one step with a 32 px 512-channel generator and exports a file load_fs_encoder reads."""
    from vidinv.models.fs_encoder import load_fs_encoder

    faces = _small_faces(tmp_path, 2, 32)
    files = write_smoke_weights(tmp_path / "w", "fs", arcface=True)
    files["generator"] = write_smoke_generator(tmp_path / "w" / "g32.pt", size=32, style_dim=512, n_mlp=2,
                                               channel_multiplier=1, max_channels=512)
    cfg = smoke_config("fs", files, tmp_path / "run", faces, {
        "run": {"max_steps": 1, "sample_every": 1},
        "encoder": {"widths": [64, 128, 256, 512], "blocks": [3, 4, 14, 3], "input_size": 256, "stride": 2},
        "loss": {"use_id": False, "lpips_scales": 1}})
    res = train(cfg)
    arc = torch.load(files["arcface"], weights_only=True)
    ckpt = read_state(res.checkpoint)
    assert ckpt["step"] == 1
    enc = load_fs_encoder(res.export)  # the record declares 8 heads and the 256 px input
    assert enc.n_styles == 8 and enc.enc_resolution == 256
    assert all(torch.equal(v, res.encoder_state[k]) for k, v in enc.state_dict().items())
    # the stem started from ArcFace: one step at lr 1e-4 moves it by ~4e-4, a fresh random init by ~0.3
    assert float((enc.conv[0].weight.detach() - arc["conv1.weight"]).abs().max()) < 1e-2
