"""Real training faces aligned on the fly from videos, with vidinv's face front-end.

:func:`extract_video_faces` runs :class:`vidinv.face.frontend.FaceFrontEnd` (detection, tracking,
temporal smoothing of the FFHQ quad) over each video and writes the aligned crops
(:func:`vidinv.face.align.align_crop`) as PNG files into a cache folder, once: a manifest records the
video (path, size, modification time) and the extraction options, and a later call with the same
inputs reuses the files. :class:`VideoFaceDataset` is a :class:`training.data.FaceImageDataset` over
those crops.

The front-end needs ``vidinv.face`` and its landmark back-end (dlib by default); when they cannot be
imported, :class:`VideoFacesUnavailable` says so (train from an image folder instead).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from vidinv.io.outputs import atomic_write_text
from vidinv.training.data import FaceImageDataset

__all__ = ["VideoFacesUnavailable", "extract_video_faces", "VideoFaceDataset"]


class VideoFacesUnavailable(RuntimeError):
    """The face front-end (``vidinv.face``) or the video reader cannot be imported here."""


def _frontend():
    try:
        # on use: the face front-end is optional for training (VideoFacesUnavailable)
        from vidinv.face.align import align_crop
        from vidinv.face.frontend import FaceFrontEnd
        from vidinv.io.video import VideoReader
    except ImportError as exc:
        raise VideoFacesUnavailable(
            f"training from videos needs vidinv's face front-end (vidinv.face, vidinv.io.video), which cannot be "
            f"imported here ({exc}). Align the faces beforehand and train from an image folder "
            "(data.real_dir), or install the missing dependency.") from exc
    return FaceFrontEnd, align_crop, VideoReader


def _video_key(path: Path, size: int, every: int, max_frames: int | None, detector: str) -> dict:
    st = path.stat()
    return {"video": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "size": size,
            "every": every, "max_frames": max_frames, "detector": detector}


def extract_video_faces(videos: Sequence[str | os.PathLike], cache_dir: str | os.PathLike, size: int,
                        every: int = 1, max_frames: int | None = None, detector: str = "dlib") -> list[Path]:
    """Aligned face crops of ``videos`` as PNG files in ``cache_dir`` (extracted once, then reused).

    Args:
        videos: video files.
        cache_dir: folder for the crops (one sub-folder per video, named after it and a hash of the inputs).
        size: crop side in pixels (the training resolution).
        every: keep every ``every``-th frame (frame index multiple of ``every``).
        max_frames: only read the first ``max_frames`` frames of each video (None: all).
        detector: landmark back-end of :class:`vidinv.face.frontend.FaceFrontEnd` (``"dlib"``, ``"fan"``).

    Returns:
        The crop files, sorted (``<video folder>/f<frame:06d>_t<track>.png``).

    Raises:
        VideoFacesUnavailable: the front-end cannot be imported.
        FileNotFoundError: a video does not exist.
        RuntimeError: no face was found in any video.
    """
    FaceFrontEnd, align_crop, VideoReader = _frontend()
    from PIL import Image

    out: list[Path] = []
    root = Path(cache_dir)
    for v in videos:
        path = Path(v)
        if not path.is_file():
            raise FileNotFoundError(f"training video {path} does not exist")
        key = _video_key(path, size, every, max_frames, detector)
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        folder = root / f"{path.stem}_{digest}"
        manifest = folder / "manifest.json"
        if manifest.is_file():
            done = json.loads(manifest.read_text())
            if done.get("key") == key:
                out.extend(folder / f for f in done["files"])
                continue
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        front = FaceFrontEnd(detector=detector)
        with VideoReader(path, stop=max_frames) as reader:
            for ff in front.process(reader):
                if ff.index % every:
                    continue
                for face in ff.faces:
                    crop = align_crop(ff.frame.image, face.quad, size)
                    name = f"f{ff.index:06d}_t{face.track_id}.png"
                    Image.fromarray(crop).save(folder / name)
                    files.append(name)
        atomic_write_text(manifest, json.dumps({"key": key, "files": files}, indent=1))
        out.extend(folder / f for f in files)
    if not out:
        raise RuntimeError(f"no face was found in {len(videos)} training video(s)")
    return sorted(out)


class VideoFaceDataset(FaceImageDataset):
    """:class:`training.data.FaceImageDataset` over faces aligned from videos (see :func:`extract_video_faces`).

    Args:
        videos, cache_dir, every, max_frames, detector: as :func:`extract_video_faces`.
        size, seed, hflip, sr_factors: as :class:`training.data.FaceImageDataset`.

    Raises:
        VideoFacesUnavailable: ``vidinv.face`` cannot be imported.
    """

    def __init__(self, videos: Sequence[str | os.PathLike], cache_dir: str | os.PathLike, size: int, *,
                 every: int = 1, max_frames: int | None = None, detector: str = "dlib", seed: int = 0,
                 hflip: bool = False, sr_factors: Sequence[int] | None = None):
        files = extract_video_faces(videos, cache_dir, size, every, max_frames, detector)
        super().__init__(files, size, seed=seed, hflip=hflip, sr_factors=sr_factors)
