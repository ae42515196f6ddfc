"""Safe files for every command: check inputs and destinations before any work, write atomically.

Checks (run by each ``vidinv`` sub-command before it loads a model or decodes a frame):

* :func:`check_output` refuses a destination that *is* one of the command's inputs, *resolves to* one
  (through ``..`` or a symbolic link, or is a hard link to it), or *would replace* one (an existing
  file inside an input folder; an input inside the files a folder output writes), a folder that cannot
  be written (a path component is a file, no write permission, read-only file system: tried with a
  probe file), and, for videos, an extension FFmpeg has no muxer for or whose container cannot hold
  the video codec, and, for still images, an extension vidinv cannot write (:mod:`vidinv.io.images`). It
  only reads: nothing is created.
* :func:`check_video_input` refuses a missing, empty, unreadable, truncated (ISO BMFF / MP4 / MOV boxes
  that reach past the end of the file) or undecodable file and one without a video stream (audio only).
* still images: :data:`IMAGE_EXTENSIONS` (``check_output(kind="image")``); the checks that decode an image
  are in :mod:`vidinv.io.images` (``check_image_input``; ``check_media_io``: a job's input file and output
  path as a pair, image -> image or video -> video).
* :func:`check_input_file` is the same for any other input file (exists, a file, not empty, readable);
  :func:`check_torch_file` also checks the format of a ``torch.save`` file (zip archive whole, or pickle).

All raise :class:`InputFileError` / :class:`OutputPathError` (both ``ValueError``) whose message is one
line naming the file; ``cli.main`` prints it as ``vidinv: error: <message>``.

Atomic writes (the one write-to-temporary-then-rename helper of vidinv): :func:`atomic_path` (yields a
temporary path for writers that open files by name, e.g. FFmpeg), :func:`atomic_write` (yields an open
file), :func:`atomic_write_text` / :func:`atomic_write_bytes` (whole content) and :func:`atomic_save`
(``torch.save``) write to ``.<stem>.<8 hex>.part<suffix>`` in the
destination's folder (:func:`temp_path_for`; same folder, so the rename cannot cross file systems;
same extension, so FFmpeg picks the same muxer), flush it to disk (``fsync``) and move it over the
destination with :func:`os.replace` (atomic on POSIX and Windows) only when the block ends normally. On
any exception, :class:`KeyboardInterrupt` included, the temporary file is deleted and an existing
destination is left untouched. SIGKILL or a power cut can leave a ``.part`` file, never a partial
destination.
"""
from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import logging
import math
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["IMAGE_EXTENSIONS", "InputFileError", "OutputPathError", "TEMP_NAME_RE", "VIDEO_EXTENSIONS", "atomic_path",
           "atomic_save", "atomic_write", "atomic_write_bytes", "atomic_write_text", "check_input_file",
           "check_output", "check_torch_file", "check_video_input", "commit",
           "discard", "json_safe", "sha256_file", "temp_path_for"]

#: Extensions read and written as still images (lower case); the format follows the extension.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")

#: Extensions suggested in messages about video outputs (any extension FFmpeg can mux the codec into is
#: accepted).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".m4v", ".avi")

#: Names of the temporary files :func:`temp_path_for` makes (``.<stem>.<8 hex>.part<suffix>``).
TEMP_NAME_RE = re.compile(r"^\..*\.[0-9a-f]{8}\.part(\.[^.]*)?$")

# ISO base media file format (MP4, MOV, M4V, 3GP) top-level box types seen first in a file.
_BMFF_FIRST = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"styp", b"sidx"}


class OutputPathError(ValueError):
    """A destination cannot be used: it is or would replace an input, its folder is not writable, or its
    extension is not a known container. The message is one line and names the path."""


class InputFileError(ValueError):
    """An input file cannot be used: missing, empty, unreadable, truncated, not a video or without a video
    stream. The message is one line and names the path."""


# ------------------------------------------------------------------------------------------------
# atomic writes

