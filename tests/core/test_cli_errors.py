"""CLI hygiene: --version, python -m bbh, one-line errors with exit status 2 before any work,
unwritable output folders, and run folders that hold one run even when the run is killed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import bbh
from bbh import io as bio
from bbh.cli import main

FAST_TOY = ["--methods", "map", "--steps", "5", "--reference", "none"]


def _run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bbh", *args], capture_output=True, text=True, timeout=300, **kwargs
    )


def test_version_through_python_dash_m() -> None:
    done = _run_cli("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"bbh {bbh.__version__}\n", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["toy", "--out", ""], "argument --out: expected a folder path, got an empty string"),
        (["toy", "--out", "o", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
        (["toy", "--out", "o", "--steps", "-3"], "argument --steps: must be >= 1, got -3"),
        (["toy", "--out", "o", "--steps", "1e3"], "argument --steps: expected an integer"),
        (["toy", "--out", "o", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["toy", "--out", "o", "--data-seed", "x"], "argument --data-seed: expected an integer"),
        (["toy", "--out", "o", "--setting", "best"], "argument --setting: invalid choice"),
        (["data", "mnist", "--data-dir", " "], "argument --data-dir: expected a folder path"),
        (["toy"], "the following arguments are required: --out"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_options_are_one_line_errors_before_any_work(
    args: list[str], message: str, capsys, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_toy_into_a_file_or_a_foreign_folder_fails_before_training(tmp_path, capsys) -> None:
    target = tmp_path / "results.txt"
    target.write_text("mine")
    start = time.perf_counter()
    assert main(["toy", "--out", str(target)]) == 2  # default settings: 5000 steps if it trained
    assert capsys.readouterr().err == (
        f"bbh toy: error: --out {target}: exists and is not a folder\n"
    )
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("mine")
    assert main(["toy", "--out", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "holds files that are not a finished bbh run (no 'done' marker)" in err
    assert time.perf_counter() - start < 10
    assert target.read_text() == "mine" and [p.name for p in foreign.iterdir()] == ["chapter1.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.txt", "thesis"]


def _as_ordinary_user(fn) -> object:
    """Run ``fn()`` in a forked child that (when the tests run as root, who may write anywhere)
    drops to the user nobody; returns what ``fn`` returned (JSON), raising its error text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec, so the interpreter's own files need not be readable
        status = 1
        try:
            os.close(read_end)
            if os.getuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            result = {"ok": fn()}
            status = 0
        except BaseException as err:
            result = {"error": repr(err)}
        finally:
            os.write(write_end, json.dumps(result).encode())
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        result = json.loads(pipe.read() or "{}")
    os.waitpid(pid, 0)
    assert "ok" in result, result
    return result["ok"]


def test_unwritable_output_folders_fail_in_seconds_with_one_line() -> None:
    """A read-only finished run and a new folder under a read-only parent, as an ordinary user."""
    base = Path(tempfile.mkdtemp(prefix="bbh-unwritable-"))
    base.chmod(0o755)  # reachable by the unprivileged child
    locked = base / "locked"
    (locked / "ro_run").mkdir(parents=True)
    bio.write_json(locked / "ro_run" / "done", {"format": 1, "files": {}})
    for folder in (locked / "ro_run", locked):
        folder.chmod(0o555)
    targets = [str(locked / "ro_run"), str(locked / "new")]

    def attempt() -> list[list[object]]:
        report = []
        for out in targets:
            err = io.StringIO()
            start = time.perf_counter()
            with contextlib.redirect_stderr(err):
                code = main(["toy", "--out", out])  # default settings: minutes if it trained
            report.append([code, time.perf_counter() - start, err.getvalue()])
        return report

    try:
        report = _as_ordinary_user(attempt)
    finally:
        for folder in (locked, locked / "ro_run"):
            folder.chmod(0o755)
    assert [code for code, _, _ in report] == [2, 2]
    assert all(seconds < 10 for _, seconds, _ in report), report
    assert [text for _, _, text in report] == [
        f"bbh toy: error: --out {locked / 'ro_run'}: the folder is not writable\n",
        f"bbh toy: error: --out {locked / 'new'}: cannot create it, {locked} is not writable\n",
    ]
    assert sorted(p.name for p in locked.iterdir()) == ["ro_run"]
    assert sorted(p.name for p in (locked / "ro_run").iterdir()) == ["done"]
    shutil.rmtree(base)


def test_a_new_toy_run_replaces_the_earlier_one_whole(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    assert main(["toy", "--out", str(out), *FAST_TOY]) == 0
    assert sorted(bio.read_done_marker(out) or {}) == ["metrics.json", "toy.png"]
    assert main(["toy", "--out", str(out), *FAST_TOY, "--no-figure"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["done", "metrics.json"]  # no stale toy.png
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]


KILLED_AFTER_METRICS = r"""
import sys, time
import bbh.io
real = bbh.io.write_json
def write_json(path, data):
    real(path, data)
    if str(path).endswith("metrics.json"):
        print("metrics.json written", flush=True)
        time.sleep(120)
bbh.io.write_json = write_json
from bbh.cli import main
main(sys.argv[1:])
"""


def test_kill_9_after_metrics_json_keeps_the_earlier_run(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    assert main(["toy", "--out", str(out), *FAST_TOY]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_AFTER_METRICS, "toy", "--out", str(out), *FAST_TOY],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        while (line := proc.stdout.readline()) and line.strip() != "metrics.json written":
            pass
        assert line.strip() == "metrics.json written"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier run, whole
    assert main(["toy", "--out", str(out), *FAST_TOY, "--seed", "3", "--no-figure"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]  # the killed staging is gone
    assert json.loads((out / "metrics.json").read_text())["methods"]["map"]
    assert (out / "metrics.json").read_bytes() != before["metrics.json"]
