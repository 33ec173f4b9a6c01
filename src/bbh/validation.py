"""Checks at the public boundary, shared by every method, ``fit``, ``evaluate`` and the attacks.

Every error names the argument, what was expected and what came, in one line.

Two kinds of check:

- **structural** (type, dtype, device, shape against the net, option types and ranges): they read
  only metadata, cost no device work and no host sync, and run on every call. The shape of an
  input is checked against the network once per per-example shape (``InputShapes``: one plain
  forward pass of two examples, before any ``vmap``), then remembered.
- **values** (finite inputs, label range, a tensor ``kl_weight``): they read the data, one host
  sync per call. ``predict``, ``evaluate`` and the attacks run them on every call; ``fit`` runs
  them once over the whole training set and trains inside ``values_prechecked()``, which skips
  them in ``loss``, so a training step has no extra sync.

``checked_args`` checks a function's arguments against its type hints (and given ranges) before
the call: every method's options, ``fit``, ``evaluate`` and the attacks use it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from enum import Enum
from typing import Any, ParamSpec, TypeVar, Union

import numpy as np
import torch
from torch import Tensor, nn

from bbh.inputs import (
    Inputs,
    call_args,
    describe_key,
    first_tensor,
    index,
    is_structure,
    map_tensors,
    named_tensors,
    shape_key,
)

__all__ = [
    "InputShapes",
    "InvalidArgument",
    "as_input",
    "as_targets",
    "at_least",
    "check_kl_weight",
    "check_num_data",
    "check_num_samples",
    "checked_args",
    "describe",
    "in_range",
    "positive",
    "values_checked_here",
    "values_prechecked",
]

P = ParamSpec("P")
R = TypeVar("R")

_PRECHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("bbh_prechecked", default=False)


@contextlib.contextmanager
def values_prechecked() -> Iterator[None]:
    """Inside, value checks (finite inputs, label range) are skipped: the caller made them.

    ``fit`` checks the whole training set once and trains inside this context; a hand-written
    training loop may do the same after checking its data (e.g. with one ``loss`` call outside).
    """
    token = _PRECHECKED.set(True)
    try:
        yield
    finally:
        _PRECHECKED.reset(token)


def values_checked_here() -> bool:
    """False inside ``values_prechecked()``."""
    return not _PRECHECKED.get()


def describe(value: Any) -> str:
    """A short description of a value for error messages: type, and the value when small."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {list(value.shape)} on {value.device}"
    if isinstance(value, np.ndarray):
        return f"a numpy {value.dtype} array of shape {list(value.shape)}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


# ----------------------------------------------------------------------------- scalar options


def check_num_data(num_data: Any) -> None:
    """Check that ``num_data`` is a positive int.

    Args:
        num_data: The training-set size.

    Raises:
        ValueError: It is not a positive int.
    """
    if isinstance(num_data, bool) or not isinstance(num_data, numbers.Integral) or num_data < 1:
        raise ValueError(
            f"num_data must be a positive int (the training-set size), got {describe(num_data)}"
        )


def check_num_samples(num_samples: Any, *, minimum: int = 1, name: str = "num_samples") -> None:
    """Check that ``num_samples`` is an int ``>= minimum`` (not a bool).

    Args:
        num_samples: The value to check.
        minimum: The least value allowed.
        name: Its name in the error message.

    Raises:
        ValueError: It is not an int ``>= minimum``.
    """
    if (
        isinstance(num_samples, bool)
        or not isinstance(num_samples, numbers.Integral)
        or num_samples < minimum
    ):
        raise ValueError(f"{name} must be an int >= {minimum}, got {describe(num_samples)}")


