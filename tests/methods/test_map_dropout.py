"""MAP weight decay and MC dropout specifics."""

from __future__ import annotations

import pytest
import torch
from method_helpers import make_net
from torch import nn

from bbh.methods import build
from bbh.methods.map import WeightDecay, l2_penalty
from bbh.nets.lenet import LeNet5


def test_map_weight_decay_forms() -> None:
    net = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))
    kernels = sum(m.weight.pow(2).sum() for m in (net[0], net[2]))
    everything = sum(p.pow(2).sum() for p in net.parameters())
    s = 2.0
    torch.testing.assert_close(l2_penalty(net, WeightDecay.PAPER, s), kernels / (2 * s))
    torch.testing.assert_close(l2_penalty(net, WeightDecay.GAUSSIAN, s), everything / (2 * s**2))
    assert l2_penalty(net, WeightDecay.NONE, s) == 0.0


def test_map_loss_is_nll_plus_scaled_penalty() -> None:
    net, x, y = make_net("mlp")
    method = build("map", net, weight_decay="paper", prior_scale=0.5)
    loss, logs = method.loss(x, y, num_data=50, kl_weight=0.3)
    nll = nn.functional.cross_entropy(net(x), y)
    kernels = sum(p.pow(2).sum() for p in net.parameters() if p.dim() >= 2)
    torch.testing.assert_close(loss, nll + 0.3 * kernels / (2 * 0.5) / 50)
    torch.testing.assert_close(logs["nll"], nll.detach())
    assert not method.stochastic
    out = method.predict_logits(x, 5)
    torch.testing.assert_close(out[0], out[4])
    with pytest.raises(ValueError, match="weight_decay"):
        build("map", net, weight_decay="l1")


def test_dropout_goes_after_the_lenet_relus_like_the_paper() -> None:
    method = build("mc_dropout", LeNet5(), p=0.5)
    assert method.dropout_sites == ("relu1", "relu2", "relu3")


def test_dropout_stays_on_in_eval_mode_and_everything_else_follows_eval() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    method = build("mc_dropout", net, p=0.5)
    method.eval()
    x = torch.randn(5, 4)
    a, b = method.predict_logits(x, 2)
    assert not torch.allclose(a, b)  # dropout active
    assert not method.net[1].training  # BatchNorm follows eval()
    before = method.net[1].running_mean.clone()
    method.predict_logits(x, 2)
    torch.testing.assert_close(method.net[1].running_mean, before)


def test_existing_dropout_modules_are_used_with_the_given_p() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 2))
    method = build("mc_dropout", net, p=0.4)
    assert method.dropout_sites == ("2",)
    assert method.net[2].p == 0.4
    method.eval()
    x = torch.ones(1000, 4)
    h = method.net[:3](x)
    assert 0.3 < (h == 0).float().mean().item() < 0.5
    assert net[2].p == 0.1 and type(net[2]) is nn.Dropout


def test_insert_after_named_modules() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    method = build("mc_dropout", net, p=0.5, insert_after=["0"])
    assert method.dropout_sites == ("0",)
    with pytest.raises(ValueError, match="no module"):
        build("mc_dropout", net, insert_after=["fc9"])


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5, float("nan")])
def test_dropout_probability_outside_0_1_is_an_error(p: float) -> None:
    net, _, _ = make_net("mlp")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        build("mc_dropout", net, p=p)


def test_net_without_activation_modules_needs_insert_after() -> None:
    with pytest.raises(ValueError, match="insert_after"):
        build("mc_dropout", _Functional())
    build("mc_dropout", _Functional(), insert_after=["fc"])


@pytest.mark.parametrize("p", [0.2, 0.5])
@pytest.mark.parametrize("inplace", [False, True])
def test_always_dropout_keeps_each_element_with_probability_1_minus_p(p, inplace) -> None:
    """``always_dropout`` (the CPU's faster mask) has F.dropout's distribution: elements kept
    independently with probability 1 - p and scaled by 1 / (1 - p); gradients flow the same."""
    from bbh.methods.mc_dropout import always_dropout

    torch.manual_seed(0)
    x = torch.rand(200_000) + 0.5
    out = always_dropout(x.clone() if inplace else x, p, inplace=inplace)
    kept = out != 0
    n = x.numel()
    assert abs(float(kept.float().mean()) - (1 - p)) < 4 * (p * (1 - p) / n) ** 0.5
    torch.testing.assert_close(out[kept], x[kept] / (1 - p))
    pairs = kept[:-1].float() * kept[1:].float()  # neighbours independent
    assert abs(float(pairs.mean()) - (1 - p) ** 2) < 0.01
    leaf = torch.ones(1000, requires_grad=True)
    y = always_dropout(leaf, p)
    y.sum().backward()
    torch.testing.assert_close(leaf.grad, (y != 0).float() / (1 - p))
    assert torch.equal(always_dropout(x, 0.0), x)
