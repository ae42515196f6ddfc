"""No data-loss path, no traceback (issue 9, item 5).

Every sub-command that writes (track, edit, invert, report, directions sefa, weights fetch, train) is run
over the bad-input list: missing, empty, random bytes, truncated (the first 30 % of a shared MP4, with
its index at the end and at the start), audio only, output = input (same path, through ``..``, through a
symbolic link; for `track` also its ``--json`` file), an output folder that cannot be written (under a
regular file; a read-only folder when not root) and an unknown output extension. Each run must exit
non-zero with exactly one non-blank stderr line ``vidinv: error: …`` saying why (so the check ran before
any weight lookup: VIDINV_HOME is empty), print no traceback, leave every input byte-identical and leave
nothing behind (no output, no temporary file, no folder). Most combinations run in-process through
``cli.main.main`` with file-descriptor capture (C-level output of FFmpeg included); one per sub-command
runs as a real ``python -m vidinv.cli`` process. Ctrl-C is tested on real processes: during start-up, and
during ``vidinv track`` once the preview's frames are being written (nothing may appear at the
destination).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, require_shared

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _unwritable_folder() -> str | None:
    """A folder no file can be created in: ``ro`` (mode 0o555, in the work folder) for a normal user; for
    root, who ignores permission bits, /sys where the kernel refuses new files; None if neither works."""
    if not IS_ROOT:
        return "ro"
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir="/sys")
    except OSError:
        return "/sys"
    os.close(fd)
    os.unlink(probe)
    return None


RO = _unwritable_folder()

SUBCOMMANDS = ("track", "edit", "invert", "report", "sefa", "train", "weights")
CASES = ("missing", "empty", "random", "truncated", "truncated_faststart", "audio_only", "out_is_in",
         "out_dotdot", "out_symlink", "parent_is_file", "readonly_dir", "unknown_ext", "json_is_in", "json_is_out")
VIDEO_IN = ("track", "edit", "invert", "report")
FILE_OUT = ("track", "edit")

# What the one line must say, per case (the check that must have fired, before any weights are looked up).
EXPECT = {
    "missing": r"does not exist",
    "empty": r"is empty \(0 bytes\)",
    "random": r"cannot read the input video|not a PyTorch checkpoint|not UTF-8 text",
    "truncated": r"is truncated|damaged or truncated zip",
    "truncated_faststart": r"is truncated",
    "audio_only": r"has no video stream \(it holds: audio aac\)|not a PyTorch checkpoint",
    "out_is_in": r"is the input|is a file",
    "out_dotdot": r"resolves through '\.\.' to the input|is a file",
    "out_symlink": r"resolves through a symbolic link to the input|is a file",
    "parent_is_file": r"file\.txt is not a folder",
    "readonly_dir": r"(folder|cannot create folders in) \S*(/ro|/sys)( is not writable)? \(Permission denied\)",
    "unknown_ext": r"knows no video container with the extension '\.xyz'",
    "json_is_in": r"the JSON file sub/\.\./in\.mp4 resolves through '\.\.' to the input",
    "json_is_out": r"the same path out\.mp4 is given for two outputs",
}

# (sub-command, case) pairs also run as a real process (at least one per sub-command, every case once).
SUBPROCESS = {("track", "random"), ("track", "truncated_faststart"), ("track", "out_symlink"),
              ("edit", "unknown_ext"), ("edit", "out_is_in"), ("invert", "audio_only"), ("report", "truncated"),
              ("sefa", "empty"), ("train", "out_dotdot"), ("weights", "parent_is_file"), ("track", "missing"),
              ("track", "readonly_dir")}


# ------------------------------------------------------------------------------------------------ files

def _write_clip(path: Path, n: int = 6, size: int = 64) -> None:
    from vidinv.io.video import VideoWriter

    with VideoWriter(path, size, size, fps=25, crf=23, preset="ultrafast") as w:
        for i in range(n):
            w.write(np.full((size, size, 3), 20 * i, np.uint8))


def _write_audio_only(path: Path, seconds: float = 0.5, rate: int = 44100) -> None:
    """A 440 Hz sine as AAC in an .m4a file (no video stream)."""
    import av

    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=rate)
        for i in range(0, len(x), 1024):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, i:i + 1024]), format="fltp", layout="mono")
            f.sample_rate, f.pts = rate, i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with every input of the matrix (paths relative to it are used on the command lines)."""
    import torch

    videos = require_shared("videos")
    d = tmp_path_factory.mktemp("bad_inputs")
    _write_clip(d / "in.mp4")
    (d / "empty.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).bytes(64 * 1024))
    for name, src in (("trunc.mp4", "greenscreen_frontal.mp4"), ("trunc_faststart.mp4", "interview_720p.mp4")):
        data = (videos / src).read_bytes()
        (d / name).write_bytes(data[: int(0.3 * len(data))])
    _write_audio_only(d / "audio.m4a")
    torch.save({"w": torch.arange(20000, dtype=torch.float32)}, d / "ckpt.pt")
    data = (d / "ckpt.pt").read_bytes()
    (d / "trunc.pt").write_bytes(data[: int(0.3 * len(data))])
    (d / "file.txt").write_text("a regular file\n")
    (d / "sub").mkdir()
    (d / "faces").mkdir()
    (d / "faces" / "face0.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # contents never read: checks come first
    os.symlink("in.mp4", d / "link.mp4")
    os.symlink("ckpt.pt", d / "link.pt")
    os.symlink("faces", d / "link_faces")
    (d / "ro").mkdir()
    os.chmod(d / "ro", 0o555)
    yield d
    os.chmod(d / "ro", 0o755)


def _snapshot(d: Path) -> dict[str, str]:
    """Every entry under ``d``: sha256 of files, target of links, 'dir' for folders."""
    snap = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(d))
            if p.is_symlink():
                snap[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                snap[rel] = "dir"
            else:
                snap[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return snap


# ------------------------------------------------------------------------------------------------ matrix

def _argv(sub: str, case: str) -> list[str] | None:
    """The command line of ``sub`` for ``case`` (paths relative to the work folder), None if n/a."""
    video = sub in VIDEO_IN
    out = {"track": "out.mp4", "edit": "out.mp4"}.get(sub, "outdir")
    inp = {"sefa": "ckpt.pt", "train": "faces"}.get(sub, "in.mp4")
    config = None
    if case == "missing":
        inp = {"sefa": "missing.pt", "train": "missing_faces"}.get(sub, "missing.mp4")
    elif case in ("empty", "truncated", "audio_only", "random"):
        if sub == "train":
            if case != "random":
                return None  # the images folder is a folder; an empty config file is a valid (default) config
            config = "random.mp4"
        else:
            inp = {"empty": "empty.mp4", "random": "random.mp4", "audio_only": "audio.m4a",
                   "truncated": "trunc.pt" if sub == "sefa" else "trunc.mp4"}[case]
    elif case == "truncated_faststart":
        if not video:
            return None
        inp = "trunc_faststart.mp4"
    elif case == "out_is_in":
        out = inp
    elif case == "out_dotdot":
        out = f"sub/../{inp}"
    elif case == "out_symlink":
        out = {"sefa": "link.pt", "train": "link_faces"}.get(sub, "link.mp4")
    elif case == "parent_is_file":
        out = f"file.txt/{out}"
    elif case == "readonly_dir":
        out = f"{RO}/{out}"
    elif case == "unknown_ext":
        if sub not in FILE_OUT:
            return None  # folder outputs have no extension
        out = "out.xyz"
    elif case in ("json_is_in", "json_is_out"):  # track's second output (observed: it overwrote the input)
        if sub != "track":
            return None
        return ["track", inp, "-o", out, "--json", "sub/../in.mp4" if case == "json_is_in" else out]
    return {
        "track": ["track", inp, "-o", out],
        "edit": ["edit", inp, "-o", out, "--attr", "smile"],
        "invert": ["invert", inp, "-o", out],
        "report": ["report", inp, "-o", out],
        "sefa": ["directions", "sefa", "--checkpoint", inp, "-o", out],
        "train": ["train", "fs", "--real-dir", inp, "--out-dir", out] + (["--config", config] if config else []),
    }[sub]


def _env(home: Path, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["VIDINV_HOME"] = str(home)
    env["VIDINV_MIRROR"] = "http://127.0.0.1:9/"  # never the network, whatever happens
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("VIDINV_DEBUG", None)
    env.update(extra or {})
    return env


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]




def _applies(sub: str, case: str) -> bool:
    return (sub == "weights" and case in WEIGHTS_CASES) or (sub != "weights" and _argv(sub, case) is not None)


WEIGHTS_CASES = ("parent_is_file", "readonly_dir")  # weights fetch has no input file: only its destination
MATRIX = [pytest.param(sub, case, id=f"{sub}-{case}",
                       marks=[pytest.mark.skipif(RO is None, reason="running as root and /sys accepts files: no "
                                                 "unwritable folder (parent_is_file covers the case)")]
                       if case == "readonly_dir" else [])
          for sub in SUBCOMMANDS for case in CASES if _applies(sub, case)]


@pytest.mark.parametrize("sub, case", MATRIX)
def test_bad_input_one_line_error_nothing_written(sub, case, work, tmp_path, capfd, monkeypatch):
    extra = None
    if sub == "weights":
        extra = {"VIDINV_HOME": str(work / {"parent_is_file": "file.txt", "readonly_dir": RO}[case] / "home")}
        argv = ["weights", "fetch", "stit_w/smile.npy"]
    else:
        argv = _argv(sub, case)
    home = tmp_path / "home"  # empty: no weights, so any late check would fail on missing weights instead
    env = _env(home, extra)
    before = _snapshot(work)
    if (sub, case) in SUBPROCESS:
        p = subprocess.run([sys.executable, "-m", "vidinv.cli", *argv], cwd=work, env=env, capture_output=True,
                           text=True, timeout=300)
        rc, out, err = p.returncode, p.stdout, p.stderr
    else:
        from vidinv.cli.main import main

        for k in ("VIDINV_HOME", "VIDINV_MIRROR"):
            monkeypatch.setenv(k, env[k])
        monkeypatch.chdir(work)
        capfd.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
        rc = exc.value.code
        out, err = capfd.readouterr()
    where = f"{sub} × {case}: vidinv {' '.join(argv)}"
    assert rc not in (0, None), f"{where}: exit status 0\n{err}"
    assert "Traceback" not in err + out, f"{where}: traceback\n{err}"
    lines = _lines(err)
    assert len(lines) == 1 and lines[0].startswith("vidinv: error: "), f"{where}: stderr is not one line:\n{err}"
    assert re.search(EXPECT[case], lines[0]), f"{where}: unexpected reason: {lines[0]}"
    assert "weights" not in lines[0] or sub == "weights", f"{where}: checked after the weights: {lines[0]}"
    assert _snapshot(work) == before, f"{where}: the work folder changed (input modified or output left)"
    assert not home.exists() or sub == "weights", f"{where}: something was written into VIDINV_HOME"
    print(f"\n{sub:8} {case:20} {'proc' if (sub, case) in SUBPROCESS else 'main'}  {lines[0]}")


# ------------------------------------------------------------------------------------------------ Ctrl-C

def _wait_for(pred, timeout: float, step: float = 0.02) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(step)
    return False


def test_track_ctrl_c_leaves_nothing_at_the_destination(tmp_path):
    """SIGINT while `vidinv track` writes its preview: while frames are written only a temporary file
    exists (the destination never holds a partial preview), and after Ctrl-C nothing is left."""
    src = require_shared("videos") / "talking_wink.mp4"
    out = tmp_path / "out" / "preview.mp4"
    js = tmp_path / "out" / "tracks.json"
    cmd = [sys.executable, "-m", "vidinv.cli", "track", str(src), "-o", str(out), "--json", str(js), "--quiet",
           "--smoothing", "none", "--max-side", "256", "--no-cnn-fallback"]
    p = subprocess.Popen(cmd, env=_env(tmp_path / "home"), cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        def temp_present() -> bool:
            return out.parent.is_dir() and any(n.startswith(".preview.") and ".part" in n
                                               for n in os.listdir(out.parent))
        assert _wait_for(lambda: temp_present() or p.poll() is not None, 240), "no frames written in 240 s"
        assert p.poll() is None, f"track ended before the interrupt: {p.communicate()[1]}"
        assert not out.exists() and not js.exists(), "frames are written straight to the destination"
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert "Traceback" not in err and _lines(err) == ["vidinv: interrupted"], err
    assert os.listdir(out.parent) == [], f"left behind: {os.listdir(out.parent)}"


@pytest.mark.parametrize("trigger", ["click", "torch"])
def test_ctrl_c_during_start_up_prints_no_traceback(trigger, tmp_path):
    """SIGINT while Python is still importing (``-X importtime`` tells when: right after click is imported,
    i.e. while cli.main loads; or while torch loads for `vidinv edit`): one line, exit status 130."""
    video = tmp_path / "in.mp4"
    _write_clip(video)
    cmd = [sys.executable, "-X", "importtime", "-m", "vidinv.cli", "edit", str(video), "-o", str(tmp_path / "o.mp4"),
           "--attr", "smile"]
    p = subprocess.Popen(cmd, env=_env(tmp_path / "home"), cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    err_lines = []
    try:
        pattern = re.compile(rf"\|\s+{re.escape(trigger)}(\.|$)")
        for line in p.stderr:
            err_lines.append(line)
            if line.startswith("import time:") and pattern.search(line.rstrip()):
                p.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail(f"{trigger} was never imported:\n{''.join(err_lines[-20:])}")
        _, rest = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = "".join(err_lines) + rest
    shown = [ln for ln in _lines(err) if not ln.startswith("import time:")]
    assert "Traceback" not in err, err[-3000:]
    assert p.returncode == 130 and shown == ["vidinv: interrupted"], (p.returncode, shown)
    assert not (tmp_path / "o.mp4").exists()


# ------------------------------------------------------------------------------------------------ helpers

def test_atomic_helpers_keep_the_destination_on_error(tmp_path):
    from vidinv.io.outputs import TEMP_NAME_RE, atomic_write, atomic_write_text
    from vidinv.io.video import VideoWriter, probe

    dst = tmp_path / "a.json"
    atomic_write_text(dst, "old")
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)):
            with atomic_write(dst, "w") as f:
                f.write("new, half written")
                raise exc
        assert dst.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["a.json"]
    # VideoWriter: the file appears only on a normal close; an error keeps an existing file as it was
    video = tmp_path / "v.mp4"
    _write_clip(video, n=3)
    before = video.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(video, 64, 64, fps=25, preset="ultrafast") as w:
            for _ in range(10):
                w.write(np.zeros((64, 64, 3), np.uint8))
            assert not any(TEMP_NAME_RE.match(n) for n in ["a.json", "v.mp4"])
            assert any(TEMP_NAME_RE.match(n) for n in os.listdir(tmp_path)), "frames go to a temporary file"
            raise KeyboardInterrupt
    assert video.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["a.json", "v.mp4"]
    assert probe(video).num_frames == 3


def test_atomic_save_bytes_and_commit_keep(tmp_path):
    import torch

    from vidinv.io.outputs import atomic_save, atomic_write, atomic_write_bytes, commit, sha256_file

    dst = tmp_path / "sub" / "c.pt"
    atomic_save({"w": torch.arange(3)}, dst)  # the folder is created
    assert torch.load(dst, weights_only=True)["w"].tolist() == [0, 1, 2]
    before = dst.read_bytes()
    with pytest.raises((pickle.PicklingError, AttributeError)):
        atomic_save({"f": lambda: 0}, dst)  # a lambda cannot be pickled: the old checkpoint stays
    assert dst.read_bytes() == before and os.listdir(dst.parent) == ["c.pt"]
    b = atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert b.read_bytes() == b"\x00\x01"
    assert sha256_file(b) == hashlib.sha256(b"\x00\x01").hexdigest()
    with atomic_write(tmp_path / "t.csv", "w", newline="") as f:
        f.write("a\r\nb\n")
    assert (tmp_path / "t.csv").read_bytes() == b"a\r\nb\n"  # newline="" writes line ends as given
    # a failed move deletes the temporary file, unless keep (a resumable download)
    for keep in (False, True):
        tmp = tmp_path / f"x{keep}.part"
        tmp.write_bytes(b"x")
        with pytest.raises(OSError):
            commit(tmp, tmp_path / "sub", keep=keep)  # a folder cannot be replaced by a file
        assert tmp.exists() == keep


def test_check_output_hard_links_members_and_folders(tmp_path):
    from vidinv.io.outputs import OutputPathError, check_output

    src = tmp_path / "in.mp4"
    _write_clip(src, n=2)
    os.link(src, tmp_path / "hard.mp4")
    with pytest.raises(OutputPathError, match="same file as the input"):
        check_output(tmp_path / "hard.mp4", [src], kind="video", codec="libx264")
    # an input inside what a folder output writes (an export's chunks/) would be replaced
    (tmp_path / "exp" / "chunks").mkdir(parents=True)
    inner = tmp_path / "exp" / "chunks" / "clip.mp4"
    shutil.copyfile(src, inner)
    with pytest.raises(OutputPathError, match="would replace the input"):
        check_output(tmp_path / "exp", [inner], kind="dir", members=("manifest.json", "chunks", "images"))
    check_output(tmp_path, [src], kind="dir", members=("manifest.json", "chunks", "images"))  # in.mp4 is kept
    # an existing file inside an input folder would be replaced; a folder given where a file is expected
    with pytest.raises(OutputPathError, match="inside the input folder"):
        check_output(inner, [tmp_path / "exp"], kind="video", codec="libx264")
    with pytest.raises(OutputPathError, match="is a folder"):
        check_output(tmp_path / "exp", [src], kind="video", codec="libx264")
    with pytest.raises(OutputPathError, match="has no extension"):
        check_output(tmp_path / "noext", [src], kind="video", codec="libx264")
    with pytest.raises(OutputPathError, match="cannot hold libx264"):
        check_output(tmp_path / "o.webm", [src], kind="video", codec="libx264")
    # a folder that does not exist yet is fine when its nearest existing parent is writable; nothing is created
    assert check_output(tmp_path / "new" / "deeper" / "o.mkv", [src], kind="video", codec="libx264")
    assert not (tmp_path / "new").exists()


def test_check_output_warns_when_the_disk_is_nearly_full(tmp_path, monkeypatch, caplog):
    import collections

    from vidinv.io import outputs

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 10**6, 10**6))
    with caplog.at_level("WARNING", logger="vidinv.io.outputs"):
        outputs.check_output(tmp_path / "o.mp4", kind="video", codec="libx264", expect_bytes=50 * 10**6)
    assert "only 1 MB free" in caplog.text and "about 50 MB" in caplog.text
