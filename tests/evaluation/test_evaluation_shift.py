"""evaluate_shift on a tiny MLP, and the figures of metrics against shift intensity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import bbh
from bbh.data import corruption_shifts, rotation_shifts
from bbh.evaluation import SHIFT_METRICS, evaluate_shift, predict_batched, to_jsonable
from bbh.evaluation.figures import rejection_plot, shift_plot
from bbh.metrics import accuracy, accuracy_rejection_curve, nll
from bbh.nets import MLP


def _method(seed: int = 0, name: str = "mc_dropout") -> torch.nn.Module:
    torch.manual_seed(seed)
    return bbh.build(name, MLP(3 * 8 * 8, [16], 3))


def _data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_evaluate_shift_returns_the_documented_keys() -> None:
    x, y = _data()
    shifts = rotation_shifts([0, 90, 180]) + corruption_shifts(["contrast", "fog"], [1, 5])
    out = evaluate_shift(_method(), x, y, shifts, num_samples=3, rejection_points=11)
    keys = {"meta", "shifts", "mean", "by_kind", "by_intensity", "rejection", "timing_s"}
    assert set(out) == keys
    assert out["meta"]["num_shifts"] == 7 and out["meta"]["num_test"] == 40
    assert out["meta"]["kinds"] == ["rotation", "contrast", "fog"]
    assert [r["name"] for r in out["shifts"]] == [s.name for s in shifts]
    for row in out["shifts"]:
        assert set(row) == {"kind", "intensity", "name", *SHIFT_METRICS}
        assert 0.0 <= row["accuracy"] <= 1.0 and row["nll"] > 0 and 0 <= row["ece"] <= 1
    for m in SHIFT_METRICS:
        assert out["mean"][m] == pytest.approx(sum(r[m] for r in out["shifts"]) / 7)
    assert out["by_kind"]["fog"]["intensity"] == [1.0, 5.0]
    assert out["by_intensity"]["intensity"] == [0.0, 1.0, 5.0, 90.0, 180.0]
    at_1 = [r["ece"] for r in out["shifts"] if r["intensity"] == 1.0]
    assert out["by_intensity"]["ece"][1] == pytest.approx(sum(at_1) / 2)
    assert out["by_intensity"]["ece_min"][1] == min(at_1)
    assert len(out["rejection"]["fractions"]) == 11
    assert set(out["rejection"]["accuracy"]) == {s.name for s in shifts}
    json.dumps(to_jsonable(out))  # JSON-ready


def test_an_unshifted_set_scores_as_the_clean_predictions() -> None:
    x, y = _data()
    method = _method(name="map")
    out = evaluate_shift(method, x, y, rotation_shifts([0]), num_samples=1)
    probs = predict_batched(method, x, num_samples=1).probs
    row = out["shifts"][0]
    assert row["accuracy"] == pytest.approx(accuracy(probs, y))
    assert row["nll"] == pytest.approx(nll(probs, y), rel=1e-5)
    area = accuracy_rejection_curve(probs, y).area
    assert row["rejection_area"] == pytest.approx(area)


def test_a_deterministic_method_degrades_with_severity_on_flat_inputs() -> None:
    # a model that keys on the mean intensity: contrast keeps the mean, noise keeps it too, so
    # use a rotation of a half-bright image, which moves the bright half to the other side
    x = torch.zeros(20, 1, 8, 8)
    x[..., :4] = 1.0
    y = torch.zeros(20, dtype=torch.long)

    class LeftBright(torch.nn.Module):
        stochastic = False

        def predict_logits(self, inp: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
            left = inp[..., :4].mean(dim=(1, 2, 3))
            right = inp[..., 4:].mean(dim=(1, 2, 3))
            return torch.stack([left - right, right - left], dim=-1)[None] * 10

    out = evaluate_shift(LeftBright(), x, y, rotation_shifts([0, 180]), num_samples=1)
    assert [r["accuracy"] for r in out["shifts"]] == [1.0, 0.0]


def test_bad_shift_lists_are_clear_errors() -> None:
    x, y = _data(8)
    with pytest.raises(ValueError, match="empty"):
        evaluate_shift(_method(), x, y, [], num_samples=1)
    with pytest.raises(ValueError, match="distinct"):
        evaluate_shift(_method(), x, y, rotation_shifts([0, 0]), num_samples=1)
    with pytest.raises(ValueError, match="test_y"):
        evaluate_shift(_method(), x, y[:4], rotation_shifts([0]), num_samples=1)


def test_shift_and_rejection_figures_are_written(tmp_path: Path) -> None:
    x, y = _data()
    results = {
        f"method {i}": evaluate_shift(
            _method(i), x, y, corruption_shifts(["contrast", "gaussian_noise"]), num_samples=2
        )
        for i in range(2)
    }
    png = shift_plot(results, tmp_path / "shift.png")
    assert png.is_file() and png.stat().st_size > 1000
    curves = {
        name: {
            "fractions": r["rejection"]["fractions"],
            "accuracy": r["rejection"]["accuracy"]["contrast_3"],
            "area": r["shifts"][2]["rejection_area"],
        }
        for name, r in results.items()
    }
    png = rejection_plot(curves, tmp_path / "rejection.png")
    assert png.is_file() and png.stat().st_size > 1000
    with pytest.raises(ValueError, match="empty"):
        shift_plot({}, tmp_path / "none.png")
