"""The benchmark harness and the GPU script's CPU smoke run (benchmarks/ is run explicitly; these
tests check that it measures what it says, refuses a busy machine, and writes its records)."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import bbh

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import harness  # noqa: E402


def test_load_guard_refuses_a_busy_machine_unless_allowed(monkeypatch, capsys):
    monkeypatch.setattr(harness, "core_count", lambda: 2)
    monkeypatch.setattr(harness.os, "getloadavg", lambda: (5.0, 4.0, 3.0))
    with pytest.raises(SystemExit) as exc:
        harness.load_guard(allow_busy=False)
    assert exc.value.code == harness.BUSY_EXIT
    assert "load average is 5.00 on 2 cores" in capsys.readouterr().err
    assert harness.load_guard(allow_busy=True)["busy"] is True
    monkeypatch.setattr(harness.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert harness.load_guard(allow_busy=False)["busy"] is False


def test_interleaved_alternates_and_takes_per_round_ratios(monkeypatch):
    clock = [0.0]
    order: list[str] = []
    monkeypatch.setattr(harness.time, "perf_counter", lambda: clock[0])

    def costs(name: str, seconds: list[float]):
        it = iter(seconds)

        def run() -> None:
            order.append(name)
            clock[0] += next(it)

        return run

    # round 2 is slowed down 10x for both (load): the per-round ratio stays 3
    fns = {"map": costs("map", [1, 1, 10, 1]), "m": costs("m", [3, 3, 30, 3])}
    out = harness.interleaved(fns, repeats=3, warmup=1, device=torch.device("cpu"), baseline="map")
    assert order == ["map", "m", "m", "map"] * 2  # the order rotates each round
    assert out["map"]["median_s"] == 1 and out["m"]["median_s"] == 3
    assert out["m"]["ratio"] == pytest.approx(3.0)
    assert "ratio" not in out["map"]


def test_peak_step_memory_counts_the_state_and_the_step_allocations():
    model = torch.nn.Linear(1000, 1000)  # 4 MB of weight
    opt = torch.optim.Adam(model.parameters())
    x = torch.randn(500, 1000)

    def step() -> None:
        big = torch.ones(2_000_000)  # 8 MB live at once with the activations
        loss = model(x).sum() + big.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    mem = harness.peak_step_memory(step, model, opt, torch.device("cpu"))
    params = 4 * (1000 * 1000 + 1000)
    assert mem["resident_bytes"] == pytest.approx(3 * params, rel=0.01)  # weights + Adam m, v
    # the step holds the 8 MB tensor, the 2 MB activations and 4 MB of fresh gradients
    assert 8e6 + 2e6 < mem["step_bytes"] < 8e6 + 2e6 + 2 * params + 4e6
    assert mem["peak_bytes"] == mem["resident_bytes"] + mem["step_bytes"]


def test_write_record_marks_busy_and_replaces_non_finite(tmp_path):
    load = {"before": [9.0, 9.0, 9.0], "cores": 2, "busy": True}
    path, full = harness.write_record(
        tmp_path / "r.json", {"ratio": float("inf")}, device=torch.device("cpu"), load=load
    )
    data = json.loads(path.read_text())
    assert data["busy"] is True and data["ratio"] is None
    assert data["machine"]["threads"] == torch.get_num_threads()
    assert data["machine"]["cores"] >= 1 and data["machine"]["torch"] == torch.__version__
    assert full == data


def test_unknown_net_or_method_is_a_clear_error():
    import cases

    with pytest.raises(SystemExit, match="unknown net"):
        cases.select_nets(["vgg"], "tiny", torch.device("cpu"))
    with pytest.raises(SystemExit, match="matches no method"):
        cases.select_methods(["no such method"])


def test_the_registry_grid_covers_every_generator_and_estimator():
    import cases
    from bbh.divergences import KL_ESTIMATORS
    from bbh.hypernets import GENERATORS

    grid = {(c.options["generator"], str(c.options["kl"].value)) for c in cases.registry_grid()}
    every = {(g, str(getattr(k, "value", k))) for g in GENERATORS for k in KL_ESTIMATORS}
    assert cases.INCOMPATIBLE.issubset(every)  # names that exist: a renamed one would drop silently
    assert grid == every - cases.INCOMPATIBLE
    net = torch.nn.Linear(3, 2)
    for gen, kl in cases.INCOMPATIBLE:  # refused when built, with the reason
        with pytest.raises(ValueError, match="no semi-implicit noise"):
            bbh.build("bbh", net, generator=gen, kl=kl)
    # records are keyed by label: a grid case named like a configuration overwrote its rows
    labels = [c.label for c in [*cases.all_methods(), *cases.registry_grid()]]
    assert len(labels) == len(set(labels))


def test_a_case_for_one_net_is_skipped_on_the_others_with_the_reason(tmp_path):
    import step_time

    label = "bbh recommended, S=1, fc1 point estimate"
    out = tmp_path / "step.json"
    argv = ["--scale", "tiny", "--nets", "lenet", "cifar_resnet", "--methods", label]
    argv += ["--repeats", "1", "--warmup", "0", "--no-memory", "--no-plot", "--allow-busy"]
    assert step_time.main([*argv, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["nets"]
    assert rows["cifar_resnet"]["methods"][label] == {
        "skipped": "defined for lenet only (its options name their modules)"
    }
    lenet = rows["lenet"]["methods"][label]
    assert lenet["ratio_to_map"] > 0
    # fc1's 400,500 stay point estimates; the hypernet generates the other 30,580 weights
    assert lenet["trainable_parameters"] == 400_500 + lenet["hypernet_parameters"]
    assert lenet["hypernet_parameters"] < 431_080


def test_gpu_script_runs_every_benchmark_on_the_cpu_at_tiny_sizes(tmp_path):
    env = {
        **os.environ,
        "DEVICE": "cpu",
        "SCALE": "tiny",
        "ALLOW_BUSY": "1",
        "OUT": str(tmp_path),
        "PYTHON": sys.executable,
    }
    proc = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = ["step_time", "bbh_scaling", "predict", "external", "sampled_forward"]
    for name in [*names, "mnist_training"]:
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["machine"]["device"] == "cpu" and record["scale"] == "tiny"
    for name in ["step_time", "bbh_scaling", "predict"]:
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    step = json.loads((tmp_path / "step_time.json").read_text())
    assert set(step["nets"]["lenet"]["methods"]) == {"mc_dropout (p=0.5)", "bbh recommended"}
    lenet = step["nets"]["lenet"]["methods"]["bbh recommended"]
    assert lenet["ratio_to_map"] > 0 and lenet["map_step_s"] > 0
    assert lenet["memory_ratio_to_map"] > 1  # a hypernet holds more than the net
    assert lenet["hypernet_parameters"] > 0
    scaling = json.loads((tmp_path / "bbh_scaling.json").read_text())
    assert [r["S"] for r in scaling["by_S"]["bbh recommended"]] == [1]
    d_sweep = scaling["by_D"]["bbh recommended"]
    assert [r["net"] for r in d_sweep] == ["lenet", "cifar_resnet", "resnet18_w2", "resnet18_w4"]
    training = json.loads((tmp_path / "mnist_training.json").read_text())
    assert 0 <= training["runs"]["map"]["test_accuracy"] <= 1


def test_calibration_summary_pairs_seeds_and_bootstraps_the_test_images(tmp_path):
    sys.path.insert(0, str(BENCHMARKS / "posterior"))
    import calibration_summary

    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (400,), generator=gen)
    sharp = torch.full((400, 3), 0.05).scatter_(1, labels[:, None], 0.9)  # right, calibrated-ish
    blurred = (sharp + 1.0) / (sharp + 1.0).sum(1, keepdim=True)  # right, under-confident
    for seed in (0, 1):
        for label, probs in (("ref", sharp), ("same", sharp), ("worse", blurred)):
            torch.save({"test": probs}, tmp_path / f"{label}_seed{seed}_S1.pt")
    torch.save({"test": blurred}, tmp_path / "worse_seed0_S5.pt")  # the larger S is the one read
    runs = calibration_summary.load(tmp_path, "test")
    assert set(runs) == {"ref", "same", "worse"} and set(runs["worse"]) == {0, 1}
    table = calibration_summary.summarise(runs, labels, "ref", replicates=20, seed=0)
    same, worse = table["same"], table["worse"]
    assert same["ece"]["diff_mean"] == 0 and same["ece"]["diff_ci95_test_bootstrap"] == [0, 0]
    assert worse["seeds"] == [0, 1]
    assert worse["ece"]["diff_mean"] > 0.2 and worse["ece"]["diff_ci95_test_bootstrap"][0] > 0.1
    assert worse["nll"]["diff_mean"] > 0 and worse["ece"]["better_than_reference"] == 0
    assert worse["accuracy"]["diff_mean"] == 0
    # the blurred predictions are under-confident: a negative gap, larger than the reference's
    assert worse["confidence_gap"]["mean"] < -0.3 < same["confidence_gap"]["mean"] < 0
    assert worse["confidence_gap"]["better_than_reference"] == 0
    assert calibration_summary.parse_slice("5000:") == slice(5000, None)
    assert calibration_summary.parse_slice(":10") == slice(None, 10)
    with pytest.raises(argparse.ArgumentTypeError, match="START:STOP"):
        calibration_summary.parse_slice("5000")
    with pytest.raises(SystemExit, match="--reference 'nope'"):
        calibration_summary.summarise(runs, labels, "nope", replicates=2, seed=0)


def test_scaling_plot_draws_one_panel_per_sweep_in_the_record(tmp_path, monkeypatch):
    import plots

    drawn: list[str] = []
    monkeypatch.setattr(plots, "_scaling_d", lambda record, ax: drawn.append("D"))
    monkeypatch.setattr(plots, "_scaling_s", lambda record, ax: drawn.append("S"))
    machine = {"threads": 1, "cpu": "test cpu", "torch": "x"}
    row = {"S": 2, "ratio_to_map": 2.0}
    base = {"machine": machine, "busy": False, "net_for_S": "lenet", "samples_for_D": None}
    plots.scaling({**base, "by_S": {"a": [row]}, "by_D": {}}, tmp_path / "s.png")
    assert drawn == ["S"]  # an S-only record: no empty D panel
    drawn.clear()
    d_row = {"net": "lenet", "weights_D": 10, "ratio_to_map": 1.5}
    plots.scaling({**base, "by_S": {"a": [row]}, "by_D": {"a": [d_row]}}, tmp_path / "sd.png")
    assert drawn == ["D", "S"] and (tmp_path / "sd.png").stat().st_size > 0


def test_mnist_calibration_reports_each_tensors_learned_sigma():
    """``sigma_by_tensor``: a semi-implicit BbH's and Bayes by Backprop's sigma per tensor
    (median <= 90th percentile <= max), nothing for a method without one."""
    sys.path.insert(0, str(BENCHMARKS / "posterior"))
    import mnist_calibration

    net = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 3))
    model = bbh.build("bbh", net, hidden=(8,))
    with torch.no_grad():  # fc 0's sigmas spread from 0.01 to 1, the rest at 0.01
        scale = model.posterior.log_sigma_scale  # log sigma is stored divided by it
        model.posterior.log_sigma_param[:1200] = torch.linspace(math.log(0.01), 0.0, 1200) / scale
    report = mnist_calibration.sigma_by_tensor(model)["sigma_median_p90_max"]
    assert list(report) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    median, p90, top = report["0.weight"]
    assert median < p90 < top == pytest.approx(1.0, rel=1e-4)
    assert report["2.weight"] == [pytest.approx(0.01, rel=1e-3)] * 3
    bbb = bbh.build("bbb", net)
    assert list(mnist_calibration.sigma_by_tensor(bbb)["sigma_median_p90_max"]) == list(report)
    assert mnist_calibration.sigma_by_tensor(bbh.build("map", net)) == {}


@pytest.mark.skipif(
    importlib.util.find_spec("laplace") is None, reason="laplace-torch (the peers extra) absent"
)
def test_finetune_vs_laplace_scores_every_row_and_times_against_the_fit(tmp_path):
    import finetune_vs_laplace
    from bbh.experiments.config import load_config
    from bbh.experiments.train import train_run

    run = tmp_path / "map"
    cfg = load_config("demo/map", overrides=["train.epochs=1", "eval.num_samples=2"])
    train_run(cfg, run, resume=None, progress=False)
    out = tmp_path / "ft.json"
    argv = ["--runs", str(run), "--out", str(out), "--num-samples", "3"]
    assert finetune_vs_laplace.main(argv) == 0
    record = json.loads(out.read_text())
    row = record["rows"][0]
    assert set(row["scores"]) == set(finetune_vs_laplace.ROWS)
    assert row["num_samples"] == 3  # not the config's eval.num_samples (2)
    assert set(row["evaluate_seconds"]) == set(finetune_vs_laplace.ROWS)
    for scores in row["scores"].values():
        assert 0.0 <= scores["accuracy"] <= 1.0 and scores["nll"] > 0
    # one fit, two predictives: the draws' and the probit link's
    assert row["scores"]["laplace (probit)"]["nll"] != row["scores"]["laplace"]["nll"]
    timed = ("laplace", *finetune_vs_laplace.FINETUNED)
    assert set(row["seconds"]) == set(timed) and all(row["seconds"][r] > 0 for r in timed)
    for name in finetune_vs_laplace.FINETUNED:  # each ratio is its own time over the fit's
        ratio = row["seconds"][name] / row["seconds"]["laplace"]
        assert row["seconds_over_laplace_fit"][name] == pytest.approx(ratio)
    assert 0 < row["temperature"]["bbh"] <= 1.0


def test_finetune_vs_laplace_last_layer_row_keeps_the_trunk_at_its_trained_values():
    """``bbh (last layer)`` fine-tunes a copy whose only trainable parameters are the last
    ``nn.Linear``'s: BbH generates those and nothing else, and the caller's net is unchanged."""
    import finetune_vs_laplace
    from bbh.nets import LeNet5

    net = LeNet5()
    start = finetune_vs_laplace.last_layer_only(net)
    assert all(p.requires_grad for p in net.parameters())
    trainable = [n for n, p in start.named_parameters() if p.requires_grad]
    assert trainable == ["fc2.weight", "fc2.bias"]
    model = bbh.build("bbh", start, temperature=1.0)
    assert model.spec.names == ("fc2.weight", "fc2.bias")
    with pytest.raises(SystemExit, match=r"no nn\.Linear"):
        finetune_vs_laplace.last_layer_only(torch.nn.Conv2d(1, 2, 3))


@pytest.mark.skipif(
    importlib.util.find_spec("laplace") is None, reason="laplace-torch (the peers extra) absent"
)
def test_finetune_vs_laplace_takes_cifar_images_through_the_runs_transforms(tmp_path):
    """CIFAR-5 keeps its training images as uint8 that only the augmentation makes floats: the
    benchmark fits Laplace on the images as the net takes them and fine-tunes BbH through the
    run's augmentation (it stopped at ``x must be a floating tensor`` before)."""
    import finetune_vs_laplace
    from bbh.experiments.config import load_config
    from bbh.experiments.train import train_run

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
    from data_test_utils import image_folder_files, write_tar

    from bbh.data.datasets import CIFAR10_CLASSES

    files = {}
    for split, seed in (("train", 0), ("test", 1)):
        made, _ = image_folder_files(
            list(CIFAR10_CLASSES), 4, prefix=f"cifar10-jpeg/{split}/", fmt="JPEG", seed=seed
        )
        files.update(made)
    write_tar(tmp_path / "data" / "cifar10-jpeg" / "cifar10-jpeg.tar.gz", files)
    sets = [f"data.root={tmp_path / 'data'}", "data.validation_size=5", "train.steps=2",
            "train.batch_size=5", "eval.num_samples=2", "net.options.units_per_scale=1",
            "net.options.filters=[4, 4, 4, 4]"]  # fmt: skip
    cfg = load_config("cifar5/map", scale="cpu", overrides=sets)
    run = tmp_path / "map"
    train_run(cfg, run, resume=None, progress=False)
    out = tmp_path / "ft.json"
    assert finetune_vs_laplace.main(["--runs", str(run), "--out", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["steps"] == 3  # one epoch of the 15 images left after validation, batch 5
    for scores in row["scores"].values():
        assert 0.0 <= scores["accuracy"] <= 1.0 and math.isfinite(scores["nll"])


def test_sigma_continuation_drift_is_the_continued_median_over_the_final_one(tmp_path):
    """``sigma_continuation.summarize_run``: the mean median over the continuation's second
    half against the run's final median, per tensor, with the scores before and after."""
    sys.path.insert(0, str(BENCHMARKS / "posterior"))
    import sigma_continuation

    scores = dict.fromkeys(sigma_continuation.SCORES, 0.5)
    points = [  # the continuation: 0.02 in its first half, then 0.03 and 0.05 (mean 0.04)
        {"step": s, "sigma": {"w": [0.01, m, 0.1]}}
        for s, m in ((100, 0.02), (200, 0.02), (300, 0.03), (400, 0.05))
    ]
    run = {
        "method": "bbh", "multiple": 1, "seed": 0, "steps": 50, "options": {},
        "sigma_trajectory": [{"step": 50, "sigma": {"w": [0.005, 0.02, 0.05]}}],
        "sigma_final": {"w": [0.005, 0.02, 0.05]},
        "sigma_continued": {"steps": 400, "trajectory": points, "scores": scores | {"nll": 0.4}},
        **scores,
    }  # fmt: skip
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    row = sigma_continuation.summarize_run(path, sigma_continuation.load_run(path))
    assert row["tensors"]["w"] == {
        "final_median": 0.02, "continued_median_mean": 0.04, "drift": 2.0
    }  # fmt: skip
    assert row["before"]["nll"] == 0.5 and row["after"]["nll"] == 0.4
    del run["sigma_continued"]
    path.write_text(json.dumps(run))
    with pytest.raises(SystemExit, match="no sigma continuation"):
        sigma_continuation.load_run(path)


def test_training_length_reuses_an_earlier_records_candidates_only_when_they_match(tmp_path):
    sys.path.insert(0, str(BENCHMARKS / "posterior"))
    import training_length

    suite = argparse.Namespace(val=(torch.zeros(3, 2), torch.zeros(3)))
    search = {"candidates": [0.03, 0.1], "val_nll": [0.5, 0.7], "val_examples": 3}
    path = tmp_path / "demo_bbb_x1_s0.json"
    path.write_text(json.dumps({"options": {}, "temperature": search}))
    assert training_length.earlier_candidates(path, {}, suite) == {0.03: 0.5, 0.1: 0.7}
    assert training_length.earlier_candidates(path, {"temperature": 0.1}, suite) == {}
    assert training_length.earlier_candidates(tmp_path / "none.json", {}, suite) == {}
    suite.val = (torch.zeros(4, 2), torch.zeros(4))  # another validation split
    assert training_length.earlier_candidates(path, {}, suite) == {}


def test_the_carried_sigma_continuation_moves_sigma_alone_from_the_runs_adam_state():
    """``continue_sigma_carried``: from the run's own optimiser state, the means stay bit for bit
    and every sigma parameter moves."""
    sys.path.insert(0, str(BENCHMARKS / "posterior"))
    import training_length

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(120, 6, generator=gen)
    y = (x[:, 0] > 0).long()
    suite = training_length.Suite(
        lambda: nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2)), 1, (x, y),
        (x[:20], y[:20]), (x[:20], y[:20]), x[:20], None, 2,
    )  # fmt: skip
    torch.manual_seed(0)
    model = bbh.build("bbh", suite.make_net(), temperature=0.1)
    states: list = []

    class Keep(bbh.training.FitHooks):
        checkpoint_every = 6

        def on_checkpoint(self, state) -> None:
            states.append(copy.deepcopy(state.optimizer))

    bbh.training.fit(model, x, y, steps=6, batch_size=20, hooks=Keep())
    sigma = {n for n, _ in model.named_parameters() if n.endswith(training_length.SIGMA_PARAMETERS)}
    assert sigma
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = training_length.continue_sigma_carried(model, suite, 4, 1.0, 0, states[-1])
    assert len(out["trajectory"]) >= 1 and out["frozen"] > 0
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (name in sigma), name


