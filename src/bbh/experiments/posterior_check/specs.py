"""Which methods the posterior check trains, and how: one ``MethodSpec`` per row of the tables.

A spec is data: a label, a registry name with its options, the Adam learning rate, the number of
full-batch steps (times the case's ``budget``), the KL schedule and the number of draws for
prediction. Adding a variant is one line in ``METHOD_SPECS`` (e.g. a new ``kl=`` estimator:
``bbh_spec("chunked", "new_estimator")``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bbh.training import annealing, constant
from bbh.training.schedules import KLSchedule


@dataclass(frozen=True)
class MethodSpec:
    """How one method is trained and queried on every case.

    Args:
        label: the row name (unique).
        method: registry name (``bbh.methods.available()``).
        options: options for ``bbh.build`` (the case adds the likelihood and its own extras).
        lr: Adam learning rate; None uses the method's ``default_lr``.
        steps: full-batch training steps before the case's ``budget`` factor.
        kl_anneal: ``(start, length)`` of a linear KL warm-up as fractions of the steps; None
            keeps the KL weight at 1 (the proper ELBO throughout).
        predict_samples: weight draws for the predictive (ensembles always use their members);
            None: as many as the reference's floor row has (10,000 for the exact references,
            1,000 for NUTS), so that the floor is the noise of the metrics at the same count
            (linear-500's mean error: 1.2% with 10,000 exact draws, 3.4-3.9% with 1,000).
        cases: the cases the method applies to (None: every case); the others skip it.
    """

    label: str
    method: str
    options: Mapping[str, Any] = field(default_factory=dict)
    lr: float | None = None
    steps: int = 3000
    kl_anneal: tuple[float, float] | None = None
    predict_samples: int | None = None
    cases: tuple[str, ...] | None = None

    def schedule(self, steps: int) -> KLSchedule:
        """The KL weight schedule of a ``steps``-step run.

        Args:
            steps: The run's training steps.

        Returns:
            Constant 1 without ``kl_anneal``, else the linear warm-up it gives in fractions of
            ``steps``.
        """
        if self.kl_anneal is None:
            return constant(1.0)
        start, length = self.kl_anneal
        return annealing(round(start * steps), round(length * steps))


def bbh_spec(generator: str, kl: str, *, lr: float | None = None, **options: Any) -> MethodSpec:
    """BbH with ``generator`` and estimator ``kl``: S = 5 samples, likelihood on every sample.

    The other options are the paper's (``preset="paper"``: noise 8, hidden 64-256-512, aligned,
    purely implicit); semi-implicit estimators need ``weight_noise`` in ``options``.
    """
    return MethodSpec(
        label=f"bbh-{generator}-{kl}",
        method="bbh",
        options={
            "preset": "paper",
            "generator": generator,
            "kl": kl,
            "num_samples": 5,
            "nll": "mean",
            **options,
        },
        lr=lr,
    )


#: Every method of the registry; BbH with each current estimator and both generators.
METHOD_SPECS: list[MethodSpec] = [
    MethodSpec("map", "map", lr=1e-2, steps=2000),
    MethodSpec("mc_dropout", "mc_dropout", {"p": 0.2}, lr=1e-2, steps=2000),
    # ten members trained at once, each on clean and adversarial inputs
    MethodSpec(
        "ensemble", "ensemble", {"num_members": 10}, lr=1e-2, steps=1000, predict_samples=10
    ),
    MethodSpec("bbb", "bbb", {"init_log_var": -6.0, "num_train_samples": 4}, lr=1e-2, steps=2000),
    MethodSpec("mnf", "mnf", {"init_log_var": -6.0, "max_std": 1.0}, lr=1e-2, steps=2000),
    bbh_spec("layerwise", "nn_full", lr=1e-3),
    bbh_spec("layerwise", "nn_coordinate", lr=1e-3),
    bbh_spec("layerwise", "entropy", lr=1e-3),
    bbh_spec("layerwise", "entropy_coordinate", lr=1e-3),
    bbh_spec("layerwise", "discriminator", lr=1e-3),
    bbh_spec("chunked", "nn_full", lr=1e-2),
    bbh_spec("chunked", "nn_coordinate", lr=1e-2),
    bbh_spec("chunked", "entropy", lr=1e-2),
    bbh_spec("chunked", "entropy_coordinate", lr=1e-2),
    bbh_spec("chunked", "discriminator", lr=1e-2),
    # ours: the semi-implicit posterior with the Jacobian entropy (and the SIVI bound to compare)
    MethodSpec("bbh-recommended", "bbh", lr=1e-2),  # the defaults (preset "recommended")
    # the defaults of nets above SMALL_NET_WEIGHTS (every case here is below): chunked, S = 2
    MethodSpec(
        "bbh-recommended-large",
        "bbh",
        {"generator": "chunked", "num_samples": 2, "nll": "split"},
        lr=1e-2,
    ),
    # ablation: those without the chunks' linear noise path and the antithetic pairs
    MethodSpec(
        "bbh-recommended-plain",
        "bbh",
        {"noise_mixing": False, "antithetic": False, "num_samples": 2, "nll": "split"},
        lr=1e-2,
    ),
    bbh_spec("chunked", "jacobian", lr=1e-2, weight_noise=0.01, hidden=(64, 32), noise_dim=32),
    bbh_spec("chunked", "sivi", lr=1e-2, weight_noise=0.01, hidden=(64, 16), noise_dim=8),
    # an affine generator (hidden=()): q = N(b, A A^T + diag sigma^2), the Jacobian estimator exact
    MethodSpec("bbh-affine-k8", "bbh", {"generator": "layerwise", "hidden": ()}, lr=1e-2),
    # the small-net defaults' generator and samples with k = 512 on every case (linear-500: std
    # ratio 0.78 with 32 samples, 0.90 with 64: the gradient noise, not the family, is left)
    MethodSpec(
        "bbh-affine-s64",
        "bbh",
        {
            "generator": "layerwise",
            "hidden": (),
            "noise_dim": 512,
            "num_samples": 64,
            "nll": "mean",
        },
        lr=1e-2,
    ),
    # an affine generator with k >= D: the family holds every Gaussian and the estimator is exact
    # there, so what is left is optimisation (10 samples, 15,000 steps)
    MethodSpec(
        "bbh-affine-jacobian",
        "bbh",
        {
            "generator": "layerwise",
            "hidden": (),
            "noise_dim": 512,
            "kl": "jacobian",
            "weight_noise": 0.01,
            "num_samples": 10,
            "nll": "mean",
        },
        lr=3e-3,
        steps=15000,
    ),
    # the output layer integrated exactly (regression nets with hidden layers: the toy); the
    # hypernet generates the hidden layer with the small-net defaults
    MethodSpec(
        "bbh-exact-last-layer", "bbh", {"last_layer": "exact"}, lr=1e-2, steps=600, cases=("toy",)
    ),
]


def select_specs(
    names: Sequence[str] | None, specs: Sequence[MethodSpec] = METHOD_SPECS
) -> list[MethodSpec]:
    """Specs whose label or registry name is in ``names`` (None or ``["all"]``: every spec)."""
    if names is None or list(names) == ["all"]:
        return list(specs)
    labels = {s.label for s in specs} | {s.method for s in specs}
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise ValueError(
            f"unknown method(s) {unknown}; allowed: labels {[s.label for s in specs]}, "
            f"registry names {sorted({s.method for s in specs})} or 'all'"
        )
    return [s for s in specs if s.label in names or s.method in names]
