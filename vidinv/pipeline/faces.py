"""The per-face stages shared by ``vidinv edit`` and ``vidinv invert``.

Items flowing between stages are :class:`Item` s, one per video frame, in frame order; each holds the
decoded :class:`vidinv.io.video.Frame` and a :class:`FaceCode` per tracked face (empty: the frame
passes through unchanged).

* :func:`front_end_stage`: decoded frames -> items with the tracked faces' quads and landmarks
  (:class:`vidinv.face.frontend.FaceFrontEnd`).
* :func:`encode_stage`: the encoder's crops (:meth:`vidinv.inverters.Inverter.crop`: FFHQ-aligned crops,
  :func:`vidinv.face.align.align_crop`) encoded in batches of ``batch_size`` faces -> w (n_latent, 512)
  and F (C, 16, 16).
* :func:`degrade_stage`: optional, before the front-end: every frame replaced by its simulated
  low-resolution version (pSp's super-resolution degradation, ``vidinv restore --simulate-factor``).
* :func:`style_mixing_stage`: optional: pSp's style mixing with one injected style per track.
* :func:`latent_smoothing_stage`: optional temporal Gaussian smoothing of w and F per track
  (:class:`vidinv.face.smoothing.StreamingGaussian`, look-ahead 4 sigma frames).
* :func:`render_stage`: the latent edit with the edit rule (:meth:`vidinv.inverters.Inverter.edit`, i.e.
  :func:`vidinv.edit.apply_edit`: eq. 1 of the Feature-Style paper, one full synthesis + one coarse
  pass), in batches, then the generator output resized to about the face size in the frame and the
  blend mask.
* :func:`composite_stage`: inverse warp + blend (:func:`vidinv.face.blend.composite`).
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from vidinv.edit.keyframes import EditSchedule
from vidinv.edit.mixing import mix_styles
from vidinv.face import align, blend
from vidinv.face.smoothing import StreamingGaussian
from vidinv.io.video import Frame
from vidinv.models.sr_degradation import simulate_low_resolution_frame

__all__ = ["FaceCode", "Item", "front_end_stage", "encode_stage", "latent_smoothing_stage", "render_stage",
           "composite_stage", "output_size", "face_mask", "BlendSettings", "degrade_stage", "style_mixing_stage",
           "track_style", "upscale_frame"]


@dataclass
class FaceCode:
    """One tracked face in one frame.

    Attributes:
        track_id: face track id.
        quad: (4, 2) float64 crop quad (frame index coordinates); landmarks: (68, 2) float64 smoothed.
        w: (n_latent, 512) float32 tensor (W+, latent_avg included) once encoded.
        F: (C, 16, 16) float32 tensor (values rounded to float16) or None (pSp).
        crop: (S, S, 3) uint8 aligned crop (kept only when needed: masks from parsing, saved PNGs).
        image: (S', S', 3) float32 edited face in [0, 255] at the output crop size S'; mask: (S', S')
            float32 blend mask in [0, 1].
        landmarks_raw: (68, 2) float64 detector landmarks of this frame (None from an inversion export);
            interpolated: the tracker bridged a detection gap here; score, detector: the detection's score
            and detector name (NaN / "" when interpolated or unknown). Read by the confidence gate.
        gate: the edit's confidence gate in [0, 1] (:mod:`vidinv.pipeline.gating`; None: no gate, i.e. 1);
            the blend weight is ``mask * gate``. gate_info: its components and measures (for reports).
    """

    track_id: int
    quad: np.ndarray
    landmarks: np.ndarray
    w: torch.Tensor | None = None
    F: torch.Tensor | None = None
    crop: np.ndarray | None = None
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    recon: np.ndarray | None = None
    landmarks_raw: np.ndarray | None = None
    interpolated: bool = False
    score: float = math.nan
    detector: str = ""
    gate: float | None = None
    gate_info: dict | None = None

    def encoded_w(self) -> torch.Tensor:
        """:attr:`w` for a stage after :func:`encode_stage`.

        Raises:
            RuntimeError: the face has not been encoded.
        """
        if self.w is None:
            raise RuntimeError(f"face of track {self.track_id} has no w: it was not encoded")
        return self.w

    def encoded_F(self) -> torch.Tensor:
        """:attr:`F` for a stage after :func:`encode_stage` of an inverter with a feature code.

        Raises:
            RuntimeError: the face has no feature code (not encoded, or the inverter has none).
        """
        if self.F is None:
            raise RuntimeError(f"face of track {self.track_id} has no feature code F")
        return self.F

    def kept_crop(self) -> np.ndarray:
        """:attr:`crop`, kept by :func:`encode_stage` when asked to (``keep_crops``).

        Raises:
            RuntimeError: the crop was not kept.
        """
        if self.crop is None:
            raise RuntimeError(f"face of track {self.track_id} has no kept crop")
        return self.crop


@dataclass
class Item:
    """One video frame and its faces (see the module doc)."""

    frame: Frame
    faces: list[FaceCode] = field(default_factory=list)
    image: np.ndarray | None = None  # the output picture once composited


def front_end_stage(front_end) -> Callable[[Iterable[Frame]], Iterator[Item]]:
    """Stage: frames -> :class:`Item` s with quads/landmarks from ``front_end.process``."""
    def run(frames: Iterable[Frame]) -> Iterator[Item]:
        for ff in front_end.process(frames):
            yield Item(ff.frame, [FaceCode(f.track_id, np.asarray(f.quad, np.float64),
                                           np.asarray(f.landmarks, np.float64),
                                           landmarks_raw=np.asarray(f.landmarks_raw, np.float64),
                                           interpolated=bool(f.interpolated), score=float(f.score),
                                           detector=str(f.detector))
                                  for f in ff.faces])
    return run


def _batched(items: Iterable[Item], batch_size: int, need) -> Iterator[list[Item]]:
    """Group consecutive items so that each group holds >= batch_size faces needing work (or the rest)."""
    group: list[Item] = []
    n = 0
    for it in items:
        group.append(it)
        n += sum(1 for f in it.faces if need(f))
        if n >= batch_size:
            yield group
            group, n = [], 0
    if group:
        yield group


def encode_stage(bundle, batch_size: int, *, keep_crops: bool = False, timings: dict | None = None, skip=None):
    """Stage: items -> items with ``w`` and ``F`` set for every face (batches of ``batch_size`` faces).

    ``skip(item) -> bool``: a batch whose items are all skipped passes through unencoded (``w`` None);
    batches are formed as without it, so the other faces' codes are bit-identical to a full run's
    (``vidinv invert --resume`` skips the frames already stored)."""
    inverter = bundle.inverter

    def run(items: Iterable[Item]) -> Iterator[Item]:
        for group in _batched(items, batch_size, lambda f: True):
            faces = [f for it in group for f in it.faces]
            if faces and skip is not None and all(skip(it) for it in group):
                faces = []
            if faces:
                t0 = time.perf_counter()
                crops = np.stack([inverter.crop(it.frame.image, f.quad) for it in group for f in it.faces])
                t1 = time.perf_counter()
                w, F = inverter.encode(crops)
                for i, f in enumerate(faces):
                    f.w = w[i]
                    f.F = F[i] if F is not None else None
                    if keep_crops:
                        f.crop = crops[i]
                if timings is not None:
                    timings["align"] = timings.get("align", 0.0) + t1 - t0
                    timings["encode"] = timings.get("encode", 0.0) + time.perf_counter() - t1
            yield from group
    return run


def latent_smoothing_stage(sigma: float):
    """Stage: temporal Gaussian smoothing (sigma in frames) of w and F along each track.

    Streaming: a track's outputs come ``4 sigma`` frames late; when a frame arrives without a track
    the track ends and its last outputs are flushed (reflect boundary, as
    :func:`vidinv.face.smoothing.gaussian_smooth` of the whole track). Items leave in frame order.
    """
    def run(items: Iterable[Item]) -> Iterator[Item]:
        pending: deque[tuple[Item, set]] = deque()
        tracks: dict[int, tuple[StreamingGaussian, StreamingGaussian | None, list]] = {}

        def deliver(tid: int, outs_w, outs_f) -> None:
            faces = tracks[tid][2]
            for k, (i, wv) in enumerate(outs_w):
                face, waiting = faces[i]
                face.w = torch.from_numpy(wv.astype(np.float32)).to(face.w.device)
                if outs_f is not None:
                    face.F = torch.from_numpy(outs_f[k][1].astype(np.float16).astype(np.float32)).to(face.F.device)
                waiting.discard(tid)

        def end(tid: int) -> None:
            sw, sf, _ = tracks[tid]
            deliver(tid, sw.flush(), sf.flush() if sf is not None else None)
            del tracks[tid]

        for it in items:
            present = {f.track_id for f in it.faces}
            for tid in [t for t in tracks if t not in present]:
                end(tid)
            waiting = set(present)
            pending.append((it, waiting))
            for f in it.faces:
                if f.track_id not in tracks:
                    tracks[f.track_id] = (StreamingGaussian(sigma), StreamingGaussian(sigma) if f.F is not None
                                          else None, [])
                sw, sf, faces = tracks[f.track_id]
                faces.append((f, waiting))
                deliver(f.track_id, sw.push(f.encoded_w().detach().cpu().numpy()),
                        sf.push(f.encoded_F().detach().cpu().numpy()) if sf is not None else None)
            while pending and not pending[0][1]:
                yield pending.popleft()[0]
        for tid in list(tracks):
            end(tid)
        while pending:
            yield pending.popleft()[0]
    return run


def output_size(quad: np.ndarray, generator_size: int) -> int:
    """Side of the edited crop handed to the inverse warp: the face's size in the frame (quad side,
    rounded up to a multiple of 8, at least 64) capped at the generator size, so the warp never shrinks
    a 1024 image to a 100-pixel face."""
    q = float(np.mean(align.quad_size(quad)))
    return int(min(generator_size, max(64, 8 * math.ceil(q / 8))))


@dataclass
class BlendSettings:
    """Blend mask: from BiSeNet parsing when a parser is loaded, else from landmarks; dilated by
    ``dilate`` and feathered over ``feather`` (fractions of the crop side); composite ``mode``."""

    mode: str = "alpha"
    dilate: float = 0.01
    feather: float = 0.04


def face_mask(face: FaceCode, size: int, settings: BlendSettings, labels: np.ndarray | None = None) -> np.ndarray:
    """(size, size) float32 blend mask of ``face`` in the crop's coordinates (see :class:`BlendSettings`)."""
    if labels is not None:
        import cv2

        m = blend.mask_from_parsing(labels)
        if m.shape[0] != size:
            m = (cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.float32)
    else:
        mat = align.crop_matrix(face.quad, size)
        lm = np.c_[face.landmarks, np.ones(len(face.landmarks))] @ mat[:2].T
        m = blend.mask_from_landmarks(lm, size)
    return blend.feather_mask(m, max(0, round(settings.dilate * size)), max(1, round(settings.feather * size)))


