"""The peers (bbh.peers): laplace-torch's Laplace, IVON and our SWAG behind bbh.Method.

Tiny MLP on a synthetic 3-class task; the tests of a peer whose package is missing skip, naming
the extra (scripts/install_peers.sh installs it).
"""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest
import torch
from torch import nn

from bbh.nets import MLP
from bbh.peers import PeerPackageMissing, fit_laplace, train_peer

HAS_LAPLACE = importlib.util.find_spec("laplace") is not None
HAS_IVON = importlib.util.find_spec("ivon") is not None
NEEDS = "needs the peers extra (bash scripts/install_peers.sh)"
needs_laplace = pytest.mark.skipif(not HAS_LAPLACE, reason=f"laplace-torch missing: {NEEDS}")
needs_ivon = pytest.mark.skipif(not HAS_IVON, reason=f"ivon-opt missing: {NEEDS}")

PEERS = [
    pytest.param("laplace", marks=needs_laplace),
    pytest.param("laplace_all", marks=needs_laplace),
    pytest.param("ivon", marks=needs_ivon),
    "swag",
]
STEPS, BATCH = 150, 50


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[2.0, 0.0, 0.0, 0.0], [-1.0, 1.7, 0.0, 0.0], [-1.0, -1.7, 0.0, 0.0]])
    y = torch.randint(0, 3, (n,), generator=g)
    return centers[y] + 0.8 * torch.randn(n, 4, generator=g), y


@pytest.fixture(scope="module")
def data():
    return blobs(300, 0), blobs(200, 1)


def train(name, data, seed=0, **options):
    (x, y), _ = data
    torch.manual_seed(seed)
    return train_peer(name, MLP(4, [16], 3), x, y, steps=STEPS, batch_size=BATCH, seed=seed,
                      **options)  # fmt: skip


@pytest.mark.parametrize("name", PEERS)
def test_peer_trains_and_predicts(name, data):
    model = train(name, data)
    _, (xt, yt) = data
    torch.manual_seed(0)
    probs = model.predict(xt, num_samples=16)
    assert probs.shape == (200, 3)
    assert torch.all(probs >= 0)
    torch.testing.assert_close(probs.sum(1), torch.ones(200), atol=1e-5, rtol=0)
    accuracy = (probs.argmax(1) == yt).float().mean().item()
    assert accuracy > 0.8, f"{name}: accuracy {accuracy:.3f} (chance 0.33)"
    assert model.train_seconds > 0
    # predict_logits: S draws with gradients to the inputs (the attacks' EOT)
    x = xt[:5].clone().requires_grad_()
    logits = model.predict_logits(x, num_samples=4)
    assert logits.shape == (4, 5, 3)
    logits.logsumexp(-1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", PEERS)
def test_peer_deterministic_under_seed(name, data):
    _, (xt, _) = data
    out = []
    for _ in range(2):
        model = train(name, data, seed=3)
        torch.manual_seed(5)
        out.append(model.predict(xt, num_samples=8))
    torch.testing.assert_close(out[0], out[1], atol=0, rtol=0)


@needs_laplace
def test_laplace_optimises_prior_precision(data):
    model = train("laplace", data, prior_scale=1.0)  # the marginal-likelihood fit starts at 1
    precision = model.prior_precision
    assert torch.all(torch.isfinite(precision))
    assert not torch.allclose(precision, torch.ones_like(precision)), precision
    assert model.fit_seconds > 0


@needs_laplace
def test_laplace_matches_closed_form_on_logistic_regression(data):
    """Full-weight Laplace of multinomial logistic regression: the net is linear in its weights,
    so the GGN is the exact Hessian and the GLM predictive is known in closed form:
    f ~ N(W x + b, J Sigma J^T), Sigma = (H + diag(prior precision))^-1. The probit predictive
    must match it exactly, and the logit draws of predict_logits its variance within 5%."""
    (x, y), (xt, _) = data
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    model = train_peer("laplace", net, x, y, steps=STEPS, batch_size=BATCH, subset="all",
                       hessian="full")  # fmt: skip
    trained = model.net
    w0 = torch.cat([p.detach().reshape(-1) for p in trained.parameters()])
    names = [n for n, _ in trained.named_parameters()]
    shapes = [p.shape for p in trained.parameters()]

    def logits_of(w, inputs):
        parts, offset = {}, 0
        for n, s in zip(names, shapes, strict=True):
            parts[n] = w[offset : offset + s.numel()].view(s)
            offset += s.numel()
        return torch.func.functional_call(trained, parts, (inputs,))

    def nll(w):
        return nn.functional.cross_entropy(logits_of(w, x), y, reduction="sum")

    hessian = torch.autograd.functional.hessian(nll, w0)
    precision = model.prior_precision.expand(w0.numel())
    sigma = torch.linalg.inv(hessian + torch.diag(precision))
    xs = xt[:6]
    jac = torch.autograd.functional.jacobian(lambda w: logits_of(w, xs), w0)  # [B, C, P]
    f_mu = logits_of(w0, xs).detach()
    f_var = torch.einsum("bcp,pq,bdq->bcd", jac, sigma, jac)
    kappa = 1 / torch.sqrt(1 + math.pi / 8 * f_var.diagonal(dim1=1, dim2=2))
    torch.testing.assert_close(model.predict(xs), torch.softmax(kappa * f_mu, -1), atol=1e-4,
                               rtol=0)  # fmt: skip
    torch.manual_seed(0)
    draws = model.predict_logits(xs, num_samples=20000).detach()
    var = f_var.diagonal(dim1=1, dim2=2)  # [B, C]
    assert torch.all((draws.mean(0) - f_mu).abs() < 0.05 * var.sqrt() + 1e-3)
    ratio = draws.var(0) / var
    assert torch.all((ratio - 1).abs() < 0.05), ratio
    # the probit view scores that closed form through predict_logits (one draw of log-probs)
    probit = model.with_link("probit")
    logits = probit.predict_logits(xs, num_samples=7)
    assert logits.shape == (1, 6, 3) and model.link == "mc"
    torch.testing.assert_close(logits[0].softmax(-1), torch.softmax(kappa * f_mu, -1), atol=1e-4,
                               rtol=0)  # fmt: skip
    with pytest.raises(ValueError, match="link must be one of"):
        model.with_link("bridge")


@needs_laplace
def test_fit_laplace_on_a_trained_method(data):
    from bbh.methods import MAP
    from bbh.training import fit

    (x, y), (xt, yt) = data
    torch.manual_seed(0)
    map_model = MAP(MLP(4, [16], 3))
    fit(map_model, x, y, steps=STEPS, batch_size=BATCH)
    peer = fit_laplace(map_model, x, y)  # a Method in: its net is used
    probs = peer.predict(xt)
    assert (probs.argmax(1) == yt).float().mean() > 0.8
    with pytest.raises(NotImplementedError, match="post hoc"):
        peer.loss(x, y, num_data=len(x))


def test_swag_batch_norm_update_and_shared_draws(data):
    (x, y), (xt, _) = data
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))
    model = train_peer("swag", net, x, y, steps=STEPS, batch_size=BATCH, rank=5, snapshots=10)
    assert int(model.num_collected) == 10
    draws = model.draw_predictive(3)
    assert draws.shape == (3, model._num_weights() + 2 * 16)  # weights + BN mean and variance
    assert not torch.equal(draws[0, -32:], draws[1, -32:])  # statistics recomputed per draw
    whole = model.predict_logits_with(draws, xt)
    halves = torch.cat([model.predict_logits_with(draws, xt[:100]),
                        model.predict_logits_with(draws, xt[100:])], dim=1)  # fmt: skip
    torch.testing.assert_close(whole, halves)


