"""``vidinv edit|invert --allow-hash-mismatch`` and ``--encoder-checkpoint``: a ``--weights-dir`` file that
differs from the registry stops the job with both hashes (issue 9, item 4) unless the user opts out, and an
encoder trained with ``training/`` is used under its own file name (issue 9, item 2)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, require_shared
from tiny_bundle import tiny_fs_encoder, write_tiny_bundle


def _run(args: list[str], home: Path, timeout: int = 600):
    env = dict(os.environ, VIDINV_HOME=str(home), PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "vidinv.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)


def _invoke(args: list[str], home: Path):
    """The CLI in this process (click's runner) with VIDINV_HOME=home; the command's SIGTERM handler is undone
    afterwards. Returns ``(exit status, stderr)``; an exception that escaped the CLI fails the test."""
    import signal

    from click.testing import CliRunner

    from vidinv.cli.main import cli

    old = signal.getsignal(signal.SIGTERM)
    try:
        r = CliRunner().invoke(cli, args, env={"VIDINV_HOME": str(home)})
    finally:
        signal.signal(signal.SIGTERM, old)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info
    return r.exit_code, r.stderr


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    h = tmp_path_factory.mktemp("tiny_home_opts")
    write_tiny_bundle(h)
    return h


@pytest.fixture
def altered_weights_dir(tmp_path):
    """A --weights-dir holding stit_w/smile.npy with one value changed (a valid .npy, a different sha256)."""
    src = require_shared("directions") / "stit_w" / "smile.npy"
    d = tmp_path / "wdir"
    (d / "stit_w").mkdir(parents=True)
    v = np.load(src)
    v[0, 0] += 1e-3
    np.save(d / "stit_w" / "smile.npy", v)
    return d


def test_edit_refuses_a_weights_dir_file_with_another_hash(tiny_home, altered_weights_dir, tmp_path):
    video = require_shared("videos") / "greenscreen_frontal.mp4"
    out = tmp_path / "out.mp4"
    p = _run(["edit", str(video), "-o", str(out), "--attr", "stit:smile", "--weights-dir", str(altered_weights_dir),
              "-q"], tiny_home)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
    assert len(lines) == 1 and lines[0].startswith("vidinv: error: "), p.stderr
    have = hashlib.sha256((altered_weights_dir / "stit_w" / "smile.npy").read_bytes()).hexdigest()
    want = hashlib.sha256((require_shared("directions") / "stit_w" / "smile.npy").read_bytes()).hexdigest()
    assert have in lines[0] and want in lines[0] and "--allow-hash-mismatch" in lines[0]
    assert not out.exists()


def test_allow_hash_mismatch_uses_the_users_file(tiny_home, altered_weights_dir, monkeypatch):
    """With the opt-out the job plans with the user's file (not the cached official copy)."""
    from vidinv.pipeline.edit import EditOptions, plan_edit

    monkeypatch.setenv("VIDINV_HOME", str(tiny_home))
    monkeypatch.delenv("VIDINV_ALLOW_HASH_MISMATCH", raising=False)
    video = require_shared("videos") / "greenscreen_frontal.mp4"
    kw = dict(src=str(video), dst="unused.mp4", attrs=("stit:smile",), weights_dir=str(altered_weights_dir))
    from vidinv.weights import WeightHashMismatchError

    with pytest.raises(WeightHashMismatchError):
        plan_edit(EditOptions(**kw), quiet=True)
    plan = plan_edit(EditOptions(**kw, allow_hash_mismatch=True), quiet=True)
    used = [p for p in plan.paths.values() if Path(p).name == "smile.npy"]
    assert used == [altered_weights_dir / "stit_w" / "smile.npy"]


def test_invert_with_the_users_encoder_checkpoint(tiny_home, tmp_path, detection_cache):
    """`vidinv invert --encoder-checkpoint myrun_fs_encoder.pth` runs without 143_enc.pth, records the user's
    file in the export, and refuses a user file named like an official one (in this process: click's runner)."""
    from vidinv.training.export import export_fs_encoder, fs_export_name

    home = tmp_path / "home"
    shutil.copytree(tiny_home, home)
    os.remove(home / "weights" / "143_enc.pth")
    own = export_fs_encoder(tiny_fs_encoder(seed=11), tmp_path / "exp" / fs_export_name("myrun"))
    video = require_shared("videos") / "greenscreen_frontal.mp4"
    out = tmp_path / "inv"
    rc, err = _invoke(["invert", str(video), "-o", str(out), "--encoder-checkpoint", str(own), "--end", "0.2", "-q"],
                      home)
    assert rc == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert "myrun_fs_encoder.pth" in json.dumps(manifest) and "143_enc.pth" not in json.dumps(manifest["models"])
    bad = tmp_path / "143_enc.pth"
    shutil.copy(own, bad)
    rc, err = _invoke(["invert", str(video), "-o", str(tmp_path / "inv2"), "--encoder-checkpoint", str(bad), "--end",
                       "0.2", "-q"], home)
    assert rc != 0 and "Traceback" not in err and "official file 143_enc.pth" in err, err
