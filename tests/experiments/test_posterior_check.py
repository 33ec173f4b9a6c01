"""The posterior check: references, metrics, runner and CLI (fast); whole cases (slow)."""

import json
import math

import pytest
import torch
from scipy.stats import wasserstein_distance

from bbh.cli import main
from bbh.experiments.posterior_check import CASES, METHOD_SPECS, MethodSpec
from bbh.experiments.posterior_check.cases import (
    linear_regression_case,
    logistic_regression_case,
    product_case,
    toy_case,
)
from bbh.experiments.posterior_check.metrics import (
    function_metrics,
    wasserstein1,
    weight_metrics,
)
from bbh.experiments.posterior_check.references import (
    gaussian_linear_reference,
    product_grid_reference,
    read_stored_reference,
)
from bbh.experiments.posterior_check.run import (
    FLOOR_LABEL,
    check_case,
    run_posterior_check,
    train_and_score,
)
from bbh.experiments.posterior_check.specs import select_specs
from bbh.methods import available


def test_wasserstein1_matches_scipy_for_unequal_sizes():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(37, 3, generator=gen, dtype=torch.float64)
    b = 2 + 0.5 * torch.randn(53, 3, generator=gen, dtype=torch.float64)
    ours = wasserstein1(a, b)
    for d in range(3):
        assert ours[d].item() == pytest.approx(wasserstein_distance(a[:, d], b[:, d]), rel=1e-9)


def test_exact_draws_score_right_and_a_wrong_q_scores_badly():
    case = linear_regression_case(5, num_data=30, num_test=40, num_draws=4000)
    ref = case.reference
    good_f = function_metrics(ref.floor_f_draws, ref.f_mean, ref.f_std)
    good_w = weight_metrics(ref.floor_weight_draws, ref.weight_draws, ref.weight_cov)
    assert 0.97 < good_f["std_ratio_median"] < 1.03 and 0.9 < good_f["std_ratio_worst"] < 1.1
    assert good_f["mean_rel_error"] < 0.01 and good_f["mean_error_in_std"] < 0.05
    assert good_w["w1_median"] < 0.05 and good_w["w1_worst"] < 0.08
    assert good_w["cov_rel_error"] < 0.08
    # over-dispersed by 2 and shifted by one posterior std per weight
    std = ref.weight_cov.diagonal().sqrt()
    bad = ref.weight_mean + 2 * (ref.floor_weight_draws - ref.weight_mean) + std
    bad_f = function_metrics(bad @ case.x_test.double().T, ref.f_mean, ref.f_std)
    bad_w = weight_metrics(bad, ref.weight_draws, ref.weight_cov)
    assert bad_f["std_ratio_median"] == pytest.approx(2.0, rel=0.03)
    assert bad_f["mean_error_in_std"] > 0.3
    assert bad_w["w1_median"] > 1.0 and bad_w["cov_rel_error"] > 2.5
    # a point estimate: zero spread is the worst possible ratio
    point = function_metrics(ref.f_mean[None].expand(3, -1), ref.f_mean, ref.f_std)
    assert point["std_ratio_median"] == 0.0 and point["std_ratio_worst"] == 0.0


def test_linear_reference_is_the_ridge_solution():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(50, 4, generator=gen).double(), torch.randn(50, generator=gen).double()
    ref = gaussian_linear_reference(x, y, x[:3], noise_std=0.5, prior_scale=2.0, num_draws=4000)
    a = x.T @ x / 0.25 + torch.eye(4, dtype=torch.float64) / 4
    torch.testing.assert_close(ref.weight_cov, torch.linalg.inv(a))
    torch.testing.assert_close(ref.weight_mean, torch.linalg.solve(a, x.T @ y / 0.25))
    torch.testing.assert_close(ref.weight_draws.mean(0), ref.weight_mean, atol=0.02, rtol=0)


