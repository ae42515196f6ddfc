"""The ``vidinv`` command (click): the group and the one place its sub-commands are registered.

Each sub-command is a click command (or group) object in its own module of this package (``edit_cmd`` in
:mod:`vidinv.cli.edit`, ...); :data:`COMMANDS` names them, and :data:`cli` adds each one
(``add_command``) when it is first used: its module is imported only then (``vidinv track`` does not
import torch; ``vidinv --help`` imports no sub-command module: it lists the summaries of
:data:`COMMANDS`). The command modules import :mod:`vidinv.cli.common` and :mod:`vidinv.cli.options`,
never this module nor each other.

Errors: :func:`main` is the one place that turns exceptions into what the user sees. Any error of a
sub-command, click's usage errors included, is printed as one line ``vidinv: error: <reason>`` on stderr
with a non-zero exit status (2 for usage errors and missing weight files, whose message lists every
missing file on the following lines; 1 otherwise; see :mod:`vidinv.cli.common`); Ctrl-C (SIGINT) and
SIGTERM, at any time including start-up, print ``vidinv: interrupted`` and exit with 130. No Python
traceback is shown unless ``VIDINV_DEBUG=1`` is set.
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from typing import NamedTuple

import click

from vidinv import __version__
from vidinv.cli.common import debug_enabled, fail, interrupted, sigterm_to_interrupt

__all__ = ["COMMANDS", "LazyCommand", "LazyGroup", "cli", "main"]


class LazyCommand(NamedTuple):
    """Where a sub-command is and what ``vidinv --help`` says of it before its module is imported."""

    #: ``"module:attribute"`` of the click command (or group) object.
    target: str
    #: The first paragraph of the command's help (tests/test_cli_main.py checks that they agree).
    summary: str


#: Sub-command name -> its :class:`LazyCommand`.
COMMANDS: dict[str, LazyCommand] = {
    "anonymize": LazyCommand("vidinv.cli.edit:anonymize_cmd",
                             "Anonymize every tracked face of IN: replace it by a synthetic face that keeps its "
                             "expression and layout but not its identity, and write OUT (faces blended back as "
                             "`vidinv edit`)."),
    "batch": LazyCommand("vidinv.cli.batch:batch_cmd",
                         "Run many jobs (edit, restore, invert, report) listed in JOBS, a JSON Lines file, on this "
                         "machine or a Ray cluster; jobs already done are skipped when the batch runs again."),
    "directions": LazyCommand("vidinv.cli.directions:directions",
                              "Latent editing directions: named attributes, their sources and conventions, SeFa."),
    "edit": LazyCommand("vidinv.cli.edit:edit_cmd",
                        "Edit the faces of IN and write the result to OUT: a video to a video, an image (.jpg, .png, "
                        ".webp, .tif, .bmp) to an image, a folder of images to a folder (same file names; the models "
                        "load once)."),
    "invert": LazyCommand("vidinv.cli.invert:invert_cmd",
                          "Invert every tracked face of video SRC into the export folder OUT (w, F, quads per frame)."),
    "export": LazyCommand("vidinv.cli.export:export",
                          "Export the StyleGAN2 generator to ONNX (cached under $VIDINV_HOME/onnx) for --backend "
                          "onnx / openvino, and time it against the eager forward."),
    "frontalize": LazyCommand("vidinv.cli.frontalize:frontalize_cmd",
                              "Frontalize the faces of IN with pSp's frontalization model: per face track, the frontal "
                              "aligned faces as a video with the input's timestamps, written to OUT (a .mp4: one "
                              "track) or to a folder (track_<id>.mp4 per track, frames.json, and PNGs with --frames)."),
    "restore": LazyCommand("vidinv.cli.edit:restore_cmd",
                           "Restore the faces of IN (a low-resolution or compressed video or image) with pSp's face "
                           "super-resolution model and write OUT, its frames up-scaled by --scale."),
    "toonify": LazyCommand("vidinv.cli.edit:toonify_cmd",
                           "Toonify the faces of IN with pSp's toonify model and write OUT (faces blended back as "
                           "`vidinv edit`)."),
    "report": LazyCommand("vidinv.cli.report:report",
                          "Measure whether edited videos kept the person recognisable and stable."),
    "track": LazyCommand("vidinv.cli.track:track_cmd",
                         "Detect, track and smooth faces in IN; write a preview with the overlays to -o."),
    "train": LazyCommand("vidinv.cli.train:train", "Train the Feature-Style encoder or a pSp encoder "
                         "(same options as `python -m vidinv.training`)."),
    "ui": LazyCommand("vidinv.cli.ui:ui_cmd",
                      "Open the browser preview: load a video, see its tracked faces, preview an edit on a few "
                      "frames in seconds, then render the whole clip with its report."),
    "weights": LazyCommand("vidinv.cli.weights:weights", "List, fetch and verify the official weights and directions."),
}


class LazyGroup(click.Group):
    """A click group whose sub-commands ``lazy`` (name -> :class:`LazyCommand`) are imported and added
    (``add_command``) when first used; its help lists them by their summaries without importing them."""

    def __init__(self, *args, lazy: dict[str, LazyCommand] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            module, _, attr = self.lazy[name].target.partition(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands section of the help: a command not imported yet is shown by its summary (shortened
        as click shortens a command's help)."""
        rows = []
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        for name in names:
            cmd = self.commands.get(name) or click.Command(name, help=self.lazy[name].summary)
            if not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vidinv")
@click.option("-v", "--verbose", count=True, help="More log output (-v: info, -vv: debug).")
def cli(verbose: int) -> None:
    """vidinv: edit faces in real videos through StyleGAN2 inversion.

    Models: StyleGAN2 (FFHQ 1024), the Feature-Style encoder (Yao et al., ECCV 2022) and pSp
    (Richardson et al., CVPR 2021). Official weights are fetched into $VIDINV_HOME
    (default ~/.cache/vidinv); see `vidinv weights list`.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``vidinv``); exits with the command's status (see the module doc)."""
    try:
        previous = signal.signal(signal.SIGTERM, sigterm_to_interrupt)
    except ValueError:  # pragma: no cover - not the main thread
        previous = None
    try:
        try:
            rv = cli.main(args=argv, prog_name="vidinv", standalone_mode=False)
        except (KeyboardInterrupt, click.exceptions.Abort):
            interrupted()
        except click.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `vidinv` alone: the help text
                exc.show()
                sys.exit(exc.exit_code)
            fail(exc)
        except SystemExit:
            raise
        except BrokenPipeError:  # output piped into e.g. `head`, which exited
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(1)
        except Exception as exc:  # one line for every error; VIDINV_DEBUG=1 shows the traceback
            if debug_enabled():
                raise
            fail(exc)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)
    except KeyboardInterrupt:  # a second Ctrl-C while reporting the first error
        interrupted()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    main()
