"""Still images (JPEG, PNG, WebP, TIFF, BMP) as one-frame inputs and outputs of the video jobs, via Pillow.

A job that edits faces runs on :class:`vidinv.io.video.Frame` s and writes through a writer with the
interface of :class:`vidinv.io.mux.EditedVideoWriter` (``frames``, ``write(frame, image)``, ``done``,
``abort()``, a context manager). This module gives the same two ends for a still image, so a job runs
unchanged on ``face.jpg``:

* :class:`ImageReader`: the reader interface the stages use (iteration, ``len``, ``close``, a context
  manager, ``frame_size``), yielding one :class:`~vidinv.io.video.Frame` (index 0, time 0.0, no ``pts``).
* :class:`ImageWriter`: the writer interface; the picture is encoded by Pillow in the format of the
  destination's extension and written atomically (:mod:`vidinv.io.outputs`).
* :func:`open_output_writer`: the writer for a ``src -> dst`` pair (image -> image: :class:`ImageWriter`,
  video -> video: :class:`~vidinv.io.mux.EditedVideoWriter`; a mix is an error).
* :func:`passthrough_image`: the output when nothing was edited (the input, unchanged).

Decoding (:func:`load_image`): EXIF orientation is applied (``ImageOps.exif_transpose``), so faces are
upright for the detector and the output is stored upright with orientation 1. Pixels are RGB ``uint8``:
grayscale (``L``, ``1``) and palette images are expanded to RGB (and written back as grayscale / RGB);
16-bit grayscale is scaled to 8 bits (``round(v * 255 / 65535)``) and 16-bit-per-channel RGB is reduced
by Pillow to its top 8 bits, both with a warning (the output has 8 bits per channel). An alpha channel
is kept aside and attached again to the output (formats that hold one: PNG, WebP, TIFF). CMYK, LAB, HSV,
32-bit integer / float images and animations (more than one frame) are refused with an
:class:`~vidinv.io.outputs.InputFileError`.

Encoding (:class:`ImageWriter`): PNG is lossless (zlib level 6), TIFF lossless (LZW), BMP uncompressed;
JPEG at quality :data:`JPEG_QUALITY` (95) with 4:4:4 chroma (no chroma subsampling, so colours do not
bleed around the edited face), WebP lossy at the same quality. With ``metadata=True`` (the default) the
ICC profile, the EXIF tags (orientation reset, as the pixels are stored upright; Pillow's
``Exif.tobytes`` writes IFD0 with its Exif / GPS sub-IFDs, so an embedded EXIF thumbnail (IFD1) of the
unedited picture is not carried over), the XMP packet and the resolution (dpi) are copied from the
input where the output format can hold them.
"""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vidinv.io.mux import EditedVideoWriter, MissingFrameError
from vidinv.io.outputs import (
    IMAGE_EXTENSIONS,
    InputFileError,
    OutputPathError,
    atomic_path,
    check_input_file,
    check_output,
    check_video_input,
    commit,
    discard,
    temp_path_for,
)
from vidinv.io.video import Frame

log = logging.getLogger(__name__)

__all__ = ["ALPHA_FORMATS", "IMAGE_EXTENSIONS", "JPEG_QUALITY", "StillImage", "ImageReader", "ImageWriter",
           "is_image_path", "load_image", "image_format", "open_output_writer", "passthrough_image",
           "check_image_input", "check_media_io"]

#: Quality of JPEG and WebP outputs (Pillow's 1..100 scale; JPEG with 4:4:4 chroma).
JPEG_QUALITY = 95

_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
            ".bmp": "BMP"}
#: Output formats that hold an alpha channel.
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF"})
# metadata each format's Pillow writer takes
_META_KEYS = {"JPEG": ("icc_profile", "exif", "xmp", "dpi"), "PNG": ("icc_profile", "exif", "dpi"),
              "WEBP": ("icc_profile", "exif", "xmp"), "TIFF": ("icc_profile", "exif", "dpi"), "BMP": ("dpi",)}


