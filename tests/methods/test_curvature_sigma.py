"""``sigma_update="curvature"``: sigma set to the ELBO's fixed point from averaged curvature
(``bbh.posteriors.curvature_sigma``), checked on Bayesian linear regression, whose posterior is
known, from two starts; its errors, optimiser groups and checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import bbh
from bbh.posteriors.curvature_sigma import CurvatureSigma
from bbh.training import FitHooks, TrainingInterrupted, TrainState, fit

DIM, NUM_DATA, STEPS = 8, 200, 1500


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(NUM_DATA, DIM, generator=gen)
    y = x @ torch.randn(DIM, generator=gen) + torch.randn(NUM_DATA, generator=gen)
    return x, y[:, None]


def _model(weight_noise: float) -> bbh.BayesByHypernet:
    torch.manual_seed(0)
    return bbh.BayesByHypernet(
        nn.Linear(DIM, 1, bias=False),
        likelihood="gaussian",
        noise_scale=1.0,
        prior="isotropic",
        prior_scale=1.0,
        temperature=1.0,
        generator="layerwise",
        hidden=(),
        noise_dim=1,
        weight_noise=weight_noise,
        sigma_update="curvature",
    )


def _marginal_std(model: bbh.BayesByHypernet) -> torch.Tensor:
    with torch.no_grad():
        loadings = torch.cat(model.hypernet.generator.noise_loadings())  # [D, k]
        return (loadings.pow(2).sum(-1) + model.hypernet.sigma().pow(2)).sqrt()


def test_sigma_reaches_the_known_posterior_from_either_start() -> None:
    """Minibatch steps (the curvature's estimate is noisy): both starts end on the exact
    posterior's marginal stds (rank-1 + diagonal q lies between mean field and exact) and
    within 10% of each other, a start 5 times higher notwithstanding."""
    x, y = _data()
    precision = x.T @ x + torch.eye(DIM)
    exact = torch.linalg.inv(precision).diagonal().sqrt()
    mean_field = precision.diagonal().rsqrt()
    ends = []
    for start in (0.01, 0.05):
        model = _model(start)
        fit(model, x, y, steps=STEPS, batch_size=50, log_every=STEPS)
        std = _marginal_std(model)
        assert (std > 0.9 * mean_field).all() and (std < 1.1 * exact).all(), (start, std, exact)
        ends.append(std)
    ratio = ends[1] / ends[0]
    assert ratio.min() > 0.9 and ratio.max() < 1.1, ratio


def test_the_fixed_point_of_a_known_curvature() -> None:
    """Given the curvature and the free share exactly, sigma^2 = c (1 - rho) / (h + c / s^2)."""
    c, h, s = 0.01, torch.tensor([0.0, 1.0, 4.0]), 2.0
    update = CurvatureSigma(3, beta=0.5, warmup=0)
    log_sigma = torch.zeros(3)
    # a loss gradient in log sigma of sigma^2 h + c (sigma^2 / s^2 - 1 + rho), here rho = 0.25
    kl_grad = log_sigma.exp().pow(2) / s**2 - 1 + 0.25
    loss_grad = log_sigma.exp().pow(2) * h + c * kl_grad
    new = update.update(log_sigma, loss_grad, kl_grad, c, s)
    assert new is not None
    torch.testing.assert_close(new.exp().pow(2), c * 0.75 / (h + c / s**2))
    assert update.update(log_sigma, loss_grad, kl_grad, 0.0, s) is None  # no KL: no update


def test_sigma_is_left_out_of_the_optimiser_and_its_gradient_cleared() -> None:
    x, y = _data()
    model = _model(0.01)
    groups = model.optimizer_groups(1e-3)
    grouped = {id(p) for g in groups for p in g["params"]}
    assert id(model.hypernet.log_sigma_param) not in grouped
    fit(model, x, y, steps=3, batch_size=50)
    assert model.hypernet.log_sigma_param.grad is None
    assert int(model.sigma_curvature.steps) == 3
    assert model.resolved_options["sigma_update"] == "curvature"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sigma_update": "newton"}, "unknown sigma_update 'newton'; allowed"),
        ({"sigma_update": "curvature", "weight_noise": None, "kl": "entropy"}, "needs a sigma"),
        ({"sigma_update": "curvature", "sigma_per": "unit"}, "needs a sigma per weight"),
    ],
)
def test_bad_sigma_update_options_are_named(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        bbh.BayesByHypernet(nn.Linear(3, 2), hidden=(4,), **options)


class _StopAt(FitHooks):
    """Asks the run to stop after ``stop_at`` steps; keeps the checkpoint it then writes."""

    def __init__(self, stop_at: int):
        self.stop_at, self.step = stop_at, 0
        self.states: list[TrainState] = []

    def on_step(self, step: int) -> None:
        self.step = step

    def on_checkpoint(self, state: TrainState) -> None:
        self.states.append(state)

    def should_stop(self) -> bool:
        return self.step >= self.stop_at


def test_a_resumed_run_continues_the_averages_exactly() -> None:
    """The averages are buffers: a checkpoint holds them, and a run stopped and resumed after
    the warm-up takes the same steps as one run through."""
    x, y = _data()

    def train(model, hooks=None, resume=None):
        return fit(model, x, y, steps=250, batch_size=50, seed=2, hooks=hooks, resume=resume)

    plain = _model(0.01)
    train(plain)
    stopped, stopper = _model(0.01), _StopAt(130)
    with pytest.raises(TrainingInterrupted):
        train(stopped, stopper)
    resumed = _model(0.01)
    train(resumed, resume=stopper.states[-1])
    for (k, a), b in zip(plain.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
