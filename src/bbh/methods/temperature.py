"""The strength of the KL as part of the model: a temperature, fixed or chosen on validation data.

A method with a KL term trains on ``mean NLL + kl_weight * T * KL / num_data``: ``T = 1`` is the
ELBO (the posterior of the model as written), ``T < 1`` a tempered posterior whose likelihood
counts ``1 / T`` times (Wenzel et al. 2020, "How good is the Bayes posterior in deep neural
networks really?"). ``temperature="validation"`` makes ``T`` a hyperparameter chosen from data:
``bbh.training.fit`` first trains a few candidate runs from the initial state at temperatures of
``TEMPERATURE_CANDIDATES`` around ``START_TEMPERATURE``, then trains at the one with the lowest
validation NLL (``bbh.training.temperature``). Never a function of the step count or a rate.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: the temperatures ``temperature="validation"`` chooses from: a log grid by half decades (the
#: walk from the start stops where the validation NLL has risen for ``TEMPERATURE_PATIENCE``
#: candidates, so a cold end costs nothing where it is not reached; CIFAR-5's ResNet and Bayes
#: by Backprop on MNIST were still improving at 1e-3)
TEMPERATURE_CANDIDATES = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 3e-4, 1e-4, 3e-5, 1e-5)
#: where the search starts; also what a model that asks for the search keeps when ``fit`` is
#: given no validation data (with a warning): the best on the demo and on MNIST (docs/methods.md)
START_TEMPERATURE = 0.03


class TemperedKL:
    """Mixin for methods with a KL term: the ``temperature`` buffer and its search candidates.

    ``temperature`` is a 0-dim buffer (saved with the model; files from before it load with the
    value the model was built with); ``temperature_candidates`` is None for a fixed one.
    """

    temperature: torch.Tensor
    temperature_candidates: tuple[float, ...] | None

    def init_temperature(self, temperature: float | str) -> None:
        """Set the temperature (``self.temperature``) and the candidates of a validation search.

        Args:
            temperature: A positive number, or ``"validation"`` to choose it on held-out data
                (``bbh.training.fit``).

        Raises:
            ValueError: ``temperature`` is neither.
        """
        if temperature == "validation":
            value, candidates = START_TEMPERATURE, TEMPERATURE_CANDIDATES
        elif (
            isinstance(temperature, (int, float))
            and not isinstance(temperature, bool)
            and 0 < temperature < math.inf
        ):
            value, candidates = float(temperature), None
        else:
            raise ValueError(
                f"temperature must be a positive number or 'validation', got {temperature!r}"
            )
        self.register_buffer("temperature", torch.tensor(value))  # type: ignore[attr-defined]
        self.temperature_candidates = candidates

    def set_temperature(self, value: float) -> None:
        """Fix the KL's temperature (what the search chose)."""
        self.temperature.fill_(float(value))

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        state_dict.setdefault(prefix + "temperature", self.temperature.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args)  # type: ignore[misc]
