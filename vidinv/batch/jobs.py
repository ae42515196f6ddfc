"""The jobs file of ``vidinv batch``: one JSON object per line, checked line by line before any model loads.

A line::

    {"command": "edit", "input": "a.mp4", "output": "b.mp4", "options": {"attr": "smile", "strength": 2}}

* ``command``: a command the caller registered (:class:`CommandSpec`; ``vidinv batch`` registers ``edit``,
  ``restore``, ``invert`` and ``report``, :mod:`vidinv.cli.batch`).
* ``input``, ``output``: the command's IN and ``-o`` (relative paths resolve against the jobs file's folder).
* ``options``: the command's long options by name, with or without the dashes (``"from-inversion"`` or
  ``"from_inversion"``): a flag takes ``true`` / ``false``, a repeatable option a list (or one value), a
  two-value option (``--track-attr ID NAME``) a two-item list (a list of them when repeatable); the
  command's other arguments by their name (``report``: ``"outputs": [...]``). Relative paths given to a
  path option or an argument resolve against the jobs file's folder too. The values go through the command's own click
  parser (types, choices, ranges), so they mean exactly what they mean on the command line.
* ``segments`` (optional, an integer >= 1): split the job's video into that many segments processed by
  different workers, then joined (:mod:`vidinv.batch.plan`).

Blank lines and lines starting with ``#`` are ignored. A job that reads another job's output (its input,
or a path option) runs after that job (:attr:`BatchJob.deps`).

Errors: :class:`JobsFileError` with one line per bad job line (``jobs.jsonl line 3: ...``).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

__all__ = ["JobsFileError", "CommandSpec", "BatchCommands", "BatchJob", "load_jobs", "parse_line", "job_key"]

#: Keys of a job line.
LINE_KEYS = ("command", "input", "output", "options", "segments")


class JobsFileError(ValueError):
    """A jobs file that cannot run: ``lines`` holds one message per bad line (``str(self)``: all of them,
    one per line)."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


@dataclass(frozen=True)
class CommandSpec:
    """What ``vidinv batch`` needs of one command.

    Attributes:
        command: the click command (its parser reads a job's options).
        input_arg: the name of the click argument that takes the job's ``input``.
        output_opt: the option (a flag, e.g. ``"-o"``) that takes the job's ``output``.
        refused: option names (parameter names) a job may not give, with the reason (e.g. ``quiet``: the
            batch runs quietly; ``report``: a ``report`` job instead).
        check: ``check(job)``: the command's checks made before any model loads (files, option values);
            raises with a one-line reason.
        run: ``run(job, task, context) -> dict``: runs one task of the job on a worker (``context``:
            :class:`vidinv.batch.worker.WorkerContext`: the bundle cache and the worker's device); returns a
            small JSON-able summary for the record.
        done_file: ``done_file(output) -> Path``: the file whose presence says the output was written (the
            output itself, or e.g. the export's ``manifest.json``).
        segmentable: whether the command takes ``segments``.
        segment_plan: ``segment_plan(job) -> [Segment]``: how a segmented job's input is cut (the job's own
            context overlap and ``--start`` / ``--end`` window:
            :func:`vidinv.pipeline.segments.plan_segments`); None: ``plan_segments`` with its defaults.
    """

    command: click.Command
    input_arg: str
    output_opt: str
    check: Callable[[BatchJob], None]
    run: Callable[..., dict]
    done_file: Callable[[Path], Path] = Path
    refused: Mapping[str, str] = field(default_factory=dict)
    segmentable: bool = False
    segment_plan: Callable[[BatchJob], list] | None = None


@dataclass(frozen=True)
class BatchCommands:
    """The commands a batch may hold (name -> :class:`CommandSpec`) and ``describe(exc) -> str``, the
    one-line reason shown for a failed job (``vidinv: error:`` text of the CLI)."""

    specs: Mapping[str, CommandSpec]
    describe: Callable[[BaseException], str] = str