def temp_path_for(dst: str | os.PathLike) -> Path:
    """A fresh temporary name in ``dst``'s folder: ``.<stem>.<8 hex>.part<suffix>`` (same extension, so a
    writer that picks its format from the name picks the destination's)."""
    dst = Path(dst)
    return dst.with_name(f".{dst.stem}.{secrets.token_hex(4)}.part{dst.suffix}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def commit(tmp: str | os.PathLike, dst: str | os.PathLike, *, fsync: bool = True, keep: bool = False) -> Path:
    """Move the finished temporary file ``tmp`` over ``dst`` atomically (:func:`os.replace`).

    With ``fsync`` the file's data is flushed to disk first and the folder entry after the rename, so a
    power cut leaves either the old ``dst`` or the complete new one. Returns ``Path(dst)``.

    ``keep``: leave ``tmp`` in place when the move fails or is interrupted (a resumable download that
    must not be lost); by default it is deleted.

    Raises:
        OSError: the rename failed (``tmp`` is then deleted unless ``keep``).
    """
    tmp, dst = Path(tmp), Path(dst)
    try:
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, dst)
    except BaseException:
        if not keep:
            discard(tmp)
        raise
    if fsync:
        _fsync_dir(dst.parent)
    return dst


def discard(tmp: str | os.PathLike | None) -> None:
    """Delete a temporary file if it exists (never raises for a missing file)."""
    if tmp is None:
        return
    try:
        Path(tmp).unlink()
    except FileNotFoundError:
        pass
    except OSError as e:  # pragma: no cover - nothing better to do while unwinding another error
        log.warning("could not delete the temporary file %s: %s", tmp, e)


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike, *, fsync: bool = True, make_parents: bool = True) -> Iterator[Path]:
    """Context manager yielding a temporary path beside ``dst``; ``dst`` appears only when the block ends
    normally.

    Usage::

        with atomic_path("out.mp4") as tmp:
            write_video(tmp)          # any writer that opens the file by name

    The folder of ``dst`` is created (``make_parents``). On normal exit the temporary file is flushed
    (``fsync``) and moved over ``dst`` (:func:`commit`); if the block raises (``KeyboardInterrupt``
    included) the temporary file is deleted, ``dst`` is left as it was and the exception propagates.

    Raises:
        FileNotFoundError: the block ended normally without creating the temporary file.
    """
    dst = Path(dst)
    if make_parents:
        dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(dst)
    try:
        yield tmp
    except BaseException:
        discard(tmp)
        raise
    if not tmp.exists():
        raise FileNotFoundError(f"nothing was written for {dst}")
    commit(tmp, dst, fsync=fsync)


@contextlib.contextmanager
def atomic_write(dst: str | os.PathLike, mode: Literal["w", "wb"] = "wb", *, encoding: str | None = None,
                 newline: str | None = None, fsync: bool = True) -> Iterator[IO]:
    """Context manager yielding an open file (``mode`` ``"wb"`` or ``"w"``) whose content replaces ``dst``
    atomically when the block ends normally (see :func:`atomic_path`); nothing changes at ``dst`` if it
    raises. ``encoding`` defaults to UTF-8 in text mode; ``newline`` is passed to :func:`open` (text mode
    only; ``""`` for :mod:`csv` writers)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w" and encoding is None:
        encoding = "utf-8"
    with atomic_path(dst, fsync=fsync) as tmp:
        with open(tmp, mode, encoding=encoding, newline=newline) as f:
            yield f


def atomic_write_text(dst: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``dst`` atomically (:func:`atomic_write`). Returns ``Path(dst)``."""
    with atomic_write(dst, "w", encoding=encoding) as f:
        f.write(text)
    return Path(dst)


def atomic_write_bytes(dst: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``dst`` atomically (:func:`atomic_write`). Returns ``Path(dst)``."""
    with atomic_write(dst, "wb") as f:
        f.write(data)
    return Path(dst)


def atomic_save(obj: Any, dst: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``dst`` atomically (:func:`atomic_write`; the zip format of PyTorch >= 1.6):
    a crash or an exception while saving never leaves a partial checkpoint. Returns ``Path(dst)``.

    Raises:
        Whatever :func:`torch.save` raises (e.g. a pickling error); ``dst`` is then unchanged.
    """
    import torch  # imported on use: ``vidinv.io.outputs`` stays light (no torch) for ``vidinv --help``

    with atomic_write(dst, "wb") as f:
        torch.save(obj, f)
    return Path(dst)


# ------------------------------------------------------------------------------------------------
# file hashes and JSON values

def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 (64 lower-case hex digits) of a file's content, read in ``chunk_size``-byte blocks
    (memory stays at one block; ~1 s per 500 MB).

    Raises:
        OSError: the file cannot be read (``FileNotFoundError`` when missing).
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk_size)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def json_safe(x: Any, *, infinity: Literal["string", "null"] = "string") -> Any:
    """``x`` with every value turned into a JSON type, recursively, for strict JSON
    (``json.dumps(..., allow_nan=False)`` accepts the result).

    * mappings -> ``dict`` with ``str`` keys; lists, tuples and numpy arrays -> ``list``;
    * numpy booleans / integers / floats -> ``bool`` / ``int`` / ``float``;
    * NaN -> ``None``; +-infinity -> ``"inf"`` / ``"-inf"`` (``infinity="string"``, the report's
      convention: a PSNR of identical images is infinite) or ``None`` (``infinity="null"``);
    * :class:`~fractions.Fraction` -> ``"num/den"`` (e.g. a frame rate ``"30000/1001"``, ``"25/1"``);
    * ``None``, ``bool``, ``int``, ``str`` unchanged; anything else (a :class:`~pathlib.Path`, ...) -> ``str(x)``.
    """
    if isinstance(x, Mapping):
        return {str(k): json_safe(v, infinity=infinity) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v, infinity=infinity) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v, infinity=infinity) for v in x.tolist()]
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, Fraction):
        return f"{x.numerator}/{x.denominator}"
    if isinstance(x, (float, np.floating)):
        f = float(x)
        if math.isnan(f):
            return None
        if math.isinf(f):
            return ("inf" if f > 0 else "-inf") if infinity == "string" else None
        return f
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    return str(x)


