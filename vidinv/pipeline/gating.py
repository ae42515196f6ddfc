"""The confidence-gate stage of ``vidinv edit`` (and the task commands): sets ``face.gate`` on every face.

Runs between the encode (and optional latent smoothing) stage and the render stage; the composite stage
then blends each face with the weight ``mask * gate`` (:func:`vidinv.pipeline.faces.composite_stage`).
The gate itself is defined in :mod:`vidinv.face.gate` (components, minimum, temporal fade); this stage
measures the components:

* pose, detector-score drop, interpolation (and optionally jitter) from the front-end's landmarks
  (:func:`vidinv.face.gate.landmark_components`, one :class:`~vidinv.face.gate.ScoreReference` per track);
* the inversion's reconstruction quality (``identity``): the aligned crop at 256 (:func:`vidinv.face.align.
  align_crop` of the face's quad) against the reconstruction ``G(w, F)`` (``G(w)`` without a feature code)
  stopped at 256 (:meth:`vidinv.models.stylegan2.Generator.preview`), both cut into dlib's 150x150 chip with
  the same 5-point shape (dlib's predictor on the crop, inside the box of the landmarks mapped into the
  crop) and embedded by dlib's face-recognition ResNet (:class:`vidinv.metrics.identity.DlibEmbedder`, the
  report's identity network); the measure is the Euclidean distance of the two descriptors.

Cost per face (measured on this project's CPU machine, see README "Confidence-gated edits"): the landmark
components are below a millisecond (``solvePnP`` of six points); the identity component is the generator
up to 256 (about 60% of the multiply-adds of one 1024 synthesis; an edit runs one synthesis plus the
coarse layers of a second) plus two dlib descriptors (a few tens of milliseconds on a CPU). Seconds are
added to the run's step timings as ``gate`` (``vidinv edit -v``).

Items leave in frame order, at most ``fade`` frames after they came in (the fade's look-ahead).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from vidinv.face import align
from vidinv.face.gate import FrameFades, GateSettings, ScoreReference, combine, landmark_components
from vidinv.metrics.identity import DlibEmbedder
from vidinv.pipeline.faces import FaceCode, Item

__all__ = ["GATE_RESOLUTION", "gate_stage", "IdentityCheck", "gate_record"]

#: Resolution of the reconstruction and of the aligned crop the identity component compares.
GATE_RESOLUTION = 256


class IdentityCheck:
    """dlib descriptor distance between aligned crops and their reconstructions (see the module doc).

    Args:
        embedder: a :class:`~vidinv.metrics.identity.DlibEmbedder` (default: a new one).

    Raises:
        vidinv.metrics.identity.EmbedderUnavailable: dlib's model files are missing.
    """

    def __init__(self, embedder: DlibEmbedder | None = None):
        import dlib

        self._dlib = dlib
        self.embedder = embedder or DlibEmbedder()

    def distances(self, crops: np.ndarray, recons: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Distances of ``B`` pairs.

        Args:
            crops: (B, S, S, 3) uint8 aligned crops; recons: (B, S, S, 3) uint8 reconstructions (same
                geometry); landmarks: (B, 68, 2) landmarks in the crops' pixel coordinates.

        Returns:
            (B,) float64 Euclidean distances of the 128-D descriptors (dlib: same person below 0.6).
        """
        chips = []
        for crop, rec, lm in zip(crops, recons, landmarks):
            box = np.concatenate([np.floor(lm.min(axis=0)), np.ceil(lm.max(axis=0))])
            crop = np.ascontiguousarray(crop)
            shape = self.embedder.shape5(crop, _Box(box))
            chips.append(self._dlib.get_face_chip(crop, shape, size=self.embedder.chip_size,
                                                  padding=self.embedder.padding))
            chips.append(self._dlib.get_face_chip(np.ascontiguousarray(rec), shape, size=self.embedder.chip_size,
                                                  padding=self.embedder.padding))
        e = self.embedder.embed_chips(chips).astype(np.float64)
        return np.linalg.norm(e[0::2] - e[1::2], axis=1)


class _Box:
    """A face given by its box only (what :meth:`DlibEmbedder.shape5` reads)."""

    def __init__(self, box):
        self.box = np.asarray(box, dtype=np.float64)


