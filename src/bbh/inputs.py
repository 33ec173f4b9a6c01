"""Network inputs: a tensor, or a tuple, list or dict of tensors (a "batch structure").

Every tensor of a batch structure holds the same B examples along its first dimension; the batch
size is the first tensor's. Floating tensors are the net's features, integer ones go to it
unchanged (token ids for an ``nn.Embedding``), boolean ones too (masks).

How a net is called on ``x`` (``call_args``):

- a tensor: ``net(x)``;
- a tuple or list: ``net(*x)``, one positional argument per tensor, unless the net's ``forward``
  has room for a single positional argument only (no ``*args``, no second one with a default),
  which then gets the tuple whole;
- a dict: ``net(**x)``, one keyword argument per key.

The helpers below index, split and concatenate structures the way ``x[idx]``, ``x.split(n)`` and
``torch.cat`` do a tensor; for a plain tensor they are exactly those calls.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "Inputs",
    "batch_size",
    "call",
    "call_args",
    "cat",
    "describe_key",
    "first_tensor",
    "index",
    "is_structure",
    "map_tensors",
    "named_tensors",
    "shape_key",
    "split",
    "tensor_split",
    "unbind",
]

#: A batch of network inputs: a tensor ``[B, ...]``, or a tuple, list or dict of them.
Inputs = Tensor | tuple[Tensor, ...] | list[Tensor] | Mapping[str, Tensor]


def is_structure(x: Any) -> bool:
    """True for a tuple, list or dict (of tensors), False for a tensor."""
    return isinstance(x, (tuple, list, Mapping))


def named_tensors(x: Inputs, name: str = "x") -> list[tuple[str, Tensor]]:
    """The tensors of ``x`` with the names errors use: ``x``, ``x[0]``, ``x['mask']``."""
    if isinstance(x, Tensor):
        return [(name, x)]
    if isinstance(x, Mapping):
        return [(f"{name}[{k!r}]", v) for k, v in x.items()]
    return [(f"{name}[{i}]", v) for i, v in enumerate(x)]


def first_tensor(x: Any) -> Tensor:
    """The first tensor of ``x`` (nested structures too): it sets the batch size and device."""
    if isinstance(x, Tensor):
        return x
    leaves = _leaves(x)
    if not leaves:
        raise ValueError("the inputs hold no tensor")
    return leaves[0]


def batch_size(x: Inputs) -> int:
    """B, the first tensor's first dimension."""
    return int(first_tensor(x).shape[0])


def map_tensors(fn: Callable[[Tensor], Any], x: Any) -> Any:
    """``fn`` applied to every tensor of ``x``, the structure kept (tuple, list, dict)."""
    if isinstance(x, Tensor):
        return fn(x)
    if isinstance(x, Mapping):
        return {k: map_tensors(fn, v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(map_tensors(fn, v) for v in x)
    return x


def index(x: Inputs, idx: Any) -> Inputs:
    """``x[idx]`` for every tensor (a slice, an index tensor) along the batch dimension."""
    if isinstance(x, Tensor):
        return x[idx]
    return map_tensors(lambda t: t[idx], x)


def split(x: Inputs, size: int) -> list[Inputs]:
    """``x.split(size)`` along the batch dimension: chunks of ``size`` examples (the last may
    be smaller)."""
    if isinstance(x, Tensor):
        return list(x.split(size))
    n = batch_size(x)
    return [index(x, slice(start, start + size)) for start in range(0, n, size)]


def tensor_split(x: Inputs, sections: int) -> list[Inputs]:
    """``x.tensor_split(sections)``: ``sections`` chunks whose sizes differ by at most one."""
    if isinstance(x, Tensor):
        return list(x.tensor_split(sections))
    parts = [list(t.tensor_split(sections)) for t in _leaves(x)]
    return [_rebuild(x, [p[i] for p in parts]) for i in range(sections)]


def unbind(x: Any) -> list[Any]:
    """``x.unbind(0)``: one structure (nested ones too) per entry of the leading dimension."""
    if isinstance(x, Tensor):
        return list(x.unbind(0))
    parts = [t.unbind(0) for t in _leaves(x)]
    return [_rebuild(x, [p[i] for p in parts]) for i in range(len(parts[0]))]


def cat(parts: Sequence[Inputs]) -> Inputs:
    """``torch.cat`` of structures of the same layout along the batch dimension."""
    first = parts[0]
    if isinstance(first, Tensor):
        return torch.cat(list(parts))  # type: ignore[arg-type]
    leaves = [_leaves(p) for p in parts]
    return _rebuild(first, [torch.cat(list(ts)) for ts in zip(*leaves, strict=True)])


def shape_key(x: Inputs) -> Hashable:
    """What a net's output shape depends on: the per-example shapes (and, for anything but one
    floating tensor, the names and dtypes). A floating tensor's key is ``tuple(x.shape[1:])``."""
    if isinstance(x, Tensor) and x.is_floating_point():
        return tuple(x.shape[1:])
    return tuple((n, tuple(t.shape[1:]), str(t.dtype)) for n, t in named_tensors(x))


def describe_key(key: Hashable) -> str:
    """A ``shape_key`` in words: ``[B, 1, 28, 28]``, or ``x['tokens'] [B, 50] torch.int64 and
    x['mask'] [B, 50] torch.bool``."""
    assert isinstance(key, tuple)
    if all(isinstance(k, int) for k in key):
        return _shape_words(key)
    return " and ".join(f"{n} {_shape_words(s)} {d}" for n, s, d in key)


def call_args(net: nn.Module, x: Inputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments ``net`` gets for ``x`` (see the module docstring)."""
    if isinstance(x, Tensor):
        return (x,), {}
    if isinstance(x, Mapping):
        return (), dict(x)
    if len(x) > 1 and _positional_slots(type(net)) == 1:
        return (x,), {}
    return tuple(x), {}


def call(net: nn.Module, x: Inputs) -> Any:
    """``net`` run on ``x``: ``net(x)``, ``net(*x)`` or ``net(**x)``."""
    if isinstance(x, Tensor):
        return net(x)
    args, kwargs = call_args(net, x)
    return net(*args, **kwargs)


# ----------------------------------------------------------------------------- private helpers

_SLOTS: dict[type[nn.Module], int] = {}


def _positional_slots(cls: type[nn.Module]) -> int:
    """How many positional arguments ``cls.forward`` takes (defaults included; -1 for
    ``*args`` or a signature that cannot be read)."""
    known = _SLOTS.get(cls)
    if known is None:
        try:
            params = list(inspect.signature(cls.forward).parameters.values())[1:]  # no self
        except (TypeError, ValueError):
            params = [inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL)]
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            known = -1
        else:
            known = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
        _SLOTS[cls] = known
    return known


def _shape_words(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(["B", *map(str, shape)]) + "]"


def _leaves(x: Any) -> list[Tensor]:
    """The tensors of a (possibly nested) structure, in order."""
    if isinstance(x, Tensor):
        return [x]
    if isinstance(x, Mapping):
        x = list(x.values())
    if isinstance(x, (tuple, list)):
        return [t for v in x for t in _leaves(v)]
    return []


def _rebuild(like: Any, tensors: Sequence[Tensor]) -> Any:
    """A structure of ``like``'s layout holding ``tensors`` (in ``_leaves`` order)."""
    it = iter(tensors)

    def fill(node: Any) -> Any:
        if isinstance(node, Tensor):
            return next(it)
        if isinstance(node, Mapping):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, (tuple, list)):
            return type(node)(fill(v) for v in node)
        return node

    return fill(like)
