"""The ``vidinv frontalize`` job: per face track, the frontalized aligned faces as a video (and PNGs).

pSp's face frontalization model (``psp_ffhq_frontalization.pt``, Richardson et al., CVPR 2021, section
4.2; inverter kind ``psp-front``, :class:`vidinv.inverters.tasks.FrontalizationInverter`) renders each
tracked face seen from the front. The result is not blended back (a frontal face does not fit the
original head pose): each track's rendered faces are written as their own video, one picture per frame
in which the track has a face, stamped with that frame's timestamp of the input (so a player, or a tool
lining the crops up with the source, sees them at the source's times).

Stages: decode -> faces (detect, landmarks, track, smooth) -> encode (the aligned 256 crop, batched)
[-> latent smoothing] [-> style mixing] -> render (``G(w)``, resized to ``image_size``) -> write.

Outputs:

* ``OUT.mp4`` (a file): the faces of one track. With ``face="largest"`` (the default) the tracker keeps one
  face; if it still starts a second track (the face was lost and found again), the run fails with a
  message asking for a folder output.
* ``DIR`` (a folder): ``track_<id>.mp4`` per track, ``frames.json`` (per track: frame indices, timestamps
  in seconds and the quads), and with ``frames=True`` ``track_<id>/<frame index:06d>.png``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vidinv.edit.mixing import parse_rows
from vidinv.io.mux import frame_range
from vidinv.io.outputs import atomic_path, atomic_write_text, json_safe
from vidinv.io.video import VideoWriter, probe
from vidinv.pipeline.faces import Item, latent_smoothing_stage, style_mixing_stage
from vidinv.pipeline.job import JobOptions, prepare_job

__all__ = ["FrontalizeOptions", "FrontalizeResult", "run_frontalize", "FRONTALIZE_KIND"]

#: The inverter kind of pSp's frontalization model.
FRONTALIZE_KIND = "psp-front"


@dataclass(kw_only=True)
class FrontalizeOptions(JobOptions):
    """Settings of ``vidinv frontalize`` (fields of :class:`~vidinv.pipeline.job.JobOptions`, and:)

    Attributes:
        dst: a video file (one track) or a folder (every track; see the module doc).
        image_size: side of the written faces in pixels (the generator renders 1024; area resize).
        frames: also write each face as a PNG (folder output only).
        crf: x264 constant rate factor of the track videos.
        latent_smoothing: sigma in frames of the temporal smoothing of w per track (0 = off).
        mix_rows, mix_alpha, seed: pSp's style mixing (see :class:`vidinv.pipeline.edit.EditOptions`).
        noise: ``"const"`` or ``"random"`` generator noise.
    """

    encoder: str = FRONTALIZE_KIND
    image_size: int = 1024
    frames: bool = False
    crf: int = 18
    latent_smoothing: float = 0.0
    mix_rows: str | None = None
    mix_alpha: float = 1.0
    seed: int = 0
    noise: str = "const"


@dataclass
class FrontalizeResult:
    """What a run wrote: frames read, faces rendered, per track the files and frame count, wall seconds."""

    dst: Path
    frames: int = 0
    faces: int = 0
    tracks: dict[int, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    stage_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0


def _is_folder_output(dst: Path) -> bool:
    return dst.suffix == "" or dst.is_dir()


def check_frontalize_options(opts: FrontalizeOptions) -> None:
    """The option values (before any file is read).

    Raises:
        ValueError: ``image_size`` outside [16, 4096], ``frames`` with a file output, bad style mixing
            options, a negative latent smoothing, a batch size < 1.
    """
    if not 16 <= int(opts.image_size) <= 4096:
        raise ValueError(f"--image-size must be in [16, 4096] pixels, got {opts.image_size}")
    if opts.frames and not _is_folder_output(Path(opts.dst)):
        raise ValueError("--frames writes PNGs per track: give a folder as -o")
    if opts.mix_rows is not None:
        parse_rows(opts.mix_rows)
    if not 0.0 <= float(opts.mix_alpha) <= 1.0:
        raise ValueError(f"--mix-alpha must be in [0, 1], got {opts.mix_alpha}")
    if not float(opts.latent_smoothing) >= 0:
        raise ValueError(f"--latent-smoothing must be >= 0, got {opts.latent_smoothing}")
    if opts.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")


def _render_stage(inverter, batch_size: int, size: int, noise: str, timings: dict):
    """Stage: items with w -> faces with ``image`` = G(w) as (size, size, 3) uint8 RGB."""
    def run(items) -> Iterator[Item]:
        pending: list[Item] = []

        def flush():
            faces = [f for it in pending for f in it.faces]
            if faces:
                t0 = time.perf_counter()
                with torch.inference_mode(), inverter.runtime.autocast():
                    w = torch.stack([f.encoded_w() for f in faces]).to(inverter.runtime.torch_device, torch.float32)
                    img = inverter.synthesize(w, noise=noise).float()
                    if img.shape[-1] != size:
                        img = torch.nn.functional.interpolate(img, size=(size, size), mode="area")
                    img = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                for f, im in zip(faces, img):
                    f.image = im
                timings["generate"] = timings.get("generate", 0.0) + time.perf_counter() - t0
            yield from pending
            pending.clear()

        n = 0
        for it in items:
            pending.append(it)
            n += len(it.faces)
            if n >= batch_size:
                yield from flush()
                n = 0
        yield from flush()
    return run


def run_frontalize(opts: FrontalizeOptions, *, progress: Callable[[int, int | None], None] | None = None,
                   quiet: bool = False) -> FrontalizeResult:
    """Run ``vidinv frontalize`` (see the module doc).

    Returns:
        :class:`FrontalizeResult`.

    Raises:
        ValueError: bad options (:func:`check_frontalize_options`); a file output and more than one track;
            no face in the video (nothing to write).
        Everything :func:`vidinv.pipeline.job.prepare_job` raises (missing weight files first).
    """
    t_start = time.perf_counter()
    check_frontalize_options(opts)
    dst = Path(opts.dst)
    folder = _is_folder_output(dst)
    job = prepare_job(opts, mask="landmarks", quiet=quiet)
    inverter = job.inverter
    info = probe(job.src)
    tb = info.time_base or Fraction(1, 90000)
    fps = info.fps or 30
    frames = frame_range(job.src, opts.start, opts.end)
    video = job.open_video(frames)
    timings: dict[str, float] = {}
    stages = job.face_stages(timings=timings)
    if opts.latent_smoothing and opts.latent_smoothing > 0:
        stages.append(("smooth", latent_smoothing_stage(float(opts.latent_smoothing))))
    if opts.mix_rows is not None:
        G = inverter.generator
        stages.append(("mix", style_mixing_stage(G, parse_rows(opts.mix_rows, G.n_latent), opts.mix_alpha, opts.seed)))
    stages.append(("render", _render_stage(inverter, opts.batch_size, int(opts.image_size), opts.noise, timings)))
    result = FrontalizeResult(dst)
    writers: dict[int, VideoWriter] = {}
    records: dict[int, list[dict]] = {}
    size = int(opts.image_size)
    if folder:
        dst.mkdir(parents=True, exist_ok=True)

    def writer_for(tid: int) -> VideoWriter:
        if tid not in writers:
            if not folder and writers:
                raise ValueError(f"a second face track ({tid}) appeared; a file output holds one track: give a "
                                 "folder as -o to write one video per track")
            path = dst / f"track_{tid}.mp4" if folder else dst
            writers[tid] = VideoWriter(path, size, size, fps, crf=opts.crf, time_base=tb)
            records[tid] = []
        return writers[tid]

    try:
        for it in job.stream(video, stages, total=len(frames), progress=progress):
            result.frames += 1
            for f in it.faces:
                if f.image is None:
                    continue
                pts = it.frame.pts if it.frame.pts is not None else it.frame.index
                writer_for(f.track_id).write(f.image, pts=pts)
                records[f.track_id].append({"frame": it.frame.index, "time": it.frame.time,
                                            "quad": np.asarray(f.quad).tolist()})
                if opts.frames:
                    png = dst / f"track_{f.track_id}" / f"{it.frame.index:06d}.png"
                    png.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(png) as tmp:
                        Image.fromarray(f.image).save(tmp, format="PNG")
                result.faces += 1
        if not writers:
            raise ValueError(f"no face found in {job.src}: nothing to frontalize")
        for tid, w in writers.items():
            w.close()
            result.tracks[tid] = len(records[tid])
            result.files.append(Path(w.path))
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    finally:
        video.close()
    if folder:
        doc = {"source": str(job.src), "model": str(inverter.generator_path), "image_size": size, "time_base": str(tb),
               "tracks": {str(t): r for t, r in records.items()}}
        atomic_write_text(dst / "frames.json", json.dumps(json_safe(doc), indent=1))
        result.files.append(dst / "frames.json")
    result.stage_s = job.stage_s
    result.wall_s = time.perf_counter() - t_start
    return result
