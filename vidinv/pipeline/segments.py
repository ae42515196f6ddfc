"""One long video edited as segments by several workers, then joined into the single-run output.

:func:`plan_segments` cuts the frames of a video (or of its ``--start`` / ``--end`` window) into ``n``
consecutive, non-overlapping owned ranges ``[start, stop)``; each :class:`Segment` also names the wider
*context* range its worker decodes and runs through the stages, so that every state carried across frames
is the same at the owned frames as in a single run over the whole window:

* the tracker bridges detection gaps of up to ``max_gap`` (8) frames (:mod:`vidinv.face.tracking`): a
  frame's raw landmarks depend on detections up to ``max_gap + 1`` frames away;
* the landmark / quad smoother (:class:`vidinv.face.smoothing.QuadSmoother`, sigma 3 / 6, Gaussian
  truncated at 4 sigma) reaches ``r1 + r2`` = 12 + 24 = 36 frames either way;
* ``--latent-smoothing S``: a Gaussian on w and F of radius ``floor(4 S + 0.5)`` frames;
* the confidence gate's fade (:mod:`vidinv.face.gate`): ``--gate-fade`` frames either way (8);
* front-end detection runs in batches of 8 frames and the encoder / generator in batches of
  ``--batch-size`` faces from the first decoded frame: the context start is moved back to a multiple of
  ``lcm(8, batch size)`` frames from the window start, so that with one face per frame every batch holds the
  same faces as in the single run.

These supports add up (:func:`required_overlap`); :data:`SEAM_CHECK` frames more are decoded on each side
so that the two workers meeting at a seam both compute the frames around it exactly, and
:func:`join_segments` checks that they agree there (same faces, same quads bit for bit, same gates). That
check catches what has no bounded support: the ``--face largest`` tracker picks its face at the first frame
it sees, so a segment starting in a crowd may follow another person, and the tracker's velocity estimate
(an exponential average, used only to match detections to tracks) has no finite support either; the join
then stops with an error naming the seam instead of writing a video that differs from the single run.

What cannot be split is refused by :func:`vidinv.pipeline.edit.check_segmentable` (also run by
:func:`~vidinv.pipeline.edit.check_options` when ``segments`` > 1) with a one-line error: image / folder inputs,
``--tune`` (trained on the whole clip), per-track options and ``--mix-rows`` (track ids count from each
segment's first frame), ``--noise random`` (the single run is not reproducible), the gate's detector-score
component (its reference is the running maximum over the whole track: ``--gate-score off``).

Each worker writes its owned frames, after compositing and before any lossy encoding, to one part file
(:func:`run_segment`): FFV1 (lossless, ``bgr0``) in Matroska, with the segment's counts, tracks, gates and
seam faces as JSON in the container tag ``VIDINV_SEGMENT``. :func:`join_segments` feeds the parts, in order,
to the same :class:`vidinv.io.mux.EditedVideoWriter` ``vidinv edit`` writes with (the input's timestamps,
codec settings and copied audio); when the parts equal the single run's composited frames, the joined file
is byte-for-byte the single run's output.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from vidinv.io.images import is_image_path, open_output_writer
from vidinv.io.inversion import InversionReader
from vidinv.io.mux import frame_range, passthrough
from vidinv.io.outputs import commit, discard, json_safe, temp_path_for
from vidinv.io.video import Frame, probe
from vidinv.pipeline.edit import EditResult, check_segmentable, edit_input, load_edit_job, plan_edit

log = logging.getLogger(__name__)

__all__ = ["Segment", "plan_segments", "run_segment", "join_segments", "run_segmented", "required_overlap",
           "read_part", "SegmentError", "SEAM_CHECK", "TRACKER_SUPPORT", "SMOOTHER_SUPPORT",
           "DETECT_BATCH", "PART_TAG"]

#: Frames a tracker gap bridge reaches (``Tracker.max_gap + 1``, the default tracker of every job).
TRACKER_SUPPORT = 9
#: Frames the landmark / quad smoother reaches either way (QuadSmoother sigma 3 / 6: r1 + r2 = 12 + 24).
SMOOTHER_SUPPORT = 36
#: Frames on each side of a seam that both neighbouring segments compute exactly and compare.
SEAM_CHECK = 2
#: Frames per detector call of the front-end (:class:`vidinv.face.frontend.FaceFrontEnd` ``batch_size``).
DETECT_BATCH = 8
#: The Matroska tag holding a part's JSON record.
PART_TAG = "VIDINV_SEGMENT"
_DEFAULT_FADE = 8


class SegmentError(ValueError):
    """A segment plan, part file or join that cannot give the single-run output (one-line message)."""


@dataclass(frozen=True)
class Segment:
    """One worker's share of a video.

    Attributes:
        index: 0-based position of the segment in the plan.
        start, stop: the frame indices ``[start, stop)`` it owns (writes to its part).
        context_start, context_stop: the frame indices ``[context_start, context_stop)`` it decodes and runs
            through the stages (``context_start <= start < stop <= context_stop``).
        overlap: the context frames asked for on each side (before clamping at the window's ends).
        window_start, window_stop: the frame range of the whole run (the ``--start`` / ``--end`` window).
    """

    index: int
    start: int
    stop: int
    context_start: int
    context_stop: int
    overlap: int
    window_start: int
    window_stop: int

    @property
    def frames(self) -> range:
        """The owned frames, ``range(start, stop)``."""
        return range(self.start, self.stop)

    @property
    def context(self) -> range:
        """The decoded frames, ``range(context_start, context_stop)``."""
        return range(self.context_start, self.context_stop)


def required_overlap(opts=None) -> int:
    """Context frames each side of a segment needs for ``opts`` (:class:`~vidinv.pipeline.edit.EditOptions`;
    None: the defaults, i.e. no latent smoothing and the default gate fade): tracker gap + landmark smoother +
    latent smoothing radius + gate fade + :data:`SEAM_CHECK` (see the module doc)."""
    n = TRACKER_SUPPORT + SMOOTHER_SUPPORT + SEAM_CHECK
    if opts is None:
        return n + _DEFAULT_FADE
    sigma = float(opts.latent_smoothing or 0.0)
    if sigma > 0:
        n += int(4.0 * sigma + 0.5)
    if opts.gate == "on":
        n += int(opts.gate_fade)
    return n


def plan_segments(src: Path, n_segments: int, overlap: int | None = None, *, start: float | None = None,
                  end: float | None = None, align: int = DETECT_BATCH) -> list[Segment]:
    """Cut the frames of ``src`` (those of the window ``[start, end)`` seconds, as ``vidinv edit --start
    --end``) into ``n_segments`` consecutive owned ranges of (nearly) equal length, each with its context.

    Args:
        src: the input video.
        n_segments: the number of segments (>= 1; more than the window's frames is refused).
        overlap: context frames on each side (default :func:`required_overlap` of the default options; a run
            with more latent smoothing or a longer gate fade needs ``required_overlap(opts)``, which
            :func:`run_segment` checks).
        start, end: the window in seconds (None: the whole video).
        align: the context start is moved back to a multiple of ``align`` frames from the window start (the
            front-end's detection batches; :func:`run_segment` aligns further to the encoder batch).

    Returns:
        The segments in order; owned ranges cover the window without gap or overlap; contexts are clamped to
        the window.

    Raises:
        SegmentError: ``n_segments`` < 1 or more than the window's frames, ``overlap`` < 0, an image input.
        FileNotFoundError, ValueError: ``src`` is not a readable video (:func:`vidinv.io.mux.frame_range`).
    """
    if is_image_path(src) or Path(src).is_dir():
        raise SegmentError(f"--segments splits a video; {src} is not one")
    n = int(n_segments)
    if n < 1:
        raise SegmentError(f"--segments must be >= 1, got {n_segments}")
    ov = required_overlap() if overlap is None else int(overlap)
    if ov < 0:
        raise SegmentError(f"the segment overlap must be >= 0 frames, got {overlap}")
    window = frame_range(src, start, end)
    total = len(window)
    if n > total:
        raise SegmentError(f"--segments {n}: the video{' window' if start is not None or end is not None else ''} "
                           f"has only {total} frame(s)")
    out = []
    for k in range(n):
        s = window.start + (k * total) // n
        e = window.start + ((k + 1) * total) // n
        c0 = max(window.start, s - ov)
        c0 = window.start + ((c0 - window.start) // max(1, int(align))) * max(1, int(align))
        c1 = min(window.stop, e + ov)
        out.append(Segment(k, s, e, c0, c1, ov, window.start, window.stop))
    return out


# ----------------------------------------------------------------------------------------------- part files
class _PartWriter:
    """The sink of one segment (:func:`vidinv.pipeline.edit.edit_input`'s ``sink``): the owned frames'
    output pictures, lossless (FFV1 ``bgr0`` in Matroska), encoded into ``raw`` (a temporary file next to the
    part); :meth:`finish` then stores them with their JSON record (the container tag :data:`PART_TAG`) as the
    part, atomically."""

    def __init__(self, part: Path, frames: range, rate: Fraction):
        self.part = Path(part)
        self.frames = frames
        self.pts: list[int | None] = []
        self.time_base: Fraction | None = None
        self.done = False
        self.raw = self.part.with_name(f".{self.part.name}.frames.mkv")
        self._rate = rate
        self._c: Any = None
        self._s: Any = None

    def __enter__(self) -> _PartWriter:
        return self

    def write(self, frame: Frame, image: np.ndarray) -> None:
        """Encode ``image`` (H, W, 3) uint8 RGB, the output picture of ``frame`` (the next owned index)."""
        expect = self.frames.start + len(self.pts)
        if frame.index != expect:
            raise SegmentError(f"segment part {self.part}: frame {frame.index} came where {expect} was due")
        img = np.ascontiguousarray(image, dtype=np.uint8)
        if self._c is None:
            self._c = av.open(str(self.raw), "w", format="matroska")
            s = self._c.add_stream("ffv1", rate=self._rate)
            s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "bgr0"
            self._s = s
        vf = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="bgr0")
        vf.pts = len(self.pts)
        vf.time_base = 1 / self._rate
        for p in self._s.encode(vf):
            self._c.mux(p)
        self.pts.append(frame.pts)
        self.time_base = frame.time_base

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        if len(self.pts) != len(self.frames):
            self.abort()
            raise SegmentError(f"segment part {self.part}: {len(self.pts)} of {len(self.frames)} frames written")
        for p in self._s.encode():
            self._c.mux(p)
        self._c.close()
        self._c = None
        self.done = True

    def abort(self) -> None:
        """Drop the frames written so far."""
        if self._c is not None:
            try:
                self._c.close()
            except Exception:  # the file is deleted anyway
                pass
            self._c = None
        discard(self.raw)
        self.done = True

    def finish(self, meta: dict) -> Path:
        """Write the part: the encoded frames remuxed (no re-encoding) with ``meta`` plus the frames' ``pts`` /
        ``time_base`` as the :data:`PART_TAG` JSON; the raw file is deleted."""
        meta = dict(meta, pts=self.pts, time_base=str(self.time_base) if self.time_base is not None else None)
        tmp = temp_path_for(self.part)
        try:
            with av.open(str(self.raw)) as ic, av.open(str(tmp), "w", format="matroska") as oc:
                iv = ic.streams.video[0]
                ov = oc.add_stream_from_template(iv)
                oc.metadata[PART_TAG] = json.dumps(json_safe(meta), allow_nan=False)
                for p in ic.demux(iv):
                    if p.size == 0:
                        continue
                    p.stream = ov
                    oc.mux(p)
        except BaseException:
            discard(tmp)
            raise
        finally:
            discard(self.raw)
        return commit(tmp, self.part)


def read_part(part: Path) -> dict:
    """The JSON record of a part file written by :func:`run_segment` (``segment``, ``start``, ``stop``,
    ``frames``, ``frames_edited``, ``faces_edited``, ``tracks``, ``gates``, ``seam``, ``pts``, ``time_base``).

    Raises:
        SegmentError: not a part file (no :data:`PART_TAG` tag, unreadable).
    """
    try:
        with av.open(str(part)) as c:
            text = c.metadata.get(PART_TAG)
    except (av.error.FFmpegError, OSError) as exc:
        raise SegmentError(f"segment part {part} cannot be read: {exc}") from None
    if not text:
        raise SegmentError(f"{part} is not a vidinv segment part (no {PART_TAG} tag)")
    return json.loads(text)


def _part_frames(part: Path):
    """The pictures of a part, (H, W, 3) uint8 RGB, in order."""
    with av.open(str(part)) as c:
        for vf in c.decode(video=0):
            yield vf.to_ndarray(format="rgb24")


# ----------------------------------------------------------------------------------------------- running
def _seam_frames(seg: Segment) -> set[int]:
    """The frame indices whose faces a segment records for the seam check (SEAM_CHECK each side of each
    interior cut)."""
    out: set[int] = set()
    for cut in (seg.start, seg.stop):
        if seg.window_start < cut < seg.window_stop:
            out.update(range(max(seg.context_start, cut - SEAM_CHECK), min(seg.context_stop, cut + SEAM_CHECK)))
    return out


def _face_record(f) -> list:
    return [int(f.track_id), [float(v) for v in np.asarray(f.quad, np.float64).ravel()],
            None if f.gate is None else float(f.gate)]


def run_segment(opts, segment: Segment, part: Path, job=None, *, plan=None,
                progress: Callable[[int, int | None], None] | None = None) -> Path:
    """Edit the frames of ``segment``: decode and process its context, write its owned frames' output
    pictures (after compositing, before any lossy encoding) to the lossless part file ``part``.

    Args:
        opts: the run's :class:`~vidinv.pipeline.edit.EditOptions` (``dst`` is not written here).
        segment: from :func:`plan_segments` for ``opts.src`` and the ``opts.start`` / ``opts.end`` window.
        part: the part file to write (Matroska, e.g. ``part-000.mkv``; written atomically).
        job: a :class:`~vidinv.pipeline.job.Job` loaded for these options (models reused), or None to load one.
        plan: the :func:`~vidinv.pipeline.edit.plan_edit` of ``opts`` when already made.
        progress: ``progress(owned frames done, owned frames)``.

    Returns:
        ``Path(part)``.

    Raises:
        ValueError: options that cannot be split (:func:`~vidinv.pipeline.edit.check_segmentable`).
        SegmentError: a segment of another window,
            an overlap below :func:`required_overlap` of ``opts``.
        Everything :func:`vidinv.pipeline.edit.run_edit` raises.
    """
    check_segmentable(opts)
    plan = plan or plan_edit(opts, quiet=True)
    window = frame_range(plan.src, opts.start, opts.end)
    if (segment.window_start, segment.window_stop) != (window.start, window.stop):
        raise SegmentError(f"segment {segment.index} was planned for frames [{segment.window_start}, "
                           f"{segment.window_stop}); these options' window is [{window.start}, {window.stop})")
    need = required_overlap(opts)
    if segment.overlap < need:
        raise SegmentError(f"segment {segment.index}: overlap {segment.overlap} frames < the {need} these options "
                           f"need (plan with overlap=required_overlap(opts))")
    job = job if job is not None else load_edit_job(opts, plan)
    align = math.lcm(DETECT_BATCH, max(1, int(opts.batch_size)))
    c0 = window.start + ((segment.context_start - window.start) // align) * align
    decode = range(c0, segment.context_stop)
    seam = _seam_frames(segment)
    faces: dict[str, list] = {}
    done = 0

    def on_frame(it) -> None:
        nonlocal done
        if it.frame.index in seam:
            faces[str(it.frame.index)] = [_face_record(f) for f in it.faces]
        if it.frame.index in segment.frames:
            done += 1
            if progress is not None:
                progress(done, len(segment.frames))

    # the part's nominal rate (its timestamps are not used)
    sink = _PartWriter(Path(part), segment.frames, probe(plan.src).fps or Fraction(25))
    try:
        res = edit_input(job, plan, plan.src, part, on_frame=on_frame, decode=decode, sink=sink)
        meta = dict(segment=segment.index, start=segment.start, stop=segment.stop, frames=res.frames,
                    frames_edited=res.frames_edited, faces_edited=res.faces_edited, tracks=res.tracks,
                    gate=res.gate, gates=res.gates, seam=faces, edit=res.edit, stage_s=res.stage_s,
                    step_s=res.step_s, wall_s=res.wall_s)
        return sink.finish(meta)
    finally:
        discard(sink.raw)


# ----------------------------------------------------------------------------------------------- joining
def _check_seams(segments: list[Segment], metas: list[dict]) -> dict[int, dict[int, int]]:
    """Compare the faces both neighbours computed around each seam; returns per segment the map of its track
    ids to the joined run's ids (segment 0's ids kept, a track continuing across a seam keeps its id).

    Raises:
        SegmentError: the two segments disagree at a seam.
    """
    maps: dict[int, dict[int, int]] = {0: {}}
    next_id = 0
    for t in metas[0]["tracks"]:
        maps[0][int(t)] = int(t)
    for m in metas:
        for v in m["seam"].values():
            for rec in v:
                next_id = max(next_id, int(rec[0]) + 1)
    next_id = max([next_id, *(int(t) + 1 for t in metas[0]["tracks"])])
    for k in range(1, len(segments)):
        a, b = metas[k - 1], metas[k]
        cut = segments[k].start
        idmap: dict[int, int] = {}
        for i in range(cut - SEAM_CHECK, cut + SEAM_CHECK):
            key = str(i)
            if key not in a["seam"] and key not in b["seam"]:
                continue
            fa, fb = a["seam"].get(key), b["seam"].get(key)
            if fa is None or fb is None:
                raise SegmentError(f"segments {k - 1} and {k} did not both process frame {i} (plan too short)")
            qa = sorted((r[1], r[2]) for r in fa)
            qb = sorted((r[1], r[2]) for r in fb)
            if qa != qb:
                raise SegmentError(
                    f"segments {k - 1} and {k} disagree at frame {i} ({len(fa)} vs {len(fb)} face(s), quads or gates "
                    "differ): the tracker followed other faces from the segment's start; run without --segments")
            by_quad = {tuple(r[1]): int(r[0]) for r in fa}
            for r in fb:
                idmap[int(r[0])] = maps[k - 1].get(by_quad[tuple(r[1])], by_quad[tuple(r[1])])
        for t in b["tracks"]:
            if int(t) not in idmap:
                idmap[int(t)] = next_id
                next_id += 1
        maps[k] = idmap
    return maps


def _source(opts) -> Path:
    """The input video of ``opts``: ``opts.src``, or the source an export names (``--from-inversion`` alone).

    Raises:
        SegmentError: neither is given.
    """
    if opts.src is not None:
        return Path(opts.src)
    if opts.from_inversion is not None:
        path = InversionReader(opts.from_inversion).source.get("path")
        if path:
            return Path(path)
    raise SegmentError("no input video given")


def join_segments(opts, segments: list[Segment], parts: list[Path]):
    """Write ``opts.dst`` from the segments' part files through the writer ``vidinv edit`` uses
    (:func:`vidinv.io.images.open_output_writer`: :class:`~vidinv.io.mux.EditedVideoWriter` with ``opts.codec``,
    ``crf``, ``pix_fmt``, the window and ``scale``; the input's timestamps, audio and metadata), after checking
    that the parts cover the window in order and agree at every seam. A run that edited no face anywhere
    (no window, scale 1) gives the input remuxed, as the single run (:func:`vidinv.io.mux.passthrough`).

    Args:
        opts: the run's :class:`~vidinv.pipeline.edit.EditOptions`.
        segments: :func:`plan_segments`'s list; parts: one part per segment, same order.

    Returns:
        :class:`~vidinv.pipeline.edit.EditResult` (counts summed, track ids of segment 0 continued across the
        seams, gates merged; ``stage_s`` / ``step_s`` summed over the segments).

    Raises:
        SegmentError: parts missing / of other segments / not covering the window, a seam disagreement.
        What :class:`~vidinv.io.mux.EditedVideoWriter` raises (e.g. a frame count or pts mismatch).
    """
    t0 = time.perf_counter()
    if len(segments) != len(parts) or not segments:
        raise SegmentError(f"{len(segments)} segments but {len(parts)} part files")
    metas = [read_part(p) for p in parts]
    for k, (seg, m) in enumerate(zip(segments, metas)):
        if seg.index != k or (m["segment"], m["start"], m["stop"]) != (seg.index, seg.start, seg.stop):
            raise SegmentError(f"part {parts[k]} holds segment {m['segment']} [{m['start']}, {m['stop']}); "
                               f"segment {k} [{seg.start}, {seg.stop}) was due")
    src = _source(opts)
    writer = open_output_writer(src, opts.dst, codec=opts.codec, crf=opts.crf, pix_fmt=opts.pix_fmt,
                                start=opts.start, end=opts.end, scale=opts.scale)
    if segments[0].start != writer.frames.start or segments[-1].stop != writer.frames.stop or any(
            a.stop != b.start for a, b in itertools.pairwise(segments)):
        writer.abort()
        raise SegmentError(f"the segments do not cover the frames [{writer.frames.start}, {writer.frames.stop}) of "
                           "the run's window without gap")
    try:
        maps = _check_seams(segments, metas)
    except BaseException:
        writer.abort()
        raise
    res = EditResult(Path(opts.dst), edit=metas[0].get("edit", ""), gate=metas[0].get("gate"))
    for k, m in enumerate(metas):
        res.frames += int(m["frames"])
        res.frames_edited += int(m["frames_edited"])
        res.faces_edited += int(m["faces_edited"])
        for name, v in m.get("stage_s", {}).items():
            res.stage_s[name] = res.stage_s.get(name, 0.0) + float(v)
        for name, v in m.get("step_s", {}).items():
            res.step_s[name] = res.step_s.get(name, 0.0) + float(v)
        for g in m.get("gates", []):
            res.gates.append(dict(g, faces=[dict(f, track_id=maps[k].get(int(f["track_id"]), f["track_id"]))
                                            for f in g["faces"]]))
    res.tracks = sorted({maps[k][int(t)] for k, m in enumerate(metas) for t in m["tracks"]})
    window = opts.start is not None or opts.end is not None
    if res.frames_edited == 0 and not window and opts.scale == 1:
        writer.abort()
        log.warning("no face found in %s: the output is the input, unchanged", src)
        passthrough(src, opts.dst)
        res.passthrough = True
        res.wall_s = time.perf_counter() - t0
        return res
    with writer:
        for part, m in zip(parts, metas):
            tb = Fraction(m["time_base"]) if m.get("time_base") else None
            n = 0
            for i, img in enumerate(_part_frames(part)):
                index = int(m["start"]) + i
                pts = m["pts"][i] if i < len(m["pts"]) else None
                writer.write(Frame(index, img, pts, tb, float(pts * tb) if pts is not None and tb else None), img)
                n += 1
            if n != int(m["stop"]) - int(m["start"]):
                raise SegmentError(f"part {part} holds {n} frames, segment [{m['start']}, {m['stop']}) has "
                                   f"{int(m['stop']) - int(m['start'])}")
    if res.frames_edited == 0 and window:
        log.warning("no face found in the window [%s, %s) s of %s: frames written unchanged", opts.start, opts.end,
                    src)
    res.wall_s = time.perf_counter() - t0
    return res


def run_segmented(opts, n_segments: int, *, plan=None, workdir: str | os.PathLike | None = None,
                  progress: Callable[[int, int | None], None] | None = None):
    """``vidinv edit IN OUT --segments N``: plan ``n_segments`` segments (overlap :func:`required_overlap` of
    ``opts``), run them one after another in this process with the models loaded once, join them
    (:func:`join_segments`). The parts live in a temporary folder next to ``opts.dst`` (or in ``workdir``)
    and are deleted afterwards.

    Returns:
        :class:`~vidinv.pipeline.edit.EditResult` of :func:`join_segments` (``wall_s``: the whole run).

    Raises:
        SegmentError and everything :func:`run_segment` / :func:`join_segments` raise.
    """
    t0 = time.perf_counter()
    check_segmentable(opts)
    plan = plan or plan_edit(opts, quiet=True)
    segments = plan_segments(plan.src, n_segments, required_overlap(opts), start=opts.start, end=opts.end)
    job = load_edit_job(opts, plan)
    total = segments[-1].stop - segments[0].start
    folder = Path(tempfile.mkdtemp(prefix=".vidinv-segments-", dir=workdir or Path(opts.dst).resolve().parent))
    try:
        parts = []
        base = 0
        for seg in segments:
            def step(done, _n, base=base):
                if progress is not None:
                    progress(base + done, total)
            parts.append(run_segment(opts, seg, folder / f"part-{seg.index:04d}.mkv", job, plan=plan, progress=step))
            base += len(seg.frames)
        res = join_segments(opts, segments, parts)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    res.wall_s = time.perf_counter() - t0
    return res
