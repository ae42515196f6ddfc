"""The ``vidinv edit`` job: a video in, the same video with edited faces out.

Stages (each a thread, joined by bounded queues; :mod:`vidinv.pipeline.stages`)::

    decode -> faces (detect, landmarks, track, smooth) -> encode (align + encoder, batched)
      [-> latent smoothing] [-> gate] [-> style mixing] -> render (edit + generate + resize + mask, batched)
      -> composite (blend weight mask x gate) -> write

The gate (on by default, :mod:`vidinv.pipeline.gating`, :mod:`vidinv.face.gate`) gives each face a confidence
in [0, 1] from its pose, detection and reconstruction, faded per track; where it is 0 the input pixels stay.

With ``from_inversion`` the ``faces`` and ``encode`` stages are replaced by reading the records of a
``vidinv invert`` export (:class:`vidinv.io.inversion.InversionReader`); the video is still decoded for
the background. Frames without a tracked face are written unchanged. When no face is found in the
whole video the output is made by :func:`vidinv.io.mux.passthrough` (the input, remuxed) with a warning.

Still images run the same stages as one-frame videos (:mod:`vidinv.io.images`: ``face.jpg -> out.png``;
no face: the input image, unchanged, with a warning), and a folder of images runs with the models loaded
once (:func:`run_edit_folder`, :mod:`vidinv.pipeline.images`).

Order of checks: the numbers first (a NaN / inf strength is refused), then an export's chunks
(finite codes), then every weight and direction file is resolved (one
:class:`~vidinv.weights.MissingWeightsError` lists all missing files; strengths beyond 3x the
authors' demonstrated range are logged once, as one WARNING, when the directions load), then the
models are loaded, and only then is the video opened.

Non-finite numbers never reach the output: besides those checks, the composite stage refuses a
generated face holding NaN / inf (a generator overflow) with an error naming the frame and track,
and the temporary output is deleted, so no video of black patches is written.
"""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vidinv.edit import DirectionError, LatentEdit, build_edit, check_strength, lookup, parse_edit_spec
from vidinv.edit.mixing import parse_rows
from vidinv.face.blend import NonFiniteFaceError
from vidinv.face.gate import GateSettings, parse_ramp
from vidinv.inverters import inverter_class, is_task
from vidinv.io.images import is_image_path, open_output_writer, passthrough_image
from vidinv.io.inversion import InversionFormatError, InversionReader
from vidinv.io.mux import passthrough
from vidinv.pipeline.faces import (
    BlendSettings,
    FaceCode,
    Item,
    composite_stage,
    degrade_stage,
    latent_smoothing_stage,
    render_stage,
    style_mixing_stage,
)
from vidinv.pipeline.gating import gate_record, gate_stage
from vidinv.pipeline.images import FolderPlan, FolderResult, run_folder
from vidinv.pipeline.job import Job, JobOptions, input_video, load_job, resolve_job_weights

log = logging.getLogger(__name__)

__all__ = ["EditOptions", "EditResult", "check_options", "plan_edit", "run_edit", "run_edit_folder", "edit_input",
           "load_edit_job", "direction_weights", "job_kind", "SCALES", "RESTORE_KIND", "gate_settings"]

_GATE_DEFAULTS = GateSettings()


