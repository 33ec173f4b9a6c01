"""The README's tour runs as written on the embedded data and does what it says."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def _tour_code() -> str:
    text = README.read_text()
    section = text[text.index("### Your network, Bayesian in one line") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)  # type: ignore[union-attr]


def test_the_tour_code_names_only_what_it_defines() -> None:
    compile(_tour_code(), "README tour", "exec")  # a syntax check; the slow test runs it


@pytest.mark.slow
def test_the_tour_trains_to_the_accuracy_it_states() -> None:
    torch.manual_seed(0)
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tour's settings give no TrainingWarning
        exec(_tour_code(), scope)
    accuracy = (scope["probs"].argmax(-1) == scope["data"].test.labels).float().mean().item()
    assert accuracy > 0.90, accuracy  # the README says 0.921
    assert scope["result"].temperature.chosen == 0.03  # and that this is the choice
    assert scope["logits"].shape == (100, 8, 10)
    assert torch.isfinite(scope["loss"])
