"""An output layer integrated exactly: the conjugate Gaussian posterior of a linear readout.

For regression with a Gaussian likelihood, ``y = Phi(x; theta) V + N(0, noise^2)`` with features
``Phi`` (the input of the net's last ``nn.Linear``, with a column of ones for its bias) and a
prior ``V ~ N(0, s^2 I)`` on the readout, the readout's posterior given ``theta`` and the data is
Gaussian and the readout can be integrated out of the ELBO (collapsed variational inference):

    ELBO = E_q(theta)[log N(y; 0, s^2 Phi Phi^T + noise^2 I)] - KL(q(theta) || p(theta)),

which is the ordinary ELBO with ``q(V | theta)`` the exact conditional posterior. Bayes by
Hypernet then models only ``theta`` (every other weight); ``BayesByHypernet(last_layer="exact")``.
Both functions here work on S feature sets at once, in float64, through the ``F x F`` precision
``A = I / s^2 + Phi^T Phi / noise^2`` (F features with the bias column): ``O(S (N F^2 + F^3))``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def readout_posterior(
    phi: Tensor, y: Tensor, noise_scale: float, prior_scale: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``(chol(A) [S, F, F], mean [S, F, O], b [S, F, O])`` of the readout's posterior given
    features ``phi [S, N, F]`` and targets ``y [N, O]``: mean ``A^-1 b``, ``b = Phi^T y /
    noise^2``, covariance ``A^-1``."""
    phi = phi.double()
    f = phi.shape[-1]
    eye = torch.eye(f, dtype=torch.float64, device=phi.device)
    precision = eye / prior_scale**2 + phi.transpose(1, 2) @ phi / noise_scale**2
    chol, info = torch.linalg.cholesky_ex(precision)
    # A = I / s^2 + PSD is positive definite unless the features went non-finite: then NaN
    # (no host sync here), which the training guard reports
    chol = torch.where((info == 0)[:, None, None], chol, torch.full_like(chol, math.nan))
    b = phi.transpose(1, 2) @ y.double() / noise_scale**2  # [S, F, N] @ [N, O]
    return chol, torch.cholesky_solve(b, chol), b


def log_marginal(phi: Tensor, y: Tensor, noise_scale: float, prior_scale: float) -> Tensor:
    """``log N(y; 0, s^2 Phi Phi^T + noise^2 I)`` per feature set, summed over the O outputs:
    ``phi [S, N, F], y [N, O] -> [S]`` (float64).

    By Woodbury and the determinant lemma: ``-1/2 (y^T y / noise^2 - b^T A^-1 b) - 1/2 log det A
    - F log s - N log noise - N/2 log 2 pi`` per output.
    """
    n, f = phi.shape[1], phi.shape[2]
    o = y.shape[1]
    chol, mean, b = readout_posterior(phi, y, noise_scale, prior_scale)
    y64 = y.double()
    quad = (y64 * y64).sum() / noise_scale**2 - (b * mean).sum((1, 2))
    logdet = 2 * chol.diagonal(dim1=1, dim2=2).log().sum(-1)
    const = f * math.log(prior_scale) + n * math.log(noise_scale) + 0.5 * n * math.log(2 * math.pi)
    return -0.5 * quad - o * (0.5 * logdet + const)


def sample_readout(
    phi: Tensor,
    y: Tensor,
    noise_scale: float,
    prior_scale: float,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One readout draw ``V [S, F, O]`` from each feature set's exact posterior (float64); with
    no data (``N = 0``) that is the prior."""
    chol, mean, _ = readout_posterior(phi, y, noise_scale, prior_scale)
    eps = torch.randn(mean.shape, dtype=torch.float64, device=mean.device, generator=generator)
    # chol chol^T = A, so chol^-T eps ~ N(0, A^-1)
    return mean + torch.linalg.solve_triangular(chol.transpose(1, 2), eps, upper=True)
