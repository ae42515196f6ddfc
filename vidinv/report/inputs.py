"""Which videos a report covers: expanding files / folders / globs and pairing outputs with sources."""
from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["VIDEO_EXTENSIONS", "expand_videos", "pair_outputs", "InputError"]

#: File extensions taken as videos when a folder or glob is given.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".mkv", ".avi", ".webm")


class InputError(ValueError):
    """The given videos cannot be found or paired; the message says which."""


def expand_videos(spec: str | os.PathLike) -> list[Path]:
    """Videos named by ``spec``: a file, a folder (its video files, not recursive) or a glob pattern.

    Folders and globs keep only files with a :data:`VIDEO_EXTENSIONS` extension; results are sorted by
    name. An explicitly named file is taken whatever its extension.

    Raises:
        InputError: nothing matches.
    """
    s = str(spec)
    p = Path(s)
    if p.is_file():
        return [p]
    if p.is_dir():
        out = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS)
        if not out:
            raise InputError(f"folder {p} contains no video files ({', '.join(VIDEO_EXTENSIONS)})")
        return out
    if any(ch in s for ch in "*?["):
        out = sorted(Path(q) for q in glob.glob(s) if Path(q).is_file() and Path(q).suffix.lower() in VIDEO_EXTENSIONS)
        if not out:
            raise InputError(f"no video file matches {s!r}")
        return out
    raise InputError(f"video {s} does not exist")


def _matches(source: Path, output: Path) -> bool:
    a, b = source.stem.lower(), output.stem.lower()
    return b == a or (b.startswith(a) and b[len(a)] in "_-. ")


def pair_outputs(sources: Sequence[Path], outputs: Sequence[Path]) -> list[tuple[Path, list[Path]]]:
    """Attach each output video to its source.

    With one source, every output is compared with it. With several sources, an output belongs to the
    source whose file stem equals the output's stem or prefixes it followed by ``_``, ``-``, ``.`` or a
    space (``talking.mp4`` <- ``talking_edit.mp4``, or ``talking.mp4`` in another folder); the longest
    matching stem wins.

    Returns:
        ``[(source, [outputs...]), ...]`` in source order (sources without outputs get ``[]``).

    Raises:
        InputError: an output matches no source, or the same file is given as source and output.
    """
    srcs = [Path(s) for s in sources]
    result: dict[Path, list[Path]] = {s: [] for s in srcs}
    src_res = {s.resolve() for s in srcs}
    for o in (Path(x) for x in outputs):
        if o.resolve() in src_res and len(srcs) > 1:
            raise InputError(f"{o} is given both as a source and as an output")
        if len(srcs) == 1:
            result[srcs[0]].append(o)
            continue
        cands = [s for s in srcs if _matches(s, o)]
        if not cands:
            raise InputError(f"output {o.name} matches no source by name (sources: "
                             f"{', '.join(s.name for s in srcs)}); name outputs <source stem>_<anything>")
        best = max(cands, key=lambda s: len(s.stem))
        result[best].append(o)
    return [(s, result[s]) for s in srcs]
