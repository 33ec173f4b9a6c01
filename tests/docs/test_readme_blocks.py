"""Every code block of README.md is run somewhere, and the README holds no measured number.

Python blocks: the tour is run by the slow test ``tests/docs/test_readme_tour.py``; any other
is executed here. Bash blocks: each command (a line, split at ``&&``) is either one that CI runs
(``.ci/run``, or ``scripts/check_wheel.sh``, which CI calls) or one listed below with the test
that runs it. Commands that no test runs (a torchrun across machines, say) belong in a guide
under ``docs/``, not in the README. Measured numbers live on ``docs/results.md``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bbh.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: the issue's target for the README's length
MAX_LINES = 160
TOUR_HEADING = "## Your network, Bayesian in one line"

#: README commands that CI runs: command -> (the file that runs it, a regex of that line)
RUN_BY_CI = {
    "python3 -m venv .venv": (".ci/run", r"python3 -m venv \.venv"),
    ". .venv/bin/activate": (".ci/run", r"\. \.venv/bin/activate"),
    'pip install torch==2.13.0 -e ".[dev]"': (
        ".ci/run",
        r'pip install (-q |--disable-pip-version-check )*torch==2\.13\.0 -e "\.\[dev\]"',
    ),
    "pytest": (".ci/run", r"pytest"),
    "bash scripts/install_peers.sh": (".ci/run", r"bash scripts/install_peers\.sh"),
    "bbh demo": ("scripts/check_wheel.sh", r'"\$tmp/venv/bin/bbh" demo .*'),
}
#: README commands that a test runs: command -> "test file::test function"
RUN_BY_TESTS: dict[str, str] = {}


def _blocks() -> list[tuple[str, str, int]]:
    """``(language, code, line)`` of every fenced block of the README."""
    text = README.read_text(encoding="utf-8")
    return [
        (m.group(1), m.group(2), text[: m.start()].count("\n") + 1)
        for m in re.finditer(r"^```(\w*)\n(.*?)^```$", text, flags=re.S | re.M)
    ]


def _commands(code: str) -> list[str]:
    """The commands of a bash block: each line without its comment, split at ``&&``."""
    found = []
    for line in code.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        found += [" ".join(part.split()) for part in line.split("&&") if part.strip()]
    return found


def _runs(path: str, pattern: str) -> bool:
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    return any(re.fullmatch(pattern, line.strip()) for line in lines)


def test_the_readme_is_a_short_guide() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"README.md has {lines} lines; the target is {MAX_LINES}"


def test_every_block_is_bash_or_python() -> None:
    blocks = _blocks()
    assert blocks, "no code block found in README.md"
    for language, _, line in blocks:
        assert language in {"bash", "python"}, f"README.md:{line}: a ```{language} block"


def test_every_bash_command_is_run_by_ci_or_a_test() -> None:
    for language, code, line in _blocks():
        if language != "bash":
            continue
        for command in _commands(code):
            if command in RUN_BY_CI:
                path, pattern = RUN_BY_CI[command]
                assert _runs(path, pattern), f"{path} no longer runs {command!r}"
            else:
                assert command in RUN_BY_TESTS, (
                    f"README.md:{line}: {command!r} is run neither by CI nor by a listed test;"
                    " list it in RUN_BY_TESTS or move it to its guide under docs/"
                )
    assert _runs(".ci/run", r"bash scripts/check_wheel\.sh"), "CI no longer runs check_wheel.sh"


def test_the_listed_tests_exist() -> None:
    for command, test in RUN_BY_TESTS.items():
        path, name = test.split("::")
        source = (ROOT / path).read_text(encoding="utf-8")
        assert f"def {name}(" in source, f"{test}, listed for {command!r}, does not exist"


def test_python_blocks_are_the_tour_or_run_here(tmp_path: Path, monkeypatch) -> None:
    text = README.read_text(encoding="utf-8")
    tour_at = text[: text.index(TOUR_HEADING)].count("\n") + 1
    python = [(code, line) for language, code, line in _blocks() if language == "python"]
    # the tour: the first python block after its heading, run by tests/docs/test_readme_tour.py
    tour = min((line for _, line in python if line > tour_at), default=None)
    assert tour is not None, "the tour's code block is gone"
    monkeypatch.chdir(tmp_path)
    for code, line in python:
        compile(code, f"README.md:{line}", "exec")
        if line != tour:
            exec(compile(code, f"README.md:{line}", "exec"), {})


def test_the_tour_reaches_data_and_nets_from_the_one_import() -> None:
    import bbh

    assert callable(bbh.data.load_embedded_mnist) and callable(bbh.nets.MLP)


def test_every_bbh_command_named_in_the_readme_exists(capsys) -> None:
    text = README.read_text(encoding="utf-8")
    named = set(re.findall(r"(?:^|`|-m )bbh ([a-z][a-z-]+)", text, flags=re.M))
    assert {"demo", "toy", "train", "evaluate", "reproduce", "check-posterior"} <= named
    for command in sorted(named):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0, f"bbh {command} --help failed"
    capsys.readouterr()


def test_no_measured_number_in_the_readme() -> None:
    """Decimals, ratios (``1.17x``) and percentages outside code belong on docs/results.md."""
    text = README.read_text(encoding="utf-8")
    prose = re.sub(r"^```.*?^```$", "", text, flags=re.S | re.M)
    prose = re.sub(r"`[^`]*`", "", prose)  # inline code: option values, commands
    prose = re.sub(r"\(https?://[^)]*\)", "", prose)  # link targets
    prose = re.sub(r"arXiv \d{4}\.\d{4,5}", "", prose)  # citations
    versions = {"3.10", "2.13.0", "3.0"}  # Python, the pinned torch, the data's licence
    found = [
        token
        for token in re.findall(r"\d+(?:\.\d+)+x?|\d+(?:\.\d+)?(?:x\b|%)", prose)
        if token not in versions
    ]
    assert not found, f"measured numbers in README.md (move them to docs/results.md): {found}"