@dataclass(kw_only=True)
class EditOptions(JobOptions):
    """Settings of one ``vidinv edit`` run (the CLI options, see ``vidinv edit --help``).

    The fields of :class:`~vidinv.pipeline.job.JobOptions` (``src``, ``dst``, ``encoder``, ``face``,
    ``batch_size``, ``device``, ``precision``, ``start``, ``end``, ``weights_dir``, ``fetch``,
    ``allow_hash_mismatch``, ``encoder_checkpoint``, ``queue_size``, ``detector``), and:

    Attributes:
        src: a video, a still image or a folder of images; may be None with ``from_inversion`` (the export's
            source path is then used).
        attrs: ``NAME[=S][@ROWS]`` attribute specs; strengths: one per attribute (or one for all);
            directions: ``(path, strength)`` of ``--direction`` files with ``direction_convention``;
            layers: default style rows for every term without ``@ROWS``.
        blend: ``"alpha"`` / ``"poisson"``;
        mask: ``"auto"`` (BiSeNet parsing when 79999_iter.pth is present, else landmarks), ``"parsing"``,
            ``"landmarks"``.
        crf, codec, pix_fmt: output encoding (the output is cut to the ``start``/``end`` window).
        from_inversion: a ``vidinv invert`` export to re-render from.
        noise: ``"const"`` (the generator's noise buffers) or ``"random"``.
        latent_smoothing: sigma in frames of the temporal smoothing of w and F (0 = off).
        restore: restore the faces with pSp's super-resolution model before editing (``--restore``): the
            faces are inverted by that model (encoder kind ``psp-sr``) and edited in its W+.
        scale: integer up-scaling of the output frames (the background Lanczos-resampled, faces rendered
            at the up-scaled size; ``vidinv restore --scale``); 1 keeps the input size.
        simulate_factor: degrade every input frame first as pSp's ``BilinearResize`` does (for evaluating
            restoration on a high-resolution video), or None.
        mix_rows: W+ rows (``"8-17"``) mixed towards one injected random style per track (pSp's style
            mixing), or None; mix_alpha: the mixing weight (1 replaces); seed: the styles' seed.
        gate: ``"on"`` (default) or ``"off"``: the confidence gate (:mod:`vidinv.face.gate`): each face is
            blended with ``mask * gate``, so side faces, occluded faces and failed inversions keep the input
            pixels. gate_yaw, gate_pitch, gate_score, gate_jitter, gate_identity: each component's
            ``"FULL,ZERO"`` thresholds or ``"off"`` (defaults and reasons: :class:`~vidinv.face.gate.
            GateSettings`); gate_fade: frames of a full fade.
    """

    attrs: Sequence[str] = ()
    strengths: Sequence[float] = ()
    directions: Sequence[str | os.PathLike] = ()
    direction_convention: str = "unit"
    layers: str | None = None
    blend: str = "alpha"
    mask: str = "auto"
    crf: int = 18
    codec: str = "libx264"
    pix_fmt: str | None = None
    from_inversion: str | os.PathLike | None = None
    noise: str = "const"
    latent_smoothing: float = 0.0
    restore: bool = False
    scale: int = 1
    simulate_factor: int | None = None
    mix_rows: str | None = None
    mix_alpha: float = 1.0
    seed: int = 0
    gate: str = "on"
    gate_yaw: str = str(_GATE_DEFAULTS.yaw)
    gate_pitch: str = str(_GATE_DEFAULTS.pitch)
    gate_score: str = str(_GATE_DEFAULTS.score)
    gate_jitter: str = "off"
    gate_identity: str = str(_GATE_DEFAULTS.identity)
    gate_fade: int = _GATE_DEFAULTS.fade


#: The up-scaling factors of the output (``--scale``).
SCALES = (1, 2, 4, 8)
#: The inverter kind ``--restore`` selects (pSp's super-resolution model).
RESTORE_KIND = "psp-sr"


@dataclass
class EditResult:
    """What a run did: frames written, frames/faces edited, tracks, whether it passed the input through,
    per-stage busy seconds (``stage_s``), per-step seconds inside stages (``step_s``), wall time, and
    generator layers run per edited face; with the confidence gate on, ``gate`` holds its settings
    (:meth:`vidinv.face.gate.GateSettings.describe`) and ``gates`` one entry per frame with a face:
    ``{"index", "time", "faces": [`` :func:`vidinv.pipeline.gating.gate_record` ``]}``."""

    dst: Path
    frames: int = 0
    frames_edited: int = 0
    faces_edited: int = 0
    tracks: list[int] = field(default_factory=list)
    passthrough: bool = False
    stage_s: dict[str, float] = field(default_factory=dict)
    step_s: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    layers_per_face: float | None = None
    edit: str = ""
    gate: dict | None = None
    gates: list[dict] = field(default_factory=list)


def _strength_for(i: int, strengths: Sequence[float]) -> float:
    if not strengths:
        return 1.0
    if len(strengths) == 1:
        return float(strengths[0])
    return float(strengths[i])


