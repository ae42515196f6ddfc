"""Identity embeddings of faces behind one interface, and identity similarity.

Two face-recognition networks, each fed the aligned face it was trained on:

* :class:`DlibEmbedder` (key ``"dlib"``, offline default): dlib's face-recognition ResNet
  (``dlib_face_recognition_resnet_model_v1.dat``, a ResNet-29 giving 128-D descriptors, 99.38% on
  LFW), shipped in the ``face_recognition_models`` package. Alignment as dlib expects: the 5-point
  shape predictor (``shape_predictor_5_face_landmarks.dat``) is run on the face box, and
  ``dlib.get_face_chip(frame, shape, size=150, padding=0.25)`` cuts the 150x150 chip the network's
  ``compute_face_descriptor`` documentation asks for.
* :class:`ArcFaceEmbedder` (key ``"arcface"``): ArcFace IResNet-50 (insightface ``backbone.pth``, the
  identity network of the Feature-Style encoder, :mod:`vidinv.models.iresnet`), 512-D. Alignment as the
  Feature-Style training code (``trainer.py``, ``IDloss``) does: the FFHQ-aligned face (our
  :func:`vidinv.face.align.align_crop` of the front-end's quad, 1024x1024 by default, the generator's
  resolution) is mapped to [-1, 1] and resized to 112x112 with ``F.interpolate(x, (112, 112))``
  (PyTorch's default mode, ``"nearest"``); no further face-region crop.

A *face* passed to :meth:`IdentityEmbedder.align` is any object with ``landmarks`` ((68, 2) frame
pixels, x = column), ``box`` ((4,) ``x0, y0, x1, y1``) and optionally ``quad`` ((4, 2), the FFHQ crop
quad; computed from the landmarks when absent), e.g. a
:class:`vidinv.face.frontend.TrackedFace` or a :class:`vidinv.face.detect.Face`.

Embeddings are returned as given by the networks (dlib's are not unit length, ArcFace's are the
``features`` BatchNorm output); compare them with :func:`cosine_similarity`.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vidinv.face import align as fa
from vidinv.face.detect import DetectorUnavailableError, dlib_model_path
from vidinv.io.outputs import sha256_file
from vidinv.models.iresnet import load_arcface
from vidinv.weights import MissingWeightsError, resolve

__all__ = [
    "cosine_similarity",
    "IdentityEmbedder",
    "DlibEmbedder",
    "ArcFaceEmbedder",
    "EmbedderUnavailable",
    "EMBEDDERS",
    "get_embedder",
    "select_embedders",
]


class EmbedderUnavailable(RuntimeError):
    """An identity network cannot be used here (its weights or package are missing); the message says why."""


def cosine_similarity(a, b, eps: float = 1e-12) -> np.ndarray | float:
    """Cosine similarity of embeddings along the last axis.

    Args:
        a, b: ``(..., D)`` arrays (broadcastable), any float dtype. Rows of NaN give NaN.
        eps: guard against zero-length vectors.

    Returns:
        ``(...)`` float64 in [-1, 1] (a float for 1-D inputs). 1 = same direction.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    num = (x * y).sum(axis=-1)
    den = np.maximum(np.linalg.norm(x, axis=-1) * np.linalg.norm(y, axis=-1), eps)
    out = np.clip(num / den, -1.0, 1.0)
    return float(out) if np.ndim(out) == 0 else out


