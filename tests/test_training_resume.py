"""Resuming a training run continues bit for bit: N steps + resume to 2N equals 2N uninterrupted steps."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import require_shared

from vidinv.training.config import ConfigError
from vidinv.training.data import list_images
from vidinv.training.records import read_scalars_csv
from vidinv.training.runner import train
from vidinv.training.smoke import smoke_config, write_smoke_weights
from vidinv.training.state import checkpoint_name, list_checkpoints, read_state

N = 3


def _faces(tmp_path: Path, size: int) -> Path:
    from PIL import Image

    out = tmp_path / f"faces{size}"
    out.mkdir(exist_ok=True)
    for p in sorted(list_images(require_shared("images")))[:5]:
        with Image.open(p) as im:
            im.convert("RGB").resize((size, size), Image.BILINEAR).save(out / (p.stem + ".png"))
    return out


def _assert_same_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


@pytest.mark.parametrize("task,extra,size", [
    ("fs", {}, 128),
    ("psp", {"objective": "super_resolution", "data": {"hflip": True}}, 256),
])
def test_resume_is_bit_identical(tmp_path, task, extra, size):
    faces = _faces(tmp_path, size)
    files = write_smoke_weights(tmp_path / "w", task)

    def cfg(run, steps, **kw):
        over = {**extra, "run": {"max_steps": steps, "checkpoint_every": N, "sample_every": 0, **kw}}
        return smoke_config(task, files, tmp_path / run, faces, over)

    full = train(cfg("full", 2 * N))
    first = train(cfg("split", N))
    assert first.step == N
    # the stopped run has a complete checkpoint: model, optimiser, scheduler, RNG states, data position
    state = read_state(first.checkpoint)
    assert state["step"] == N and state["data"]["items_per_rank"] == N * (1 if task == "fs" else 2)
    assert {"python", "numpy", "torch", "cuda"} <= set(state["rng"][0])
    assert state["optimizer"]["state"] and state["scheduler"]["last_epoch"] == N
    assert not list((tmp_path / "split" / "checkpoints").glob(".*"))  # atomic writes leave nothing behind
    with pytest.raises(FileExistsError):
        train(cfg("split", 2 * N))  # a fresh start into a folder with checkpoints is refused
    resumed = train(cfg("split", 2 * N), resume=True)
    assert resumed.step == 2 * N
    _assert_same_weights(full.encoder_state, resumed.encoder_state)
    assert [s for s, _ in list_checkpoints(tmp_path / "split" / "checkpoints")] == [N, 2 * N]
    a = read_scalars_csv(tmp_path / "full" / "logs" / "scalars.csv")
    b = read_scalars_csv(tmp_path / "split" / "logs" / "scalars.csv")
    assert [r["step"] for r in b] == [str(s) for s in range(1, 2 * N + 1)]
    assert [r["total"] for r in a] == [r["total"] for r in b]  # identical losses, step by step


def test_resume_refuses_a_changed_config_and_drops_later_log_rows(tmp_path):
    faces = _faces(tmp_path, 128)
    files = write_smoke_weights(tmp_path / "w", "fs")
    base = {"run": {"max_steps": 2 * N, "checkpoint_every": N, "sample_every": 0}}
    res = train(smoke_config("fs", files, tmp_path / "run", faces, base))
    ckpts = list_checkpoints(tmp_path / "run" / "checkpoints")
    changed = smoke_config("fs", files, tmp_path / "run", faces, {**base, "loss": {"lpips": 0.5}})
    with pytest.raises(ConfigError, match=r"loss.lpips"):
        train(changed, resume=True)
    # resuming from the middle checkpoint rewrites the later history consistently
    more = smoke_config("fs", files, tmp_path / "run", faces, {"run": {**base["run"], "max_steps": 2 * N + 1}})
    again = train(more, resume=ckpts[0][1])
    assert again.step == 2 * N + 1
    rows = read_scalars_csv(tmp_path / "run" / "logs" / "scalars.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 2 * N + 2))
    # steps N+1..2N were replayed identically: the new step-2N checkpoint holds the first run's final weights
    replayed = read_state(tmp_path / "run" / "checkpoints" / checkpoint_name(2 * N))
    assert replayed["step"] == 2 * N == res.step
    _assert_same_weights(res.encoder_state, replayed["encoder"])
