"""Deep ensemble specifics (Lakshminarayanan et al. 2017)."""

from __future__ import annotations

import pytest
import torch
from method_helpers import make_net
from torch import nn

from bbh.methods import build


def test_members_have_their_own_initialisation() -> None:
    net, _, _ = make_net("conv")
    method = build("ensemble", net, num_members=3)
    w = [m.conv1.weight for m in method.members]
    assert not torch.allclose(w[0], w[1]) and not torch.allclose(w[1], w[2])
    same = build("ensemble", net, num_members=2, init="copy")
    torch.testing.assert_close(same.members[0].conv1.weight, same.members[1].conv1.weight)


def test_prediction_is_the_mean_of_member_softmaxes_and_vmap_matches_loop() -> None:
    net, x, _ = make_net("conv")
    torch.manual_seed(0)
    method = build("ensemble", net, num_members=4, vectorize="vmap")
    member = torch.stack([m(x) for m in method.members])
    torch.testing.assert_close(method.predict_logits(x, 100), member)
    torch.testing.assert_close(method.predict(x), member.softmax(-1).mean(0))
    method.vectorize = type(method.vectorize)("loop")
    torch.testing.assert_close(method.predict_logits(x, 100), member)


def test_adversarial_loss_matches_a_hand_computation() -> None:
    net, x, y = make_net("mlp")
    method = build("ensemble", net, num_members=2, epsilon=0.05, alpha=0.5)
    loss, logs = method.loss(x, y, num_data=10)
    expected = 0.0
    for member in method.members:
        xr = x.clone().requires_grad_(True)
        ce = nn.functional.cross_entropy(member(xr), y)
        (g,) = torch.autograd.grad(ce, xr)
        adv = nn.functional.cross_entropy(member(x + 0.05 * g.sign()), y)
        expected = expected + 0.5 * ce + 0.5 * adv
    torch.testing.assert_close(loss, expected)
    assert "nll_adv" in logs


def test_split_data_order_gives_each_member_its_own_examples() -> None:
    net, x, y = make_net("mlp")
    method = build("ensemble", net, num_members=4, data_order="split", adversarial=False)
    loss, _ = method.loss(x, y, num_data=10)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="at least M=4"):
        method.loss(x[:3], y[:3], num_data=10)


@pytest.mark.parametrize("m", [0, -1, 1.5, True])
def test_fewer_than_one_member_is_an_error(m: object) -> None:
    net, _, _ = make_net("mlp")
    with pytest.raises(ValueError, match="num_members"):
        build("ensemble", net, num_members=m)


def test_module_without_reset_parameters_needs_init_copy() -> None:
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s = nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.s

    net = nn.Sequential(nn.Linear(2, 2), Scale())
    with pytest.raises(ValueError, match="reset_parameters"):
        build("ensemble", net, num_members=2)
    build("ensemble", net, num_members=2, init="copy")


def test_batchnorm_members_fall_back_to_a_loop() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    method = build("ensemble", net, num_members=2)
    loss, _ = method.loss(torch.randn(6, 3), torch.randint(0, 2, (6,)), num_data=6)
    loss.backward()
    assert all(m[1].num_batches_tracked.item() == 2 for m in method.members)
