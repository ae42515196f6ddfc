"""The ``vidinv`` command (click). Sub-command groups live in their own modules of this package.

Errors: :func:`main` is the one place that turns exceptions into what the user sees. Any error of a
sub-command, click's usage errors included, is printed as one line ``vidinv: error: <reason>`` on stderr
with a non-zero exit status (2 for usage errors and missing weight files, whose message lists every
missing file on the following lines; 1 otherwise); Ctrl-C (SIGINT) and SIGTERM, at any time including
start-up, print ``vidinv: interrupted`` and exit with 130. No Python traceback is shown unless
``VIDINV_DEBUG=1`` is set.

Sub-command modules are imported when their command is used (``vidinv track`` does not import torch).
"""
from __future__ import annotations

import functools
import importlib
import logging
import os
import signal
import sys
from typing import Callable, NoReturn

import click

from vidinv import __version__

#: Sub-command name -> module that registers it on :data:`cli` when imported.
_COMMAND_MODULES = {
    "weights": "vidinv.cli.weights",
    "train": "vidinv.cli.train",
    "directions": "vidinv.cli.directions",
    "track": "vidinv.cli.track",
    "edit": "vidinv.cli.edit",
    "invert": "vidinv.cli.invert",
    "report": "vidinv.cli.report",
}

#: Environment variable: set to 1 to see Python tracebacks instead of one-line errors.
DEBUG_ENV = "VIDINV_DEBUG"


class _LazyGroup(click.Group):
    """A group importing a sub-command's module only when that command is used (or listed by --help)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        _register()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in _COMMAND_MODULES:
            importlib.import_module(_COMMAND_MODULES[name])
        if name not in self.commands:
            _register()
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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


def _register() -> None:
    # Each sub-command module adds itself to ``cli``; imported here so ``vidinv --help`` lists them.
    from vidinv.cli import weights  # noqa: F401
    from vidinv.cli import train  # noqa: F401
    from vidinv.cli import directions  # noqa: F401
    from vidinv.cli import track  # noqa: F401
    from vidinv.cli import edit  # noqa: F401
    from vidinv.cli import invert  # noqa: F401
    from vidinv.cli import report  # noqa: F401


# ------------------------------------------------------------------------------------------------
# errors

# Exception types whose message is written for users; other types are named in the message.
_USER_TYPES = (ValueError, RuntimeError, OSError, LookupError, ImportError, click.ClickException)


def error_message(exc: BaseException) -> str:
    """The text after ``vidinv: error:`` for ``exc``: its first line (the whole message for a missing
    weights error, which lists the files and where to get them)."""
    multi = type(exc).__name__ == "MissingWeightsError"
    try:
        import av

        ffmpeg_error = isinstance(exc, av.error.FFmpegError)
    except ImportError:  # pragma: no cover
        ffmpeg_error = False
    if isinstance(exc, click.ClickException):
        msg = exc.format_message()
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, click.UsageError) and ctx is not None:
            msg = f"{msg.strip()} (see '{ctx.command_path} --help')"
    elif ffmpeg_error or (isinstance(exc, OSError) and exc.filename is not None and exc.strerror):
        names = " -> ".join(str(f) for f in (exc.filename, getattr(exc, "filename2", None)) if f is not None)
        msg = f"{names}: {exc.strerror or exc}" if names else str(exc.strerror or exc)
    elif isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        msg = exc.args[0]  # str(KeyError) would quote it
    else:
        msg = str(exc)
    msg = msg.strip() or type(exc).__name__
    if not multi:
        msg = msg.splitlines()[0]
    if not isinstance(exc, _USER_TYPES) and not ffmpeg_error:
        msg = f"{type(exc).__name__}: {msg} (an unexpected error; set {DEBUG_ENV}=1 for the traceback)"
    return msg


def exit_code(exc: BaseException) -> int:
    """Exit status for ``exc``: 2 for usage errors and missing weights, 1 otherwise."""
    if isinstance(exc, click.ClickException):
        return exc.exit_code or 1
    return 2 if type(exc).__name__ == "MissingWeightsError" else 1


def fail(exc: BaseException) -> NoReturn:
    """Print ``vidinv: error: <reason>`` (:func:`error_message`) on stderr and exit (:func:`exit_code`)."""
    click.echo(f"vidinv: error: {error_message(exc)}", err=True)
    sys.exit(exit_code(exc))


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line_errors(command: Callable) -> Callable:
    """Decorator for a command's function (below ``@cli.command``): an exception it raises is printed
    as ``vidinv: error: …`` with its exit status (:func:`fail`), also when the command is invoked
    through click directly (tests with ``CliRunner``) rather than :func:`main`. click's own exceptions and
    ``KeyboardInterrupt`` pass through (:func:`main` reports them)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - one line for every error
            if _debug():
                raise
            fail(exc)
    return wrapper


def _interrupted() -> NoReturn:
    try:
        click.echo("vidinv: interrupted", err=True)
    finally:
        sys.exit(130)


def _sigterm(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``vidinv``); exits with the command's status (see the module doc)."""
    try:
        previous = signal.signal(signal.SIGTERM, _sigterm)
    except ValueError:  # pragma: no cover - not the main thread
        previous = None
    try:
        try:
            rv = cli.main(args=argv, prog_name="vidinv", standalone_mode=False)
        except (KeyboardInterrupt, click.exceptions.Abort):
            _interrupted()
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
        except Exception as exc:  # noqa: BLE001 - one line for every error; VIDINV_DEBUG=1 shows the traceback
            if _debug():
                raise
            fail(exc)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)
    except KeyboardInterrupt:  # a second Ctrl-C while reporting the first error
        _interrupted()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    main()
