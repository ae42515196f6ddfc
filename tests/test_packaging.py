"""Install layout (issue 11, item 7): one import root. The source folders ``cli/`` and ``training/`` are
installed as ``vidinv.cli`` and ``vidinv.training``; nothing is installed as a top-level ``cli`` or
``training`` package, and every package of the source tree is listed in pyproject.toml."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from conftest import REPO


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def _source_packages() -> set[str]:
    """Every folder with an __init__.py under vidinv/, cli/ and training/, as its installed dotted name."""
    names = set()
    for root, prefix in (("vidinv", "vidinv"), ("cli", "vidinv.cli"), ("training", "vidinv.training")):
        for init in (REPO / root).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / root).parts
            names.add(".".join((prefix, *rel)))
    return names


def test_every_package_is_listed_under_the_vidinv_root():
    tool = _pyproject()["tool"]["setuptools"]
    listed = set(tool["packages"])
    assert listed == _source_packages()
    assert all(p == "vidinv" or p.startswith("vidinv.") for p in listed)
    assert tool["package-dir"] == {"vidinv.cli": "cli", "vidinv.training": "training"}
    assert _pyproject()["project"]["scripts"]["vidinv"] == "vidinv.cli.main:main"


def test_installed_distribution_has_no_top_level_cli_or_training():
    """The installed vidinv (editable or not) exposes only the ``vidinv`` top-level name, outside the repo."""
    dist = importlib.metadata.distribution("vidinv")
    top = (dist.read_text("top_level.txt") or "").split()
    assert top in ([], ["vidinv"]), top
    code = ("import importlib.util as u, sys; "
            "print(u.find_spec('cli') is None, u.find_spec('training') is None, "
            "u.find_spec('vidinv.cli') is not None, u.find_spec('vidinv.training') is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path("/"), check=True)
    assert out.stdout.split() == ["True", "True", "True", "True"], out.stdout
