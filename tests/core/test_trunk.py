"""bbh.trunk: what no weight sample reaches runs once, and the outputs stay the same."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import bbh
from bbh import trunk
from bbh.functional import sampled_forward
from bbh.nets import CifarResNet, LeNet5
from bbh.nets.standard_resnet import resnet18


def _counting(module: nn.Module) -> list[int]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    module.register_forward_hook(hook)
    return calls


class TwoLayers(nn.Module):
    """``a`` (a point estimate) then ``b`` (sampled); subclasses say how ``forward`` joins them."""

    def __init__(self, out: int = 1) -> None:
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, out)


def _b_samples(net: TwoLayers, s: int) -> dict[str, Tensor]:
    """``s`` copies of ``net.b``'s own parameters, as sampled parameters."""
    return {f"b.{k}": v.detach().expand(s, *v.shape) for k, v in net.b.named_parameters()}


def _draws(method: bbh.BayesByHypernet, s: int) -> dict[str, Tensor]:
    return method.predictive_spec.unflatten(method.draw_predictive(s))


@pytest.mark.parametrize(
    "deterministic, shared",
    [(["conv1", "conv2"], ["conv1", "conv2"]), (["conv1", "conv2", "fc1"], ["conv1", "fc1"])],
)
def test_a_point_estimate_trunk_runs_once_and_gives_the_same_outputs(deterministic, shared):
    torch.manual_seed(0)
    method = bbh.build("bbh", LeNet5(), deterministic=deterministic).eval()
    calls = {name: _counting(method.net.get_submodule(name)) for name in [*shared, "fc2"]}
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        params = _draws(method, 5)
        whole = sampled_forward(method.net, params, x, mode="loop")
        assert {name: c[0] for name, c in calls.items()} == {n: 5 for n in [*shared, "fc2"]}
        split = sampled_forward(method.net, params, x, mode="loop", share_trunk=True)
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)
    # the shared call runs the trunk once; being the first, it also checks sample 0 through
    # the head and through the whole net
    assert {name: c[0] for name, c in calls.items()} == {
        **{n: 5 + 1 + 1 for n in shared},
        "fc2": 5 + (1 + 1) + 5,
    }


def test_every_weight_sampled_or_training_mode_runs_the_net_whole():
    torch.manual_seed(0)
    full = bbh.build("bbh", LeNet5())
    assert trunk.trunk_for(full.net.eval(), full.spec.names) is None  # nothing to share
    head = bbh.build("bbh", LeNet5(), deterministic=["conv1", "conv2"])
    assert trunk.trunk_for(head.net.train(), head.spec.names) is None  # BatchNorm, dropout
    assert trunk.trunk_for(head.net.eval(), head.spec.names) is not None


def test_random_numbers_are_drawn_per_sample_not_shared():
    class NoisyHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 8)
            self.out = nn.Linear(8, 2)

        def forward(self, x: Tensor) -> Tensor:
            h = torch.relu(self.body(x))
            return self.out(F.dropout(h, 0.5, training=True))  # always on, as MC dropout

    net = NoisyHead().eval()
    split = trunk.trunk_for(net, ["out.weight", "out.bias"])
    assert split is not None  # body is shared, the dropout is not
    same = {k: v.detach().expand(3, *v.shape) for k, v in net.out.named_parameters()}
    same = {f"out.{k}": v for k, v in same.items()}
    torch.manual_seed(0)
    out = sampled_forward(net, same, torch.randn(64, 4), mode="loop", share_trunk=True)
    assert not torch.equal(out[0], out[1])  # identical weights, different masks


def test_an_untraceable_net_is_run_whole():
    class Branchy(TwoLayers):
        def forward(self, x: Tensor) -> Tensor:
            h = self.a(x)
            if h.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                h = -h
            return self.b(h)

    net = Branchy().eval()
    assert trunk.trunk_for(net, ["b.weight", "b.bias"]) is None
    params = _b_samples(net, 2)
    x = torch.randn(5, 3)
    torch.testing.assert_close(
        sampled_forward(net, params, x, share_trunk=True), sampled_forward(net, params, x)
    )


