"""KL-weight and learning-rate schedules as pure functions of the step (the KL annealing of the
paper's code, pawni/BayesByHypernet: ``experiments.py`` and ``toy_data.ipynb``)."""

from __future__ import annotations

import math
from collections.abc import Callable

KLSchedule = Callable[[int], float]

#: ``fit(lr_schedule=...)``: the names it takes
LR_SCHEDULES = ("constant", "cosine", "cooldown")
#: ``cooldown``: the fraction of the run over which the rate falls linearly to 0
COOLDOWN_FRACTION = 0.2


def kl_annealing(step: int, start: int, length: int) -> float:
    """The paper's annealing: 0 before ``start``, then a linear ramp to 1 over ``length`` steps.

    MNIST uses start = 5 epochs and length = 15 epochs (in iterations: 2,750 and 8,250).

    Args:
        step: The step, from 0.
        start: The first step of the ramp.
        length: The ramp's length in steps (0: a jump to 1 at ``start``).

    Returns:
        The KL weight in ``[0, 1]``.

    Raises:
        ValueError: ``start`` or ``length`` is negative.
    """
    if start < 0 or length < 0:
        raise ValueError(f"start and length must be >= 0, got start={start}, length={length}")
    if step < start:
        return 0.0
    if length == 0:
        return 1.0
    return min(1.0, (step - start) / length)


def paper_toy_schedule(step: int) -> float:
    """The paper's toy notebook (2019): ``clip(10 / (step + 1) - 1, 0, 1)``.

    Named so it can be reproduced, not recommended: the weight is zero from step 9 on, which turns
    BbH into maximum likelihood with noise.

    Args:
        step: The step, from 0.

    Returns:
        The KL weight in ``[0, 1]``.
    """
    return min(1.0, max(0.0, 10.0 / (step + 1) - 1.0))


def constant(value: float = 1.0) -> KLSchedule:
    """A constant KL weight.

    Args:
        value: The weight.

    Returns:
        A schedule ``step -> value``.
    """
    return lambda step: value


def annealing(start: int, length: int) -> KLSchedule:
    """A linear KL warm-up (``kl_annealing``).

    Args:
        start: The step where the weight starts to rise from 0.
        length: The steps it takes to reach 1.

    Returns:
        A schedule ``step -> weight``.
    """
    return lambda step: kl_annealing(step, start, length)


def lr_factor(schedule: str, step: int, total: int, warmup: float = 0.0) -> float:
    """The learning rate of ``step`` (0-based) of a ``total``-step run, as a fraction of the base.

    ``constant``: 1. ``cosine``: ``(1 + cos(pi * step / total)) / 2``, from 1 down to near 0 at the
    last step (Loshchilov and Hutter, "SGDR", ICLR 2017). ``cooldown``: 1, then a linear fall to
    near 0 over the last ``COOLDOWN_FRACTION`` of the run (Hägele et al. 2024, "Scaling laws and
    compute-optimal training beyond fixed training durations"). Both end the run at a settled
    iterate rather than one that still jitters at the full rate, whatever the budget; the
    cooldown keeps 90% of the constant rate's total step.

    ``warmup``: the fraction of the run over which the rate first rises linearly from near 0
    (Goyal et al. 2017, "Accurate, large minibatch SGD"), multiplying the schedule's; 0: none.
    A fresh Adam's first steps move every weight by about its full rate in the sign of one
    noisy gradient, which throws a trained net off its minimum (``bbh.finetune``).

    Raises:
        ValueError: An unknown ``schedule``, or ``warmup`` outside ``[0, 1)``.
    """
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup must be a fraction of the run in [0, 1), got {warmup!r}")
    rise = min(1.0, (step + 1) / (warmup * total)) if warmup > 0 and total > 0 else 1.0
    if schedule == "constant":
        return rise
    if schedule == "cosine":
        return rise * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    if schedule == "cooldown":
        start = (1.0 - COOLDOWN_FRACTION) * total
        return rise * (1.0 if step < start else max(0.0, (total - step) / (total - start)))
    raise ValueError(f"unknown lr_schedule {schedule!r}; allowed: {list(LR_SCHEDULES)}")
