"""The cases of the posterior check: a model, its data, held-out inputs and a trusted reference.

Every case is an ordinary ``nn.Module`` that any registered method can be built around
(``bbh.build(name, case.make_net(), **case.options_for(name))``) and trained on with
``bbh.training.fit`` (full batch), with a reference it can be scored against:

| name | model | reference |
| --- | --- | --- |
| ``linear-D``, D = 20, 150, 500 | ``x . w``, N = 200, noise 1 (D = 500: N < D) | exact |
| ``logistic-2``, ``logistic-50`` | logistic regression, no bias | stored NUTS run |
| ``toy`` | the paper's 1-100-1 ReLU net, noise 9 | stored NUTS run (f only) |
| ``product`` | ``w2 * (w1 * x)``, two symmetric modes on a hyperbola | exact on a grid |

Every prior is ``N(0, I)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from bbh.data.toy import toy_regression
from bbh.experiments.posterior_check.references import (
    PosteriorReference,
    gaussian_linear_reference,
    load_stored_reference,
    product_grid_reference,
    read_stored_reference,
)
from bbh.nets import toy_regression_net


class LinearModel(nn.Module):
    """``f(x) = x . w``: ``nn.Linear(D, 1, bias=False)`` behind an identity on the inputs.

    The identity (``inputs``) only gives MC dropout a module to drop after
    (``insert_after=["inputs"]``); the parameter is ``linear.weight [1, D]``. With
    ``logistic=True`` the outputs are the two class logits ``[0, f]`` (``[B, 2]``), so the
    categorical likelihood is Bayesian logistic regression with logit f.
    """

    def __init__(self, dim: int, *, logistic: bool = False):
        super().__init__()
        self.inputs = nn.Identity()
        self.linear = nn.Linear(dim, 1, bias=False)
        self.logistic = logistic

    def forward(self, x: Tensor) -> Tensor:
        """The logit-pair (logistic) or the linear output of ``x``.

        Args:
            x: Inputs ``[N, ...]``.

        Returns:
            ``[N, 2]`` for the logistic case, else ``[N, 1]``.
        """
        f = self.linear(self.inputs(x))
        return torch.cat([torch.zeros_like(f), f], -1) if self.logistic else f


class ProductModel(nn.Module):
    """``f(x) = w2 * (w1 * x)``: a 1-1-1 linear net without biases (``first``, ``second``)."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs = nn.Identity()
        self.first = nn.Linear(1, 1, bias=False)
        self.second = nn.Linear(1, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``w2 * (w1 * x)``.

        Args:
            x: Inputs ``[N, 1]``.

        Returns:
            Outputs ``[N, 1]``.
        """
        return self.second(self.first(self.inputs(x)))


class FigureKind(str, Enum):
    """The figure a case draws."""

    STD_SCATTER = "std_scatter"  # predictive std per held-out input, method against reference
    WEIGHTS_2D = "weights_2d"  # weight draws over the reference's in a 2-D weight space
    BANDS = "bands"  # 1-D input: predictive mean +- 2 std against the reference's


@dataclass(frozen=True)
class PosteriorCase:
    """One model with data and a reference. Shapes: ``x [N, ...]``, ``x_test [T, ...]``."""

    name: str
    description: str
    make_net: Callable[[], nn.Module]
    x: Tensor
    y: Tensor
    x_test: Tensor
    likelihood: str  # "gaussian" (f is output 0) or "categorical" (f = logit 1 - logit 0)
    noise_scale: float | None
    reference: PosteriorReference
    figure: FigureKind
    budget: float = 1.0  # multiplies every method's training steps
    method_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    weights_note: str | None = None  # why weight metrics are n/a here, if they are

    def options_for(self, method: str) -> dict[str, Any]:
        """The likelihood options plus this case's extra options for registry name ``method``."""
        options: dict[str, Any] = {"likelihood": self.likelihood}
        if self.noise_scale is not None:
            options["noise_scale"] = self.noise_scale
        if method in TEMPERED_METHODS:  # the reference is the posterior under N(0, I), T = 1
            options.update(prior="isotropic", prior_scale=1.0, temperature=1.0)
        options.update(self.method_options.get(method, {}))
        return options

    def f_from_outputs(self, outputs: Tensor) -> Tensor:
        """``[S, T, C]`` outputs -> f ``[S, T]`` (the regression value, or the logistic logit)."""
        if self.likelihood == "categorical":
            return outputs[..., 1] - outputs[..., 0]
        return outputs[..., 0]


#: methods whose recommended model is tempered and has a fan-in prior: the checks ask for the
#: untempered posterior under the reference's prior instead
TEMPERED_METHODS = ("bbh", "bbb")

_DROP_INPUTS = {"mc_dropout": {"insert_after": ["inputs"]}}


def linear_regression_case(
    dim: int,
    *,
    num_data: int = 200,
    num_test: int = 500,
    seed: int | None = None,
    num_draws: int = 10_000,
) -> PosteriorCase:
    """Bayesian linear regression: ``x ~ N(0, I)``, ``w ~ N(0, I)``, ``y = x . w + N(0, 1)``."""
    gen = torch.Generator().manual_seed(1000 + dim if seed is None else seed)
    x = torch.randn(num_data, dim, generator=gen)
    w_true = torch.randn(dim, generator=gen)
    y = (x @ w_true + torch.randn(num_data, generator=gen))[:, None]
    x_test = torch.randn(num_test, dim, generator=gen)
    ref = gaussian_linear_reference(x, y, x_test, noise_std=1.0, num_draws=num_draws)
    regime = "N < D" if num_data < dim else "N >= D"
    return PosteriorCase(
        name=f"linear-{dim}",
        description=(
            f"Bayesian linear regression, D = {dim}, N = {num_data} ({regime}), noise 1, "
            "prior N(0, I); exact Gaussian posterior"
        ),
        make_net=lambda: LinearModel(dim),
        x=x,
        y=y,
        x_test=x_test,
        likelihood="gaussian",
        noise_scale=1.0,
        reference=ref,
        figure=FigureKind.WEIGHTS_2D if dim == 2 else FigureKind.STD_SCATTER,
        # N < D: the directions only the prior constrains have curvature 1 / N, and even MAP
        # needs about 6,000 Adam steps at lr 1e-2 to settle there (2,000 leave a 33% error)
        budget=3.0 if num_data < dim else 1.0,
        method_options=_DROP_INPUTS,
    )


def logistic_regression_case(dim: int) -> PosteriorCase:
    """Bayesian logistic regression (stored data and NUTS reference ``logistic-{dim}``)."""
    stored = read_stored_reference(f"logistic-{dim}")
    x = stored.tensor("x").float()
    return PosteriorCase(
        name=f"logistic-{dim}",
        description=(
            f"Bayesian logistic regression, D = {dim}, N = {len(x)}, no bias, prior N(0, I); "
            f"NUTS reference ({stored.info['chains']} chains)"
        ),
        make_net=lambda: LinearModel(dim, logistic=True),
        x=x,
        y=torch.from_numpy(stored.arrays["y"]).long(),
        x_test=stored.tensor("x_test").float(),
        likelihood="categorical",
        noise_scale=None,
        reference=load_stored_reference(stored, weights=True),
        figure=FigureKind.WEIGHTS_2D if dim == 2 else FigureKind.STD_SCATTER,
        method_options=_DROP_INPUTS,
    )


def toy_case() -> PosteriorCase:
    """The paper's toy (``bbh.data.toy``) against the stored NUTS run, in function space."""
    stored = read_stored_reference("toy")
    data = toy_regression()
    x_test = stored.tensor("x_test").float()[:, None]
    same = torch.allclose(stored.tensor("x").float(), data.x[:, 0]) and torch.allclose(
        stored.tensor("y").float(), data.y[:, 0]
    )
    if not same:
        raise ValueError("the stored toy reference was made on other data than bbh.data.toy")
    return PosteriorCase(
        name="toy",
        description=(
            "the paper's toy: 1-100-1 ReLU net, N = 20, noise 9, prior N(0, 1) on every weight "
            f"and bias; NUTS reference ({stored.info['chains']} chains), f on {len(x_test)} inputs"
        ),
        make_net=toy_regression_net,
        x=data.x,
        y=data.y,
        x_test=x_test,
        likelihood="gaussian",
        noise_scale=data.noise_std,
        reference=load_stored_reference(stored, weights=False),
        figure=FigureKind.BANDS,
        budget=5 / 3,
        weights_note="weights not identifiable (hidden units permute): function space only",
    )


def product_case(
    *,
    theta: float = 1.5,
    num_data: int = 20,
    noise_std: float = 1.0,
    seed: int = 7,
    grid_points: int = 1601,
    num_draws: int = 10_000,
) -> PosteriorCase:
    """``y = theta x + N(0, noise^2)`` fitted by ``f(x) = w2 w1 x``: the posterior lies near the
    hyperbola ``w1 w2 = theta`` with two symmetric modes, which a mean-field q cannot hold."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_data, 1, generator=gen)
    y = theta * x + noise_std * torch.randn(num_data, 1, generator=gen)
    x_test = torch.linspace(-3, 3, 12)[:, None]
    return PosteriorCase(
        name="product",
        description=(
            f"product model f(x) = w2 w1 x, theta = {theta:g}, N = {num_data}, noise "
            f"{noise_std:g}, prior N(0, I); bimodal, exact on a grid"
        ),
        make_net=ProductModel,
        x=x,
        y=y,
        x_test=x_test,
        likelihood="gaussian",
        noise_scale=noise_std,
        reference=product_grid_reference(
            x, y, x_test, noise_std=noise_std, points=grid_points, num_draws=num_draws
        ),
        figure=FigureKind.WEIGHTS_2D,
        method_options=_DROP_INPUTS,
    )


#: name -> factory. Cases are built on demand (each builds or loads its reference).
CASES: dict[str, Callable[[], PosteriorCase]] = {
    "linear-20": lambda: linear_regression_case(20),
    "linear-150": lambda: linear_regression_case(150),
    "linear-500": lambda: linear_regression_case(500),
    "logistic-2": lambda: logistic_regression_case(2),
    "logistic-50": lambda: logistic_regression_case(50),
    "toy": toy_case,
    "product": product_case,
}
