"""The part of a network that no weight sample reaches, run once instead of once per sample.

A Bayesian subnetwork whose first layers are point estimates (``deterministic=["conv1",
"conv2"]``: a Bayesian head; only the output layer generated: a Bayesian last layer) computes
the same features for every weight sample. ``split_trunk`` traces the net with ``torch.fx``,
marks every value that a sampled parameter or a random number can reach, and cuts the graph in
two: the trunk (``x`` -> the unmarked values the rest needs), run once per batch, and the head
(those values -> outputs), run per sample by ``bbh.functional.sampled_forward``. The head holds
the net's own submodules, so ``functional_call`` swaps the same parameter names in.

Only for a net entirely in ``eval()`` mode: in training, BatchNorm's batch statistics and
dropout make a pass depend on more than the weights, and ``fx`` bakes in what ``self.training``
was when it traced. A net that ``fx`` cannot trace (data-dependent control flow), where nothing
is shared, that writes a shared value in place (``h.add_(...)``, ``inplace=True``; fx refuses
``h[i] = ...`` itself), or whose split disagrees with the whole net on
the first batch (``sampled_forward`` compares them) is run whole, as before.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

#: functions whose output is random: never shared between samples, nor what they feed
RANDOM_FUNCTIONS: frozenset[Any] = frozenset(
    {
        torch.rand,
        torch.randn,
        torch.randint,
        torch.rand_like,
        torch.randn_like,
        torch.randint_like,
        torch.randperm,
        torch.bernoulli,
        torch.normal,
        torch.poisson,
        torch.multinomial,
        torch.dropout,
        torch.nn.functional.dropout,
        torch.nn.functional.dropout1d,
        torch.nn.functional.dropout2d,
        torch.nn.functional.dropout3d,
        torch.nn.functional.alpha_dropout,
        torch.nn.functional.feature_alpha_dropout,
        torch.nn.functional.gumbel_softmax,
        torch.nn.functional.rrelu,
    }
)
#: tensor methods whose output is random (``x.bernoulli_()``, ``x.normal_()``, ...)
RANDOM_METHODS: frozenset[str] = frozenset(
    {
        "bernoulli",
        "bernoulli_",
        "normal_",
        "uniform_",
        "random_",
        "exponential_",
        "geometric_",
        "log_normal_",
        "cauchy_",
    }
)
#: modules that draw random numbers in ``forward`` (fx keeps torch.nn's own modules whole)
RANDOM_MODULES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.RReLU,
)


@dataclass
class SharedTrunk:
    """A net cut in two: ``trunk(x)`` -> a tuple of values, ``head(*values)`` -> outputs."""

    trunk: fx.GraphModule
    head: fx.GraphModule
    #: whether the split has been compared with the whole net (on its first batch)
    checked: bool = False


def _is_random(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_function":
        return node.target in RANDOM_FUNCTIONS
    if node.op == "call_method":
        return node.target in RANDOM_METHODS
    if node.op == "call_module":
        return isinstance(modules.get(str(node.target)), RANDOM_MODULES)
    return False


def _mutates_first_arg(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether the node may write into its first argument (``x.add_(y)``, ``inplace=True``)."""
    if node.kwargs.get("inplace") is True:
        return True
    if node.op == "call_method":
        return str(node.target).endswith("_")
    if node.op == "call_function":
        return getattr(node.target, "__name__", "").endswith("_")  # torch.relu_, ...
    if node.op == "call_module":
        return getattr(modules.get(str(node.target)), "inplace", False) is True
    return False


def _reaches_sampled(node: fx.Node, modules: dict[str, nn.Module], sampled: set[str]) -> bool:
    """Whether the node itself reads a sampled parameter (by module or attribute)."""
    target = str(node.target)
    if node.op == "get_attr":
        return target in sampled or any(name.startswith(target + ".") for name in sampled)
    if node.op == "call_module":
        return any(name.startswith(target + ".") for name in sampled)
    return False


