"""The KL's temperature: part of the loss, and chosen on validation data by ``fit``."""

from __future__ import annotations

import math

import pytest
import torch

import bbh
from bbh.methods.temperature import TEMPERATURE_CANDIDATES
from bbh.nets import MLP
from bbh.training import FitHooks, TrainingWarning, fit
from bbh.training.temperature import choose_temperature, parabola_vertex


def _data(n: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=gen)
    return x, (x[:, 0] + 0.5 * torch.randn(n, generator=gen) > 0).long()


def test_the_temperature_scales_the_kl_term_and_is_saved() -> None:
    torch.manual_seed(0)
    x, y = _data(8)
    hot = bbh.build("bbb", MLP(6, [5], 2), temperature=1.0)
    cold = bbh.build("bbb", MLP(6, [5], 2), temperature=0.1)
    cold.load_state_dict(hot.state_dict() | {"temperature": torch.tensor(0.1)})
    torch.manual_seed(1)
    _, h = hot.loss(x, y, num_data=50)
    torch.manual_seed(1)
    _, c = cold.loss(x, y, num_data=50)
    torch.testing.assert_close(h["kl"], c["kl"])
    torch.testing.assert_close(c["loss"] - c["nll"], 0.1 * (h["loss"] - h["nll"]))
    # a file from before the temperature existed loads, keeping the model's own
    old = {k: v for k, v in cold.state_dict().items() if k != "temperature"}
    hot.load_state_dict(old)
    assert float(hot.temperature) == 1.0
    with pytest.raises(ValueError, match="positive number or 'validation'"):
        bbh.build("bbh", MLP(6, [5], 2), temperature=0.0)


def test_the_walk_goes_on_in_the_better_direction_and_stops_at_the_best() -> None:
    model = bbh.build("bbb", MLP(6, [5], 2))
    valley = {1.0: 5.0, 0.3: 4.0, 0.1: 3.0, 0.03: 2.5, 0.01: 2.0, 0.003: 2.2, 0.001: 3.0}
    resets: list[int] = []
    search = choose_temperature(
        model, 0.03, train=lambda: None, score=lambda: valley[round(float(model.temperature), 6)],
        reset=lambda: resets.append(1), steps_each=1, val_examples=1, val_samples=1,
        refine=False,
    )  # fmt: skip
    assert search.chosen == 0.01 and float(model.temperature) == pytest.approx(0.01)
    assert search.grid_best == 0.01
    # warmer is worse: it turns colder, and stops after two candidates in a row fail to beat 0.01
    assert search.candidates == (0.03, 0.1, 0.01, 0.003, 0.001)
    assert search.val_nll == (2.5, 3.0, 2.0, 2.2, 3.0)
    assert len(resets) == 6  # before each candidate and at the end
    # refined: the vertex of the parabola through (0.03, 2.5), (0.01, 2.0), (0.003, 2.2) in
    # log T, between the best and its better neighbour, at no extra candidate run
    scored: list[float] = []

    def score() -> float:
        scored.append(float(model.temperature))
        return valley[round(scored[-1], 6)]

    refined = choose_temperature(
        model, 0.03, train=lambda: None, score=score, reset=lambda: None, steps_each=1,
        val_examples=1, val_samples=1,
    )  # fmt: skip
    assert refined.candidates == search.candidates and len(scored) == 5
    assert refined.grid_best == 0.01 and 0.003 < refined.chosen < 0.01
    assert float(model.temperature) == pytest.approx(refined.chosen)
    assert "parabola's vertex" in refined.summary()


def test_patience_carries_the_walk_over_one_noisy_rise() -> None:
    """CIFAR-5's seed 0: 0.01 beat 0.03, 0.003 scored 0.008 worse than 0.01, and the NLL fell on
    below it. Patience 1 (the walk of runs trained before the option) stops at the rise;
    the default, 2, walks on to the deeper minimum and stops two rises after it."""
    noisy = {0.1: 1.22, 0.03: 1.15, 0.01: 1.011, 0.003: 1.019, 0.001: 0.95, 3e-4: 0.93,
             1e-4: 0.96, 3e-5: 0.97, 1e-5: 0.99}  # fmt: skip

    def walk(**patience: int) -> object:
        model = bbh.build("bbb", MLP(6, [5], 2))
        return choose_temperature(
            model, 0.03, train=lambda: None,
            score=lambda: noisy[round(float(model.temperature), 8)], reset=lambda: None,
            steps_each=1, val_examples=1, val_samples=1, refine=False, **patience,
        )  # fmt: skip

    first_rise = walk(patience=1)
    assert first_rise.grid_best == 0.01 and first_rise.candidates == (0.03, 0.1, 0.01, 0.003)  # type: ignore[attr-defined]
    deeper = walk()
    assert deeper.grid_best == 3e-4  # type: ignore[attr-defined]
    assert deeper.candidates == (0.03, 0.1, 0.01, 0.003, 0.001, 3e-4, 1e-4, 3e-5)  # type: ignore[attr-defined]
    # at the grid's end the walk stops whatever the patience
    assert walk(patience=5).candidates[-1] == 1e-5  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="patience must be an int >= 1"):
        walk(patience=0)


