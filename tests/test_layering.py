"""The package's imports run one way: no two modules import each other (directly or round a loop),
and no room imports a room above it. Read from the source with `ast`: module-level imports,
imports inside functions and under `if TYPE_CHECKING:`, absolute and relative forms alike.

The room order is written once, here (top to bottom). Rooms on one line stand side by side and
may not import each other. A top-level module (errors.py, files.py, transfer.py, the package's
__init__.py) belongs to the base; __main__.py is the entry point above everything.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "medref_cli"
ENTRY, BASE = "__main__", "<base>"
LAYERS: list[tuple[str, ...]] = [
    (ENTRY,),
    ("cli",),
    ("reports", "runs", "bench"),
    ("training", "evaluation"),
    ("runtime",),
    ("models", "losses", "augment", "data"),
    ("text", "ledger"),
    ("config",),
    (BASE,),
]
LEVEL = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}
HEAVY = ("torch", "monai", "transformers", "timm")


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (or package, for a name its __init__ defines)
    line: int
    written: str  # the module name as written (resolved when relative)


def package_root() -> Path:
    """The package on sys.path (so PYTHONPATH chooses which checkout is checked)."""
    spec = importlib.util.find_spec(PACKAGE)
    assert spec is not None and spec.submodule_search_locations, f"{PACKAGE} is not importable"
    return Path(next(iter(spec.submodule_search_locations)))


def modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, whether it is a package's __init__)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imports(mods: dict[str, tuple[Path, bool]]) -> list[Import]:
    found = []
    for name, (path, is_package) in mods.items():
        here = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found += [Import(name, a.name, node.lineno, a.name) for a in node.names
                          if a.name.split(".")[0] == PACKAGE]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - node.level + 1]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                if module.split(".")[0] != PACKAGE:
                    continue
                for alias in node.names:  # `from pkg import mod` imports the module mod
                    full = f"{module}.{alias.name}"
                    found.append(Import(name, full if full in mods else module, node.lineno, module))
    return found


def room(module: str, mods: dict[str, tuple[Path, bool]]) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return BASE
    if parts[1] == ENTRY:
        return ENTRY
    return parts[1] if mods.get(f"{PACKAGE}.{parts[1]}", (None, False))[1] else BASE


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def graph() -> tuple[dict[str, tuple[Path, bool]], list[Import]]:
    mods = modules(package_root())
    return mods, imports(mods)


def test_every_import_names_a_module_that_exists():
    mods, found = graph()
    missing = [f"{i.source}:{i.line} imports {i.written}" for i in found if i.written not in mods]
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def test_no_modules_import_each_other():
    mods, found = graph()
    edges: dict[str, set[str]] = defaultdict(set)
    for i in found:
        if i.target != i.source:
            edges[i.source].add(i.target)
    loops = cycles({m: edges.get(m, set()) for m in mods})
    assert not loops, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in loops)


def test_every_room_has_a_place_in_the_order():
    mods, _ = graph()
    unplaced = sorted({room(m, mods) for m in mods} - set(LEVEL))
    assert not unplaced, f"rooms missing from LAYERS in {__file__}: {', '.join(unplaced)}"


def test_no_room_imports_a_room_above_it_or_beside_it():
    mods, found = graph()
    wrong = []
    for i in found:
        a, b = room(i.source, mods), room(i.target, mods)
        if a != b and a in LEVEL and b in LEVEL and LEVEL[a] >= LEVEL[b]:
            where = "above" if LEVEL[a] > LEVEL[b] else "beside"
            wrong.append(f"{i.source}:{i.line} imports {i.target} ({b} is {where} {a})")
    assert not wrong, "imports against the room order:\n" + "\n".join(sorted(set(wrong)))


def test_the_checks_see_a_loop_and_an_upward_import():
    """The checks themselves: a two-module loop is found, a longer one too, a chain is not."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert LEVEL["training"] == LEVEL["evaluation"] > LEVEL["runs"]
    assert LEVEL["runtime"] > LEVEL["training"]


def test_help_imports_no_heavy_package():
    code = ("import sys; sys.argv = ['medref', '--help']\n"
            "from medref_cli.cli.main import run\n"
            "try:\n    run()\nexcept SystemExit:\n    pass\n"
            f"print('heavy:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert "Usage" in done.stdout, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "heavy:", "`medref --help` imported a heavy package"
