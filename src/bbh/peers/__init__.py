"""The peers: uncertainty methods of other packages behind ``bbh.Method``, trained on the same
net, batches and data order as bbh's own methods, for ``bbh compare``.

- ``laplace``: laplace-torch's last-layer Laplace, KFAC, prior precision by marginal likelihood,
  GLM predictive with the probit link (their recommended setting), fitted on a trained MAP net
  (``bbh.peers.laplace``);
- ``laplace_all``: the same over every weight (KFAC by the asdl back-end; ``hessian="diag"``);
- ``ivon``: IVON through ``ivon-opt`` (``bbh.peers.ivon``);
- ``swag``: SWA-Gaussian, low rank plus diagonal, our implementation of Maddox et al. 2019
  (``bbh.peers.swag``).

They live in their own registry, ``PEERS``, rather than ``bbh.build``'s: ``build`` returns a
method that ``bbh.fit`` trains by its ``loss``, while Laplace is fitted post hoc, IVON steps its
own optimiser inside ``sampled_params`` and SWAG collects moments along a run. Each peer is
instead trained by one call, ``train_peer``, that uses ``fit``'s ``ShuffleSampler`` order for
the same ``seed`` (Laplace and SWAG train through ``fit`` itself). laplace-torch and ivon-opt are
imported only when a peer needs them; without them the error names the ``peers`` extra.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from bbh.inputs import Inputs
from bbh.methods.base import Method
from bbh.methods.map import MAP
from bbh.peers._common import PeerPackageMissing, require
from bbh.peers.ivon import IVONPeer, train_ivon
from bbh.peers.laplace import LaplacePeer, fit_laplace
from bbh.peers.swag import SWAG, train_swag
from bbh.training.loop import fit

Trainer = Callable[..., Method]


def _train_laplace(
    net: nn.Module,
    x: Inputs,
    y: Tensor,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    transform: Callable[[Inputs, torch.Generator], Inputs] | None = None,
    subset: str = "last_layer",
    hessian: str = "kron",
    pretrained: bool = False,
    lr: float | None = None,
    prior_scale: float = 1.0,
    backend: str | None = None,
) -> Method:
    """MAP training by ``fit`` (unless ``pretrained``), then ``fit_laplace`` on its net."""
    clock = time.perf_counter()
    if not pretrained:
        model = MAP(net, prior_scale=prior_scale)
        fit(model, x, y, steps=steps, batch_size=batch_size, lr=lr, seed=seed, transform=transform)
        net = model.net
    if not isinstance(x, Tensor):
        raise TypeError("laplace-torch takes tensor inputs only")
    peer = fit_laplace(
        net, x, y, subset=subset, hessian=hessian, batch_size=batch_size,
        prior_precision=1.0 / prior_scale**2, backend=backend,
    )  # fmt: skip
    peer.train_seconds = time.perf_counter() - clock  # type: ignore[assignment]
    return peer


#: ``laplace`` over every weight: KFAC by asdl unless ``hessian`` or ``backend`` say otherwise
#: (asdl fitted LeNet-5's KFAC several times faster than the default curvlinops)
_train_laplace_all = functools.partial(_train_laplace, subset="all", hessian="kron", backend="asdl")


#: name -> trainer(net, x, y, *, steps, batch_size, seed, transform, **options) -> Method
PEERS: dict[str, Trainer] = {
    "laplace": _train_laplace,
    "laplace_all": _train_laplace_all,
    "ivon": train_ivon,
    "swag": train_swag,
}

#: The package each peer imports (None: our own code).
PEER_PACKAGES: dict[str, str | None] = {
    "laplace": "laplace",
    "laplace_all": "laplace",
    "ivon": "ivon",
    "swag": None,
}


#: The distribution that provides each package of ``PEER_PACKAGES``.
PEER_DISTRIBUTIONS = {"laplace": "laplace-torch", "ivon": "ivon-opt"}


def peer_settings(name: str) -> dict[str, str]:
    """What a trained peer depends on beyond its data and budget: its trainer's default options
    (and, for Laplace, ``fit_laplace``'s) and its package's installed version. ``bbh compare``
    scores a peer's row again when these change.

    Args:
        name: A key of ``PEERS``.

    Returns:
        A dict from each option to the ``repr`` of its default, and ``"package"`` to the
        distribution and its version.

    Raises:
        ValueError: ``name`` is not a peer.
    """
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; available: {sorted(PEERS)}")
    functions: list[Callable[..., Any]] = [PEERS[name]]
    if PEER_PACKAGES[name] == "laplace":
        functions.append(fit_laplace)
    out: dict[str, str] = {}
    for function in functions:
        for param in inspect.signature(function).parameters.values():
            if param.default is not inspect.Parameter.empty:
                out.setdefault(param.name, repr(param.default))
    module = PEER_PACKAGES[name]
    if module is None:
        out["package"] = "bbh (our implementation)"
    else:
        dist = PEER_DISTRIBUTIONS[module]
        try:
            out["package"] = f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            out["package"] = f"{dist} (not installed)"
    return out


def available_peers() -> list[str]:
    """The peers' names whose packages import here.

    Returns:
        The names, sorted.
    """
    out = []
    for name, module in PEER_PACKAGES.items():
        try:
            if module is not None:
                require(module, module)
        except PeerPackageMissing:
            continue
        out.append(name)
    return sorted(out)


def train_peer(
    name: str,
    net: nn.Module,
    x: Inputs,
    y: Tensor,
    *,
    steps: int,
    batch_size: int,
    seed: int = 0,
    transform: Callable[[Inputs, torch.Generator], Inputs] | None = None,
    validation: tuple[Inputs, Tensor] | None = None,
    **options: Any,
) -> Method:
    """Train peer ``name`` on ``net`` and ``(x, y)`` with ``fit``'s batch order for ``seed``.

    Args:
        name: A key of ``PEERS``: ``laplace``, ``laplace_all``, ``ivon`` or ``swag``.
        net: The (untrained) network; copied. For ``laplace`` with ``pretrained=True``, the
            trained one.
        x: Training inputs ``[N, ...]``.
        y: Class ids ``[N]``.
        steps: Optimiser steps (for Laplace: of the MAP training before the fit).
        batch_size: Examples per step.
        seed: Seeds the batch order, as ``fit``'s.
        transform: A batch transform (augmentation), as ``fit`` takes it.
        validation: Accepted for one signature with ``fit``; no peer uses it (Laplace tunes its
            prior precision by the marginal likelihood).
        **options: The peer's own options (``train_ivon``, ``train_swag``, ``fit_laplace``;
            ``laplace`` also takes ``pretrained``, ``lr`` and ``prior_scale``).

    Returns:
        The trained peer, a ``bbh.Method`` in eval mode with ``train_seconds`` (wall time of its
        training and fitting).

    Raises:
        ValueError: ``name`` is not a peer.
        PeerPackageMissing: The peer's package is not installed.
    """
    del validation
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; available: {sorted(PEERS)}")
    return PEERS[name](net, x, y, steps=steps, batch_size=batch_size, seed=seed,
                       transform=transform, **options)  # fmt: skip


__all__ = [
    "PEERS",
    "PEER_PACKAGES",
    "SWAG",
    "IVONPeer",
    "LaplacePeer",
    "PeerPackageMissing",
    "available_peers",
    "fit_laplace",
    "peer_settings",
    "train_ivon",
    "train_peer",
    "train_swag",
]
