"""The posterior's scales reach their optimum within a short run (the default ``sigma_rate``).

Bayesian linear regression with a known posterior: an affine generator with a rank-1 noise path
(``noise_dim=1``), so the learned per-weight sigma carries almost all of q's spread. A short run
at the default rate must land within 10% of a long run's marginal stds, and both on the exact
posterior's; at the old rate (1e-3, a cap that bound sigma) the short run cannot.
"""

from __future__ import annotations

import torch
from torch import nn

import bbh
from bbh.methods.bbb import BayesByBackprop
from bbh.training import fit

DIM, NUM_DATA, SHORT, LONG = 8, 40, 400, 3000


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(NUM_DATA, DIM, generator=gen)
    y = x @ torch.randn(DIM, generator=gen) + torch.randn(NUM_DATA, generator=gen)
    return x, y[:, None]


def _posterior_precision(x: torch.Tensor) -> torch.Tensor:
    return x.T @ x + torch.eye(DIM)  # noise 1, prior N(0, I)


def _marginal_std(steps: int, **options: float) -> torch.Tensor:
    """q's marginal std per weight after ``steps`` full-batch steps (exact for the affine q)."""
    torch.manual_seed(0)
    x, y = _data()
    model = bbh.BayesByHypernet(
        nn.Linear(DIM, 1, bias=False),
        likelihood="gaussian",
        noise_scale=1.0,
        prior="isotropic",
        prior_scale=1.0,
        temperature=1.0,
        generator="layerwise",
        hidden=(),
        noise_dim=1,
        **options,
    )
    fit(model, x, y, steps=steps, batch_size=NUM_DATA, log_every=steps)
    gen = model.posterior.generator
    with torch.no_grad():
        loadings = torch.cat(gen.noise_loadings())  # [D, k]
        return (loadings.pow(2).sum(-1) + model.posterior.sigma().pow(2)).sqrt()


def test_a_short_run_reaches_the_long_runs_sigma_at_the_default_rate() -> None:
    precision = _posterior_precision(_data()[0])
    exact = torch.linalg.inv(precision).diagonal().sqrt()
    # q's family (rank-1 + diagonal) lies between the mean-field optimum and the exact posterior
    mean_field = precision.diagonal().rsqrt()
    long = _marginal_std(LONG)
    assert (long > 0.9 * mean_field).all() and (long < 1.1 * exact).all(), (long, exact)
    short = _marginal_std(SHORT)
    ratio = short / long
    assert ratio.min() > 0.9 and ratio.max() < 1.1, ratio
    # the old rate is a cap: the same short run stops far below the optimum
    capped = _marginal_std(SHORT, sigma_rate=1e-3) / long
    assert capped.max() < 0.9, capped


