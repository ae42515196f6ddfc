"""Shared test fixtures.

Test data lives in ``../shared`` beside the repository (never copied into it). Tests that need it
skip with a clear reason where that folder is absent.
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared").resolve()
PARITY = SHARED / "parity"


def require_shared(sub: str = "") -> Path:
    """Return ``../shared/<sub>``, or skip the test when it is absent."""
    p = SHARED / sub if sub else SHARED
    if not p.exists():
        pytest.skip(f"test data {p} is absent (expected ../shared beside the repository)")
    return p


def invoke_cli(args, home):
    """Run ``vidinv ARGS`` in this process (click's runner) with ``VIDINV_HOME=home``; the SIGTERM handler the
    command installs is put back afterwards. Returns click's ``Result`` (``exit_code``, ``stdout``, ``stderr``)."""
    import signal

    from click.testing import CliRunner

    from vidinv.cli.main import cli

    old = signal.getsignal(signal.SIGTERM)
    try:
        return CliRunner().invoke(cli, args, env={"VIDINV_HOME": str(home)})
    finally:
        signal.signal(signal.SIGTERM, old)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return require_shared("parity")


def fill_module():
    """Import ``../shared/parity/fill.py`` (the deterministic-weights rule of the parity fixtures)."""
    require_shared("parity/fill.py")
    if str(PARITY) not in sys.path:
        sys.path.insert(0, str(PARITY))
    import fill  # noqa: E402

    return fill


def manifest_state_dict(fixture: str, mode: str | None = None, manifest_name: str = "manifest.json",
                        keys_field: str = "keys") -> dict[str, torch.Tensor]:
    """Build a state_dict with the official key names of a fixture's manifest, filled by fill.py.

    The keys, shapes and dtypes come from the manifest (not from our model), so loading the result
    through our checkpoint loader checks that our model has the official layout.
    """
    fill = fill_module()
    man = json.loads((require_shared(f"parity/{fixture}") / manifest_name).read_text())
    mode = mode or man["fill_mode"]
    sd = {}
    for e in man[keys_field]:
        dtype = getattr(torch, e["dtype"])
        sd[e["key"]] = fill.fill_tensor(e["key"], tuple(e["shape"]), dtype, mode)
    return sd


def assert_parity(out, exp, name: str = "array") -> None:
    """The fixtures' stated check: ``allclose(out, exp, rtol=1e-4, atol=5e-5 * max|exp|)``."""
    out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    exp = np.asarray(exp)
    assert out.shape == exp.shape, f"{name}: shape {out.shape} != expected {exp.shape}"
    atol = 5e-5 * float(np.abs(exp).max())
    ok = np.allclose(out, exp, rtol=1e-4, atol=atol)
    if not ok:
        err = np.abs(out.astype(np.float64) - exp.astype(np.float64))
        raise AssertionError(f"{name}: max |diff| {err.max():.3e} (atol {atol:.3e}, max|exp| "
                             f"{np.abs(exp).max():.3e}); mean |diff| {err.mean():.3e}")


#: Most test workers (pytest-xdist, ``-n auto`` in pyproject's addopts): one per core up to this, so that a
#: many-core machine does not hold that many copies of the official-size networks in memory.
MAX_WORKERS = 4


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core (``os.sched_getaffinity``), at most :data:`MAX_WORKERS`."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def pytest_configure_node(node):
    """(xdist controller) every worker shares one on-disk dlib detection cache (:func:`cached_detection`)."""
    node.workerinput["vidinv_detection_cache"] = str(_detection_cache_dir(node.config))


def _detection_cache_dir(config) -> Path:
    import tempfile

    d = getattr(config, "_vidinv_detection_cache", None)
    if d is None:
        d = Path(tempfile.mkdtemp(prefix="vidinv-test-detections-"))
        config._vidinv_detection_cache = d
        config.add_cleanup(lambda: __import__("shutil").rmtree(d, ignore_errors=True))
    return d


def pytest_configure(config):
    winput = getattr(config, "workerinput", None)
    global _DETECTION_DIR
    if winput is not None and "vidinv_detection_cache" in winput:
        _DETECTION_DIR = Path(winput["vidinv_detection_cache"])
    else:
        _DETECTION_DIR = _detection_cache_dir(config)


@pytest.fixture(autouse=True, scope="session")
def _deterministic_torch():
    """Torch threads: 2 (at most), in every test worker. The parity fixtures were made with 2 threads
    (``../shared/parity/*/README.md``) and some of their checks are bit for bit (e.g. the Feature-Style
    encoder's bilinear halvings), which another thread count changes in the last bit; so the workers keep
    that count even though two workers on two cores then share them."""
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    yield


# ------------------------------------------------------------------ shared dlib detection cache
_DETECTIONS: dict = {}
#: On-disk layer of the cache, shared by the test workers (set in :func:`pytest_configure`).
_DETECTION_DIR: Path | None = None


@contextlib.contextmanager
def cached_detection():
    """Memoise dlib landmark detection across the whole test session, keyed by frame content.

    dlib detection is deterministic, so the same frame with the same detector settings always gives
    the same faces; end-to-end tests (track, edit, invert, report) on the same shared videos then pay for
    detection once per session instead of once per test. The first time a frame is seen the real
    detector runs. Tests of the detector itself do not use this.
    """
    import copy
    import hashlib
    import os
    import pickle

    from vidinv.face import detect as detect_mod

    real = detect_mod.DlibLandmarkDetector.detect

    def disk(key) -> Path | None:
        if _DETECTION_DIR is None:
            return None
        return _DETECTION_DIR / hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest()

    def cached(self, frames):
        params = (self.upsample, self.max_side, self.adjust_threshold, self.cnn_fallback, self.cnn_max_side,
                  self.cnn_upsample, self.blank_std, getattr(self, "upscale", 1))
        keys = [(params, f.shape, hashlib.blake2b(np.ascontiguousarray(f).data, digest_size=16).digest())
                for f in frames]
        for k in keys:  # another worker may have detected it
            p = disk(k)
            if k not in _DETECTIONS and p is not None and p.is_file():
                with contextlib.suppress(Exception):
                    _DETECTIONS[k] = pickle.loads(p.read_bytes())
        todo = [i for i, k in enumerate(keys) if k not in _DETECTIONS]
        if todo:
            found = real(self, [frames[i] for i in todo])
            for i, faces in zip(todo, found):
                _DETECTIONS[keys[i]] = faces
                p = disk(keys[i])
                if p is not None:  # write then rename: a reader never sees half a file
                    tmp = p.with_suffix(f".{os.getpid()}.tmp")
                    tmp.write_bytes(pickle.dumps(faces))
                    os.replace(tmp, p)
        return [copy.deepcopy(_DETECTIONS[k]) for k in keys]

    mp = pytest.MonkeyPatch()
    mp.setattr(detect_mod.DlibLandmarkDetector, "detect", cached)
    try:
        yield
    finally:
        mp.undo()


@pytest.fixture
def detection_cache():
    """Function-scoped :func:`cached_detection`."""
    with cached_detection():
        yield
