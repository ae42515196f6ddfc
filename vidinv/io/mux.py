"""Output side of the edit pipeline: write the edited video with the input's timing, audio and metadata.

:class:`EditedVideoWriter` re-encodes the (edited) pictures of one input video and copies everything
else from the input, so that ``out.mp4`` has the same frame count, the same presentation timestamps
(variable frame rate included), the same audio (AAC packets copied byte for byte, never re-encoded),
the same display rotation, colour tags and container/stream metadata as the input.

:func:`passthrough` is the fast path when nothing is edited: the output is the input, copied or
remuxed without re-encoding.

Atomic output
-------------
Both write to a temporary file in the destination folder, named ``.<stem>.<random>.part<suffix>``
(the suffix keeps the muxer choice of the destination, e.g. ``.out.3fa9c1d2.part.mp4``), and move it
to the destination by an atomic rename only once the file is complete and flushed to disk
(:func:`vidinv.io.outputs.commit`; the same helpers as every other vidinv output). Hence:

* on a Python exception, including :class:`KeyboardInterrupt` (Ctrl-C / SIGINT), the temporary file
  is closed and deleted; the destination is never created half-written and an existing destination
  is left untouched;
* SIGKILL (or a power cut) cannot be caught: it leaves the ``.part`` file behind, never a file at the
  destination;
* SIGTERM kills Python without running ``finally``/``__exit__`` unless a handler is installed. The
  CLI layer (not this library module) should install one that raises (e.g. ``signal.signal(SIGTERM,
  lambda *a: sys.exit(143))``) so that the writer's cleanup runs as for SIGINT.

Timestamps
----------
The video encoder's time base is the input video stream's time base and every picture is encoded
with the ``pts`` of the input frame it replaces, so the frame timing survives exactly (the MP4 muxer
may store them in a finer track time scale; the times in seconds are equal). With ``start``/``end``
the output is cut to the frames whose time (seconds, :attr:`vidinv.io.video.Frame.time`) lies in
``[start, end)`` and all timestamps are shifted so that the first kept frame is at time 0; the audio
packets overlapping that interval are kept, so the audio is cut on packet boundaries (1024 samples,
~21-23 ms for AAC): a packet that begins before the first frame gets a negative timestamp, which the
MP4 muxer stores as an edit list, the way encoder priming is stored. When the cut begins at the
first frame, all audio before it (priming packets) is kept as in the input.
"""
from __future__ import annotations

import logging
import os
import shutil
import struct
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

from vidinv.io.outputs import atomic_path, commit, discard, temp_path_for
from vidinv.io.video import ACCURATE_RGB, Frame, frame_rate, normalise_rotation, open_video

log = logging.getLogger(__name__)

__all__ = ["EditedVideoWriter", "MissingFrameError", "frame_range", "passthrough", "temp_path_for",
           "video_frame_times"]

# Pixel formats libx264 encodes; an input in one of these keeps it (others become yuv420p).
_X264_PIX_FMTS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv16",
                  "nv21", "yuv420p10le", "yuv422p10le", "yuv444p10le", "gray", "gray10le"}
# Muxer-generated container tags that must not be copied from the input.
_GENERATED_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder"}
# FFmpeg AVColorSpace values -> swscale matrix (Colorspace enum values of PyAV's reformatter).
_SWS_COLORSPACE = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


class MissingFrameError(RuntimeError):
    """Frames were skipped or written out of order, or fewer frames than the input has were written."""


def video_frame_times(path: str | os.PathLike) -> tuple[list[int], Fraction]:
    """Presentation timestamps of all frames of the first video stream, without decoding.

    Reads the packets (demux only): the sorted ``pts`` of the packets that are not marked discard are the
    frames' timestamps in presentation order, i.e. frame ``i`` of :class:`vidinv.io.video.VideoReader` has
    ``pts == result[i]``.

    Returns:
        ``(pts_list, time_base)``: ints in units of ``time_base`` (seconds per tick).

    Raises:
        FileNotFoundError, ValueError: as :func:`vidinv.io.video.probe`; ValueError also when packets carry
            no pts.
    """
    with open_video(path) as c:
        if not c.streams.video:
            raise ValueError(f"{path} has no video stream")
        v = c.streams.video[0]
        pts = []
        for p in c.demux(v):
            if p.size == 0 or p.is_discard:
                continue
            if p.pts is None:
                raise ValueError(f"{path}: video packets without pts")
            pts.append(int(p.pts))
        return sorted(pts), Fraction(v.time_base)