def is_image_path(path: str | os.PathLike) -> bool:
    """Whether ``path``'s extension (any case) is one of :data:`IMAGE_EXTENSIONS` (the file is not opened)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def image_format(path: str | os.PathLike) -> str:
    """The Pillow format name written for ``path``'s extension (``"JPEG"``, ``"PNG"``, ``"WEBP"``, ``"TIFF"``,
    ``"BMP"``).

    Raises:
        vidinv.io.outputs.OutputPathError: not an image extension.
    """
    fmt = _FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise OutputPathError(f"the output {path} has no image extension; use one of {', '.join(IMAGE_EXTENSIONS)}")
    return fmt


@dataclass
class StillImage:
    """A decoded still image (:func:`load_image`).

    Attributes:
        path: the file.
        image: ``(H, W, 3)`` ``uint8`` RGB, 0..255, upright (EXIF orientation applied).
        alpha: ``(H, W)`` ``uint8`` alpha (0 = transparent) or ``None``.
        mode: the Pillow mode of the file (``"RGB"``, ``"L"``, ``"I;16"``, ``"RGBA"``, ``"P"``, ...).
        gray: the picture is grayscale (written back as grayscale).
        format: Pillow's name of the file's format (``"JPEG"``, ``"PNG"``, ...).
        orientation: the EXIF orientation that was applied (1: none).
        metadata: ``icc_profile`` (bytes), ``exif`` (bytes, orientation removed), ``xmp`` (bytes) and
            ``dpi`` (tuple) when the file has them.
    """

    path: Path
    image: np.ndarray
    alpha: np.ndarray | None
    mode: str
    gray: bool
    format: str
    orientation: int
    metadata: dict[str, Any]

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the upright picture."""
        return int(self.image.shape[1]), int(self.image.shape[0])


