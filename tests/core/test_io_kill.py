"""kill -9 of a process at each point of writing a run folder: the folder is always one whole run.

The writer is a subprocess that loads ``bbh/io.py`` on its own (no torch import: fast), writes a
run folder over an earlier finished run, and stops at a named point, where this test kills it
with SIGKILL. Afterwards the folder must hold exactly the files its ``done`` marker lists, all
from one run; the next run must tidy what the killed one left and replace the folder cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bbh import io as bio

WRITER = r"""
import importlib.util, os, sys, time
from pathlib import Path

spec = importlib.util.spec_from_file_location("bbh_io", sys.argv[1])
bio = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bio)
out, point, tag = Path(sys.argv[2]), sys.argv[3], sys.argv[4]


def stop(name):
    if name == point:
        print(name, flush=True)
        time.sleep(120)


real_swap, real_rename, real_rmtree = bio._swap_into_place, os.rename, bio.shutil.rmtree


def swap(staging, final):
    stop("before-swap")
    real_swap(staging, final)


def rename(a, b):
    real_rename(a, b)
    if Path(b).name.startswith("."):  # the earlier run moved aside
        stop("between-renames")


def rmtree(path, *args, **kwargs):
    stop("before-old-removed")
    real_rmtree(path, *args, **kwargs)


bio._swap_into_place = swap
bio.shutil.rmtree = rmtree
if point == "between-renames":  # the two-rename fallback of systems without an atomic exchange
    bio._exchange = lambda a, b: False
    bio.os.rename = rename


def half_written(path):
    with open(path, "w") as handle:
        handle.write(tag + ":to")
        handle.flush()
        stop("mid-file")
        handle.write("y.png")


with bio.run_folder(out) as run:
    stop("staging-created")
    run.write_text("metrics.json", tag + ":metrics.json")
    stop("after-first-file")
    run.write("toy.png", half_written)
print("finished", flush=True)
"""

# point -> what the folder holds right after the kill: the earlier run, the new one, or nothing
# (only between the two renames of the fallback; the next run then finishes the swap).
POINTS = {
    "staging-created": "old",
    "after-first-file": "old",
    "mid-file": "old",
    "before-swap": "old",
    "between-renames": None,
    "before-old-removed": "new",
}


def _write_run(out: Path, tag: str) -> None:
    with bio.run_folder(out) as run:
        run.write_text("metrics.json", f"{tag}:metrics.json")
        run.write_text("toy.png", f"{tag}:toy.png")


def _whole_run(out: Path) -> str:
    """The tag of the one run ``out`` holds; fails on a mix, a partial file or a bad marker."""
    listed = bio.read_done_marker(out)
    assert listed is not None, f"{out} has no done marker"
    present = {
        p.relative_to(out).as_posix(): p.stat().st_size
        for p in out.rglob("*")
        if p.is_file() and p.name != "done"
    }
    assert present == listed, f"files {present} differ from the done marker {listed}"
    tags = {p.read_text().split(":")[0] for p in out.iterdir() if p.name != "done"}
    assert len(tags) == 1, f"files of several runs: {tags}"
    for p in out.iterdir():
        if p.name != "done":
            assert p.read_text() == f"{next(iter(tags))}:{p.name}", f"{p.name} is half-written"
    return tags.pop()


def _kill_at(point: str, out: Path, writer: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(writer), bio.__file__, str(out), point, "new"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == point, f"the writer did not reach {point!r} (said {line!r})"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("point", list(POINTS))
def test_kill_9_while_writing_a_run_folder_leaves_one_whole_run(tmp_path: Path, point: str):
    writer = tmp_path / "writer.py"
    writer.write_text(WRITER)
    out = tmp_path / "runs" / "toy"
    _write_run(out, "old")

    _kill_at(point, out, writer)

    expected = POINTS[point]
    if expected is None:
        assert not out.exists()
    else:
        assert _whole_run(out) == expected
    # the next run tidies up before it starts; failing, it keeps the folder as it is
    with pytest.raises(KeyboardInterrupt), bio.run_folder(out):
        raise KeyboardInterrupt
    assert _whole_run(out) == (expected or "new")
    assert sorted(p.name for p in out.parent.iterdir()) == ["toy"]
    _write_run(out, "third")
    assert _whole_run(out) == "third"
    assert sorted(p.name for p in out.parent.iterdir()) == ["toy"]
