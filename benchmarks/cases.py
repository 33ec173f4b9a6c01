"""What the benchmarks measure: the nets (with their batches) and the methods (with their options).

Edit the lists here to add a case; every benchmark reads them.

- ``NETS``: LeNet-5 (MNIST, batch 100), the paper's CIFAR ResNet (24x24, batch 100), ResNet-18
  (32x32, batch 128, 11.2M weights) and, on a GPU only, ResNet-50 (23.5M weights). At
  ``scale="tiny"`` each is shrunk (narrow, small batch) for smoke tests.
- ``BASELINES``: every registered method except BbH, with the paper's options.
- ``BBH_CONFIGS``: the Bayes by Hypernet configurations compared (**add the recommended one
  here**); ``registry_grid()`` adds every generator x KL estimator of the registries, so a newly
  registered estimator is benchmarked without editing this file.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from bbh.divergences import KL_ESTIMATORS, uses_posterior
from bbh.hypernets import GENERATORS
from bbh.methods import build
from bbh.methods.base import Method
from bbh.nets import CifarResNet, LeNet5, resnet18, resnet50
from bbh.posteriors.layers import NORM_TYPES, deterministic_predicate
from bbh.training import make_optimizer

#: Hypernets above this many parameters are skipped (recorded as skipped, with the count): the
#: paper's layer-wise generator has ~512 x D parameters, 5.7 billion for ResNet-18.
DEFAULT_MAX_HYPERNET_PARAMS = 300_000_000


# --------------------------------------------------------------------------- nets


@dataclass(frozen=True)
class NetCase:
    """A primary net with the input batch it is benchmarked on."""

    name: str
    description: str
    make: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one example, e.g. (1, 28, 28)
    num_classes: int
    batch_size: int
    num_data: int  # training-set size N in the loss's KL / N
    gpu_only: bool = False
    architecture: str = ""  # the net's family where its name says more (resnet18_w8: resnet18)

    def batch(self, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed random batch ``x [B, *input_shape]``, ``y [B]``."""
        gen = torch.Generator().manual_seed(seed)
        x = torch.rand(self.batch_size, *self.input_shape, generator=gen)
        y = torch.randint(0, self.num_classes, (self.batch_size,), generator=gen)
        return x.to(device), y.to(device)


def _paper_nets() -> dict[str, NetCase]:
    return {
        "lenet": NetCase(
            "lenet", "LeNet-5, MNIST 28x28, batch 100", LeNet5, (1, 28, 28), 10, 100, 55_000
        ),
        "cifar_resnet": NetCase(
            "cifar_resnet",
            "the paper's CIFAR-5 ResNet (instance norm), 24x24, batch 100",
            lambda: CifarResNet(5),
            (3, 24, 24),
            5,
            100,
            25_000,
        ),
        "resnet18": NetCase(
            "resnet18",
            "ResNet-18 (CIFAR form, batch norm), 32x32, batch 128",
            lambda: resnet18(10),
            (3, 32, 32),
            10,
            128,
            50_000,
        ),
        "resnet50": NetCase(
            "resnet50",
            "ResNet-50 (CIFAR form, batch norm), 32x32, batch 128",
            lambda: resnet50(10),
            (3, 32, 32),
            10,
            128,
            50_000,
            gpu_only=True,
        ),
    }


def _tiny_nets() -> dict[str, NetCase]:
    return {
        "lenet": NetCase("lenet", "LeNet-5, batch 10 (tiny)", LeNet5, (1, 28, 28), 10, 10, 100),
        "cifar_resnet": NetCase(
            "cifar_resnet",
            "CIFAR ResNet, 1 unit per scale, 4-8 channels, 12x12, batch 10 (tiny)",
            lambda: CifarResNet(5, filters=(4, 4, 8, 8), units_per_scale=1),
            (3, 12, 12),
            5,
            10,
            100,
        ),
        "resnet18": NetCase(
            "resnet18",
            "ResNet-18 at width 4, 16x16, batch 10 (tiny)",
            lambda: resnet18(10, width=4),
            (3, 16, 16),
            10,
            10,
            100,
        ),
        "resnet50": NetCase(
            "resnet50",
            "ResNet-50 at width 2, 16x16, batch 10 (tiny)",
            lambda: resnet50(10, width=2),
            (3, 16, 16),
            10,
            10,
            100,
            gpu_only=True,
        ),
    }


