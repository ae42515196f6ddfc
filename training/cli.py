"""Command line of the trainers: ``python -m vidinv.training fs|psp`` and its alias ``vidinv train fs|psp``.

Examples::

    python -m vidinv.training fs --config my_fs.yaml                     # official Feature-Style recipe
    python -m vidinv.training fs --real-dir ffhq/images1024x1024 --out-dir runs/fs --weights-dir weights/
    python -m vidinv.training psp --objective super_resolution --real-dir celeba_hq/train --out-dir runs/sr
    python -m vidinv.training fs --config my_fs.yaml --resume            # continue the latest checkpoint
    torchrun --nproc_per_node 4 -m vidinv.training fs --config my_fs.yaml
    python -m vidinv.training fs --print-config > my_fs.yaml             # commented defaults to edit
    python -m vidinv.training fs --describe                              # every field, documented

A loss whose network weights are missing stops the command before training (the message lists every
missing file and where to get it), unless disabled explicitly with ``--no-id-loss``,
``--no-parsing-loss`` (FS) or ``--no-lpips-loss`` (or the config's ``loss.use_*: false``).

``--set`` takes OmegaConf dotted overrides (``section.key=value``; values parsed as YAML). Deprecated
names (``psp --task``, the config key ``task``; now ``objective``) still work and print a one-line
``warning:`` on stderr.
"""
from __future__ import annotations

import logging
import sys
import warnings

import click

from vidinv.training.config import PSP_OBJECTIVES, ConfigDeprecationWarning, ConfigError, describe, load_config, to_yaml

__all__ = ["training_cli", "fs_command", "psp_command"]

_DISABLE_HINT = ("To train without a loss whose network is missing, disable it explicitly: {flags} "
                 "(or set loss.use_*: false in the config).")


