"""Video decoding and encoding through PyAV (FFmpeg).

Decoding yields one :class:`Frame` per decoded picture: an RGB ``uint8`` array of shape ``(H, W, 3)``
(row-major, ``image[y, x]``, values 0..255) plus its index in decode/presentation order, its
presentation timestamp ``pts`` in units of ``time_base`` and the time in seconds. Frames carrying a
display matrix (phone videos) are turned upright by default, as players and ``ffmpeg`` do
(autorotate), so faces are upright for the detector.

:class:`VideoWriter` is a small H.264 writer (libx264, ``yuv420p``) used for previews; the edit
pipeline's writer (:mod:`vidinv.io.mux`: audio copy, decode thread) builds on the same public pieces:
:func:`open_video`, :func:`frame_rate`, :func:`normalise_rotation` and ``ACCURATE_RGB``.

All iteration is lazy: nothing holds more than the frame being decoded, so memory does not grow with
the video's length.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Interpolation

from vidinv.io.outputs import commit, discard, temp_path_for

log = logging.getLogger(__name__)

__all__ = ["ACCURATE_RGB", "Frame", "VideoInfo", "VideoReader", "VideoWriter", "frame_rate", "normalise_rotation",
           "open_video", "probe", "read_frames", "upright"]


@dataclass
class Frame:
    """One decoded video frame.

    Attributes:
        index: 0-based position of the frame in presentation order.
        image: ``(H, W, 3)`` ``uint8`` RGB, 0..255, already turned upright when the reader applies the
            rotation (then ``H, W`` are the display height/width).
        pts: presentation timestamp in ``time_base`` units (``None`` when the container gives none).
        time_base: the stream's time base (seconds per ``pts`` tick), a :class:`~fractions.Fraction`.
        time: presentation time in seconds (``pts * time_base``; ``index / fps`` when ``pts`` is missing).
    """

    index: int
    image: np.ndarray
    pts: int | None
    time_base: Fraction | None
    time: float | None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass
class VideoInfo:
    """What :func:`probe` learns about a video file.

    Attributes:
        path: the file.
        width, height: coded picture size in pixels (before rotation).
        rotation: degrees (multiple of 90) by which the picture must be turned counter-clockwise to be
            shown upright, from the stream's display matrix (FFmpeg ``av_display_rotation_get``); 0 when none.
        fps: average frame rate (frames per second) as a Fraction (the stream's ``average_rate``, falling
            back to ``guessed_rate``/``base_rate``); ``None`` if the container gives none.
        time_base: the video stream's time base (seconds per ``pts`` tick).
        num_frames: frame count from the container index (exact for MP4/MOV); ``None`` if unknown.
        duration: video stream duration in seconds, or ``None``.
        codec: video codec name (e.g. ``"h264"``); pix_fmt: decoder pixel format (e.g. ``"yuv420p"``).
        has_audio: whether the container has at least one audio stream.
        audio_codec, audio_rate, audio_channels: of the first audio stream (``None`` without audio).
    """

    path: Path
    width: int
    height: int
    rotation: int
    fps: Fraction | None
    time_base: Fraction | None
    num_frames: int | None
    duration: float | None
    codec: str
    pix_fmt: str | None
    has_audio: bool
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None

    @property
    def display_size(self) -> tuple[int, int]:
        """``(width, height)`` of upright frames (swapped for ±90° rotations)."""
        if self.rotation % 180:
            return self.height, self.width
        return self.width, self.height

    @property
    def estimated_frames(self) -> int | None:
        """``num_frames`` when known, else ``round(duration * fps)`` (an estimate), else ``None``."""
        if self.num_frames:
            return self.num_frames
        if self.duration and self.fps:
            return int(round(self.duration * float(self.fps)))
        return None


def open_video(path: str | os.PathLike) -> av.container.InputContainer:
    """Open a video file for reading with PyAV (demuxing and decoding are up to the caller).

    Returns:
        The open input container; close it (or use it as a context manager).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: FFmpeg cannot open it (not a media file, or damaged).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"video file {p} does not exist")
    try:
        return av.open(str(p), mode="r")
    except av.error.FFmpegError as e:  # pragma: no cover - depends on the broken file
        raise ValueError(f"cannot open {p} as a video: {e}") from e


