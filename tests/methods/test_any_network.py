"""Every method on the nets people build: token ids, LSTM/GRU, attention, tuple and dict inputs.

Where a method's maths cannot take a net (MNF's multiplicative noise on anything but
Linear/Conv2d layers, adversarial training on token ids) it refuses in one line saying what.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from any_network_nets import KINDS, make

from bbh import build, inputs, trunk
from bbh.batching import VmapFallbackWarning
from bbh.functional import sampled_forward
from bbh.methods.bbh import BayesByHypernet

METHODS = ["bbh", "bbb", "map", "mc_dropout"]


def _train_and_predict(method, x, y) -> torch.Tensor:
    loss, logs = method.loss(x, y, num_data=100)
    assert loss.dim() == 0 and torch.isfinite(loss), logs
    loss.backward()
    missing = [n for n, p in method.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(p.grad).all() for p in method.parameters() if p.grad is not None)
    probs = method.predict(x, 3)
    assert probs.shape == (8, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(8))
    return probs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", METHODS)
def test_every_method_trains_and_predicts_on_the_net(name: str, kind: str) -> None:
    net, x, y = make(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VmapFallbackWarning)  # the LSTM's once-only notice
        method = build(name, net)
        _train_and_predict(method, x, y)
    assert method.predict_logits(x, 2).shape[1:] == (8, 3)


@pytest.mark.parametrize("kind", ["embedding", "lstm", "transformer", "tuple", "dict"])
def test_the_ensemble_takes_them_where_its_maths_allows(kind: str) -> None:
    net, x, y = make(kind)
    floating = all(t.is_floating_point() for _, t in inputs.named_tensors(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VmapFallbackWarning)
        if not floating:  # adversarial training moves inputs along their gradient
            adversarial = build("ensemble", net, num_members=2)
            with pytest.raises(TypeError, match=r"adversarial=True perturbs the inputs .* holds "):
                adversarial.loss(x, y, num_data=100)
        method = build("ensemble", net, num_members=2, adversarial=floating)
        _train_and_predict(method, x, y)


def test_mnf_takes_linear_layers_and_names_what_it_cannot_take() -> None:
    net, x, y = make("tuple")  # Embedding + Linear layers
    with pytest.raises(ValueError, match=r"module 'emb' is Embedding\. Keep it a point estimate"):
        build("mnf", net)
    _train_and_predict(build("mnf", net, deterministic=["emb"]), x, y)
    net, x, y = make("lstm")
    with pytest.raises(ValueError, match=r"module 'rnn' is LSTM"):
        build("mnf", net, deterministic=["emb"])
    _train_and_predict(build("mnf", net, deterministic=["emb", "rnn"]), x, y)
    net, x, y = make("dict")
    _train_and_predict(build("mnf", net, deterministic=["emb"]), x, y)
    net, x, y = make("transformer")
    with pytest.raises(ValueError, match=r"'enc.layers.0.self_attn' is MultiheadAttention"):
        build("mnf", net)
    method = build("mnf", net, deterministic=["enc.layers.0.self_attn", "norm"])
    assert method.layer_names == ("enc.layers.0.linear1", "enc.layers.0.linear2", "out")
    _train_and_predict(method, x, y)


@pytest.mark.parametrize(("batch", "shares"), [(8, [4]), (7, [4, 3])])
def test_bbh_splits_a_dict_batch_between_its_samples(batch: int, shares: list[int]) -> None:
    net, x, y = make("dict")
    x, y = inputs.index(x, slice(0, batch)), y[:batch]
    method = BayesByHypernet(net, num_samples=2, nll="split", temperature=1.0)
    method.check_input(x)  # the shape probe, before counting
    seen: list[int] = []
    method.net.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["tokens"].shape[-2]), with_kwargs=True
    )
    loss, _ = method.loss(x, y, num_data=100)
    loss.backward()
    # an even split: one vmapped call on [S, B/S] shares; else one call per sample's share
    assert seen == shares


def test_a_point_estimate_embedding_is_shared_between_samples_in_eval_mode() -> None:
    net, x, _ = make("embedding")
    method = build("bbh", net, deterministic=["emb"]).eval()
    draws = method.draw_predictive(4)
    shared = method.predict_logits_with(draws, x)
    params = method.predictive_spec.unflatten(draws)
    assert trunk.trunk_for(method.net, params) is not None  # the embedding ran once
    whole = sampled_forward(method.net, params, x, mode="loop")
    torch.testing.assert_close(shared, whole)
    # a structured input runs the net whole (no trace of several inputs), with the same result
    net, x, _ = make("dict")
    method = build("bbh", net, deterministic=["emb"]).eval()
    draws = method.draw_predictive(3)
    params = method.predictive_spec.unflatten(draws)
    looped = sampled_forward(method.net, params, x, mode="loop")
    torch.testing.assert_close(method.predict_logits_with(draws, x), looped)
