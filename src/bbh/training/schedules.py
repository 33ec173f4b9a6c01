"""KL-weight schedules as pure functions of the step (PAPER.md sections 5 and 10)."""

from __future__ import annotations

from collections.abc import Callable

KLSchedule = Callable[[int], float]


def kl_annealing(step: int, start: int, length: int) -> float:
    """The paper's annealing: 0 before ``start``, then a linear ramp to 1 over ``length`` steps.

    MNIST uses start = 5 epochs and length = 15 epochs (in iterations: 2,750 and 8,250).
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
    """
    return min(1.0, max(0.0, 10.0 / (step + 1) - 1.0))


def constant(value: float = 1.0) -> KLSchedule:
    return lambda step: value


def annealing(start: int, length: int) -> KLSchedule:
    return lambda step: kl_annealing(step, start, length)