def frame_rate(stream) -> Fraction | None:
    """A PyAV video stream's frame rate in frames per second: its ``average_rate``, else ``guessed_rate``,
    else ``base_rate`` (as :attr:`VideoInfo.fps`); ``None`` when the container gives none."""
    for name in ("average_rate", "guessed_rate", "base_rate"):
        r = getattr(stream, name, None)
        if r:
            return Fraction(r)
    return None


def normalise_rotation(deg: float | int | None) -> int:
    """Round a display-matrix angle (degrees, counter-clockwise, as PyAV's ``frame.rotation``; ``None``
    or 0 for none) to a multiple of 90 in [0, 360), the convention of :attr:`VideoInfo.rotation`."""
    if not deg:
        return 0
    return int(round(float(deg) / 90.0)) * 90 % 360


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a decoded picture upright.

    Args:
        image: ``(H, W, C)`` array as decoded.
        rotation: counter-clockwise display rotation in degrees (multiple of 90), as in
            :attr:`VideoInfo.rotation`.

    Returns:
        The picture rotated counter-clockwise by ``rotation`` degrees (``np.rot90``), contiguous; the
        input itself when ``rotation`` is 0. This matches FFmpeg's autorotate (a display matrix of -90°,
        i.e. a ``rotate=90`` tag, is shown turned 90° clockwise).
    """
    k = (rotation // 90) % 4
    if k == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=k))


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read stream information (size, rate, frame count, rotation, audio) of a video file.

    The rotation is read from the first decoded frame's display matrix (PyAV exposes it per frame), so
    this decodes one frame.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file has no video stream or cannot be opened.
    """
    with open_video(path) as c:
        if not c.streams.video:
            raise ValueError(f"{path} has no video stream")
        v = c.streams.video[0]
        rotation = 0
        try:
            for frame in c.decode(v):
                rotation = normalise_rotation(getattr(frame, "rotation", 0))
                break
        except av.error.FFmpegError as e:  # pragma: no cover
            log.warning("could not decode a first frame of %s: %s", path, e)
        tb = Fraction(v.time_base) if v.time_base else None
        duration = None
        if v.duration is not None and tb is not None:
            duration = float(v.duration * tb)
        elif c.duration is not None:
            duration = c.duration / 1_000_000.0
        a = c.streams.audio[0] if c.streams.audio else None
        return VideoInfo(
            path=Path(path), width=int(v.width), height=int(v.height), rotation=rotation, fps=frame_rate(v),
            time_base=tb, num_frames=int(v.frames) if v.frames else None, duration=duration,
            codec=v.codec_context.name, pix_fmt=v.codec_context.pix_fmt, has_audio=a is not None,
            audio_codec=a.codec_context.name if a is not None else None,
            audio_rate=int(a.rate) if a is not None and a.rate else None,
            audio_channels=int(a.channels) if a is not None and getattr(a, "channels", None) else None,
        )


#: swscale flags for an unbiased YUV -> RGB conversion (see ``VideoReader(accurate_color=...)``).
ACCURATE_RGB = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