def check_options(opts: EditOptions) -> None:
    """The options that no file is needed to judge: every ``--strength`` and ``NAME=S`` is a finite
    number, ``latent_smoothing`` is finite and >= 0; an image or folder input (by its name) takes neither
    ``start`` / ``end`` nor ``from_inversion``.

    Raises:
        vidinv.edit.DirectionError: a NaN / infinite strength (``--strength nan``, ``smile=1e400``).
        ValueError: a bad ``latent_smoothing``; a video-only option with an image input.
    """
    if opts.src is not None and (is_image_path(opts.src) or Path(opts.src).is_dir()):
        kind = "a folder" if Path(opts.src).is_dir() else "an image"
        if opts.start is not None or opts.end is not None:
            raise ValueError(f"--start / --end cut videos; the input {opts.src} is {kind}")
        if opts.from_inversion is not None:
            raise ValueError(f"--from-inversion re-renders a video; the input {opts.src} is {kind}")
    for s in opts.strengths:
        check_strength(s, "--strength")
    for spec in opts.attrs:
        parse_edit_spec(spec)
    ls = float(opts.latent_smoothing or 0.0)
    if not math.isfinite(ls) or ls < 0:
        raise ValueError(f"--latent-smoothing must be a finite sigma >= 0 (frames), got {opts.latent_smoothing}")
    if opts.scale not in SCALES:
        raise ValueError(f"--scale must be one of {', '.join(map(str, SCALES))}, got {opts.scale}")
    if opts.simulate_factor is not None and not 1 <= int(opts.simulate_factor) <= 64:
        raise ValueError(f"--simulate-factor must be an integer in [1, 64], got {opts.simulate_factor}")
    if opts.mix_rows is not None:
        parse_rows(opts.mix_rows)
    a = float(opts.mix_alpha)
    if not (math.isfinite(a) and 0.0 <= a <= 1.0):
        raise ValueError(f"--mix-alpha must be in [0, 1], got {opts.mix_alpha}")
    if opts.restore and opts.from_inversion is not None:
        raise ValueError("--restore inverts the frames with the super-resolution model; it cannot re-render an "
                         "export (--from-inversion), whose codes come from another encoder")
    gate_settings(opts)


def gate_settings(opts: EditOptions) -> GateSettings | None:
    """The confidence gate of a run (None with ``gate`` ``"off"``).

    Raises:
        ValueError: ``gate`` not on/off, a threshold pair that is not ``FULL,ZERO`` / ``off``, a bad fade.
    """
    if opts.gate not in ("on", "off"):
        raise ValueError(f"--gate must be 'on' or 'off', got {opts.gate!r}")
    if opts.gate == "off":
        return None
    return GateSettings(yaw=parse_ramp(opts.gate_yaw, "--gate-yaw"), pitch=parse_ramp(opts.gate_pitch, "--gate-pitch"),
                        score=parse_ramp(opts.gate_score, "--gate-score"),
                        jitter=parse_ramp(opts.gate_jitter, "--gate-jitter"),
                        # --restore: the reconstruction is a restored face, not the degraded input (see pipeline.tasks)
                        identity=None if opts.restore else parse_ramp(opts.gate_identity, "--gate-identity"),
                        fade=opts.gate_fade)


def job_kind(opts: EditOptions) -> str:
    """The inverter kind of a run: ``psp-sr`` with ``restore``, else ``opts.encoder`` (a task command sets
    its task kind there)."""
    return RESTORE_KIND if opts.restore else opts.encoder


def _edit_items(opts: EditOptions) -> tuple[list[tuple], list[tuple]]:
    """(attribute items, file items) for :func:`vidinv.edit.build_edit`.

    Strength rule: ``--strength`` values pair with the ``--attr`` then ``--direction`` entries in the
    order given; a single ``--strength`` applies to all; none means 1; ``NAME=S`` in ``--attr`` wins.
    """
    n = len(opts.attrs) + len(opts.directions)
    if len(opts.strengths) > 1 and len(opts.strengths) != n:
        raise DirectionError(f"{len(opts.strengths)} --strength values for {n} edits (--attr / --direction): give "
                             "one per edit, in order, or a single value for all")
    items = []
    for i, spec in enumerate(opts.attrs):
        name, s, rows = parse_edit_spec(spec)
        if "=" not in spec:
            s = _strength_for(i, opts.strengths)
        items.append((name, s, rows if rows is not None else opts.layers))
    files = []
    for j, path in enumerate(opts.directions):
        files.append((path, opts.direction_convention, _strength_for(len(opts.attrs) + j, opts.strengths),
                      opts.layers))
    return items, files


