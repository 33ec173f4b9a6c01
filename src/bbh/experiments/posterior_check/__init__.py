"""The posterior check (``bbh check-posterior``): is a method's posterior right?

Each method of the registry is trained on cases with a trusted reference, in the regime where it
is used (up to hundreds of weights, a handful of samples per step), and scored in function space
(predictive std and mean of f on held-out inputs) and, where the weights are identifiable, in
weight space (per-weight marginal Wasserstein-1, covariance error). See ``docs/posterior_check.md``.

- ``cases``: the models, data and references (``CASES``);
- ``references``: exact, grid and stored NUTS references;
- ``metrics``: the pure scoring functions;
- ``specs``: the methods and their training budgets (``METHOD_SPECS``), as data;
- ``run``: ``run_posterior_check(out, cases, methods)``; ``figures``: one PNG per case.
"""

from bbh.experiments.posterior_check.cases import CASES, PosteriorCase
from bbh.experiments.posterior_check.metrics import function_metrics, wasserstein1, weight_metrics
from bbh.experiments.posterior_check.references import PosteriorReference
from bbh.experiments.posterior_check.run import run_posterior_check
from bbh.experiments.posterior_check.specs import METHOD_SPECS, MethodSpec, bbh_spec

__all__ = [
    "CASES",
    "METHOD_SPECS",
    "MethodSpec",
    "PosteriorCase",
    "PosteriorReference",
    "bbh_spec",
    "function_metrics",
    "run_posterior_check",
    "wasserstein1",
    "weight_metrics",
]