def render_stage(bundle, edit, batch_size: int, *, noise: str = "const", settings: BlendSettings | None = None,
                 timings: dict | None = None, scale: int = 1, skip: Callable[[Item], bool] | None = None):
    """Stage: items with (w, F) -> items whose faces carry the edited face ``image`` and ``mask``.

    The image is the inverter's edit of the codes (:meth:`vidinv.inverters.Inverter.edit`): with a
    feature code ``G(w', F')``, ``w' = w + Δw`` and ``F' = F + G^K(w') - G^K(w)``; without one
    ``G(w')``. Generator output in [-1, 1] is mapped to [0, 255] and resized (area) to
    :func:`output_size` of the quad scaled by ``scale`` (the output frame's up-scaling factor, see
    :func:`composite_stage`) on the device.

    ``edit`` is one built edit for every face, or an :class:`~vidinv.edit.keyframes.EditSchedule`: each face
    then gets the edit of its track at its frame's time (:meth:`~vidinv.edit.keyframes.EditSchedule.batch_edit`:
    a per-sample Δw (B, n_latent, D) where the faces of a batch differ); every face must be of a track the
    schedule edits (drop the others before).

    ``skip(item) -> bool``: as :func:`encode_stage`'s: a batch whose items are all skipped passes through
    unrendered (faces without ``image`` / ``mask``, which :func:`composite_stage` leaves out); batches are
    formed as without it (a segment's context frames, :mod:`vidinv.pipeline.segments`).
    """
    settings = settings or BlendSettings()
    inverter = bundle.inverter
    G = inverter.generator
    dev = inverter.runtime.torch_device

    def run(items: Iterable[Item]) -> Iterator[Item]:
        for group in _batched(items, batch_size, lambda f: True):
            faces = [f for it in group for f in it.faces]
            if faces and skip is not None and all(skip(it) for it in group):
                faces = []
            if faces:
                t0 = time.perf_counter()
                with torch.inference_mode(), inverter.runtime.autocast():
                    w = torch.stack([f.encoded_w() for f in faces]).to(dev, torch.float32)
                    F = None
                    if inverter.feature_index is not None:
                        F = torch.stack([f.encoded_F() for f in faces]).to(dev, torch.float32)
                    e = edit
                    if isinstance(edit, EditSchedule):
                        e = edit.batch_edit([(f.track_id, it.frame.time) for it in group for f in it.faces])
                    img = inverter.edit(w, F, e, noise=noise)
                    img = img.float()  # +-inf would clamp to a finite colour: keep it non-finite for the guard
                    img = ((img.clamp(-1, 1) + 1) * 127.5).masked_fill_(~torch.isfinite(img), float("nan"))
                    outs = []
                    for i, f in enumerate(faces):
                        s = output_size(f.quad * scale, G.size)
                        x = img[i:i + 1]
                        if s != x.shape[-1]:
                            x = torch.nn.functional.interpolate(x, size=(s, s), mode="area")
                        outs.append(x[0].permute(1, 2, 0).contiguous().cpu().numpy())
                t1 = time.perf_counter()
                labels = [None] * len(faces)
                if bundle.parser is not None:  # parse the source face (aligned at BiSeNet's 512)
                    crops = np.stack([align.align_crop(it.frame.image, f.quad, 512) for it in group for f in it.faces])
                    with torch.inference_mode():
                        x = torch.from_numpy(crops).permute(0, 3, 1, 2)
                        labels = list(bundle.parser.parse(x).cpu().numpy())
                for f, o, lab in zip(faces, outs, labels):
                    f.image = o
                    f.mask = face_mask(f, o.shape[0], settings, lab)
                if timings is not None:
                    timings["generate"] = timings.get("generate", 0.0) + t1 - t0
                    timings["generator_calls"] = timings.get("generator_calls", 0) + 1
                    timings["mask"] = timings.get("mask", 0.0) + time.perf_counter() - t1
            yield from group
    return run


