"""Helpers shared by the peers: the lazy import of a peer package, a net run with a flat weight
vector, and the training loop's data order (the one of ``bbh.training.fit``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from bbh.inputs import Inputs, call_args, index
from bbh.inputs import batch_size as rows
from bbh.training.sampler import ShuffleSampler

#: What the error of a missing peer package tells the user to run.
INSTALL_HINT = (
    "install the peers extra without replacing torch: `bash scripts/install_peers.sh` from a "
    "checkout (docs/peers.md)"
)


class PeerPackageMissing(ImportError):
    """A peer's own package (laplace-torch, ivon-opt) is not installed."""


def require(module: str, package: str) -> ModuleType:
    """Import ``module`` of the peer package ``package``, or fail naming the extra.

    Args:
        module: The module to import (``laplace``, ``ivon``).
        package: Its distribution's name on the package index, for the message.

    Returns:
        The imported module.

    Raises:
        PeerPackageMissing: The module cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise PeerPackageMissing(
            f"this peer needs {package} (module {module!r}), part of bbh's optional `peers` "
            f"extra; {INSTALL_HINT}"
        ) from err


def flat_parameters(net: nn.Module) -> Tensor:
    """The net's trainable parameters as one detached vector (``named_parameters`` order).

    Args:
        net: The network.

    Returns:
        A vector ``[P]``.
    """
    return torch.cat([p.detach().reshape(-1) for p in net.parameters() if p.requires_grad])


def unflatten(net: nn.Module, flat: Tensor) -> dict[str, Tensor]:
    """``flat`` (as ``flat_parameters`` lays it out) split into the net's named parameters.

    Args:
        net: The network.
        flat: A vector ``[P]``.

    Returns:
        Parameter name to tensor of that parameter's shape (views of ``flat``).
    """
    out: dict[str, Tensor] = {}
    offset = 0
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        out[name] = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    if offset != flat.numel():
        raise ValueError(f"a weight vector of {flat.numel()} values for a net of {offset}")
    return out


def call_with(net: nn.Module, tensors: dict[str, Tensor], x: Inputs) -> Any:
    """``net`` run on ``x`` with some parameters or buffers replaced (``torch.func``).

    Args:
        net: The network.
        tensors: Names to the tensors that replace the net's own.
        x: Inputs, as ``bbh.inputs.call`` takes them.

    Returns:
        The net's output.
    """
    args, kwargs = call_args(net, x)
    return functional_call(net, tensors, args, kwargs)


def batches(
    x: Inputs,
    y: Tensor,
    *,
    steps: int,
    batch_size: int,
    seed: int,
    transform: Callable[[Inputs, torch.Generator], Inputs] | None = None,
) -> Iterator[tuple[int, Inputs, Tensor]]:
    """The minibatches of ``bbh.training.fit`` with the same ``seed``: the same
    ``ShuffleSampler`` order and the same ``transform`` draws, so every row sees the same data.

    Args:
        x: Training inputs ``[N, ...]``.
        y: Targets ``[N]``.
        steps: The number of steps.
        batch_size: Examples per step.
        seed: Seeds the sampler's generator.
        transform: Applied to each batch of inputs with the sampler's generator, as in ``fit``.

    Yields:
        ``(step, inputs, targets)`` with ``step`` counting from 0.
    """
    sampler = ShuffleSampler(rows(x), batch_size, torch.Generator().manual_seed(seed))
    for step in range(steps):
        idx = sampler.next_indices()
        xb, yb = index(x, idx), y[idx]
        if transform is not None:
            xb = transform(xb, sampler.generator)
        yield step, xb, yb
