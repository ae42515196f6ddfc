"""The ``vidinv`` command (click). Sub-command groups live in their own modules of this package."""
from __future__ import annotations

import logging
import sys

import click

from vidinv import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
    from cli import weights  # noqa: F401
    from cli import train  # noqa: F401
    from cli import directions  # noqa: F401
    from cli import track  # noqa: F401
    from cli import edit  # noqa: F401
    from cli import invert  # noqa: F401
    from cli import report  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``vidinv``)."""
    _register()
    try:
        cli.main(args=argv, prog_name="vidinv", standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
