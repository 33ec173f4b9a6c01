"""What the examples share: training BbH and MAP alike, scoring classifiers, printing a table.

Each example runs as a script from the repository root (``python examples/NAME.py``), which puts
this folder on ``sys.path``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

import bbh
from bbh.metrics import accuracy, expected_calibration_error, nll
from bbh.training import fit

#: the methods every example compares
METHODS = ("map", "bbh")


def train(
    name: str,
    net: nn.Module,
    x: Any,
    y: Tensor,
    val: tuple[Any, Tensor],
    *,
    steps: int,
    seed: int,
    quick: bool,
    batch_size: int = 64,
    **options: Any,
) -> tuple[Any, float]:
    """``bbh.build(name, net, **options)`` trained by ``fit``; ``(method, training CPU seconds)``.

    With ``quick`` (a smoke run) BbH trains at the temperature search's start, 0.03, instead of
    choosing it on ``val``; the choice is printed when there was one. The caller seeds the global
    generator before building ``net`` (the initial weights and the method's own draws follow).
    """
    if quick and name == "bbh":
        options = {"temperature": 0.03, **options}
    method = bbh.build(name, net, **options)
    start = time.process_time()
    out = fit(method, x, y, steps=steps, batch_size=batch_size, seed=seed, validation=val)
    seconds = time.process_time() - start
    if out.temperature is not None:
        print(f"{name}: {out.temperature.summary()}")
    return method, seconds


def classification_scores(probs: Tensor, labels: Tensor) -> dict[str, float]:
    """Accuracy, NLL and ECE of predictive probabilities ``[B, C]``."""
    return {
        "accuracy": accuracy(probs, labels),
        "nll": nll(probs, labels),
        "ece": expected_calibration_error(probs, labels),
    }


def print_table(
    results: Mapping[str, Mapping[str, float | None]], columns: tuple[str, ...], width: int = 12
) -> None:
    """One row per method; a missing value prints as ``-``."""
    print(f"{'method':<8}" + "".join(f"{c:>{width}}" for c in columns))
    for name, row in results.items():
        cells = (row.get(c) for c in columns)
        print(
            f"{name:<8}"
            + "".join(f"{'-':>{width}}" if v is None else f"{v:>{width}.3f}" for v in cells)
        )


def compare_classifiers(
    make_net: Callable[[], nn.Module],
    train_data: tuple[Any, Tensor],
    val: tuple[Any, Tensor],
    test: tuple[Any, Tensor],
    *,
    num_classes: int,
    steps: int,
    seed: int,
    quick: bool,
    num_samples: int,
) -> dict[str, dict[str, float]]:
    """The class-frequency predictor, then each of ``METHODS`` on a fresh ``make_net()`` (the
    same initial weights for both), scored on ``test`` and printed as a table."""
    x, y = train_data
    test_x, test_y = test
    # The trivial predictor: the training split's class frequencies for every input.
    prior = torch.bincount(y, minlength=num_classes).double() / len(y)
    results = {"prior": classification_scores(prior.expand(len(test_y), -1), test_y)}
    for name in METHODS:
        torch.manual_seed(seed)  # the same initial net for both
        method, seconds = train(name, make_net(), x, y, val, steps=steps, seed=seed, quick=quick)
        with torch.no_grad():
            probs = method.predict(test_x, num_samples=num_samples)
        results[name] = {**classification_scores(probs, test_y), "train_cpu_s": seconds}

    print("\ntest split:")
    print_table(results, ("accuracy", "nll", "ece", "train_cpu_s"))
    return results
