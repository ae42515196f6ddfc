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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from vidinv.edit import (
    STRENGTH_WARNING,
    DirectionError,
    LatentEdit,
    build_edit,
    check_strength,
    equivalent_strength,
    lookup,
    parse_edit_spec,
)
from vidinv.edit.keyframes import EditSchedule, group_track_items, parse_keyframes
from vidinv.edit.mixing import parse_rows
from vidinv.face.blend import NonFiniteFaceError
from vidinv.face.gate import GateSettings, parse_ramp
from vidinv.inverters import inverter_class, is_task
from vidinv.io.images import is_image_path, open_output_writer, passthrough_image
from vidinv.io.inversion import InversionFormatError, InversionReader
from vidinv.io.mux import frame_range, passthrough
from vidinv.metrics.image import LPIPS_BACKBONE_FILES
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
from vidinv.pipeline.job import BundleLoader, Job, JobOptions, input_video, load_job, resolve_job_weights
from vidinv.pipeline.tuning import (
    OUTER_MASK_DILATION,
    PTI_STEPS,
    STITCH_STEPS,
    check_tune_options,
    collect_samples,
    load_tuned_generator,
    samples_stage,
    stitch_render_stage,
    tune_job_generator,
    tune_options,
)

log = logging.getLogger(__name__)