def nets(scale: str) -> dict[str, NetCase]:
    if scale == "paper":
        return _paper_nets()
    if scale == "tiny":
        return _tiny_nets()
    raise ValueError(f"unknown scale {scale!r}; allowed: ['paper', 'tiny']")


def select_nets(names: list[str] | None, scale: str, device: torch.device) -> list[NetCase]:
    """The nets named (default: all that run on ``device``); unknown names are an error."""
    available = nets(scale)
    if names is None:
        return [c for c in available.values() if device.type == "cuda" or not c.gpu_only]
    unknown = sorted(set(names) - set(available))
    if unknown:
        raise SystemExit(f"--nets: unknown net(s) {unknown}; available: {sorted(available)}")
    return [available[n] for n in names]


def resnet18_width_cases(scale: str) -> list[NetCase]:
    """ResNet-18 at growing widths, the sweep over D: 0.18M, 0.7M, 2.8M and 11.2M weights."""
    if scale == "paper":
        widths, shape, batch = (8, 16, 32, 64), (3, 32, 32), 128
    else:
        widths, shape, batch = (2, 4), (3, 16, 16), 10
    return [
        NetCase(
            f"resnet18_w{w}",
            f"ResNet-18 at width {w}, {shape[1]}x{shape[2]}, batch {batch}",
            (lambda w=w: resnet18(10, width=w)),  # type: ignore[misc]
            shape,
            10,
            batch,
            50_000,
            architecture="resnet18",
        )
        for w in widths
    ]


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class MethodCase:
    """A method of the registry with options; ``label`` names it in records and plots."""

    label: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    tiny_options: dict[str, Any] = field(default_factory=dict)  # overrides at scale="tiny"
    for_nets: tuple[str, ...] = ()  # the nets its options name modules of (empty: every net)

    def skip_reason(self, net_case: NetCase) -> str | None:
        """Why this case does not run on ``net_case`` (``None``: it does)."""
        if self.for_nets and (net_case.architecture or net_case.name) not in self.for_nets:
            return f"defined for {', '.join(self.for_nets)} only (its options name their modules)"
        return None

    def build(self, net: nn.Module, scale: str) -> Method:
        options = dict(self.options)
        if scale == "tiny":
            options.update(self.tiny_options)
        return build(self.name, net, **_with_norm_options(self.name, net, options))


_TINY_HYPERNET = {"hidden": (8, 16), "noise_dim": 4}
_PAPER = {"preset": "paper"}  # the paper's options, for the rows that vary one of them

MAP_CASE = MethodCase("map", "map")

BASELINES: list[MethodCase] = [
    MethodCase("mc_dropout (p=0.5)", "mc_dropout", {"p": 0.5}),
    MethodCase("ensemble (M=5, adversarial)", "ensemble", {"num_members": 5}),
    MethodCase(
        "ensemble (M=5, no adversarial)", "ensemble", {"num_members": 5, "adversarial": False}
    ),
    MethodCase("bbb (sample)", "bbb"),
    MethodCase("bbb (local)", "bbb", {"sigma_noise": "local"}),
    MethodCase("bbb (flipout)", "bbb", {"sigma_noise": "flipout"}),
    MethodCase("mnf", "mnf", tiny_options={"flow_hidden": 8, "aux_flow_hidden": 8}),
]