def frame_range(path: str | os.PathLike, start: float | None = None, end: float | None = None) -> range:
    """Indices of the frames whose time (seconds) lies in ``[start, end)``.

    ``None`` means the beginning/end of the video. Use it to read exactly the frames that
    :class:`EditedVideoWriter` expects: ``r = frame_range(p, s, e); VideoReader(p, start=r.start, stop=r.stop)``.
    """
    pts, tb = video_frame_times(path)
    return _frame_range(pts, tb, start, end)


def _frame_range(pts: list[int], tb: Fraction, start: float | None, end: float | None) -> range:
    times = [p * tb for p in pts]
    # seconds as the user wrote them: Fraction("0.4") == 2/5, whereas Fraction(0.4) is the binary float just
    # above 2/5, which would wrongly keep a frame stamped exactly 0.4 s in [.., 0.4)
    i0 = 0 if start is None else sum(1 for t in times if t < Fraction(repr(float(start))))
    i1 = len(times) if end is None else sum(1 for t in times if t < Fraction(repr(float(end))))
    return range(i0, max(i0, i1))


def _display_matrix(path: Path) -> tuple[list[int] | None, int]:
    """The display matrix (9 ints, FFmpeg ``AV_FRAME_DATA_DISPLAYMATRIX`` layout) of the first decoded frame
    of ``path``'s video and the rotation :class:`vidinv.io.video.VideoReader` applies (degrees, multiple of
    90); ``(None, 0)`` when there is none."""
    with open_video(path) as c:
        for frame in c.decode(c.streams.video[0]):
            rotation = normalise_rotation(getattr(frame, "rotation", 0))
            for sd in frame.side_data:
                if sd.type == SideDataType.DISPLAYMATRIX:
                    return list(struct.unpack("=9i", bytes(sd)[:36])), rotation
            return None, rotation
    return None, 0


def _copy_metadata(src: dict, dst: dict, skip=()) -> None:
    for k, v in src.items():
        if k not in skip:
            dst[k] = v