def upscale_frame(image: np.ndarray, scale: int) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB up-scaled to (scale H, scale W, 3) with Lanczos (OpenCV
    ``INTER_LANCZOS4``, 8x8 taps); ``scale`` 1 returns ``image`` itself. The background of ``vidinv restore``."""
    if scale == 1:
        return image
    import cv2

    h, w = image.shape[:2]
    return cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_LANCZOS4)


def composite_stage(settings: BlendSettings | None = None, scale: int = 1):
    """Stage: items -> items with ``image`` = the output picture (faces pasted back; frames without a
    face keep the decoded picture itself, untouched).

    With ``scale`` > 1 the output picture is the frame up-scaled by :func:`upscale_frame` and each face is
    pasted with its quad scaled by ``scale`` (frames without a face are up-scaled too).

    A face with a confidence gate (``face.gate``, :mod:`vidinv.pipeline.gating`) is blended with the weight
    ``mask * gate``; a gate of 0 skips the face, so its pixels are the input's, byte for byte."""
    settings = settings or BlendSettings()
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale}")

    def run(items: Iterable[Item]) -> Iterator[Item]:
        for it in items:
            out = upscale_frame(it.frame.image, scale)
            for f in it.faces:
                mask = f.mask
                if f.gate is not None and mask is not None:
                    mask = mask * np.float32(f.gate) if f.gate > 0 else None
                if mask is not None:
                    out = blend.composite(out, f.image, f.quad * scale, mask, mode=settings.mode)
                f.image = f.mask = None  # free early
            it.image = out
            yield it
    return run


