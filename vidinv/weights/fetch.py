"""Downloading weight files into the cache, resumably, with sha256 and structure checks.

* Plain HTTP(S) URLs (GitHub raw files, a mirror) are downloaded with the standard library
  (``urllib``). Bytes go to ``<final>.part``; an interrupted download is resumed from the ``.part``
  file with an HTTP ``Range: bytes=N-`` request (a server that ignores ``Range`` and answers 200 makes
  the download restart from zero; one that answers 416 for a ``.part`` already complete is taken as
  done). Interruptions in the middle of the body are retried (``retries``) from where they stopped.
* Google Drive files are downloaded with ``gdown`` (a dependency of vidinv), which handles Drive's
  confirm token for large files. When gdown is missing from the environment, or when Drive refuses
  (quota, permission), the error says how to download the file in a browser.
* A complete download is checked before it is moved to its final name: sha256 where known (a
  mismatch moves it aside to ``<final>.rejected`` and raises :class:`ChecksumError`), then the
  entry's structure check (its strict loader; a failure also moves it aside and raises
  :class:`StructureError`). Only then is it renamed to the final path, so the final path never holds
  a partial or unchecked file.

Mirrors (tests, air-gapped sites): ``mirror`` (argument) or ``$VIDINV_MIRROR`` is either a base URL
under which files sit at their cache layout (``<base>/weights/143_enc.pth``,
``<base>/directions/stit_w/age.npy``; serve a copy of ``$VIDINV_HOME``) or, as an argument, a
mapping ``{name: url}``. A mirror replaces the official source, Google Drive included.
"""
from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from vidinv import __version__
from vidinv.io.outputs import commit
from vidinv.weights import registry
from vidinv.weights.cache import cache_path, check_structure, hash_problem
from vidinv.weights.registry import WeightFile

__all__ = [
    "ENV_MIRROR",
    "FetchError",
    "DownloadInterrupted",
    "ChecksumError",
    "StructureError",
    "mirror_url",
    "download",
    "fetch",
    "fetch_many",
]

log = logging.getLogger(__name__)

#: Environment variable with a mirror base URL.
ENV_MIRROR = "VIDINV_MIRROR"

_CHUNK = 1 << 16
_USER_AGENT = f"vidinv/{__version__} (+urllib)"


class FetchError(RuntimeError):
    """A file could not be downloaded or was rejected. The first line of the message is a one-line
    reason; further lines give details or manual instructions."""


class DownloadInterrupted(FetchError):
    """The connection ended before the whole file arrived. The ``.part`` file is kept for resuming."""


class ChecksumError(FetchError):
    """The downloaded file's size or sha256 differs from the official one (the file was moved aside)."""


class StructureError(FetchError):
    """The downloaded file failed its structure check (strict load; the file was moved aside)."""


# --------------------------------------------------------------------------------------------------
# URLs

def mirror_url(entry: WeightFile | str, mirror: str | Mapping[str, str] | None = None) -> str | None:
    """The URL a mirror gives for ``entry``, or None when no mirror applies.

    Args:
        entry: registry entry or name.
        mirror: a base URL (files at ``<base>/<entry.rel_path>``), a mapping ``{name: url}``, or None
            to use ``$VIDINV_MIRROR`` (a base URL) when set.
    """
    entry = registry.get(entry)
    if mirror is None:
        mirror = os.environ.get(ENV_MIRROR) or None
    if mirror is None:
        return None
    if isinstance(mirror, Mapping):
        return mirror.get(entry.name)
    return mirror.rstrip("/") + "/" + entry.rel_path


def _progress_enabled(quiet: bool) -> bool:
    if quiet:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _describe_url_error(exc: BaseException, url: str) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason} from {url}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            return f"connection refused by {url} (offline, or the server is down)"
        return f"cannot reach {url}: {reason}"
    return f"{type(exc).__name__} while downloading {url}: {exc}"


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.I)