class VideoReader:
    """Iterate over the frames of a video as RGB ``uint8`` arrays.

    Usage::

        with VideoReader("in.mp4") as r:
            print(r.info.fps, r.info.num_frames)
            for frame in r:          # vidinv.io.video.Frame
                frame.index, frame.image, frame.time

    Args:
        path: the video file.
        apply_rotation: turn frames upright using the display matrix (default ``True``).
        start, stop: only yield frames with ``start <= index < stop`` (``stop=None``: to the end). Frames
            before ``start`` are still decoded (no seeking), so indices are exact.
        threads: let FFmpeg decode with frame/slice threads (``thread_type="AUTO"``).
        accurate_color: convert YUV to RGB with swscale's accurate rounding and full chroma interpolation.
            FFmpeg's default fast conversion (``False``, the default: the plain PyAV
            ``to_ndarray(format="rgb24")`` the reference pipelines and the parity fixtures used, and what
            face detection and tracking were tuned on) darkens every pixel by about 1.2 levels on average.
            That is harmless for analysis, but a decode/encode round trip of untouched pixels would drift,
            so the edit pipeline decodes with ``True``: its round trip through
            :class:`vidinv.io.mux.EditedVideoWriter` is unbiased (mean error < 0.03 levels).

    Iteration can be done once per reader; frame indices count decoded pictures from 0. The container
    is closed when iteration ends, on :meth:`close` or when leaving the ``with`` block.
    """

    def __init__(self, path: str | os.PathLike, *, apply_rotation: bool = True, start: int = 0,
                 stop: int | None = None, threads: bool = True, accurate_color: bool = False):
        self.path = Path(path)
        self.accurate_color = accurate_color
        self.info = probe(self.path)
        self.apply_rotation = apply_rotation
        self.start = int(start)
        self.stop = stop
        self.threads = threads
        self._container: av.container.InputContainer | None = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __len__(self) -> int:
        n = self.info.estimated_frames
        if n is None:
            raise TypeError(f"the frame count of {self.path} is unknown")
        stop = n if self.stop is None else min(self.stop, n)
        return max(0, stop - self.start)

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(width, height)`` of the yielded frames."""
        return self.info.display_size if self.apply_rotation else (self.info.width, self.info.height)

    def __iter__(self) -> Iterator[Frame]:
        if self._container is not None:
            raise RuntimeError("a VideoReader can be iterated only once at a time")
        self._container = open_video(self.path)
        try:
            v = self._container.streams.video[0]
            if self.threads:
                v.thread_type = "AUTO"
            tb = Fraction(v.time_base) if v.time_base else None
            fps = self.info.fps
            for index, av_frame in enumerate(self._container.decode(v)):
                if self.stop is not None and index >= self.stop:
                    break
                if index < self.start:
                    continue
                if self.accurate_color:
                    image = av_frame.to_ndarray(format="rgb24", interpolation=ACCURATE_RGB)
                else:
                    image = av_frame.to_ndarray(format="rgb24")
                if self.apply_rotation:
                    image = upright(image, normalise_rotation(getattr(av_frame, "rotation", 0)))
                pts = av_frame.pts
                if pts is not None and tb is not None:
                    t = float(pts * tb)
                elif fps:
                    t = index / float(fps)
                else:
                    t = None
                yield Frame(index=index, image=image, pts=pts, time_base=tb, time=t)
        finally:
            self.close()


def read_frames(path: str | os.PathLike, **kwargs) -> Iterator[Frame]:
    """Generator over the :class:`Frame` s of ``path``; keyword arguments as :class:`VideoReader`."""
    yield from VideoReader(path, **kwargs)


class VideoWriter:
    """Write RGB ``uint8`` frames to an H.264 (libx264, ``yuv420p``) file, e.g. a preview.

    Args:
        path: output file (container chosen from the extension, e.g. ``.mp4``).
        width, height: frame size in pixels. ``yuv420p`` needs even sizes: odd sizes are rounded up and
            frames are padded by repeating their last column/row (``size`` gives the encoded size).
        fps: frame rate (int, float or Fraction); it is also the time base of the written ``pts``.
        crf: x264 constant rate factor (0 = lossless luma/chroma after 4:2:0 subsampling; 18 ≈ visually
            lossless; 23 = x264 default).
        preset: x264 preset (speed/size trade-off).
        rotation: counter-clockwise display rotation in degrees to store in the stream's display
            matrix (0: none). Frames are written as given.
        options: extra codec options passed to libx264.
        time_base: the stream's time base (seconds per ``pts`` tick) when frames are written with their own
            timestamps (``write(image, pts=...)``, e.g. a face track's frames with the source video's
            timestamps); default ``1 / fps``.

    ``write(image)`` encodes one frame with ``pts`` = number of frames written so far (or the ``pts`` given,
    in ``time_base`` ticks, strictly increasing); ``close()`` flushes the encoder. Use as a context manager.

    The file is written atomically (:mod:`vidinv.io.outputs`): frames go to a temporary file beside
    ``path`` (``.<stem>.<hex>.part<suffix>``, attribute ``temp_path``), which :meth:`close` moves to
    ``path``; leaving the ``with`` block on an exception (``KeyboardInterrupt`` included) calls
    :meth:`abort` instead, which deletes it, so ``path`` never holds a partial video and an existing
    ``path`` is kept.

    Raises:
        ValueError: a frame with another shape or dtype than ``(height, width, 3)`` ``uint8``.
        RuntimeError: ``write`` after :meth:`close` or :meth:`abort`.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: Fraction | float | int = 30,
                 *, crf: int = 18, preset: str = "medium", rotation: int = 0,
                 options: dict[str, str] | None = None, time_base: Fraction | None = None):
        self.path = Path(path)
        self._last_pts: int | None = None
        self.width, self.height = int(width), int(height)
        self.size = (self.width + self.width % 2, self.height + self.height % 2)
        rate = Fraction(fps).limit_denominator(1001 * 1000) if not isinstance(fps, Fraction) else fps
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temp_path = temp_path_for(self.path)
        self._container: av.container.OutputContainer | None = None
        self.frames_written = 0
        try:
            self._container = av.open(str(self.temp_path), mode="w")
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = self.size
            self._stream.pix_fmt = "yuv420p"
            self.time_base = Fraction(time_base) if time_base is not None else Fraction(1, 1) / rate
            self._stream.time_base = self.time_base
            self._stream.codec_context.time_base = self.time_base
            opts: dict[str, object] = {"crf": str(crf), "preset": preset}
            opts.update(options or {})
            self._stream.options = opts
            if rotation:
                self._stream.set_display_rotation(rotation)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Encode one ``(height, width, 3)`` ``uint8`` RGB frame, at ``pts`` (ticks of the stream's time base)
        or, by default, at the number of frames written so far.

        Raises:
            ValueError: wrong shape/dtype; a ``pts`` not larger than the previous frame's.
        """
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.shape != (self.height, self.width, 3):
            raise ValueError(f"VideoWriter({self.path}) expects ({self.height}, {self.width}, 3) uint8 RGB "
                             f"frames, got {image.shape} {image.dtype}")
        if self.size != (self.width, self.height):
            image = np.pad(image, ((0, self.size[1] - self.height), (0, self.size[0] - self.width), (0, 0)),
                           mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_color_range=1, interpolation=ACCURATE_RGB)
        frame.pts = self.frames_written if pts is None else int(pts)
        if self._last_pts is not None and frame.pts <= self._last_pts:
            raise ValueError(f"VideoWriter({self.path}): pts {frame.pts} after {self._last_pts}; timestamps must "
                             "increase")
        self._last_pts = frame.pts
        frame.time_base = self.time_base
        if self._container is None:
            raise RuntimeError(f"VideoWriter({self.path}) is closed")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, close the file and move it to ``path`` (idempotent).

        Raises:
            OSError / av errors of the encoder or the rename; the temporary file is then deleted.
        """
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
            commit(self.temp_path, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Stop without producing ``path``: close the container and delete the temporary file (idempotent)."""
        c, self._container = self._container, None
        if c is not None:
            try:
                c.close()
            except Exception as e:  # closing a half-written file may fail; it is deleted
                log.debug("closing %s failed: %s", self.temp_path, e)
        discard(self.temp_path)
