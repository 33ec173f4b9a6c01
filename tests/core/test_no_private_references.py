"""User-facing text names no file that users do not have.

``src/``, ``docs/``, ``README.md`` and ``examples/`` reach users (docstrings, ``--help``, config
comments, the docs pages), so they may not point at our private notes (the paper notes and the
design notes) or at the sibling folder of our checkout that holds them and the data. Citations go
to the paper (arXiv 1711.01297), its code (pawni/BayesByHypernet) or our docs pages instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What users read: every text file under these paths.
SCANNED = ("src", "docs", "examples", "README.md")
#: Names of files and folders that exist only on our side (split so this file needs no exemption).
PRIVATE = ("PAPER" + ".md", "DESIGN" + ".md", "../" + "shared")


def _text_files() -> list[Path]:
    files = []
    for entry in SCANNED:
        path = ROOT / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in candidates:
            if file.is_file() and "__pycache__" not in file.parts:
                files.append(file)
    return files


def private_references(files: list[Path], root: Path = ROOT) -> list[str]:
    """``path:line: ...`` (relative to ``root``) for every line of a text file in ``files`` that
    names a private file.

    Binary files (a NUL byte, or not UTF-8: the embedded ``.npz`` data) are skipped.
    """
    hits = []
    for file in files:
        data = file.read_bytes()
        if b"\0" in data:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for name in PRIVATE:
                if name in line:
                    rel = file.relative_to(root)
                    hits.append(f"{rel}:{number}: names {name!r}: {line.strip()[:120]}")
    return hits


def test_user_facing_text_names_no_private_file() -> None:
    files = _text_files()
    assert any(f.suffix == ".py" for f in files) and any(f.suffix == ".md" for f in files)
    hits = private_references(files)
    assert not hits, "user-facing text names files users do not have:\n" + "\n".join(hits)


def test_the_scan_finds_a_reference_and_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "module.py"
    bad.write_text('"""Docstring."""\n# see ' + PRIVATE[0] + " section 9\n")
    binary = tmp_path / "data.npz"
    binary.write_bytes(b"\0" + PRIVATE[0].encode())
    hits = private_references([bad, binary], root=tmp_path)
    assert hits == [f"module.py:2: names {PRIVATE[0]!r}: # see {PRIVATE[0]} section 9"]


@pytest.mark.parametrize("name", PRIVATE)
def test_each_private_name_is_caught(tmp_path: Path, name: str) -> None:
    file = tmp_path / "page.md"
    file.write_text(f"text\nmore text with {name} in it\n")
    hits = private_references([file], root=tmp_path)
    assert [h.split(": names")[0] for h in hits] == ["page.md:2"]