def gate_record(face: FaceCode) -> dict:
    """JSON-ready gate of one face: ``track_id``, ``gate`` (faded, blend weight factor), ``raw`` (before the
    fade), ``limit`` (the component setting the raw gate, or None), ``components`` and ``measures``
    (rounded; NaN as None)."""
    info = face.gate_info or {}

    def r(v, nd=4):
        return None if v is None or not math.isfinite(float(v)) else round(float(v), nd)

    return {"track_id": int(face.track_id), "gate": r(face.gate), "raw": r(info.get("raw")),
            "limit": info.get("limit"),
            "components": {k: r(v) for k, v in info.get("components", {}).items()},
            "measures": {k: r(v, 3) for k, v in info.get("measures", {}).items()}}


def gate_stage(bundle, settings: GateSettings, batch_size: int, *, noise: str = "const",
               timings: dict | None = None, identity: IdentityCheck | None = None
               ) -> Callable[[Iterable[Item]], Iterator[Item]]:
    """Stage: encoded items -> the same items, each face with ``gate`` (faded, in [0, 1]) and ``gate_info``
    (``raw``, ``limit``, ``components``, ``measures``), see the module doc.

    Args:
        bundle: the job's models (its inverter's generator renders the reconstructions).
        settings: thresholds and fade (:class:`~vidinv.face.gate.GateSettings`; ``identity`` None skips the
            reconstruction).
        batch_size: faces per reconstruction batch.
        noise: the generator noise (as the render stage's).
        timings: a dict to which ``gate`` (seconds) and ``gate_faces`` are added.
        identity: the :class:`IdentityCheck` (default: built on first use).
    """
    inverter = bundle.inverter
    G = inverter.generator
    res = min(GATE_RESOLUTION, int(G.size))
    refs: dict[int, ScoreReference] = {}
    state: dict[str, IdentityCheck | None] = {"check": identity}

    def measure(group: list[Item]) -> None:
        faces = [(it, f) for it in group for f in it.faces]
        if not faces:
            return
        t0 = time.perf_counter()
        dist = [math.nan] * len(faces)
        if settings.identity is not None:
            if state["check"] is None:
                state["check"] = IdentityCheck()
            check = state["check"]
            assert check is not None
            crops = np.stack([align.align_crop(it.frame.image, f.quad, res) for it, f in faces])
            lms = []
            for _, f in faces:
                m = align.crop_matrix(f.quad, res)
                lms.append(f.landmarks @ m[:2, :2].T + m[:2, 2])
            dev = inverter.runtime.torch_device
            with torch.inference_mode(), inverter.runtime.autocast():
                w = torch.stack([f.encoded_w() for _, f in faces]).to(dev, torch.float32)
                F = None
                if inverter.feature_index is not None:
                    F = torch.stack([f.encoded_F() for _, f in faces]).to(dev, torch.float32)
                img = G.preview(w, resolution=res, feature=F, k=inverter.feature_index or 1, noise=noise).float()
                img = ((img.clamp(-1, 1) + 1) * 127.5).nan_to_num(0.0).round().to(torch.uint8)
                recons = img.permute(0, 2, 3, 1).cpu().numpy()
            dist = list(check.distances(crops, recons, np.stack(lms)))
        for (_it, f), d in zip(faces, dist):
            ref = refs.setdefault(f.track_id, ScoreReference())
            drop = ref.push(f.score, f.detector, f.interpolated)
            comps, meas = landmark_components(settings, f.landmarks, f.landmarks_raw, score_drop=drop,
                                              interpolated=f.interpolated)
            if settings.identity is not None:
                meas["identity_distance"] = float(d)
                comps["identity"] = settings.identity(d)
            raw, limit = combine(comps)
            f.gate_info = {"raw": raw, "limit": limit, "components": comps, "measures": meas}
        if timings is not None:
            timings["gate"] = timings.get("gate", 0.0) + time.perf_counter() - t0
            timings["gate_faces"] = timings.get("gate_faces", 0) + len(faces)

    def run(items: Iterable[Item]) -> Iterator[Item]:
        fades = FrameFades(settings.fade)

        def release(done) -> Iterator[Item]:
            for it, gates in done:
                for f in it.faces:
                    f.gate = gates[f.track_id]
                yield it

        group: list[Item] = []
        n = 0

        def process(group: list[Item]) -> Iterator[Item]:
            measure(group)
            for it in group:
                raw = {f.track_id: (f.gate_info or {}).get("raw", 0.0) for f in it.faces}
                yield from release(fades.push(it.frame.index, it, raw))

        for it in items:
            group.append(it)
            n += len(it.faces)
            if n >= batch_size:
                yield from process(group)
                group, n = [], 0
        if group:
            yield from process(group)
        yield from release(fades.flush())
    return run