class EditedVideoWriter:
    """Encode the edited frames of ``src_path`` into ``dst_path``, copying the input's audio and metadata.

    Usage (as a context manager; the file appears at ``dst_path`` only after a normal exit)::

        with EditedVideoWriter("in.mp4", "out.mp4") as w:
            for frame in VideoReader("in.mp4", start=w.frames.start, stop=w.frames.stop):
                w.write(frame, edit(frame.image))

    Args:
        src_path: the input video the frames come from (its audio/subtitle streams are copied packet for
            packet, its container and stream metadata, colour tags and display matrix are kept).
        dst_path: the output file; the container format follows its extension. Must not be ``src_path``.
        codec: video encoder (default ``libx264``).
        crf: constant rate factor of x264/x265 (18 ≈ visually lossless).
        pix_fmt: encoded pixel format; default: the input's when libx264 supports it, else ``yuv420p``
            (``yuv444p`` when the picture size is odd, which 4:2:0 cannot store).
        preset: encoder preset (speed/size trade-off).
        start, end: seconds on the input's timeline (:attr:`Frame.time`): only frames with
            ``start <= time < end`` are written (``None``: from the beginning / to the end), and the
            output is shifted to start at 0. :attr:`frames` gives the matching frame indices.
        images_upright: ``True`` (default) when the images passed to :meth:`write` are upright, as
            :class:`vidinv.io.video.VideoReader` yields them by default; they are turned back to the coded
            orientation and the input's display matrix is stored again, so players show the output
            exactly as the input. ``False``: images are in coded orientation (``apply_rotation=False``).
        options: extra encoder options (strings), e.g. ``{"tune": "film"}``.
        scale: integer factor >= 1 of the output picture size over the input's (``vidinv restore --scale``):
            :meth:`write` then takes images ``scale`` times as high and wide; the sample aspect ratio,
            timestamps, audio and metadata are the input's.

    Attributes:
        frames: ``range`` of the input frame indices :meth:`write` must receive, in order.
        temp_path: the temporary file being written.
        frames_written, audio_packets_written: counters.

    Raises:
        FileNotFoundError / ValueError: unreadable input (as :func:`vidinv.io.video.probe`), ``dst == src``,
            or an empty ``[start, end)``.
        MissingFrameError: from :meth:`write` when a frame is skipped or out of order, from :meth:`close`
            when fewer frames than :attr:`frames` were written (the output is then not created).
    """

    def __init__(self, src_path: str | os.PathLike, dst_path: str | os.PathLike, *, codec: str = "libx264",
                 crf: int | None = 18, pix_fmt: str | None = None, preset: str | None = "medium",
                 start: float | None = None, end: float | None = None, images_upright: bool = True,
                 options: dict[str, str] | None = None, scale: int = 1):
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be an integer >= 1, got {scale}")
        self.scale = int(scale)
        self.src_path, self.dst_path = Path(src_path), Path(dst_path)
        if self.dst_path.exists() and self.dst_path.resolve() == self.src_path.resolve():
            raise ValueError(f"the output {self.dst_path} is the input; write to another file")
        self.images_upright = images_upright
        self.frames_written = 0
        self.audio_packets_written = 0
        self._input: av.container.InputContainer | None = None
        self._output: av.container.OutputContainer | None = None
        self.temp_path: Path | None = None
        self._done = False

        pts_list, self._tb = video_frame_times(self.src_path)
        self.frames = _frame_range(pts_list, self._tb, start, end)
        if len(self.frames) == 0:
            raise ValueError(f"{self.src_path} has no frame in [{start}, {end}) s")
        self._expected_pts = pts_list[self.frames.start:self.frames.stop]
        # Output timeline: shifted so that the first kept frame is at 0 when cutting at ``start``.
        self._offset_pts = self._expected_pts[0] if start is not None else 0
        self._offset = self._offset_pts * self._tb  # seconds (Fraction)
        self._t_end = Fraction(end) if end is not None else None
        self._cut = start is not None or end is not None

        try:
            self._open(codec, crf, pix_fmt, preset, options)
        except BaseException:
            self.abort()
            raise

    # -- setup ------------------------------------------------------------------------------------
    def _open(self, codec, crf, pix_fmt, preset, options) -> None:
        matrix, self.rotation = _display_matrix(self.src_path)
        self._input = open_video(self.src_path)
        iv = self._input.streams.video[0]
        icc = iv.codec_context
        self.coded_size = (int(iv.width) * self.scale, int(iv.height) * self.scale)
        odd = self.coded_size[0] % 2 or self.coded_size[1] % 2
        if pix_fmt is None:
            pix_fmt = icc.pix_fmt if icc.pix_fmt in _X264_PIX_FMTS else "yuv420p"
            if odd and pix_fmt not in ("yuv444p", "yuvj444p", "gray", "gray10le"):
                pix_fmt = "yuv444p"
        self.pix_fmt = pix_fmt

        self.dst_path.parent.mkdir(parents=True, exist_ok=True)
        self.temp_path = temp_path_for(self.dst_path)
        self._output = av.open(str(self.temp_path), mode="w")
        _copy_metadata(self._input.metadata, self._output.metadata, _GENERATED_TAGS)

        rate = frame_rate(iv)
        ov = self._output.add_stream(codec, rate=rate) if rate else self._output.add_stream(codec)
        ov.width, ov.height = self.coded_size
        ov.pix_fmt = pix_fmt
        ov.time_base = self._tb
        ov.codec_context.time_base = self._tb
        if iv.sample_aspect_ratio:
            ov.codec_context.sample_aspect_ratio = iv.sample_aspect_ratio
        # colour tags (values are FFmpeg's AVColor* enums; 2 = unspecified)
        self._color_range = int(icc.color_range or 0)
        for name in ("color_range", "colorspace", "color_primaries", "color_trc"):
            val = getattr(icc, name, None)
            if val is not None:
                try:
                    setattr(ov.codec_context, name, int(val))
                except (AttributeError, TypeError, ValueError) as e:  # pragma: no cover - PyAV version
                    log.warning("cannot set %s=%s on the encoder: %s", name, val, e)
        self._sws_colorspace = _SWS_COLORSPACE.get(int(icc.colorspace or 2))
        opts = {}
        if crf is not None:
            opts["crf"] = str(crf)
        if preset is not None:
            opts["preset"] = preset
        opts.update(options or {})
        ov.options = opts
        if matrix is not None:
            ov.set_display_matrix(matrix)
        _copy_metadata(iv.metadata, ov.metadata)
        ov.disposition = iv.disposition
        self._ov = ov

        # streams copied packet for packet: audio and subtitles the output format can hold
        self._copy_map = {}
        supported = self._output.supported_codecs
        for s in self._input.streams:
            if s.type not in ("audio", "subtitle"):
                continue
            codec_name = s.codec_context.name if s.codec_context is not None else None
            if codec_name not in supported:
                log.warning("%s: %s stream #%d (%s) cannot be stored in %s; dropped", self.src_path, s.type,
                            s.index, codec_name, self.dst_path.suffix)
                continue
            o = self._output.add_stream_from_template(s)
            _copy_metadata(s.metadata, o.metadata)
            o.disposition = s.disposition
            self._copy_map[s.index] = o
        self._copy_iter = None
        self._pending = None
        if self._copy_map:
            streams = [self._input.streams[i] for i in self._copy_map]
            self._copy_iter = self._input.demux(streams)

    # -- copied streams ---------------------------------------------------------------------------
    def _next_copy_packet(self):
        """Next packet of a copied stream to mux (timestamps shifted), or ``None`` at the end."""
        while self._copy_iter is not None:
            p = next(self._copy_iter, None)
            if p is None:
                self._copy_iter = None
                return None
            ts = p.pts if p.pts is not None else p.dts
            if p.size == 0 or ts is None:
                continue  # demuxer flush packet
            tb = p.time_base
            t = ts * tb
            if self._cut:
                # Cut on packet boundaries: keep the packets that overlap [first frame, end). At the very
                # beginning of the input nothing is cut (encoder priming packets are kept as they are).
                t_stop = t + (p.duration or 0) * tb
                if self.frames.start > 0 and t_stop <= self._offset:
                    continue
                if self._t_end is not None and t >= self._t_end:
                    continue
            if self._offset_pts:
                shift = int(round(self._offset / tb))
                if p.pts is not None:
                    p.pts -= shift
                if p.dts is not None:
                    p.dts -= shift
            return p
        return None

    def _mux_copies_until(self, t: Fraction | None) -> None:
        """Mux copied packets whose (shifted) time is ``<= t`` seconds (all when ``t`` is None)."""
        while True:
            if self._pending is None:
                self._pending = self._next_copy_packet()
                if self._pending is None:
                    return
            p = self._pending
            pt = (p.pts if p.pts is not None else p.dts) * p.time_base
            if t is not None and pt > t:
                return
            p.stream = self._copy_map[p.stream_index]
            self._output.mux(p)
            self.audio_packets_written += 1
            self._pending = None

    # -- writing ----------------------------------------------------------------------------------
    def write(self, frame: Frame, image: np.ndarray) -> None:
        """Encode ``image`` in place of the input frame ``frame``, with ``frame``'s timestamp.

        Args:
            frame: the :class:`vidinv.io.video.Frame` read from ``src_path`` (its ``index`` and ``pts`` are used;
                its image is not).
            image: ``(H, W, 3)`` ``uint8`` RGB 0..255, upright (display size) unless ``images_upright=False``.

        Raises:
            MissingFrameError: ``frame.index`` is not the next expected index (a frame was skipped, repeated
                or is out of order) or its ``pts`` differs from the input's.
            ValueError: wrong image shape/dtype.
            RuntimeError: the writer is closed.
        """
        if self._output is None or self._done:
            raise RuntimeError(f"EditedVideoWriter({self.dst_path}) is closed")
        i = self.frames_written
        expect_index = self.frames.start + i
        if i >= len(self.frames) or frame.index != expect_index:
            raise MissingFrameError(
                f"frame {frame.index} written where frame {expect_index if i < len(self.frames) else '(none)'} "
                f"was expected ({self.src_path} frames {self.frames.start}..{self.frames.stop - 1}); frames "
                f"must be written once each, in order")
        pts = self._expected_pts[i]
        if frame.pts is not None and frame.time_base is not None and frame.pts * frame.time_base != pts * self._tb:
            raise MissingFrameError(f"frame {frame.index} has pts {frame.pts} ({frame.time_base}); the input's "
                                    f"frame {expect_index} has pts {pts} ({self._tb})")
        image = np.asarray(image)
        w, h = self.coded_size
        if self.images_upright and self.rotation:
            k = (self.rotation // 90) % 4
            if k % 2:
                w, h = h, w
            exp_shape = (h, w, 3)
        else:
            k = 0
            exp_shape = (h, w, 3)
        if image.dtype != np.uint8 or image.shape != exp_shape:
            raise ValueError(f"EditedVideoWriter({self.dst_path}) expects {exp_shape} uint8 RGB images"
                             f"{' (upright)' if k else ''}, got {image.shape} {image.dtype}")
        if k:
            image = np.rot90(image, k=-k)  # undo vidinv.io.video.upright
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        full = self._color_range == 2 or self.pix_fmt.startswith("yuvj")
        vf = vf.reformat(format=self.pix_fmt, dst_colorspace=self._sws_colorspace,
                         dst_color_range=2 if full else 1, interpolation=ACCURATE_RGB)
        vf.pts = pts - self._offset_pts
        vf.time_base = self._tb
        for packet in self._ov.encode(vf):
            self._output.mux(packet)
        self.frames_written += 1
        self._mux_copies_until((pts - self._offset_pts) * self._tb)

    # -- finishing --------------------------------------------------------------------------------
    def close(self) -> None:
        """Finish: check all frames were written, flush the encoder, copy the remaining audio, close and
        move the temporary file to ``dst_path`` (:func:`vidinv.io.outputs.commit`). Idempotent.

        Raises:
            MissingFrameError: fewer frames than :attr:`frames` were written; the temporary file is deleted
                and ``dst_path`` is not created/changed.
        """
        if self._done:
            return
        try:
            # _open sets all three (temp_path first); abort clears the two containers
            if self._output is None or self._input is None or self.temp_path is None:
                raise RuntimeError("EditedVideoWriter was aborted")
            if self.frames_written != len(self.frames):
                raise MissingFrameError(
                    f"{self.frames_written} frames written to {self.dst_path}, the input has {len(self.frames)} "
                    f"(frames {self.frames.start + self.frames_written}..{self.frames.stop - 1} missing)")
            for packet in self._ov.encode():
                self._output.mux(packet)
            self._mux_copies_until(None)
            self._output.close()
            self._output = None
            self._input.close()
            self._input = None
            commit(self.temp_path, self.dst_path)
            self._done = True
        except BaseException:
            self.abort()
            raise

    @property
    def done(self) -> bool:
        """True once the writer closed (the output is in place) or was aborted (no output)."""
        return self._done

    def abort(self) -> None:
        """Stop without producing the output: close everything and delete the temporary file."""
        self._done = True
        for attr in ("_output", "_input"):
            c = getattr(self, attr, None)
            if c is not None:
                try:
                    c.close()
                except Exception as e:  # closing a half-written file may fail; it is deleted
                    log.debug("closing %s failed: %s", attr, e)
                setattr(self, attr, None)
        discard(self.temp_path)

    def __enter__(self) -> EditedVideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def passthrough(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write ``src`` unchanged to ``dst`` (no re-encoding), atomically.

    Same extension: the bytes are copied. Another extension: every stream the output format can hold
    is remuxed packet for packet (timestamps, metadata and dispositions kept; streams it cannot hold are
    dropped with a warning). Either way the file is written to a temporary name in ``dst``'s folder and
    moved over it (:func:`vidinv.io.outputs.atomic_path`); on any error it is deleted and ``dst`` is left as it was.

    Returns:
        ``Path(dst)``.

    Raises:
        FileNotFoundError: ``src`` does not exist. ValueError: ``dst`` is ``src``.
    """
    src, dst = Path(src), Path(dst)
    if not src.exists():
        raise FileNotFoundError(f"video file {src} does not exist")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError(f"the output {dst} is the input; write to another file")
    with atomic_path(dst) as tmp:
        if src.suffix.lower() == dst.suffix.lower():
            shutil.copyfile(src, tmp)
        else:
            _remux(src, tmp)
    return dst


def _remux(src: Path, tmp: Path) -> None:
    with open_video(src) as ic, av.open(str(tmp), mode="w") as oc:
        _copy_metadata(ic.metadata, oc.metadata, _GENERATED_TAGS)
        supported = oc.supported_codecs
        out = {}
        for s in ic.streams:
            name = s.codec_context.name if s.codec_context is not None else None
            if s.type not in ("video", "audio", "subtitle") or name not in supported:
                log.warning("%s: %s stream #%d (%s) cannot be stored in %s; dropped", src, s.type, s.index, name,
                            tmp.suffix)
                continue
            o = oc.add_stream_from_template(s)
            _copy_metadata(s.metadata, o.metadata)
            o.disposition = s.disposition
            out[s.index] = o
        for p in ic.demux([ic.streams[i] for i in out]):
            if p.size == 0 or (p.dts is None and p.pts is None):
                continue
            p.stream = out[p.stream_index]
            oc.mux(p)