def test_a_saved_sigma_loads_as_the_same_sigma_whatever_the_rate() -> None:
    """``log sigma`` is stored divided by a rate-dependent scale: a file of another rate, or of
    before the scale was saved (then the old default, 1e-3), loads to the same sigmas."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 40), nn.ReLU(), nn.Linear(40, 3))  # 1,123 weights: chunked
    slow = bbh.BayesByHypernet(net, sigma_rate=1e-3)
    with torch.no_grad():
        slow.posterior.log_sigma_param.uniform_(-5, -1)
    sigma = slow.posterior.sigma()
    fast = bbh.BayesByHypernet(net)  # the default rate, 30 times the scale
    fast.load_state_dict(slow.state_dict())
    torch.testing.assert_close(fast.posterior.sigma(), sigma)
    old = {
        k: v
        for k, v in slow.state_dict().items()
        if k not in ("temperature", "posterior.saved_log_sigma_scale")
    }
    legacy = bbh.BayesByHypernet(net)
    legacy.load_state_dict(old)  # a file from before issue 25: trained at 1e-3
    torch.testing.assert_close(legacy.posterior.sigma(), sigma)
    options = bbh.BayesByHypernet.options_for_state_dict({}, old)
    assert options["sigma_rate"] == 1e-3 and options["temperature"] == 1.0
    assert options["prior"] == "isotropic"


def _lenet_like() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 40), nn.ReLU(), nn.Linear(40, 3))  # 403 weights


def test_the_shared_tensor_scale_multiplies_each_tensors_sigmas() -> None:
    """``sigma_tensor_scale``: ``log sigma = log r_i + log s_t``; the shared scale's gradient is
    the sum of its tensor's per-weight gradients (what lets Adam move it at the tensor's
    signal-to-noise ratio), and a file without it loads to the same sigmas."""
    torch.manual_seed(0)
    model = bbh.BayesByHypernet(_lenet_like(), sigma_tensor_scale=True)
    post = model.posterior
    assert post.tensor_sizes == (240, 40, 120, 3)
    with torch.no_grad():
        post.log_sigma_param.uniform_(-5, -2).div_(post.log_sigma_scale)
        post.log_sigma_tensor_param.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
        post.log_sigma_tensor_param.div_(post.log_sigma_scale)
    per_weight = post.log_sigma_param * post.log_sigma_scale
    shift = (post.log_sigma_tensor_param * post.log_sigma_scale).repeat_interleave(
        torch.tensor(post.tensor_sizes)
    )
    torch.testing.assert_close(post.log_sigma, per_weight + shift)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    loss, _ = model.loss(x, y, num_data=100)
    loss.backward()
    sums = torch.stack([g.sum() for g in post.log_sigma_param.grad.split(post.tensor_sizes)])
    torch.testing.assert_close(post.log_sigma_tensor_param.grad, sums)
    # in the constant-rate group with the per-weight scales
    groups = model.optimizer_groups(1e-3)
    assert any(
        g.get("lr_schedule") == "constant"
        and any(p is post.log_sigma_tensor_param for p in g["params"])
        for g in groups
    )
    assert sum(len(g["params"]) for g in groups) == len(
        [p for p in model.parameters() if p.requires_grad]
    )
    # a file written without the shared scales: the same sigmas (scale 0)
    plain = bbh.BayesByHypernet(_lenet_like(), sigma_tensor_scale=False)
    with torch.no_grad():
        plain.posterior.log_sigma_param.uniform_(-5, -2).div_(plain.posterior.log_sigma_scale)
    shared = bbh.BayesByHypernet(_lenet_like(), sigma_tensor_scale=True)
    shared.load_state_dict(plain.state_dict())
    torch.testing.assert_close(shared.posterior.sigma(), plain.posterior.sigma())


def _median_sigmas(start: float, tensor_scale: bool) -> torch.Tensor:
    """Per-tensor median sigma after 300 minibatch steps from ``start`` (3-class MLP)."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 20, generator=gen)
    teacher = torch.randn(20, 3, generator=gen)
    y = torch.distributions.Categorical(logits=2 * x @ teacher / 20**0.5).sample()
    net = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))  # 1,539: chunked
    model = bbh.BayesByHypernet(
        net, weight_noise=start, sigma_tensor_scale=tensor_scale, temperature=0.03
    )
    fit(model, x, y, steps=300, batch_size=100, log_every=300)
    sigma = model.posterior.sigma().detach().split([e.numel for e in model.spec])
    return torch.stack([s.median() for s in sigma])


def test_the_shared_scale_forgets_sigmas_start_within_a_short_run() -> None:
    """Started at 0.01 and at 0.05, the weights' sigmas end where the data put them only with
    the shared tensor scale: per weight, the entropy's pull on a weakly constrained sigma is
    far below its gradient's noise, so Adam barely moves it (docs/methods.md)."""
    weights = [0, 2]  # the two weight matrices (the biases have 64 and 3 entries)
    shared = _median_sigmas(0.05, True) / _median_sigmas(0.01, True)
    assert (shared[weights] - 1).abs().max() < 0.1, shared
    plain = _median_sigmas(0.05, False) / _median_sigmas(0.01, False)
    assert plain[weights].max() > 1.3, plain


def test_bayes_by_backprop_takes_the_same_shared_scale() -> None:
    """The baseline gets the same parameterisation: a log-variance shift per tensor whose
    gradient is the sum of its tensor's, in the constant-rate group; old files load."""
    torch.manual_seed(0)
    model = BayesByBackprop(_lenet_like(), temperature=0.1)
    post = model.posterior
    assert post.tensor_sizes == (240, 40, 120, 3)
    with torch.no_grad():
        post.log_var_tensor.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    shift = post.log_var_tensor.repeat_interleave(torch.tensor(post.tensor_sizes))
    torch.testing.assert_close(post.std, (0.5 * (post.log_var + shift)).exp())
    loss, _ = model.loss(torch.randn(32, 6), torch.randint(0, 3, (32,)), num_data=100)
    loss.backward()
    sums = torch.stack([g.sum() for g in post.log_var.grad.split(post.tensor_sizes)])
    torch.testing.assert_close(post.log_var_tensor.grad, sums)
    (group,) = [g for g in model.optimizer_groups(1e-3) if g.get("lr_schedule") == "constant"]
    assert {id(p) for p in group["params"]} == {id(post.log_var), id(post.log_var_tensor)}
    plain = BayesByBackprop(_lenet_like(), sigma_tensor_scale=False)
    assert plain.posterior.log_var_tensor is None
    shared = BayesByBackprop(_lenet_like())
    shared.load_state_dict(plain.state_dict())
    torch.testing.assert_close(shared.posterior.std, plain.posterior.std)
