"""The options of the video jobs (``vidinv edit``, ``vidinv invert`` and the task commands to come), each
defined once.

An option of a job sets the field of the same name of the job's options dataclass
(:class:`vidinv.pipeline.edit.EditOptions`, :class:`vidinv.pipeline.invert.InvertOptions`): its default
is that field's default (read with :func:`dataclasses.fields`, so defaults live only in the dataclasses),
its flags, type and help text are in :data:`JOB_OPTIONS` here. A command takes the ones it offers with
:func:`job_options`; its function then receives them as keyword arguments named like the fields::

    @click.command("edit")
    @click.argument("src")
    @click.option("-o", "--output", "dst", required=True)
    @job_options(EditOptions, only=("attrs", "strengths", "encoder"))
    @progress_options
    def edit_cmd(src, dst, quiet, verbose, **fields):
        opts = EditOptions(src=src, dst=dst, **fields)

This module imports only click and the standard library (the dataclass is handed in by the command).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

__all__ = ["JOB_OPTIONS", "field_default", "job_options", "progress_options", "SectionedCommand"]

_PRECISIONS = ["fp32", "fp16", "bf16"]
_HASH_HELP = ("Accept a --weights-dir file whose sha256 differs from the registry's (default: an error naming both "
              "hashes); also VIDINV_ALLOW_HASH_MISMATCH=1.")

def _upscale_value(v: Any) -> int | str:
    """``--detect-upscale``: ``"auto"`` or an integer >= 1 (click.BadParameter otherwise)."""
    if str(v) == "auto":
        return "auto"
    try:
        n = int(v)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise click.BadParameter(f"{v!r} is not 'auto' or an integer >= 1")
    return n


#: Options dataclass field -> (the option's flags, the other keyword arguments of :func:`click.option`
#: except ``default``). The field name is always the parameter's name.
JOB_OPTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    # what to edit
    "attrs": (("--attr",), dict(multiple=True, help="Attribute NAME[=S][@ROWS] (repeatable), e.g. smile, stit:age.")),
    "strengths": (("--strength",), dict(
        multiple=True, type=float,
        help="Strength per --attr then --direction, in order (one value: for all). Default 1.")),
    "directions": (("--direction",), dict(multiple=True, type=click.Path(exists=True, dir_okay=False),
                                          help="Your own direction file (.npy / .pt; repeatable).")),
    "direction_convention": (("--direction-convention",), dict(
        type=click.Choice(["fs", "unit", "raw"]), show_default=True,
        help="How --direction files turn a strength into dw (see above).")),
    "layers": (("--layers",), dict(help="Style rows to edit, e.g. 0-7 (default all).")),
    # keyframes and tracks
    "keyframes": (("--keyframes",), dict(
        metavar="T:S,...",
        help="Strength over time: TIME:STRENGTH pairs (seconds on the video timeline, as --start; increasing), e.g. "
             "'0:0,1.0:2,4.5:2,5.0:0'; smoothstep-eased between keys, held before the first and after the last. "
             "The value multiplies each edit's strength (default 1: it is the strength).")),
    "tracks": (("--track",), dict(
        multiple=True, type=int, metavar="ID",
        help="Apply the --attr/--direction edit to this face track only (repeatable; default: every track). "
             "Track ids: `vidinv track IN --face all --json OUT.json` (its preview draws #ID).")),
    "track_attrs": (("--track-attr",), dict(
        multiple=True, nargs=2, type=(int, str), metavar="ID NAME[=S][@ROWS]",
        help="Track ID's own attribute (repeatable, several per track), replacing the --attr/--direction edit "
             "for that track, e.g. --track-attr 2 age=1 --track-attr 2 smile=0.5.")),
    "track_keyframes": (("--track-keyframes",), dict(
        multiple=True, nargs=2, type=(int, str), metavar="ID T:S,...",
        help="Track ID's own keyframes (instead of --keyframes for that track).")),
    # models and faces
    "encoder": (("--encoder",), dict(type=click.Choice(["fs", "psp"]), show_default=True)),
    "face": (("--face",), dict(type=click.Choice(["largest", "all"]), show_default=True)),
    "blend": (("--blend",), dict(type=click.Choice(["alpha", "poisson"]), show_default=True)),
    "mask": (("--mask",), dict(
        type=click.Choice(["auto", "parsing", "landmarks"]), show_default=True,
        help="Blend mask: BiSeNet parsing (79999_iter.pth) or landmarks; auto = parsing when present.")),
    "detect_upscale": (("--detect-upscale",), dict(
        show_default=True, callback=lambda ctx, param, v: _upscale_value(v),
        help="Enlarge frames by this factor (or 'auto': small frames) for dlib's face detection and landmarks.")),
    "batch_size": (("--batch-size",), dict(type=int, show_default=True, help="Faces per encoder/generator batch.")),
    "device": (("--device",), dict(show_default=True, help="auto, cpu or cuda[:N].")),
    "precision": (("--precision",), dict(type=click.Choice(_PRECISIONS), show_default=True,
                                         help="fp16/bf16: autocast on CUDA only.")),
    "backend": (("--backend",), dict(
        type=click.Choice(["eager", "onnx", "openvino", "auto"]), show_default=True,
        help="Generator back-end: eager PyTorch, ONNX Runtime (onnx) or OpenVINO (openvino) (CPU, float32; the "
             "generator is exported to ONNX once per weights file into $VIDINV_HOME/onnx, seconds to tens of seconds "
             "at 1024, then a start of seconds per run; needs pip install 'vidinv[onnx]' / 'vidinv[openvino]'). "
             "auto = a compiled one only where `vidinv export onnx` measured it faster here and frames x saving per "
             "frame >= its start.")),
    # output video
    "crf": (("--crf",), dict(type=int, show_default=True)),
    "codec": (("--codec",), dict(show_default=True)),
    "pix_fmt": (("--pix-fmt",), dict(help="Output pixel format (default: the input's).")),
    "start": (("--start",), dict(type=float, help="Start of the window to process (seconds).")),
    "end": (("--end",), dict(type=float, help="End of the window (seconds, exclusive).")),
    # weight files
    "weights_dir": (("--weights-dir",), dict(type=click.Path(file_okay=False), help="Folder of weight files.")),
    "fetch": (("--fetch/--no-fetch",), dict(show_default=True, help="Download missing weight files.")),
    "allow_hash_mismatch": (("--allow-hash-mismatch",), dict(is_flag=True, help=_HASH_HELP)),
    "encoder_checkpoint": (("--encoder-checkpoint",), dict(
        type=click.Path(dir_okay=False),
        help="An encoder you trained with `vidinv train` (its exported file, e.g. run_fs_encoder.pth) instead of "
             "the official one of --encoder.")),
    # latent codes
    "from_inversion": (("--from-inversion",), dict(
        type=click.Path(file_okay=False),
        help="Re-render from a `vidinv invert` export (IN defaults to its source video).")),
    "noise": (("--noise",), dict(type=click.Choice(["const", "random"]), show_default=True)),
    "latent_smoothing": (("--latent-smoothing",), dict(
        type=float, show_default=True, help="Temporal Gaussian sigma (frames) on w and F per track; 0 = off.")),
    "segments": (("--segments",), dict(
        type=click.IntRange(min=1), show_default=True,
        help="Edit a video as N segments one after another (each decodes the frames its smoothing needs around "
             "it), then join them: the output equals the single run's (the reference of `vidinv batch`'s split "
             "runs). Not with images, --tune, per-track options, --mix-rows, --noise random, the gate's score "
             "component (use --gate-score off).")),
    # pSp tasks
    "restore": (("--restore",), dict(
        is_flag=True, help="Restore the faces with pSp's super-resolution model and edit its inversion (one pass; "
                           "see `vidinv restore`); --encoder is then not used.")),
    "scale": (("--scale",), dict(type=int, show_default=True,
                                 help="Up-scale the output frames by 1, 2, 4 or 8 (background: Lanczos).")),
    "simulate_factor": (("--simulate-factor",), dict(
        type=int, help="Evaluate on a high-resolution input: first degrade each frame by this factor as pSp's "
                       "BilinearResize does.")),
    "mix_rows": (("--mix-rows",), dict(help="Style mixing: W+ rows (e.g. 8-17) taken from one random style per "
                                            "track (pSp multi-modal synthesis).")),
    "mix_alpha": (("--mix-alpha",), dict(type=float, show_default=True,
                                         help="Style mixing weight (1 replaces the rows).")),
    "seed": (("--seed",), dict(type=int, show_default=True, help="Seed of the injected styles (track t: seed + t).")),
    # per-video tuning (Stitch it in Time; vidinv.pipeline.tuning)
    "tune": (("--tune",), dict(
        type=click.Choice(["none", "pti", "stitch"]), show_default=True,
        help="Tune the generator on this clip (STIT): pti = pivotal tuning on the faces (then render: two passes); "
             "stitch = pti, then stitching tuning of each face so it meets the frame without a seam (edit only). "
             "Slow: GPU work at full size.")),
    "tune_steps": (("--tune-steps",), dict(type=click.IntRange(1), show_default=True,
                                           help="PTI passes over the clip's faces (one update per face each).")),
    "stitch_steps": (("--stitch-steps",), dict(type=click.IntRange(1), show_default=True,
                                               help="Stitching-tuning updates per face.")),
    "outer_mask_dilation": (("--outer-mask-dilation",), dict(
        type=click.IntRange(1), show_default=True,
        help="Stitching band just outside the face, in pixels of a 1024 crop.")),
    "border_loss_threshold": (("--border-loss-threshold",), dict(
        type=float, show_default=True,
        help="Stop a face's stitching tuning once its border loss is below this (STIT uses 0.005; 0 = never).")),
    # confidence gate (vidinv.face.gate)
    "gate": (("--gate",), dict(type=click.Choice(["on", "off"]), show_default=True,
                               help="Gate: fade each edited face out where the head turns away, the face is occluded "
                                    "or the inversion fails (the input pixels are kept there).")),
    "gate_yaw": (("--gate-yaw",), dict(show_default=True, metavar="FULL,ZERO|off",
                                       help="Gate: |yaw| (degrees) where the edit is full / gone.")),
    "gate_pitch": (("--gate-pitch",), dict(show_default=True, metavar="FULL,ZERO|off",
                                           help="Gate: |pitch| (degrees) where the edit is full / gone.")),
    "gate_score": (("--gate-score",), dict(show_default=True, metavar="FULL,ZERO|off",
                                           help="Gate: drop of the dlib HOG detection score below the track's "
                                                "typical score (occlusion).")),
    "gate_jitter": (("--gate-jitter",), dict(show_default=True, metavar="FULL,ZERO|off",
                                             help="Gate: raw-vs-smoothed landmark distance (interocular distances).")),
    "gate_identity": (("--gate-identity",), dict(
        show_default=True, metavar="FULL,ZERO|off",
        help="Gate: dlib descriptor distance between the aligned face and its reconstruction G(w, F).")),
    "gate_fade": (("--gate-fade",), dict(type=int, show_default=True, help="Gate: frames of a full fade in/out.")),
    # inversion exports
    "save_crops": (("--save-crops",), dict(is_flag=True, help="Also store each aligned crop as PNG.")),
    "save_recon": (("--save-reconstructions",), dict(is_flag=True, help="Also store each reconstruction G(w, F).")),
    "image_size": (("--image-size",), dict(type=int, show_default=True, help="Side of the PNGs.")),
    "frames": (("--frames",), dict(is_flag=True, help="Also write each face as a PNG (folder output).")),
    "overwrite": (("--overwrite",), dict(is_flag=True, help="Replace an existing export.")),
    "resume": (("--resume",), dict(
        is_flag=True,
        help="Continue an interrupted export in OUT from its last completed chunk (same video, models and options "
             "as the first run; the result equals one uninterrupted run).")),
}


def field_default(options_class: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``options_class`` (its ``default_factory`` called).

    Raises:
        TypeError: no such field, or the field has no default (a required value: make it an argument).
    """
    for f in dataclasses.fields(options_class):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise TypeError(f"{options_class.__name__}.{name} has no default; it cannot be an option")
    raise TypeError(f"{options_class.__name__} has no field {name!r}")


