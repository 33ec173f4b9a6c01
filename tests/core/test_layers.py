"""The package's layers import only downward, and nothing in it imports in a circle.

Read from the source with ``ast`` (nothing is imported): every ``import`` and ``from ... import``
of every module of ``bbh`` counts, those inside functions (lazy) and under ``TYPE_CHECKING``
too, so a layer cannot hide an upward dependency behind a late import. The order is written
down in ``docs/architecture.md`` ("Layers"); a new top-level module or subpackage must be placed
in it before this test passes.
"""

from __future__ import annotations

import ast
import itertools
import pkgutil
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "bbh"

#: lowest first; a unit (a top-level module or subpackage of ``bbh``) may import its own layer
#: and the layers below it, never one above. Within a layer, the cycle checks keep the order.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "core",
        {
            "_version",
            "enums",
            "options",
            "inputs",
            "io",
            "progress",
            "batching",
            "trunk",
            "validation",
            "functional",
            "priors",
            "likelihoods",
        },
    ),
    ("networks and data", {"nets", "data"}),
    ("posteriors", {"hypernets", "posteriors"}),
    ("divergences", {"divergences"}),
    ("methods", {"methods"}),
    ("training", {"training"}),
    ("peers", {"peers"}),
    ("metrics", {"metrics"}),
    ("attacks", {"attacks"}),
    ("evaluation", {"evaluation"}),
    ("experiments", {"experiments"}),
    ("cli", {"cli", "__main__"}),
]
#: ``bbh/__init__.py``, the facade (``import bbh``): above every layer, imported by none
FACADE = "bbh"


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``), found with
    ``pkgutil.iter_modules`` folder by folder (``walk_packages`` would import the packages)."""
    found = {FACADE: PACKAGE / "__init__.py"}
    folders = [(PACKAGE, FACADE)]
    while folders:
        folder, prefix = folders.pop()
        for info in pkgutil.iter_modules([str(folder)]):
            name = f"{prefix}.{info.name}"
            if info.ispkg:
                found[name] = folder / info.name / "__init__.py"
                folders.append((folder / info.name, name))
            else:
                found[name] = folder / f"{info.name}.py"
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """``(imported bbh module, line)`` for each import in the module, resolved to the deepest
    module that exists (``from bbh.x import y`` is ``bbh.x.y`` when that is a module)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target, node.lineno


def _unit(module: str) -> str:
    """The top-level module or subpackage a module belongs to (``bbh`` for the facade)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else FACADE


EDGES: list[tuple[str, str, str, int]] = [
    (name, target, str(path.relative_to(SRC)), line)
    for name, path in sorted(MODULES.items())
    for target, line in _imports(name, path)
]


def _layer(unit: str) -> int:
    if unit == FACADE:
        return len(LAYERS)
    for rank, (_, units) in enumerate(LAYERS):
        if unit in units:
            return rank
    raise AssertionError(f"bbh.{unit} is in no layer: place it in LAYERS and docs/architecture.md")


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a closed path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def _explain(cycle: list[str], unit_of: Callable[[str], str]) -> str:
    """A cycle as ``a -> b -> a``, each edge with the import lines that make it."""
    edges = []
    for source, target in itertools.pairwise(cycle):
        lines = sorted({f"{file}:{line}" for a, b, file, line in EDGES
                        if unit_of(a) == source and unit_of(b) == target})  # fmt: skip
        edges.append(f"{source} -> {target} at {', '.join(lines)}")
    return " -> ".join(cycle) + "\n" + "\n".join(edges)


def test_the_walk_sees_the_package() -> None:
    assert {"bbh.methods.bbh", "bbh.experiments.config", "bbh.progress", "bbh.nets"} <= set(MODULES)
    assert ("bbh.attacks.curve", "bbh.progress") in {(a, b) for a, b, _, _ in EDGES}
    assert any(file.endswith("experiments/config.py") for _, _, file, _ in EDGES)


def test_every_unit_is_in_exactly_one_layer() -> None:
    units = {_unit(name) for name in MODULES} - {FACADE}
    placed = [unit for _, members in LAYERS for unit in members]
    assert len(placed) == len(set(placed)), "a unit is in two layers"
    assert units <= set(placed), f"not in a layer: {sorted(units - set(placed))}"
    assert set(placed) <= units, f"layers name missing units: {sorted(set(placed) - units)}"


def test_imports_go_only_downward() -> None:
    upward = sorted(
        f"bbh.{_unit(a)} ({LAYERS[_layer(_unit(a))][0]}) imports {b} "
        f"({'the facade' if _unit(b) == FACADE else LAYERS[_layer(_unit(b))][0]}) at {file}:{line}"
        for a, b, file, line in EDGES
        if _layer(_unit(b)) > _layer(_unit(a))
    )
    assert not upward, "imports going up the layers:\n" + "\n".join(upward)


def test_no_import_cycle_between_units() -> None:
    graph: dict[str, set[str]] = {}
    for a, b, _, _ in EDGES:
        if _unit(a) != _unit(b):
            graph.setdefault(_unit(a), set()).add(_unit(b))
    cycle = _cycle(graph)
    assert cycle is None, "import cycle between units: " + _explain(cycle, _unit)


def test_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for a, b, _, _ in EDGES:
        graph.setdefault(a, set()).add(b)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle between modules: " + _explain(cycle, lambda m: m)


def test_the_architecture_page_shows_the_same_layers() -> None:
    page = (SRC.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = page.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:3] for line in section.splitlines() if line.startswith("| ")]
    shown = [(name.strip(), set(re.findall(r"`([\w]+)`", units.split("(")[0])))
             for name, units in rows[2:]]  # fmt: skip
    assert shown == LAYERS


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}, ["y", "y2", "y"]),
    ],
)
def test_the_cycle_finder_names_the_cycle(
    edges: dict[str, set[str]], expected: list[str] | None
) -> None:
    assert _cycle(edges) == expected