def check_kl_weight(kl_weight: Any) -> None:
    """A finite number >= 0, or a scalar floating tensor (its value is checked unless
    ``values_prechecked()``: reading it is a host sync)."""
    if isinstance(kl_weight, Tensor):
        if kl_weight.numel() != 1 or not kl_weight.is_floating_point():
            raise ValueError(
                f"kl_weight must be a number or a one-element floating tensor, got "
                f"{describe(kl_weight)}"
            )
        if not values_checked_here():
            return
        value = float(kl_weight)
    elif isinstance(kl_weight, numbers.Real) and not isinstance(kl_weight, bool):
        value = float(kl_weight)
    else:
        raise TypeError(f"kl_weight must be a finite number >= 0, got {describe(kl_weight)}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"kl_weight must be a finite number >= 0, got {value!r}")


# --------------------------------------------------------------------------------- inputs


def as_input(x: Any, *, like: Tensor, name: str = "x") -> Inputs:
    """``x`` checked as network inputs ``[B, ...]`` on ``like``'s device (``bbh.inputs``).

    ``x`` is a tensor, or a tuple, list or dict of tensors (every one ``[B, ...]`` with the same
    B, the first tensor's). A numpy array becomes a tensor. A floating tensor is cast to
    ``like``'s dtype (e.g. float64 to float32) and, unless ``values_prechecked()``, checked to be
    finite; integer and boolean tensors (token ids, masks) go to the net unchanged. Another
    device, an empty batch, complex values and disagreeing batch sizes are errors naming the
    tensor (``x``, ``x[1]``, ``x['mask']``).
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(x, Tensor):
        return _as_tensor_input(x, like, name)
    if isinstance(x, Mapping):
        bad_keys = [k for k in x if not isinstance(k, str)]
        if bad_keys:
            raise TypeError(
                f"{name} is a dict of inputs, passed as keyword arguments: its keys must be "
                f"str, got {bad_keys[0]!r}"
            )
        items: list[tuple[Any, Any]] = list(x.items())
    elif isinstance(x, (tuple, list)):
        items = list(enumerate(x))
    else:
        items = []
    if not any(isinstance(v, (Tensor, np.ndarray)) for _, v in items):
        what = f"an empty {type(x).__name__}" if items == [] and is_structure(x) else describe(x)
        raise TypeError(
            f"{name} must be a torch.Tensor [B, ...] or a tuple, list or dict of them, got {what}"
        )
    checked = []
    for key, value in items:
        label = f"{name}[{key!r}]"
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if not isinstance(value, Tensor):
            raise TypeError(
                f"{label} must be a torch.Tensor [B, ...] (inputs are a tensor, or a tuple, list "
                f"or dict of tensors), got {describe(value)}"
            )
        checked.append(_as_tensor_input(value, like, label))
    first_label, first = f"{name}[{items[0][0]!r}]", checked[0]
    for (key, _), value in zip(items[1:], checked[1:], strict=True):
        if value.shape[0] != first.shape[0]:
            raise ValueError(
                f"{name}[{key!r}] has {value.shape[0]} rows, {first_label} has "
                f"{first.shape[0]}: every input tensor needs the same batch size"
            )
    if isinstance(x, Mapping):
        return dict(zip((k for k, _ in items), checked, strict=True))
    return type(x)(checked)


def _as_tensor_input(x: Tensor, like: Tensor, name: str) -> Tensor:
    """One input tensor: floating ones cast to ``like``'s dtype and checked finite; integer and
    boolean ones unchanged."""
    if x.is_complex():
        raise TypeError(
            f"{name} must hold real numbers (floats, or integer token ids), got {x.dtype}"
        )
    if x.device != like.device:
        raise ValueError(
            f"{name} is on {x.device} but the model is on {like.device}; "
            f"move it with {name}.to({str(like.device)!r})"
        )
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch [B, ...], got shape {list(x.shape)}")
    if not x.is_floating_point():
        return x  # token ids, masks: the net takes them as they are
    if x.dtype != like.dtype:
        x = x.to(like.dtype)
    if values_checked_here():
        check_finite(x, name)
    return x


def check_finite(x: Tensor, name: str) -> None:
    """Raise naming ``name``, the number of bad values and the first example holding one."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        per_example = bad.reshape(x.shape[0], -1).any(dim=1) if x.dim() > 0 else bad
        first = int(per_example.nonzero()[0, 0]) if x.dim() > 0 else 0
        raise ValueError(
            f"{name} contains {int(bad.sum())} NaN or infinite value(s) (the first in example "
            f"{first})"
        )


class InputShapes:
    """Which per-example input shapes a network takes, and its output size for each.

    ``check(net, x, name)`` runs ``net`` once on (at most) two examples of ``x`` the first time
    a per-example shape is seen, without gradients, on copies of the buffers (running statistics
    stay as they are) and with the random state restored afterwards, so the probe changes nothing.
    A shape the net cannot take is a ``ValueError`` naming ``name``, the shape and, where it can
    tell, what the first layer needs; a net whose outputs are not ``[B, C]`` is one as well.
    """

    def __init__(self) -> None:
        self.outputs: dict[Hashable, tuple[int, ...]] = {}

    def check(self, net: nn.Module, x: Inputs, name: str = "x") -> tuple[int, ...]:
        """The per-example output shape (``(C,)`` for outputs ``[B, C]``) for inputs like ``x``
        (a tensor or a batch structure, already checked by ``as_input``), checked once per
        ``bbh.inputs.shape_key``."""
        key = shape_key(x)
        known = self.outputs.get(key)
        if known is not None:
            return known
        probe = map_tensors(Tensor.detach, index(x, slice(0, 2)))
        args, kwargs = call_args(net, probe)
        n = min(2, _batch(x))
        buffers = {k: b.clone() for k, b in net.named_buffers()}
        device = _device(x)
        devices = [device] if device.type == "cuda" else []
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=devices):
                out = torch.func.functional_call(net, buffers, args, kwargs)
        except Exception as err:  # the net's own error, whatever its type, says what went wrong
            raise ValueError(
                f"{name} has {_shapes(x)}, which {type(net).__name__} cannot take"
                f"{self._accepted()}{_first_layer_hint(net)}{_integer_hint(x)}: "
                f"{_first_line(err)}"
            ) from err
        if not isinstance(out, Tensor) or out.dim() < 2 or out.shape[0] != n:
            got = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"{name} has {_shapes(x)}: for {n} example(s) "
                f"{type(net).__name__} returns {got}, but methods need outputs [B, C] "
                f"(is {name} missing its batch dimension?{_first_layer_hint(net, prefix=' ')})"
            )
        self.outputs[key] = tuple(out.shape[1:])
        return self.outputs[key]

    def _accepted(self) -> str:
        if not self.outputs:
            return ""
        shapes = ", ".join(describe_key(k) for k in self.outputs)
        return f" (it took {shapes} before)"


