"""Finding the files a command needs: :func:`resolve` (the one entry point that commands call before any
video work), :func:`status` (cheap, for listings) and the errors that name what is missing or wrong.

Lookup order: ``weights_dir`` (``--weights-dir DIR``, files placed by hand), then the cache
(:mod:`vidinv.weights.cache`, which also says where each file is looked for), then, with ``fetch=True``,
a download (:mod:`vidinv.weights.fetch`).

A file found in ``weights_dir`` whose size or sha256 differs from the registry's is an error
(:class:`WeightHashMismatchError`, naming the path and both hashes), never silently passed over for the
cached copy: the user put it there on purpose. The opt-out is explicit: ``resolve(...,
allow_hash_mismatch=True)`` (the commands' ``--allow-hash-mismatch``) or ``$VIDINV_ALLOW_HASH_MISMATCH=1``,
which use that file anyway with a warning. Files in the cache that fail the check are reported as missing
(and downloaded again by ``fetch=True``).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from vidinv.io.outputs import sha256_file
from vidinv.weights import registry
from vidinv.weights.cache import cache_path, candidate_paths, hash_problem
from vidinv.weights.fetch import FetchError, mirror_url
from vidinv.weights.fetch import fetch as fetch_file
from vidinv.weights.registry import WeightFile

__all__ = [
    "ENV_ALLOW_HASH_MISMATCH",
    "allow_hash_mismatch_from_env",
    "WeightHashMismatchError",
    "MissingFile",
    "MissingWeightsError",
    "describe_missing",
    "resolve",
    "status",
]

log = logging.getLogger(__name__)

#: Environment variable that, set to 1 / true / yes, lets a ``weights_dir`` file whose size or sha256 differs
#: from the registry's be used anyway (with a warning) instead of raising :class:`WeightHashMismatchError`.
ENV_ALLOW_HASH_MISMATCH = "VIDINV_ALLOW_HASH_MISMATCH"


def allow_hash_mismatch_from_env() -> bool:
    """True when ``$VIDINV_ALLOW_HASH_MISMATCH`` is ``1``, ``true``, ``yes`` or ``on`` (any case)."""
    return os.environ.get(ENV_ALLOW_HASH_MISMATCH, "").strip().lower() in ("1", "true", "yes", "on")


class WeightHashMismatchError(ValueError):
    """A file in ``weights_dir`` (``--weights-dir``) differs from the registry's size or sha256.

    The message is one line: the path, the file's sha256, the registry's sha256 (or sizes when only
    the size is known), and how to opt out (``--allow-hash-mismatch`` or ``$VIDINV_ALLOW_HASH_MISMATCH=1``).

    Attributes:
        name: registry name.
        path: the file in ``weights_dir``.
        sha256: the file's sha256 (hex).
        expected_sha256: the registry's sha256, or None when only the exact size is known.
        size: the file's size in bytes.
        expected_size: the registry's exact size, or None.
    """

    def __init__(self, name: str, path: Path, sha256: str, expected_sha256: str | None, size: int,
                 expected_size: int | None):
        self.name, self.path, self.sha256, self.expected_sha256 = name, Path(path), sha256, expected_sha256
        self.size, self.expected_size = size, expected_size
        if expected_sha256 is not None:
            what = f"has sha256 {sha256}, the registry's {name} has sha256 {expected_sha256}"
        else:
            what = f"has {size} bytes (sha256 {sha256}), the registry's {name} has {expected_size} bytes"
        super().__init__(
            f"{path} {what}; a file in --weights-dir is not replaced by another copy: put the official file there "
            f"(or remove this one), or pass --allow-hash-mismatch (or set {ENV_ALLOW_HASH_MISMATCH}=1) to use it "
            "anyway")


def _weights_dir_file(entry: WeightFile, weights_dir, home, max_hash_bytes: int | None = None
                      ) -> tuple[Path, str | None] | None:
    """The first file for ``entry`` in ``weights_dir`` (a candidate other than the cache path) and its
    problem (None when it passes the size / sha256 check); None when ``weights_dir`` holds none.

    An empty file counts as present only when the registry knows the size or sha256 (it is then a
    mismatch); otherwise it is skipped, as before."""
    if weights_dir is None:
        return None
    target = cache_path(entry, home)
    for p in candidate_paths(entry, weights_dir, home):
        if p == target or not p.is_file():
            continue
        if p.stat().st_size == 0:
            if entry.sha256 or (entry.size_exact and entry.size is not None):
                return p, "empty file"
            continue
        return p, hash_problem(entry, p, max_hash_bytes, prefix=False)
    return None


def _check_weights_dir(entry: WeightFile, weights_dir, home, allow_mismatch: bool) -> Path | None:
    """The ``weights_dir`` file of ``entry`` when there is one: returned when it matches the registry, or
    when ``allow_mismatch`` (with a warning); otherwise :class:`WeightHashMismatchError` is raised."""
    found = _weights_dir_file(entry, weights_dir, home)
    if found is None:
        return None
    path, problem = found
    if problem is None:
        return path
    digest = sha256_file(path)
    err = WeightHashMismatchError(entry.name, path, digest, entry.sha256, path.stat().st_size,
                                  entry.size if entry.size_exact else None)
    if not allow_mismatch:
        raise err
    log.warning("%s: using %s although it differs from the registry (sha256 %s, registry %s; "
                "hash mismatch allowed)", entry.name, path, digest, entry.sha256 or f"{entry.size} bytes")
    return path


# --------------------------------------------------------------------------------------------------
# resolve

@dataclass
class MissingFile:
    """One file :func:`resolve` could not provide."""

    entry: WeightFile
    path: Path                      # where to put it (the cache path)
    alt_paths: list[Path]           # other places it is looked for (weights_dir forms)
    url: str | None                 # what a person should open to download it
    tried_url: str | None = None    # the URL a fetch attempt used, when it differs (mirror)
    reason: str = ""                # why it is missing / was rejected / could not be fetched


class MissingWeightsError(RuntimeError):
    """Files needed by a command are missing (or bad) and could not be fetched.

    The message lists every missing file with what needs it, its size and licence, the URL to
    download it from (for Google Drive, the browser page), the exact path to put it at and, when a
    fetch was attempted, why it failed.

    Attributes:
        missing: one :class:`MissingFile` per file.
    """

    def __init__(self, missing: list[MissingFile], fetch_attempted: bool = False):
        self.missing = missing
        self.fetch_attempted = fetch_attempted
        super().__init__(self._format())

    @property
    def names(self) -> list[str]:
        return [m.entry.name for m in self.missing]

    def _format(self) -> str:
        n = len(self.missing)
        verb = "could not be fetched" if self.fetch_attempted else "are not present"
        lines = [f"{n} file(s) that vidinv needs {verb}:", ""]
        for m in self.missing:
            e = m.entry
            lines.append(f"  {e.name}  ({e.size_text}; licence: {e.licence})")
            lines.append(f"    needed by: {e.needed_by}")
            if m.url:
                where = " (Google Drive: open in a browser)" if e.gdrive_id and m.url.startswith(
                    "https://drive.google.com/") else ""
                lines.append(f"    download:  {m.url}{where}")
            if m.tried_url and m.tried_url != m.url:
                lines.append(f"    tried:     {m.tried_url}")
            lines.append(f"    put it at: {m.path}")
            for alt in m.alt_paths:
                lines.append(f"           or: {alt}")
            if e.kind == "external" and e.hint:
                lines.append(f"    note:      {e.hint}")
            if e.sha256:
                lines.append(f"    sha256:    {e.sha256}")
            if m.reason:
                lines.append(f"    reason:    {m.reason}")
        lines.append("")
        fetchable = [m.entry.name for m in self.missing if m.entry.fetchable]
        if fetchable:
            lines.append("Fetch them with internet access:  vidinv weights fetch " + " ".join(fetchable))
            if any(m.entry.gdrive_id for m in self.missing):
                lines.append("(Google Drive files are downloaded with gdown, a vidinv dependency; "
                             "if Drive refuses, download them in a browser.)")
        lines.append("Files placed by hand elsewhere are found with --weights-dir DIR (DIR/<file>; "
                     "directions as DIR/<folder>/<file>).")
        return "\n".join(lines)


def describe_missing(entry: WeightFile | str, weights_dir: str | os.PathLike | None = None,
                     home: str | os.PathLike | None = None, reason: str = "",
                     tried_url: str | None = None) -> MissingFile:
    """The :class:`MissingFile` record of ``entry`` (target path, alternative path, URL, reason), for
    building a :class:`MissingWeightsError`."""
    entry = registry.get(entry)
    cands = candidate_paths(entry, weights_dir, home)
    target = cache_path(entry, home)
    alts = [p for p in cands if p != target][:1]
    return MissingFile(entry, target, alts, entry.source_url, tried_url, reason)


def _find_valid(entry: WeightFile, weights_dir, home, max_hash_bytes: int | None = None
                ) -> tuple[Path | None, list[tuple[Path, str]]]:
    """First candidate that passes the cheap checks (exact size, full sha256 where known; not the
    file-name prefixes of external files), and the problems of the candidates rejected before it."""
    problems: list[tuple[Path, str]] = []
    for p in candidate_paths(entry, weights_dir, home):
        if not p.is_file():
            continue
        if p.stat().st_size == 0:
            problems.append((p, "empty file"))
            continue
        prob = hash_problem(entry, p, max_hash_bytes, prefix=False)
        if prob is None:
            return p, problems
        problems.append((p, prob))
    return None, problems


def resolve(names: str | Iterable[str], weights_dir: str | os.PathLike | None = None, fetch: bool = False, *,
            home: str | os.PathLike | None = None, mirror: str | Mapping[str, str] | None = None,
            quiet: bool = False, allow_hash_mismatch: bool | None = None) -> dict[str, Path]:
    """Find (and optionally fetch) the files ``names``; return ``{name: path}``.

    Lookup order: ``weights_dir`` (files placed by hand), then the cache (see the module doc).
    A found file must match the official size and sha256 where those are known (the small
    direction files and dlib's models; the big checkpoints have no published hash, their structure is
    checked by the loader when loaded, and by ``vidinv weights verify``). A mismatching file in
    ``weights_dir`` is an error, not passed over for the cached copy; a mismatching cached file counts
    as missing (``fetch`` downloads it again).

    Args:
        names: registry names (a single string is one name); bare direction file names and
            direction folders are accepted (:func:`vidinv.weights.registry.expand_names`).
        weights_dir: folder of files placed by hand, searched first.
        fetch: download missing fetchable files into the cache (:func:`vidinv.weights.fetch.fetch`).
        home: cache root (default ``$VIDINV_HOME`` or ``~/.cache/vidinv``).
        mirror: base URL or ``{name: url}`` to download from instead of the official sources
            (default ``$VIDINV_MIRROR``).
        quiet: no progress bars.
        allow_hash_mismatch: use a ``weights_dir`` file whose size or sha256 differs from the registry's
            (with a warning) instead of raising; None (default) reads ``$VIDINV_ALLOW_HASH_MISMATCH``.

    Returns:
        ``{name: Path}`` for every requested name (registry names as keys).

    Raises:
        WeightHashMismatchError: a file in ``weights_dir`` differs from the registry's size or sha256
            (one line: path, both hashes, the opt-out), unless ``allow_hash_mismatch``.
        MissingWeightsError: one error listing every file that is still missing, with its URL and
            the exact path to put it at.
        vidinv.weights.registry.UnknownWeightError: a name is not in the registry.
    """
    if allow_hash_mismatch is None:
        allow_hash_mismatch = allow_hash_mismatch_from_env()
    if isinstance(names, str):
        names = [names]
    wanted = registry.expand_names(names)
    found: dict[str, Path] = {}
    missing: list[MissingFile] = []
    for name in wanted:
        entry = registry.get(name)
        by_hand = _check_weights_dir(entry, weights_dir, home, allow_hash_mismatch)
        if by_hand is not None:
            found[name] = by_hand
            continue
        path, problems = _find_valid(entry, weights_dir, home)
        if path is not None:
            found[name] = path
            continue
        reason = "; ".join(f"{p}: {why}" for p, why in problems)
        if fetch and entry.fetchable:
            try:
                found[name] = fetch_file(entry, home=home, mirror=mirror, quiet=quiet)
                continue
            except FetchError as exc:
                tried = mirror_url(entry, mirror)
                reason = (reason + "; " if reason else "") + str(exc).splitlines()[0]
                missing.append(describe_missing(entry, weights_dir, home, reason, tried))
                continue
        if not reason and entry.kind == "external":
            reason = "not installed yet"
        missing.append(describe_missing(entry, weights_dir, home, reason))
    if missing:
        raise MissingWeightsError(missing, fetch_attempted=fetch)
    return {name: found[name] for name in wanted}


def status(entry: WeightFile | str, weights_dir: str | os.PathLike | None = None,
           home: str | os.PathLike | None = None) -> tuple[str, Path | None]:
    """Cheap status for listings: ``("present", path)``, ``("bad", path)`` (wrong size or sha256)
    or ``("missing", None)``. Hashes only files of at most 32 MB whose sha256 is known (the
    directions); larger ones get the exact-size check only. A bad file in ``weights_dir`` is
    ``("bad", that path)`` even when the cache holds a good copy (:func:`resolve` refuses it)."""
    entry = registry.get(entry)
    by_hand = _weights_dir_file(entry, weights_dir, home, max_hash_bytes=32_000_000)
    if by_hand is not None:
        return ("present" if by_hand[1] is None else "bad"), by_hand[0]
    path, problems = _find_valid(entry, weights_dir, home, max_hash_bytes=32_000_000)
    if path is not None:
        return "present", path
    if problems:
        return "bad", problems[0][0]
    return "missing", None