def job_options(options_class: type, only: Iterable[str]) -> Callable[[Callable], Callable]:
    """Decorator adding the options of the fields ``only`` (in this order, as listed by ``--help``) of the
    dataclass ``options_class`` to a click command; each default is the field's default
    (:func:`field_default`), the rest of each option comes from :data:`JOB_OPTIONS`.

    Raises:
        TypeError: a name is not a field of ``options_class`` with a default, or has no entry in
            :data:`JOB_OPTIONS` (at import of the command's module).
    """
    decorators = []
    for name in only:
        default = field_default(options_class, name)
        if name not in JOB_OPTIONS:
            raise TypeError(f"no command-line option is defined for {options_class.__name__}.{name}")
        flags, kwargs = JOB_OPTIONS[name]
        decorators.append(click.option(*flags, name, default=default, **kwargs))

    def apply(command: Callable) -> Callable:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command
    return apply


def progress_options(command: Callable) -> Callable:
    """Decorator adding ``-q/--quiet`` (parameter ``quiet``: no progress bar) and ``-v/--verbose``
    (``verbose``: per-stage timings at the end) to a job's command."""
    command = click.option("-v", "--verbose", is_flag=True, help="Per-stage timings at the end.")(command)
    return click.option("-q", "--quiet", is_flag=True, help="No progress bar.")(command)


class SectionedCommand(click.Command):
    """A click command whose ``--help`` lists some options under their own headings.

    Args:
        sections: ``[(heading, (parameter name, ...)), ...]``: those options are listed under ``heading``
            (in the order the command declares them), after the other options (under ``Options``).
        *args, **kwargs: as :class:`click.Command` (``click.command(..., cls=SectionedCommand, sections=...)``).
    """

    def __init__(self, *args: Any, sections: Sequence[tuple[str, Sequence[str]]] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sections = [(h, tuple(names)) for h, names in sections]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The options in sections (see the class doc)."""
        where = {name: h for h, names in self.sections for name in names}
        rows: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            rec = param.get_help_record(ctx)
            if rec is not None and not isinstance(param, click.Argument):
                rows.setdefault(where.get(param.name or "", "Options"), []).append(rec)
        for heading in ["Options", *(h for h, _ in self.sections)]:
            if rows.get(heading):
                with formatter.section(heading):
                    formatter.write_dl(rows[heading])