# ------------------------------------------------------------------------------------------------
# path helpers

def _real(p: str | os.PathLike) -> Path:
    """The path with symbolic links and ``..`` resolved the way the OS would (missing tails kept as given)."""
    return Path(os.path.realpath(os.fspath(p)))


def _inside(p: Path, folder: Path) -> bool:
    return p != folder and folder in p.parents


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _spelled(p: Path, real: Path) -> str:
    """How ``p`` reaches ``real``, for messages."""
    if p.is_symlink():
        return " through a symbolic link"
    if ".." in p.parts:
        return " through '..'"
    if Path(os.path.abspath(p)) != real:
        return " through a symbolic link"
    return ""


def _nearest_existing(p: Path) -> tuple[Path, list[str]]:
    """The nearest existing ancestor of ``p`` (or ``p``) and the missing names below it."""
    missing: list[str] = []
    q = Path(os.path.abspath(p))
    while not os.path.lexists(q):
        missing.insert(0, q.name)
        if q.parent == q:
            break
        q = q.parent
    return q, missing


def _check_folder_writable(folder: Path, dst: Path, what: str) -> None:
    """``folder`` (where ``dst`` will be written, possibly not yet created) can be created and written."""
    base, missing = _nearest_existing(folder)
    if not base.is_dir():
        raise OutputPathError(f"cannot write the {what} {dst}: {base} is not a folder")
    # a probe file (deleted at once) rather than os.access: it also sees read-only mounts, ACLs and the
    # file systems that refuse new entries even to root
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".vidinv-probe-")
    except OSError as e:
        reason = e.strerror or str(e)
        if missing:  # the folders below ``base`` would have to be created there
            raise OutputPathError(f"cannot write the {what} {dst}: cannot create folders in {base} "
                                  f"({reason})") from None
        raise OutputPathError(f"cannot write the {what} {dst}: folder {base} is not writable ({reason})") from None
    os.close(fd)
    os.unlink(probe)


def _check_video_container(dst: Path, codec: str | None, what: str) -> None:
    import av

    hint = ", ".join(VIDEO_EXTENSIONS)
    if not dst.suffix or dst.suffix == ".":
        raise OutputPathError(f"the {what} {dst} has no extension, so the container format is unknown; "
                              f"use one of {hint}")
    try:
        # av.open in write mode only guesses the muxer from the name: nothing is created until a header is
        # written (a name in a folder that does not exist makes sure of it)
        c = av.open(os.path.join(os.sep, "nonexistent-vidinv-check", "x" + dst.suffix), mode="w")
    except (ValueError, av.error.FFmpegError):
        raise OutputPathError(f"the {what} {dst}: FFmpeg knows no video container with the extension "
                              f"'{dst.suffix}'; use one of {hint}") from None
    try:
        fmt, supported = c.format.name, c.supported_codecs
    finally:
        with contextlib.suppress(Exception):
            c.close()
    if codec is not None:
        try:
            cname = av.codec.Codec(codec, "w").name
        except Exception:  # PyAV raises several types for an unknown encoder
            raise OutputPathError(f"unknown video encoder {codec!r} (for {dst})") from None
        if cname not in supported and codec not in supported:
            raise OutputPathError(f"the {what} {dst}: the '{dst.suffix}' container ({fmt}) cannot hold {codec} "
                                  f"video; use one of {hint}")


