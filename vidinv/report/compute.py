"""Per-frame and per-video computation of a report: front-end, identity embeddings, pixel metrics.

:func:`analyse_video` runs the face front-end (:class:`vidinv.face.frontend.FaceFrontEnd`) over one
video, keeps the tracked target face of every frame (landmarks, smoothed quad, box) and embeds it with
every identity network (:mod:`vidinv.metrics.identity`), each with its own alignment. Frames without a
tracked face get NaN embeddings and are left out of the identity metrics (and counted). It also records,
per frame, which stage of the dlib detector produced the detections (HOG, or the slow CNN fallback when
the detector has it switched on; see :func:`detection_summary`).

:func:`compare_videos` analyses an output video the same way and, in the same pass, decodes the source
again in lockstep (frame i of the output against frame i of the source) to measure, per frame:

* on the aligned face crops (``crop_size``², both frames cut with the *source's* quad so the two crops
  cover the same region): MSE, PSNR, SSIM and LPIPS (when its weights are cached);
* background preservation: PSNR and SSIM of the whole frame outside the blend mask (the source's
  landmark face mask, :func:`vidinv.face.blend.mask_from_landmarks`, dilated and feathered with
  :func:`vidinv.face.blend.feather_mask`, warped into the frame; every pixel the mask reaches is
  excluded); frames where the source has no face compare the whole frame;
* the frame-to-frame change of the face region (:func:`vidinv.metrics.temporal.frame_change`, inside
  the landmark mask of both frames) of the source and of the output, for the flicker measure.

Videos of different lengths are compared over their common frames (the mismatch is reported); frames
of different sizes get no pixel metrics (reported), identity metrics still work.

Memory: only per-frame numbers, landmarks and embeddings are kept; frames are streamed.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vidinv.face import align, blend
from vidinv.face.detect import is_blank
from vidinv.io.video import Frame, VideoReader, probe
from vidinv.metrics import image as im
from vidinv.metrics.identity import IdentityEmbedder
from vidinv.metrics.seam import SEAM_WIDTH, seam_band, seam_metrics
from vidinv.metrics.temporal import frame_change

log = logging.getLogger(__name__)

__all__ = ["ReportOptions", "FaceRecord", "BatchedEmbedding", "face_record",
           "VideoAnalysis", "PairAnalysis", "analyse_video", "compare_videos",
           "iter_frames", "face_mask_aligned", "blend_region", "DETECTION_STATUS", "detection_summary"]


@dataclass
class ReportOptions:
    """Settings of a report.

    Attributes:
        crop_size: side (pixels) of the aligned face crops for MSE/PSNR/SSIM/LPIPS and flicker (256, as
            the Feature-Style encoder's input and LPIPS evaluation resolution).
        stride: analyse every ``stride``-th frame (1 = all). Identity consistency and TL-ID then compare
            frames ``stride`` apart.
        max_frames: analyse at most this many frames per video (after the stride); None = all.
        mask_dilate, mask_feather: dilation and feathering of the blend mask used for background
            preservation, as fractions of ``crop_size`` (0.06 each = 15 px at 256).
        forehead: forehead extension of the landmark mask (see ``mask_from_landmarks``).
        embed_batch: faces per identity-network call.
        progress: show a tqdm progress bar (stderr).
        source_start, source_stop: original frame range ``[start, stop)`` of the *source* videos to analyse
            (default all): output frame 0 is compared with source frame ``source_start`` (e.g. the window an
            edit was cut to). Outputs are always read from their first frame.
    """

    crop_size: int = 256
    stride: int = 1
    max_frames: int | None = None
    mask_dilate: float = 0.06
    mask_feather: float = 0.06
    forehead: float = 0.4
    embed_batch: int = 16
    progress: bool = True
    source_start: int = 0
    source_stop: int | None = None

    def as_dict(self) -> dict:
        return {"crop_size": self.crop_size, "stride": self.stride, "max_frames": self.max_frames,
                "mask_dilate": self.mask_dilate, "mask_feather": self.mask_feather, "forehead": self.forehead,
                "source_start": self.source_start, "source_stop": self.source_stop}

    def frame_range(self, role: str) -> tuple[int, int | None]:
        """``(start, stop)`` original frames to read for a video of this role."""
        return (self.source_start, self.source_stop) if role == "source" else (0, None)


@dataclass
class FaceRecord:
    """The tracked target face of one frame (frame pixels, float64; see ``TrackedFace``)."""

    track_id: int
    interpolated: bool
    landmarks: np.ndarray
    quad: np.ndarray
    qsize: float
    box: np.ndarray


@dataclass
class VideoAnalysis:
    """What :func:`analyse_video` learnt about one video.

    Attributes:
        path, label, role: the file, its display name, ``"source"`` or ``"output"``.
        info: ``width``, ``height``, ``fps``, ``num_frames`` (container count or None), ``rotation``.
        frame_index: original frame index of each analysed frame (``K`` entries).
        faces: ``K`` entries, a :class:`FaceRecord` or None (no tracked face).
        embeddings: identity-network key -> ``(K, D)`` float32, NaN rows where there is no face.
        frontend_stats: the front-end's counters.
        timing: seconds: ``total``, ``identity`` (alignment + network), ``pixel`` (pixel metrics of a
            comparison), ``frontend`` (decoding + detection + tracking, the rest); ``ms_per_frame``.
        notes: things the report should say (decode errors ...).
        source: for outputs, the label of their source.
        detection: :func:`detection_summary` of the frames (how many went to the CNN fallback ...).
    """

    path: Path
    label: str
    role: str
    info: dict
    frame_index: list[int] = field(default_factory=list)
    faces: list[FaceRecord | None] = field(default_factory=list)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    frontend_stats: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source: str | None = None
    detection: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.frame_index)

    @property
    def has_face(self) -> np.ndarray:
        return np.array([f is not None for f in self.faces], dtype=bool)


@dataclass
class PairAnalysis:
    """Source/output comparison of :func:`compare_videos`.

    Attributes:
        source, output: the two :class:`VideoAnalysis`.
        compared: frames decoded from both (pixel metrics are per frame over these; identity over
            ``min(K_source, K_output)``).
        per_frame: name -> ``(compared,)`` float64 arrays (NaN where not computed): ``crop_mse``,
            ``crop_psnr``, ``crop_ssim``, ``crop_lpips``, ``bg_psnr``, ``bg_ssim``, ``bg_fraction`` (share of
            the frame counted as background), ``change_source``, ``change_output`` (frame-to-frame change
            with the previous frame, 8-bit levels).
        lpips: description of the LPIPS network, or None.
        lpips_reason: why LPIPS is missing (None when computed).
        pixel_reason: why pixel metrics are missing (e.g. frame sizes differ), else None.
        warnings: human-readable warnings (frame-count mismatch ...).
    """

    source: VideoAnalysis
    output: VideoAnalysis
    compared: int = 0
    per_frame: dict[str, np.ndarray] = field(default_factory=dict)
    lpips: dict | None = None
    lpips_reason: str | None = None
    pixel_reason: str | None = None
    warnings: list[str] = field(default_factory=list)


PER_FRAME_PIXEL = ("crop_mse", "crop_psnr", "crop_ssim", "crop_lpips", "bg_psnr", "bg_ssim", "bg_fraction",
                   "change_source", "change_output", "seam_colour", "seam_gradient")


def iter_frames(path: str | os.PathLike, stride: int = 1, max_frames: int | None = None,
                notes: list[str] | None = None, start: int = 0, stop: int | None = None
                ) -> Generator[tuple[Frame, int], None, None]:
    """Decode ``path`` and yield ``(frame, original_index)`` for every ``stride``-th frame of
    ``[start, stop)`` (original frame indices; ``stop=None``: to the end).

    The yielded :class:`~vidinv.io.video.Frame` is re-indexed 0, 1, 2, ... (what the front-end expects);
    at most ``max_frames`` are yielded. A decoding error ends the stream early: it is logged and
    appended to ``notes`` instead of raised (a truncated output is compared over what could be read).
    """
    import av

    stride = max(1, int(stride))
    start = max(0, int(start))
    if max_frames is not None:
        last = start + int(max_frames) * stride
        stop = last if stop is None else min(int(stop), last)
    j = 0
    try:
        for f in VideoReader(path, start=start, stop=stop):
            if (f.index - start) % stride:
                continue
            yield Frame(index=j, image=f.image, pts=f.pts, time_base=f.time_base, time=f.time), f.index
            j += 1
    except (av.error.FFmpegError, OSError) as e:
        msg = f"{Path(path).name}: decoding stopped after {j} analysed frames ({type(e).__name__}: {e})"
        log.warning(msg)
        if notes is not None:
            notes.append(msg)


def _video_info(path: Path) -> dict:
    info = probe(path)
    w, h = info.display_size
    return {"width": int(w), "height": int(h), "fps": float(info.fps) if info.fps else None,
            "num_frames": info.num_frames, "estimated_frames": info.estimated_frames, "rotation": info.rotation}


def face_record(face) -> FaceRecord:
    """A front-end face (:class:`vidinv.face.frontend.TrackedFace`-like: ``track_id``, ``interpolated``,
    ``landmarks`` (68, 2), ``quad`` (4, 2), ``qsize``, ``box``) as a :class:`FaceRecord` of float64 arrays."""
    return FaceRecord(track_id=int(face.track_id), interpolated=bool(face.interpolated),
                      landmarks=np.asarray(face.landmarks, np.float64), quad=np.asarray(face.quad, np.float64),
                      qsize=float(face.qsize), box=np.asarray(face.box, np.float64))


#: Per-frame detection outcome recorded by :func:`analyse_video`: ``"hog"`` (dlib's HOG found the face),
#: ``"cnn_face"`` / ``"cnn_none"`` (HOG found nothing, the CNN fallback ran and found a face / nothing),
#: ``"missed"`` (HOG found nothing and the fallback is off), ``"blank"`` (uniform frame, no detector run),
#: ``"other"`` (a detector without HOG/CNN stages, e.g. FAN).
DETECTION_STATUS = ("hog", "cnn_face", "cnn_none", "missed", "blank", "other")


def _detection_status(frame: np.ndarray, faces, detector) -> str:

    fallback = getattr(detector, "cnn_fallback", None)
    if any(getattr(f, "detector", None) == "dlib_hog" for f in faces):
        return "hog"
    if fallback is None:
        return "other"
    if is_blank(frame, getattr(detector, "blank_std", 2.0)):
        return "blank"
    if fallback:
        return "cnn_face" if faces else "cnn_none"
    return "missed"


class _DetectionLog:
    """Stands in for a front-end's detector during one video: forwards ``detect`` and records, per frame
    in call order, a :data:`DETECTION_STATUS` (derived from the detections, so it also holds for detectors
    whose results are memoised)."""

    def __init__(self, detector):
        self.detector = detector
        self.status: list[str] = []

    def __getattr__(self, name):
        return getattr(self.detector, name)

    def detect(self, frames):
        found = self.detector.detect(frames)
        for frame, faces in zip(frames, found):
            self.status.append(_detection_status(np.asarray(frame), faces, self.detector))
        return found

    __call__ = detect


def detection_summary(status: Sequence[str], frame_index: Sequence[int], detector) -> dict:
    """What the detector did on one video.

    Args:
        status: per analysed frame, a :data:`DETECTION_STATUS` value.
        frame_index: original index of each analysed frame.
        detector: the front-end's detector (its ``name`` and ``cnn_fallback`` are recorded), or None
            when unknown.

    Returns:
        ``detector`` (name or None), ``cnn_fallback`` (bool; None for detectors without one), ``cnn_frames``
        (frames the CNN fallback ran on), ``cnn_face_frames`` (of those, frames where it found a face),
        ``cnn_frame_index`` (original indices of ``cnn_frames``), ``hog_missed`` (non-blank frames where
        HOG found no face, whether or not the CNN then ran), ``blank_frames``.
    """
    st = list(status)
    fi = list(frame_index)
    cnn = [int(fi[j]) for j, x in enumerate(st[:len(fi)]) if x in ("cnn_face", "cnn_none")]
    return {
        "detector": None if detector is None else getattr(detector, "name", type(detector).__name__),
        "cnn_fallback": (None if getattr(detector, "cnn_fallback", None) is None
                         else bool(detector.cnn_fallback)),
        "cnn_frames": len(cnn),
        "cnn_face_frames": sum(x == "cnn_face" for x in st),
        "cnn_frame_index": cnn,
        "hog_missed": sum(x in ("cnn_face", "cnn_none", "missed") for x in st),
        "blank_frames": sum(x == "blank" for x in st),
    }


class BatchedEmbedding:
    """Batched alignment + embedding of one identity network over a stream of frames."""

    def __init__(self, embedder: IdentityEmbedder, batch: int):
        self.embedder = embedder
        self.batch = max(1, int(batch))
        self.rows: dict[int, np.ndarray] = {}
        self.pending: list[tuple[int, np.ndarray]] = []
        self.seconds = 0.0

    def add(self, j: int, image: np.ndarray, face: FaceRecord) -> None:
        t = time.perf_counter()
        self.pending.append((j, self.embedder.align(image, face)))
        self.seconds += time.perf_counter() - t
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        t = time.perf_counter()
        emb = self.embedder.embed_chips([c for _, c in self.pending])
        for (j, _), e in zip(self.pending, emb):
            self.rows[j] = e
        self.pending = []
        self.seconds += time.perf_counter() - t

    def matrix(self, n: int) -> np.ndarray:
        self.flush()
        out = np.full((n, self.embedder.dim), np.nan, np.float32)
        for j, e in self.rows.items():
            if j < n:
                out[j] = e
        return out


def analyse_video(path: str | os.PathLike, embedders: Sequence[IdentityEmbedder], frontend,
                  options: ReportOptions | None = None, *, role: str = "source", label: str | None = None,
                  on_frame: Callable[[int, np.ndarray, FaceRecord | None], None] | None = None) -> VideoAnalysis:
    """Run the front-end and the identity networks over one video.

    Args:
        path: the video file.
        embedders: identity networks (each aligns faces its own way).
        frontend: a :class:`vidinv.face.frontend.FaceFrontEnd` (reset by each ``process`` call).
        options: :class:`ReportOptions` (stride, max_frames, batch, progress).
        role, label: stored in the result (label default: the file name).
        on_frame: called as ``on_frame(j, image, record)`` for each analysed frame j in order (used by
            :func:`compare_videos` for the pixel metrics); its time is counted as ``timing["pixel"]``.

    Returns:
        :class:`VideoAnalysis`.

    Raises:
        FileNotFoundError / ValueError: the video cannot be opened.
    """
    from tqdm import tqdm

    opts = options or ReportOptions()
    path = Path(path)
    res = VideoAnalysis(path=path, label=label or path.name, role=role, info=_video_info(path))
    est = res.info["estimated_frames"]
    first, last = opts.frame_range(role)
    total = None
    if est:
        est = max(0, (min(est, last) if last is not None else est) - first)
        total = math.ceil(est / max(1, opts.stride))
        if opts.max_frames is not None:
            total = min(total, opts.max_frames)
    embeds = [BatchedEmbedding(e, opts.embed_batch) for e in embedders]
    orig_index: list[int] = []

    def frames():
        for fr, k in iter_frames(path, opts.stride, opts.max_frames, res.notes, first, last):
            orig_index.append(k)
            yield fr

    t0 = time.perf_counter()
    pixel_s = 0.0
    real_detector = getattr(frontend, "detector", None)
    dlog = _DetectionLog(real_detector) if real_detector is not None else None
    if dlog is not None:
        frontend.detector = dlog
    bar = tqdm(total=total, desc=f"{role} {res.label}", unit="frame", disable=not opts.progress, leave=False,
               dynamic_ncols=True)
    try:
        for ff in frontend.process(frames()):
            rec = face_record(ff.faces[0]) if ff.faces else None
            res.faces.append(rec)
            if rec is not None:
                for e in embeds:
                    e.add(ff.index, ff.frame.image, rec)
            if on_frame is not None:
                tp = time.perf_counter()
                on_frame(ff.index, ff.frame.image, rec)
                pixel_s += time.perf_counter() - tp
            bar.update(1)
    finally:
        bar.close()
        if dlog is not None:
            frontend.detector = real_detector
    n = len(res.faces)
    res.frame_index = orig_index[:n]
    if dlog is not None:
        res.detection = detection_summary(dlog.status[:n], res.frame_index, real_detector)
    for e in embeds:
        res.embeddings[e.embedder.key] = e.matrix(n)
    total_s = time.perf_counter() - t0
    ident_s = sum(e.seconds for e in embeds)
    res.frontend_stats = {k: v for k, v in getattr(frontend, "stats", {}).items() if isinstance(v, (int, float))}
    res.timing = {"total": total_s, "identity": ident_s, "pixel": pixel_s,
                  "frontend": max(total_s - ident_s - pixel_s, 0.0),
                  "ms_per_frame": 1000.0 * total_s / n if n else None}
    return res


def face_mask_aligned(record: FaceRecord, size: int, forehead: float = 0.4) -> np.ndarray:
    """Landmark face mask of ``record`` in its aligned crop: ``(size, size)`` bool."""

    m = align.crop_matrix(record.quad, size)
    lm = record.landmarks @ m[:2, :2].T + m[:2, 2]
    return blend.mask_from_landmarks(lm, size, forehead=forehead) > 0


def blend_region(record: FaceRecord, frame_hw: tuple[int, int], options: ReportOptions) -> np.ndarray:
    """``(H, W)`` bool: frame pixels the blend mask of ``record`` reaches (warped feathered mask > 0)."""

    s = int(options.crop_size)
    mask = face_mask_aligned(record, s, options.forehead).astype(np.float32)
    soft = blend.feather_mask(mask, int(round(options.mask_dilate * s)), int(round(options.mask_feather * s)))
    warped, coverage, (x0, y0, x1, y1) = align.unalign_roi(soft, record.quad, frame_hw, border_mode="constant")
    out = np.zeros(frame_hw, dtype=bool)
    if warped.size:
        out[y0:y1, x0:x1] = (warped * coverage) > 0
    return out


class _PairMeter:
    """Pixel metrics of one output frame against the same source frame (called by analyse_video)."""

    def __init__(self, source: VideoAnalysis, options: ReportOptions, lpips_metric, pair: PairAnalysis):
        self.src = source
        self.opts = options
        self.lpips = lpips_metric
        self.pair = pair
        self.notes: list[str] = []
        self.stream = iter_frames(source.path, options.stride, options.max_frames, self.notes,
                                  *options.frame_range("source"))
        self.exhausted = False
        self.values: dict[str, list[float]] = {k: [] for k in PER_FRAME_PIXEL}
        self.prev: tuple | None = None  # (j, src_crop, out_crop, mask)

    def _next_source(self, j: int):
        if self.exhausted:
            return None
        for fr, _ in self.stream:
            if fr.index == j:
                return fr.image
            if fr.index > j:  # cannot happen: both streams count from 0
                break
        self.exhausted = True
        return None

    def __call__(self, j: int, out_img: np.ndarray, _out_rec) -> None:

        src_img = self._next_source(j)
        if src_img is None:
            return
        v = {k: math.nan for k in PER_FRAME_PIXEL}
        self.pair.compared = j + 1
        if src_img.shape != out_img.shape:
            if self.pair.pixel_reason is None:
                self.pair.pixel_reason = (f"frame sizes differ (source {src_img.shape[1]}x{src_img.shape[0]}, "
                                          f"output {out_img.shape[1]}x{out_img.shape[0]}): no pixel metrics")
            self._push(v)
            return
        rec = self.src.faces[j] if j < len(self.src.faces) else None
        hw = src_img.shape[:2]
        if rec is not None:
            s = int(self.opts.crop_size)
            sc = align.align_crop(src_img, rec.quad, s)
            oc = align.align_crop(out_img, rec.quad, s)
            v["crop_mse"] = im.mse(sc, oc)
            v["crop_psnr"] = float(im.psnr_from_mse(v["crop_mse"]))
            v["crop_ssim"] = im.ssim(sc, oc)
            if self.lpips is not None:
                v["crop_lpips"] = float(self.lpips(sc, oc))
            mask = face_mask_aligned(rec, s, self.opts.forehead)
            seam = seam_metrics(oc, sc, seam_band(mask, max(1, round(SEAM_WIDTH * s))))
            v["seam_colour"], v["seam_gradient"] = seam["colour"], seam["gradient"]
            if self.prev is not None and self.prev[0] == j - 1:
                both = mask & self.prev[3]
                v["change_source"] = frame_change(self.prev[1], sc, both)
                v["change_output"] = frame_change(self.prev[2], oc, both)
            self.prev = (j, sc, oc, mask)
            bg = ~blend_region(rec, hw, self.opts)
        else:
            self.prev = None
            bg = np.ones(hw, dtype=bool)
        v["bg_fraction"] = float(bg.mean())
        if bg.any():
            v["bg_psnr"] = float(im.psnr(src_img, out_img, mask=bg))
            v["bg_ssim"] = im.ssim(src_img, out_img, mask=bg)
        self._push(v)

    def _push(self, v: dict) -> None:
        for k in PER_FRAME_PIXEL:
            self.values[k].append(float(v[k]))


def compare_videos(source: VideoAnalysis, output_path: str | os.PathLike, embedders: Sequence[IdentityEmbedder],
                   frontend, options: ReportOptions | None = None, *, lpips_metric=None,
                   lpips_reason: str | None = None, label: str | None = None) -> PairAnalysis:
    """Analyse an output video and measure it against its (already analysed) source.

    Args:
        source: :func:`analyse_video` result of the source (same ``options``).
        output_path: the output video.
        embedders, frontend, options: as :func:`analyse_video` (use the same embedders as for the source).
        lpips_metric: a :class:`vidinv.metrics.image.LPIPSMetric`, or None (then ``lpips_reason`` says why).
        label: display name of the output.

    Returns:
        :class:`PairAnalysis` (its ``output`` is the output's :class:`VideoAnalysis`).
    """
    opts = options or ReportOptions()
    pair = PairAnalysis(source=source, output=None)  # type: ignore[arg-type]
    pair.lpips = lpips_metric.describe() if lpips_metric is not None else None
    pair.lpips_reason = None if lpips_metric is not None else (lpips_reason or "LPIPS not requested")
    meter = _PairMeter(source, opts, lpips_metric, pair)
    try:
        out = analyse_video(output_path, embedders, frontend, opts, role="output", label=label, on_frame=meter)
    finally:
        meter.stream.close()  # the source may be longer than the output
    out.source = source.label
    pair.output = out
    n = pair.compared
    pair.per_frame = {k: np.asarray(meter.values[k][:n], dtype=np.float64) for k in PER_FRAME_PIXEL}
    out.notes.extend(meter.notes)
    ks, ko = source.num_frames, out.num_frames
    if ks != ko:
        pair.warnings.append(f"frame counts differ: source {source.label} has {ks} analysed frames, output "
                             f"{out.label} has {ko}; compared over the first {min(ks, ko)}")
    if pair.pixel_reason:
        pair.warnings.append(pair.pixel_reason)
    return pair
