"""vidinv's import graph, read from the source (no imports executed).

Module names are the installed ones: ``cli/`` and ``training/`` are ``vidinv.cli`` and ``vidinv.training``.
An edge is any ``import`` / ``from … import`` of a vidinv module, at module level and, with ``lazy=True``,
inside functions too (imports under ``if TYPE_CHECKING:`` are not edges). Used by
``tests/test_architecture.py``; run ``python tools/import_graph.py`` for a listing.
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"vidinv": "vidinv", "cli": "vidinv.cli", "training": "vidinv.training"}


def module_files(repo: Path = REPO) -> dict[str, Path]:
    """``{installed module name: source file}`` of every module under vidinv/, cli/ and training/."""
    out = {}
    for folder, prefix in ROOTS.items():
        for p in sorted((repo / folder).rglob("*.py")):
            parts = list(p.relative_to(repo / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = p
    return out


def _imports(tree: ast.Module, lazy: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if not lazy and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for sub in ast.walk(node):
            if isinstance(sub, (ast.Import, ast.ImportFrom)):
                yield sub


def graph(lazy: bool = True, repo: Path = REPO) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """``(edges, private)``: ``edges[m]`` = vidinv modules ``m`` imports; ``private`` = ``(importer, module,
    name)`` for every ``from module import _name`` across modules."""
    mods = module_files(repo)
    edges: dict[str, set[str]] = {}
    private = []
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rpartition(".")[0]
        deps = set()
        for node in _imports(ast.parse(path.read_text(encoding="utf-8")), lazy):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
                continue
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                if full in mods:
                    deps.add(full)
                elif base in mods:
                    deps.add(base)
                    if a.name.startswith("_") and not a.name.startswith("__") and base != m:
                        private.append((m, base, a.name))
        edges[m] = deps - {m}
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    e, priv = graph(lazy=True)
    found = cycles(e)
    print(f"{len(e)} modules, {sum(map(len, e.values()))} import edges (module-level and lazy); "
          f"{len(found)} cycle(s); {len(priv)} private-name import(s)")
    for c in found:
        print("  cycle:", " <-> ".join(c))
    for m, base, name in priv:
        print(f"  private: {m} imports {base}.{name}")
    sys.exit(1 if found or priv else 0)
