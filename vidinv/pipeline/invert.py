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

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidinv.io.inversion import MANIFEST, InversionReader, InversionWriter, model_file
from vidinv.io.mux import frame_range
from vidinv.io.outputs import sha256_file
from vidinv.io.video import probe
from vidinv.metrics.image import LPIPS_BACKBONE_FILES
from vidinv.pipeline.faces import Item
from vidinv.pipeline.job import BundleLoader, JobOptions, prepare_job
from vidinv.pipeline.runtime import GENERATOR_FILE
from vidinv.pipeline.tuning import (
    PTI_STEPS,
    TUNED_GENERATOR_FILE,
    TuneSample,
    check_tune_options,
    collect_stage,
    save_tuned_generator,
    tune_job_generator,
    tune_options,
    tuned_record,
)

__all__ = ["InvertOptions", "InvertResult", "run_invert"]


@dataclass(kw_only=True)
class InvertOptions(JobOptions):
    """Settings of ``vidinv invert`` (see ``vidinv invert --help``): the fields of
    :class:`~vidinv.pipeline.job.JobOptions` (as :class:`~vidinv.pipeline.edit.EditOptions`; ``dst`` is the
    export folder) plus ``save_crops``, ``save_recon``, ``image_size`` (PNG side), ``chunk_size`` (records per
    chunk; a resumed export keeps its own), ``overwrite`` (replace an existing export) and ``resume``
    (continue an incomplete one, see the module doc; excludes ``overwrite``)."""

    save_crops: bool = False
    save_recon: bool = False
    image_size: int = 256
    chunk_size: int = 32
    overwrite: bool = False
    resume: bool = False
    tune: str = "none"
    tune_steps: int = PTI_STEPS


@dataclass
class InvertResult:
    """Frames read, records in the export (``records``; of them written by this run: ``records_new``),
    the frame a resumed run continued from (``resumed_from``, None for a new export), tracks, per-stage
    busy seconds, wall time; with ``tune``: the tuning's summary (:meth:`TuneResult.as_dict
    <vidinv.pipeline.tuning.TuneResult.as_dict>`), the tuned generator's path and size in bytes."""

    dst: Path
    frames: int = 0
    records: int = 0
    records_new: int = 0
    resumed_from: int | None = None
    tracks: list[int] = field(default_factory=list)
    tune: dict = field(default_factory=dict)
    tuned_path: Path | None = None
    tuned_bytes: int = 0
    stage_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.shape[0] == size:
        return img
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR)


@contextlib.contextmanager
def _abort_on_error(writer: InversionWriter):
    """Like ``with writer:`` but leaves the writer open on success (the tuned generator is attached first)."""
    try:
        yield writer
    except BaseException as exc:
        writer.abort(f"{type(exc).__name__}: {exc}")
        raise


def _tune_export(job, writer: InversionWriter, samples, tune, opts: InvertOptions, result: InvertResult,
                 models) -> None:
    """PTI on the collected faces, the tuned generator saved atomically into the export, named in the manifest
    (``tuned_generator``: file, sha256, bytes, tuning cost), then the export closed (complete)."""
    res = tune_job_generator(job, samples, tune, opts.weights_dir)
    G = job.inverter.generator
    base = next((m for m in models if m.role == "generator"), None)
    rec = tuned_record(G, base_name=base.name if base else GENERATOR_FILE, base_sha256=base.sha256 if base else "",
                       result=res, opts=tune)
    path = save_tuned_generator(G, job.inverter.latent_avg, writer.path / TUNED_GENERATOR_FILE, rec)
    size = path.stat().st_size
    writer.attach("tuned_generator", {"file": TUNED_GENERATOR_FILE, "sha256": sha256_file(path), "bytes": size,
                                      "tune": res.as_dict()})
    writer.close()
    result.tune, result.tuned_path, result.tuned_bytes = res.as_dict(), path, size