def direction_weights(attrs: Sequence[str]) -> list[str]:
    """Registry names of the direction files the ``--attr`` specs need (unknown names raise
    :class:`vidinv.edit.DirectionError`)."""
    return sorted({lookup(parse_edit_spec(a)[0]).weight for a in attrs})


@dataclass
class _Plan:
    """What :func:`plan_edit` found: the options, resolved weight files, the built edit, the input video and
    the export to render from (or None)."""

    opts: EditOptions
    paths: dict[str, Path]
    edit: LatentEdit
    src: Path
    reader: InversionReader | None


def plan_edit(opts: EditOptions, quiet: bool = False) -> _Plan:
    """Check the options and resolve every file, without loading networks or opening the video.

    Order: option values (:func:`check_options`: non-finite strengths are refused before anything
    else), the export (every chunk read and checked: sha256, shapes, finite codes), weight files,
    direction files, input and output paths.

    Raises:
        vidinv.weights.MissingWeightsError: missing weight / direction files (all listed).
        vidinv.edit.DirectionError: unknown attribute, bad direction file, non-finite or mismatched
            strengths.
        vidinv.io.inversion.InversionFormatError: unreadable export, or one whose codes hold NaN / inf.
        ValueError / FileNotFoundError: bad options, missing input.
    """
    check_options(opts)
    kind = job_kind(opts)
    if not opts.attrs and not opts.directions and not is_task(kind) and opts.mix_rows is None:
        raise ValueError("nothing to edit: give --attr NAME (see `vidinv directions list`) or --direction FILE")
    items, files = _edit_items(opts)
    reader = None
    if opts.from_inversion is not None:
        reader = InversionReader(opts.from_inversion)
        reader.check()  # NaN in a hash-consistent export would render every face as a black patch
        encoder = reader.encoder["kind"]
        need_encoder = False
    else:
        encoder, need_encoder = kind, True
    paths = resolve_job_weights(opts, encoder=encoder, need_encoder=need_encoder, extra=direction_weights(opts.attrs),
                                mask=opts.mask, quiet=quiet)
    edit = build_edit(items, weights_dir=opts.weights_dir, fetch=False, files=files,
                      allow_hash_mismatch=opts.allow_hash_mismatch or None)
    src = opts.src
    if src is None:
        if reader is None:
            raise ValueError("no input video given")
        src = reader.source.get("path")
        if not src:
            raise ValueError(f"{opts.from_inversion}: the export does not name its source video; give it as IN")
    src = Path(src) if Path(src).is_dir() else input_video(src)
    if Path(opts.dst).resolve() == src.resolve():
        raise ValueError(f"the output {opts.dst} is the input; write to another file")
    if opts.face not in ("largest", "all"):
        raise ValueError(f"--face must be 'largest' or 'all', got {opts.face!r}")
    if opts.blend not in ("alpha", "poisson"):
        raise ValueError(f"--blend must be 'alpha' or 'poisson', got {opts.blend!r}")
    if opts.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    return _Plan(opts, paths, edit, src, reader)


def _finite_faces(stage):
    """Wrap the composite stage: a generated face with NaN / inf values stops the run with an error
    naming the frame and track (:class:`vidinv.face.blend.NonFiniteFaceError`), instead of a black
    patch in the output."""
    def run(items: Iterator[Item]) -> Iterator[Item]:
        def checked():
            for it in items:
                for f in it.faces:
                    if f.image is not None and not np.isfinite(f.image).all():
                        t = f" ({it.frame.time:.3f} s)" if it.frame.time is not None else ""
                        raise NonFiniteFaceError(
                            f"frame {it.frame.index}{t}, track {f.track_id}: the generated face holds NaN or "
                            "infinite values (a generator overflow, e.g. under fp16/bf16, or non-finite weights); "
                            "no output written")
                yield it
        return stage(checked())
    return run


class _NoFace(Exception):
    """Raised in the writer stage to discard the re-encoded output when no face was edited."""


