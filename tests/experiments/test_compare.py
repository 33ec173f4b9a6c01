"""``bbh compare``: the files and keys it writes, the reuse of finished records, one-line errors."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

import bbh
from bbh.cli import main
from bbh.data.embedded import load_embedded_mnist
from bbh.experiments.compare import ROWS, parse_rows, training_order
from bbh.experiments.config import ConfigError

TINY = ["--set", "train.steps=4", "--set", "eval.num_samples=2", "--quick", "--threads", "1"]


def test_compare_demo_writes_tables_records_and_report_then_reuses(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["compare", "demo", "--seeds", "0", "1", "--rows", "bbh", "laplace",
            "--out", str(out), "--quiet", *TINY]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "under shift (means)" in printed.out
    for name in ("compare.json", "compare.md", "report.html", "figures/shift.png",
                 "figures/rejection.png"):  # fmt: skip
        assert (out / name).is_file(), name
    record = json.loads((out / "compare.json").read_text())
    assert set(record) >= {"settings", "command", "rows", "seeds", "means", "records", "skipped"}
    assert record["seeds"] == [0, 1]
    assert record["settings"]["machine"]["torch"]
    assert "commit" in record["settings"]
    # map is always in (every ratio's reference); laplace runs, or skips without the extra
    ran = set(record["rows"])
    assert {"map", "bbh"} <= ran
    if "laplace" not in ran:
        assert any(s["row"] == "laplace" and "peers" in s["reason"] for s in record["skipped"])
    for row in ran:
        assert set(record["records"][row]) == {"0", "1"}
        rec = record["records"][row]["0"]
        for key in ("accuracy", "nll", "brier", "ece", "auroc", "cdf_area_in", "cdf_area_out",
                    "rejection_area", "shift_accuracy", "shift_nll", "shift_ece",
                    "confidence_minus_accuracy",
                    "train_ratio", "predict_ratio"):  # fmt: skip
            assert key in rec["metrics"], key
        assert rec["metrics"]["fgsm_accuracy"] is None  # --quick: no attacks
        assert 0.0 <= rec["metrics"]["accuracy"] <= 1.0
        means = record["means"][row]["nll"]
        assert means["n"] == 2 and means["std"] is not None
    assert record["records"]["map"]["0"]["metrics"]["train_ratio"] == pytest.approx(1.0)
    # MAP's confidence minus accuracy, recomputed from its saved run on the test images
    test = load_embedded_mnist().test
    with torch.no_grad():
        probs = bbh.load(out / "runs" / "map-seed0").predict_logits(test.images, 1)[0].softmax(-1)
    gap = float(probs.max(-1).values.mean() - (probs.argmax(-1) == test.labels).float().mean())
    assert record["records"]["map"]["0"]["metrics"]["confidence_minus_accuracy"] == pytest.approx(
        gap, abs=1e-5
    )
    md = (out / "compare.md").read_text()
    assert "BbH (recommended)" in md and "Under dataset shift" in md and "±" in md
    assert "conf - acc" in md and "± +" not in md  # a spread has no sign
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert (out / "records" / "bbh" / "seed1.json").is_file()

    # a rerun scores nothing again
    stamp = (out / "records" / "bbh" / "seed0.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert "already done" in capsys.readouterr().err
    assert (out / "records" / "bbh" / "seed0.json").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["compare", "demo", "--rows", "map", "nope"], "unknown row(s) ['nope']; allowed:"),
        (["compare", "imagenet"], "invalid choice: 'imagenet' (choose from 'mnist', 'cifar5'"),
    ],
)
def test_bad_rows_and_experiment_are_one_line(argv, message, capsys, tmp_path):
    parse_error = argv[1] == "imagenet"  # argparse's own check exits with status 2
    with pytest.raises(SystemExit) if parse_error else contextlib.nullcontext() as exit_:
        assert main([*argv, "--out", str(tmp_path)]) == 2
    if parse_error:
        assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_parse_rows():
    assert parse_rows("demo", None) == list(ROWS)
    assert "laplace_all" not in parse_rows("cifar5", None)
    assert parse_rows("mnist", ["bbh", "ivon"]) == ["map", "bbh", "ivon"]
    # tables in the registry's order, training in the caller's (map first, each row once)
    assert parse_rows("mnist", ["ivon", "bbh"]) == ["map", "bbh", "ivon"]
    assert training_order("mnist", ["ivon", "bbh", "ivon", "map"]) == ["map", "ivon", "bbh"]
    assert training_order("demo", None) == parse_rows("demo", None)
    with pytest.raises(ConfigError, match="allowed: \\['mnist', 'cifar5', 'demo'\\]"):
        parse_rows("toy", None)


def test_compare_trains_rows_in_the_order_given(tmp_path, monkeypatch):
    """``--rows ivon mc_dropout``: MAP, then IVON, then MC dropout (a run cut short keeps the
    rows asked for first), whatever the table's order."""
    from bbh.experiments import compare as compare_module

    order: list[str] = []

    def train(self, row):
        order.append(row)
        raise compare_module._Skip("not trained in this test")

    monkeypatch.setattr(compare_module._SeedJob, "train", train)
    compare_module.compare(
        "demo",
        out=tmp_path / "out",
        rows=["ivon", "mc_dropout"],
        seeds=[0],
        quick=True,
        overrides=["train.steps=1"],
        log=lambda text: None,
    )
    assert order == ["map", "ivon", "mc_dropout"]
