"""The docstrings as the API reference reads them: the ``Example:`` sections of the names a user
meets first run as written, and no ``Returns:``/``Yields:`` section starts with ``X: ...``, which
the site's Google parser (``returns_named_value: false``) would show with X as the type."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path

import pytest

import bbh
import bbh.evaluation

SRC = Path(bbh.__file__).resolve().parent

EXAMPLES = {
    "bbh.BayesByHypernet": bbh.BayesByHypernet,
    "bbh.build": bbh.build,
    "bbh.fit": bbh.fit,
    "bbh.load": bbh.load,
    "bbh.evaluation.evaluate": bbh.evaluation.evaluate,
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_example_runs_as_written(name: str) -> None:
    obj = EXAMPLES[name]
    assert "Example:" in (obj.__doc__ or ""), f"{name} has no Example: section"
    (test,) = doctest.DocTestFinder(recurse=False).find(obj, name, globs={})
    assert test.examples, f"{name}'s example has no doctest lines"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    assert runner.run(test).failed == 0, f"{name}'s example failed"


def _docstrings() -> list[tuple[str, str]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = [tree, *ast.walk(tree)]
        for node in nodes:
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    where = f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', 1)}"
                    found.append((where, doc))
    return found


def test_no_returns_section_starts_with_a_colon_phrase() -> None:
    bad = []
    for where, doc in _docstrings():
        lines = doc.splitlines()
        for i, line in enumerate(lines[:-1]):
            if line.strip() in ("Returns:", "Yields:") and ":" in lines[i + 1]:
                bad.append(f"{where}: {lines[i + 1].strip()}")
    assert not bad, "first lines the API pages would split at ':' into a type:\n" + "\n".join(bad)
