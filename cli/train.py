"""``vidinv train fs|psp``: alias of ``python -m vidinv.training fs|psp`` (see :mod:`vidinv.training.cli`)."""
from __future__ import annotations

import click

from vidinv.training.cli import fs_command, psp_command


@click.group("train")
def train() -> None:
    """Train the Feature-Style encoder or a pSp encoder (same options as `python -m vidinv.training`)."""


train.add_command(fs_command, "fs")
train.add_command(psp_command, "psp")
