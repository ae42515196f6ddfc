"""A folder of still images as one job: the models load once, then each image is run on its own.

The seam for every command that takes ``IN`` as an image, a video or a folder of images (``vidinv edit``;
the task commands use it the same way)::

    folder = plan_folder(src_dir, dst_dir, inputs=[...])        # before any model loads: one-line errors
    job = <load the models once>                                # e.g. vidinv.pipeline.job.load_job
    result = run_folder(folder, lambda src, dst: run_one(job.for_input(src), src, dst),
                        note=lambda r: "no face found: copied unchanged" if r.passthrough else None,
                        progress=update)
    for line in result.summary_lines():
        print(line)
    if result.failed: exit 1

* :func:`plan_folder` lists the folder's images (:data:`vidinv.io.images.IMAGE_EXTENSIONS`, not recursive,
  sorted by name); every other entry (other files, sub-folders) is skipped and listed in
  :attr:`FolderPlan.skipped`. Each image ``DIR/name.ext`` is written to ``OUTDIR/name.ext`` (same name, same
  format). It checks the output folder with :func:`vidinv.io.outputs.check_output` (writable, not an input,
  would not replace an input) and refuses outputs that already exist unless ``overwrite``.
* :func:`run_folder` calls ``run_one(src, dst)`` (the command's per-image function, which writes ``dst``,
  through :class:`vidinv.io.images.ImageWriter` for instance) for each image in order. An exception of one
  image (a damaged file, a generator overflow, ...) is recorded as that image's one-line error and the
  next image runs; :class:`KeyboardInterrupt` stops everything (what was written stays, atomically).
  ``note(result)`` may return a line for the summary (e.g. an image passed through without a face).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidinv.io.images import IMAGE_EXTENSIONS, is_image_path
from vidinv.io.outputs import VIDEO_EXTENSIONS, InputFileError, OutputPathError, check_output

log = logging.getLogger(__name__)

__all__ = ["FolderPlan", "FolderResult", "ImageOutcome", "plan_folder", "run_folder"]


@dataclass
class FolderPlan:
    """What :func:`plan_folder` found.

    Attributes:
        src, dst: the input folder and the output folder (it may not exist yet; written into on use).
        pairs: ``(input image, output path)`` in name order.
        skipped: the input folder's other entries (not images, or sub-folders), in name order.
    """

    src: Path
    dst: Path
    pairs: list[tuple[Path, Path]]
    skipped: list[Path] = field(default_factory=list)


def plan_folder(src: str | os.PathLike, dst: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), *,
                overwrite: bool = False, also_written: Iterable[str | os.PathLike | None] = ()) -> FolderPlan:
    """Check a folder-of-images job before any model loads; creates nothing.

    Args:
        src: the input folder.
        dst: the output folder (created when the first image is written).
        inputs: the command's other inputs (direction files, ...): no output may be or replace one.
        overwrite: allow outputs that already exist (they are then replaced, each atomically).
        also_written: the command's other outputs.

    Returns:
        :class:`FolderPlan`.

    Raises:
        vidinv.io.outputs.InputFileError: ``src`` is not a folder or holds no image.
        vidinv.io.outputs.OutputPathError: ``dst`` is a file or looks like one (an image or video extension),
            is or would replace an input (:func:`~vidinv.io.outputs.check_output`), is not writable, or already
            holds some of the outputs (without ``overwrite``; the message counts them and names the first).
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise InputFileError(f"the input folder {src} is not a folder")
    if not dst.is_dir() and (is_image_path(dst) or dst.suffix.lower() in VIDEO_EXTENSIONS):
        raise OutputPathError(f"the input {src} is a folder, so the output {dst} must be a folder too (a folder of "
                              "images is written to a folder of images of the same names)")
    images: list[Path] = []
    skipped: list[Path] = []
    for p in sorted(src.iterdir()):
        (images if p.is_file() and is_image_path(p) else skipped).append(p)
    if not images:
        raise InputFileError(f"the input folder {src} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    pairs = [(p, dst / p.name) for p in images]
    check_output(dst, [src, *inputs], kind="dir", members=[p.name for p in images], also_written=also_written)
    if not overwrite:
        there = [d for _, d in pairs if os.path.lexists(d)]
        if there:
            raise OutputPathError(f"the output folder {dst} already holds {len(there)} of the {len(pairs)} outputs "
                                  f"(e.g. {there[0].name}); remove them or choose another folder")
    return FolderPlan(src, dst, pairs, skipped)


@dataclass
class ImageOutcome:
    """One image of a folder job: its paths, what ``run_one`` returned, a one-line ``error`` when it failed
    (nothing was written for it then) and the ``note`` for the summary."""

    src: Path
    dst: Path
    result: Any = None
    error: str | None = None
    note: str | None = None


@dataclass
class FolderResult:
    """What :func:`run_folder` did: the plan and one :class:`ImageOutcome` per image, in order."""

    plan: FolderPlan
    outcomes: list[ImageOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[ImageOutcome]:
        """The images that failed (no output written for them)."""
        return [o for o in self.outcomes if o.error is not None]

    def summary_lines(self) -> list[str]:
        """Lines for the user: the counts, each skipped entry, each image with a note or an error."""
        n, bad = len(self.outcomes), len(self.failed)
        noted = sum(1 for o in self.outcomes if o.error is None and o.note)
        lines = [f"{self.plan.dst}: {n - bad} of {n} image(s) written ({noted} with a note), {bad} failed"]
        if self.plan.skipped:
            names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in self.plan.skipped)
            lines.append(f"  skipped {len(self.plan.skipped)} entr{'y' if len(self.plan.skipped) == 1 else 'ies'} "
                         f"that are not images: {names}")
        for o in self.outcomes:
            if o.error is not None:
                lines.append(f"  {o.src.name}: failed: {o.error}")
            elif o.note:
                lines.append(f"  {o.src.name}: {o.note}")
        return lines


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    if not isinstance(exc, (ValueError, RuntimeError, OSError, LookupError)):
        msg = f"{type(exc).__name__}: {msg}"
    return msg


def run_folder(plan: FolderPlan, run_one: Callable[[Path, Path], Any], *,
               note: Callable[[Any], str | None] | None = None,
               progress: Callable[[int, int | None], None] | None = None) -> FolderResult:
    """Run ``run_one(src, dst)`` for each image of ``plan`` (see the module doc).

    Args:
        plan: from :func:`plan_folder`.
        run_one: writes ``dst`` from ``src`` with the already loaded models; its return value is kept in
            :attr:`ImageOutcome.result`.
        note: a summary line for a result (``None``: nothing to say).
        progress: ``progress(images_done, images_total)`` after each image (failed ones included).

    Returns:
        :class:`FolderResult` (the caller decides the exit status from :attr:`FolderResult.failed`).

    Raises:
        KeyboardInterrupt: passed on at once (the images done so far stay written).
    """
    result = FolderResult(plan)
    total = len(plan.pairs)
    for i, (src, dst) in enumerate(plan.pairs):
        out = ImageOutcome(src, dst)
        try:
            out.result = run_one(src, dst)
            out.note = note(out.result) if note is not None else None
        except Exception as exc:  # one image's failure does not stop the others
            log.debug("%s failed", src, exc_info=True)
            out.error = _one_line(exc)
        result.outcomes.append(out)
        if progress is not None:
            progress(i + 1, total)
    return result