@pytest.mark.parametrize("inplace", ["method", "module", "setitem"])
def test_a_shared_value_written_in_place_keeps_the_net_whole(inplace):
    class InPlace(TwoLayers):
        def __init__(self) -> None:
            super().__init__(out=3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: Tensor) -> Tensor:
            h = self.a(x)
            if inplace == "method":
                return h.add_(self.b(h))  # the shared h written by every sample's head
            if inplace == "setitem":
                h[:, 0] = self.b(h)[:, 0]  # the same by indexing (which fx refuses to trace)
                return self.b(h)
            return self.b(h) + self.relu(h)  # the trunk writes h after the head has read it

    net = InPlace().eval()
    assert trunk.trunk_for(net, ["b.weight", "b.bias"]) is None


def test_a_split_that_disagrees_with_the_net_is_dropped_with_a_warning():
    class Counting(TwoLayers):
        """Its forward reads Python state: fx bakes the value of its first (tracing) call."""

        def __init__(self) -> None:
            super().__init__()
            self.calls = 0

        def forward(self, x: Tensor) -> Tensor:
            self.calls += 1
            return self.b(self.a(x) * self.calls)

    net = Counting().eval()
    params = _b_samples(net, 2)
    x = torch.randn(5, 3)
    with torch.no_grad(), pytest.warns(RuntimeWarning, match="disagreed with the whole net"):
        out = sampled_forward(net, params, x, mode="loop", share_trunk=True)
    assert trunk.trunk_for(net, params) is None  # from now on: whole
    for sample, calls in ((0, net.calls - 1), (1, net.calls)):  # the whole net's last two
        torch.testing.assert_close(out[sample], net.b(net.a(x) * calls).detach())


def test_a_swapped_submodule_gets_a_new_split():
    torch.manual_seed(0)
    net = LeNet5().eval()
    sampled = ["fc2.weight", "fc2.bias"]
    first = trunk.trunk_for(net, sampled)
    net.relu3 = nn.Tanh().eval()  # a new module starts in training mode
    second = trunk.trunk_for(net, sampled)
    assert first is not None and second is not None and second is not first
    params = {f"fc2.{k}": v.detach().expand(3, *v.shape) for k, v in net.fc2.named_parameters()}
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(
            sampled_forward(net, params, x, share_trunk=True), sampled_forward(net, params, x)
        )


@pytest.mark.parametrize(
    "make_net, shape",
    [(CifarResNet, (3, 3, 24, 24)), (lambda: resnet18(width=8), (3, 3, 32, 32))],
    ids=["cifar_resnet", "resnet18"],
)
def test_resnets_with_a_bayesian_output_layer_share_their_features(make_net, shape):
    torch.manual_seed(0)
    net = make_net()
    body = [n for n, m in net.named_children() if n != "fc"]
    method = bbh.build("bbh", net, deterministic=body).eval()
    assert trunk.trunk_for(method.net, method.spec.names) is not None
    x = torch.randn(*shape)
    with torch.no_grad():
        params = _draws(method, 3)
        torch.testing.assert_close(
            sampled_forward(method.net, params, x, share_trunk=True),
            sampled_forward(method.net, params, x),
            rtol=1e-5,
            atol=1e-5,
        )


def test_bbh_and_bbb_predictions_use_the_shared_trunk():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 28, 28)
    for name in ("bbh", "bbb"):
        method = bbh.build(name, LeNet5(), deterministic=["conv1", "conv2"]).eval()
        trunk_calls = _counting(method.net.conv1)
        with torch.no_grad():
            method.predict_logits(x, num_samples=8)  # (the first also checks the split)
            before = trunk_calls[0]
            logits = method.predict_logits(x, num_samples=8)
        assert trunk_calls[0] - before == 1, name
        assert logits.shape == (8, 4, 10) and logits.std(0).min() > 0, name


def test_gradients_through_a_shared_trunk_are_the_whole_nets():
    """Attacks differentiate the prediction with respect to the input: the trunk, run once,
    must pass back the sum over samples that S whole passes do; so must its point estimates."""
    torch.manual_seed(0)
    method = bbh.build("bbh", LeNet5(), deterministic=["conv1", "conv2"]).eval()
    params = {k: v.detach() for k, v in _draws(method, 4).items()}
    x = torch.randn(3, 1, 28, 28)
    grads = []
    for share in (False, True):
        xi = x.clone().requires_grad_(True)
        method.zero_grad()
        out = sampled_forward(method.net, params, xi, mode="loop", share_trunk=share)
        out.log_softmax(-1)[..., 0].sum().backward()
        grads.append((xi.grad, method.net.conv1.weight.grad.clone()))
    torch.testing.assert_close(grads[1][0], grads[0][0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(grads[1][1], grads[0][1], rtol=1e-4, atol=1e-6)