@dataclass
class BatchJob:
    """One checked line of a jobs file.

    Attributes:
        line: its line number (1-based).
        command: the command name.
        input, output: absolute paths.
        options: the ``options`` object as written (paths not resolved).
        params: the command's parameters as its click parser made them (parameter name -> value), the job's
            input and output included.
        segments: the ``segments`` count (None: the job runs whole).
        key: :func:`job_key` (names the job's record).
        deps: line numbers of the earlier jobs whose output this job reads.
    """

    line: int
    command: str
    input: Path
    output: Path
    options: dict
    params: dict
    segments: int | None = None
    key: str = ""
    deps: list[int] = field(default_factory=list)
    #: every path the job reads (input and path-valued parameters), absolute
    reads: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``"<line>:<output file name>"``, how the summary names the job."""
        return f"{self.line}:{self.output.name}"


def job_key(command: str, input: Path, output: Path, options: dict) -> str:
    """A hex digest (20 characters) of the job's command, paths and options: a job changed in any of them
    gets another record, so it runs again. ``segments`` is not part of it (it does not change the output)."""
    doc = json.dumps({"command": command, "input": str(input), "output": str(output), "options": options},
                     sort_keys=True, default=str)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()[:20]


def _flags(command: click.Command) -> dict[str, tuple[click.Parameter, bool]]:
    """Option name (a long flag without ``--``; an extra argument's name) -> (parameter, is the secondary
    ``--no-...`` flag)."""
    out: dict[str, tuple[click.Parameter, bool]] = {}
    for p in command.params:
        if isinstance(p, click.Option):
            for f in p.opts:
                if f.startswith("--"):
                    out[f[2:]] = (p, False)
            for f in p.secondary_opts:
                if f.startswith("--"):
                    out[f[2:]] = (p, True)
        elif p.name:
            out[p.name.replace("_", "-")] = (p, False)
    return out


def _is_path(p: click.Parameter, i: int = 0) -> bool:
    t = p.type
    if isinstance(t, click.Tuple):
        t = t.types[i] if i < len(t.types) else t.types[-1]
    return isinstance(t, click.Path)


def _text(p: click.Parameter, value: Any, base: Path, i: int = 0) -> str:
    """One value as a command-line word; a path (a path option, or any argument: the commands' arguments
    are files) relative to ``base`` made absolute."""
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        raise ValueError(f"a {type(value).__name__} is not a value of this option")
    text = str(value)
    if (_is_path(p, i) or isinstance(p, click.Argument)) and text and not os.path.isabs(text):
        text = str(base / text)
    return text


def _option_args(spec: CommandSpec, options: dict, base: Path) -> tuple[list[str], list[str]]:
    """(option words, extra positional words) for the click parser; raises ValueError naming the option."""
    flags = _flags(spec.command)
    words: list[str] = []
    positional: list[str] = []
    for key, value in options.items():
        name = str(key).replace("_", "-").lstrip("-")
        if name not in flags:
            close = difflib.get_close_matches(name, list(flags), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{spec.command.name} has no option {key!r}{hint}")
        p, secondary = flags[name]
        if p.name in spec.refused or p.name == spec.input_arg:
            raise ValueError(f"option {key!r}: {spec.refused.get(p.name or '', 'give it as the job input')}")
        if p.name == "dst" or name in ("output", "out"):
            raise ValueError(f"option {key!r}: give it as the job's \"output\"")
        try:
            if isinstance(p, click.Argument):
                for v in value if isinstance(value, list) else [value]:
                    positional.append(_text(p, v, base))
                continue
            assert isinstance(p, click.Option)
            flag = f"--{name}"
            if p.is_flag:
                if not isinstance(value, bool):
                    raise ValueError("a flag takes true or false")
                if p.secondary_opts and not secondary:
                    words.append(flag if value else p.secondary_opts[0])
                elif secondary:
                    words.append(flag if value else p.opts[0])
                elif value:
                    words.append(flag)
                continue
            values = (value if isinstance(value, list) else [value]) if p.multiple else [value]
            for v in values:
                if p.nargs > 1:
                    if not isinstance(v, list) or len(v) != p.nargs:
                        raise ValueError(f"takes a list of {p.nargs} values")
                    words += [flag, *(_text(p, x, base, i) for i, x in enumerate(v))]
                elif v is not None:
                    words.append(f"{flag}={_text(p, v, base)}")
        except ValueError as exc:
            raise ValueError(f"option {key!r}: {exc}") from None
    return words, positional


def parse_line(text: str, line: int, base: Path, commands: BatchCommands) -> BatchJob:
    """One line of a jobs file -> a :class:`BatchJob` (its options parsed by the command's click parser).

    Raises:
        ValueError: not a JSON object, a missing or unknown key, an unknown command, a bad option or value
            (the command's own message), a bad ``segments``.
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise ValueError("a job is a JSON object {\"command\": ..., \"input\": ..., \"output\": ...}")
    unknown = sorted(set(doc) - set(LINE_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} (a job has {', '.join(LINE_KEYS)}; the "
                         "command's options go into \"options\")")
    command = doc.get("command")
    if not isinstance(command, str) or command not in commands.specs:
        raise ValueError(f"command {command!r}: one of {', '.join(sorted(commands.specs))}")
    spec = commands.specs[command]
    for k in ("input", "output"):
        if not isinstance(doc.get(k), str) or not doc[k].strip():
            raise ValueError(f"\"{k}\" must be a path (a non-empty string)")
    options = doc.get("options", {})
    if not isinstance(options, dict):
        raise ValueError("\"options\" must be an object {\"name\": value, ...}")
    segments = doc.get("segments")
    if segments is not None:
        if not spec.segmentable:
            raise ValueError(f"\"segments\" splits a video edit; {command} does not take it")
        if isinstance(segments, bool) or not isinstance(segments, int) or segments < 1:
            raise ValueError(f"\"segments\" must be an integer >= 1, got {segments!r}")
    src, dst = base / doc["input"], base / doc["output"]
    words, positional = _option_args(spec, options, base)
    args = [*words, spec.output_opt, str(dst), "--", str(src), *positional]
    try:
        ctx = spec.command.make_context(command, args)
    except click.ClickException as exc:
        raise ValueError(exc.format_message()) from None
    params = dict(ctx.params)
    reads = [src] + [Path(w.split("=", 1)[1]) for w in words if "=" in w and os.path.isabs(w.split("=", 1)[1])]
    reads += [Path(p) for p in positional]
    return BatchJob(line, command, Path(os.path.abspath(src)), Path(os.path.abspath(dst)), options, params,
                    segments if segments != 1 else None, job_key(command, src, dst, options),
                    reads=[Path(os.path.abspath(r)) for r in reads])


def load_jobs(path: str | os.PathLike, commands: BatchCommands, *, check: bool = True) -> list[BatchJob]:
    """Read and check every line of the jobs file ``path`` (nothing is loaded or written).

    Each line is parsed (:func:`parse_line`); jobs reading another job's output get that job in ``deps``
    (the input need not exist yet, and the command's file checks are left to the run); with ``check`` the
    others get the command's checks made before any model loads (:attr:`CommandSpec.check`). Two jobs
    writing the same output are refused.

    Returns:
        The jobs, in file order.

    Raises:
        FileNotFoundError: no such file.
        JobsFileError: every bad line, one message each (``NAME line N: reason``); also a file without jobs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"jobs file {path} does not exist")
    base = path.resolve().parent
    errors: list[str] = []
    jobs: list[BatchJob] = []
    writers: dict[Path, int] = {}
    for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        where = f"{path.name} line {n}"
        try:
            job = parse_line(text, n, base, commands)
            if job.output in writers:
                raise ValueError(f"output {job.output} is also the output of line {writers[job.output]}")
            job.deps = sorted({writers[r] for r in job.reads if r in writers})
            if check and not job.deps:
                commands.specs[job.command].check(job)
        except Exception as exc:  # one line per bad job line
            errors.append(f"{where}: {commands.describe(exc)}")
            continue
        writers[job.output] = n
        jobs.append(job)
    if not jobs and not errors:
        errors.append(f"{path.name}: no jobs (one JSON object per line)")
    if errors:
        raise JobsFileError(errors)
    return jobs
