"""The docstrings as the API reference reads them: the ``Example:`` sections of the names a user
meets first run as written, no ``Returns:``/``Yields:`` section starts with ``X: ...``, which
the site's Google parser (``returns_named_value: false``) would show with X as the type, and every
public function, method and constructor on the API pages that takes arguments has an ``Args:``
section and every one that returns something a ``Returns:`` (or ``Yields:``) section."""

from __future__ import annotations

import ast
import doctest
import enum
import importlib
import importlib.util
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


# ------------------------------------------------------------------ Args/Returns on the API pages

ROOT = SRC.parents[1]

#: Public names that need no Args/Returns sections for now, each with its reason.
EXEMPT: dict[str, str] = {}


def _api_modules() -> list[str]:
    """The modules of the API pages, ``docs/api/<module>.md`` (as the site's check reads them)."""
    return [page.stem for page in sorted((ROOT / "docs" / "api").glob("*.md"))]


def _public_names(module_name: str) -> list[str]:
    """The module's public names as ``scripts/check_api_reference.py`` lists them."""
    spec = importlib.util.spec_from_file_location(
        "check_api_reference", ROOT / "scripts" / "check_api_reference.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return list(script.public_names(module_name))


def _sections(doc: str | None) -> set[str]:
    return set(re.findall(r"^\s*(Args|Returns|Yields):\s*$", doc or "", flags=re.MULTILINE))


def _callables() -> dict[str, tuple[Callable[..., Any], str | None, bool]]:
    """Qualified name -> (function, the docstring that documents it, whether to drop self/cls)
    for every public function, and every public method and constructor of a public class, on
    the API pages. A constructor is documented on its class (the site merges ``__init__`` into
    the class); a method without its own docstring inherits its base's (``inspect.getdoc``)."""
    found: dict[str, tuple[Callable[..., Any], str | None, bool]] = {}
    for module_name in _api_modules():
        module = importlib.import_module(module_name)
        for name in _public_names(module_name):
            obj = getattr(module, name)
            qual = f"{getattr(obj, '__module__', module_name)}.{getattr(obj, '__qualname__', name)}"
            if inspect.isclass(obj):
                if issubclass(obj, enum.Enum):
                    continue
                init = vars(obj).get("__init__")
                if inspect.isfunction(init) and init.__qualname__ == f"{obj.__qualname__}.__init__":
                    found[f"{qual}.__init__"] = (init, obj.__doc__, True)
                for attr, value in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    doc = inspect.getdoc(getattr(obj, attr))
                    if isinstance(value, staticmethod | classmethod):
                        found[f"{qual}.{attr}"] = (
                            value.__func__,
                            doc,
                            isinstance(value, classmethod),
                        )
                    elif inspect.isfunction(value):
                        found[f"{qual}.{attr}"] = (value, doc, True)
            elif inspect.isfunction(obj):
                found[qual] = (obj, obj.__doc__, False)
    return found


def test_api_functions_have_args_and_returns_sections() -> None:
    missing = []
    for qual, (fn, doc, bound) in sorted(_callables().items()):
        if qual in EXEMPT:
            continue
        signature = inspect.signature(fn)
        params = list(signature.parameters)[1:] if bound else list(signature.parameters)
        sections = _sections(doc)
        if params and "Args" not in sections:
            missing.append(f"{qual}: no Args: section for {', '.join(params)}")
        returns = signature.return_annotation
        if returns not in (None, "None", inspect.Signature.empty) and not (
            {"Returns", "Yields"} & sections
        ):
            missing.append(f"{qual}: returns {returns} but has no Returns: section")
    assert not missing, "docstrings the API pages show without their sections:\n" + "\n".join(
        missing
    )


def test_the_exemptions_are_still_needed() -> None:
    names = _callables()
    stale = [qual for qual in EXEMPT if qual not in names]
    assert not stale, f"exempted names that are gone (remove them from EXEMPT): {stale}"


def test_no_sphinx_roles_which_the_site_shows_as_raw_text() -> None:
    role = re.compile(r":(?:py:)?(?:meth|class|func|attr|mod|exc|data|obj):`")
    found = [
        f"{path.relative_to(SRC)}:{i}"
        for path in sorted(SRC.rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if role.search(line)
    ]
    assert not found, f"Sphinx roles (write ``name`` instead): {found}"
