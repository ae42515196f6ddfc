"""Where weight files live and how one is checked against the registry.

Layout of the cache (``$VIDINV_HOME``, default ``~/.cache/vidinv``)::

    $VIDINV_HOME/weights/<name>                    e.g. weights/143_enc.pth
    $VIDINV_HOME/directions/<subdir>/<file>        e.g. directions/stit_w/age.npy

Files placed by hand can be put in a folder given as ``weights_dir`` (``--weights-dir DIR``), which
is searched first: ``DIR/<file>`` for weights; ``DIR/<subdir>/<file>`` or
``DIR/directions/<subdir>/<file>`` for directions (so a copy of the ``directions`` folder, or of a
whole ``$VIDINV_HOME``, works as is). :func:`candidate_paths` lists these places in order.

Checks: :func:`hash_problem` (exact size and sha256 where the registry knows them; cheap for the small
files), :func:`check_structure` (the entry's strict loader) and :func:`verify` (both, as a report).
What a command does with a file that fails them is :mod:`vidinv.weights.resolver`'s business
(:func:`~vidinv.weights.resolver.resolve`); :mod:`vidinv.weights.fetch` downloads into :func:`cache_path`.
This module imports neither: the dependencies run registry <- cache <- fetch <- resolver.

External files (torchvision, face-alignment, dlib) are looked up where their owners keep them:
``torch.hub.get_dir()/checkpoints/<file>`` and the ``models`` folder of the installed
``face_recognition_models`` package (located with ``importlib.util.find_spec``, not imported: its
``__init__`` needs ``pkg_resources``).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from vidinv.io.outputs import sha256_file
from vidinv.weights import registry
from vidinv.weights.registry import WeightFile

__all__ = [
    "ENV_HOME",
    "vidinv_home",
    "cache_path",
    "candidate_paths",
    "locate",
    "hash_problem",
    "check_structure",
    "VerifyReport",
    "verify",
]

#: Environment variable naming the cache folder.
ENV_HOME = "VIDINV_HOME"
def vidinv_home(home: str | os.PathLike | None = None) -> Path:
    """The cache root: ``home`` if given, else ``$VIDINV_HOME``, else ``~/.cache/vidinv``."""
    if home is not None:
        return Path(home).expanduser()
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/vidinv").expanduser()


def _torch_hub_checkpoints() -> Path:
    import torch.hub  # torch is a dependency; imported lazily to keep `vidinv --help` fast

    return Path(torch.hub.get_dir()) / "checkpoints"


def _package_models_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def cache_path(entry: WeightFile | str, home: str | os.PathLike | None = None) -> Path:
    """Where vidinv keeps (or expects) ``entry``: ``$VIDINV_HOME/<subdir>/<file>`` for weights and
    directions; for external files, the location their owner package uses."""
    entry = registry.get(entry)
    if entry.kind == "external":
        if entry.locator == "torch_hub":
            return _torch_hub_checkpoints() / entry.filename
        if entry.locator == "face_recognition_models":
            models = _package_models_dir("face_recognition_models")
            if models is None:
                return Path("<face_recognition_models not installed>") / "models" / entry.filename
            return models / entry.filename
        raise ValueError(f"{entry.name}: unknown locator {entry.locator!r}")
    return vidinv_home(home) / Path(entry.rel_path)


def candidate_paths(entry: WeightFile | str, weights_dir: str | os.PathLike | None = None,
                    home: str | os.PathLike | None = None) -> list[Path]:
    """Every place ``entry`` is looked for, in order: the ``weights_dir`` forms first, then the cache."""
    entry = registry.get(entry)
    out: list[Path] = []
    if weights_dir is not None and entry.kind != "external":
        d = Path(weights_dir).expanduser()
        if entry.kind == "direction":
            sub = entry.subdir.split("/", 1)[-1]  # "directions/stit_w" -> "stit_w"
            out += [d / sub / entry.filename, d / entry.subdir / entry.filename]
        else:
            out += [d / entry.filename, d / entry.subdir / entry.filename]
    elif weights_dir is not None:
        out.append(Path(weights_dir).expanduser() / entry.filename)
    out.append(cache_path(entry, home))
    seen: list[Path] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def locate(entry: WeightFile | str, weights_dir: str | os.PathLike | None = None,
           home: str | os.PathLike | None = None) -> Path | None:
    """The first existing, non-empty file among :func:`candidate_paths`, or None (no hashing)."""
    for p in candidate_paths(entry, weights_dir, home):
        if p.is_file() and p.stat().st_size > 0:
            return p
    return None


# --------------------------------------------------------------------------------------------------
# verification

def hash_problem(entry: WeightFile, path: Path, max_hash_bytes: int | None = None,
                 prefix: bool = True) -> str | None:
    """Check a file against what the registry knows of ``entry``: its exact size, its sha256, or the sha256
    prefix in the official file name (torchvision's ``-<8 hex>.pth`` convention).

    Args:
        entry: the registry entry.
        path: the file (must exist).
        max_hash_bytes: files larger than this are not hashed (size check only); None: always hash.
        prefix: also check the file-name prefix (``entry.sha256_prefix``) when there is no full sha256.

    Returns:
        None when the file passes, else a one-line reason (e.g. ``"sha256 ab.. does not match the
        official cd.."``).

    Raises:
        OSError: the file cannot be read.
    """
    size = path.stat().st_size
    if entry.size_exact and entry.size is not None and size != entry.size:
        return f"size {size} bytes, the official file has {entry.size}"
    if max_hash_bytes is not None and size > max_hash_bytes:
        return None
    if entry.sha256:
        got = sha256_file(path)
        if got != entry.sha256:
            return f"sha256 {got} does not match the official {entry.sha256}"
    elif entry.sha256_prefix and prefix:
        got = sha256_file(path)
        if not got.startswith(entry.sha256_prefix):
            return f"sha256 {got[:16]}... does not start with {entry.sha256_prefix} (from the file name)"
    return None


def check_structure(entry: WeightFile | str, path: str | os.PathLike) -> bool:
    """Run ``entry``'s structure check (its strict loader) on ``path``.

    Returns:
        True when a check ran and passed, False when the entry has no structure check.

    Raises:
        vidinv.io.checkpoints.CheckpointError: the file does not have the official layout.
        ImportError: the check cannot be imported.
    """
    entry = registry.get(entry)
    fn = registry.load_checker(entry)
    if fn is None:
        return False
    result = fn(Path(path))
    del result  # the loaded model can be large
    return True


@dataclass
class VerifyReport:
    """Outcome of :func:`verify` for one file.

    ``sha_status``: ``"ok"`` (full sha256 matches), ``"prefix-ok"`` (matches the prefix in the file
    name), ``"mismatch"``, or ``"unknown"`` (no official hash). ``structure_status``: ``"ok"``,
    ``"failed"``, ``"unavailable"`` (the check cannot be imported), ``"skipped"`` (not asked) or
    ``"none"`` (the entry has no structure check).
    """

    name: str
    path: Path
    sha256: str | None
    sha_status: str
    structure_status: str
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.sha_status != "mismatch" and self.structure_status not in ("failed", "unavailable")


def verify(entry: WeightFile | str, path: str | os.PathLike, structure: bool = True) -> VerifyReport:
    """Check ``path`` against ``entry``: exact size and sha256 where known, then the structure check.

    Args:
        entry: registry entry or name.
        path: the file.
        structure: run the structure check (strict load; can take seconds and memory for the
            1.2 GB pSp files).

    Returns:
        A :class:`VerifyReport` (never raises for a bad file; ``report.ok`` says whether it passed).
    """
    # on use: vidinv.io.checkpoints imports torch; `vidinv weights list` stays light
    from vidinv.io.checkpoints import CheckpointError

    entry = registry.get(entry)
    path = Path(path)
    msgs: list[str] = []
    digest = sha256_file(path)
    problem = hash_problem(entry, path)
    if problem:
        sha_status = "mismatch"
        msgs.append(problem)
    elif entry.sha256:
        sha_status = "ok"
    elif entry.sha256_prefix:
        sha_status = "prefix-ok"
    else:
        sha_status = "unknown"
    if not structure:
        st = "skipped"
    elif entry.check is None:
        st = "none"
    else:
        try:
            check_structure(entry, path)
            st = "ok"
        except ImportError as exc:
            st = "unavailable"
            msgs.append(str(exc))
        except CheckpointError as exc:
            st = "failed"
            msgs.append(str(exc))
        except Exception as exc:  # a loader should raise CheckpointError; anything else also means "cannot load"
            st = "failed"
            msgs.append(f"{path}: the structure check {entry.check} raised {type(exc).__name__}: {exc}")
    return VerifyReport(entry.name, path, digest, sha_status, st, msgs)