def download(url: str, dest: str | os.PathLike, *, quiet: bool = False, timeout: float = 60.0,
             retries: int = 2, backoff: float = 1.0, desc: str | None = None) -> Path:
    """Download ``url`` to ``dest`` resumably (``dest`` is the partial file, e.g. ``x.pth.part``).

    If ``dest`` already holds bytes, a ``Range: bytes=<size>-`` request continues it; a 206 answer
    is appended, a 200 answer (server ignoring Range) restarts from zero, a 416 answer whose
    ``Content-Range: bytes */N`` equals the bytes held means the file is already complete. An
    interruption in the middle of the body is retried up to ``retries`` times, each resuming from
    the bytes received (waiting ``backoff * attempt`` seconds). Connection failures before any byte
    (refused, DNS, HTTP errors) are not retried.

    Args:
        url: http(s) (or file) URL.
        dest: the partial-download file; it holds the whole file when this returns.
        quiet: no progress bar (it is also off when stderr is not a terminal).
        timeout: seconds to wait on each socket operation.
        retries: extra attempts after an interruption mid-body.
        backoff: seconds, times the attempt number, to wait before a retry.
        desc: label of the progress bar (default: the file name).

    Returns:
        ``dest``.

    Raises:
        DownloadInterrupted: the body stopped early and the retries are spent (``dest`` is kept).
        FetchError: HTTP error, connection refused / unreachable, not enough disk space.
    """
    from tqdm import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    desc = desc or dest.name.removesuffix(".part")
    attempt = 0
    while True:
        offset = dest.stat().st_size if dest.exists() else 0
        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        req = urllib.request.Request(url, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                m = re.search(r"\*/(\d+)", exc.headers.get("Content-Range", "") or "")
                exc.close()
                if m and int(m.group(1)) == offset:
                    log.info("%s: already complete (%d bytes)", dest, offset)
                    return dest
                log.warning("%s: server refused to resume at byte %d; restarting", dest, offset)
                dest.unlink()
                attempt += 1
                if attempt > retries:
                    raise FetchError(f"cannot resume {url}: HTTP 416 for a partial file of {offset} bytes") from exc
                continue
            raise FetchError(_describe_url_error(exc, url)) from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise FetchError(_describe_url_error(exc, url)) from exc

        with resp:
            status = getattr(resp, "status", None) or 200
            length = resp.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            total: int | None
            if offset and status == 206:
                m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", "") or "")
                start = int(m.group(1)) if m else None
                if start != offset:
                    log.warning("%s: server resumed at byte %s instead of %d; restarting", dest, start, offset)
                    dest.unlink()
                    continue
                mode = "ab"
                if m and m.group(3) != "*":
                    total = int(m.group(3))
                else:
                    total = offset + length if length is not None else None
            else:
                if offset:
                    log.info("%s: server ignored the Range request (HTTP %s); restarting from zero", dest, status)
                offset, mode = 0, "wb"
                total = length
            if total is not None:
                need = total - offset
                free = shutil.disk_usage(dest.parent).free
                if free < need + (16 << 20):
                    raise FetchError(f"not enough disk space in {dest.parent}: {need} bytes needed, {free} free")
            received = offset
            bar = tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=desc, disable=not _progress_enabled(quiet), leave=False)
            error: BaseException | None = None
            try:
                with open(dest, mode) as f:
                    while True:
                        try:
                            chunk = resp.read(_CHUNK)
                        except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
                            error = exc
                            break
                        if not chunk:
                            break
                        f.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
            finally:
                bar.close()
        if error is None and (total is None or received == total):
            return dest
        if total is not None and received > total:
            dest.unlink()
            raise FetchError(f"{url}: received {received} bytes, more than the announced {total}; the partial "
                             "file was deleted")
        attempt += 1
        what = f"{type(error).__name__}: {error}" if error is not None else "connection closed"
        if attempt > retries:
            raise DownloadInterrupted(
                f"download of {url} interrupted at {received} of {total if total is not None else '?'} bytes "
                f"({what}); run the fetch again to resume from {dest}")
        log.warning("%s: interrupted at %d bytes (%s); resuming (attempt %d of %d)", desc, received, what,
                    attempt, retries)
        if backoff:
            time.sleep(backoff * attempt)


# --------------------------------------------------------------------------------------------------
# Google Drive

def _manual_instructions(entry: WeightFile, final: Path) -> str:
    return (f"Download it in a browser from {entry.source_url} and save it as {final} "
            f"(or put it in a folder passed with --weights-dir).")


def _gdrive_download(entry: WeightFile, staging: Path, final: Path, quiet: bool) -> Path:
    try:
        import gdown  # a dependency of vidinv (pyproject.toml); imported lazily
    except ImportError as exc:
        raise FetchError(
            f"{entry.name} is on Google Drive and gdown, a vidinv dependency, is missing from this environment "
            "(pip install gdown, or reinstall vidinv).\n" + _manual_instructions(entry, final)) from exc
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        out = gdown.download(id=entry.gdrive_id, output=str(staging), quiet=quiet or not _progress_enabled(False),
                             resume=True)
    except Exception as exc:  # gdown raises its own errors (quota, permission, network)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FetchError(f"gdown could not download {entry.name} from Google Drive: {first}\n"
                         + _manual_instructions(entry, final)) from exc
    if not out or not staging.is_file() or staging.stat().st_size == 0:
        raise FetchError(f"gdown did not download {entry.name} from Google Drive.\n"
                         + _manual_instructions(entry, final))
    return staging


# --------------------------------------------------------------------------------------------------
# accept: checks then rename

def _quarantine(path: Path, final: Path) -> Path:
    """Move a rejected file aside to ``<final>.rejected`` (kept for inspection; replaced by the next one)."""
    return commit(path, final.with_name(final.name + ".rejected"), fsync=False, keep=True)