def load_image(path: str | os.PathLike, what: str = "input image") -> StillImage:
    """Decode a still image (see the module doc for modes, orientation and metadata).

    Raises:
        vidinv.io.outputs.InputFileError: with a one-line reason naming the file: missing, not an image
            Pillow can read, truncated, an animation, or a mode vidinv does not handle (CMYK, LAB, HSV,
            32-bit integer or float).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    try:
        with Image.open(p) as im:
            n = int(getattr(im, "n_frames", 1) or 1)
            if n > 1:
                raise InputFileError(f"the {what} {p} holds {n} frames (an animation or a multi-page file); "
                                     "vidinv edits still images: give one frame")
            fmt = im.format or "?"
            deep = any(";16" in str(t.args) for t in (im.tile or []))
            im.load()
            orientation = int(im.getexif().get(0x0112, 1) or 1)
            up = ImageOps.exif_transpose(im)
    except InputFileError:
        raise
    except FileNotFoundError:
        raise InputFileError(f"the {what} {p} does not exist") from None
    except UnidentifiedImageError:
        raise InputFileError(f"cannot read the {what} {p}: not an image file Pillow can read") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated / damaged data
        raise InputFileError(f"cannot read the {what} {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__} "
                             "(damaged or truncated?)") from None
    mode = up.mode
    meta: dict[str, Any] = {}
    for key in ("icc_profile", "xmp", "dpi"):
        if up.info.get(key):
            meta[key] = up.info[key]
    exif = up.getexif()
    exif.pop(0x0112, None)
    if len(exif):
        meta["exif"] = exif.tobytes()
    alpha = None
    gray = False
    if mode in ("CMYK", "LAB", "HSV", "YCbCr", "I", "F"):
        kind = {"I": "32-bit integer", "F": "floating-point"}.get(mode, mode)
        raise InputFileError(f"the {what} {p} is a {kind} image; vidinv reads RGB, grayscale or palette images "
                             "with 8 or 16 bits (convert it to RGB first)")
    if mode.startswith("I;16"):
        a = np.asarray(up).astype(np.uint32)
        rgb = np.repeat(((a * 255 + 32767) // 65535).astype(np.uint8)[..., None], 3, axis=2)
        gray = True
        log.warning("%s: 16-bit grayscale scaled to 8 bits; the output has 8 bits per channel", p)
    else:
        if deep:
            log.warning("%s: 16 bits per channel reduced to 8; the output has 8 bits per channel", p)
        if mode == "P" and "transparency" in up.info:
            up = up.convert("RGBA")
        elif mode == "P":
            up = up.convert("RGB")
        gray = up.mode in ("1", "L", "LA", "La")
        if up.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
            alpha = np.array(up.getchannel("A"))
        rgb = np.array(up.convert("RGB"))
    return StillImage(p, np.ascontiguousarray(rgb, dtype=np.uint8), alpha, mode, gray, fmt, orientation, meta)


class ImageReader:
    """A still image as a one-frame video: what the job stages need of a
    :class:`~vidinv.io.video.VideoReader`.

    Usage::

        with ImageReader("face.jpg") as r:
            for frame in r:           # one vidinv.io.video.Frame: index 0, time 0.0, pts None
                frame.image           # (H, W, 3) uint8 RGB, upright

    The file is decoded when iteration begins (:func:`load_image`); it can be iterated again.
    ``len(reader)`` is 1, or 0 when ``start``/``stop`` leave frame 0 out.

    Raises:
        vidinv.io.outputs.InputFileError: as :func:`load_image` (when iterated).
    """

    def __init__(self, path: str | os.PathLike, *, start: int = 0, stop: int | None = None):
        self.path = Path(path)
        self.start = int(start)
        self.stop = stop

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Nothing stays open between iterations; for the reader interface."""

    def __len__(self) -> int:
        return len(range(1)[self.start:self.stop])

    @property
    def frame_size(self) -> tuple[int, int]:
        """``(width, height)`` of the upright picture (decodes the file)."""
        return load_image(self.path).size

    def __iter__(self) -> Iterator[Frame]:
        if len(self):
            yield Frame(index=0, image=load_image(self.path).image, pts=None, time_base=None, time=0.0)