#: Bayes by Hypernet configurations. Add the recommended configuration here (first).
BBH_CONFIGS: list[MethodCase] = [
    # the defaults (preset "recommended"): chunked, semi-implicit, kl="jacobian", S = 2, split
    MethodCase("bbh recommended", "bbh", {}, {"noise_dim": 4}),
    # the recommended configuration before the shared tensor scale of sigma (issue 25)
    MethodCase(
        "bbh recommended, no tensor scale", "bbh", {"sigma_tensor_scale": False}, {"noise_dim": 4}
    ),
    # the semi-implicit noise per example in training (local reparameterisation / Flipout)
    MethodCase(
        "bbh recommended, sigma_noise=local", "bbh", {"sigma_noise": "local"}, {"noise_dim": 4}
    ),
    MethodCase(
        "bbh recommended, sigma_noise=flipout", "bbh", {"sigma_noise": "flipout"}, {"noise_dim": 4}
    ),
    # the recommended model before issue 25 (N(0, I); the temperature and sigma_rate cost
    # nothing a step): what the fan-in prior's per-weight cross term adds
    MethodCase(
        "bbh recommended, isotropic prior",
        "bbh",
        {"prior": "isotropic", "prior_scale": 1.0},
        {"noise_dim": 4, "prior": "isotropic", "prior_scale": 1.0},
    ),
    # cheaper variants of it a user can choose (docs/performance.md: their cost and accuracy)
    MethodCase("bbh recommended, S=1", "bbh", {"num_samples": 1}, {"noise_dim": 4}),
    MethodCase("bbh kronecker", "bbh", {"generator": "kronecker"}),
    MethodCase("bbh recommended, S=1, k=4", "bbh", {"num_samples": 1, "noise_dim": 4}),
    MethodCase(
        "bbh recommended, S=1, jacobian_chunks=4",
        "bbh",
        {"num_samples": 1, "jacobian_chunks": 4},
        {"noise_dim": 4, "jacobian_chunks": 2},
    ),
    # the exact Gram (the default, jacobian_chunks="auto", takes 4 random chunks on large nets)
    MethodCase(
        "bbh recommended, all chunks",
        "bbh",
        {"jacobian_chunks": None},
        {"noise_dim": 4, "jacobian_chunks": None},
    ),
    # a Bayesian subnetwork: LeNet-5's fc1 (400k of its 431k weights) a point estimate, the
    # other 31k generated (docs/performance.md: step time and MNIST calibration)
    MethodCase(
        "bbh recommended, fc1 point estimate",
        "bbh",
        {"deterministic": ["fc1"]},
        {"noise_dim": 4, "deterministic": ["fc1"]},
        for_nets=("lenet",),
    ),
    MethodCase(
        "bbh recommended, S=1, fc1 point estimate",
        "bbh",
        {"deterministic": ["fc1"], "num_samples": 1},
        {"noise_dim": 4, "deterministic": ["fc1"], "num_samples": 1},
        for_nets=("lenet",),
    ),
    # a deterministic trunk: prediction runs the point-estimate layers once for all samples
    # (bbh.trunk); a Bayesian head (the convolutions point estimates) and a Bayesian last layer
    MethodCase(
        "bbh recommended, conv point estimates",
        "bbh",
        {"deterministic": ["conv1", "conv2"]},
        {"noise_dim": 4, "deterministic": ["conv1", "conv2"]},
        for_nets=("lenet",),
    ),
    MethodCase(
        "bbh recommended, fc2 alone generated",
        "bbh",
        {"deterministic": ["conv1", "conv2", "fc1"]},
        {"noise_dim": 4, "deterministic": ["conv1", "conv2", "fc1"]},
        for_nets=("lenet",),
    ),
    # the defaults before the chunks' linear noise path, the antithetic pairs and "auto" chunks
    MethodCase(
        "bbh recommended, plain",
        "bbh",
        {"noise_mixing": False, "antithetic": False, "jacobian_chunks": None},
        {"noise_dim": 4, "jacobian_chunks": None},
    ),
    # num_chunks="auto": the chunk count with the fewest parameters (190 on LeNet-5)
    MethodCase(
        "bbh recommended, auto chunks",
        "bbh",
        {"num_chunks": "auto"},
        {"noise_dim": 4, "num_chunks": "auto"},
    ),
    # per-weight sigmas (calibrated) with the small output layer and one sample: q about 2.03 D
    MethodCase(
        "bbh auto chunks, S=1",
        "bbh",
        {"num_chunks": "auto", "num_samples": 1},
        {"noise_dim": 4, "num_chunks": "auto", "num_samples": 1},
    ),
    # the smallest q: one sigma per output unit (q's parameters about 1.07 D on ResNet-18)
    MethodCase(
        "bbh sigma per unit", "bbh", {"sigma_per": "unit"}, {"noise_dim": 4, "sigma_per": "unit"}
    ),
    MethodCase(
        "bbh sigma per unit, S=1",
        "bbh",
        {"sigma_per": "unit", "num_samples": 1},
        {"noise_dim": 4, "sigma_per": "unit", "num_samples": 1},
    ),
    # the smallest q and step: q about 1.04 D on ResNet-18 (MNIST calibration worse: docs)
    MethodCase(
        "bbh sigma per unit, auto chunks, S=1",
        "bbh",
        {"sigma_per": "unit", "num_chunks": "auto", "num_samples": 1},
        {"noise_dim": 4, "sigma_per": "unit", "num_chunks": "auto", "num_samples": 1},
    ),
    # one sigma per convolution kernel (shared by its taps), per weight in matrices: q about
    # 1.16 D on ResNet-18, whose 3 x 3 convolutions hold almost all of its weights
    MethodCase(
        "bbh sigma per kernel, auto chunks, S=1",
        "bbh",
        {"sigma_per": "kernel", "num_chunks": "auto", "num_samples": 1},
        {"noise_dim": 4, "sigma_per": "kernel", "num_chunks": "auto", "num_samples": 1},
    ),
    # the same with the Gram from 4 random chunks (auto takes a quarter: 47 of LeNet-5's 190)
    MethodCase(
        "bbh sigma per unit, auto chunks, S=1, jacobian_chunks=4",
        "bbh",
        {"sigma_per": "unit", "num_chunks": "auto", "num_samples": 1, "jacobian_chunks": 4},
        {
            "noise_dim": 4,
            "sigma_per": "unit",
            "num_chunks": "auto",
            "num_samples": 1,
            "jacobian_chunks": 2,
        },
    ),
    MethodCase("bbh paper (layerwise, nn_full, nll=first)", "bbh", _PAPER, _TINY_HYPERNET),
    MethodCase("bbh layerwise, entropy", "bbh", {**_PAPER, "kl": "entropy"}, _TINY_HYPERNET),
    MethodCase(
        "bbh chunked, entropy",
        "bbh",
        {**_PAPER, "generator": "chunked", "kl": "entropy"},
        _TINY_HYPERNET,
    ),
    MethodCase(
        "bbh chunked, entropy, nll=split",
        "bbh",
        {**_PAPER, "generator": "chunked", "kl": "entropy", "nll": "split"},
        _TINY_HYPERNET,
    ),
    MethodCase(
        "bbh chunked, entropy, nll=mean",
        "bbh",
        {**_PAPER, "generator": "chunked", "kl": "entropy", "nll": "mean"},
        _TINY_HYPERNET,
    ),
]


