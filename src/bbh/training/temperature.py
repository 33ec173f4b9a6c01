"""Choosing the KL's temperature on validation data (``temperature="validation"``).

Before the main training, ``fit`` trains from the initial state at one temperature after
another, each for ``temperature_steps`` steps (by default the whole run, the KL schedule
compressed into shorter ones), and scores each by its validation NLL (the same batches, noise
and validation draws for every candidate). It walks a log grid from ``START_TEMPERATURE``: the
two neighbours first, then on in the better direction until ``patience`` candidates in a row
fail to beat the best (``TEMPERATURE_PATIENCE``, 2: one short run's NLL is noisy, and on
CIFAR-5 a single rise of 0.008 between two candidates ended a walk at 0.01 that, walked on,
reached a validation NLL 0.13 lower at 1e-4). The best grid point
and its two neighbours bracket the minimum; the main training runs at the vertex of the parabola
through their NLLs over log T (the parabolic step of Brent's line search: between the grid's
half-decade points at no extra run; at a grid point, or at the edge of the grid, it repeats that
candidate's run). Measured (docs/methods.md, "The model at
its optimum"): on the demo, full-length candidates rank the temperatures as the test set does;
half- and third-length ones mis-ranked one seed in three, and continuing a trained posterior at
each temperature for a tenth of the run (tried first) favoured the coldest ones (the trained
means carry over, the overfitting of a cold run does not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import Tensor

from bbh.inputs import Inputs, split
from bbh.likelihoods import log_mean_exp
from bbh.methods.base import Method
from bbh.methods.temperature import TEMPERATURE_CANDIDATES, TemperedKL

#: candidates in a row, past the best, that may fail to beat it before the walk stops (1: the
#: walk stops at the first rise, as runs trained before this option did)
TEMPERATURE_PATIENCE = 2


@dataclass(frozen=True)
class TemperatureSearch:
    """What the search tried and chose (recorded in a run's ``train.json`` and report).

    Args:
        candidates: The temperatures tried, in order.
        val_nll: The validation NLL of each, after its short run.
        chosen: The temperature chosen.
        start: Where the walk started.
        steps_each: The short run's steps per candidate.
        val_examples: The validation examples.
        val_samples: The weight draws of the validation predictive.
        grid_best: The candidate with the lowest validation NLL (``chosen`` is the parabola's
            vertex between its neighbours, or it where it is at the grid's edge).
    """

    candidates: tuple[float, ...]  # those tried, in order
    val_nll: tuple[float, ...]  # per candidate, after its short run
    chosen: float
    start: float  # where the walk started
    steps_each: int  # the short run's steps per candidate
    val_examples: int
    val_samples: int
    grid_best: float | None = None  # None in records of before the parabolic refinement

    def to_dict(self) -> dict[str, Any]:
        """The search as a dict (for ``train.json``).

        Returns:
            The fields as a dict.
        """
        return asdict(self)

    def summary(self) -> str:
        """A one-line summary: the chosen temperature and the NLL of each candidate.

        Returns:
            The line.
        """
        tried = ", ".join(
            f"{t:g}: {v:.4f}" for t, v in zip(self.candidates, self.val_nll, strict=True)
        )
        how = "" if self.grid_best in (None, self.chosen) else ", the parabola's vertex"
        return (
            f"temperature {self.chosen:.3g} chosen by validation NLL{how} ({self.val_examples} "
            f"examples; {tried})"
        )


@torch.no_grad()
def validation_nll(
    method: Method, x: Inputs, y: Tensor, *, num_samples: int, seed: int, batch_size: int = 500
) -> float:
    """NLL per example of the method's predictive (the mean over ``num_samples`` draws of the
    likelihood) on ``(x, y)``, with the draws seeded by ``seed`` (the same for every call).

    Args:
        method: The method.
        x: Validation inputs ``[N, ...]``.
        y: Validation targets.
        num_samples: Weight draws of the predictive.
        seed: Seeds the draws.
        batch_size: Inputs per ``predict_logits`` call.

    Returns:
        The mean NLL per example.
    """
    devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
    was_training = method.training
    method.eval()
    total = 0.0
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for xb, yb in zip(split(x, batch_size), y.split(batch_size), strict=True):
                n = num_samples if method.stochastic else 1
                loglik = method.likelihood.log_prob(method.predict_logits(xb, n), yb)  # [S, B]
                total -= float(log_mean_exp(loglik, dim=0).sum())
    finally:
        method.train(was_training)
    return total / len(y)


def choose_temperature(
    method: Method,
    start: float,
    *,
    train: Callable[[], None],
    score: Callable[[], float],
    reset: Callable[[], None],
    steps_each: int,
    val_examples: int,
    val_samples: int,
    grid: tuple[float, ...] = TEMPERATURE_CANDIDATES,
    report: Callable[[float, float | None], None] | None = None,
    refine: bool = True,
    known: Mapping[float, float] | None = None,
    patience: int = TEMPERATURE_PATIENCE,
) -> TemperatureSearch:
    """Walk ``grid`` from ``start``: each candidate trained by ``train()`` from the state that
    ``reset()`` restores, scored by ``score()`` (lower is better). Leaves the method reset, at
    the best temperature: with ``refine``, the vertex of the parabola in log T through the best
    candidate and its two neighbours (``parabola_vertex``), else the best candidate.
    ``report(t, None)`` before a candidate trains, ``report(t, nll)`` after. ``known``: scores
    of candidates trained before (an interrupted search's, read back on resume), used without
    training them again and reported as ``report(t, nll)``; a candidate's run depends only on
    the initial state, so the walk and its result are those of an uninterrupted search.
    ``patience``: once a neighbour of the start has beaten it, the walk goes on in that
    direction until this many candidates in a row fail to beat the best so far."""
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be an int >= 1, got {patience!r}")
    ladder = sorted(grid, reverse=True)
    if start not in ladder:
        raise ValueError(f"the start temperature {start} is not in the grid {ladder}")
    scores: dict[float, float] = {}
    reused = dict(known or {})

    def nll_at(i: int) -> float:
        t = ladder[i]
        if t not in scores and t in reused:
            scores[t] = reused[t] if math.isfinite(reused[t]) else math.inf
            if report is not None:
                report(t, reused[t])
        if t not in scores:
            reset()
            cast(TemperedKL, method).set_temperature(t)
            if report is not None:
                report(t, None)
            train()
            value = score()
            scores[t] = value if math.isfinite(value) else math.inf
            if report is not None:
                report(t, value)
        return scores[t]

    here = ladder.index(start)
    nll_at(here)
    for step in (-1, 1):  # warmer, then colder: the first neighbour that beats the start
        if not 0 <= here + step < len(ladder) or nll_at(here + step) >= nll_at(here):
            continue
        lowest = i = here + step
        while abs(i - lowest) < patience and 0 <= i + step < len(ladder):
            i += step
            if nll_at(i) < nll_at(lowest):
                lowest = i
        here = lowest
        break
    if not math.isfinite(scores[ladder[here]]):
        raise FloatingPointError(
            "the temperature search found no candidate with a finite validation NLL"
        )
    reset()
    best = chosen = ladder[here]
    if refine and 0 < here < len(ladder) - 1:
        points = [(ladder[i], scores.get(ladder[i], math.inf)) for i in (here - 1, here, here + 1)]
        chosen = parabola_vertex(points)
    cast(TemperedKL, method).set_temperature(chosen)
    return TemperatureSearch(
        tuple(scores), tuple(scores.values()), chosen, start, steps_each, val_examples,
        val_samples, best,
    )  # fmt: skip


def parabola_vertex(points: list[tuple[float, float]]) -> float:
    """The temperature at the vertex of the parabola in ``log T`` through three
    ``(T, val_nll)`` points whose middle one has the lowest NLL (Brent's parabolic step).

    The vertex lies between the outer two; with a non-finite NLL among them, or a flat
    bracket, it is the middle temperature.

    Args:
        points: Three ``(temperature, val_nll)`` pairs, the middle one the lowest.

    Returns:
        The temperature at the vertex.
    """
    (t0, f0), (t1, f1), (t2, f2) = points
    if not all(math.isfinite(f) for f in (f0, f1, f2)):
        return t1
    x0, x1, x2 = (math.log(t) for t in (t0, t1, t2))
    num = (x1 - x0) ** 2 * (f1 - f2) - (x1 - x2) ** 2 * (f1 - f0)
    den = (x1 - x0) * (f1 - f2) - (x1 - x2) * (f1 - f0)
    if den == 0.0:
        return t1
    x = x1 - 0.5 * num / den
    lo, hi = min(x0, x2), max(x0, x2)
    return math.exp(min(max(x, lo), hi))