def test_known_scores_are_reused_without_training_and_the_walk_is_unchanged() -> None:
    model = bbh.build("bbb", MLP(6, [5], 2))
    valley = {t: (math.log(t) - math.log(2e-4)) ** 2 for t in TEMPERATURE_CANDIDATES}
    trained: list[float] = []
    reports: list[tuple[float, float | None]] = []

    def search(known: dict[float, float] | None) -> object:
        return choose_temperature(
            model, 0.03, train=lambda: trained.append(float(model.temperature)),
            score=lambda: valley[round(float(model.temperature), 8)], reset=lambda: None,
            steps_each=1, val_examples=1, val_samples=1, known=known,
            report=lambda t, v: reports.append((t, v)),
        )  # fmt: skip

    whole = search(None)
    # the walk goes past 1e-3 into the grid's cold end and stops two rises after the best
    assert whole.grid_best == 3e-4 and whole.candidates[-1] == 3e-5  # type: ignore[attr-defined]
    first = len(trained)
    reports.clear()
    # an interrupted search knew 0.03, 0.1 and 0.01: only the rest are trained again
    resumed = search({0.03: valley[0.03], 0.1: valley[0.1], 0.01: valley[0.01], 7.0: 0.0})
    assert trained[first:] == pytest.approx([0.003, 0.001, 3e-4, 1e-4, 3e-5])
    assert resumed == whole
    assert reports[:2] == [(0.03, valley[0.03]), (0.1, valley[0.1])]  # reported, not trained
    assert (0.003, None) in reports


def test_the_parabola_vertex_is_exact_on_a_parabola_and_stays_in_the_bracket() -> None:
    def nll(t: float) -> float:
        return 1.0 + (math.log(t) - math.log(0.05)) ** 2

    assert parabola_vertex([(t, nll(t)) for t in (0.1, 0.03, 0.01)]) == pytest.approx(0.05)
    assert parabola_vertex([(t, nll(t)) for t in (0.3, 0.1, 0.03)]) == pytest.approx(0.05)
    # a flat bracket or a non-finite neighbour keeps the middle; the vertex never leaves it
    assert parabola_vertex([(0.1, 1.0), (0.03, 1.0), (0.01, 1.0)]) == 0.03
    assert parabola_vertex([(0.1, math.inf), (0.03, 1.0), (0.01, 2.0)]) == 0.03
    assert 0.01 <= parabola_vertex([(0.1, 1.0 + 1e-9), (0.03, 1.0), (0.01, 5.0)]) <= 0.1


def test_fit_chooses_the_temperature_on_validation_data_and_trains_at_it() -> None:
    x, y = _data()
    torch.manual_seed(0)
    model = bbh.build("bbh", MLP(6, [5], 2))
    calls: list[tuple[float, float | None]] = []

    class Hooks(FitHooks):
        def on_temperature_candidate(self, temperature: float, val_nll: float | None) -> None:
            calls.append((temperature, val_nll))

    result = fit(
        model, x[:64], y[:64], steps=12, batch_size=16, validation=(x[64:], y[64:]), hooks=Hooks()
    )
    search = result.temperature
    assert search is not None and search.start == 0.03 and search.steps_each == 12
    assert len(search.candidates) >= 3 and search.grid_best in search.candidates
    # the hooks hear each candidate before it trains and with its score after
    assert calls[0::2] == [(t, None) for t in search.candidates]
    assert calls[1::2] == list(zip(search.candidates, search.val_nll, strict=True))
    best = search.candidates[search.val_nll.index(min(search.val_nll))]
    assert search.grid_best == best
    ladder = sorted(TEMPERATURE_CANDIDATES, reverse=True)
    i = ladder.index(best)
    if 0 < i < len(ladder) - 1:  # refined: between the best candidate's two neighbours
        assert ladder[i + 1] <= search.chosen <= ladder[i - 1]
    else:
        assert search.chosen == best
    assert float(model.temperature) == pytest.approx(search.chosen)
    # the main run is a fresh run at the chosen temperature: the same seed, the same weights
    torch.manual_seed(0)
    fixed = bbh.build("bbh", MLP(6, [5], 2), temperature=search.chosen)
    fit(fixed, x[:64], y[:64], steps=12, batch_size=16)
    for a, b in zip(model.parameters(), fixed.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_without_validation_data_fit_warns_and_keeps_the_start() -> None:
    x, y = _data(32)
    model = bbh.build("bbb", MLP(6, [5], 2))
    with pytest.warns(TrainingWarning, match="no validation data: it trains at 0.03"):
        result = fit(model, x, y, steps=2, batch_size=16)
    assert result.temperature is None and float(model.temperature) == pytest.approx(0.03)
    with pytest.raises(ValueError, match="same number"):
        fit(model, x, y, steps=1, batch_size=16, validation=(x, y[:3]))