def split_trunk(net: nn.Module, sampled: Collection[str]) -> SharedTrunk | None:
    """Cut ``net`` into a shared trunk and a per-sample head; None where nothing is shared or
    ``torch.fx`` cannot trace the net."""
    names = set(sampled)
    if all(name in names for name, _ in net.named_parameters()):
        return None  # every weight sampled: no trunk could hold one (and no trace is made)
    try:
        graph_module = fx.symbolic_trace(net)
    except Exception:  # data-dependent control flow, untraceable calls: run the net whole
        return None
    graph = graph_module.graph
    modules = dict(graph_module.named_modules())
    per_sample: set[fx.Node] = set()
    for node in graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if (
            _reaches_sampled(node, modules, names)
            or _is_random(node, modules)
            or any(arg in per_sample for arg in node.all_input_nodes)
        ):
            per_sample.add(node)
    output = next(n for n in graph.nodes if n.op == "output")
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1 or not any(n in per_sample for n in output.all_input_nodes):
        return None
    # the values the head reads from the trunk, in graph order
    boundary = [
        n
        for n in graph.nodes
        if n not in per_sample
        and n.op != "output"
        and any(user in per_sample or user is output for user in n.users)
    ]
    # worth a split only where the trunk holds weights (a layer, not just the input's reshape)
    holds_weights = any(
        (n.op == "call_module" and any(True for _ in modules[str(n.target)].parameters()))
        or n.op == "get_attr"
        for n in graph.nodes
        if n not in per_sample
    )
    if not holds_weights or boundary == placeholders:
        return None
    # a value both halves read must not be written in place: the trunk runs to its end before
    # the head starts, and every sample's head reads the same tensor
    shared_values = set(boundary)
    if any(
        n.args and n.args[0] in shared_values and _mutates_first_arg(n, modules)
        for n in graph.nodes
    ):
        return None

    trunk_graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for node in graph.nodes:
        if node not in per_sample and node.op != "output":
            env[node] = trunk_graph.node_copy(node, env.__getitem__)
    trunk_graph.output(tuple(env[n] for n in boundary))

    head_graph = fx.Graph()
    head_env = {n: head_graph.placeholder(f"shared_{i}") for i, n in enumerate(boundary)}
    for node in graph.nodes:
        if node in per_sample or node.op == "output":
            head_env[node] = head_graph.node_copy(node, head_env.__getitem__)
    trunk = fx.GraphModule(graph_module, trunk_graph, "SharedTrunk")
    trunk.graph.eliminate_dead_code()  # the values only the head's own path needed
    trunk.recompile()
    head = fx.GraphModule(graph_module, head_graph, "SampledHead")
    return SharedTrunk(trunk, head)


_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], SharedTrunk | None]] = (
    weakref.WeakKeyDictionary()
)


def _key(sampled: Collection[str], modules: tuple[nn.Module, ...]) -> tuple[Any, ...]:
    """The cache key: the sampled names and the modules (a swapped submodule: a new split)."""
    return frozenset(sampled), tuple(map(id, modules))


def trunk_for(net: nn.Module, sampled: Collection[str]) -> SharedTrunk | None:
    """``split_trunk`` for a net in eval mode, cached by ``_key``; None in training mode."""
    modules = tuple(net.modules())
    if any(m.training for m in modules):
        return None
    key = _key(sampled, modules)
    found = _cache.setdefault(net, {})
    if key not in found:
        if len(found) > 8:  # keys of swapped-out modules: keep the cache small
            found.clear()
        found[key] = split_trunk(net, sampled)
    return found[key]


def disable(net: nn.Module, sampled: Collection[str]) -> None:
    """Run ``net`` whole from now on for these sampled names, with a warning (its split
    disagreed with the whole net)."""
    _cache.setdefault(net, {})[_key(sampled, tuple(net.modules()))] = None
    warnings.warn(
        f"{type(net).__name__}: its traced trunk/head split disagreed with the whole net on "
        "the first batch (its forward depends on state torch.fx cannot see); it is run whole",
        RuntimeWarning,
        stacklevel=3,
    )


def outputs_agree(split: Tensor, whole: Tensor) -> bool:
    """Whether the split's outputs ``[S, B, ...]`` match the whole net's (to 1e-5)."""
    return split.shape == whole.shape and torch.allclose(
        split, whole, rtol=1e-4, atol=1e-5, equal_nan=True
    )
