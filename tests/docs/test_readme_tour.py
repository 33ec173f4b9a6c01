"""The README's tour runs as written on the embedded data and does what the results page says."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.md"


def _tour_code() -> str:
    text = README.read_text()
    section = text[text.index("## Your network, Bayesian in one line") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def _stated() -> tuple[float, float]:
    """The temperature chosen and the test accuracy that ``docs/results.md`` states for the tour
    (its section "The README tour")."""
    text = RESULTS.read_text()
    section = text[text.index("## The README tour") :]
    section = section[: section.index("\n## ", 1)]
    chosen = re.search(r"`temperature (\S+) chosen by validation NLL", section)
    accuracy = re.search(r"\| test accuracy[^|]*\| (0\.\d+) \|", section)
    assert chosen and accuracy, "docs/results.md no longer states the tour's outcome"
    return float(chosen.group(1)), float(accuracy.group(1))


def test_the_tour_code_names_only_what_it_defines() -> None:
    compile(_tour_code(), "README tour", "exec")  # a syntax check; the slow test runs it
    _stated()  # and the slow test finds what to compare with


@pytest.mark.slow
def test_the_tour_trains_to_the_accuracy_it_states() -> None:
    temperature, stated_accuracy = _stated()
    torch.manual_seed(0)
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tour's settings give no TrainingWarning
        exec(_tour_code(), scope)
    accuracy = (scope["probs"].argmax(-1) == scope["data"].test.labels).float().mean().item()
    assert abs(accuracy - stated_accuracy) <= 0.02, (accuracy, stated_accuracy)
    assert scope["result"].temperature.chosen == pytest.approx(temperature, rel=5e-3)  # as stated
    assert scope["logits"].shape == (100, 8, 10)
    assert torch.isfinite(scope["loss"])
