"""The functional core: which parameters a posterior owns, and sampled forward passes.

Data flow (see docs/architecture.md):

    flat weights [S, D] --ParamSpec.unflatten--> {name: [S, *shape]}
    {name: [S, *shape]} + x [B, ...] --sampled_forward--> outputs [S, B, ...]

Primary networks stay ordinary ``nn.Module`` objects; posteriors act on them from outside through
``torch.func.functional_call``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from bbh import batching, trunk
from bbh.enums import ForwardMode
from bbh.inputs import Inputs, call_args, first_tensor, named_tensors, unbind
from bbh.options import parse_enum

ParamPredicate = Callable[[str, nn.Parameter], bool]


#: On a CPU, ``auto`` runs samples under vmap only while (examples per sample) x (weights per
#: sample) stays at most this. Measured on a 2-core Xeon with torch 2.13 (forward + backward,
#: ``benchmarks/sampled_forward.py``): vmap turns convolutions with per-sample weights into
#: grouped convolutions, 1.3-2x slower than a loop of ordinary ones for LeNet-5 and the CIFAR
#: ResNets at batch 100; it wins where the loop's per-call overhead dominates: the 1-100-1 toy
#: net (4x) and batches split between 20 samples (5 examples each, up to 2.2x).
CPU_VMAP_MAX_WORK = 5_000_000

#: On a CPU, ``auto`` runs nets with attention layers in a loop over samples: vmap sends
#: ``aten::_native_multi_head_attention`` through PyTorch's slow generic fallback. Measured with
#: ``benchmarks/sequence_nets.py`` (a 2-layer encoder, d_model 64, forward + backward, one
#: thread): vmap took 1.08-1.56x the loop's time for S = 2-8 and batches 32 and 100, with the
#: whole batch per sample or split between them (``benchmarks/results/sequence_nets_cpu_busy.json``;
#: a busier run: 0.96-1.22x).
CPU_ATTENTION_LOOP = True


@dataclass(frozen=True)
class ParamEntry:
    """One generated parameter tensor: its name in ``named_parameters``, shape and flat slice.

    Args:
        name: The parameter's name in ``named_parameters``.
        shape: Its shape.
        offset: Where its values start in the flat layout.
    """

    name: str
    shape: tuple[int, ...]
    offset: int

    @property
    def numel(self) -> int:
        """The number of scalars in the tensor."""
        return math.prod(self.shape)


class ParamSpec:
    """The parameters of a module that a posterior generates, and the flat layout ``[S, D]``.

    The flat vector concatenates the generated tensors in ``named_parameters`` order, each
    flattened in row-major order.

    Args:
        entries: The generated tensors, in layout order (``from_module`` builds them).
    """

    def __init__(self, entries: list[ParamEntry]):
        if not entries:
            raise ValueError("ParamSpec needs at least one parameter tensor; got none")
        self.entries: tuple[ParamEntry, ...] = tuple(entries)
        self._by_name = {e.name: e for e in self.entries}
        self._sizes = [e.numel for e in self.entries]

    @classmethod
    def from_module(cls, module: nn.Module, include: ParamPredicate | None = None) -> ParamSpec:
        """Build the spec of ``module``: every trainable parameter, or those ``include`` keeps.

        ``include(name, param)`` returns True for parameters the posterior should generate;
        the others stay deterministic parameters of the module (e.g. BatchNorm affine weights).

        Args:
            module: The module.
            include: ``include(name, param) -> bool``; None keeps every trainable parameter.

        Returns:
            The spec.

        Raises:
            TypeError: ``module`` is not an ``nn.Module``.
            ValueError: No parameter is left to generate.
        """
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
        entries: list[ParamEntry] = []
        offset = 0
        for name, param in module.named_parameters():
            if not param.requires_grad or (include is not None and not include(name, param)):
                continue
            entry = ParamEntry(name, tuple(param.shape), offset)
            entries.append(entry)
            offset += entry.numel
        if not entries:
            raise ValueError(
                f"module {type(module).__name__} has no parameters for the posterior to generate"
                + (" (include / deterministic left out all of them)" if include else "")
            )
        return cls(entries)

    @property
    def names(self) -> tuple[str, ...]:
        """The generated tensors' names, in layout order."""
        return tuple(e.name for e in self.entries)

    @property
    def dim(self) -> int:
        """D, the total number of generated scalars."""
        last = self.entries[-1]
        return last.offset + last.numel

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[ParamEntry]:
        return iter(self.entries)

    def __getitem__(self, name: str) -> ParamEntry:
        return self._by_name[name]

    def __repr__(self) -> str:
        return f"ParamSpec({len(self)} tensors, D={self.dim})"

    def unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        """``[S, D]`` -> ``{name: [S, *shape]}`` (views, no copies).

        Args:
            flat: Flat weights ``[S, D]``.

        Returns:
            A dict from each parameter's name to its samples ``[S, *shape]``.

        Raises:
            ValueError: ``flat`` is not ``[S, D]``.
        """
        if flat.dim() != 2 or flat.shape[1] != self.dim:
            raise ValueError(
                f"flat weights must have shape [S, {self.dim}], got {list(flat.shape)}"
            )
        s = flat.shape[0]
        # One ``split`` rather than a slice per tensor: the backward of a slice allocates a
        # zero [S, D] gradient per tensor and adds them up (20x slower for ResNet-18's 62
        # tensors); the backward of ``split`` is a single ``cat``.
        parts = flat.split(self._sizes, dim=1)
        return {e.name: p.reshape(s, *e.shape) for e, p in zip(self.entries, parts, strict=True)}

    def flatten(self, params: Mapping[str, Tensor]) -> Tensor:
        """``{name: [S, *shape]}`` -> ``[S, D]``; every name of the spec must be present.

        Args:
            params: ``{name: [S, *shape]}``.

        Returns:
            Flat weights ``[S, D]``.

        Raises:
            KeyError: A name of the spec is missing.
            ValueError: The tensors disagree on S or a shape does not match.
        """
        missing = [n for n in self.names if n not in params]
        if missing:
            raise KeyError(f"parameters missing from the dict: {missing}")
        sizes = {params[n].shape[0] for n in self.names}
        if len(sizes) != 1:
            raise ValueError(f"parameters disagree on the sample count S: {sorted(sizes)}")
        s = sizes.pop()
        parts = []
        for e in self.entries:
            p = params[e.name]
            if tuple(p.shape[1:]) != e.shape:
                raise ValueError(
                    f"parameter {e.name!r} has shape {list(p.shape)}, "
                    f"expected [S, *{list(e.shape)}]"
                )
            parts.append(p.reshape(s, e.numel))
        return torch.cat(parts, dim=1)

    def from_module_values(self, module: nn.Module) -> Tensor:
        """The module's current values of the generated parameters as ``[1, D]``.

        Args:
            module: A module with the spec's parameters.

        Returns:
            ``[1, D]``, detached.
        """
        named = dict(module.named_parameters())
        return self.flatten({n: named[n].detach().unsqueeze(0) for n in self.names})

    def _slots(self, module: nn.Module) -> Iterator[tuple[nn.Module, str]]:
        """``(owner, attribute)`` of each of the spec's tensors in ``module``."""
        for name in self.names:
            owner_name, _, attr = name.rpartition(".")
            yield module.get_submodule(owner_name), attr

    def release(self, module: nn.Module) -> None:
        """Turn the spec's parameters of ``module`` into plain tensor attributes of their shape
        on one shared zero, for a module whose every forward pass supplies them (BbH's net
        copy): as parameters their D numbers would stay resident and be saved with every
        checkpoint. They leave ``parameters()`` and ``state_dict()``.

        Args:
            module: A module with the spec's parameters.
        """
        for owner, attr in self._slots(module):
            p = owner._parameters.pop(attr)
            assert p is not None  # the spec lists registered parameters only
            setattr(owner, attr, torch.zeros((), dtype=p.dtype, device=p.device).expand(p.shape))

    def apply_to_released(self, module: nn.Module, fn: Callable[[Tensor], Tensor]) -> None:
        """Apply ``fn`` (``.to()``, ``.double()``, ...) to the tensors ``release`` left.

        Args:
            module: The module ``release`` was called on.
            fn: What ``nn.Module._apply`` applies.
        """
        for owner, attr in self._slots(module):
            t = getattr(owner, attr)
            zero = fn(torch.zeros((), dtype=t.dtype, device=t.device))
            setattr(owner, attr, zero.expand(t.shape))