def registry_grid(extra: dict[str, Any] | None = None) -> list[MethodCase]:
    """Every generator x KL estimator of the registries, BbH's other options at their defaults.

    The estimators that need a semi-implicit posterior get the default ``init_sigma``; the
    others the paper's purely implicit one. Labels start with ``bbh grid:``, so a record keyed
    by label never mixes them up with a configuration of ``BBH_CONFIGS``.
    """
    cases = []
    for gen, kl in registry_pairs():
        noise = {} if uses_posterior(kl) else {"init_sigma": None}
        options = {"generator": gen, "kl": kl, **noise, **(extra or {})}
        label = f"bbh grid: {gen}, {kl}"  # never one of BBH_CONFIGS' labels
        cases.append(MethodCase(label, "bbh", options, _tiny_generator(gen)))
    return cases


#: generator and KL estimator pairs that do not go together: the semi-implicit bound needs the
#: semi-implicit noise that the Kronecker generator, a Gaussian of its own, does not have
INCOMPATIBLE = {("kronecker", "sivi")}


def registry_pairs() -> list[tuple[str, str]]:
    """Every generator x KL estimator of the registries but the ``INCOMPATIBLE`` pairs."""
    pairs = [(g, k) for g in GENERATORS for k in KL_ESTIMATORS]
    return [(g, k) for g, k in pairs if (g, getattr(k, "value", k)) not in INCOMPATIBLE]