def check_output(dst: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                 kind: Literal["file", "video", "image", "dir"] = "file", codec: str | None = None,
                 members: Sequence[str] = (), also_written: Iterable[str | os.PathLike | None] = (),
                 forbid_inside: Iterable[str | os.PathLike | None] = (), expect_bytes: int | None = None,
                 what: str | None = None) -> Path:
    """Check a destination before any work; creates nothing.

    Args:
        dst: the file (``kind`` ``"file"`` / ``"video"``) or folder (``"dir"``) the command will write.
        inputs: the command's input files and folders (``None`` entries are ignored).
        kind: ``"video"`` also checks that FFmpeg has a muxer for the extension that can hold ``codec``;
            ``"image"`` that the extension is one of :data:`vidinv.io.images.IMAGE_EXTENSIONS`.
        codec: the video encoder (e.g. ``"libx264"``) for ``kind="video"``.
        members: for ``kind="dir"``: the names (``fnmatch`` patterns) of the files and sub-folders the
            command writes in the folder, e.g. ``("manifest.json", "chunks", "*.png")``; an input at or
            under one of them would be replaced.
        also_written: the command's other outputs: ``dst`` must differ from each.
        forbid_inside: folders ``dst`` must not lie in (e.g. a training set read recursively).
        expect_bytes: rough size of what will be written; a warning is logged when the file system has
            less free space.
        what: how messages name ``dst`` (default ``"output"`` / ``"output folder"``).

    Returns:
        ``Path(dst)`` as given (the command writes there; checks use the resolved path).

    Raises:
        OutputPathError: with a one-line reason.
    """
    dst = Path(dst)
    what = what or ("output folder" if kind == "dir" else "output")
    if not str(dst).strip():
        raise OutputPathError(f"the {what} is an empty path")
    real = _real(dst)
    exists = os.path.lexists(dst)
    for inp in inputs:
        if inp is None or not str(inp):
            continue
        ip = Path(inp)
        ireal = _real(ip)
        if real == ireal or (exists and _same_file(dst, ip)):
            how = _spelled(dst, real)
            if os.path.abspath(dst) == os.path.abspath(ip) and ".." not in dst.parts:
                msg = f"the {what} {dst} is the input"
            elif how:
                msg = f"the {what} {dst} resolves{how} to the input {ip}"
            else:
                msg = f"the {what} {dst} is the same file as the input {ip}"
            raise OutputPathError(msg + "; write to another path")
        if ireal.is_dir() and _inside(real, ireal) and exists:
            raise OutputPathError(f"the {what} {dst} would replace a file inside the input folder {ip}; "
                                  "write to another path")
        if kind == "dir" and _inside(ireal, real):
            first = ireal.relative_to(real).parts[0]
            if any(fnmatch.fnmatch(first, m) for m in members):
                raise OutputPathError(f"writing into the {what} {dst} would replace the input {ip} "
                                      f"({first} is written there); choose another folder")
    for other in also_written:
        if other is not None and str(other) and _real(other) == real:
            raise OutputPathError(f"the same path {dst} is given for two outputs")
    for folder in forbid_inside:
        if folder is not None and str(folder) and (_inside(real, _real(folder)) or real == _real(folder)):
            raise OutputPathError(f"the {what} {dst} must not be inside {folder}")
    if kind == "dir":
        if exists and not real.is_dir():
            raise OutputPathError(f"the {what} {dst} exists and is not a folder")
        folder = dst
    else:
        if real.is_dir():
            raise OutputPathError(f"the {what} {dst} is a folder; give a file name")
        folder = dst.parent
    _check_folder_writable(folder, dst, what)
    if kind == "video":
        _check_video_container(dst, codec, what)
    if kind == "image":
        if dst.suffix.lower() not in IMAGE_EXTENSIONS:
            raise OutputPathError(f"the {what} {dst} has no image extension; use one of {', '.join(IMAGE_EXTENSIONS)}")
    if expect_bytes:
        base, _ = _nearest_existing(folder)
        try:
            free = shutil.disk_usage(base).free
        except OSError:  # pragma: no cover
            free = None
        if free is not None and free < expect_bytes:
            log.warning("only %.0f MB free in %s; the %s needs about %.0f MB", free / 1e6, base, what,
                        expect_bytes / 1e6)
    return dst


# ------------------------------------------------------------------------------------------------
# inputs

