"""The documentation site's layout (``mkdocs.yml``): every guide in ``docs/`` is in the nav, and
the API reference has a page for each public module, each naming a module that imports.

The build itself (``mkdocs build --strict``: broken links, anchors and docstrings) and the check
that every public name is on its page (``scripts/check_api_reference.py``) run in CI, which
installs the ``docs`` extra."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: the modules a user imports from; each has its page in the API reference
PUBLIC_MODULES = (
    "bbh",
    "bbh.methods",
    "bbh.training",
    "bbh.metrics",
    "bbh.evaluation",
    "bbh.data",
    "bbh.priors",
    "bbh.attacks",
    "bbh.nets",
)


def _nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:") :]
    return re.findall(r":\s*(\S+\.md)\s*$", nav, flags=re.MULTILINE)


def test_every_guide_and_api_page_is_in_the_nav() -> None:
    pages = _nav_pages()
    assert len(pages) == len(set(pages)), "a page is in the nav twice"
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert sorted(on_disk - set(pages)) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(set(pages) - on_disk) == [], "nav entries without a page"


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_each_public_module_has_an_api_page(module: str) -> None:
    page = DOCS / "api" / f"{module}.md"
    assert page.is_file(), f"no API page for {module}"
    assert f"::: {module}\n" in page.read_text(encoding="utf-8")


def test_api_pages_document_importable_objects() -> None:
    for page in sorted((DOCS / "api").glob("*.md")):
        targets = re.findall(r"^::: (\S+)$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
        assert targets and targets[0] == page.stem, page.name
        for target in targets:
            parts = target.split(".")
            for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
                try:
                    obj = importlib.import_module(".".join(parts[:cut]))
                except ModuleNotFoundError:
                    continue
                for name in parts[cut:]:
                    obj = getattr(obj, name)
                break
            else:
                pytest.fail(f"{page.name}: {target} does not import")
