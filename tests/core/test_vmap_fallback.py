"""Sampled forward passes through modules without a vmap rule, on token ids and structures."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call

from bbh import batching, functional
from bbh.batching import VmapFallbackWarning
from bbh.functional import ParamSpec, sampled_forward


@pytest.fixture(autouse=True)
def fresh_knowledge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts knowing no module without a batching rule."""
    monkeypatch.setattr(batching, "_NO_RULE", set())
    monkeypatch.setattr(batching, "_WARNED", set())


class Recurrent(nn.Module):
    def __init__(self, cell: type[nn.RNNBase] = nn.LSTM) -> None:
        super().__init__()
        self.embedding = nn.Embedding(20, 4)
        self.rnn = cell(4, 5, batch_first=True)
        self.out = nn.Linear(5, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.embedding(tokens))
        return self.out(hidden[:, -1])


class RawLSTM(nn.Module):
    """A user module calling an operator without a batching rule itself."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTM(3, 2, batch_first=True)
        self.out = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cell
        weights = [c.weight_ih_l0, c.weight_hh_l0, c.bias_ih_l0, c.bias_hh_l0]
        zeros = x.new_zeros(1, x.shape[0], 2)
        out = torch.lstm(x, (zeros, zeros), weights, True, 1, 0.0, self.training, False, True)
        return self.out(out[0][:, -1])


def _reference(net: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    s = next(iter(params.values())).shape[0]
    return torch.stack(
        [functional_call(net, {k: v[i] for k, v in params.items()}, (x,)) for i in range(s)]
    )


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU, nn.RNN])
def test_recurrent_nets_fall_back_to_the_loop_once_with_one_warning(cell, monkeypatch):
    torch.manual_seed(0)
    net = Recurrent(cell)
    spec = ParamSpec.from_module(net)
    params = spec.unflatten(torch.randn(3, spec.dim) * 0.3)
    tokens = torch.randint(0, 20, (4, 6))
    with pytest.warns(VmapFallbackWarning, match=rf"{cell.__name__} has no torch.func.vmap") as w:
        out = sampled_forward(net, params, tokens, mode="vmap")
    assert len(w) == 1 and "3 sequential forward passes for 3 samples" in str(w[0].message)
    torch.testing.assert_close(out, _reference(net, params, tokens))
    # later calls go straight to the loop: vmap is not tried again, and nothing is said
    tried = []
    monkeypatch.setattr(functional, "_vmapped", lambda *a: tried.append(a))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = sampled_forward(net, params, tokens, mode="auto")
    assert not tried
    torch.testing.assert_close(again, out)


def test_the_module_that_raised_is_the_one_remembered():
    torch.manual_seed(0)
    net = RawLSTM()
    spec = ParamSpec.from_module(net)
    params = spec.unflatten(torch.randn(2, spec.dim) * 0.3)
    x = torch.randn(3, 4, 3)
    with pytest.warns(VmapFallbackWarning, match=r"RawLSTM has no .*\(aten::lstm\.input\)"):
        out = sampled_forward(net, params, x, mode="vmap")
    torch.testing.assert_close(out, _reference(net, params, x))
    assert batching.needs_loop(net) is RawLSTM
    assert batching.needs_loop(Recurrent()) is None  # nn.LSTM itself was not blamed


def test_split_batches_and_gradients_match_the_per_sample_forward():
    torch.manual_seed(0)
    net = Recurrent()
    spec = ParamSpec.from_module(net)
    flat = (torch.randn(2, spec.dim) * 0.3).requires_grad_(True)
    xs = torch.randint(0, 20, (2, 3, 5))  # [S, B/S, T]: each sample its share
    with pytest.warns(VmapFallbackWarning):
        out = sampled_forward(net, spec.unflatten(flat), xs, x_per_sample=True)
    (grad,) = torch.autograd.grad(out.square().sum(), flat)
    flat2 = flat.detach().clone().requires_grad_(True)
    params = spec.unflatten(flat2)
    ref = torch.stack(
        [functional_call(net, {k: v[i] for k, v in params.items()}, (xs[i],)) for i in range(2)]
    )
    (ref_grad,) = torch.autograd.grad(ref.square().sum(), flat2)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(grad, ref_grad)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(10, 3)
        self.dense = nn.Linear(2, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, tokens: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return self.out(self.embedding(tokens).mean(1) + self.dense(extra))


@pytest.mark.parametrize("structure", ["tuple", "dict"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_structures_agree_between_vmap_and_loop(structure, per_sample):
    torch.manual_seed(0)
    net = TwoInputs()
    spec = ParamSpec.from_module(net)
    params = spec.unflatten(torch.randn(3, spec.dim))
    lead = (3, 4) if per_sample else (4,)
    tokens, extra = torch.randint(0, 10, (*lead, 5)), torch.randn(*lead, 2)
    x = (tokens, extra) if structure == "tuple" else {"tokens": tokens, "extra": extra}
    looped = sampled_forward(net, params, x, mode="loop", x_per_sample=per_sample)
    vmapped = sampled_forward(net, params, x, mode="vmap", x_per_sample=per_sample)
    assert looped.shape == (3, 4, 2)
    torch.testing.assert_close(vmapped, looped)
    own = (tokens[0], extra[0]) if per_sample else (tokens, extra)  # sample 0's inputs
    first = functional_call(net, {k: v[0] for k, v in params.items()}, own)
    torch.testing.assert_close(looped[0], first)


def test_a_structure_with_the_wrong_sample_count_is_named():
    net = TwoInputs()
    params = ParamSpec.from_module(net).unflatten(torch.zeros(3, ParamSpec.from_module(net).dim))
    x = {"tokens": torch.zeros(3, 4, 5, dtype=torch.long), "extra": torch.zeros(2, 4, 2)}
    with pytest.raises(ValueError, match=r"x_per_sample needs x\['extra'\] of shape \[S=3, B"):
        sampled_forward(net, params, x, x_per_sample=True)


def test_attention_takes_its_measured_mode_without_pytorchs_warning():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    net = nn.Sequential(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False))
    spec = ParamSpec.from_module(net)
    params = spec.unflatten(spec.from_module_values(net).expand(2, -1))
    x = torch.randn(3, 4, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither ours nor PyTorch's "performance drop"
        vmapped = sampled_forward(net, params, x, mode="vmap")
        auto = sampled_forward(net, params, x, mode="auto")
    torch.testing.assert_close(vmapped[1], net(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(auto, vmapped, rtol=1e-5, atol=1e-5)
