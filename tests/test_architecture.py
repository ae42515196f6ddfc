"""The architecture's rules, checked on the source (issue 11): no import cycle (imports inside functions
count too), no module importing a higher layer, no private name imported across modules, one place that
compares encoder kinds, one atomic-write helper, one file-hash helper, one device resolver.
The graph comes from ``tools/import_graph.py`` (reads the source; nothing is imported)."""
from __future__ import annotations

import re
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from import_graph import cycles, graph, module_files

#: Layers, lowest first: a module may import its own package and lower layers only (ARCHITECTURE.md).
LAYERS = [
    ["vidinv"],  # the root package: __version__ only
    ["vidinv.io", "vidinv.device"],
    ["vidinv.weights", "vidinv.models"],
    ["vidinv.face", "vidinv.edit"],
    ["vidinv.inverters", "vidinv.metrics"],
    ["vidinv.pipeline", "vidinv.report"],
    ["vidinv.training"],
    ["vidinv.ui"],
    ["vidinv.batch"],
    ["vidinv.cli"],
]


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _layer(module: str) -> int:
    pkg = _package(module)
    for i, names in enumerate(LAYERS):
        if pkg in names:
            return i
    raise AssertionError(f"{pkg} ({module}) has no layer: add it to LAYERS and to ARCHITECTURE.md")


def test_no_import_cycles_even_through_lazy_imports():
    edges, _ = graph(lazy=True)
    assert cycles(edges) == []


def test_no_module_imports_a_higher_layer():
    edges, _ = graph(lazy=True)
    up = [(m, d) for m, deps in edges.items() for d in deps
          if _package(m) != _package(d) and _layer(d) >= _layer(m)]
    assert up == []


def test_no_private_names_across_modules():
    _, private = graph(lazy=True)
    assert private == []


def _grep(pattern: str) -> list[str]:
    rx = re.compile(pattern)
    hits = []
    for path in module_files().values():
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if rx.search(line) and not line.lstrip().startswith("#"):
                hits.append(f"{path.relative_to(REPO)}:{no}: {line.strip()}")
    return hits


def test_encoder_kind_strings_are_compared_only_in_the_inverter_registry():
    """Encoder kinds ("fs", "psp") are compared only where inverters are built (vidinv/inverters/registry).
    Direction conventions and sources spelled "fs" are other vocabularies and are not matched."""
    kind = r"""(encoder|encoder_kind|kind|task|name)\s*(==|!=|\bin)\s*\(?\s*["'](fs|psp)["']"""
    reverse = r"""["'](fs|psp)["']\s*(==|!=)\s*(encoder|encoder_kind|kind|task|name)\b"""
    hits = _grep(kind) + _grep(reverse)
    assert [h for h in hits if not h.startswith("vidinv/inverters/")] == []


def test_one_atomic_write_one_file_hash_one_device_resolver():
    assert [h for h in _grep(r"\bos\.replace\(|\.rename\(") if not h.startswith("vidinv/io/outputs.py")] == []
    assert [h for h in _grep(r"def sha256_file\b")] == [h for h in _grep(r"def sha256_file\b")
                                                         if h.startswith("vidinv/io/outputs.py")]
    assert len(_grep(r"def sha256_file\b")) == 1
    choose = r"""["']cuda["']\s+if\s+torch\.cuda\.is_available|startswith\(["']cuda|def (pick|resolve)_device\b"""
    assert [h for h in _grep(choose) if not h.startswith("vidinv/device.py")] == []


def test_imports_inside_functions_say_why():
    """vidinv's own modules are imported at module level; an import left inside a function (to keep
    `vidinv --help` and light commands fast, or for an optional part) has a comment right above its block."""
    import ast

    unexplained = []
    for _, path in module_files().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                for block in (getattr(node, a, None) for a in ("body", "orelse", "finalbody")):
                    if not isinstance(block, list):
                        continue
                    run: list[ast.stmt] = []
                    for st in [*block, None]:
                        if isinstance(st, (ast.Import, ast.ImportFrom)):
                            run.append(st)
                            continue
                        names = [(r.module if isinstance(r, ast.ImportFrom) else r.names[0].name) or "" for r in run]
                        own = [r for r, n in zip(run, names) if n.startswith("vidinv")]
                        if own and not lines[run[0].lineno - 2].strip().startswith("#"):
                            unexplained.append(f"{path.relative_to(REPO)}:{own[0].lineno}")
                        run = []
    assert sorted(set(unexplained)) == []


def test_layer_k_has_one_value():
    """K (the generator layer whose feature F replaces) is FS_FEATURE_LAYER everywhere; the torch-free training
    config repeats its value as a default and must agree."""
    from vidinv.inverters import inverter_class
    from vidinv.models.fs_encoder import FS_FEATURE_LAYER
    from vidinv.training.config import FSTrainConfig

    assert FSTrainConfig().feature_layer == FS_FEATURE_LAYER == inverter_class("fs").feature_index == 5