__all__ = ["EditOptions", "EditResult", "check_options", "plan_edit", "run_edit", "run_edit_folder", "edit_input",
           "load_edit_job", "direction_weights", "job_kind", "SCALES", "RESTORE_KIND", "gate_settings",
           "check_segmentable"]

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
        tune: per-video tuning of STIT (:mod:`vidinv.pipeline.tuning`): ``"none"``, ``"pti"`` (pivotal tuning on
            the clip's faces, then the render with the tuned generator: two passes over the video) or
            ``"stitch"`` (PTI, then stitching tuning of every face); tune_steps: PTI passes (STIT 50);
            stitch_steps: stitching updates per face (STIT 100); outer_mask_dilation: the stitching band
            (pixels at 1024, STIT 50); border_loss_threshold: STIT's early stop (0 = off). With
            ``from_inversion`` an export holding a tuned generator is rendered with it whatever ``tune`` says.
        keyframes: ``"T:S,T:S,..."`` (seconds on the video timeline : a factor on every strength, smoothstep
            eased; :mod:`vidinv.edit.keyframes`), or None (constant strengths).
        tracks: the track ids the ``attrs`` / ``directions`` edit applies to (empty: every track).
        track_attrs: ``(track id, "NAME[=S][@ROWS]")`` pairs: a track's own attributes, replacing the
            ``attrs`` / ``directions`` edit for that track (several per track).
        track_keyframes: ``(track id, "T:S,...")`` pairs: a track's own keyframes (at most one per track).
            With any of ``tracks`` / ``track_attrs`` / ``track_keyframes`` every face is tracked (as
            ``face="all"``) and faces of tracks that get no edit are left as they are in the input.
        gate: ``"on"`` (default) or ``"off"``: the confidence gate (:mod:`vidinv.face.gate`): each face is
            blended with ``mask * gate``, so side faces, occluded faces and failed inversions keep the input
            pixels. gate_yaw, gate_pitch, gate_score, gate_jitter, gate_identity: each component's
            ``"FULL,ZERO"`` thresholds or ``"off"`` (defaults and reasons: :class:`~vidinv.face.gate.
            GateSettings`); gate_fade: frames of a full fade.
        segments: run the video as this many segments one after another, each decoding the context its
            temporal stages need, then join them (:mod:`vidinv.pipeline.segments`; the output equals the single
            run's); 1 = one pass. Options that cannot be split are refused.
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
    tune: str = "none"
    tune_steps: int = PTI_STEPS
    stitch_steps: int = STITCH_STEPS
    outer_mask_dilation: int = OUTER_MASK_DILATION
    border_loss_threshold: float = 0.0
    keyframes: str | None = None
    tracks: Sequence[int] = ()
    track_attrs: Sequence[tuple[int, str]] = ()
    track_keyframes: Sequence[tuple[int, str]] = ()
    gate: str = "on"
    gate_yaw: str = str(_GATE_DEFAULTS.yaw)
    gate_pitch: str = str(_GATE_DEFAULTS.pitch)
    gate_score: str = str(_GATE_DEFAULTS.score)
    gate_jitter: str = "off"
    gate_identity: str = str(_GATE_DEFAULTS.identity)
    gate_fade: int = _GATE_DEFAULTS.fade
    segments: int = 1


#: The up-scaling factors of the output (``--scale``).
SCALES = (1, 2, 4, 8)
#: The inverter kind ``--restore`` selects (pSp's super-resolution model).
RESTORE_KIND = "psp-sr"


@dataclass
class EditResult:
    """What a run did: frames written, frames/faces edited, tracks, whether it passed the input through,
    per-stage busy seconds (``stage_s``), per-step seconds inside stages (``step_s``), wall time, and
    generator layers run per edited face; ``tune``: what per-video tuning did (mode, PTI passes, updates,
    seconds, losses; stitching: faces, seconds, mean border loss before/after), empty without; with the
    confidence gate on, ``gate`` holds its settings
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
    tune: dict = field(default_factory=dict)
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
    _check_track_options(opts)
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
    check_tune_options(tune_options(opts))
    if opts.tune != "none" and opts.src is not None and (is_image_path(opts.src) or Path(opts.src).is_dir()):
        raise ValueError("--tune tunes the generator on the frames of a video; the input is not a video")
    if opts.tune == "stitch" and (opts.keyframes is not None or per_track_options(opts)):
        raise ValueError("--tune stitch tunes each face for one constant edit; it does not take --keyframes or "
                         "per-track edits yet (use --tune pti with them)")
    if opts.restore and opts.from_inversion is not None:
        raise ValueError("--restore inverts the frames with the super-resolution model; it cannot re-render an "
                         "export (--from-inversion), whose codes come from another encoder")
    gate_settings(opts)
    if int(opts.segments) != opts.segments or opts.segments < 1:
        raise ValueError(f"--segments must be an integer >= 1, got {opts.segments}")
    if opts.segments > 1:
        check_segmentable(opts)


def check_segmentable(opts) -> None:
    """Refuse the options a segmented run (:mod:`vidinv.pipeline.segments`) cannot make equal to the single
    run, with one-line messages: track ids count from each segment's first frame, tuning needs the whole clip,
    random noise is not reproducible, the gate's detector-score reference is a running maximum over the track.

    Raises:
        ValueError: an image / folder input, ``tune``, per-track options, ``mix_rows``, ``noise`` random, the
            gate's score component.
    """
    src = opts.src
    if src is not None and (is_image_path(src) or Path(src).is_dir()):
        raise ValueError(f"--segments splits a video; {src} is {'a folder' if Path(src).is_dir() else 'an image'}")
    if opts.tune != "none":
        raise ValueError("--segments cannot be used with --tune: the generator is tuned on the whole clip")
    if opts.tracks or opts.track_attrs or opts.track_keyframes:
        raise ValueError("--segments cannot be used with --track / --track-attr / --track-keyframes: track ids "
                           "count from each segment's first frame")
    if opts.mix_rows is not None:
        raise ValueError("--segments cannot be used with --mix-rows: the injected style follows the track id, "
                           "which counts from each segment's first frame")
    if opts.noise != "const":
        raise ValueError("--segments needs --noise const: random noise differs from run to run")
    if opts.gate == "on" and str(opts.gate_score) != "off":
        raise ValueError("--segments with the gate needs --gate-score off (or --gate off): the detector-score "
                           "reference is the running maximum over the whole track")


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


def _check_track_options(opts: EditOptions) -> None:
    """The keyframes and per-track options of ``opts``, parsed (see :func:`check_options`)."""
    if opts.keyframes is not None:
        parse_keyframes(opts.keyframes)
    for tid in [*opts.tracks, *(t for t, _ in opts.track_attrs), *(t for t, _ in opts.track_keyframes)]:
        if int(tid) < 0:
            raise ValueError(f"track ids are >= 0 (see `vidinv track IN --face all --json`); got {tid}")
    for _tid, spec in opts.track_attrs:
        parse_edit_spec(spec)
    seen: set[int] = set()
    for tid, text in opts.track_keyframes:
        if int(tid) in seen:
            raise ValueError(f"--track-keyframes {tid} is given twice: one set of keyframes per track")
        seen.add(int(tid))
        parse_keyframes(text)


def per_track_options(opts: EditOptions) -> bool:
    """Whether ``opts`` names tracks (``--track`` / ``--track-attr`` / ``--track-keyframes``): the run then
    follows every face (as ``--face all``) and edits only the tracks that get an edit."""
    return bool(opts.tracks or opts.track_attrs or opts.track_keyframes)


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


def _schedule(opts: EditOptions, edit: LatentEdit, kind: str) -> EditSchedule | None:
    """The :class:`~vidinv.edit.keyframes.EditSchedule` of the keyframes and per-track options, or None when
    there are none (every face gets ``edit``, as without this feature)."""
    if opts.keyframes is None and not per_track_options(opts):
        return None
    has_default = bool(opts.attrs or opts.directions or is_task(kind) or opts.mix_rows is not None)
    per_track = {}
    for tid, specs in group_track_items(opts.track_attrs).items():
        items = []
        for spec in specs:
            name, s, rows = parse_edit_spec(spec)
            items.append((name, s, rows if rows is not None else opts.layers))
        per_track[tid] = build_edit(items, weights_dir=opts.weights_dir, fetch=False,
                                    allow_hash_mismatch=opts.allow_hash_mismatch or None)
    schedule = EditSchedule(edit if has_default else None, tracks=[int(t) for t in opts.tracks] or None,
                            per_track=per_track,
                            keyframes=parse_keyframes(opts.keyframes) if opts.keyframes is not None else None,
                            per_track_keyframes={int(t): parse_keyframes(k) for t, k in opts.track_keyframes})
    strong = sorted({f"{t.direction.name} at strength {t.strength:g}" for e in schedule.peak_edits() for t in e.terms
                     if equivalent_strength(t.direction, t.strength) > STRENGTH_WARNING})
    if strong:
        log.warning("the keyframes reach %s: far outside the edits the authors demonstrate (warning above %.1f, see "
                    "`vidinv edit --help`), expect an unnatural face", ", ".join(strong), STRENGTH_WARNING)
    return schedule


@dataclass
class _Plan:
    """What :func:`plan_edit` found: the options, resolved weight files, the built edit, the input video,
    the export to render from (or None) and the schedule of keyframed / per-track edits (None: every face
    gets ``edit``)."""

    opts: EditOptions
    paths: dict[str, Path]
    edit: LatentEdit
    src: Path
    reader: InversionReader | None
    schedule: EditSchedule | None = None


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
    if (not opts.attrs and not opts.directions and not is_task(kind) and opts.mix_rows is None
            and not opts.track_attrs):
        raise ValueError("nothing to edit: give --attr NAME (see `vidinv directions list`), --direction FILE or "
                         "--track-attr ID NAME")
    items, files = _edit_items(opts)
    reader = None
    if opts.from_inversion is not None:
        reader = InversionReader(opts.from_inversion)
        reader.check()  # NaN in a hash-consistent export would render every face as a black patch
        encoder = reader.encoder["kind"]
        need_encoder = False
    else:
        encoder, need_encoder = kind, True
    names = [*opts.attrs, *(spec for _, spec in opts.track_attrs)]
    extra = direction_weights(names)
    if opts.tune != "none" and (reader is None or reader.tuned_generator is None):
        extra.append(LPIPS_BACKBONE_FILES["alex"])  # the PTI loss (STIT: LPIPS-AlexNet)
    paths = resolve_job_weights(opts, encoder=encoder, need_encoder=need_encoder, extra=extra,
                                mask=opts.mask, quiet=quiet)
    edit = build_edit(items, weights_dir=opts.weights_dir, fetch=False, files=files,
                      allow_hash_mismatch=opts.allow_hash_mismatch or None)
    schedule = _schedule(opts, edit, kind)
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
    return _Plan(opts, paths, edit, src, reader, schedule)


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


def _select_stage(schedule: EditSchedule, seen: set[int]):
    """Stage: items -> the same items with only the faces of tracks ``schedule`` edits (the others keep the
    input's pixels and are neither encoded nor rendered); every track id met is added to ``seen``."""
    def run(items: Iterator[Item]) -> Iterator[Item]:
        for it in items:
            seen.update(f.track_id for f in it.faces)
            it.faces = [f for f in it.faces if schedule.edits_track(f.track_id)]
            yield it
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


def load_edit_job(opts: EditOptions, plan: _Plan, loader: BundleLoader | None = None) -> Job:
    """Load the networks of an edit (once, for a video, an image or a whole folder; with ``loader``, as
    :func:`vidinv.pipeline.job.load_job`) and check that an export to render from fits the loaded generator.

    Raises:
        vidinv.io.inversion.InversionFormatError: the export was made with another generator.
        What :func:`vidinv.pipeline.job.load_job` raises.
    """
    reader = plan.reader
    encoder = reader.encoder["kind"] if reader is not None else job_kind(opts)
    job = load_job(opts, plan.paths, plan.src, encoder=encoder, need_encoder=reader is None, mask=opts.mask,
                   loader=loader)
    if reader is not None:
        gen = reader.generator
        for k in ("size", "n_latent", "style_dim"):
            if k in gen and int(gen[k]) != int(getattr(job.bundle.G, k)):
                raise InversionFormatError(f"{opts.from_inversion}: made with a generator of {k} {gen[k]}, the "
                                           f"loaded one has {getattr(job.bundle.G, k)}")
        gen_file = inverter_class(encoder).generator_file
        reader.check_models({gen_file: plan.paths[gen_file]})
        tuned = reader.tuned_generator
        if tuned is not None:  # the export's generator tuned on this clip (vidinv invert --tune pti)
            base = {m.name: m.sha256 for m in reader.models}.get(gen_file)
            load_tuned_generator(job.bundle.G, tuned, base_sha256=base)
            log.info("rendering with the export's tuned generator %s", tuned)
    return job


def run_edit(opts: EditOptions, *, plan: _Plan | None = None, progress: Callable[[int, int | None], None] | None = None,
             quiet: bool = False, on_frame: Callable[[Item], None] | None = None,
             loader: BundleLoader | None = None) -> EditResult:
    """Run ``vidinv edit`` on one video or one still image (see the module doc; a folder:
    :func:`run_edit_folder`).

    Args:
        opts: the settings.
        plan: the result of :func:`plan_edit` when already made (the CLI makes it first to fail early).
        progress: called as ``progress(frames_done, frames_total)`` after each written frame.
        on_frame: called with each written :class:`~vidinv.pipeline.faces.Item` (frame, faces with
            track id / quad / landmarks, output picture), e.g. to collect the quads.
        loader: what loads the networks (:func:`load_edit_job`).

    ``opts.segments`` is not read here: ``vidinv edit --segments N`` runs
    :func:`vidinv.pipeline.segments.run_segmented`.

    Returns:
        :class:`EditResult`.

    Raises:
        Everything :func:`plan_edit` raises; vidinv.io.checkpoints errors from the loaders; errors of the
        stages (the first one is re-raised after every stage stopped and the temporary output file
        was deleted).
    """
    t_start = time.perf_counter()
    plan = plan or plan_edit(opts, quiet=quiet)
    job = load_edit_job(opts, plan, loader)
    result = edit_input(job, plan, plan.src, opts.dst, progress=progress, on_frame=on_frame)
    result.wall_s = time.perf_counter() - t_start
    return result


def run_edit_folder(opts: EditOptions, folder: FolderPlan, *, plan: _Plan | None = None,
                    progress: Callable[[int, int | None], None] | None = None, quiet: bool = False,
                    loader: BundleLoader | None = None) -> FolderResult:
    """``vidinv edit DIR -o OUTDIR``: every image of ``folder`` (:func:`vidinv.pipeline.images.plan_folder`)
    edited with the networks loaded once; an image without a face is copied unchanged (noted in the
    summary), an image that fails is listed and the others go on (:func:`vidinv.pipeline.images.run_folder`).

    Args:
        opts: the settings (``opts.src`` / ``opts.dst``: the folders).
        folder: the checked folder plan.
        plan: the result of :func:`plan_edit` when already made.
        progress: ``progress(images_done, images_total)`` after each image.
        loader: what loads the networks (:func:`load_edit_job`).

    Returns:
        :class:`~vidinv.pipeline.images.FolderResult` whose outcomes hold :class:`EditResult` s.

    Raises:
        Everything :func:`plan_edit` and :func:`load_edit_job` raise (before the first image).
    """
    plan = plan or plan_edit(opts, quiet=quiet)
    job = load_edit_job(opts, plan, loader)
    return run_folder(folder, lambda src, dst: edit_input(job.for_input(src), plan, src, dst),
                      note=lambda r: "no face found: copied unchanged" if r.passthrough else None,
                      progress=progress)


def edit_input(job: Job, plan: _Plan, src: Path, dst: str | os.PathLike, *,
               progress: Callable[[int, int | None], None] | None = None,
               on_frame: Callable[[Item], None] | None = None, decode: range | None = None,
               sink=None) -> EditResult:
    """Edit one input (a video, or a still image: :func:`vidinv.io.images.open_output_writer` picks the
    writer) with the loaded ``job`` (whose ``src`` is ``src``) into ``dst``; arguments and errors as
    :func:`run_edit`. No face anywhere: ``dst`` is the input unchanged (:func:`vidinv.io.mux.passthrough`,
    :func:`vidinv.io.images.passthrough_image`) with a warning.

    One segment of a long video (:mod:`vidinv.pipeline.segments`): ``sink`` replaces the output writer (an
    object with the writer's ``frames`` (the frame indices it takes, in order), ``write(frame, image)``,
    ``done``, ``abort()`` and context manager) and ``decode`` is the range of frame indices decoded and run
    through the stages (a superset of ``sink.frames``: the context the temporal stages need). Only the
    frames of ``sink.frames`` are written and counted in the result; ``on_frame`` sees every decoded frame.
    With a sink a run without faces is not replaced by a passthrough (the sink gets every frame)."""
    t_start = time.perf_counter()
    opts = plan.opts
    reader = plan.reader
    bundle = job.bundle
    settings = BlendSettings(mode=opts.blend)
    schedule = plan.schedule
    result = EditResult(Path(dst), edit=schedule.describe() if schedule is not None else plan.edit.describe())
    seen: set[int] = set()
    steps: dict[str, float] = {}
    tracks: set[int] = set()
    window = opts.start is not None or opts.end is not None

    front = [("degrade", degrade_stage(int(opts.simulate_factor)))] if opts.simulate_factor else []
    stages = list(front)
    gates = gate_settings(opts)
    context = None  # a segment's context frames: through the temporal stages, never rendered
    if sink is not None and decode is not None:
        owned = sink.frames
        context = lambda it: it.frame.index not in owned  # noqa: E731
    if reader is None:
        face_job = job
        if schedule is not None and schedule.per_track_options and job.opts.face != "all":
            face_job = replace(job, opts=replace(job.opts, face="all"))  # track ids: those of --face all
        # the codes of context frames are needed only by the latent smoothing and the gate
        need_codes = bool(opts.latent_smoothing and opts.latent_smoothing > 0) or gates is not None
        front += face_job.face_stages(timings=steps, skip=None if need_codes else context)
    else:
        front.append(("inversion", _inversion_stage(reader, bundle)))
    if schedule is not None and schedule.per_track_options:  # before the encoder: skip the faces left as they are
        front.insert(len(front) - (reader is None), ("select", _select_stage(schedule, seen)))
    tune = tune_options(opts)
    samples = None
    if tune.mode != "none" and (reader is None or reader.tuned_generator is None):
        # two passes: the clip's faces and codes first, PTI, then the render below with the tuned generator
        samples = collect_samples(job, frame_range(src, opts.start, opts.end), front)
        result.tune = tune_job_generator(job, samples, tune, opts.weights_dir).as_dict()
        stages.append(("samples", samples_stage(samples, bundle.runtime.torch_device)))
    else:
        stages = front
    writer = sink if sink is not None else open_output_writer(src, dst, codec=opts.codec, crf=opts.crf,
                                                               pix_fmt=opts.pix_fmt, start=opts.start,
                                                               end=opts.end, scale=opts.scale)
    frames = writer.frames
    job.attach_backend(len(frames))
    video = job.open_video(frames if decode is None else decode)
    if opts.latent_smoothing and opts.latent_smoothing > 0:
        stages.append(("smooth", latent_smoothing_stage(float(opts.latent_smoothing))))
    if gates is not None:  # before style mixing: the gate judges the inversion of the input face
        stages.append(("gate", gate_stage(bundle, gates, opts.batch_size, noise=opts.noise, timings=steps)))
        result.gate = gates.describe()
    if opts.mix_rows is not None:
        stages.append(("mix", style_mixing_stage(bundle.G, parse_rows(opts.mix_rows, bundle.G.n_latent),
                                                 opts.mix_alpha, opts.seed)))
    stitch: dict = {}
    edit = schedule if schedule is not None else plan.edit
    render = (stitch_render_stage(bundle, plan.edit, tune, noise=opts.noise, settings=settings, timings=steps,
                                  scale=opts.scale, stats=stitch) if tune.mode == "stitch" else
              render_stage(bundle, edit, opts.batch_size, noise=opts.noise, settings=settings, timings=steps,
                           scale=opts.scale, skip=context))
    stages += [("render", render),
               ("composite", _finite_faces(composite_stage(settings, scale=opts.scale)))]

    def write(items):
        edited = 0
        try:
            with writer:
                for it in items:
                    if it.frame.index in frames:  # a segment's context frames are not written
                        writer.write(it.frame, it.image)
                        if it.faces:
                            edited += 1
                            for f in it.faces:
                                tracks.add(f.track_id)
                    yield it
                if edited == 0 and not window and opts.scale == 1 and sink is None:  # up-scaled: write the frames
                    raise _NoFace()
        finally:
            video.close()

    stages.append(("write", write))
    G = bundle.G
    G.reset_layer_count()
    try:
        for it in job.stream(video, stages, total=len(frames), progress=progress):
            if it.frame.index not in frames:
                if on_frame is not None:
                    on_frame(it)
                continue
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
    if stitch.get("faces"):
        n = stitch["faces"]
        result.tune.update({"mode": "stitch", "stitch_faces": n, "stitch_seconds": round(stitch["seconds"], 3),
                            "border_loss_first": stitch.get("border_first", 0.0) / n,
                            "border_loss_last": stitch.get("border_last", 0.0) / n})
    if schedule is not None and schedule.per_track_options:
        missing = sorted(schedule.named_tracks - seen)
        if missing:
            log.warning("track(s) %s not found in %s (tracks found: %s); the ids are those of `vidinv track IN "
                        "--face all --json`%s", ", ".join(map(str, missing)), src,
                        ", ".join(map(str, sorted(seen))) or "none",
                        " over the same --start / --end window" if window else "")
    result.step_s = steps
    result.wall_s = time.perf_counter() - t_start
    return result
