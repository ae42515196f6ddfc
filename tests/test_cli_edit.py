"""``vidinv edit`` / ``vidinv invert`` as a user runs them (subprocesses): missing weights stop before any
video work with the registry's message; killing the process mid-run leaves no file at the output path;
the README's main-job command runs to completion with VIDINV_HOME on the tiny bundle."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, require_shared
from tiny_bundle import write_tiny_bundle



def _env(home: Path) -> dict:
    env = dict(os.environ)
    env["VIDINV_HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _vidinv(args: list[str], home: Path, **kw):
    return [sys.executable, "-m", "cli", *args], dict(env=_env(home), cwd=kw.pop("cwd", REPO), **kw)


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    h = tmp_path_factory.mktemp("tiny_home")
    write_tiny_bundle(h)
    return h


def readme_main_command() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"vidinv edit YOUR_VIDEO\.mp4[^\n`]*", text)
    assert m, "the README's first command must run `vidinv edit YOUR_VIDEO.mp4 ...` (the main job)"
    return m.group(0).strip()


def _main_args(video: Path, out: Path) -> list[str]:
    args = readme_main_command().split()[1:]
    args = [str(video) if a == "YOUR_VIDEO.mp4" else a for a in args]
    i = args.index("-o") if "-o" in args else args.index("--output")
    args[i + 1] = str(out)
    return args


def test_missing_weights_stop_before_decoding(tmp_path):
    video = require_shared("videos") / "greenscreen_frontal.mp4"
    out = tmp_path / "out.mp4"
    cmd, kw = _vidinv(_main_args(video, out), tmp_path / "empty_home")
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert p.returncode != 0
    for name in ("143_enc.pth", "psp_ffhq_encode.pt", "Smiling_boundary.npy"):
        assert name in p.stderr, p.stderr
    assert "file(s) that vidinv needs" in p.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*")), "no output or temporary file"
    assert time.perf_counter() - t < 60


def test_readme_main_command_runs_on_tiny_bundle(tiny_home, tmp_path):
    video = require_shared("videos") / "greenscreen_frontal.mp4"
    out = tmp_path / "edited.mp4"
    cmd, kw = _vidinv(_main_args(video, out) + ["-q"], tiny_home)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert p.returncode == 0, p.stderr
    # the bundle has no face parser: said at the default log level, once
    assert p.stderr.count("79999_iter.pth (BiSeNet face parsing) was not found") == 1, p.stderr
    assert "uses landmark masks" in p.stderr
    import av

    with av.open(str(out)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n == 78


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_mid_run_leaves_no_output(tiny_home, tmp_path, sig):
    video = require_shared("videos") / "talking_wink.mp4"
    out = tmp_path / "out.mp4"
    cmd, kw = _vidinv(["edit", str(video), "-o", str(out), "--attr", "smile", "-q"], tiny_home)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not list(tmp_path.glob(".out.*.part.mp4")):
            assert p.poll() is None, p.communicate()[1]
            time.sleep(0.2)
        assert list(tmp_path.glob(".out.*.part.mp4")), "the writer never started"
        time.sleep(3.0)  # mid-run: some frames written
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode != 0
    assert not out.exists()
    if sig == signal.SIGTERM:  # cleaned up: no temporary file either, one-line reason
        assert not list(tmp_path.glob(".out.*")), list(tmp_path.iterdir())
        assert "interrupted" in err


def test_help_shows_strength_table():
    p = subprocess.run([sys.executable, "-m", "cli", "edit", "--help"], capture_output=True, text=True, cwd=REPO,
                       timeout=60)
    assert p.returncode == 0 and "--strength s adds s steps" in p.stdout and "--from-inversion" in p.stdout


def test_edit_report_option_writes_the_report(tiny_home, tmp_path):
    """``vidinv edit --report DIR`` writes the same report as ``vidinv report IN OUT -o DIR`` for its output."""
    import json

    from vidinv.report.schema import validate

    video = require_shared("videos") / "greenscreen_frontal.mp4"
    out, rep = tmp_path / "edited.mp4", tmp_path / "rep"
    cmd, kw = _vidinv(["edit", str(video), "-o", str(out), "--attr", "smile", "--strength", "2",
                       "--start", "0", "--end", "0.4", "--report", str(rep), "-q"], tiny_home)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)
    assert p.returncode == 0, p.stderr
    doc = json.loads((rep / "report.json").read_text())
    validate(doc)
    assert (rep / "report.html").is_file()
    (cmp,) = doc["comparisons"]
    videos = {v["id"]: v for v in doc["videos"]}
    assert Path(videos[cmp["output"]]["path"]).name == "edited.mp4"
    assert videos[cmp["source"]]["frames"]["analysed"] == 10  # the 0.4 s window at 25 fps, not the whole clip
    assert videos[cmp["output"]]["frames"]["analysed"] == 10