def _batch(x: Inputs) -> int:
    return int(first_tensor(x).shape[0])


def _device(x: Inputs) -> torch.device:
    return first_tensor(x).device


def _shapes(x: Inputs) -> str:
    """``shape [8, 5]`` for a tensor, ``shapes x[0] [8, 5], x[1] [8, 3]`` for a structure."""
    if isinstance(x, Tensor):
        return f"shape {list(x.shape)}"
    return "shapes " + ", ".join(f"{n} {list(t.shape)}" for n, t in named_tensors(x))


def _integer_hint(x: Inputs) -> str:
    """For integer inputs that failed: they reach the net unchanged."""
    if all(t.is_floating_point() for _, t in named_tensors(x)):
        return ""
    return (
        " (integer inputs go to the net unchanged, as token ids for an nn.Embedding; scale "
        "images to floats, e.g. x.float() / 255)"
    )


def _first_layer_hint(net: nn.Module, prefix: str = "; ") -> str:
    for name, module in net.named_modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            return (
                f"{prefix}its first layer {name!r} is an nn.{type(module).__name__} of "
                f"{module.num_embeddings} rows, which takes integer token ids"
            )
        if isinstance(module, nn.Linear):
            return f"{prefix}its first layer {name!r} takes {module.in_features} features"
        if isinstance(module, nn.modules.conv._ConvNd):
            dims = len(module.kernel_size)
            spatial = ", ".join(["H", "W", "D"][:dims])
            return f"{prefix}its first layer {name!r} takes [B, {module.in_channels}, {spatial}]"
    return ""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def as_targets(
    y: Any, *, batch: int, num_outputs: int, categorical: bool, like: Tensor, name: str = "y"
) -> Tensor:
    """Targets checked against a batch of ``batch`` examples and ``num_outputs`` outputs.

    Categorical: integer class indices ``[B]`` in ``[0, num_outputs)`` (float labels are an
    error, not truncated). Regression: ``[B]`` or ``[B, C]``, cast to ``like``'s dtype. Values
    (range, finiteness) are checked unless ``values_prechecked()``.
    """
    if isinstance(y, np.ndarray):
        y = torch.from_numpy(y)
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {describe(y)}")
    if y.device != like.device:
        raise ValueError(
            f"{name} is on {y.device} but the model is on {like.device}; "
            f"move it with {name}.to({str(like.device)!r})"
        )
    if categorical:
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise TypeError(
                f"{name} must hold integer class indices (e.g. torch.int64), got {y.dtype}; "
                f"convert whole-number labels with {name}.long()"
            )
        if y.dim() != 1 or y.shape[0] != batch:
            raise ValueError(f"{name} must have shape [B={batch}], got {list(y.shape)}")
        if values_checked_here():
            low, high = int(y.min()), int(y.max())
            if low < 0 or high >= num_outputs:
                raise ValueError(
                    f"{name} must lie in [0, {num_outputs}) (the network has {num_outputs} "
                    f"outputs), got values in [{low}, {high}]"
                )
        return y
    if y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold real regression targets, got {y.dtype}")
    if not (
        (y.dim() == 1 and y.shape[0] == batch)
        or (y.dim() == 2 and tuple(y.shape) == (batch, num_outputs))
    ):
        raise ValueError(
            f"{name} must have shape [B={batch}] or [B={batch}, {num_outputs}], got {list(y.shape)}"
        )
    y = y.to(like.dtype)
    if values_checked_here():
        check_finite(y, name)
    return y