def _accept(entry: WeightFile, staged: Path, final: Path, structure: bool) -> Path:
    """Check a complete download and move it to ``final``; move it aside when it fails."""
    # on use: vidinv.io.checkpoints imports torch; `vidinv weights list` stays light
    from vidinv.io.checkpoints import CheckpointError

    problem = hash_problem(entry, staged)
    if problem:
        rejected = _quarantine(staged, final)
        raise ChecksumError(f"{entry.name}: downloaded file rejected: {problem}. It was moved to {rejected}; "
                            "the source may have changed or the download was corrupted.")
    if structure and entry.check is not None:
        try:
            check_structure(entry, staged)
        except ImportError as exc:
            raise FetchError(f"{entry.name}: downloaded completely but its structure check cannot run ({exc}); "
                             f"the download is kept at {staged} and is checked again by the next fetch.") from exc
        except Exception as exc:  # CheckpointError, or anything else a loader raises: the file cannot be loaded
            rejected = _quarantine(staged, final)
            detail = str(exc) if isinstance(exc, CheckpointError) else f"{type(exc).__name__}: {exc}"
            raise StructureError(f"{entry.name}: downloaded file failed its structure check (moved to {rejected}).\n"
                                 f"{detail}") from exc
    return commit(staged, final, keep=True)  # a failed move keeps the download (the next fetch checks it again)


# --------------------------------------------------------------------------------------------------
# public

@contextlib.contextmanager
def _exclusive(final: Path) -> Iterator[None]:
    """Hold an advisory lock on ``<final>.lock`` (POSIX ``flock``) so that two processes fetching the
    same file do not write the same ``.part``; a no-op where ``fcntl`` is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.with_name(final.name + ".lock"), "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def fetch(name: str | WeightFile, *, home: str | os.PathLike | None = None,
          mirror: str | Mapping[str, str] | None = None, quiet: bool = False, force: bool = False,
          retries: int = 2, timeout: float = 60.0, structure: bool = True, backoff: float = 1.0) -> Path:
    """Download one registry file into the cache and return its final path.

    A file already in the cache is returned as is (after the exact-size / sha256 check where those
    are known; a cached file failing it is moved aside and downloaded again) unless ``force``.

    Args:
        name: registry name or entry (weights or direction; external files are not fetched).
        home: cache root (default ``$VIDINV_HOME`` or ``~/.cache/vidinv``).
        mirror: base URL or ``{name: url}`` replacing the official source (default ``$VIDINV_MIRROR``).
        quiet: no progress bar.
        force: download again even when the file is cached.
        retries: resumptions after mid-body interruptions (HTTP only).
        timeout: socket timeout in seconds (HTTP only).
        structure: run the entry's structure check before accepting the file.
        backoff: seconds times the attempt number to wait before resuming.

    Returns:
        ``$VIDINV_HOME/<subdir>/<file>``.

    Raises:
        FetchError: network failure (one-line reason; Google Drive failures add manual instructions),
            ``DownloadInterrupted`` (the ``.part`` is kept), ``ChecksumError`` / ``StructureError``
            (the file is moved to ``<final>.rejected``), or an external file.
    """
    entry = registry.get(name)
    if entry.kind == "external":
        raise FetchError(f"{entry.name} is not downloaded by vidinv: {entry.hint}")
    if not entry.fetchable:
        raise FetchError(f"{entry.name} has no download source")
    final = cache_path(entry, home)
    with _exclusive(final):
        if final.is_file() and not force:
            problem = hash_problem(entry, final)
            if problem is None:
                return final
            rejected = _quarantine(final, final)
            log.warning("%s: cached file rejected (%s), moved to %s; downloading again", entry.name, problem,
                        rejected)
        url = mirror_url(entry, mirror) or entry.url
        if url is not None:
            log.info("fetching %s from %s", entry.name, url)
            part = final.with_name(final.name + ".part")
            download(url, part, quiet=quiet, timeout=timeout, retries=retries, backoff=backoff, desc=entry.name)
            return _accept(entry, part, final, structure)
        staging = final.with_name(final.name + ".gdown")
        log.info("fetching %s from Google Drive id %s", entry.name, entry.gdrive_id)
        _gdrive_download(entry, staging, final, quiet)
        return _accept(entry, staging, final, structure)


def fetch_many(names: Iterable[str | WeightFile], *, on_result: Callable[[str, Path | None, str | None], None]
               | None = None, **kwargs) -> tuple[dict[str, Path], dict[str, str]]:
    """Fetch several files, continuing past failures.

    Args:
        names: registry names or entries.
        on_result: called as ``on_result(name, path, None)`` after each success and
            ``on_result(name, None, message)`` after each failure.
        **kwargs: passed to :func:`fetch`.

    Returns:
        ``(fetched, failed)``: ``{name: path}`` and ``{name: error message}``.
    """
    fetched: dict[str, Path] = {}
    failed: dict[str, str] = {}
    for n in names:
        entry = registry.get(n)
        try:
            fetched[entry.name] = fetch(entry, **kwargs)
        except FetchError as exc:
            failed[entry.name] = str(exc)
            if on_result:
                on_result(entry.name, None, str(exc))
            continue
        if on_result:
            on_result(entry.name, fetched[entry.name], None)
    return fetched, failed

