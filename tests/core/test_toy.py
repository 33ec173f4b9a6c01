import json
import math

import pytest
import torch

from bbh.cli import main
from bbh.data.toy import toy_regression
from bbh.experiments.toy_reference import gp_reference, hmc_reference


def test_toy_data_is_seeded_and_matches_the_paper_setup():
    a, b = toy_regression(), toy_regression()
    assert torch.equal(a.x, b.x) and a.x.shape == (20, 1) and a.grid.shape == (500, 1)
    assert a.x.min() >= -4 and a.x.max() <= 4
    assert not torch.equal(a.x, toy_regression(seed=2).x)


def test_cli_toy_end_to_end(tmp_path):
    out = tmp_path / "toy"
    assert main(["toy", "--out", str(out), "--steps", "30"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    bbh = metrics["methods"]["bbh"]
    assert set(bbh["std_f_at"]) == {"-6", "0", "6"}
    assert len(bbh["grid"]["std_f"]) == 500
    assert 0.0 <= bbh["coverage_f_2std"] <= 1.0 and 0.0 <= bbh["coverage_y_2std"] <= 1.0
    assert "vs_reference" in bbh and metrics["reference"]["kind"] == "gp"
    png = (out / "toy.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_cli_toy_bad_method(tmp_path, capsys):
    assert main(["toy", "--out", str(tmp_path), "--methods", "laplace", "--no-figure"]) == 2
    assert "unknown toy method" in capsys.readouterr().err
    assert not (tmp_path / "metrics.json").exists()


def test_gp_reference_agrees_with_short_hmc():
    d = toy_regression()
    gp = gp_reference(d.x, d.y, d.grid[::50])
    hmc = hmc_reference(
        d.x, d.y, d.grid[::50], chains=8, warmup=150, samples=150, leapfrog_steps=15
    )
    assert 0.5 < hmc.info["acceptance"] < 0.95
    assert (hmc.mean - gp.mean).abs().max() < 0.35 * gp.std.max() + 3
    assert (gp.std[0] > gp.std[5]) and (hmc.std[0] > hmc.std[5])


@pytest.mark.slow
def test_toy_posterior_uncertainty_grows_away_from_data(tmp_path):
    assert main(["toy", "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())["methods"]["bbh"]
    assert m["std_f_at"]["6"] >= 2 * m["std_f_at"]["0"]
    assert m["std_f_at"]["-6"] >= 2 * m["std_f_at"]["0"]
    assert m["vs_reference"]["rmse_mean"] < 10


def test_toy_coverage_compares_like_with_like():
    from bbh.experiments.toy import toy_metrics

    data = toy_regression()
    truth = data.truth(data.grid[:, 0])
    # f's band misses x^3 by 3 std of f everywhere; the noise (std 9) must not rescue it
    off = toy_metrics(data, truth + 3.0, torch.ones_like(truth), None)
    assert off["coverage_f_2std"] == 0.0
    # the exact mean with no weight uncertainty: fresh noisy targets fall in +-2 noise std ~95%
    exact = toy_metrics(data, truth, torch.zeros_like(truth), None)
    assert exact["coverage_f_2std"] == 1.0
    assert 0.9 < exact["coverage_y_2std"] < 0.99
    # ... and score near the noise's own entropy (log 9 + 0.5 log 2 pi e), calibrated intervals
    assert exact["nll_y"] == pytest.approx(
        math.log(9.0) + 0.5 * math.log(2 * math.pi * math.e), abs=0.1
    )
    assert exact["calibration_error_y"] < 0.05
    assert off["calibration_error_y"] > exact["calibration_error_y"]