def check_input_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """``path`` exists, is a file (not a folder), is not empty and can be opened for reading.

    Returns:
        ``Path(path)``.

    Raises:
        InputFileError: with a one-line reason.
    """
    p = Path(path)
    if not os.path.exists(p):
        if os.path.islink(p):
            raise InputFileError(f"the {what} {p} is a symbolic link to {os.readlink(p)}, which does not exist")
        raise InputFileError(f"the {what} {p} does not exist")
    if p.is_dir():
        raise InputFileError(f"the {what} {p} is a folder, not a file")
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            f.read(1)
    except OSError as e:
        raise InputFileError(f"cannot read the {what} {p}: {e.strerror or e}") from None
    if size == 0 and p.is_file():
        raise InputFileError(f"the {what} {p} is empty (0 bytes)")
    return p


def check_torch_file(path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """:func:`check_input_file`, and ``path`` looks like a ``torch.save`` file: a whole zip archive (the
    format since PyTorch 1.6; its central directory, at the end, must be there, so a truncated file is
    refused) or a pickle (the legacy format, first byte 0x80). Reads a few bytes; loads nothing.

    Raises:
        InputFileError: with a one-line reason.
    """
    import zipfile

    p = check_input_file(path, what)
    with open(p, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        if not zipfile.is_zipfile(p):
            raise InputFileError(f"the {what} {p} is a damaged or truncated zip archive (its central directory "
                                 "is missing; an interrupted download or copy?)")
        return p
    if head[:1] == b"\x80" and len(head) >= 2 and 2 <= head[1] <= 5:
        return p
    raise InputFileError(f"the {what} {p} is not a PyTorch checkpoint (neither the zip nor the pickle format of "
                         "torch.save)")


def _bmff_problem(p: Path, size: int) -> str | None:
    """For an ISO BMFF file (MP4/MOV/3GP): a description of a top-level box reaching past the end of the
    file, or of a missing ``moov`` index; ``None`` when the boxes are whole or the file is not ISO BMFF."""
    with open(p, "rb") as f:
        head = f.read(8)
        if len(head) < 8 or head[4:8] not in _BMFF_FIRST:
            return None
        pos, seen = 0, set()
        while pos < size:
            f.seek(pos)
            h = f.read(16)
            if len(h) < 8:
                return f"ends inside a box header at byte {pos}"
            n, typ = int.from_bytes(h[:4], "big"), h[4:8]
            if n == 1:
                if len(h) < 16:
                    return f"ends inside a box header at byte {pos}"
                n = int.from_bytes(h[8:16], "big")
            elif n == 0:  # the box runs to the end of the file
                n = size - pos
            if n < 8:
                return None  # not a box layout we understand; let FFmpeg judge
            seen.add(typ)
            if pos + n > size:
                name = typ.decode("latin-1", "replace")
                return (f"is truncated: its '{name}' box needs {pos + n} bytes, the file has {size} "
                        "(an interrupted download or copy?)")
            pos += n
        if b"moov" not in seen:
            return "has no 'moov' index (an interrupted recording or download?)"
    return None


def check_video_input(path: str | os.PathLike, what: str = "input video") -> Path:
    """``path`` is a readable video: exists, not empty, not truncated (ISO BMFF box sizes), opens with
    FFmpeg, has a video stream and its first frame decodes.

    Cheap: reads the box headers of MP4/MOV files and decodes one frame.

    Returns:
        ``Path(path)``.

    Raises:
        InputFileError: with a one-line reason, e.g. ``"the input video a.m4a has no video stream (it
            holds: audio aac)"``.
    """
    import av

    p = check_input_file(path, what)
    size = p.stat().st_size
    problem = _bmff_problem(p, size)
    if problem:
        raise InputFileError(f"the {what} {p} {problem}")
    try:
        c = av.open(str(p), mode="r")
    except (av.error.FFmpegError, ValueError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
        raise InputFileError(f"cannot read the {what} {p}: {reason} (not a video file, or damaged)") from None
    try:
        if not c.streams.video:
            held = ", ".join(f"{s.type} {s.codec_context.name if s.codec_context is not None else '?'}"
                             for s in c.streams) or "no streams"
            raise InputFileError(f"the {what} {p} has no video stream (it holds: {held})")
        try:
            first = next(iter(c.decode(c.streams.video[0])), None)
        except (av.error.FFmpegError, ValueError) as e:
            reason = getattr(e, "strerror", None) or str(e).splitlines()[0]
            raise InputFileError(f"cannot decode the {what} {p}: {reason}") from None
        if first is None:
            raise InputFileError(f"the {what} {p} holds no decodable video frame")
    finally:
        c.close()
    return p