def _common(f):
    opts = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                     help="YAML or JSON config (only the keys that differ from the official defaults)."),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override one field, e.g. --set run.max_steps=1000 (repeatable)."),
        click.option("--out-dir", default=None, help="run.out_dir."),
        click.option("--real-dir", default=None, help="data.real_dir: folder of aligned face images."),
        click.option("--weights-dir", default=None, help="weights.weights_dir: folder of weight files placed by hand."),
        click.option("--fetch", is_flag=True, default=False, help="Download missing weight files first."),
        click.option("--max-steps", type=int, default=None, help="run.max_steps."),
        click.option("--device", default=None, help="run.device (auto, cpu, cuda, cuda:N)."),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default=None,
                     help="run.precision (autocast)."),
        click.option("--resume", is_flag=True, default=False, help="Continue from the latest checkpoint of the run."),
        click.option("--resume-from", type=click.Path(exists=True), default=None,
                     help="Continue from this checkpoint file (or run folder)."),
        click.option("--no-lpips-loss", is_flag=True, default=False, help="Disable the LPIPS term."),
        click.option("--no-id-loss", is_flag=True, default=False, help="Disable the identity term."),
        click.option("--print-config", is_flag=True, default=False,
                     help="Print the resulting config as commented YAML and exit."),
        click.option("--describe", "describe_", is_flag=True, default=False,
                     help="List every config field with its default and documentation, and exit."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


#: ``--no-*-loss`` flags (click parameter name) -> the ``loss`` key they set to false. A flag applies only to
#: the commands that declare it (``--no-parsing-loss``: ``fs``), so a command's ``kw`` holds only its own.
_LOSS_SWITCHES = {"no_lpips_loss": "use_lpips", "no_id_loss": "use_id", "no_parsing_loss": "use_parsing"}


def _extra(kw: dict) -> dict:
    """The nested config dict of a command's flags (``kw``: click's parameters of that command).

    Options a command does not declare (``--no-parsing-loss`` outside ``fs``, ``--objective``/``--task``
    outside ``psp``) are absent from ``kw``, so no task name is consulted here.

    Raises:
        click.UsageError: ``--objective`` and the deprecated ``--task`` disagree.
    """
    extra: dict = {}

    def put(section, key, value):
        if value is not None:
            extra.setdefault(section, {})[key] = value

    put("run", "out_dir", kw.get("out_dir"))
    put("run", "max_steps", kw.get("max_steps"))
    put("run", "device", kw.get("device"))
    put("run", "precision", kw.get("precision"))
    put("data", "real_dir", kw.get("real_dir"))
    put("weights", "weights_dir", kw.get("weights_dir"))
    if kw.get("fetch"):
        put("weights", "fetch", True)
    for flag, key in _LOSS_SWITCHES.items():
        if kw.get(flag):
            put("loss", key, False)
    objective, legacy = kw.get("objective"), kw.get("legacy_task")
    if legacy:
        click.echo("warning: --task is deprecated; use --objective", err=True)
        if objective and objective != legacy:
            raise click.UsageError(f"--objective {objective} and --task {legacy} disagree")
    if objective or legacy:
        extra["objective"] = objective or legacy
    return extra


def _load(task: str, kw: dict):
    """The config of the command line, deprecation warnings echoed as one ``warning:`` line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigDeprecationWarning)
        try:
            cfg = load_config(task, kw.get("config_path"), list(kw.get("overrides") or []), _extra(kw))
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from exc
    for w in caught:
        if issubclass(w.category, ConfigDeprecationWarning):
            click.echo(f"warning: {w.message}", err=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return cfg


#: What a run writes into ``run.out_dir`` (training.runner): an input there would be replaced.
RUN_MEMBERS = ("checkpoints", "samples", "logs", "export", "video_faces")


def check_paths(cfg, config_path: str | None = None) -> None:
    """The files of a training run, checked before any weights or networks are loaded: ``data.real_dir``
    (when set) is a folder; ``run.out_dir`` is not, does not resolve to and would not replace (under its
    checkpoints/ samples/ logs/ export/ video_faces/) the images folder, a video, the config file or the
    weights folder, does not lie inside the images folder (its sample grids would become training images)
    and can be written.

    Raises:
        vidinv.io.outputs.InputFileError, vidinv.io.outputs.OutputPathError (both ``ValueError``).
    """
    # on use: `vidinv train --help` / `--print-config` stay free of torch (start-up time)
    from pathlib import Path

    from vidinv.io.outputs import InputFileError, check_output

    real_dir = cfg.data.real_dir
    if real_dir and not Path(real_dir).is_dir():
        state = "is not a folder" if Path(real_dir).exists() else "does not exist"
        raise InputFileError(f"data.real_dir (--real-dir) {real_dir} {state}")
    inputs = [real_dir, config_path, cfg.weights.weights_dir, *(cfg.data.videos or [])]
    check_output(cfg.run.out_dir, inputs, kind="dir", members=RUN_MEMBERS, forbid_inside=[real_dir],
                 what="run folder (run.out_dir)")


def _run(task: str, kw: dict) -> None:
    # on use: `vidinv train --help` / `--print-config` stay free of torch (start-up time)
    from vidinv.training.networks import ExplicitWeightsError
    from vidinv.training.runner import TRAINING_TASKS, train
    from vidinv.weights import MissingWeightsError

    if kw.get("describe_"):
        click.echo(describe(task))
        return
    cfg = _load(task, kw)
    if kw.get("print_config"):
        click.echo(to_yaml(cfg), nl=False)
        return
    try:
        check_paths(cfg, kw.get("config_path"))  # before any weights or networks
    except ValueError as exc:
        click.echo(f"vidinv: error: {exc}", err=True)
        sys.exit(2)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    resume = kw.get("resume_from") or bool(kw.get("resume"))
    flags = ", ".join(TRAINING_TASKS[task].loss_flags)
    try:
        result = train(cfg, resume=resume)
    except MissingWeightsError as exc:
        click.echo(str(exc), err=True)
        click.echo(_DISABLE_HINT.format(flags=flags), err=True)
        sys.exit(2)
    except ExplicitWeightsError as exc:
        click.echo(str(exc), err=True)
        click.echo(_DISABLE_HINT.format(flags=flags), err=True)
        sys.exit(2)
    except (ConfigError, FileExistsError, FileNotFoundError) as exc:
        click.echo(f"vidinv: error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"trained {result.step} steps; run folder {result.out_dir}"
               + (f"; exported {result.export}" if result.export else ""))


@click.command("fs")
@_common
@click.option("--no-parsing-loss", is_flag=True, default=False, help="Disable the face-parsing term.")
def fs_command(**kw) -> None:
    """Train the Feature-Style encoder (Yao et al., ECCV 2022) on real + synthetic faces."""
    _run("fs", kw)


@click.command("psp")
@_common
@click.option("--objective", type=click.Choice(PSP_OBJECTIVES), default=None,
              help="pSp objective: encode or super_resolution (default: the config's, else encode).")
@click.option("--task", "legacy_task", type=click.Choice(PSP_OBJECTIVES), default=None, hidden=True,
              help="Deprecated name of --objective.")
def psp_command(**kw) -> None:
    """Train a pSp encoder (Richardson et al., CVPR 2021): StyleGAN inversion or face super-resolution."""
    _run("psp", kw)


@click.group("training", context_settings={"help_option_names": ["-h", "--help"]})
def training_cli() -> None:
    """Train vidinv's encoders (Feature-Style encoder, pSp)."""


training_cli.add_command(fs_command)
training_cli.add_command(psp_command)
