"""Face detection with 68 landmarks (iBUG 300-W / Multi-PIE layout) on video frames.

One interface, :class:`LandmarkDetector`, with ``detect(frames) -> list[list[Face]]`` for a batch of
RGB ``uint8`` frames, and two back-ends:

* ``"dlib"`` (default, offline): dlib's HOG + linear-SVM frontal face detector
  (``get_frontal_face_detector``) on a copy downscaled so its longest side is at most ``max_side``
  pixels, run with ``upsample`` pyramid doublings; when HOG finds nothing in a (non-blank) frame, dlib's
  CNN MMOD detector (``mmod_human_face_detector.dat``) is tried on a smaller copy. The 68 landmarks
  come from dlib's ensemble-of-regression-trees shape predictor
  ``shape_predictor_68_face_landmarks.dat`` (Kazemi & Sullivan, CVPR 2014) run on the full-resolution
  frame. For low-resolution video (e.g. ``vidinv restore``), ``upscale`` enlarges small frames (bicubic)
  before detection and landmark prediction and maps the results back (see :func:`upscale_factor`).
  This is the detector/predictor pair of the FFHQ alignment recipe (pSp
  ``scripts/align_all_parallel.py``: ``detector(img, 1)`` then the 68-point predictor); on frames no
  larger than ``max_side`` it reproduces that recipe's landmarks exactly.
  The model files are those shipped in the ``face_recognition_models`` package.
* ``"fan"``: the 2D-FAN landmark network of the ``face_alignment`` package (Bulat & Tzimiropoulos,
  ICCV 2017) with its S3FD detector, as the Feature-Style encoder's video code uses. It is only
  available when the package is installed and its weights are already in the torch hub cache; nothing
  is downloaded.

Landmarks are ``float64`` ``(68, 2)`` arrays of ``(x, y)`` = (column, row) in pixels of the frame given
to ``detect`` (pixel centres at integer coordinates, as dlib reports them).
"""
from __future__ import annotations

import importlib.util
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["Face", "LandmarkDetector", "DlibLandmarkDetector", "FanLandmarkDetector",
           "DetectorUnavailableError", "get_detector", "dlib_model_path", "DETECTORS", "upscale_factor",
           "UPSCALE_AUTO_SIDE", "UPSCALE_MAX"]


class DetectorUnavailableError(RuntimeError):
    """A detector back-end cannot run here (package or model file missing); the message says how to fix it."""


@dataclass
class Face:
    """One detected face.

    Attributes:
        box: ``(4,)`` float64 ``(x0, y0, x1, y1)`` in frame pixels; for dlib these are the detector
            rectangle's left, top, right, bottom (right/bottom inclusive, as dlib reports them).
        landmarks: ``(68, 2)`` float64 ``(x, y)`` frame pixels, 68-point iBUG layout (0-16 jaw, 17-26 brows,
            27-35 nose, 36-41 / 42-47 eyes, 48-67 mouth).
        score: detector confidence. ``dlib_hog``: SVM margin (detections have score > ``adjust_threshold``,
            typically -0.5..3); ``dlib_cnn``: MMOD confidence (typically 0..2); ``fan``: S3FD probability 0..1.
        detector: name of the detector that produced the box (``"dlib_hog"``, ``"dlib_cnn"``, ``"fan"``).
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    detector: str

    @property
    def size(self) -> float:
        """Face size in pixels: ``sqrt(width * height)`` of ``box``."""
        w = max(float(self.box[2] - self.box[0]), 0.0)
        h = max(float(self.box[3] - self.box[1]), 0.0)
        return float(np.sqrt(w * h))

    @property
    def center(self) -> np.ndarray:
        """``(2,)`` box centre ``(x, y)`` in pixels."""
        return np.array([(self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0])


class LandmarkDetector(ABC):
    """Detects faces and their 68 landmarks in a batch of frames.

    Subclasses implement :meth:`detect`. Calling the object is the same as ``detect``.
    """

    name: str = "base"

    @abstractmethod
    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        """Detect faces in each frame.

        Args:
            frames: sequence of ``(H, W, 3)`` ``uint8`` RGB images (0..255). Frames of one call may have
                different sizes.

        Returns:
            One list per frame (same order) of :class:`Face`, sorted by decreasing face size; empty when
            the frame has no face.

        Raises:
            ValueError: a frame that is not ``(H, W, 3)`` uint8.
        """

    def __call__(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        return self.detect(frames)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    a = np.asarray(frame)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 RGB arrays, got {a.shape} {a.dtype}")
    return np.ascontiguousarray(a)


def dlib_model_path(filename: str) -> Path:
    """Path of a dlib model file shipped in the ``face_recognition_models`` package.

    The package is located with :func:`importlib.util.find_spec` (importing it needs ``pkg_resources``,
    which may be absent).

    Raises:
        DetectorUnavailableError: the package or the file is missing.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailableError(
            "the dlib detector needs the model files of the 'face_recognition_models' package "
            "(pip install face-recognition-models), which is not installed")
    p = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not p.is_file():
        raise DetectorUnavailableError(f"dlib model file {p} is missing; reinstall face-recognition-models")
    return p


