"""``torchrun --nproc_per_node=2 -m bbh train``: two CPU ranks (gloo on 127.0.0.1) on one run
folder; rank 0 alone writes it, an error says itself once, ``--resume`` needs the same ranks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_configs import write_tiny

from bbh.cli import main
from bbh.training import list_checkpoints

TIMEOUT_S = 120


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc_per_node=2 -m bbh ARGS`` (a free port, one thread each);
    a run that does not finish within ``TIMEOUT_S`` fails the test instead of hanging it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "--monitor-interval=0.1", "-m", "bbh", *args]  # fmt: skip
    try:
        return subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"torchrun did not finish within {TIMEOUT_S} s: {exc}") from None


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("torchrun")
    write_tiny(folder, steps=30, checkpoint_every=7)
    done = torchrun(["train", "tiny.toml", "--out", "run", "--quiet"], folder)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained tiny: 30 steps") == 1, done.stdout  # rank 0 speaks
    return folder


def test_rank_0_alone_writes_the_run_folder(two_rank_run: Path):
    run = two_rank_run / "run"
    assert (run / "done").is_file() and (run / "model.pt").is_file()
    summary = json.loads((run / "train.json").read_text())
    assert summary["world_size"] == 2 and summary["backend"] == "gloo"
    assert summary["steps"] == 30
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    kinds = [e.get("event") for e in events]
    assert kinds.count("start") == 1 and kinds.count("done") == 1  # one writer
    steps = [e["step"] for e in events if "loss" in e]
    assert steps == sorted(set(steps)) and steps[-1] == 30
    assert [c.name for c in list_checkpoints(run / "checkpoints")] == [
        "step-00000030.pt",
        "step-00000028.pt",
    ]


def test_resume_needs_the_same_ranks_and_continues_exactly(two_rank_run: Path, capsys):
    """Cut the finished two-rank run back to its step-28 checkpoint: one process refuses it
    (naming the count), two ranks resume it to weights bit-identical to the straight run's."""
    straight = _weights(two_rank_run / "run")
    run = two_rank_run / "cut"
    shutil.copytree(two_rank_run / "run", run)
    for name in ("model.pt", "train.json", "done"):
        (run / name).unlink()
    (run / "checkpoints" / "step-00000030.pt").unlink()

    code = main(["train", str(two_rank_run / "tiny.toml"), "--out", str(run), "--resume",
                 "--quiet"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "written by a run on 2 process(es) and this one has 1" in err, err
    assert "torchrun --nproc_per_node (times nodes) = 2" in err
    assert not (run / "model.pt").exists()

    done = torchrun(["train", "tiny.toml", "--out", "cut", "--resume", "--quiet"], two_rank_run)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("resumed tiny: 30 steps") == 1, done.stdout
    assert done.stderr.count("resuming from") == 1  # rank 0's note, once
    resumed = _weights(run)
    assert resumed.keys() == straight.keys()
    for key in straight:
        assert torch.equal(resumed[key], straight[key]), f"{key} differs"


def test_an_error_on_rank_0_stops_both_ranks_and_is_said_once(two_rank_run: Path):
    """A one-process checkpoint resumed by two ranks: rank 0 finds the mismatch, every rank
    exits with status 2 and the message appears once (from rank 0)."""
    folder = two_rank_run
    assert main(["train", str(folder / "tiny.toml"), "--out", str(folder / "one"), "--quiet",
                 "--set", "train.steps=7"]) == 0  # fmt: skip
    # fmt: off
    for name in ("model.pt", "train.json", "done"):
        (folder / "one" / name).unlink()
    done = torchrun(["train", "tiny.toml", "--out", "one", "--resume", "--quiet",
                     "--set", "train.steps=7"], folder)
    # fmt: on
    assert done.returncode != 0
    assert done.stderr.count("written by a run on 1 process(es) and this one has 2") == 1, (
        done.stderr[-3000:]
    )
    assert "in one process (without torchrun)" in done.stderr
    assert not (folder / "one" / "model.pt").exists()


@pytest.mark.parametrize("command", [["evaluate", "run"], ["toy", "--out", "toy"]])
def test_other_commands_refuse_to_run_once_per_rank(command, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(tmp_path)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert f"bbh {command[0]} runs in one process; under torchrun only bbh train runs" in err
    assert not any(tmp_path.iterdir())


def test_a_distributed_environment_without_torchrun_is_a_clear_error(monkeypatch, tmp_path, capsys):
    write_tiny(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("MASTER_ADDR", "MASTER_PORT", "RANK"):
        monkeypatch.delenv(key, raising=False)
    out = str(tmp_path / "run")
    assert main(["train", str(tmp_path / "tiny.toml"), "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "WORLD_SIZE=2 is set but MASTER_ADDR, MASTER_PORT, RANK is not" in err, err
    assert main(["train", str(tmp_path / "tiny.toml"), "--out", out, "--quiet",
                 "--set", 'distributed.backend="nccl"']) == 2  # fmt: skip
    assert "backend 'nccl' needs a CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