def has_running_stats(net: nn.Module) -> bool:
    """True if ``net`` has a normalisation layer that updates running statistics in training.

    Args:
        net: The module.

    Returns:
        Whether a BatchNorm layer of ``net`` tracks running statistics and is in training mode.
    """
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training
        for m in net.modules()
    )


def auto_forward_mode(
    net: nn.Module, num_samples: int, examples_per_sample: int, dim: int, device: torch.device
) -> ForwardMode:
    """The mode ``auto`` picks: loop where vmap is impossible or measured slower, else vmap.

    Loop for BatchNorm with running statistics (vmap cannot update them) and for one sample;
    on a CPU, loop for nets with attention layers (``bbh.batching.ATTENTION_MODULES``: vmap
    runs them through PyTorch's generic per-sample fallback, and a transformer encoder
    classifier measured 1.08-1.56x slower under vmap than in a loop, ``CPU_ATTENTION_LOOP``) and
    when ``examples_per_sample * dim > CPU_VMAP_MAX_WORK`` (``dim``: the weights a pass uses,
    sampled or not); vmap otherwise (on a GPU batching the samples saves kernel launches; check
    with ``benchmarks/sampled_forward.py`` and ``benchmarks/sequence_nets.py --device cuda``).
    Modules without any vmap rule (``nn.LSTM``, ...) run in a loop whatever the mode
    (``sampled_forward``).

    Args:
        net: The net.
        num_samples: S, the weight samples per pass.
        examples_per_sample: The examples each sample sees.
        dim: The weights a pass uses.
        device: Where it runs.

    Returns:
        ``ForwardMode.LOOP`` or ``ForwardMode.VMAP``.
    """
    if has_running_stats(net) or num_samples == 1:
        return ForwardMode.LOOP
    if device.type == "cpu" and examples_per_sample * dim > CPU_VMAP_MAX_WORK:
        return ForwardMode.LOOP
    if device.type == "cpu" and CPU_ATTENTION_LOOP and batching.has_attention(net):
        return ForwardMode.LOOP
    return ForwardMode.VMAP