def degrade_stage(factor: int):
    """Stage (before the front-end): frames -> the same frames with the picture replaced by its simulated
    low-resolution version, :func:`vidinv.models.sr_degradation.simulate_low_resolution_frame` (pSp's
    ``BilinearResize`` by ``factor`` and back to the frame size), for evaluating super-resolution on a
    high-resolution video (``vidinv restore --simulate-factor``)."""
    def run(frames: Iterable[Frame]) -> Iterator[Frame]:
        for fr in frames:
            yield replace(fr, image=simulate_low_resolution_frame(fr.image, factor))
    return run


def track_style(generator, track_id: int, seed: int) -> torch.Tensor:
    """The injected style of one track: the W+ (1, n_latent, style_dim) float32 of one random z ~ N(0, I)
    (drawn on the CPU from ``torch.Generator().manual_seed(seed + track_id)``) through the generator's
    mapping network, repeated over the rows (pSp ``scripts/style_mixing.py``: ``net(z, input_code=True,
    return_latents=True)``, no truncation). Same seed and track: the same style in every frame and run."""
    z = torch.randn(1, generator.style_dim, generator=torch.Generator().manual_seed(int(seed) + int(track_id)))
    with torch.inference_mode():
        w = generator.mapping(z.to(next(generator.parameters()).device)).float()
    return w.unsqueeze(1).repeat(1, generator.n_latent, 1)


def style_mixing_stage(generator, rows, alpha: float | None = 1.0, seed: int = 0):
    """Stage: items with w -> the same items with each face's W+ rows ``rows`` mixed towards its track's
    injected style (:func:`track_style`) by :func:`vidinv.edit.mixing.mix_styles` (pSp's multi-modal
    synthesis: ``w[i] = alpha * inject[i] + (1 - alpha) * w[i]`` for i in ``rows``). One style per track,
    fixed for the whole clip, so the output does not flicker."""
    styles: dict[int, torch.Tensor] = {}

    def run(items: Iterable[Item]) -> Iterator[Item]:
        for it in items:
            for f in it.faces:
                if f.track_id not in styles:
                    styles[f.track_id] = track_style(generator, f.track_id, seed)
                w = f.encoded_w()
                f.w = mix_styles(w.unsqueeze(0), styles[f.track_id].to(w.device, w.dtype), rows, alpha)[0]
            yield it
    return run
