"""``vidinv edit`` / ``vidinv invert`` as a user runs them (subprocesses): missing weights stop before any
video work with the registry's message; killing the process mid-run leaves no file at the output path;
the README's main-job command runs to completion with VIDINV_HOME on the tiny bundle. Refusals whose message
is checked run in this process through click's runner (``_invoke``)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, require_shared
from tiny_bundle import write_tiny_bundle



def _env(home: Path) -> dict:
    env = dict(os.environ)
    env["VIDINV_HOME"] = str(home)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _vidinv(args: list[str], home: Path, **kw):
    return [sys.executable, "-m", "vidinv.cli", *args], dict(env=_env(home), cwd=kw.pop("cwd", REPO), **kw)


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
    p = subprocess.run([sys.executable, "-m", "vidinv.cli", "edit", "--help"], capture_output=True, text=True, cwd=REPO,
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
    gates = json.loads((rep / "gates.json").read_text())  # the confidence gate of each frame's face
    assert [fr["index"] for fr in gates["frames"]] == list(range(10)) and gates["settings"]["fade"] == 8


def _one_line_error(p) -> str:
    """The process failed with exactly one ``vidinv: error: ...`` line and no traceback; returns it."""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and len(lines) == 1 and lines[0].startswith("vidinv: error: "), p.stderr
    return lines[0]


def _invoke(args: list[str], home: Path):
    """Run the CLI in this process (click's runner) with VIDINV_HOME=home; the command's SIGTERM handler is
    undone afterwards. For refusals that happen before any model or video work."""
    from click.testing import CliRunner

    from vidinv.cli.main import cli

    old = signal.getsignal(signal.SIGTERM)
    try:
        return CliRunner().invoke(cli, args, env={"VIDINV_HOME": str(home)})
    finally:
        signal.signal(signal.SIGTERM, old)


def _one_line_result(r) -> str:
    """As :func:`_one_line_error` for a click runner result."""
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exc_info  # no escaped exception
    assert r.exit_code == 1 and len(lines) == 1 and lines[0].startswith("vidinv: error: "), r.stderr
    return lines[0]


def test_nan_strength_is_refused_before_any_work(tmp_path):
    """``vidinv edit ... --strength nan`` used to exit 0 with every face a black blob. Now: one line, exit 1,
    before the weights are even looked for (the home is empty: a later check would report missing files)."""
    video = require_shared("videos") / "greenscreen_frontal.mp4"
    out = tmp_path / "out.mp4"
    cmd, kw = _vidinv(["edit", str(video), "-o", str(out), "--attr", "smile", "--strength", "nan", "-q"],
                      tmp_path / "empty_home")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    line = _one_line_error(p)
    assert "--strength nan is not a finite number" in line and "file(s) that vidinv needs" not in p.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("args", [["--attr", "smile", "--strength", "inf"], ["--attr", "smile", "--strength", "-inf"],
                                  ["--attr", "stit:age=1e400"], ["--attr", "smile", "--attr", "age=-Infinity"],
                                  ["--attr", "smile", "--direction", "{video}", "--strength", "1",
                                   "--strength", "nan"]],
                         ids=["inf", "-inf", "1e400", "-Infinity", "direction-nan"])
def test_non_finite_strengths_are_refused_in_every_spelling(tmp_path, args):
    video = require_shared("videos") / "greenscreen_frontal.mp4"
    out = tmp_path / "out.mp4"
    args = [a.replace("{video}", str(video)) for a in args]
    r = _invoke(["edit", str(video), "-o", str(out), *args, "-q"], tmp_path / "empty_home")
    assert "is not a finite number" in _one_line_result(r)
    assert not out.exists()


@pytest.mark.parametrize("sigma", ["nan", "inf", "-1"])
def test_bad_latent_smoothing_is_refused(tmp_path, sigma):
    video = require_shared("videos") / "greenscreen_frontal.mp4"
    r = _invoke(["edit", str(video), "-o", str(tmp_path / "o.mp4"), "--attr", "smile", "--latent-smoothing", sigma,
                 "-q"], tmp_path / "empty_home")
    assert "--latent-smoothing must be a finite sigma >= 0" in _one_line_result(r)


def test_nan_in_a_hash_consistent_export_is_refused(tiny_home, tmp_path):
    """An inversion export whose chunk holds NaN in w, with its sha256 recomputed as the writer does, is
    refused by ``vidinv edit --from-inversion`` with one line naming the record, frame and track."""
    from test_inversion_format import poison_chunk
    from tiny_bundle import tiny_generator
    from vidinv.io.inversion import InversionWriter, model_file
    from vidinv.io.video import probe

    video = require_shared("videos") / "greenscreen_frontal.mp4"
    inv = tmp_path / "nan.vinv"
    models = [model_file(tiny_home / "weights" / "143_enc.pth", "encoder"),
              model_file(tiny_home / "weights" / "psp_ffhq_encode.pt", "generator")]
    # everything else valid: without the NaN the same command renders these 4 frames (exit 0)
    with InversionWriter(inv, encoder="fs", generator=tiny_generator(), models=models, source=probe(video),
                         feature_shape=(8, 16, 16), feature_index=5, chunk_size=2) as wr:
        for f in range(4):
            wr.add(w=np.zeros((18, 512)), F=np.zeros((8, 16, 16)),
                   quad=[[200, 100], [200, 300], [400, 300], [400, 100]], landmarks=np.full((68, 2), 300.0),
                   track_id=0, frame_index=f)
    poison_chunk(inv, 1, 0, "w", np.nan)
    out = tmp_path / "out.mp4"
    r = _invoke(["edit", "--from-inversion", str(inv), "-o", str(out), "--attr", "smile", "-q"], tiny_home)
    line = _one_line_result(r)
    assert "'w' of record 2 (frame 2, track 0) holds NaN or infinite values" in line
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_strength_far_outside_the_demonstrated_range_warns_once(tiny_home, tmp_path):
    video = require_shared("videos") / "greenscreen_frontal.mp4"
    out = tmp_path / "out.mp4"
    cmd, kw = _vidinv(["edit", str(video), "-o", str(out), "--attr", "stit:age", "--strength", "-8",
                       "--start", "0", "--end", "0.04", "-q"], tiny_home)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert p.returncode == 0, p.stderr
    warnings = [ln for ln in p.stderr.splitlines() if "far outside" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING ") and "stit:age at strength -8" in warnings[0]
    assert "s = -0.83" in warnings[0] and out.is_file()


def test_invert_resume_refusals(tmp_path):
    """``vidinv invert --resume`` without an export, on a complete one, or with --overwrite: one line each,
    before any weight is looked for (the home is empty), nothing changed."""
    from vidinv.io.inversion import InversionWriter

    video = require_shared("videos") / "greenscreen_frontal.mp4"
    home = tmp_path / "empty_home"
    done = tmp_path / "done.vinv"
    cases = {"none": (tmp_path / "none.vinv", [], "no inversion export to resume"),
             "complete": (done, [], "the export is complete; nothing to resume"),
             "both": (done, ["--overwrite"], "give one of them")}
    with InversionWriter(done, encoder="fs", generator={"n_latent": 18, "style_dim": 512}):
        pass
    before = (done / "manifest.json").read_bytes()
    for name, (dst, extra, msg) in cases.items():
        r = _invoke(["invert", str(video), "-o", str(dst), "--resume", *extra, "-q"], home)
        assert msg in _one_line_result(r), name
    assert (done / "manifest.json").read_bytes() == before
    assert not (tmp_path / "none.vinv").exists()