def sampled_forward(
    net: nn.Module,
    params: Mapping[str, Tensor],
    x: Inputs,
    *,
    x_per_sample: bool = False,
    mode: ForwardMode | str = ForwardMode.AUTO,
    share_trunk: bool = False,
) -> Tensor:
    """Run ``net`` once per weight sample: ``{name: [S, *shape]}`` and x -> outputs ``[S, B, ...]``.

    ``x`` is a tensor ``[B, ...]``, or a tuple, list or dict of them (``bbh.inputs``: a tuple
    goes to the net as positional arguments, a dict as keyword arguments); integer tensors
    (token ids) pass unchanged. Parameters not in ``params`` (deterministic ones) and buffers
    come from ``net`` itself. With ``x_per_sample`` every input tensor is ``[S, B, ...]`` and
    sample s sees its ``[s]`` (used to split a batch between samples); otherwise every sample
    sees the same ``x``, and with ``share_trunk`` a net in ``eval()`` mode on a tensor input runs
    the part that no sampled parameter reaches once for all samples (``bbh.trunk``: a Bayesian
    head or last layer on point-estimate features), checked against the whole net on its first
    batch.

    Modules without a ``vmap`` batching rule (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``, ...) run in a
    loop over samples whatever ``mode`` says, learned on the first call (``bbh.batching``, with a
    one-time ``VmapFallbackWarning``).

    Args:
        net: The net whose parameters ``params`` replaces.
        params: ``{name: [S, *shape]}``, the sampled parameters (a subset of the net's).
        x: Inputs ``[B, ...]`` (``[S, B, ...]`` with ``x_per_sample``).
        x_per_sample: Each sample gets its own batch.
        mode: ``auto``, ``vmap`` or ``loop`` (``auto_forward_mode``).
        share_trunk: Run the part no sampled parameter reaches once (see above).

    Returns:
        Outputs ``[S, B, ...]``.

    Raises:
        ValueError: ``params`` is empty, its tensors disagree on S, or ``mode`` is unknown.
    """
    mode = parse_enum(ForwardMode, mode, "forward mode")
    if not params:
        raise ValueError("params is empty: nothing to sample")
    sizes = {p.shape[0] for p in params.values()}
    if len(sizes) != 1:
        raise ValueError(f"parameters disagree on the sample count S: {sorted(sizes)}")
    s = sizes.pop()
    if x_per_sample:
        wrong = [(n, t) for n, t in named_tensors(x) if t.dim() < 2 or t.shape[0] != s]
        if wrong:
            name, t = wrong[0]
            raise ValueError(
                f"x_per_sample needs {name} of shape [S={s}, B, ...], got {list(t.shape)}"
            )
    split = None
    if share_trunk and not x_per_sample and isinstance(x, Tensor):  # one traced input
        split = trunk.trunk_for(net, params)
    if split is None or not isinstance(x, Tensor):
        return _per_sample(net, params, call_args(net, x), s, x_per_sample, mode)
    features = split.trunk(x)
    if not split.checked:
        if not _split_agrees(net, split.head, features, params, x, mode):
            trunk.disable(net, params)  # with a warning
            return _per_sample(net, params, call_args(net, x), s, x_per_sample, mode)
        split.checked = True
    return _per_sample(split.head, params, (features, {}), s, False, mode)