def _inversion_stage(reader, bundle):
    """Stage: decoded frames -> items with the export's records for that frame (no detection/encoding)."""
    dev = bundle.runtime.torch_device

    def run(frames) -> Iterator[Item]:
        recs = iter(reader)
        nxt = next(recs, None)
        for fr in frames:
            while nxt is not None and nxt.frame_index < fr.index:
                nxt = next(recs, None)
            faces = []
            while nxt is not None and nxt.frame_index == fr.index:
                faces.append(FaceCode(nxt.track_id, nxt.quad, nxt.landmarks,
                                      w=torch.from_numpy(nxt.w).to(dev, torch.float32),
                                      F=torch.from_numpy(nxt.F.astype(np.float32)).to(dev) if nxt.F is not None
                                      else None))
                nxt = next(recs, None)
            yield Item(fr, faces)
    return run


def load_edit_job(opts: EditOptions, plan: _Plan) -> Job:
    """Load the networks of an edit (once, for a video, an image or a whole folder) and check that an
    export to render from fits the loaded generator.

    Raises:
        vidinv.io.inversion.InversionFormatError: the export was made with another generator.
        What :func:`vidinv.pipeline.job.load_job` raises.
    """
    reader = plan.reader
    encoder = reader.encoder["kind"] if reader is not None else job_kind(opts)
    job = load_job(opts, plan.paths, plan.src, encoder=encoder, need_encoder=reader is None, mask=opts.mask)
    if reader is not None:
        gen = reader.generator
        for k in ("size", "n_latent", "style_dim"):
            if k in gen and int(gen[k]) != int(getattr(job.bundle.G, k)):
                raise InversionFormatError(f"{opts.from_inversion}: made with a generator of {k} {gen[k]}, the "
                                           f"loaded one has {getattr(job.bundle.G, k)}")
        gen_file = inverter_class(encoder).generator_file
        reader.check_models({gen_file: plan.paths[gen_file]})
    return job


def run_edit(opts: EditOptions, *, plan: _Plan | None = None, progress: Callable[[int, int | None], None] | None = None,
             quiet: bool = False, on_frame: Callable[[Item], None] | None = None) -> EditResult:
    """Run ``vidinv edit`` on one video or one still image (see the module doc; a folder:
    :func:`run_edit_folder`).

    Args:
        opts: the settings.
        plan: the result of :func:`plan_edit` when already made (the CLI makes it first to fail early).
        progress: called as ``progress(frames_done, frames_total)`` after each written frame.
        on_frame: called with each written :class:`~vidinv.pipeline.faces.Item` (frame, faces with
            track id / quad / landmarks, output picture), e.g. to collect the quads.

    Returns:
        :class:`EditResult`.

    Raises:
        Everything :func:`plan_edit` raises; vidinv.io.checkpoints errors from the loaders; errors of the
        stages (the first one is re-raised after every stage stopped and the temporary output file
        was deleted).
    """
    t_start = time.perf_counter()
    plan = plan or plan_edit(opts, quiet=quiet)
    job = load_edit_job(opts, plan)
    result = edit_input(job, plan, plan.src, opts.dst, progress=progress, on_frame=on_frame)
    result.wall_s = time.perf_counter() - t_start
    return result


def run_edit_folder(opts: EditOptions, folder: FolderPlan, *, plan: _Plan | None = None,
                    progress: Callable[[int, int | None], None] | None = None, quiet: bool = False) -> FolderResult:
    """``vidinv edit DIR -o OUTDIR``: every image of ``folder`` (:func:`vidinv.pipeline.images.plan_folder`)
    edited with the networks loaded once; an image without a face is copied unchanged (noted in the
    summary), an image that fails is listed and the others go on (:func:`vidinv.pipeline.images.run_folder`).

    Args:
        opts: the settings (``opts.src`` / ``opts.dst``: the folders).
        folder: the checked folder plan.
        plan: the result of :func:`plan_edit` when already made.
        progress: ``progress(images_done, images_total)`` after each image.

    Returns:
        :class:`~vidinv.pipeline.images.FolderResult` whose outcomes hold :class:`EditResult` s.

    Raises:
        Everything :func:`plan_edit` and :func:`load_edit_job` raise (before the first image).
    """
    plan = plan or plan_edit(opts, quiet=quiet)
    job = load_edit_job(opts, plan)
    return run_folder(folder, lambda src, dst: edit_input(job.for_input(src), plan, src, dst),
                      note=lambda r: "no face found: copied unchanged" if r.passthrough else None,
                      progress=progress)


