"""Deep ensembles (Lakshminarayanan, Pritzel and Blundell 2017).

M copies of the net, each with its own initialisation, trained on a proper scoring rule (the NLL)
with optional adversarial training; the predictive is the mean of the members' softmaxes.

- Adversarial training (the paper's default, ``adversarial=True``): for each member,
  ``x_adv = x + epsilon * sign(grad_x NLL_m(x))`` (stop-gradient), and the member's loss is
  ``alpha * NLL_m(x) + (1 - alpha) * NLL_m(x_adv)`` (epsilon 0.01, alpha 0.5).
- The returned loss is the **sum** of the members' losses, so each member's gradient is exactly
  that of training it alone; logs report member means.
- Data order (``data_order``): the Method interface hands ``loss`` one batch.

  - ``shared`` (default): every member sees the whole batch; members differ by initialisation
    (and by their adversarial examples). Lakshminarayanan et al. and later work found random
    initialisation the main source of diversity.
  - ``split``: the batch is randomly permuted and split into M disjoint parts, one per member,
    so each member follows its own random minibatch stream, as in the paper. To keep a member's
    batch size b and its number of updates, train with batch ``M * b`` and M times the epochs.

- Members are run with ``torch.func.vmap`` over their stacked parameters or in a loop;
  ``vectorize="auto"`` picks as ``bbh.functional.auto_forward_mode`` does for weight samples
  (a loop for running statistics, and on a CPU wherever vmap was measured slower).
- ``predict_logits`` returns the M members' outputs ``[M, B, C]`` whatever ``num_samples`` is:
  an ensemble has exactly M function draws (``fixed_num_samples = M``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from bbh import batching
from bbh.enums import DataOrder, MemberInit, Vectorize
from bbh.functional import ForwardMode, auto_forward_mode
from bbh.inputs import (
    Inputs,
    batch_size,
    call,
    call_args,
    first_tensor,
    index,
    map_tensors,
    named_tensors,
    unbind,
)
from bbh.likelihoods import make_likelihood
from bbh.methods.base import Method, check_num_samples
from bbh.options import parse_enum
from bbh.validation import at_least, checked_args, in_range


class DeepEnsemble(Method):
    """An ensemble of ``num_members`` copies of ``net``.

    Args:
        net: any ``nn.Module`` (copied; the user's net is not changed).
        num_members: M >= 1 (the paper: 10 on MNIST, 5 on CIFAR-5).
        adversarial: adversarial training as in Lakshminarayanan et al. (the paper: on).
        epsilon: FGSM step for adversarial training, in input units.
        alpha: weight of the clean NLL; ``1 - alpha`` weights the adversarial NLL.
        data_order: ``shared`` or ``split`` (see the module docstring).
        init: ``reset`` (own initialisation per member) or ``copy``.
        vectorize: ``auto``, ``vmap`` or ``loop``.
        likelihood: ``categorical`` or ``gaussian`` (with ``noise_scale``).
        noise_scale: the Gaussian likelihood's observation noise (its standard deviation),
            required with ``likelihood="gaussian"`` and refused with ``categorical``.
    """

    @checked_args(num_members=at_least(1), epsilon=at_least(0), alpha=in_range(0, 1))
    def __init__(
        self,
        net: nn.Module,
        *,
        num_members: int = 10,
        adversarial: bool = True,
        epsilon: float = 0.01,
        alpha: float = 0.5,
        data_order: DataOrder | str = DataOrder.SHARED,
        init: MemberInit | str = MemberInit.RESET,
        vectorize: Vectorize | str = Vectorize.AUTO,
        likelihood: str = "categorical",
        noise_scale: float | None = None,
    ):
        super().__init__()
        if isinstance(num_members, bool) or not isinstance(num_members, int) or num_members < 1:
            raise ValueError(f"num_members must be an int >= 1, got {num_members!r}")
        if not epsilon >= 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon!r}")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.adversarial = bool(adversarial)
        self.epsilon = float(epsilon)
        self.alpha = float(alpha)
        self.data_order = parse_enum(DataOrder, data_order, "data_order")
        member_init = parse_enum(MemberInit, init, "init")
        self.vectorize = parse_enum(Vectorize, vectorize, "vectorize")
        self.likelihood = make_likelihood(likelihood, noise_scale)
        if member_init is MemberInit.RESET:
            _check_resettable(net)
        members = []
        for _ in range(num_members):
            member = copy.deepcopy(net)
            if member_init is MemberInit.RESET:
                for module in member.modules():
                    reset = _reset_method(module)
                    if reset is not None:
                        reset()
            members.append(member)
        self.members = nn.ModuleList(members)

    @property
    def num_members(self) -> int:
        """The number of members M."""
        return len(self.members)

    @property
    def fixed_num_samples(self) -> int:
        """``predict_logits`` always returns this many draws (the members)."""
        return len(self.members)

    def probe_net(self) -> nn.Module:
        """The first member (every member has the same architecture).

        Returns:
            The first member.
        """
        return self.members[0]

    def member_outputs(self, x: Inputs, *, x_per_member: bool = False) -> Tensor:
        """Outputs ``[M, B, ...]``; with ``x_per_member`` every input tensor is ``[M, B, ...]``,
        one batch each. Members whose modules have no vmap rule (``bbh.batching``) run in a
        loop.

        Args:
            x: Inputs ``[B, ...]`` (``[M, B, ...]`` with ``x_per_member``), already checked.
            x_per_member: Each member gets its own batch.

        Returns:
            Outputs ``[M, B, ...]``.
        """
        first = first_tensor(x)
        examples = first.shape[1] if x_per_member else first.shape[0]
        if self._use_vmap(examples, first.device) and batching.needs_loop(self.members[0]) is None:
            try:
                with batching.quiet_slow_fallback(batching.has_attention(self.members[0])):
                    return self._vmap_outputs(x, x_per_member)
            except RuntimeError as err:
                if not batching.is_missing_rule(err):
                    raise
                batching.learn_from(err, self.members[0], self.num_members)
        xs = unbind(x) if x_per_member else [x] * self.num_members
        return torch.stack([call(m, xi) for m, xi in zip(self.members, xs, strict=True)])

    def loss(
        self, x: Inputs, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Sum over members of their (adversarial) NLL; ``kl_weight`` has no effect (no prior).

        Args:
            x: Inputs ``[B, ...]``, as for ``Method.loss``.
            y: Targets, as for ``Method.loss``.
            num_data: The training-set size, checked as for ``Method.loss`` (no KL to divide).
            kl_weight: Checked, then ignored.

        Returns:
            ``(loss, logs)`` as for ``Method.loss``.

        Raises:
            ValueError: As for ``Method.loss``.
            TypeError: As for ``Method.loss``.
        """
        x, y = self.check_batch(x, y, num_data=num_data, kl_weight=kl_weight)
        m, b = self.num_members, batch_size(x)
        if self.adversarial:
            _check_perturbable(x)
        if self.data_order is DataOrder.SPLIT:
            if b < m:
                raise ValueError(
                    f"data_order='split' needs a batch of at least M={m} examples, got {b}"
                )
            per = b // m
            idx = torch.randperm(b, device=y.device)[: per * m].reshape(m, per)
            xs, ys = index(x, idx), y[idx]
        else:
            xs = map_tensors(lambda t: t.unsqueeze(0).expand(m, *t.shape), x)
            ys = y.unsqueeze(0).expand(m, *y.shape)
        if self.adversarial:
            xs = map_tensors(lambda t: t.detach().clone().requires_grad_(True), xs)
        nll_clean = self._member_nll(self.member_outputs(xs, x_per_member=True), ys)  # [M]
        logs: dict[str, Tensor] = {"nll": nll_clean.mean().detach()}
        per_member = nll_clean
        if self.adversarial:
            leaves = [t for _, t in named_tensors(xs)]
            grads = iter(torch.autograd.grad(nll_clean.sum(), leaves, retain_graph=True))
            x_adv = map_tensors(lambda t: (t + self.epsilon * next(grads).sign()).detach(), xs)
            nll_adv = self._member_nll(self.member_outputs(x_adv, x_per_member=True), ys)
            per_member = self.alpha * nll_clean + (1 - self.alpha) * nll_adv
            logs["nll_adv"] = nll_adv.mean().detach()
        loss = per_member.sum()
        logs["loss"] = loss.detach()
        return loss, logs

    def predict_logits(self, x: Inputs, num_samples: int = 100) -> Tensor:
        """The members' outputs ``[M, B, C]`` (``num_samples`` is ignored: S = M).

        Args:
            x: Inputs ``[B, ...]``, as for ``loss``.
            num_samples: Checked (an int ``>= 1``), then ignored.

        Returns:
            Outputs ``[M, B, C]``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1`` or ``x`` fails the input checks.
        """
        check_num_samples(num_samples)
        x = self.check_input(x)
        return self.member_outputs(x)

    def _member_nll(self, outputs: Tensor, ys: Tensor) -> Tensor:
        """Per-member mean NLL ``[M]`` from outputs ``[M, B, C]`` and targets ``[M, B, ...]``."""
        return torch.stack(
            [-self.likelihood.log_prob(outputs[i], ys[i]).mean() for i in range(len(outputs))]
        )

    def _use_vmap(self, examples_per_member: int, device: torch.device) -> bool:
        if self.vectorize is Vectorize.LOOP or self.num_members == 1:
            return False
        if self.vectorize is Vectorize.VMAP:
            return True
        member = self.members[0]
        dim = sum(p.numel() for p in member.parameters())
        mode = auto_forward_mode(member, self.num_members, examples_per_member, dim, device)
        return mode is ForwardMode.VMAP

    def _vmap_outputs(self, x: Inputs, x_per_member: bool) -> Tensor:
        names = [n for n, _ in self.members[0].named_parameters()]
        buffer_names = [n for n, _ in self.members[0].named_buffers()]
        per = [dict(m.named_parameters()) for m in self.members]
        per_buf = [dict(m.named_buffers()) for m in self.members]
        params = {n: torch.stack([p[n] for p in per]) for n in names}
        buffers = {n: torch.stack([b[n] for b in per_buf]) for n in buffer_names}
        template = self.members[0]

        args, kwargs = call_args(template, x)

        def one(p: dict[str, Tensor], b: dict[str, Tensor], a: Any, k: Any) -> Tensor:
            return functional_call(template, (p, b), a, k)

        in_x = 0 if x_per_member else None
        return vmap(one, in_dims=(0, 0, in_x, in_x), randomness="different")(
            params, buffers, args, kwargs
        )


def _check_perturbable(x: Inputs) -> None:
    """Adversarial training moves the inputs along their gradient: floating tensors only."""
    for name, t in named_tensors(x):
        if not t.is_floating_point():
            raise TypeError(
                f"adversarial=True perturbs the inputs along their gradient, but {name} holds "
                f"{t.dtype} (token ids have no gradient); build the ensemble with "
                f"adversarial=False"
            )


def _reset_method(module: nn.Module) -> Callable[[], None] | None:
    """``reset_parameters``, or ``_reset_parameters`` (``nn.MultiheadAttention``'s), or None."""
    for name in ("reset_parameters", "_reset_parameters"):
        reset = getattr(module, name, None)
        if callable(reset):
            return reset
    return None


def _check_resettable(net: nn.Module) -> None:
    """Every module owning parameters must offer ``reset_parameters`` for ``init='reset'``."""
    bad = [
        name or "<root>"
        for name, module in net.named_modules()
        if any(True for _ in module.parameters(recurse=False)) and _reset_method(module) is None
    ]
    if bad:
        raise ValueError(
            f"init='reset' needs reset_parameters() on every module that owns parameters; "
            f"missing on {bad}. Add it, or use init='copy' (members then differ only by data "
            f"order and adversarial noise)"
        )
