"""The toy regression (``toy_data.ipynb``) with every method: ``bbh toy --methods all``."""

from __future__ import annotations

import json

import pytest

from bbh.experiments.toy import PAPER_TOY_SETTINGS, TOY_SETTINGS, run_toy

PAPER_ORDER = ["map", "mnf", "bbb", "mc_dropout", "ensemble", "bbh"]


def test_all_means_the_six_methods_in_the_papers_panel_order() -> None:
    assert list(TOY_SETTINGS) == PAPER_ORDER
    assert list(PAPER_TOY_SETTINGS) == PAPER_ORDER


def test_toy_with_all_methods_writes_six_panels_and_metrics(tmp_path) -> None:
    result = run_toy(
        tmp_path, ["all"], setting="paper", reference="none", steps=3, num_predictive_samples=20
    )
    assert list(result["methods"]) == PAPER_ORDER
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for name in PAPER_ORDER:
        m = metrics["methods"][name]
        assert m["rmse_mean_vs_truth"] >= 0 and set(m["std_f_at"]) == {"-6", "0", "6"}
    assert metrics["methods"]["map"]["std_f_at"]["6"] == 0.0  # deterministic
    assert (tmp_path / "toy.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnf", "bbb", "mc_dropout", "ensemble"])
def test_baseline_uncertainty_grows_away_from_the_data(tmp_path, name: str) -> None:
    m = run_toy(tmp_path, [name], reference="none", figure=False)["methods"][name]
    centre = m["std_f_at"]["0"]
    assert max(m["std_f_at"]["-6"], m["std_f_at"]["6"]) >= 3 * centre
