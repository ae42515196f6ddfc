"""Multi-process training with torchrun (``python -m torch.distributed.run``), Gloo on CPU: two ranks
train the smoke config on their own data shards and end with identical weights."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, require_shared
from vidinv.training.config import config_to_dict
from vidinv.training.data import list_images
from vidinv.training.records import read_scalars_csv
from vidinv.training.smoke import smoke_config, write_smoke_weights
from vidinv.training.state import read_state


def _faces(tmp_path: Path, size: int) -> Path:
    from PIL import Image

    out = tmp_path / "faces"
    out.mkdir()
    for p in sorted(list_images(require_shared("images")))[:4]:
        with Image.open(p) as im:
            im.convert("RGB").resize((size, size), Image.BILINEAR).save(out / (p.stem + ".png"))
    return out


@pytest.mark.parametrize("task", ["fs", "psp"])
def test_torchrun_two_ranks_gloo_identical_weights(tmp_path, task):
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with Gloo is not available")
    faces = _faces(tmp_path, 128 if task == "fs" else 256)
    files = write_smoke_weights(tmp_path / "w", task)
    cfg = smoke_config(task, files, tmp_path / "run", faces, {"run": {"max_steps": 3, "checkpoint_every": 3}})
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(config_to_dict(cfg)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "vidinv.training", task, "--config", str(cfg_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    replicas = json.loads((tmp_path / "run" / "logs" / "replicas.json").read_text())
    assert replicas["world_size"] == 2 and replicas["step"] == 3
    assert len(set(replicas["sha256"])) == 1, replicas
    state = read_state(tmp_path / "run" / "checkpoints" / "step_00000003.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2  # one RNG record per rank
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])  # ranks draw differently
    rows = read_scalars_csv(tmp_path / "run" / "logs" / "scalars.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert (tmp_path / "run" / "export").is_dir()
