"""Check the built documentation site: every public name has its entry in the API reference.

    mkdocs build --strict && python scripts/check_api_reference.py [site]

For each page ``docs/api/<module>.md`` the module's public names (its ``__all__``, else the
public names it defines) must each have an anchor on the built page ``site/api/<module>/``:
``<module>.<name>``, or one ending in ``.<name>`` where the page documents the object at its
defining module (a function named like its submodule, such as ``bbh.evaluation.evaluate``).
Every function and method entry must also have text (a method that overrides a documented one
without a docstring of its own gets its base's, through ``scripts/griffe_examples.py``).
Exits 1 listing what is missing.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def public_names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == module_name
    ]


def missing_names(site: Path, docs: Path = ROOT / "docs") -> dict[str, list[str]]:
    """Module -> its public names without an entry on its API page (modules with none left out)."""
    missing = {}
    for page in sorted((docs / "api").glob("*.md")):
        module_name = page.stem
        built = site / "api" / module_name / "index.html"
        if not built.is_file():
            missing[module_name] = ["(the page was not built)"]
            continue
        ids = set(re.findall(r'id="([^"]+)"', built.read_text(encoding="utf-8")))
        absent = [
            name
            for name in public_names(module_name)
            if f"{module_name}.{name}" not in ids and not any(i.endswith(f".{name}") for i in ids)
        ]
        if absent:
            missing[module_name] = absent
    return missing


#: a function's or method's entry: its anchor, then its (possibly empty) contents block
_ENTRY = re.compile(
    r'<div class="doc doc-object doc-function">\s*<h\d id="([^"]+)".*?'
    r'<div class="doc doc-contents ">(.*?)</div>\s*</div>',
    re.S,
)


def empty_entries(site: Path, docs: Path = ROOT / "docs") -> list[str]:
    """The functions and methods on the API pages whose entry shows a signature and no text."""
    empty = []
    for page in sorted((docs / "api").glob("*.md")):
        built = site / "api" / page.stem / "index.html"
        if built.is_file():
            text = built.read_text(encoding="utf-8")
            empty += [anchor for anchor, body in _ENTRY.findall(text) if "<p>" not in body]
    return empty


def main(argv: list[str]) -> int:
    site = Path(argv[1]) if len(argv) > 1 else ROOT / "site"
    missing = missing_names(site)
    empty = empty_entries(site)
    for anchor in empty:
        print(f"{anchor}: its API entry has a signature and no text", file=sys.stderr)
    pages = len(list((ROOT / "docs" / "api").glob("*.md")))
    for module_name, names in missing.items():
        print(f"{module_name}: not in the API reference: {', '.join(names)}", file=sys.stderr)
    if missing or empty:
        return 1
    print(
        f"check_api_reference: every public name of the {pages} API pages' modules is there, "
        "every function's and method's entry with text"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
