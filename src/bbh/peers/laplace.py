"""The Laplace approximation through laplace-torch (Daxberger et al., "Laplace Redux --
Effortless Bayesian Deep Learning", NeurIPS 2021), fitted post hoc on a trained net.

The default is their recommended setting: last-layer Laplace with a KFAC Hessian (GGN), the
prior precision by maximising the marginal likelihood, and the GLM (linearised) predictive with
the probit approximation of the softmax. ``subset="all"`` with ``hessian="diag"`` or ``"kron"``
is the Laplace over every weight, where its Jacobians fit in memory.

- ``predict`` returns laplace-torch's GLM probit predictive.
- ``predict_logits`` (what ``bbh.evaluation`` scores and the attacks' expectation over
  transformation, EOT, differentiates) returns S draws of the logits from the GLM's Gaussian over
  the outputs, ``N(f(x), J Sigma J^T)``, with gradients to ``x`` (laplace-torch's
  ``functional_samples`` with ``enable_backprop=True``). For last-layer Laplace the net is linear
  in the sampled weights, so these are exactly the outputs under last-layer weight draws; their
  mean softmax is the GLM predictive up to Monte Carlo error (laplace-torch's
  ``link_approx="mc"``), of which the probit link is a closed-form approximation.
  ``with_link("probit")`` gives a view whose ``predict_logits`` is instead one "draw", the log
  of the probit predictive, so that the same scoring measures laplace-torch's recommended link.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from bbh.inputs import Inputs
from bbh.likelihoods import make_likelihood
from bbh.methods.base import Method, check_num_samples
from bbh.peers._common import require

SUBSETS = ("last_layer", "all")
HESSIANS = ("kron", "diag", "full")
#: how ``predict_logits`` gives the GLM predictive (``LaplacePeer.with_link``)
LINKS = ("mc", "probit")
#: ``backend`` -> laplace-torch's GGN class of that curvature back-end
BACKENDS = {"curvlinops": "CurvlinopsGGN", "asdl": "AsdlGGN", "backpack": "BackPackGGN"}


class LaplacePeer(Method):
    """A laplace-torch Laplace approximation behind ``bbh.Method`` (see the module docstring).

    Build it with ``fit_laplace``. Its ``loss`` refuses: the approximation is fitted post
    hoc, not trained.

    Args:
        la: A fitted laplace-torch object (``laplace.Laplace(...)`` after ``fit``).
        fit_seconds: The wall time of fitting it (Hessian and prior precision).
    """

    def __init__(self, la: Any, *, fit_seconds: float = 0.0):
        super().__init__()
        self.la = la
        self.net: nn.Module = la.model  # laplace-torch's copy (a FeatureExtractor for last-layer)
        self.likelihood = make_likelihood("categorical")
        self.fit_seconds = fit_seconds
        self.link = "mc"

    def with_link(self, link: str) -> LaplacePeer:
        """This fitted approximation with ``predict_logits`` scoring another predictive link.

        Args:
            link: ``mc`` (S draws from the GLM's Gaussian; the default) or ``probit``
                (laplace-torch's closed-form approximation, as one draw of log-probabilities).

        Returns:
            A shallow copy sharing the fit.

        Raises:
            ValueError: ``link`` is not one of ``LINKS``.
        """
        if link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {link!r}")
        view = copy.copy(self)
        view.link = link
        return view

    @property
    def prior_precision(self) -> Tensor:
        """laplace-torch's prior precision (after the marginal-likelihood fit)."""
        return self.la.prior_precision.detach()

    def loss(  # noqa: D102 (Method.loss's docstring is inherited)
        self, x: Inputs, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError(
            "a Laplace approximation is fitted post hoc on a trained net: use "
            "bbh.peers.fit_laplace (or train_peer('laplace', ...)), not fit"
        )

    def predict_logits(self, x: Inputs, num_samples: int = 100) -> Tensor:
        """S draws of the logits from the GLM predictive's Gaussian, ``[S, B, C]``.

        Args:
            x: Inputs ``[B, ...]``, a tensor.
            num_samples: S, an int ``>= 1``.

        Returns:
            The logits ``[S, B, C]``; gradients flow to ``x``. With the ``probit`` link
            (``with_link``), ``[1, B, C]``: the log of the probit predictive.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1`` or ``x`` fails the input checks.
        """
        check_num_samples(num_samples)
        x = self.check_input(x)
        with torch.enable_grad():
            if self.link == "probit":
                probs = self.la(x, pred_type="glm", link_approx="probit")
                return probs.clamp_min(torch.finfo(probs.dtype).tiny).log().unsqueeze(0)
            return self.la.functional_samples(x, pred_type="glm", n_samples=num_samples)

    @torch.no_grad()
    def predict(self, x: Inputs, num_samples: int = 100) -> Tensor:  # type: ignore[override]
        """laplace-torch's GLM predictive with the probit link, ``[B, C]`` (no sampling).

        Args:
            x: Inputs ``[B, ...]``, a tensor.
            num_samples: Unused (the probit approximation is deterministic); checked.

        Returns:
            Probabilities ``[B, C]``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1`` or ``x`` fails the input checks.
        """
        check_num_samples(num_samples)
        x = self.check_input(x)
        with torch.enable_grad():
            probs = self.la(x, pred_type="glm", link_approx="probit")
        return probs.detach()


def fit_laplace(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    subset: str = "last_layer",
    hessian: str = "kron",
    batch_size: int = 256,
    prior_precision: float = 1.0,
    marglik_steps: int = 100,
    backend: str | None = None,
) -> LaplacePeer:
    """Fit laplace-torch's Laplace approximation at ``net``'s (trained) weights on ``(x, y)``.

    Args:
        net: The trained network, or a ``bbh.Method`` whose ``net`` it is (copied either way).
        x: Training inputs ``[N, ...]`` (a tensor).
        y: Class ids ``[N]``.
        subset: ``last_layer`` (the last ``nn.Linear``) or ``all`` (every weight).
        hessian: ``kron`` (KFAC), ``diag`` or ``full``.
        batch_size: Examples per Hessian batch.
        prior_precision: The prior precision the marginal-likelihood fit starts from.
        marglik_steps: Gradient steps of the marginal-likelihood fit.
        backend: laplace-torch's curvature back-end for the GGN: ``curvlinops``, ``asdl`` or
            ``backpack``; None takes laplace-torch's default (curvlinops).

    Returns:
        The ``LaplacePeer`` (``fit_seconds`` holds the fitting wall time).

    Raises:
        PeerPackageMissing: ``laplace-torch`` is not installed.
        ValueError: ``subset``, ``hessian`` or ``backend`` is not one of the above, or ``net``
            is a method without a ``net``.
    """
    if subset not in SUBSETS:
        raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
    if hessian not in HESSIANS:
        raise ValueError(f"hessian must be one of {HESSIANS}, got {hessian!r}")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    laplace = require("laplace", "laplace-torch")
    options: dict[str, Any] = {}
    if backend is not None:
        curvature = require("laplace.curvature", "laplace-torch")
        options["backend"] = getattr(curvature, BACKENDS[backend])
    inner = getattr(net, "net", None) if isinstance(net, Method) else net
    if not isinstance(inner, nn.Module):
        raise ValueError(f"{type(net).__name__} has no net to fit a Laplace approximation on")
    model = copy.deepcopy(inner).eval()
    ref = next(model.parameters())
    loader = DataLoader(TensorDataset(x.to(ref), y.to(ref.device)), batch_size=batch_size)
    start = time.perf_counter()
    la = laplace.Laplace(
        model, "classification", subset_of_weights=subset, hessian_structure=hessian,
        prior_precision=prior_precision, enable_backprop=True, **options,
    )  # fmt: skip
    la.fit(loader)
    la.optimize_prior_precision(
        pred_type="glm", method="marglik", link_approx="probit", n_steps=marglik_steps,
        init_prior_prec=prior_precision,
    )  # fmt: skip
    return LaplacePeer(la, fit_seconds=time.perf_counter() - start)