def test_swag_rejects_too_short_runs(data):
    (x, y), _ = data
    with pytest.raises(ValueError, match="snapshots"):
        train_peer("swag", MLP(4, [8], 3), x, y, steps=2, batch_size=BATCH, burn_in=0.5)


def test_missing_package_names_the_extra(monkeypatch, data):
    (x, y), _ = data
    monkeypatch.setitem(sys.modules, "ivon", None)  # import ivon raises ImportError
    with pytest.raises(PeerPackageMissing, match="peers"):
        train_peer("ivon", MLP(4, [8], 3), x, y, steps=2, batch_size=BATCH)


def test_unknown_peer(data):
    (x, y), _ = data
    with pytest.raises(ValueError, match="unknown peer"):
        train_peer("hmc", MLP(4, [8], 3), x, y, steps=2, batch_size=BATCH)


@needs_laplace
@needs_ivon
def test_guide_example_runs():
    """docs/peers.md's Python example, as written."""
    from pathlib import Path

    guide = Path(__file__).resolve().parents[2] / "docs" / "peers.md"
    text = guide.read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, str(guide), "exec"), {})


def test_peer_settings_name_the_defaults_and_the_package(monkeypatch):
    from bbh.peers import PEERS, peer_settings

    ivon = peer_settings("ivon")
    assert ivon["lr"] == "1.0" and ivon["hess_init"] == "1.0"
    assert ivon["package"].startswith("ivon-opt")
    assert peer_settings("swag")["package"] == "bbh (our implementation)"
    laplace = peer_settings("laplace_all")  # the trainer's and fit_laplace's defaults
    assert laplace["subset"] == "'all'" and "marglik_steps" in laplace

    def changed(net, x, y, *, steps, batch_size, seed=0, lr=0.5, hess_init=1.0):
        raise AssertionError("not called")

    monkeypatch.setitem(PEERS, "ivon", changed)
    assert peer_settings("ivon")["lr"] == "0.5"  # bbh compare then scores the row again
    with pytest.raises(ValueError, match="unknown peer 'nope'"):
        peer_settings("nope")


@pytest.mark.parametrize("name", [pytest.param("ivon", marks=needs_ivon), "swag"])
def test_peer_trains_on_uint8_images_through_the_batch_transform(name):
    """As CIFAR-5 reaches them: uint8 images that only the augmentation makes floats."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (60, 1, 4, 4), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 2, (60,), generator=g)

    def to_float(batch, generator):
        return batch.float().flatten(1) / 255.0

    peer = train_peer(name, MLP(16, [8], 2), x, y, steps=40, batch_size=20, seed=0,
                      transform=to_float)  # fmt: skip
    probs = peer.predict(to_float(x[:5], None), num_samples=3)
    assert probs.shape == (5, 2) and torch.isfinite(probs).all()
