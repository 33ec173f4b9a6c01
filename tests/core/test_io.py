"""bbh.io: atomic files with the user's umask, and run folders that are all of one run."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from bbh import io as bio


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    bio.atomic_write(target, lambda p: p.write_bytes(b"complete"))
    assert target.read_bytes() == b"complete"

    def crash(p: Path) -> None:
        p.write_bytes(b"half")
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError, match="crash mid-write"):
        bio.atomic_write(target, crash)
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_atomic_open_success_and_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.bin"
    with bio.atomic_open(target) as fh:
        fh.write(b"complete")
    assert target.read_bytes() == b"complete"
    with pytest.raises(RuntimeError), bio.atomic_open(target) as fh:
        fh.write(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


@pytest.mark.usefixtures("umask_027")
def test_every_writer_creates_files_with_the_umask(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    paths = [
        bio.write_json(tmp_path / "a.json", {"x": 1}),
        bio.write_text(tmp_path / "b.txt", "hi"),
        bio.atomic_write(tmp_path / "c.bin", lambda p: p.write_bytes(b"x")),
        bio.savefig(fig, tmp_path / "d.png"),
    ]
    plt.close(fig)
    with bio.atomic_open(tmp_path / "e.bin") as fh:
        fh.write(b"y")
    paths.append(tmp_path / "e.bin")
    assert {p.name: oct(_mode(p)) for p in paths} == {p.name: oct(0o640) for p in paths}
    with bio.run_folder(tmp_path / "run") as run:
        run.write_json("m.json", {})
    assert oct(_mode(tmp_path / "run")) == oct(0o750)
    assert oct(_mode(tmp_path / "run" / "m.json")) == oct(0o640)
    assert oct(_mode(tmp_path / "run" / "done")) == oct(0o640)


def test_savefig_writes_the_format_of_the_suffix(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    png = bio.savefig(fig, tmp_path / "f.png")
    svg = bio.savefig(fig, tmp_path / "f.svg")
    plt.close(fig)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:500]


def test_write_json_refuses_nan_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = bio.write_json(tmp_path / "r.json", {"a": 1})
    with pytest.raises(ValueError, match="Out of range float"):
        bio.write_json(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def _write_run(out: Path, tag: str, names: tuple[str, ...] = ("metrics.json", "toy.png")) -> None:
    with bio.run_folder(out) as run:
        for name in names:
            run.write_text(name, f"{tag}:{name}")


def _contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_run_folder_replaces_a_finished_run_as_a_whole(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "toy"
    _write_run(out, "old", ("metrics.json", "toy.png", "extra.txt"))
    assert bio.read_done_marker(out) == {"extra.txt": 13, "metrics.json": 16, "toy.png": 11}
    _write_run(out, "new")
    contents = _contents(out)
    assert contents.pop("done")
    assert contents == {"metrics.json": "new:metrics.json", "toy.png": "new:toy.png"}
    assert bio.read_done_marker(out) == {"metrics.json": 16, "toy.png": 11}
    assert [p.name for p in out.parent.iterdir()] == ["toy"]  # no staging or old folders left


def test_run_folder_keeps_the_earlier_run_when_the_run_fails(tmp_path: Path) -> None:
    out = tmp_path / "toy"
    _write_run(out, "old")
    with pytest.raises(RuntimeError, match="training diverged"), bio.run_folder(out) as run:
        run.write_text("metrics.json", "new")
        raise RuntimeError("training diverged")
    assert _contents(out)["metrics.json"] == "old:metrics.json"
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("file", "exists and is not a folder"),
        ("foreign", "holds files that are not a finished bbh run"),
        ("parent_is_file", "is a file, not a folder"),
        ("empty_text", "output folder is empty; give a folder path"),
    ],
)
def test_run_folder_refuses_unusable_folders_before_any_work(
    tmp_path: Path, setup: str, message: str
) -> None:
    out: Path | str = tmp_path / "out"
    if setup == "file":
        Path(out).write_text("not a folder")
    elif setup == "foreign":
        Path(out).mkdir()
        (Path(out) / "thesis.tex").write_text("precious")
    elif setup == "parent_is_file":
        (tmp_path / "blocker").write_text("")
        out = tmp_path / "blocker" / "out"
    else:
        out = ""
    entered = []
    with pytest.raises(bio.OutputFolderError, match=message), bio.run_folder(out):
        entered.append(True)
    assert not entered
    if setup == "foreign":
        assert _contents(Path(out)) == {"thesis.tex": "precious"}
    if setup != "empty_text":
        assert sorted(p.name for p in tmp_path.iterdir()) in (["out"], ["blocker"])


def test_fresh_run_folder_writes_in_place_and_marks_completion(tmp_path: Path) -> None:
    out = tmp_path / "train"
    with bio.run_folder(out, fresh=True) as run:
        assert run.path("ckpt/last.pt") == out / "ckpt" / "last.pt"
        run.write_text("ckpt/last.pt", "weights")
        assert bio.read_done_marker(out) is None  # visible while running, not yet finished
    assert bio.read_done_marker(out) == {"ckpt/last.pt": 7}
    with (
        pytest.raises(bio.OutputFolderError, match="is not empty"),
        bio.run_folder(out, fresh=True),
    ):
        pass


def test_run_folder_rejects_names_outside_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="relative name"), bio.run_folder(tmp_path / "o") as run:
        run.path("../escape.txt")
    with (
        pytest.raises(ValueError, match="completion marker"),
        bio.run_folder(tmp_path / "o") as run,
    ):
        run.path("done")
    assert not (tmp_path / "o").exists()


def test_next_run_finishes_a_swap_that_a_kill_interrupted(tmp_path: Path) -> None:
    """A dead run left its finished staging folder and the earlier run moved aside (the
    two-rename fallback, cut between the renames): the next run puts the finished one back."""
    out = tmp_path / "toy"
    dead = 2**22 + 12345  # above the default pid_max, so no live process has it
    staging = tmp_path / f".toy.bbh-run-{dead}-abc123"
    old = tmp_path / f".toy.bbh-run-{dead}-oldabc123"
    for folder, tag in ((staging, "new"), (old, "old")):
        folder.mkdir()
        (folder / "metrics.json").write_text(tag)
        bio.write_json(folder / "done", {"format": 1, "files": {"metrics.json": 3}})
    with pytest.raises(KeyboardInterrupt), bio.run_folder(out):
        raise KeyboardInterrupt
    assert (out / "metrics.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy"]


def test_run_folder_through_a_symlink_replaces_the_target_and_keeps_the_link(
    tmp_path: Path,
) -> None:
    target = tmp_path / "store" / "toy"
    _write_run(target, "old")
    link = tmp_path / "latest"
    link.symlink_to(target)
    _write_run(link, "new")
    assert link.is_symlink() and link.resolve() == target
    assert _contents(target)["metrics.json"] == "new:metrics.json"
    assert sorted(p.name for p in target.parent.iterdir()) == ["toy"]
