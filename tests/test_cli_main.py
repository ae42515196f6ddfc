"""The ``vidinv`` group: sub-commands registered from one place and imported on use, the job options
defined once (defaults from the options dataclasses), the one table formatter."""
from __future__ import annotations

import dataclasses
import importlib
import re
import subprocess
import sys

import click
import pytest

from vidinv.cli.common import format_table
from vidinv.cli.main import COMMANDS
from vidinv.cli.options import JOB_OPTIONS, job_options


def _command(name: str) -> click.Command:
    module, _, attr = COMMANDS[name].target.partition(":")
    return getattr(importlib.import_module(module), attr)


def test_help_lists_every_command_without_importing_them():
    """`vidinv --help` lists every sub-command with its summary but imports none of their modules (nor
    torch or numpy), so it starts fast."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "vidinv.cli", "--help"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
    assert "vidinv.cli.main" in imported
    assert not imported & {"torch", "numpy", "vidinv.training"}, sorted(imported & {"torch", "numpy"})
    assert not {m for m in imported if m.startswith("vidinv.cli.")} - {"vidinv.cli.main", "vidinv.cli.common"}
    listed = dict(re.findall(r"^  (\S+)\s+(.+)$", p.stdout.split("Commands:", 1)[1], flags=re.M))
    assert sorted(listed) == sorted(COMMANDS)
    for name, text in listed.items():
        assert COMMANDS[name].summary.startswith(text.removesuffix("..."))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_summaries_are_the_commands_own_help(name):
    """What `vidinv --help` shows before a command is imported is what the command itself says."""
    cmd = _command(name)
    assert cmd.name == name
    for limit in (30, 45, 70, 200):
        assert click.Command(name, help=COMMANDS[name].summary).get_short_help_str(limit) == \
            cmd.get_short_help_str(limit), limit


def test_job_option_defaults_come_from_the_options_dataclasses():
    from vidinv.pipeline.edit import EditOptions
    from vidinv.pipeline.invert import InvertOptions

    for name, cls in (("edit", EditOptions), ("invert", InvertOptions)):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        params = {p.name: p for p in _command(name).params}
        offered = set(params) & set(fields) - {"src", "dst"}  # src, dst: the command's own argument and -o
        assert offered == set(params) & set(JOB_OPTIONS) and len(offered) >= 16, name
        for p in offered:
            assert params[p].default == fields[p].default, (name, p)

    @dataclasses.dataclass
    class Other:
        src: str
        crf: int = 23
        strengths: tuple = dataclasses.field(default_factory=lambda: (0.5,))

    cmd = click.command()(job_options(Other, only=("strengths", "crf"))(lambda **kw: None))
    assert [(p.name, p.default) for p in cmd.params] == [("strengths", (0.5,)), ("crf", 23)]
    for bad, why in (("src", "no default"), ("nothing", "no field")):
        with pytest.raises(TypeError, match=why):
            job_options(Other, only=(bad,))
    with pytest.raises(TypeError, match="no command-line option"):
        job_options(dataclasses.make_dataclass("X", [("unknown_field", int, dataclasses.field(default=1))]),
                    only=("unknown_field",))


def test_format_table_aligns_columns():
    table = format_table([["a", "1.50", "x"], ["longer", "12.25", ""]], ["NAME", "S", "NOTE"], align="<><")
    assert table.splitlines() == ["NAME        S  NOTE",
                                  "------  -----  ----",
                                  "a        1.50  x",
                                  "longer  12.25"]
    assert format_table([], ["A", "BB"]).splitlines() == ["A  BB", "-  --"]
    with pytest.raises(ValueError):
        format_table([["a"]], ["A"], align="<>")