class IdentityEmbedder(ABC):
    """A face-recognition network with its own face alignment.

    Attributes:
        key: short name used in reports (``"dlib"``, ``"arcface"``).
        dim: embedding size.
        same_person: the network's own verification rule ``(metric, threshold)`` or None.
    """

    key: str = "base"
    dim: int = 0
    #: ``(metric, threshold)`` of the network's own same-person decision, or None when it has no
    #: established one. dlib: Euclidean distance < 0.6.
    same_person: tuple[str, float] | None = None

    @abstractmethod
    def describe(self) -> dict:
        """JSON-able identifiers of the network: ``key``, ``network``, ``file``, ``sha256`` (prefix),
        ``dim``, ``alignment`` (how faces are aligned), ``crops`` (the network's input, short),
        ``summary`` (one line: network on crops, for printed summaries), ``similarity`` (how embeddings
        are compared)."""

    @abstractmethod
    def align(self, frame: np.ndarray, face) -> np.ndarray:
        """Cut the network's input from a frame.

        Args:
            frame: ``(H, W, 3)`` uint8 RGB.
            face: object with ``landmarks`` (68, 2), ``box`` (4,) and optionally ``quad`` (4, 2) in frame
                pixels (see the module docstring).

        Returns:
            The aligned chip in the layout :meth:`embed_chips` takes.
        """

    @abstractmethod
    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """Embed aligned chips (from :meth:`align`). Returns ``(N, dim)`` float32 (``(0, dim)`` for none)."""

    def embed(self, frames: Sequence[np.ndarray], faces: Sequence) -> np.ndarray:
        """Align then embed one face per frame: ``(N, dim)`` float32."""
        if len(frames) != len(faces):
            raise ValueError(f"{len(frames)} frames but {len(faces)} faces")
        return self.embed_chips([self.align(f, fc) for f, fc in zip(frames, faces)])


def _dlib_model(filename: str) -> Path:

    try:
        return dlib_model_path(filename)
    except DetectorUnavailableError as e:
        raise EmbedderUnavailable(str(e)) from e


class DlibEmbedder(IdentityEmbedder):
    """dlib face-recognition ResNet (128-D), aligned with dlib's 5-point chip (see the module docstring).

    Args:
        model_path: ``dlib_face_recognition_resnet_model_v1.dat`` (default: the copy in
            ``face_recognition_models``).
        predictor_path: ``shape_predictor_5_face_landmarks.dat`` (default: same package).
        num_jitters: dlib's test-time jittering (0 = off; each jitter costs one more forward pass).
        chip_size, padding: ``get_face_chip`` arguments; the network expects 150 and 0.25.

    Chips are ``(150, 150, 3)`` uint8 RGB. Embeddings are 128-D float32; dlib calls two faces the same
    person when the Euclidean distance of their descriptors is below 0.6.

    Raises:
        EmbedderUnavailable: dlib or a model file is missing.
    """

    key = "dlib"
    dim = 128
    same_person = ("euclidean", 0.6)
    MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
    PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"

    def __init__(self, model_path: str | os.PathLike | None = None, predictor_path: str | os.PathLike | None = None,
                 num_jitters: int = 0, chip_size: int = 150, padding: float = 0.25):
        try:
            import dlib
        except ImportError as e:  # pragma: no cover - dlib is a dependency
            raise EmbedderUnavailable("the dlib identity network needs the 'dlib' package "
                                      "(pip install dlib-bin)") from e
        self._dlib = dlib
        self.model_path = Path(model_path) if model_path else _dlib_model(self.MODEL_FILE)
        self.predictor_path = Path(predictor_path) if predictor_path else _dlib_model(self.PREDICTOR_FILE)
        for p in (self.model_path, self.predictor_path):
            if not p.is_file():
                raise EmbedderUnavailable(f"dlib model file {p} does not exist")
        self._rec = dlib.face_recognition_model_v1(str(self.model_path))
        self._sp5 = dlib.shape_predictor(str(self.predictor_path))
        self.num_jitters = int(num_jitters)
        self.chip_size = int(chip_size)
        self.padding = float(padding)
        self._sha: str | None = None

    def describe(self) -> dict:
        if self._sha is None:
            self._sha = sha256_file(self.model_path)[:16]
        return {
            "key": self.key,
            "network": "dlib face-recognition ResNet-29 (dlib_face_recognition_resnet_model_v1)",
            "file": str(self.model_path),
            "sha256": self._sha,
            "dim": self.dim,
            "alignment": (f"dlib 5-point shape predictor ({self.PREDICTOR_FILE}) on the face box, then "
                          f"dlib.get_face_chip(size={self.chip_size}, padding={self.padding})"),
            "crops": f"aligned {self.chip_size}×{self.chip_size} chips (dlib get_face_chip, 5-point alignment)",
            "summary": f"dlib face-recognition ResNet-29 on aligned {self.chip_size}×{self.chip_size} chips",
            "num_jitters": self.num_jitters,
            "similarity": "cosine similarity of the 128-D descriptors",
            "same_person": "Euclidean descriptor distance < 0.6 (dlib's verification threshold)",
        }

    def shape5(self, frame: np.ndarray, face) -> object:
        """dlib ``full_object_detection`` with the 5 points predicted inside the face box."""
        box = np.asarray(face.box, dtype=np.float64)
        rect = self._dlib.rectangle(*(int(round(v)) for v in box[:4]))
        return self._sp5(np.ascontiguousarray(frame), rect)

    def align(self, frame: np.ndarray, face) -> np.ndarray:
        """``(150, 150, 3)`` uint8 RGB chip: ``get_face_chip`` with the 5-point shape of ``face.box``."""
        frame = np.ascontiguousarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frame must be (H, W, 3) uint8 RGB; got {frame.shape} {frame.dtype}")
        return self._dlib.get_face_chip(frame, self.shape5(frame, face), size=self.chip_size, padding=self.padding)

    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        chips = [np.ascontiguousarray(c, dtype=np.uint8) for c in chips]
        for c in chips:
            if c.shape != (150, 150, 3):
                raise ValueError(f"dlib face chips must be (150, 150, 3) uint8; got {c.shape}")
        out = self._rec.compute_face_descriptor(chips, self.num_jitters)
        return np.asarray([np.asarray(v) for v in out], dtype=np.float32).reshape(len(chips), self.dim)