def run_invert(opts: InvertOptions, progress: Callable[[int, int | None], None] | None = None,
               quiet: bool = False, loader: BundleLoader | None = None) -> InvertResult:
    """Run ``vidinv invert`` (``loader``: what loads the networks, :func:`vidinv.pipeline.job.load_job`).

    Raises:
        vidinv.weights.MissingWeightsError: before any video work.
        FileExistsError: ``dst`` holds an export and neither ``overwrite`` nor ``resume`` is set.
        ValueError: ``resume`` with ``overwrite``; ``resume`` of a complete export or of one made
            with other settings (every differing field named; nothing is changed).
        vidinv.io.inversion.InversionFormatError: ``resume`` and ``dst`` holds no readable export.
        Errors of the stages (the export is then left incomplete with the error recorded).
    """
    t0 = time.perf_counter()
    if opts.resume and opts.overwrite:
        raise ValueError("--resume continues an export, --overwrite replaces it: give one of them")
    tune = tune_options(opts)
    check_tune_options(tune)
    if tune.mode == "stitch":
        raise ValueError("--tune stitch tunes an edit: invert with --tune pti, then `vidinv edit --from-inversion "
                         "DIR --tune stitch`")
    tuning = tune.mode == "pti"
    if tuning and opts.resume:
        raise ValueError("--tune pti needs every face of the clip in one run; it cannot --resume an export (start "
                         "again with --overwrite)")
    if opts.resume:
        if not (Path(opts.dst) / MANIFEST).is_file():
            raise FileNotFoundError(f"{opts.dst}: no inversion export to resume; run without --resume to start one")
        state = InversionReader(opts.dst, allow_incomplete=True)  # unreadable: error before any work
        if state.complete:
            raise ValueError(f"{opts.dst}: the export is complete; nothing to resume")
    job = prepare_job(opts, mask="landmarks", quiet=quiet, loader=loader,
                      extra_weights=[LPIPS_BACKBONE_FILES["alex"]] if tuning else ())
    src, paths, runtime, inverter = job.src, job.paths, job.runtime, job.inverter
    result = InvertResult(Path(opts.dst))
    G = inverter.generator
    models = [model_file(p, "encoder" if name != GENERATOR_FILE else "generator", name=name)
              for name, p in paths.items()]
    info = probe(src.resolve())
    frames = frame_range(src, opts.start, opts.end)
    video = job.open_video(frames)
    tracks: set[int] = set()
    extra = {"start": opts.start, "end": opts.end, "face": opts.face, "batch_size": opts.batch_size,
             "detector": opts.detector, "smoothing": "gaussian", "align_size": inverter.align_size,
             "precision": opts.precision, "image_size": opts.image_size}
    header: dict[str, Any] = dict(encoder=inverter.kind, generator=G, models=models, source=info,
                                  feature_shape=inverter.feature_shape, feature_index=inverter.feature_index,
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
            with (writer if not tuning else _abort_on_error(writer)):  # tuned: closed once the generator is saved
                for it in items:
                    if stored(it):
                        for f in it.faces:
                            tracks.add(f.track_id)
                        yield it
                        continue
                    recon = None
                    if opts.save_recon and it.faces:
                        with torch.inference_mode(), runtime.autocast():
                            w = torch.stack([f.encoded_w() for f in it.faces])
                            F = (torch.stack([f.encoded_F() for f in it.faces])
                                 if inverter.feature_index is not None else None)
                            img = inverter.synthesize(w, F)
                            img = ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                            recon = img.permute(0, 2, 3, 1).cpu().numpy()
                    for i, f in enumerate(it.faces):
                        tracks.add(f.track_id)
                        writer.add(w=f.encoded_w().cpu().numpy(), F=f.F.cpu().numpy() if f.F is not None else None,
                                   quad=f.quad, landmarks=f.landmarks, track_id=f.track_id,
                                   frame_index=it.frame.index, pts=it.frame.pts, time=it.frame.time,
                                   crop=_resize(f.kept_crop(), opts.image_size) if keep else None,
                                   recon=_resize(recon[i], opts.image_size) if recon is not None else None)
                        f.crop = None
                        result.records_new += 1
                    yield it
        finally:
            video.close()

    samples: list[TuneSample] = []
    stages = job.face_stages(keep_crops=keep, skip=stored if first > 0 else None)
    if tuning:
        stages.append(("collect", collect_stage(samples)))
    stages.append(("write", write))
    try:
        for _ in job.stream(video, stages, total=len(frames), progress=progress):
            result.frames += 1
        if tuning:
            _tune_export(job, writer, samples, tune, opts, result, models)
    except BaseException as exc:
        if not writer.closed:
            writer.abort(f"{type(exc).__name__}: {exc}" if result.frames else "stopped before the first frame")
        raise
    finally:
        if not writer.closed:
            writer.abort("stopped before the first frame")
    result.records = writer.n_records
    result.tracks = sorted(tracks)
    result.stage_s = job.stage_s
    result.wall_s = time.perf_counter() - t0
    return result