# ---------------------------------------------------------------------------- argument checks


class InvalidArgument(TypeError, ValueError):
    """An argument of the wrong type or out of its range (``checked_args``); both a
    ``TypeError`` and a ``ValueError``, so either ``except`` catches it."""


class Constraint:
    """A range check for ``checked_args``: ``test(value)`` and the words for what it expects."""

    def __init__(self, test: Callable[[Any], bool], expected: str):
        self.test = test
        self.expected = expected


def positive() -> Constraint:
    """The constraint ``> 0``.

    Returns:
        A ``Constraint`` for ``checked_args``.
    """
    return Constraint(lambda v: v > 0, "> 0")


def at_least(low: float) -> Constraint:
    """The constraint ``>= low``.

    Args:
        low: The least value allowed.

    Returns:
        A ``Constraint`` for ``checked_args``.
    """
    return Constraint(lambda v: v >= low, f">= {low}")


def in_range(
    low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> Constraint:
    """The constraint that the value lies between ``low`` and ``high``.

    Args:
        low: The lower end.
        high: The upper end.
        low_open: Exclude ``low``.
        high_open: Exclude ``high``.

    Returns:
        A ``Constraint`` for ``checked_args``.
    """

    def test(v: Any) -> bool:
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return bool(above and below)

    brackets = ("(" if low_open else "[") + f"{low}, {high}" + (")" if high_open else "]")
    return Constraint(test, f"in {brackets}")


def checked_args(**constraints: Constraint) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: check the arguments a caller passes against the type hints and ``constraints``.

    ``float`` takes any finite real number (not a bool), ``int`` an integer (not a bool), ``str``,
    ``bool``, enums, ``X | None``, sequences (``Sequence[int]``, ``tuple[float, float]``) and
    callables are checked; other hints are left to the function. Defaults are not checked.
    Raises ``InvalidArgument`` (a ``TypeError`` and a ``ValueError``) naming the argument.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        owner = fn.__qualname__.removesuffix(".__init__")
        unknown = set(constraints) - set(signature.parameters)
        if unknown:
            raise TypeError(f"checked_args: {owner} has no argument(s) {sorted(unknown)}")
        hints: dict[str, Any] | None = None

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            nonlocal hints
            if hints is None:
                hints = typing.get_type_hints(fn)
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as err:
                raise InvalidArgument(f"{owner}: {err}") from None
            for name, value in bound.arguments.items():
                hint = hints.get(name) if name != "self" else None
                rule = constraints.get(name)
                wrong_type = hint is not None and _type_mismatch(value, hint) is not None
                if wrong_type or (rule is not None and value is not None and not rule.test(value)):
                    raise InvalidArgument(
                        f"{owner}: {name} must be {_expectation(hint, rule)}, got {describe(value)}"
                    )
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def _expectation(hint: Any, rule: Constraint | None) -> str:
    """Words for what an argument must be: its type (from the hint) and its range."""
    if hint is None:
        return rule.expected if rule is not None else "valid"
    options = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else ()
    kinds = [o for o in options if o is not type(None)] if options else [hint]
    words = " or ".join(dict.fromkeys(_type_words(k) for k in kinds))
    if rule is not None:
        words += f" {rule.expected}"
    return words + (" or None" if type(None) in options else "")


def _type_mismatch(value: Any, hint: Any) -> str | None:
    """None if ``value`` fits ``hint``; otherwise the words for what was expected."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return None
    if origin is Union or origin is types.UnionType:
        options = typing.get_args(hint)
        if any(_type_mismatch(value, option) is None for option in options):
            return None
        return " or ".join(
            dict.fromkeys(_type_words(option) for option in options if option is not type(None))
        ) + (" or None" if type(None) in options else "")
    return None if _fits(value, hint, origin) else _type_words(hint)


def _fits(value: Any, hint: Any, origin: Any) -> bool:
    if hint is type(None):
        return value is None
    if hint is float:
        return _is_real(value) and math.isfinite(float(value))
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if hint is bool:
        return isinstance(value, (bool, np.bool_))
    if origin in (tuple, list, Sequence) or hint in (tuple, list):
        args = typing.get_args(hint)
        if isinstance(value, str) and origin is Sequence and args == (str,):
            return True  # a str is a sequence of str: options such as deterministic="norm"
        if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(
                _type_mismatch(v, a) is None for v, a in zip(value, args, strict=True)
            )
        return all(_type_mismatch(v, args[0]) is None for v in value)
    if origin is Mapping or origin is dict:
        return isinstance(value, Mapping)
    if origin is not None and getattr(origin, "__module__", "") == "collections.abc":
        return callable(value) if origin.__name__ == "Callable" else isinstance(value, origin)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # hints this checker does not know are left to the function


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _type_words(hint: Any) -> str:
    if hint is float:
        return "a finite real number"
    if hint is int:
        return "an int"
    if hint is bool:
        return "a bool (True or False)"
    if hint is str:
        return "a str"
    if isinstance(hint, type) and issubclass(hint, Enum):
        return f"one of {[m.value for m in hint]}"
    origin = typing.get_origin(hint)
    if origin in (tuple, list, Sequence):
        args = typing.get_args(hint)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a tuple of {len(args)} ({', '.join(_type_words(a) for a in args)})"
        return "a list or tuple" + (f" of {_plural(args[0])}" if args else "")
    if origin is not None and getattr(origin, "__name__", "") == "Callable":
        return "a callable"
    return f"a {getattr(hint, '__name__', str(hint))}"


def _plural(hint: Any) -> str:
    words = {float: "finite real numbers", int: "ints", bool: "bools", str: "strs"}
    return words.get(hint, f"{getattr(hint, '__name__', str(hint))} values")
