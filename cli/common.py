"""What every ``vidinv`` sub-command shares: one-line errors and exit statuses, Ctrl-C / SIGTERM, the
progress bar, the ``-v`` timings and the one aligned-table formatter.

Errors: a command's error is printed as one line ``vidinv: error: <reason>`` on stderr (:func:`fail`) with
exit status 2 for usage errors and missing weight files (whose message lists every missing file on the
following lines), 1 otherwise. No Python traceback is shown unless ``VIDINV_DEBUG=1`` is set.

This module imports only click and the standard library at its top, so that ``vidinv track`` and
``vidinv --help`` start fast; the command modules import it, never each other nor :mod:`vidinv.cli.main`.
"""
from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import click

__all__ = ["DEBUG_ENV", "REPORT_MEMBERS", "debug_enabled", "error_message", "exit_code", "fail", "format_table",
           "install_signal_handlers", "interrupted", "one_line_errors", "print_timings", "progress_bar",
           "sigterm_to_interrupt"]

#: Environment variable: set to 1 to see Python tracebacks instead of one-line errors.
DEBUG_ENV = "VIDINV_DEBUG"

#: What a report folder holds (:mod:`vidinv.report` writes it: `vidinv report`, `vidinv edit --report`): an
#: input there would be replaced.
REPORT_MEMBERS = ("report.json", "report.html", "*.png")

# Exception types whose message is written for users; other types are named in the message.
_USER_TYPES = (ValueError, RuntimeError, OSError, LookupError, ImportError, click.ClickException)


# ------------------------------------------------------------------------------------------------
# errors

def error_message(exc: BaseException) -> str:
    """The text after ``vidinv: error:`` for ``exc``: its first line (the whole message for a missing
    weights error, which lists the files and where to get them). click usage errors name the command's
    ``--help``; an ``OSError`` names its file(s); a type not written for users (not ValueError,
    RuntimeError, OSError, LookupError, ImportError or a click error) is named, with how to see the
    traceback."""
    multi = type(exc).__name__ == "MissingWeightsError"
    try:
        import av  # in the function: only for the isinstance below, and it is slow to import

        ffmpeg_error = isinstance(exc, av.error.FFmpegError)
    except ImportError:  # pragma: no cover
        ffmpeg_error = False
    if isinstance(exc, click.ClickException):
        msg = exc.format_message()
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, click.UsageError) and ctx is not None:
            msg = f"{msg.strip()} (see '{ctx.command_path} --help')"
    elif ffmpeg_error or (isinstance(exc, OSError) and exc.filename is not None and exc.strerror):
        filename, strerror = getattr(exc, "filename", None), getattr(exc, "strerror", None)
        names = " -> ".join(str(f) for f in (filename, getattr(exc, "filename2", None)) if f is not None)
        msg = f"{names}: {strerror or exc}" if names else str(strerror or exc)
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


def fail(reason: BaseException | str) -> NoReturn:
    """Print ``vidinv: error: <reason>`` on stderr and exit.

    An exception is shown as :func:`error_message` says, with :func:`exit_code`; a str is printed as it
    is (every line of it) with exit status 1."""
    if isinstance(reason, str):
        click.echo(f"vidinv: error: {reason}", err=True)
        sys.exit(1)
    click.echo(f"vidinv: error: {error_message(reason)}", err=True)
    sys.exit(exit_code(reason))


def debug_enabled() -> bool:
    """True when ``VIDINV_DEBUG`` is set (and not 0): tracebacks instead of one-line errors."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line_errors(command: Callable) -> Callable:
    """Decorator for a command's function (below ``@click.command``): an exception it raises is printed
    as ``vidinv: error: …`` with its exit status (:func:`fail`), also when the command is invoked
    through click directly (tests with ``CliRunner``) rather than :func:`vidinv.cli.main.main`. click's own
    exceptions and ``KeyboardInterrupt`` pass through (``main`` reports them)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:  # one line for every error
            if debug_enabled():
                raise
            fail(exc)
    return wrapper


# ------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM

def interrupted() -> NoReturn:
    """Print ``vidinv: interrupted`` on stderr and exit with status 130 (Ctrl-C / SIGTERM)."""
    try:
        click.echo("vidinv: interrupted", err=True)
    finally:
        sys.exit(130)


def sigterm_to_interrupt(signum, frame) -> None:
    """Signal handler: raise ``KeyboardInterrupt`` (a SIGTERM is handled as Ctrl-C)."""
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """SIGTERM raises KeyboardInterrupt in the main thread, so the stages stop and the video writer deletes
    its temporary file as for Ctrl-C."""
    signal.signal(signal.SIGTERM, sigterm_to_interrupt)


# ------------------------------------------------------------------------------------------------
# output

def progress_bar(quiet: bool, desc: str):
    """A tqdm bar (frames, frames/s, ETA) on stderr and its update callback ``update(done, total)``
    (frames done so far, total frames or None while unknown); ``(None, None)`` with ``quiet``."""
    if quiet:
        return None, None
    from tqdm import tqdm

    bar = tqdm(desc=desc, unit="frame", dynamic_ncols=True, file=sys.stderr)

    def update(done: int, total: int | None) -> None:
        if bar.total is None and total:
            bar.total = total
        bar.update(done - bar.n)
    return bar, update


def format_table(rows: Sequence[Sequence[str]], headers: Sequence[str], *, align: str | None = None) -> str:
    """An aligned text table: the header line, a rule of dashes, then one line per row.

    Args:
        rows: the cells, each row as many strings as ``headers``.
        headers: column titles.
        align: one character per column, ``<`` (left) or ``>`` (right); default all left.

    Returns:
        the lines joined by newlines (no trailing newline); columns are as wide as their widest cell or
        title and separated by two spaces; trailing spaces are stripped.
    """
    align = align or "<" * len(headers)
    if len(align) != len(headers) or set(align) - {"<", ">"}:
        raise ValueError(f"align {align!r}: one of '<' or '>' per column ({len(headers)})")
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a == ">" else c.ljust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def print_timings(stage_s: dict, frames: int, wall_s: float, step_s: dict | None = None) -> None:
    """``-v`` output on stderr, a :func:`format_table`: busy seconds and frames/s of each stage
    (``stage_s``: name -> seconds), the seconds of steps inside stages (``step_s``, indented; its
    ``generator_calls`` count is left out) and end to end (``wall_s``) for ``frames`` frames."""
    rows = [[name, f"{s:.2f}", f"{frames / s if s > 0 else float('inf'):.2f}"] for name, s in stage_s.items()]
    rows += [[f"  {name}", f"{s:.2f}", ""] for name, s in (step_s or {}).items() if name != "generator_calls"]
    rows.append(["end to end", f"{wall_s:.2f}", f"{frames / wall_s if wall_s > 0 else 0.0:.2f}"])
    click.echo(format_table(rows, ["stage", "busy s", "frames/s"], align="<>>"), err=True)
