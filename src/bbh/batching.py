"""Which modules ``torch.func.vmap`` can run over weight samples, learned as they are met.

``bbh.functional.sampled_forward`` runs S weight samples under ``vmap``. Some operators have no
batching rule at all (``aten::lstm``, ``aten::gru``, ``aten::rnn_tanh``: every ``nn.RNNBase``,
and whatever a user's module calls): functorch then raises "Batching rule not implemented ...
We could not generate a fallback". ``sampled_forward`` catches that error once, finds the module
whose ``forward`` raised it (from the traceback), remembers its type for the rest of the process
(``needs_loop``: later calls go straight to the loop) and warns once per type with a
``VmapFallbackWarning`` naming the module and the cost: S sequential forward passes.

Others have a slow generic fallback (PyTorch warns "There is a performance drop because we have
not yet implemented the batching rule for aten::_native_multi_head_attention"): attention
layers. ``bbh.functional.auto_forward_mode`` chooses for them from measurements
(``ATTENTION_MODULES``), and ``quiet_slow_fallback`` silences that warning where ``vmap`` was
chosen on purpose.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator

from torch import nn

__all__ = [
    "ATTENTION_MODULES",
    "VmapFallbackWarning",
    "has_attention",
    "is_missing_rule",
    "learn_from",
    "needs_loop",
    "quiet_slow_fallback",
]

#: modules whose operators hit PyTorch's slow vmap fallback (not an error)
ATTENTION_MODULES: tuple[type[nn.Module], ...] = (
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)

_SLOW_FALLBACK = "There is a performance drop because we have not yet implemented the batching rule"

#: module types found without a vmap batching rule in this process
_NO_RULE: set[type[nn.Module]] = set()
_WARNED: set[type[nn.Module]] = set()


class VmapFallbackWarning(UserWarning):
    """A module has no ``vmap`` batching rule: its weight samples run in a loop."""


def is_missing_rule(err: BaseException) -> bool:
    """Whether ``err`` is functorch's "Batching rule not implemented" without a fallback."""
    return isinstance(err, RuntimeError) and "Batching rule not implemented" in str(err)


def needs_loop(net: nn.Module) -> type[nn.Module] | None:
    """The first module type of ``net`` known to lack a batching rule, or None."""
    if not _NO_RULE:
        return None
    for module in net.modules():
        if type(module) in _NO_RULE:
            return type(module)
    return None


def learn_from(err: RuntimeError, net: nn.Module, num_samples: int) -> None:
    """Remember the module of ``net`` that raised ``err`` (functorch's missing batching rule)
    and warn once for its type."""
    module = _raising_module(err, net)
    kind = type(module)
    _NO_RULE.add(kind)
    if kind in _WARNED:
        return
    _WARNED.add(kind)
    found = re.search(r"for (aten::[\w.]+)", str(err))
    op = f" ({found.group(1).rstrip('.')})" if found else ""
    warnings.warn(
        f"{kind.__module__}.{kind.__qualname__} has no torch.func.vmap batching rule{op}: "
        f"its weight samples run in a loop from now on, {num_samples} sequential forward "
        f"passes for {num_samples} samples (about {num_samples}x one pass); pass "
        f"forward_mode='loop' to skip this check",
        VmapFallbackWarning,
        stacklevel=4,
    )


def has_attention(net: nn.Module) -> bool:
    """Whether ``net`` holds an attention layer (``ATTENTION_MODULES``)."""
    return any(isinstance(m, ATTENTION_MODULES) for m in net.modules())


@contextlib.contextmanager
def quiet_slow_fallback(active: bool = True) -> Iterator[None]:
    """Silence PyTorch's "performance drop ... batching rule" warning inside (when
    ``active``): ``vmap`` was chosen knowing the cost."""
    if not active:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_SLOW_FALLBACK)
        yield


def _raising_module(err: BaseException, net: nn.Module) -> nn.Module:
    """The innermost module of ``net`` whose frame is in ``err``'s traceback (``net`` itself
    if none is)."""
    members = {id(m) for m in net.modules()}
    found: nn.Module = net
    tb = err.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, nn.Module) and id(owner) in members:
            found = owner
        tb = tb.tb_next
    return found
