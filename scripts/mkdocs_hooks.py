"""MkDocs hooks for the documentation site (``mkdocs.yml`` names this file).

The guides in ``docs/`` link the figures that the benchmarks record beside their JSON
(``../benchmarks/results/*.png``), so that the pages read right on GitHub and in a checkout. The
site holds only ``docs/``: these hooks copy each linked figure into the site under
``assets/benchmarks/`` and point the link there, so that ``mkdocs build --strict`` checks the
figure exists instead of reporting a link out of the docs.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

from mkdocs.structure.files import File, Files

#: A Markdown link or image target that leaves docs/ for the benchmarks' records.
_OUTSIDE = re.compile(r"\]\(((?:\.\./)+)(benchmarks/results/[^)\s]+\.(?:png|svg))\)")
_ASSETS = "assets"


def _targets(docs_dir: Path) -> set[str]:
    found = set()
    for page in docs_dir.rglob("*.md"):
        depth = len(page.relative_to(docs_dir).parts) - 1
        for ups, target in _OUTSIDE.findall(page.read_text(encoding="utf-8")):
            if ups.count("../") == depth + 1:  # the repository root, seen from this page
                found.add(target)
    return found


def on_files(files: Files, config: Any) -> Files:
    """Add every benchmark figure a page links to the site, under ``assets/``."""
    docs_dir = Path(config["docs_dir"])
    root = docs_dir.parent
    for target in sorted(_targets(docs_dir)):
        if (root / target).is_file():  # a missing one stays a broken link for --strict to report
            files.append(
                File.generated(config, f"{_ASSETS}/{target}", abs_src_path=str(root / target))
            )
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point the links to ``../benchmarks/results/...`` at the copies under ``assets/``."""
    depth = len(PurePosixPath(page.file.src_uri).parts) - 1

    def repoint(match: re.Match[str]) -> str:
        ups, target = match.group(1), match.group(2)
        if ups.count("../") != depth + 1:
            return match.group(0)
        return f"]({'../' * depth}{_ASSETS}/{target})"

    return _OUTSIDE.sub(repoint, markdown)