def test_temperature_under_shift_trains_each_temperature_and_scores_rotations(tmp_path):
    import temperature_under_shift
    from bbh.experiments.config import load_config
    from bbh.experiments.train import train_run

    run = tmp_path / "map"
    cfg = load_config("demo/map", overrides=["train.epochs=1", "eval.num_samples=2"])
    train_run(cfg, run, resume=None, progress=False)
    out, runs = tmp_path / "shift.json", tmp_path / "runs"
    argv = ["--map-run", str(run), "--config", "demo/bbh", "--temperatures", "1", "0.01",
            "--set", "train.epochs=1", "--set", "train.kl_schedule.kind=constant",
            "--out-runs", str(runs), "--out", str(out)]  # fmt: skip
    assert temperature_under_shift.main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["temperature"] for r in rows] == [1.0, 0.01]
    for r in rows:
        assert r["status"] == "trained" and 0 <= r["shift_accuracy"] <= r["accuracy"] <= 1
        # the fixed temperature, no search
        assert float(bbh.load(r["run"]).temperature) == pytest.approx(r["temperature"])
    assert rows[0]["nll"] != rows[1]["nll"]
    # a second call reuses the finished runs
    assert temperature_under_shift.main([*argv[:-2], "--out", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())["rows"]
    assert [r["status"] for r in again] == ["already finished"] * 2
    assert [r["nll"] for r in again] == [r["nll"] for r in rows]
