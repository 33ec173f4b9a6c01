"""Walking a primary net's layers: which parameters a posterior owns and which layers hold them.

Methods with per-layer machinery (local reparameterisation, Flipout, MNF) support ``nn.Linear`` and
``nn.Conv2d`` (exactly these types, not subclasses, whose ``forward`` may differ). Every other
layer with trainable parameters must be kept deterministic by the user (``deterministic=``), else
construction fails with a clear error, never in the middle of training.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from bbh.functional import ParamPredicate

#: ``deterministic=("norm",)`` keeps every normalisation layer a point estimate.
NORM_KEYWORD = "norm"
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)
SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)


def deterministic_modules(net: nn.Module, deterministic: Sequence[str]) -> set[str]:
    """Names of the modules kept deterministic: listed names (and their children), or ``"norm"``.

    Unknown names raise a ``ValueError`` that lists the net's module names.
    """
    if isinstance(deterministic, str):
        deterministic = (deterministic,)
    names = dict(net.named_modules())
    chosen: set[str] = set()
    for entry in deterministic:
        if entry == NORM_KEYWORD:
            chosen |= {n for n, m in names.items() if isinstance(m, NORM_TYPES)}
            continue
        if entry not in names or entry == "":
            raise ValueError(
                f"deterministic: no module named {entry!r}; use {NORM_KEYWORD!r} or one of "
                f"{sorted(n for n in names if n)}"
            )
        chosen |= {n for n in names if n == entry or n.startswith(entry + ".")}
    return chosen


def deterministic_predicate(net: nn.Module, deterministic: Sequence[str]) -> ParamPredicate:
    """A ``ParamSpec`` include-predicate that leaves out parameters of deterministic modules.

    Args:
        net: The net.
        deterministic: Module names (and their children), or ``"norm"`` for every normalisation
            layer.

    Returns:
        ``include(name, param) -> bool`` for ``ParamSpec.from_module``.

    Raises:
        ValueError: A name is not a module of ``net``.
    """
    skip = deterministic_modules(net, deterministic)

    def include(name: str, param: nn.Parameter) -> bool:
        owner = name.rpartition(".")[0]
        return owner not in skip

    return include


def select_layers(
    net: nn.Module, generated: Sequence[str], *, method: str, option: str
) -> list[tuple[str, nn.Module]]:
    """The ``nn.Linear``/``nn.Conv2d`` layers that own the ``generated`` parameter names.

    Raises ``ValueError`` when a generated parameter belongs to any other kind of layer, or
    when a layer has only some of its parameters generated.

    Args:
        net: The net.
        generated: The generated parameters' names.
        method: The method's name, for the error message.
        option: The option that needs the layers, for the error message.

    Returns:
        ``(name, layer)`` pairs.
    """
    owners: dict[str, list[str]] = {}
    for name in generated:
        owner, _, attr = name.rpartition(".")
        owners.setdefault(owner, []).append(attr)
    modules = dict(net.named_modules())
    layers = []
    for owner, attrs in owners.items():
        module = modules[owner]
        if type(module) not in SUPPORTED_LAYERS:
            raise ValueError(
                f"{method} with {option} supports nn.Linear and nn.Conv2d layers only; "
                f"module {owner or '<root>'!r} is {type(module).__name__}. Keep it a point "
                f"estimate with deterministic=[{owner!r}] (or 'norm' for all normalisation layers)"
            )
        own = [n for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if sorted(own) != sorted(attrs):
            raise ValueError(
                f"{method} with {option}: layer {owner!r} must have all or none of its "
                f"parameters {own} generated, got {attrs}"
            )
        layers.append((owner, module))
    return layers


def set_submodule(net: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted) by ``module``."""
    parent_name, _, attr = name.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, attr, module)


def both(include: ParamPredicate | None, kept: ParamPredicate) -> ParamPredicate:
    """A predicate true where ``include`` (if any) and ``kept`` both are: a parameter is
    generated only where the user's ``include`` and ``deterministic`` both allow it.

    Args:
        include: The user's predicate, or None (every parameter).
        kept: ``deterministic_predicate``'s.

    Returns:
        The combined predicate.
    """
    if include is None:
        return kept
    chosen = include
    return lambda name, param: chosen(name, param) and kept(name, param)
