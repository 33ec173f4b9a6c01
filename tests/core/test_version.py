"""One version number: ``pyproject.toml``, ``bbh.__version__`` and the changelog's newest release
say the same, so ``bbh --version``, the wheel's name and the run folders' ``bbh_version`` agree."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import bbh

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_package_version_is_the_projects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert bbh.__version__ == project["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", bbh.__version__), bbh.__version__


def test_changelog_newest_release_is_the_package_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", text, flags=re.MULTILINE)
    assert releases, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' heading"
    assert releases[0] == bbh.__version__
    assert releases == sorted(releases, key=lambda v: tuple(map(int, v.split("."))), reverse=True)