def _tiny_generator(gen: str) -> dict[str, Any]:
    """The tiny scale's generator options that ``gen`` has: the affine generator has no hidden
    layers, the Kronecker one neither, nor a noise size of its own."""
    if gen == "kronecker":
        return {}
    if gen == "affine":
        return {"noise_dim": _TINY_HYPERNET["noise_dim"]}
    return dict(_TINY_HYPERNET)


def all_methods() -> list[MethodCase]:
    return [*BASELINES, *BBH_CONFIGS]


def select_methods(patterns: list[str] | None) -> list[MethodCase]:
    """Methods whose label contains any of ``patterns`` (default: all but MAP itself); a pattern
    equal to a label picks that method only."""
    cases = all_methods()
    if patterns is None:
        return cases
    chosen = [c for c in cases if any(label_matches(p, c.label, cases) for p in patterns)]
    if not chosen:
        raise SystemExit(
            f"--methods {patterns} matches no method; labels: {[c.label for c in cases]}"
        )
    return chosen


def label_matches(pattern: str, label: str, cases: list[MethodCase]) -> bool:
    if any(c.label == pattern for c in cases):
        return label == pattern
    return pattern in label


def planned_parameters(case: MethodCase, net: nn.Module, scale: str) -> int:
    """Trainable parameters the method would have, counted on the meta device (no memory)."""
    with torch.device("meta"):
        method = case.build(copy.deepcopy(net).to("meta"), scale)
    return sum(p.numel() for p in method.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- training steps


@dataclass
class Training:
    """A method on a device with its optimiser and one batch; ``step()`` is one training step."""

    method: Method
    optimizer: torch.optim.Optimizer
    x: torch.Tensor
    y: torch.Tensor
    num_data: int

    def step(self) -> None:
        self.step_with(self.method.loss)

    def step_with(self, loss_fn: Callable[..., Any]) -> None:
        """One step with ``loss_fn`` in place of ``method.loss`` (e.g. a compiled one)."""
        loss, _ = loss_fn(self.x, self.y, num_data=self.num_data)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def make_training(
    case: MethodCase,
    net_case: NetCase,
    device: torch.device,
    scale: str,
    *,
    net: nn.Module | None = None,
    lr: float = 1e-4,
) -> Training:
    """Build ``case`` around ``net`` (default: a fresh ``net_case.make()``) on ``device``.

    The learning rate is small and fixed (1e-4): the benchmark times steps, it does not train.
    """
    torch.manual_seed(0)
    method = case.build(net if net is not None else net_case.make(), scale).to(device)
    method.train()
    params = [p for p in method.parameters() if p.requires_grad]
    x, y = net_case.batch(device)
    return Training(method, make_optimizer(params, "adam", lr), x, y, net_case.num_data)


def hypernet_parameters(method: Method) -> int | None:
    hypernet = getattr(method, "posterior", None)
    if getattr(hypernet, "generator", None) is None:  # BbH's posterior holds a generator
        return None
    return sum(p.numel() for p in hypernet.parameters() if p.requires_grad)


def _with_norm_options(name: str, net: nn.Module, options: dict[str, Any]) -> dict[str, Any]:
    """Keep normalisation layers point estimates, the same way for every weight posterior.

    BbB's local noise, Flipout and MNF support only Linear/Conv2d layers, so norm layers must be
    deterministic for them; BbB (sample) and BbH get the same choice so they generate the same D.
    """
    if not any(isinstance(m, NORM_TYPES) for m in net.modules()):
        return options
    if name in ("bbb", "mnf") and "deterministic" not in options:
        return {**options, "deterministic": ["norm"]}
    if name == "bbh" and "include" not in options:
        return {**options, "include": deterministic_predicate(net, ["norm"])}
    return options