def edit_input(job: Job, plan: _Plan, src: Path, dst: str | os.PathLike, *,
               progress: Callable[[int, int | None], None] | None = None,
               on_frame: Callable[[Item], None] | None = None) -> EditResult:
    """Edit one input (a video, or a still image: :func:`vidinv.io.images.open_output_writer` picks the
    writer) with the loaded ``job`` (whose ``src`` is ``src``) into ``dst``; arguments and errors as
    :func:`run_edit`. No face anywhere: ``dst`` is the input unchanged (:func:`vidinv.io.mux.passthrough`,
    :func:`vidinv.io.images.passthrough_image`) with a warning."""
    t_start = time.perf_counter()
    opts = plan.opts
    reader = plan.reader
    bundle = job.bundle
    settings = BlendSettings(mode=opts.blend)
    result = EditResult(Path(dst), edit=plan.edit.describe())
    steps: dict[str, float] = {}
    tracks: set[int] = set()
    window = opts.start is not None or opts.end is not None

    writer = open_output_writer(src, dst, codec=opts.codec, crf=opts.crf, pix_fmt=opts.pix_fmt,
                                start=opts.start, end=opts.end, scale=opts.scale)
    frames = writer.frames
    video = job.open_video(frames)
    stages = [("degrade", degrade_stage(int(opts.simulate_factor)))] if opts.simulate_factor else []
    if reader is None:
        stages += job.face_stages(timings=steps)
    else:
        stages.append(("inversion", _inversion_stage(reader, bundle)))
    if opts.latent_smoothing and opts.latent_smoothing > 0:
        stages.append(("smooth", latent_smoothing_stage(float(opts.latent_smoothing))))
    gates = gate_settings(opts)
    if gates is not None:  # before style mixing: the gate judges the inversion of the input face
        stages.append(("gate", gate_stage(bundle, gates, opts.batch_size, noise=opts.noise, timings=steps)))
        result.gate = gates.describe()
    if opts.mix_rows is not None:
        stages.append(("mix", style_mixing_stage(bundle.G, parse_rows(opts.mix_rows, bundle.G.n_latent),
                                                 opts.mix_alpha, opts.seed)))
    stages += [("render", render_stage(bundle, plan.edit, opts.batch_size, noise=opts.noise, settings=settings,
                                       timings=steps, scale=opts.scale)),
               ("composite", _finite_faces(composite_stage(settings, scale=opts.scale)))]

    def write(items):
        edited = 0
        try:
            with writer:
                for it in items:
                    writer.write(it.frame, it.image)
                    if it.faces:
                        edited += 1
                        for f in it.faces:
                            tracks.add(f.track_id)
                    yield it
                if edited == 0 and not window and opts.scale == 1:  # up-scaled: write the frames
                    raise _NoFace()
        finally:
            video.close()

    stages.append(("write", write))
    G = bundle.G
    G.reset_layer_count()
    try:
        for it in job.stream(video, stages, total=len(frames), progress=progress):
            result.frames += 1
            if it.faces:
                result.frames_edited += 1
                result.faces_edited += len(it.faces)
                if gates is not None:
                    result.gates.append({"index": it.frame.index, "time": it.frame.time,
                                         "faces": [gate_record(f) for f in it.faces]})
            if on_frame is not None:
                on_frame(it)
    except _NoFace:
        result.frames_edited = result.faces_edited = 0
        log.warning("no face found in %s: the output is the input, unchanged", src)
        if is_image_path(src):
            passthrough_image(src, dst)
        else:
            passthrough(src, dst)
        result.passthrough = True
    finally:
        if not writer.done:  # the write stage never ran: drop its temporary file
            writer.abort()
    result.stage_s = job.stage_s
    if steps.get("generator_calls"):
        result.layers_per_face = G.layers_run / steps["generator_calls"]
    if result.frames_edited == 0 and window and not result.passthrough:
        log.warning("no face found in the window [%s, %s) s of %s: frames written unchanged", opts.start, opts.end,
                    src)
    result.tracks = sorted(tracks)
    result.step_s = steps
    result.wall_s = time.perf_counter() - t_start
    return result