def _split_agrees(
    net: nn.Module,
    head: nn.Module,
    features: tuple[Tensor, ...],
    params: Mapping[str, Tensor],
    x: Tensor,
    mode: ForwardMode,
) -> bool:
    """Sample 0 through the head on the trunk's ``features`` and through the whole net on
    ``x``, from the same random state."""
    first = {k: v[:1] for k, v in params.items()}
    devices = [x.device.index or 0] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        shared = _per_sample(head, first, (features, {}), 1, False, mode)
    with torch.random.fork_rng(devices=devices):
        whole = _per_sample(net, first, ((x,), {}), 1, False, mode)
    return trunk.outputs_agree(shared, whole)


CallArgs = tuple[tuple[Any, ...], dict[str, Any]]


def _per_sample(
    net: nn.Module,
    params: Mapping[str, Tensor],
    inputs: CallArgs,
    s: int,
    x_per_sample: bool,
    mode: ForwardMode,
) -> Tensor:
    """``net(*args, **kwargs)`` once per sample of ``params`` (``inputs = (args, kwargs)``);
    with ``x_per_sample``, sample i sees entry i of every input tensor."""
    first = first_tensor(inputs)
    if mode is ForwardMode.AUTO:
        examples = first.shape[1] if x_per_sample else first.shape[0]
        # the weights each sample's pass uses: its own and the net's point estimates (a Bayesian
        # subnetwork's shared fc1 makes each pass as costly as a full one: loop wins there)
        dim = sum(p[0].numel() for p in params.values())
        dim += sum(p.numel() for n, p in net.named_parameters() if n not in params)
        mode = auto_forward_mode(net, s, examples, dim, first.device)
    if mode is ForwardMode.VMAP and batching.needs_loop(net) is None:
        try:
            with batching.quiet_slow_fallback(batching.has_attention(net)):
                return _vmapped(net, params, inputs, x_per_sample)
        except RuntimeError as err:
            if not batching.is_missing_rule(err):
                raise
            batching.learn_from(err, net, s)  # warns once per module type
    # ``unbind`` once per tensor, not ``v[i]`` per sample: the backward of each indexing
    # zero-fills a full [S, *shape] gradient (O(S^2 D) work); that of ``unbind`` is one stack.
    names = list(params)
    per_sample = zip(*(params[k].unbind(0) for k in names), strict=True)
    calls = unbind(inputs) if x_per_sample else [inputs] * s  # type: ignore[arg-type]
    outs = [
        functional_call(net, dict(zip(names, p, strict=True)), args, kwargs)
        for p, (args, kwargs) in zip(per_sample, calls, strict=True)
    ]
    return torch.stack(outs)


def _vmapped(
    net: nn.Module, params: Mapping[str, Tensor], inputs: CallArgs, x_per_sample: bool
) -> Tensor:
    args, kwargs = inputs
    if x_per_sample:
        return vmap(
            lambda p, a, k: functional_call(net, p, a, k),
            in_dims=(0, 0, 0),
            randomness="different",
        )(dict(params), args, kwargs)
    return vmap(lambda p: functional_call(net, p, args, kwargs), randomness="different")(
        dict(params)
    )
