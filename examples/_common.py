"""What the examples share: training BbH and MAP alike, scoring classifiers, printing a table.

Each example runs as a script from the repository root (``python examples/NAME.py``), which puts
this folder on ``sys.path``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

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
