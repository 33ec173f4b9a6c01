"""Likelihoods ``p(y | x, w)`` evaluated on sampled outputs ``[..., B, C]``.

- ``categorical``: outputs are logits ``[..., B, C]``, ``y`` integer classes ``[B]``.
- ``gaussian``: outputs are means ``[..., B, C]`` (C = output dimension), ``y`` is ``[B]`` (C = 1)
  or ``[B, C]``, with a fixed noise standard deviation ``noise_scale``.

``Likelihood.predictive(outputs [S, B, C])`` is what ``Method.predict`` returns: for
``categorical`` the predictive probabilities ``[B, C]`` (the mean of the softmaxes); for
``gaussian`` a ``RegressionPrediction`` (predictive mean and standard deviations), never a
softmax.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bbh.enums import LikelihoodName


@dataclass(frozen=True)
class RegressionPrediction:
    """The predictive distribution of a Gaussian likelihood at ``B`` inputs, ``C`` outputs each.

    With S weight draws ``f_s(x)`` and noise std ``sigma`` the predictive is the mixture
    ``(1/S) sum_s N(f_s(x), sigma^2)``, whose moments these are:

    - ``mean [B, C]``: ``mean_s f_s(x)``;
    - ``epistemic_std [B, C]``: the standard deviation of ``f_s(x)`` over the S draws (population
      form, divisor S: the mixture's own; 0 for a deterministic method such as MAP);
    - ``std [B, C]``: the total, ``sqrt(epistemic_std^2 + noise_std^2)``;
    - ``noise_std``: the fixed observation noise ``sigma`` (``noise_scale``), the aleatoric part.

    Compare ``y`` with ``mean +- k std``; ``bbh.metrics.regression`` scores it (RMSE, Gaussian NLL,
    interval coverage and calibration).

    Args:
        mean: ``mean_s f_s(x)``, ``[B, C]``.
        epistemic_std: The draws' standard deviation, ``[B, C]``.
        std: The total standard deviation, ``[B, C]``.
        noise_std: The observation noise's standard deviation.
    """

    mean: Tensor
    epistemic_std: Tensor
    std: Tensor
    noise_std: float

    @classmethod
    def from_samples(cls, outputs: Tensor, noise_std: float) -> RegressionPrediction:
        """The moments of the predictive from sampled outputs ``[S, B, C]``.

        Args:
            outputs: Sampled outputs ``[S, B, C]``.
            noise_std: The observation noise's standard deviation.

        Returns:
            The prediction.

        Raises:
            ValueError: ``outputs`` is not ``[S, B, C]``.
        """
        if outputs.dim() != 3:
            raise ValueError(
                f"outputs must have shape [S, B, C] (samples, batch, outputs), got "
                f"{list(outputs.shape)}"
            )
        var_f = outputs.var(dim=0, correction=0)
        return cls(
            mean=outputs.mean(dim=0),
            epistemic_std=var_f.sqrt(),
            std=(var_f + noise_std**2).sqrt(),
            noise_std=noise_std,
        )


class Likelihood:
    """``log_prob(outputs [..., B, C], y) -> [..., B]``, per-example log-likelihoods, and
    ``predictive(outputs [S, B, C])``, the predictive distribution over the S draws."""

    name: str

    def log_prob(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Per-example log-likelihoods.

        Args:
            outputs: The net's outputs ``[..., B, C]``.
            y: The targets of the B examples.

        Returns:
            ``[..., B]``.
        """
        raise NotImplementedError

    def predictive(self, outputs: Tensor) -> Tensor | RegressionPrediction:
        """The predictive distribution over the S draws.

        Args:
            outputs: The net's outputs ``[S, B, C]``.

        Returns:
            Probabilities ``[B, C]`` or a ``RegressionPrediction``.
        """
        raise NotImplementedError


class CategoricalLikelihood(Likelihood):
    """The categorical likelihood of class ids under ``softmax(outputs)``."""

    name = LikelihoodName.CATEGORICAL.value

    def log_prob(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Log-probabilities of the class ids under ``softmax(outputs)``.

        Args:
            outputs: Logits ``[..., B, C]``.
            y: Class ids ``[B]``.

        Returns:
            ``[..., B]``.

        Raises:
            ValueError: ``y`` is not ``[B]``.
        """
        if y.dim() != 1 or y.shape[0] != outputs.shape[-2]:
            raise ValueError(
                f"categorical likelihood needs labels [B={outputs.shape[-2]}], got {list(y.shape)}"
            )
        logp = F.log_softmax(outputs, dim=-1)
        index = y.long().expand(*outputs.shape[:-1]).unsqueeze(-1)
        return logp.gather(-1, index).squeeze(-1)

    def predictive(self, outputs: Tensor) -> Tensor:
        """Predictive probabilities ``[B, C]``: ``softmax(outputs [S, B, C])`` averaged over S.

        Args:
            outputs: Logits ``[S, B, C]``.

        Returns:
            Probabilities ``[B, C]``.
        """
        return outputs.softmax(dim=-1).mean(dim=0)


class GaussianLikelihood(Likelihood):
    """A Gaussian likelihood with a fixed observation noise's standard deviation ``noise_scale``.

    Args:
        noise_scale: The observation noise's standard deviation, positive.

    Raises:
        ValueError: ``noise_scale`` is not a positive number.
    """

    name = LikelihoodName.GAUSSIAN.value

    def __init__(self, noise_scale: float):
        if not (isinstance(noise_scale, (int, float)) and noise_scale > 0):
            raise ValueError(f"noise_scale must be a positive number, got {noise_scale!r}")
        self.noise_scale = float(noise_scale)

    def log_prob(self, outputs: Tensor, y: Tensor) -> Tensor:
        """Gaussian log-densities of the targets, summed over the C outputs.

        Args:
            outputs: Predicted means ``[..., B, C]``.
            y: Targets ``[B]`` or ``[B, C]``.

        Returns:
            ``[..., B]``.

        Raises:
            ValueError: The targets do not match the outputs' shape.
        """
        target = y.reshape(outputs.shape[-2], -1).to(outputs.dtype)
        if target.shape[-1] != outputs.shape[-1]:
            raise ValueError(
                f"gaussian likelihood: targets {list(y.shape)} do not match outputs "
                f"{list(outputs.shape)} (expected [B] or [B, {outputs.shape[-1]}])"
            )
        z = (outputs - target) / self.noise_scale
        const = math.log(self.noise_scale) + 0.5 * math.log(2 * math.pi)
        return (-0.5 * z.pow(2) - const).sum(-1)

    def predictive(self, outputs: Tensor) -> RegressionPrediction:
        """Predictive mean and standard deviations ``[B, C]`` of outputs ``[S, B, C]``.

        Args:
            outputs: Predicted means ``[S, B, C]``.

        Returns:
            The ``RegressionPrediction``.
        """
        return RegressionPrediction.from_samples(outputs, self.noise_scale)


def make_likelihood(name: str, noise_scale: float | None = None) -> Likelihood:
    """Build a likelihood by name: ``categorical`` or ``gaussian`` (needs ``noise_scale``).

    Args:
        name: ``categorical`` or ``gaussian``.
        noise_scale: The Gaussian likelihood's noise standard deviation (None for
            ``categorical``).

    Returns:
        The likelihood.

    Raises:
        ValueError: ``name`` is unknown, ``gaussian`` has no ``noise_scale``, ``categorical``
            has one, or it is not positive.
    """
    try:
        kind = LikelihoodName(name)
    except ValueError:
        allowed = [n.value for n in LikelihoodName]
        raise ValueError(f"unknown likelihood {name!r}; allowed: {allowed}") from None
    if kind is LikelihoodName.CATEGORICAL:
        if noise_scale is not None:
            raise ValueError("noise_scale applies only to likelihood='gaussian'")
        return CategoricalLikelihood()
    if noise_scale is None:
        raise ValueError("likelihood='gaussian' needs noise_scale (the fixed noise std)")
    return GaussianLikelihood(noise_scale)


def log_mean_exp(values: Tensor, dim: int = 0) -> Tensor:
    """``log mean_s exp(values_s)`` along ``dim``, computed stably.

    Args:
        values: Any tensor.
        dim: The axis to average over.

    Returns:
        ``values`` with ``dim`` reduced.
    """
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])
