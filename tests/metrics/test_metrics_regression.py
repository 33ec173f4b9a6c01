"""Regression metrics against hand-computed and analytic values."""

from __future__ import annotations

import math

import pytest
import torch

from bbh.metrics import (
    CALIBRATION_LEVELS,
    gaussian_nll,
    interval_calibration_error,
    interval_coverage,
    regression_metrics,
    rmse,
)


def gaussian_draws(n: int = 200_000, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_rmse_by_hand() -> None:
    assert rmse(torch.zeros(2), torch.tensor([3.0, 4.0])) == pytest.approx(math.sqrt(12.5))
    # [B] targets for a [B, 1] mean; every entry of [B, C] counts once
    assert rmse(torch.tensor([[1.0], [2.0]]), torch.tensor([1.0, 4.0])) == pytest.approx(
        math.sqrt(2.0)
    )
    assert rmse(torch.zeros(1, 2), torch.tensor([[1.0, 3.0]])) == pytest.approx(math.sqrt(5.0))


def test_gaussian_nll_by_hand() -> None:
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    assert gaussian_nll(torch.zeros(1), 1.0, torch.zeros(1)) == pytest.approx(half_log_2pi)
    # std 2, error 2: z = 1
    got = gaussian_nll(torch.zeros(1), torch.tensor([2.0]), torch.tensor([2.0]))
    assert got == pytest.approx(math.log(2.0) + half_log_2pi + 0.5)
    # two outputs per example are summed, examples averaged: (2 * c) and (2 * c + 0.5 + 2)
    mean, std, y = torch.zeros(2, 2), torch.ones(2, 2), torch.tensor([[0.0, 0.0], [1.0, 2.0]])
    assert gaussian_nll(mean, std, y) == pytest.approx(2 * half_log_2pi + 1.25)


def test_coverage_and_calibration_of_perfect_gaussian_predictions() -> None:
    y = gaussian_draws()
    mean, std = torch.zeros_like(y), torch.ones_like(y)
    assert interval_coverage(mean, std, y, 1.0) == pytest.approx(0.6827, abs=0.004)
    assert interval_coverage(mean, std, y, 2.0) == pytest.approx(0.9545, abs=0.002)
    assert interval_calibration_error(mean, std, y) < 0.004
    # the NLL of the true predictive is the entropy of N(0, 1)
    assert gaussian_nll(mean, std, y) == pytest.approx(
        0.5 * math.log(2 * math.pi * math.e), abs=0.01
    )


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_calibration_error_of_a_wrong_std_matches_the_analytic_value(scale: float) -> None:
    """With std = scale * the true std the p-interval holds erf(scale * erfinv(p)) of targets."""
    y = gaussian_draws(seed=1)
    mean, std = torch.zeros_like(y), torch.full_like(y, scale)
    p = torch.tensor(CALIBRATION_LEVELS, dtype=torch.float64)
    expected = float((torch.erf(scale * torch.erfinv(p)) - p).abs().mean())
    assert expected > 0.1  # far from calibrated, in either direction
    assert interval_calibration_error(mean, std, y) == pytest.approx(expected, abs=0.005)
    assert interval_coverage(mean, std, y, 1.0) == pytest.approx(
        math.erf(scale / math.sqrt(2)), abs=0.004
    )


def test_coverage_counts_interval_ends_and_zero_std() -> None:
    mean, y = torch.zeros(4), torch.tensor([0.0, 1.0, 2.0, -3.0])
    assert interval_coverage(mean, torch.ones(4), y, 2.0) == 0.75
    assert interval_coverage(mean, 0.0, y, 1.0) == 0.25  # a point prediction covers exact hits


def test_regression_metrics_collects_every_metric() -> None:
    y = gaussian_draws(2_000)
    got = regression_metrics(torch.zeros_like(y), 1.0, y)
    assert set(got) == {"rmse", "nll", "coverage_1std", "coverage_2std", "calibration_error"}
    assert got["coverage_2std"] == interval_coverage(torch.zeros_like(y), 1.0, y, 2.0)
    assert all(isinstance(v, float) for v in got.values())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rmse(torch.zeros(2, 1, 1), torch.zeros(2)), r"mean must have shape \[B\]"),
        (lambda: rmse(torch.zeros(3), torch.zeros(2)), r"targets must have the shape of mean"),
        (lambda: rmse(torch.zeros(3, 1), torch.zeros(2)), "targets has 2 entries but mean has 3"),
        (lambda: rmse(torch.zeros(2, 2), torch.zeros(2)), r"shape of mean \(2, 2\), got \(2,\)"),
        (lambda: rmse(torch.tensor([0.0, math.nan]), torch.zeros(2)), "mean contains 1 NaN"),
        (lambda: rmse(torch.zeros(2), torch.tensor([0.0, math.inf])), "targets contains 1 NaN"),
        (lambda: gaussian_nll(torch.zeros(2), torch.zeros(2), torch.zeros(2)), "std must be > 0"),
        (lambda: interval_coverage(torch.zeros(2), -1.0, torch.zeros(2)), "std must be >= 0"),
        (lambda: interval_coverage(torch.zeros(2), torch.ones(3), torch.zeros(2)), "std must be"),
        (lambda: interval_coverage(torch.zeros(2), 1.0, torch.zeros(2), 0), "num_std must be"),
        (
            lambda: interval_calibration_error(torch.zeros(2), 1.0, torch.zeros(2), [0.5, 1.0]),
            r"levels must be .* in \(0, 1\)",
        ),
    ],
)
def test_bad_inputs_name_the_argument(call, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        call()
