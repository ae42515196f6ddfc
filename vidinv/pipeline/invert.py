"""The ``vidinv invert`` job: a video in, an inversion export (:mod:`vidinv.io.inversion`) out.

Stages: decode -> faces (detect, landmarks, track, smooth) -> encode (align + encoder, batched) ->
[reconstruct] -> write records. Each face in each frame becomes one record (w, F, quad, landmarks,
track id, frame index, pts, time); ``save_crops`` / ``save_recon`` also store the aligned crop and
the encoder's reconstruction ``G(w, F)`` as PNGs (``image_size`` pixels). The export names the source
video, so ``vidinv edit --from-inversion DIR`` can re-render without detection or encoding.

Resume (``resume=True``, ``vidinv invert --resume``): an export left incomplete by an interruption
(Ctrl-C, SIGTERM, kill, crash, an error) is reopened with :meth:`vidinv.io.inversion.InversionWriter.resume`
after checking that it was made with the same video, models and settings. Face detection, tracking
and landmark smoothing run again from the start of the window (they carry state from frame to frame),
the encoder runs only on batches that reach :attr:`~vidinv.io.inversion.InversionWriter.next_frame`
(batches formed as in a full run), and records are appended from that frame on: on the same
machine the export's records equal those of one uninterrupted run, byte for byte.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from vidinv.pipeline.faces import Item, encode_stage, front_end_stage
from vidinv.pipeline.runtime import GENERATOR_FILE, Runtime, load_bundle, required_weights, resolve_weights
from vidinv.pipeline.stages import StagePipeline

__all__ = ["InvertOptions", "InvertResult", "run_invert"]


@dataclass
class InvertOptions:
    """Settings of ``vidinv invert`` (see ``vidinv invert --help``); fields as :class:`~vidinv.pipeline.edit.EditOptions`
    plus ``save_crops``, ``save_recon``, ``image_size`` (PNG side), ``chunk_size`` (records per chunk; a
    resumed export keeps its own), ``overwrite`` (replace an existing export) and ``resume`` (continue an
    incomplete one, see the module doc; excludes ``overwrite``)."""

    src: str | os.PathLike
    dst: str | os.PathLike
    encoder: str = "fs"
    face: str = "largest"
    batch_size: int = 4
    device: str = "auto"
    precision: str = "fp32"
    start: float | None = None
    end: float | None = None
    weights_dir: str | os.PathLike | None = None
    fetch: bool = False
    allow_hash_mismatch: bool = False
    encoder_checkpoint: str | os.PathLike | None = None
    save_crops: bool = False
    save_recon: bool = False
    image_size: int = 256
    chunk_size: int = 32
    overwrite: bool = False
    resume: bool = False
    queue_size: int = 4
    detector: str = "dlib"


@dataclass
class InvertResult:
    """Frames read, records in the export (``records``; of them written by this run: ``records_new``),
    the frame a resumed run continued from (``resumed_from``, None for a new export), tracks, per-stage
    busy seconds, wall time."""

    dst: Path
    frames: int = 0
    records: int = 0
    records_new: int = 0
    resumed_from: int | None = None
    tracks: list[int] = field(default_factory=list)
    stage_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.shape[0] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR)


def run_invert(opts: InvertOptions, progress: Callable[[int, int | None], None] | None = None,
               quiet: bool = False) -> InvertResult:
    """Run ``vidinv invert``.

    Raises:
        vidinv.weights.MissingWeightsError: before any video work.
        FileExistsError: ``dst`` holds an export and neither ``overwrite`` nor ``resume`` is set.
        ValueError: ``resume`` with ``overwrite``; ``resume`` of a complete export or of one made
            with other settings (every differing field named; nothing is changed).
        vidinv.io.inversion.InversionFormatError: ``resume`` and ``dst`` holds no readable export.
        Errors of the stages (the export is then left incomplete with the error recorded).
    """
    from vidinv.face.frontend import FaceFrontEnd
    from vidinv.face.tracking import Tracker
    from vidinv.io.inversion import InversionWriter, model_file
    from vidinv.io.mux import frame_range
    from vidinv.io.video import VideoReader, probe

    t0 = time.perf_counter()
    if opts.resume and opts.overwrite:
        raise ValueError("--resume continues an export, --overwrite replaces it: give one of them")
    if opts.resume:
        from vidinv.io.inversion import MANIFEST, InversionReader

        if not (Path(opts.dst) / MANIFEST).is_file():
            raise FileNotFoundError(f"{opts.dst}: no inversion export to resume; run without --resume to start one")
        state = InversionReader(opts.dst, allow_incomplete=True)  # unreadable: error before any work
        if state.complete:
            raise ValueError(f"{opts.dst}: the export is complete; nothing to resume")
    own = opts.encoder_checkpoint
    paths = resolve_weights(required_weights(opts.encoder, encoder_checkpoint=own), opts.weights_dir, opts.fetch,
                            mask="landmarks", quiet=quiet, encoder_checkpoint=own,
                            allow_hash_mismatch=opts.allow_hash_mismatch or None)
    src = Path(opts.src)
    if not src.is_file():
        raise FileNotFoundError(f"input video {src} does not exist")
    result = InvertResult(Path(opts.dst))
    runtime = Runtime(opts.device, opts.precision)
    bundle = load_bundle(paths, opts.encoder, runtime, mask="landmarks", encoder_checkpoint=own)
    G = bundle.G
    models = [model_file(p, "encoder" if name != GENERATOR_FILE else "generator", name=name)
              for name, p in paths.items()]
    info = probe(src.resolve())
    frames = frame_range(src, opts.start, opts.end)
    video = VideoReader(src, start=frames.start, stop=frames.stop, accurate_color=True)
    tracks: set[int] = set()
    extra = {"start": opts.start, "end": opts.end, "face": opts.face, "batch_size": opts.batch_size,
             "detector": opts.detector, "smoothing": "gaussian", "align_size": bundle.align_size,
             "precision": opts.precision, "image_size": opts.image_size}
    header = dict(encoder=opts.encoder, generator=G, models=models, source=info, feature_shape=bundle.feature_shape,
                  save_crops=opts.save_crops, save_recon=opts.save_recon, extra=extra)
    try:
        if opts.resume:
            writer = InversionWriter.resume(opts.dst, **header)
            result.resumed_from = first = writer.next_frame
        else:
            writer = InversionWriter(opts.dst, chunk_size=opts.chunk_size, overwrite=opts.overwrite, **header)
            first = 0
    except BaseException:
        video.close()
        raise
    keep = opts.save_crops

    def stored(it: Item) -> bool:  # already in the export (resume)
        return it.frame.index < first

    def write(items: Iterator[Item]):
        try:
            with writer:
                for it in items:
                    if stored(it):
                        for f in it.faces:
                            tracks.add(f.track_id)
                        yield it
                        continue
                    recon = None
                    if opts.save_recon and it.faces:
                        with torch.inference_mode(), runtime.autocast():
                            w = torch.stack([f.w for f in it.faces])
                            if bundle.encoder_kind == "fs":
                                F = torch.stack([f.F for f in it.faces])
                                img = G.synthesis(w, feature=F, k=bundle.feature_index)
                            else:
                                img = G.synthesis(w)
                            img = ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                            recon = img.permute(0, 2, 3, 1).cpu().numpy()
                    for i, f in enumerate(it.faces):
                        tracks.add(f.track_id)
                        writer.add(w=f.w.cpu().numpy(), F=f.F.cpu().numpy() if f.F is not None else None,
                                   quad=f.quad, landmarks=f.landmarks, track_id=f.track_id,
                                   frame_index=it.frame.index, pts=it.frame.pts, time=it.frame.time,
                                   crop=_resize(f.crop, opts.image_size) if keep else None,
                                   recon=_resize(recon[i], opts.image_size) if recon is not None else None)
                        f.crop = None
                        result.records_new += 1
                    yield it
        finally:
            video.close()

    fe = FaceFrontEnd(opts.detector, Tracker(mode=opts.face))
    pipe = StagePipeline(video, [("faces", front_end_stage(fe)),
                                 ("encode", encode_stage(bundle, opts.batch_size, keep_crops=keep,
                                                         skip=stored if first > 0 else None)),
                                 ("write", write)], maxsize=opts.queue_size)
    total = len(frames)
    try:
        for it in pipe:
            result.frames += 1
            if progress is not None:
                progress(result.frames, total)
    finally:
        if not writer._closed:
            writer.abort("stopped before the first frame")
    result.records = writer.n_records
    result.tracks = sorted(tracks)
    result.stage_s = {s.name: s.busy_s for s in pipe.stats}
    result.wall_s = time.perf_counter() - t0
    return result
