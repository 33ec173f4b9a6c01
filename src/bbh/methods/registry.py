"""The registry of methods: ``build(name, net, **options)`` wraps any unmodified ``nn.Module``.

This is the only place that knows the method names; everything else speaks the ``Method``
interface (``bbh.methods.base``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from bbh.methods.base import Method
from bbh.options import parse_enum

MethodFactory = Callable[..., Method]

#: name -> factory(net, **options). Filled in by ``bbh.methods.__init__``.
METHODS: dict[str, MethodFactory] = {}


def register(name: str, factory: MethodFactory) -> None:
    """Register a method factory under ``name`` (for ``build``).

    Args:
        name: The method's name.
        factory: Called as ``factory(net, **options)``; returns the method.

    Raises:
        ValueError: ``name`` is registered already.
    """
    if name in METHODS:
        raise ValueError(f"method {name!r} is registered twice")
    METHODS[name] = factory


def available() -> list[str]:
    """The registered methods' names, sorted.

    Returns:
        The names ``build`` takes.
    """
    return sorted(METHODS)


def build(name: str, net: nn.Module, **options: Any) -> Method:
    """Build method ``name`` around ``net``; unknown names and options raise a clear error.

    Args:
        name: A registered method: ``bbh``, ``bbb``, ``map``, ``mc_dropout``, ``ensemble`` or
            ``mnf``, or one added with ``register`` (``available()`` lists them).
        net: Any ``nn.Module``; the method wraps it (each method's docstring says whether it is
            copied).
        **options: The method's keyword arguments (see its class), and ``preset`` for a
            method with named option sets (``PRESETS``: BbH's ``"recommended"`` and
            ``"paper"``), whose options the others override.

    Returns:
        The method, a ``bbh.Method``.

    Raises:
        ValueError: ``name`` is not registered or an option is not one of the method's (the
            method's own checks raise ``ValueError`` or ``TypeError`` for a bad value).

    Example:
        >>> import bbh
        >>> from bbh.nets import MLP
        >>> model = bbh.build("bbb", MLP(4, [16], 3), prior_scale=1.0)
        >>> type(model).__name__
        'BayesByBackprop'
        >>> bbh.build("bbb", MLP(4, [16], 3), size=3)
        Traceback (most recent call last):
        ...
        ValueError: unknown option(s) ['size'] for method 'bbb'; allowed: [...]
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {available()}")
    factory = METHODS[name]
    presets = getattr(factory, "PRESETS", None)
    if presets is not None and "preset" in options:
        options = dict(options)
        chosen = parse_enum(type(next(iter(presets))), options.pop("preset"), "preset")
        merge = getattr(factory, "merge_options", None)  # BbH: nested options merge by field
        options = merge(presets[chosen], options) if merge else {**presets[chosen], **options}
    params = inspect.signature(factory).parameters
    flat = getattr(factory, "FLAT_OPTIONS", None)  # keywords a ``**`` parameter takes (BbH)
    if flat is not None or not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [
            n
            for n, p in params.items()
            if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and n != "net")
        ] + list(flat or ())
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown option(s) {unknown} for method {name!r}; allowed: {sorted(allowed)}"
            )
    return factory(net, **options)