class ArcFaceEmbedder(IdentityEmbedder):
    """ArcFace IResNet-50 (512-D) fed as in the Feature-Style training code (see the module docstring).

    Args:
        model: an :class:`vidinv.models.iresnet.IResNet` (e.g. from :func:`vidinv.models.iresnet.load_arcface`).
        source: where the weights came from (path, for reports).
        crop_size: side of the FFHQ aligned crop before resizing to 112 (1024 = generator resolution,
            as the Feature-Style ``IDloss`` sees its images).
        resize: ``F.interpolate`` mode to 112x112 (``"nearest"``, PyTorch's default used by the
            Feature-Style code; ``"area"`` is an anti-aliased alternative).
        batch_size: chips per forward pass.

    Chips are ``(3, 112, 112)`` float32 RGB in [-1, 1]. The network runs on the model's device.

    Use :meth:`from_weights` to load the official ``backbone.pth`` through the weight registry.
    """

    key = "arcface"
    dim = 512

    def __init__(self, model: torch.nn.Module, source: str = "unknown", crop_size: int = 1024,
                 resize: str = "nearest", batch_size: int = 16):
        self.model = model.eval()
        self.source = str(source)
        self.crop_size = int(crop_size)
        self.resize = resize
        self.batch_size = int(batch_size)
        self._sha: str | None = None

    @classmethod
    def from_weights(cls, weights_dir: str | os.PathLike | None = None, device: torch.device | str | None = None,
                     **kwargs) -> ArcFaceEmbedder:
        """Load ``backbone.pth`` (found by :func:`vidinv.weights.resolve`, never downloaded).

        Raises:
            EmbedderUnavailable: the file is not present (the message says where to put it).
            vidinv.io.checkpoints.CheckpointError: the file is not the official IResNet-50 state_dict.
        """

        try:
            path = resolve(["backbone.pth"], weights_dir=weights_dir, fetch=False)["backbone.pth"]
        except MissingWeightsError as e:
            where = e.missing[0].path if e.missing else "the weights cache"
            raise EmbedderUnavailable(f"ArcFace needs backbone.pth, which is not present (put it at {where}, use "
                                      f"--weights-dir, or run `vidinv weights fetch backbone.pth`)\n{e}") from e
        return cls(load_arcface(path, device=device), source=str(path), **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def describe(self) -> dict:
        if self._sha is None:
            p = Path(self.source)
            self._sha = sha256_file(p)[:16] if p.is_file() else None
        return {
            "key": self.key,
            "network": "ArcFace IResNet-50 (insightface arcface_torch r50, backbone.pth)",
            "file": self.source,
            "sha256": self._sha,
            "dim": self.dim,
            "alignment": (f"FFHQ aligned crop {self.crop_size}x{self.crop_size} (front-end quad), RGB in [-1, 1], "
                          f"F.interpolate to 112x112 mode={self.resize!r} (Feature-Style trainer.IDloss)"),
            "crops": (f"112×112 crops resized ({self.resize}) from the FFHQ-aligned "
                      f"{self.crop_size}×{self.crop_size} face"),
            "summary": "ArcFace IResNet-50 on 112×112 FFHQ-aligned crops",
            "similarity": "cosine similarity of the 512-D features output",
        }

    def align(self, frame: np.ndarray, face) -> np.ndarray:
        """``(3, 112, 112)`` float32 RGB in [-1, 1]: FFHQ crop of ``face.quad`` resized as FS ``IDloss``."""
        import torch.nn.functional as F


        quad = getattr(face, "quad", None)
        if quad is None:
            quad, _ = fa.quad_from_landmarks(face.landmarks)
        crop = fa.align_crop(np.asarray(frame), np.asarray(quad, dtype=np.float64), self.crop_size)
        x = torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        x = (x / 255.0 - 0.5) / 0.5
        kwargs = {} if self.resize in ("nearest", "area") else {"align_corners": False}
        x = F.interpolate(x, size=(112, 112), mode=self.resize, **kwargs)
        return x[0].numpy()

    @torch.no_grad()
    def embed_chips(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        dev = self.device
        dtype = next(self.model.parameters()).dtype
        outs = []
        for i in range(0, len(chips), self.batch_size):
            x = torch.from_numpy(np.stack([np.asarray(c, np.float32) for c in chips[i:i + self.batch_size]]))
            outs.append(self.model(x.to(dev, dtype)).float().cpu().numpy())
        return np.concatenate(outs, axis=0)


#: Embedder keys and their one-line description.
EMBEDDERS = {
    "dlib": "dlib face-recognition ResNet (face_recognition_models; offline)",
    "arcface": "ArcFace IResNet-50 (backbone.pth; the Feature-Style identity network)",
}


def get_embedder(key: str, weights_dir: str | os.PathLike | None = None,
                 device: torch.device | str | None = None) -> IdentityEmbedder:
    """Build the embedder called ``key`` (``"dlib"`` or ``"arcface"``).

    Raises:
        ValueError: unknown key.
        EmbedderUnavailable: its weights are missing.
    """
    if key == "dlib":
        return DlibEmbedder()
    if key == "arcface":
        return ArcFaceEmbedder.from_weights(weights_dir=weights_dir, device=device)
    raise ValueError(f"unknown identity network {key!r}; choose from {sorted(EMBEDDERS)}")


def select_embedders(keys: Sequence[str] = ("auto",), weights_dir: str | os.PathLike | None = None,
                     device: torch.device | str | None = None) -> tuple[list[IdentityEmbedder], list[str]]:
    """Build the requested embedders.

    ``"auto"`` means dlib always, plus ArcFace when ``backbone.pth`` is present. Explicitly named
    networks must be available.

    Returns:
        ``(embedders, notes)``: notes say which optional network was left out and why.

    Raises:
        EmbedderUnavailable: an explicitly requested network cannot be loaded.
    """
    out: list[IdentityEmbedder] = []
    notes: list[str] = []
    seen = set()
    for key in keys:
        if key == "auto":
            for k in ("dlib", "arcface"):
                if k in seen:
                    continue
                try:
                    out.append(get_embedder(k, weights_dir, device))
                    seen.add(k)
                except EmbedderUnavailable as e:
                    if k == "dlib":
                        raise
                    first = str(e).splitlines()[0]
                    notes.append(f"{k} not used: {first}")
        elif key not in seen:
            out.append(get_embedder(key, weights_dir, device))
            seen.add(key)
    return out, notes