def importance_moments(log_lik, num: int = 400_000, dim: int = 2, seed: int = 0):
    """Posterior mean and covariance by self-normalised importance sampling from N(0, I)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(num, dim, generator=gen, dtype=torch.float64)
    p = torch.softmax(log_lik(w), 0)
    mean = p @ w
    cov = ((w - mean) * p[:, None]).T @ (w - mean)
    return mean, cov, w, p


def test_product_grid_reference_agrees_with_importance_sampling():
    case = product_case(grid_points=11, num_draws=10)  # only its data
    x, y = case.x[:, 0].double(), case.y[:, 0].double()
    ref = product_grid_reference(case.x, case.y, case.x_test, noise_std=1.0, points=801)
    _, cov, w, p = importance_moments(
        lambda w: -0.5 * ((y - (w[:, :1] * w[:, 1:]) * x) ** 2).sum(-1)
    )
    torch.testing.assert_close(ref.weight_cov, cov, atol=0.03, rtol=0.03)
    assert ref.weight_mean.abs().max() < 0.03  # the two modes are symmetric
    prod = w[:, 0] * w[:, 1]
    prod_std = (p @ (prod - p @ prod) ** 2).sqrt()
    assert ref.f_std[-1].item() == pytest.approx(3 * prod_std.item(), rel=0.02)
    # draws fall on both branches of the hyperbola w1 w2 ~ theta
    assert 0.4 < (ref.weight_draws[:, 0] > 0).double().mean() < 0.6
    assert ((ref.weight_draws[:, 0] * ref.weight_draws[:, 1]) > 0).double().mean() > 0.99


def test_stored_logistic_2_reference_agrees_with_importance_sampling():
    stored = read_stored_reference("logistic-2")
    x, y = stored.tensor("x"), stored.tensor("y")
    mean, cov, _, _ = importance_moments(
        lambda w: (y * (w @ x.T) - torch.nn.functional.softplus(w @ x.T)).sum(-1)
    )
    torch.testing.assert_close(stored.tensor("weight_mean"), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(stored.tensor("weight_cov"), cov, atol=0.01, rtol=0.05)


@pytest.mark.parametrize("name", ["logistic-2", "logistic-50", "toy"])
def test_stored_references_record_converged_runs(name):
    stored = read_stored_reference(name)
    info = stored.info
    diag = info["f_grid"] if name == "toy" else info["weights"]
    assert diag["rhat_max"] < 1.01 and diag["ess_min"] > 1000, diag
    assert {"seed", "chains", "warmup_per_chain", "draws_per_chain", "sampler"} <= set(info)
    draws = stored.tensor("f_draws" if name == "toy" else "weight_draws")
    assert len(draws) == info["stored_draws"]
    moments = stored.tensor("f_mean" if name == "toy" else "weight_mean")
    scale = draws.std(0)
    assert ((draws.mean(0) - moments).abs() / scale).max() < 0.15  # thinned draws match


def test_toy_reference_agrees_with_the_package_hmc():
    info = read_stored_reference("toy").info["vs_package_hmc"]
    assert info["std_ratio_min"] > 0.9 and info["std_ratio_max"] < 1.1, info
    assert info["mean_abs_diff_max_over_std"] < 0.2, info


def test_every_case_builds_with_consistent_shapes():
    for name, make in CASES.items():
        case = make()
        ref = case.reference
        t = len(case.x_test)
        assert ref.f_mean.shape == ref.f_std.shape == (t,), name
        assert ref.f_draws.shape[1] == ref.floor_f_draws.shape[1] == t, name
        assert (ref.f_std > 0).all(), name
        out = case.make_net()(case.x_test[:3])
        assert case.f_from_outputs(out[None]).shape == (1, 3), name
        if ref.weight_draws is not None:
            dim = sum(p.numel() for p in case.make_net().parameters())
            assert ref.weight_draws.shape[1] == dim == ref.weight_cov.shape[0], name
        else:
            assert case.weights_note, name


def test_specs_cover_every_registered_method_and_select_by_label_or_name():
    assert {s.method for s in METHOD_SPECS} == set(available())
    labels = [s.label for s in METHOD_SPECS]
    assert len(labels) == len(set(labels))
    assert [s.label for s in select_specs(["map", "bbh-chunked-entropy"])] == [
        "map",
        "bbh-chunked-entropy",
    ]
    assert len(select_specs(["bbh"])) == sum(s.method == "bbh" for s in METHOD_SPECS)
    with pytest.raises(ValueError, match="unknown method"):
        select_specs(["laplace"])


@pytest.mark.parametrize("case_name", ["linear", "product"])
def test_every_spec_trains_and_scores_on_a_tiny_case(case_name):
    if case_name == "linear":
        case = linear_regression_case(3, num_data=20, num_test=10, num_draws=200)
    else:
        case = product_case(num_data=10, grid_points=201, num_draws=200)
    for spec in METHOD_SPECS:
        if spec.cases is not None:  # those for other cases: below
            continue
        tiny = MethodSpec(spec.label, spec.method, spec.options, spec.lr, 3, spec.kl_anneal, 4)
        row, f, _ = train_and_score(case, tiny)
        assert f is not None and f.shape[1] == len(case.x_test), spec.label
        assert math.isfinite(row["std_ratio_median"]) and math.isfinite(row["mean_rel_error"])
        if hasattr_weights := spec.method in ("bbb", "mnf", "bbh"):
            assert math.isfinite(row["cov_rel_error"]), spec.label
        assert (row["w1_median"] == "n/a") is not hasattr_weights, spec.label


def test_bbh_with_the_exact_output_layer_recovers_the_toy_posterior():
    """The hypernet on the hidden layer, the output layer integrated exactly: the predictive std
    within 20% of NUTS's everywhere (the generated output layer: 2.6x at the median), through
    ``check_case``, which runs the spec on the toy only."""
    (spec,) = select_specs(["bbh-exact-last-layer"])
    assert spec.cases == ("toy",)
    short = MethodSpec(
        spec.label,
        spec.method,
        {**spec.options, "num_samples": 16},
        spec.lr,
        360,
        None,
        1000,
        spec.cases,
    )
    assert list(
        check_case(linear_regression_case(3, num_data=20, num_draws=20), [short])["rows"]
    ) == [FLOOR_LABEL]
    row = check_case(toy_case(), [short])["rows"][spec.label]
    assert 0.85 < row["std_ratio_median"] < 1.15, row
    assert 0.8 < row["std_ratio_worst"] < 1.2 and row["mean_rel_error"] < 0.03, row


def test_stored_cases_train_and_score():
    spec = MethodSpec("bbb", "bbb", {"init_log_var": -6.0}, 1e-2, 3, None, 4)
    for case in (logistic_regression_case(2), toy_case()):
        entry = check_case(case, [spec])
        assert set(entry["rows"]) == {FLOOR_LABEL, "bbb"}
        if case.name == "toy":
            assert entry["rows"]["bbb"]["w1_median"] == "n/a"
        else:
            assert isinstance(entry["rows"]["bbb"]["w1_median"], float)


def test_run_writes_tables_json_and_figure(tmp_path, monkeypatch):
    monkeypatch.setitem(CASES, "product", lambda: product_case(grid_points=401, num_draws=2000))
    spec = MethodSpec("bbb", "bbb", {"init_log_var": -6.0}, 1e-2, 20, None, 50)
    results = run_posterior_check(
        tmp_path, ["product"], None, specs=[MethodSpec("map", "map", steps=20), spec]
    )
    data = json.loads((tmp_path / "results.json").read_text())
    rows = data["cases"]["product"]["rows"]
    assert list(rows) == [FLOOR_LABEL, "map", "bbb"]
    assert rows["map"]["w1_median"] == "n/a" and rows["map"]["std_ratio_median"] == 0.0
    assert 0.9 < rows[FLOOR_LABEL]["std_ratio_median"] < 1.1
    assert data["cases"]["product"]["reference"]["kind"].startswith("exact on a")
    md = (tmp_path / "results.md").read_text()
    assert "| map |" in md and "| n/a |" in md
    png = (tmp_path / "product.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert results["cases"]["product"]["rows"]["bbb"]["steps"] == 20


def test_cli_quick_run_and_bad_names(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["check-posterior", "--out", str(out), "--cases", "linear-20",
                 "--methods", "map,bbb", "--quick", "--no-figure"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "## linear-20" in printed and "Quick run" in printed
    rows = json.loads((out / "results.json").read_text())["cases"]["linear-20"]["rows"]
    (bbb,) = select_specs(["bbb"])
    assert rows["bbb"]["steps"] == bbb.steps // 20 and not (out / "linear-20.png").exists()
    bad = tmp_path / "bad"
    assert main(["check-posterior", "--out", str(bad), "--cases", "linear-7"]) == 2
    assert "unknown case" in capsys.readouterr().err and not bad.exists()
    assert main(["check-posterior", "--out", str(bad), "--methods", "laplace"]) == 2
    assert "unknown method" in capsys.readouterr().err and not bad.exists()


@pytest.mark.slow
def test_bbb_recovers_the_nearly_diagonal_linear_posterior():
    """x ~ N(0, I) makes X^T X nearly diagonal: mean-field BbB should be close to exact."""
    case = CASES["linear-20"]()
    (spec,) = select_specs(["bbb"])
    row, _, _ = train_and_score(case, spec)
    assert 0.85 < row["std_ratio_median"] < 1.15, row
    assert row["mean_rel_error"] < 0.02 and row["w1_median"] < 0.2, row


@pytest.mark.slow
def test_toy_reference_agrees_with_a_fresh_package_hmc_run():
    from bbh.experiments.toy_reference import hmc_reference

    case = toy_case()
    hmc = hmc_reference(case.x, case.y, case.x_test, warmup=800, samples=800)
    ratio = hmc.std.double() / case.reference.f_std
    assert ratio.min() > 0.85 and ratio.max() < 1.15, ratio
    assert ((hmc.mean.double() - case.reference.f_mean).abs() / case.reference.f_std).max() < 0.3


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_every_method_runs_on_the_full_case(name, tmp_path):
    """The suite as ``bbh check-posterior --cases NAME`` runs it (2-10 minutes per case)."""
    results = run_posterior_check(tmp_path, [name])
    rows = results["cases"][name]["rows"]
    applies = [s.label for s in METHOD_SPECS if s.cases is None or name in s.cases]
    assert list(rows) == [FLOOR_LABEL, *applies]
    assert 0.9 < rows[FLOOR_LABEL]["std_ratio_median"] < 1.1
    for label, row in rows.items():
        assert "failed" in row or math.isfinite(row["std_ratio_median"]), label
    assert (tmp_path / f"{name}.png").exists()


def test_weight_draws_come_in_batches(monkeypatch):
    """10^4 draws at once from the chunked generator would hold GBs of activations."""
    from bbh.experiments.posterior_check import run

    monkeypatch.setattr(run, "WEIGHT_BATCH", 3)
    case = linear_regression_case(4, num_data=10, num_test=5, num_draws=7)
    calls = []
    method = run.build("bbh", case.make_net(), generator="chunked", **case.options_for("bbh"))
    sample = method.sample_weights
    monkeypatch.setattr(method, "sample_weights", lambda n: calls.append(n) or sample(n))
    w = run._method_weights(case, method, quick=False)
    assert w.shape == (7, 4) and calls == [3, 3, 1]


def test_family_optimum_is_exact_at_full_rank_and_mean_field_at_rank_zero():
    from bbh.experiments.posterior_check.family import best_factor_gaussian, predictive_std_ratio

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 6, generator=gen, dtype=torch.float64)
    precision = x.T @ x + torch.eye(6, dtype=torch.float64)
    cov = torch.linalg.inv(precision)
    full = best_factor_gaussian(cov, 6, steps=3000)
    assert full.kl < 1e-3
    torch.testing.assert_close(full.cov, cov, atol=1e-3, rtol=1e-2)
    assert abs(predictive_std_ratio(full.cov, cov, x)[0] - 1) < 1e-2
    # the mean-field optimum of a Gaussian target has variances 1 / diag(precision)
    mean_field = best_factor_gaussian(cov, 0, steps=3000)
    torch.testing.assert_close(
        mean_field.cov.diagonal(), 1 / precision.diagonal(), rtol=1e-3, atol=0
    )