def _downscale(frame: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Resize so the longest side is <= max_side (INTER_AREA); returns (image, scale = new/old)."""
    h, w = frame.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return frame, 1.0
    import cv2

    s = max_side / float(max(h, w))
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    small = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
    # the exact per-axis factors differ slightly from s after rounding; use the horizontal one
    return small, nw / float(w)


#: ``upscale="auto"``: frames are enlarged by the integer factor that brings their longest side closest to,
#: without exceeding, this many pixels (frames already this large are left alone); it equals the HOG
#: ``max_side`` default, so the enlarged frame is not shrunk again before detection.
UPSCALE_AUTO_SIDE = 960
#: Largest factor ``upscale="auto"`` uses.
UPSCALE_MAX = 8


def upscale_factor(shape: Sequence[int], upscale: int | str) -> int:
    """The integer factor by which :class:`DlibLandmarkDetector` enlarges a frame before detection.

    Args:
        shape: the frame's ``(H, W, ...)``.
        upscale: an integer >= 1 (1: never; k: always by k), or ``"auto"``:
            ``clip(floor(UPSCALE_AUTO_SIDE / max(H, W)), 1, UPSCALE_MAX)``, e.g. 160x90 -> 6, 80x45 -> 8,
            320x180 -> 3, 480x270 -> 2, 512x512 and larger -> 1.

    Returns:
        The factor (>= 1).

    Raises:
        ValueError: ``upscale`` is neither ``"auto"`` nor an integer >= 1.
    """
    if isinstance(upscale, str):
        if upscale != "auto":
            raise ValueError(f"upscale must be 'auto' or an integer >= 1, got {upscale!r}")
        return int(min(max(UPSCALE_AUTO_SIDE // max(int(shape[0]), int(shape[1]), 1), 1), UPSCALE_MAX))
    if isinstance(upscale, bool) or int(upscale) != upscale or int(upscale) < 1:
        raise ValueError(f"upscale must be 'auto' or an integer >= 1, got {upscale!r}")
    return int(upscale)


def _scale_face(face: Face, s: int) -> Face:
    """Map a face found on a frame enlarged ``s`` times (cv2 half-pixel-centre resize) back to the frame:
    landmarks ``(x + 0.5) / s - 0.5``; the box pixel span ``[l, r]`` -> ``[l / s, (r + 1) / s - 1]``."""
    b = face.box
    box = np.array([b[0] / s, b[1] / s, (b[2] + 1) / s - 1, (b[3] + 1) / s - 1], dtype=np.float64)
    return Face(box=box, landmarks=(face.landmarks + 0.5) / s - 0.5, score=face.score, detector=face.detector)


def is_blank(frame: np.ndarray, min_std: float = 2.0) -> bool:
    """Whether a frame is (nearly) uniform: the standard deviation of a 64-px-wide grey thumbnail is
    below ``min_std`` grey levels (e.g. black or fade frames). No face can be found there."""
    h, w = frame.shape[:2]
    step = max(1, max(h, w) // 64)
    thumb = frame[::step, ::step].astype(np.float32).mean(axis=2)
    return float(thumb.std()) < min_std


class DlibLandmarkDetector(LandmarkDetector):
    """dlib HOG (+ CNN MMOD fallback) face detector with the 68-point shape predictor.

    Args:
        upsample: number of times the (downscaled) image is doubled before HOG detection (dlib's
            ``upsample_num_times``; 1 as in the FFHQ recipe). Each doubling lets it find faces half as big
            (HOG window 80x80 px) at about 4x the cost.
        max_side: HOG runs on a copy whose longest side is at most this many pixels (``None``: full
            resolution). Frames up to this size are used as they are.
        adjust_threshold: added to the HOG SVM threshold (dlib ``run``'s ``adjust_threshold``; 0 = dlib's
            default; negative finds more faces and more false ones).
        cnn_fallback: when HOG finds no face in a frame that is not blank, run dlib's CNN MMOD detector.
            It finds harder (turned, dark) faces but costs about 1-3 s per 512² frame on CPU.
        cnn_max_side, cnn_upsample: image size and upsampling for the CNN fallback.
        cnn_batch_size: frames per CNN call (same-size frames of one ``detect`` call are batched).
        blank_std: frames whose thumbnail standard deviation is below this (grey levels) are reported
            without faces and never sent to the CNN (see :func:`is_blank`).
        upscale: enlarge each frame by an integer factor (OpenCV bicubic) before detection *and* landmark
            prediction, then map boxes and landmarks back to frame pixels: ``1`` (default: off, the frame
            as it is), an integer ``k`` (always k), or ``"auto"`` (small frames only, see
            :func:`upscale_factor`). Measured on the shared clips down-sampled by 4-16 (cv2 INTER_AREA and
            pSp's bicubic): the default finds faces down to a HOG box of about 27-31 px (inter-ocular
            distance 11-12 px); ``"auto"`` found every face down to a 15.5 px box (IOD 6.2 px), with
            landmarks within 0.1-0.3 px (mean) of the full-resolution ones mapped down; none of the tried
            settings found 9-11 px faces (IOD 3-4). Detection on the enlarged frame costs about 0.1-1 s
            per frame on one CPU core.

    CNN (MMOD) boxes are tighter and sit higher on the face than the HOG boxes the shape predictor was
    trained with; they are shifted down by ``0.055 * width`` (measured on the shared test videos: mean
    HOG-minus-CNN centre offset 0.055 w down, 0.018 w right; size ratio 1.02) before predicting the
    landmarks.

    Raises:
        DetectorUnavailableError: dlib or its model files are missing.
    """

    name = "dlib"
    CNN_BOX_SHIFT_Y = 0.055

    def __init__(self, upsample: int = 1, max_side: int | None = 960, adjust_threshold: float = 0.0,
                 cnn_fallback: bool = True, cnn_max_side: int | None = 640, cnn_upsample: int = 0,
                 cnn_batch_size: int = 8, blank_std: float = 2.0, upscale: int | str = 1):
        try:
            import dlib
        except ImportError as e:  # pragma: no cover - dlib is a hard dependency
            raise DetectorUnavailableError("the dlib detector needs the 'dlib' package "
                                           "(pip install dlib-bin)") from e
        self._dlib = dlib
        self.upsample = int(upsample)
        self.max_side = max_side
        self.adjust_threshold = float(adjust_threshold)
        self.cnn_fallback = bool(cnn_fallback)
        self.cnn_max_side = cnn_max_side
        self.cnn_upsample = int(cnn_upsample)
        self.cnn_batch_size = int(cnn_batch_size)
        self.blank_std = float(blank_std)
        upscale_factor((1, 1), upscale)  # validate
        self.upscale = upscale
        self._hog = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
        self._cnn = None
        self.stats = {"frames": 0, "hog_faces": 0, "cnn_frames": 0, "cnn_faces": 0, "blank_frames": 0}

    @property
    def cnn(self):
        """The CNN MMOD detector, loaded on first use."""
        if self._cnn is None:
            self._cnn = self._dlib.cnn_face_detection_model_v1(str(dlib_model_path("mmod_human_face_detector.dat")))
        return self._cnn

    def _landmarks(self, frame: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray:
        shape = self._predictor(frame, self._dlib.rectangle(int(left), int(top), int(right), int(bottom)))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def _hog_faces(self, frame: np.ndarray) -> list[Face]:
        small, s = _downscale(frame, self.max_side)
        rects, scores, _ = self._hog.run(small, self.upsample, self.adjust_threshold)
        faces = []
        for r, sc in zip(rects, scores):
            if s == 1.0:
                x0, y0, x1, y1 = r.left(), r.top(), r.right(), r.bottom()
                box = np.array([x0, y0, x1, y1], dtype=np.float64)
            else:  # map the pixel span [l, r] of the small image back: [l/s, (r+1)/s - 1]
                box = np.array([r.left() / s, r.top() / s, (r.right() + 1) / s - 1, (r.bottom() + 1) / s - 1])
                x0, y0, x1, y1 = (int(round(v)) for v in box)
            faces.append(Face(box=box, landmarks=self._landmarks(frame, x0, y0, x1, y1), score=float(sc),
                              detector="dlib_hog"))
        return faces

    def _cnn_faces(self, frames: list[np.ndarray]) -> list[list[Face]]:
        smalls = [_downscale(f, self.cnn_max_side) for f in frames]
        out: list[list[Face]] = [[] for _ in frames]
        # batch same-size images (dlib requires it)
        groups: dict[tuple, list[int]] = {}
        for i, (im, _) in enumerate(smalls):
            groups.setdefault(im.shape, []).append(i)
        for idx in groups.values():
            for k in range(0, len(idx), self.cnn_batch_size):
                chunk = idx[k:k + self.cnn_batch_size]
                dets = self.cnn([smalls[i][0] for i in chunk], self.cnn_upsample, batch_size=len(chunk))
                for i, ds in zip(chunk, dets):
                    frame, s = frames[i], smalls[i][1]
                    for d in ds:
                        r = d.rect
                        box = np.array([r.left() / s, r.top() / s, (r.right() + 1) / s - 1,
                                        (r.bottom() + 1) / s - 1])
                        shift = self.CNN_BOX_SHIFT_Y * (box[2] - box[0])
                        pbox = box + np.array([0.0, shift, 0.0, shift])
                        x0, y0, x1, y1 = (int(round(v)) for v in pbox)
                        out[i].append(Face(box=pbox, landmarks=self._landmarks(frame, x0, y0, x1, y1),
                                           score=float(d.confidence), detector="dlib_cnn"))
        return out

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        frames = [_check_frame(f) for f in frames]
        factors = [upscale_factor(f.shape, self.upscale) for f in frames]
        if any(s > 1 for s in factors):
            import cv2

            frames = [f if s == 1 else cv2.resize(f, (f.shape[1] * s, f.shape[0] * s), interpolation=cv2.INTER_CUBIC)
                      for f, s in zip(frames, factors)]
            results = self._detect(frames)
            return [faces if s == 1 else [_scale_face(fc, s) for fc in faces] for faces, s in zip(results, factors)]
        return self._detect(frames)

    def _detect(self, frames: list[np.ndarray]) -> list[list[Face]]:
        results: list[list[Face]] = []
        missing: list[int] = []
        for i, frame in enumerate(frames):
            self.stats["frames"] += 1
            if is_blank(frame, self.blank_std):
                self.stats["blank_frames"] += 1
                results.append([])
                continue
            faces = self._hog_faces(frame)
            self.stats["hog_faces"] += len(faces)
            if not faces and self.cnn_fallback:
                missing.append(i)
            results.append(faces)
        if missing:
            self.stats["cnn_frames"] += len(missing)
            for i, faces in zip(missing, self._cnn_faces([frames[i] for i in missing])):
                self.stats["cnn_faces"] += len(faces)
                results[i] = faces
        return [sorted(r, key=lambda f: -f.size) for r in results]


# --------------------------------------------------------------------------------------------------
# face_alignment (FAN) back-end

#: weight files the ``face_alignment`` package loads through ``torch.hub`` (``load_file_from_url``), by
#: torch ``major.minor``; other torch versions use the ``"default"`` entry (face_alignment >= 1.3 ``api.py``
#: ``models_urls`` / ``default_model_urls`` and ``detection/sfd/sfd_detector.py``).
FAN_WEIGHTS = {
    "1.5": ("2DFAN4_1.5-a60332318a.zip",),
    "1.6": ("2DFAN4_1.6-c827573f02.zip",),
    "default": ("2DFAN4-cd938726ad.zip",),
}
FAN_DETECTOR_WEIGHTS = ("s3fd-619a316812.pth",)
FAN_URL = "https://www.adrianbulat.com/downloads/python-fan/"


def fan_weight_files() -> list[Path]:
    """Paths where ``face_alignment`` expects its 2D-FAN and S3FD weights (the torch hub
    ``checkpoints`` folder, ``$TORCH_HOME/hub/checkpoints``)."""
    import torch

    ver = torch.__version__.split("+")[0]
    parts = ver.split(".")
    key = ".".join(parts[:2])
    names = FAN_WEIGHTS.get(key, FAN_WEIGHTS["default"]) + FAN_DETECTOR_WEIGHTS
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return [hub / n for n in names]


class FanLandmarkDetector(LandmarkDetector):
    """2D-FAN 68 landmarks with the S3FD detector, through the ``face_alignment`` package.

    Args:
        device: torch device string (default: CUDA when available, else CPU).
        max_side: frames are downscaled so their longest side is at most this (``None``: full size)
            before detection; landmarks are scaled back to frame pixels.
        min_score: S3FD detections below this probability are dropped (face_alignment keeps > 0.5).

    Raises:
        DetectorUnavailableError: ``face_alignment`` is not installed, or its weight files are not in
            the torch hub cache (this class never downloads; the message lists the files and URLs).
    """

    name = "fan"

    def __init__(self, device: str | None = None, max_side: int | None = None, min_score: float = 0.5):
        if importlib.util.find_spec("face_alignment") is None:
            raise DetectorUnavailableError(
                "the 'fan' detector needs the face_alignment package, which is not installed: "
                "pip install face-alignment (or pip install 'vidinv[fan]'), then put its weights in the "
                "torch hub cache (see vidinv.face.detect.fan_weight_files()); or use --detector dlib")
        missing = [p for p in fan_weight_files() if not p.is_file()]
        if missing:
            lines = "\n".join(f"  {p}  (from {FAN_URL}{p.name})" for p in missing)
            raise DetectorUnavailableError(
                "the 'fan' detector needs the face_alignment weights in the torch hub cache, and these are "
                f"missing (vidinv does not download them):\n{lines}\nDownload them into "
                f"{missing[0].parent} (or set TORCH_HOME), or use --detector dlib")
        # on use: torch is needed by the optional FAN back-end only
        import face_alignment

        from vidinv.device import resolve_device

        resolved = resolve_device("auto" if device is None else str(device))
        lt = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        self._fa = face_alignment.FaceAlignment(lt, device=str(resolved), face_detector="sfd", flip_input=False)
        self.device = str(resolved)
        self.max_side = max_side
        self.min_score = float(min_score)

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Face]]:
        results = []
        for frame in (_check_frame(f) for f in frames):
            small, s = _downscale(frame, self.max_side)
            out = self._fa.get_landmarks_from_image(small, return_bboxes=True)
            faces: list[Face] = []
            if out is not None and out[0] is not None:
                landmarks, _, boxes = out
                for lm, b in zip(landmarks, boxes if boxes is not None else [None] * len(landmarks)):
                    lm = np.asarray(lm, dtype=np.float64)[:, :2] / s
                    if b is not None:
                        score = float(b[4]) if len(b) > 4 else 1.0
                        box = np.asarray(b[:4], dtype=np.float64) / s
                    else:
                        score, box = 1.0, np.concatenate([lm.min(0), lm.max(0)])
                    if score >= self.min_score:
                        faces.append(Face(box=box, landmarks=lm, score=score, detector="fan"))
            results.append(sorted(faces, key=lambda f: -f.size))
        return results


DETECTORS = {"dlib": DlibLandmarkDetector, "fan": FanLandmarkDetector}


def get_detector(name: str = "dlib", **kwargs) -> LandmarkDetector:
    """Build a detector back-end by name (``"dlib"`` or ``"fan"``); keyword arguments go to its class.

    Raises:
        ValueError: unknown name.
        DetectorUnavailableError: the back-end cannot run here (message says what is missing).
    """
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose one of {sorted(DETECTORS)}") from None
    return cls(**kwargs)