class ImageWriter:
    """Write the edited picture of a still image: the :class:`~vidinv.io.mux.EditedVideoWriter` interface
    as the jobs use it, for one frame.

    Args:
        src: the input image (its size, alpha, grayscale-ness and metadata are taken from it).
        dst: the output; its extension chooses the format (:func:`image_format`).
        quality: JPEG / WebP quality (1..100).
        metadata: copy the ICC profile, EXIF, XMP and dpi of ``src`` (see the module doc); ``False`` writes
            none (e.g. to drop GPS tags from an anonymised picture).
        scale: integer factor >= 1 of the output size over the input's (``vidinv restore --scale``); an alpha
            channel is up-scaled with PIL's Lanczos filter.

    ``frames`` is ``range(0, 1)``; ``write(frame, image)`` takes the picture of frame 0; leaving the ``with``
    block normally (or :meth:`close`) encodes it to a temporary file beside ``dst`` and moves it over
    ``dst`` (:func:`vidinv.io.outputs.commit`); on an exception (or :meth:`abort`) nothing is written and an
    existing ``dst`` is kept.

    Raises:
        vidinv.io.outputs.InputFileError: ``src`` cannot be read (:func:`load_image`).
        vidinv.io.outputs.OutputPathError: ``dst`` has no image extension, or ``src`` has an alpha channel
            that the output format cannot hold.
    """

    def __init__(self, src: str | os.PathLike, dst: str | os.PathLike, *, quality: int = JPEG_QUALITY,
                 metadata: bool = True, scale: int = 1):
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be an integer >= 1, got {scale}")
        self.src_path, self.dst_path = Path(src), Path(dst)
        self.format = image_format(dst)
        self.quality = int(quality)
        info = load_image(src)
        if info.alpha is not None and self.format not in ALPHA_FORMATS:
            raise OutputPathError(f"the input {src} has an alpha channel, which {self.format} cannot hold; write "
                                  ".png, .webp or .tiff")
        self._alpha, self._gray = info.alpha, info.gray
        self.size = (info.size[0] * int(scale), info.size[1] * int(scale))
        if self._alpha is not None and scale != 1:
            from PIL import Image

            self._alpha = np.asarray(Image.fromarray(self._alpha, "L").resize(self.size, Image.Resampling.LANCZOS))
        self._meta = {k: v for k, v in info.metadata.items() if k in _META_KEYS[self.format]} if metadata else {}
        self.frames = range(0, 1)
        self.frames_written = 0
        self.temp_path: Path | None = None
        self._image: np.ndarray | None = None
        self._done = False

    def write(self, frame: Frame, image: np.ndarray) -> None:
        """Take ``image`` (``(H, W, 3)`` ``uint8`` RGB, upright, the input's size times ``scale``) as the
        picture of ``frame`` (index 0).

        Raises:
            vidinv.io.mux.MissingFrameError: ``frame.index`` is not 0 or a picture was already written.
            ValueError: wrong shape / dtype. RuntimeError: the writer is closed.
        """
        if self._done:
            raise RuntimeError(f"ImageWriter({self.dst_path}) is closed")
        if frame.index != 0 or self.frames_written:
            raise MissingFrameError(f"frame {frame.index} written to the image {self.dst_path}; an image has one "
                                    "frame (0), written once")
        image = np.asarray(image)
        w, h = self.size
        if image.dtype != np.uint8 or image.shape != (h, w, 3):
            raise ValueError(f"ImageWriter({self.dst_path}) expects {(h, w, 3)} uint8 RGB images, got "
                             f"{image.shape} {image.dtype}")
        self._image = image
        self.frames_written = 1

    def close(self) -> None:
        """Encode the picture and move it to ``dst`` atomically. Idempotent.

        Raises:
            vidinv.io.mux.MissingFrameError: nothing was written (then no file is made).
            OSError: the file cannot be written (the temporary file is deleted).
        """
        from PIL import Image

        if self._done:
            return
        try:
            if self._image is None:
                raise MissingFrameError(f"no picture written to {self.dst_path}")
            im = Image.fromarray(self._image, "RGB")
            if self._gray:
                im = im.convert("L")
            if self._alpha is not None:
                im.putalpha(Image.fromarray(self._alpha, "L"))
            opts: dict[str, Any] = dict(self._meta)
            if self.format == "JPEG":
                opts.update(quality=self.quality, subsampling=0)
            elif self.format == "WEBP":
                opts.update(quality=self.quality)
            elif self.format == "PNG":
                opts.update(compress_level=6)
            elif self.format == "TIFF":
                opts.update(compression="tiff_lzw")
            self.dst_path.parent.mkdir(parents=True, exist_ok=True)
            self.temp_path = temp_path_for(self.dst_path)
            im.save(self.temp_path, format=self.format, **opts)
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
        """Stop without producing the output (a temporary file is deleted; ``dst`` is left as it was)."""
        self._done = True
        self._image = None
        discard(self.temp_path)

    def __enter__(self) -> ImageWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def open_output_writer(src: str | os.PathLike, dst: str | os.PathLike, *, quality: int = JPEG_QUALITY,
                       metadata: bool = True, scale: int = 1, **video_kwargs):
    """The writer of a job's output: :class:`ImageWriter` (``quality``, ``metadata``) for an image input and
    image output, :class:`vidinv.io.mux.EditedVideoWriter` (``video_kwargs``: ``codec``, ``crf``, ``pix_fmt``,
    ``start``, ``end``, ...) for a video input and video output; ``scale`` (output size over input size)
    for both. For images the video keywords are not used.

    Raises:
        vidinv.io.outputs.OutputPathError: an image input with a non-image output, or a video input with an
            image output.
        What the chosen writer raises.
    """
    src_img, dst_img = is_image_path(src), is_image_path(dst)
    if src_img and dst_img:
        return ImageWriter(src, dst, quality=quality, metadata=metadata, scale=scale)
    if src_img:
        raise OutputPathError(f"the input {src} is an image, so the output {dst} must be one too (use one of "
                              f"{', '.join(IMAGE_EXTENSIONS)})")
    if dst_img:
        raise OutputPathError(f"the input {src} is a video; it cannot be written as the image {dst} (give OUT a "
                              "video extension, e.g. .mp4)")
    return EditedVideoWriter(src, dst, scale=scale, **video_kwargs)


