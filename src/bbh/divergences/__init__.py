"""KL estimators ``KL(q || p)`` from weight samples ``[S, D]``, as plug-ins of BbH.

Each estimator is a ``KLEstimator`` (an ``nn.Module``) with ``forward(samples [S, D], prior) ->
scalar``. Stateful ones (the discriminator) also define ``auxiliary_loss(samples_detached,
prior)``, which the method adds to its loss, and ``pretrain(sample_fn, prior, steps)``.

Names (``BayesByHypernet(kl=...)``):

- ``nn_full``: nearest-neighbour estimator over full vectors (the paper's ``--full_kernel``);
- ``nn_coordinate``: per-weight nearest-neighbour estimator (the paper's v2 default);
- ``entropy``: ours, exact prior cross term minus a Kozachenko-Leonenko entropy in R^D;
- ``entropy_coordinate``: ours, per-weight entropies (ignores correlations, like ``nn_coordinate``);
- ``discriminator``: the paper's density-ratio discriminator on single weights (``-k disc``);
- ``jacobian``: ours, for a semi-implicit posterior ``w = G(z) + sigma * eps``: the exact cross
  term minus the entropy linearised through the generator's Jacobian (exact for an affine
  generator; ``bbh.divergences.jacobian``). It takes the posterior's draw, not only samples:
  estimators with ``uses_posterior = True`` are called as ``kl(draw, prior, posterior)``;
- ``sivi``: the semi-implicit bound of Yin and Zhou (2018) for the same posterior, kept for
  comparison: in high dimension it credits only the Gaussian noise's entropy (see its docstring).

Limits in the regime BbH trains in (D in the hundreds, S = 5; measured by
``tests/core/test_kl_high_dimension.py`` at D = 200 against closed-form Gaussian KLs, where each
limit is a strict xfail):

- ``nn_full``: distances concentrate, so the value is off (+33% for an isotropic q at std 0.5,
  -45 for a true 161 at std 2) and its gradient *rewards* extra variance for an over-dispersed q:
  without a likelihood to hold it, q's variance grows without bound. It sees only the total
  variance, so every coordinate gets the same sign.
- ``nn_coordinate``: S = 5 one-dimensional estimates are biased (+27% at std 0.5, 5 for a true
  161 at std 2), its gradient pushes an under-dispersed q to shrink further, and 1-D distances
  give Cauchy-tailed gradients.
- ``entropy``: the Kozachenko-Leonenko entropy in R^D is off by about ``-(D/2) log 2`` and sees
  only ``tr(Sigma_q)``: right total gradient, but one sign for every coordinate of an
  anisotropic q.
- ``entropy_coordinate``: within 20% and with the right gradient signs on these Gaussian q (but
  it ignores correlations, and its 1-D distances give heavy-tailed gradients).
- ``discriminator``: a pooled marginal ratio over all scalars: right for an isotropic q, far off
  for an anisotropic one (28 against 82).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from bbh.divergences.base import KLEstimator
from bbh.divergences.discriminator import DiscriminatorKL
from bbh.divergences.entropy import entropy_kl_coordinate, entropy_kl_full
from bbh.divergences.jacobian import JacobianKL, SemiImplicitBoundKL
from bbh.divergences.nearest_neighbour import nn_kl_coordinate, nn_kl_full
from bbh.divergences.options import KLOptions
from bbh.enums import KLName
from bbh.options import parse_enum
from bbh.priors import GaussianPrior


class NearestNeighbourKL(KLEstimator):
    """The paper's estimator; draws ``num_prior_samples`` fresh prior samples per call.

    Args:
        form: ``"full"`` (one estimate in R^D, ``nn_kl_full``) or ``"coordinate"`` (per
            weight, summed, ``nn_kl_coordinate``).
        num_prior_samples: Prior draws M per call; None: as many as the posterior samples S.

    Raises:
        ValueError: ``form`` is neither ``"full"`` nor ``"coordinate"``.
    """

    def __init__(self, form: str = "full", num_prior_samples: int | None = None):
        super().__init__()
        if form not in ("full", "coordinate"):
            raise ValueError(f"unknown form {form!r}; allowed: ['coordinate', 'full']")
        self.form = form
        self.num_prior_samples = num_prior_samples
        self._estimate = nn_kl_full if form == "full" else nn_kl_coordinate

    def forward(self, samples: Tensor, prior: GaussianPrior) -> Tensor:
        """The KL estimate from posterior samples and as many prior samples.

        Args:
            samples: Posterior weight samples ``[S, D]``.
            prior: The prior; ``num_prior_samples`` (default S) draws ``[M, D]`` are taken from it.

        Returns:
            A scalar tensor, differentiable in ``samples``.
        """
        m = self.num_prior_samples or samples.shape[0]
        p = prior.sample(m, samples.shape[1], device=samples.device, dtype=samples.dtype)
        return self._estimate(samples, p)


class EntropyKL(KLEstimator):
    """Ours: exact ``E_q[-log p]`` minus a Kozachenko-Leonenko entropy estimate.

    Args:
        form: ``"full"`` (one entropy in R^D) or ``"coordinate"`` (per-weight entropies, summed;
            ignores correlations).

    Raises:
        ValueError: ``form`` is neither ``"full"`` nor ``"coordinate"``.
    """

    def __init__(self, form: str = "full"):
        super().__init__()
        if form not in ("full", "coordinate"):
            raise ValueError(f"unknown form {form!r}; allowed: ['coordinate', 'full']")
        self.form = form
        self._estimate = entropy_kl_full if form == "full" else entropy_kl_coordinate

    def forward(self, samples: Tensor, prior: GaussianPrior) -> Tensor:
        """The KL estimate ``E_q[-log p] - H[q]`` from posterior samples.

        Args:
            samples: Posterior weight samples ``[S, D]``.
            prior: The prior, whose log-density is exact.

        Returns:
            A scalar tensor, differentiable in ``samples``.
        """
        return self._estimate(samples, prior)


KLFactory = Callable[..., KLEstimator]

KL_ESTIMATORS: dict[KLName, KLFactory] = {
    KLName.NN_FULL: lambda: NearestNeighbourKL("full"),
    KLName.NN_COORDINATE: lambda: NearestNeighbourKL("coordinate"),
    KLName.ENTROPY: lambda: EntropyKL("full"),
    KLName.ENTROPY_COORDINATE: lambda: EntropyKL("coordinate"),
    # the paper's density-ratio discriminator (its code: experiments.run_disc_experiment)
    KLName.DISCRIMINATOR: DiscriminatorKL,
    # ours, for semi-implicit posteriors (needs the posterior, not only samples)
    KLName.JACOBIAN: JacobianKL,
    # the semi-implicit bound (Yin and Zhou 2018), for comparison; it degrades in high dimension
    KLName.SIVI: SemiImplicitBoundKL,
}

#: the estimators called with the posterior's draw (``KLEstimator.uses_posterior``)
_POSTERIOR_KLS = frozenset({KLName.JACOBIAN, KLName.SIVI})


def make_kl_estimator(
    name: KLName | str, *, samples_only: bool = False, **options: Any
) -> KLEstimator:
    """Build the estimator ``name`` with its ``options``; ``samples_only`` refuses those that
    need the posterior.

    Args:
        name: A ``KLName`` or its value (``"nn_full"``, ``"entropy"``, ``"jacobian"``, ...).
        samples_only: Refuse the estimators that take the posterior's draw
            (``uses_posterior``), for a method that has only weight samples.
        **options: The estimator's keyword arguments (e.g. ``DiscriminatorKL``'s ``hidden``);
            the nearest-neighbour and entropy names take none.

    Returns:
        The estimator, a fresh ``KLEstimator``.

    Raises:
        ValueError: ``name`` is unknown (or, with ``samples_only``, needs the posterior), or
            the estimator refuses an option's value.
        TypeError: An option is not one the estimator takes.
    """
    allowed = sorted(n.value for n in KLName if not (samples_only and n in _POSTERIOR_KLS))
    value = name.value if isinstance(name, KLName) else name
    if value not in allowed:
        raise ValueError(f"unknown kl estimator {value!r}; allowed: {allowed}")
    return KL_ESTIMATORS[KLName(value)](**options)


def uses_posterior(name: KLName | str) -> bool:
    """True for estimators called as ``kl(draw, prior, posterior)`` (see the module docstring).

    Args:
        name: A ``KLName`` or its value.

    Returns:
        Whether the estimator takes the posterior's draw rather than weight samples.

    Raises:
        ValueError: ``name`` is unknown.
    """
    return parse_enum(KLName, name, "kl estimator") in _POSTERIOR_KLS


__all__ = [
    "KL_ESTIMATORS",
    "DiscriminatorKL",
    "EntropyKL",
    "JacobianKL",
    "KLEstimator",
    "KLName",
    "KLOptions",
    "NearestNeighbourKL",
    "SemiImplicitBoundKL",
    "make_kl_estimator",
    "nn_kl_coordinate",
    "nn_kl_full",
    "uses_posterior",
]
