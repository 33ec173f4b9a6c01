"""``bbh train``: run folders, checkpoints and exact resume (killed, interrupted, truncated)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from tiny_configs import BBH_OPTIONS, write_tiny

from bbh.cli import main
from bbh.experiments.config import load_config
from bbh.experiments.runs import RunError, RunFolder
from bbh.experiments.train import read_log, train_run
from bbh.training import list_checkpoints

# The child sleeps 5 ms after each optimiser step, so that a tiny run of 300 steps takes at least
# 1.5 s: the parent, polling every 5 ms on a loaded machine, then always signals it mid-run (a run
# that finished before the signal made these tests flaky). Sleeping changes no number.
SUBPROCESS = """
import sys, time, torch
from torch.optim.optimizer import register_optimizer_step_post_hook
torch.set_num_threads(1)
register_optimizer_step_post_hook(lambda *args: time.sleep(0.005))
from bbh.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


def _assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def _spawn(args: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", SUBPROCESS, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes]) -> None:
    """Poll every 5 ms until ``condition()`` (the training process must still be running)."""
    deadline = time.monotonic() + 120
    while not condition():
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the condition did not come true within 120 s"
        time.sleep(0.005)


def test_sigkill_then_resume_ends_bit_identical(tmp_path):
    cfg_path = write_tiny(tmp_path, steps=300, checkpoint_every=10)
    cfg = load_config(cfg_path)
    train_run(cfg, tmp_path / "full", progress=False)

    killed = tmp_path / "killed"
    proc = _spawn(["train", str(cfg_path), "--out", str(killed), "--quiet"])
    _wait_for(lambda: bool(list_checkpoints(killed / "checkpoints")), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert RunFolder.at(killed).status() == "partial", "the run finished before the kill"

    # without --resume the unfinished run is refused; with it, training continues
    assert main(["train", str(cfg_path), "--out", str(killed), "--quiet"]) == 2
    outcome = train_run(cfg, killed, resume=True, progress=False)
    assert outcome.status == "resumed" and int(outcome.notes[-1].split("step ")[1].split()[0]) > 0
    _assert_bit_identical(_weights(tmp_path / "full"), _weights(killed))
    steps = [r["step"] for r in read_log(killed / "log.jsonl") if r["event"] == "train"]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 300 // 5


def test_sigint_saves_a_checkpoint_and_resume_matches(tmp_path):
    cfg_path = write_tiny(tmp_path, steps=300, checkpoint_every=1000)
    cfg = load_config(cfg_path)
    train_run(cfg, tmp_path / "full", progress=False)

    run = tmp_path / "interrupted"
    proc = _spawn(["train", str(cfg_path), "--out", str(run), "--quiet"])
    _wait_for(lambda: any('"event": "train"' in line for line in _lines(run / "log.jsonl")), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert "continue with --resume" in err.decode()
    assert list_checkpoints(run / "checkpoints") and not (run / "model.pt").exists()
    assert main(["train", str(cfg_path), "--out", str(run), "--resume", "--quiet"]) == 0
    _assert_bit_identical(_weights(tmp_path / "full"), _weights(run))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    cfg_path = write_tiny(tmp_path, steps=30, checkpoint_every=7)
    cfg = load_config(cfg_path)
    train_run(cfg, tmp_path / "full", progress=False)
    run = tmp_path / "run"
    train_run(cfg, run, progress=False)
    # make the run look killed after its last checkpoint, then cut that checkpoint short
    (run / "train.json").unlink()
    (run / "model.pt").unlink()
    newest, older = list_checkpoints(run / "checkpoints")
    assert newest.name == "step-00000030.pt" and older.name == "step-00000028.pt"
    newest.write_bytes(newest.read_bytes()[:500])
    outcome = train_run(cfg, run, resume=True, progress=False)
    notes = " ".join(outcome.notes)
    assert f"{newest} is unreadable" in notes and f"resuming from {older}" in notes
    _assert_bit_identical(_weights(tmp_path / "full"), _weights(run))


def test_no_readable_checkpoint_starts_again(tmp_path):
    cfg_path = write_tiny(tmp_path, steps=30, checkpoint_every=7)
    cfg = load_config(cfg_path)
    train_run(cfg, tmp_path / "full", progress=False)
    run = tmp_path / "run"
    train_run(cfg, run, progress=False)
    (run / "train.json").unlink()
    for path in list_checkpoints(run / "checkpoints"):
        path.write_bytes(b"")
    outcome = train_run(cfg, run, resume=True, progress=False)
    assert "no usable checkpoint is left; starting again from step 0" in " ".join(outcome.notes)
    _assert_bit_identical(_weights(tmp_path / "full"), _weights(run))


def test_finished_run_is_not_retrained_and_other_configs_are_refused(tmp_path, capsys):
    cfg_path = write_tiny(tmp_path, steps=6, checkpoint_every=3)
    run = tmp_path / "run"
    assert main(["train", str(cfg_path), "--out", str(run), "--quiet"]) == 0
    before = (run / "model.pt").stat().st_mtime_ns
    assert main(["train", str(cfg_path), "--out", str(run), "--quiet"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert (run / "model.pt").stat().st_mtime_ns == before
    code = main(["train", str(cfg_path), "--out", str(run), "--set", "train.steps=7", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "finished run of another config" in err and err.count("\n") == 1
    assert (run / "model.pt").stat().st_mtime_ns == before


def test_resume_refuses_a_run_of_another_config(tmp_path, capsys):
    cfg_path = write_tiny(tmp_path, steps=6, checkpoint_every=3)
    run = tmp_path / "run"
    train_run(load_config(cfg_path), run, progress=False)
    (run / "train.json").unlink()
    code = main(["train", str(cfg_path), "--out", str(run), "--resume", "--quiet",
                 "--set", "seed=4"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "was started with another config" in err
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "new"), "--resume"]) == 2
    assert "holds no run to resume" in capsys.readouterr().err


def test_unwritable_or_foreign_output_folders(tmp_path, capsys):
    cfg_path = write_tiny(tmp_path, steps=3)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["train", str(cfg_path), "--out", str(foreign), "--quiet"]) == 2
    assert "not a bbh run folder" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert main(["train", str(cfg_path), "--out", str(a_file), "--quiet"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert main(["train", str(cfg_path), "--out", str(ro / "run"), "--quiet"]) == 2
            assert "cannot write" in capsys.readouterr().err
        finally:
            ro.chmod(0o700)


def test_non_finite_loss_names_the_step_and_last_checkpoint(tmp_path, capsys, monkeypatch):
    from bbh.methods.map import MAP

    calls = {"n": 0}
    loss = MAP.loss

    def poisoned(self, *args, **kwargs):  # the loss goes NaN from the 17th step on
        calls["n"] += 1
        value, logs = loss(self, *args, **kwargs)
        return (value * float("nan"), logs) if calls["n"] >= 17 else (value, logs)

    monkeypatch.setattr(MAP, "loss", poisoned)
    cfg_path = write_tiny(
        tmp_path, method="map", options="{ prior_scale = 1.0 }", steps=40, checkpoint_every=10
    )
    run = tmp_path / "run"
    assert main(["train", str(cfg_path), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "non-finite loss (NaN or infinite) at step 17" in err
    assert f"last good checkpoint: {run / 'checkpoints' / 'step-00000010.pt'}" in err
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step-00000010.pt"]
    assert not (run / "model.pt").exists()
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["event"] == "non-finite"


def test_non_finite_loss_before_any_checkpoint(tmp_path, capsys):
    cfg_path = write_tiny(
        tmp_path, method="map", options="{ prior_scale = 1.0 }", steps=40, checkpoint_every=10
    )
    run = tmp_path / "run"
    code = main(["train", str(cfg_path), "--out", str(run), "--quiet", "--set", "train.lr=1e30"])
    err = capsys.readouterr().err
    assert code == 2 and "non-finite" in err and "at step" in err
    assert "last good checkpoint: none (no checkpoint was written yet)" in err


def test_validation_rows_and_log(tmp_path):
    cfg_path = write_tiny(tmp_path, steps=100, checkpoint_every=50)
    cfg = load_config(cfg_path, overrides=["data.validation_size=400"])
    run = tmp_path / "run"
    train_run(cfg, run, progress=False)
    rows = read_log(run / "log.jsonl")
    train_rows = [r for r in rows if r["event"] == "train"]
    assert {"loss", "nll", "kl", "kl_weight", "examples_per_s", "epoch"} <= set(train_rows[-1])
    val = [r for r in rows if r["event"] == "val"]
    assert [r["epoch"] for r in val] == [1, 2]  # 1,600 images / 40 = 40 steps per epoch
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["nll"] > 0 for r in val)
    assert rows[0]["event"] == "start" and rows[-1]["event"] == "done"
    meta = json.loads((run / "config.json").read_text())
    assert meta["num_train"] == 1600 and meta["steps_per_epoch"] == 40
    with pytest.raises(RunError, match="finished run of another config"):
        train_run(load_config(cfg_path, overrides=["seed=9"]), run, progress=False)


def test_a_full_disk_leaves_no_half_written_checkpoint(tmp_path, capsys, monkeypatch):
    import errno

    import bbh.training.checkpoint as checkpoint

    def full(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoint.torch, "save", full)
    cfg_path = write_tiny(tmp_path, steps=10, checkpoint_every=4)
    run = tmp_path / "run"
    assert main(["train", str(cfg_path), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert list((run / "checkpoints").iterdir()) == []  # no step file, no temporary file
    assert not (run / "model.pt").exists() and not (run / "train.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_device_starts_nothing(tmp_path, capsys):
    cfg_path = write_tiny(tmp_path, steps=3)
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    assert "no CUDA device is available" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_run_folder_in_use_by_another_process_is_left_alone(tmp_path, capsys):
    cfg_path = write_tiny(tmp_path, steps=3)
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time\n"
         f"fd = os.open({str(run / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        assert main(["train", str(cfg_path), "--out", str(run), "--quiet"]) == 2
        assert "in use by another bbh process" in capsys.readouterr().err
        assert sorted(p.name for p in run.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", str(cfg_path), "--out", str(run), "--quiet"]) == 0  # free again


def test_an_interrupted_temperature_search_reuses_the_candidates_it_scored(tmp_path, capsys):
    """Killed during the search (no checkpoint yet), ``--resume`` trains only the candidates
    the log does not hold, and ends with the weights of an uninterrupted run."""
    options = BBH_OPTIONS.replace("}", ', temperature = "validation" }')
    cfg_path = write_tiny(tmp_path, options=options, steps=8, checkpoint_every=100)
    text = cfg_path.read_text().replace(
        'ood = "embedded-notmnist"', 'ood = "embedded-notmnist"\nvalidation_size = 100'
    )
    cfg_path.write_text(text)
    whole = tmp_path / "whole"
    train_run(load_config(cfg_path), whole, progress=False)
    search = json.loads((whole / "train.json").read_text())["temperature"]
    assert len(search["candidates"]) >= 3
    # the folder as a kill after the first two candidates leaves it: config and log only
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "config.json").write_text((whole / "config.json").read_text())
    rows = read_log(whole / "log.jsonl")
    scored = [r for r in rows if r["event"] == "temperature_candidate"]
    assert {"val_samples", "val_examples"} <= scored[0].keys()
    (cut / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [rows[0], *scored[:2]]))
    code = main(["train", str(cfg_path), "--out", str(cut), "--resume", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "reusing the validation NLL of 2 temperature candidate(s)" in capsys.readouterr().err
    again = json.loads((cut / "train.json").read_text())["temperature"]
    assert again == search
    _assert_bit_identical(_weights(whole), _weights(cut))
    # the new log holds every candidate again, for a second interruption
    log = [r for r in read_log(cut / "log.jsonl") if r["event"] == "temperature_candidate"]
    assert [r["temperature"] for r in log] == search["candidates"]