def passthrough_image(src: str | os.PathLike, dst: str | os.PathLike, *, metadata: bool = True) -> Path:
    """Write the still image ``src`` unchanged to ``dst``, atomically: the bytes copied when both are the same
    format, else the decoded picture (upright) encoded as ``dst``'s format (:class:`ImageWriter`).

    Returns:
        ``Path(dst)``.

    Raises:
        vidinv.io.outputs.InputFileError / OutputPathError: as :class:`ImageWriter`.
    """
    src, dst = Path(src), Path(dst)
    if image_format(src) == image_format(dst) and metadata:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return dst
    image = load_image(src).image
    with ImageWriter(src, dst, metadata=metadata) as w:
        w.write(Frame(0, image, None, None, 0.0), image)
    return dst


def check_image_input(path: str | os.PathLike, what: str = "input image") -> Path:
    """``path`` is a still image vidinv can read: :func:`check_input_file`, then decoded once with
    :func:`vidinv.io.images.load_image` (damaged, truncated, animated, CMYK / float images refused).

    Returns:
        ``Path(path)``.

    Raises:
        InputFileError: with a one-line reason.
    """
    p = check_input_file(path, what)
    load_image(p, what)
    return p


def check_media_io(src: str | os.PathLike, dst: str | os.PathLike,
                   inputs: Iterable[str | os.PathLike | None] = (), *, codec: str | None = None,
                   also_written: Iterable[str | os.PathLike | None] = ()) -> Literal["image", "video"]:
    """Check a job's input file and output file as a pair, before any model loads: an image input
    (:func:`vidinv.io.images.is_image_path`) must be readable (:func:`check_image_input`) and go to an
    image output (:func:`check_output` ``kind="image"``); anything else is a video input
    (:func:`check_video_input`) going to a video output (``kind="video"`` with ``codec``).

    Args:
        src: the input file (a folder of images is :func:`vidinv.pipeline.images.plan_folder`'s job).
        dst: the output file.
        inputs: the command's other inputs (``dst`` must not be or replace any of them).
        codec: the video encoder, for a video output.
        also_written: the command's other outputs.

    Returns:
        ``"image"`` or ``"video"``.

    Raises:
        InputFileError, OutputPathError: with a one-line reason (e.g. an image written as ``.mp4``).
    """
    src, dst = Path(src), Path(dst)
    all_inputs = [src, *inputs]
    if is_image_path(src):
        info = load_image(check_input_file(src, "input image"))
        if not is_image_path(dst):
            raise OutputPathError(f"the input {src} is an image, so the output {dst} must be one too; use one of "
                                  f"{', '.join(IMAGE_EXTENSIONS)}")
        check_output(dst, all_inputs, kind="image", also_written=also_written)
        if info.alpha is not None and image_format(dst) not in ALPHA_FORMATS:
            raise OutputPathError(f"the input {src} has an alpha channel, which {image_format(dst)} cannot hold; "
                                  "write .png, .webp or .tiff")
        return "image"
    check_video_input(src)
    if is_image_path(dst):
        raise OutputPathError(f"the input {src} is a video; it cannot be written as the image {dst} (give the "
                              "output a video extension, e.g. .mp4)")
    check_output(dst, all_inputs, kind="video", codec=codec, expect_bytes=src.stat().st_size,
                 also_written=also_written)
    return "video"
