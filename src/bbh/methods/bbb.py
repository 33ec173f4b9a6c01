"""Bayes by Backprop (Blundell, Cornebise, Kavukcuoglu and Wierstra 2015).

A mean-field Gaussian ``q(w) = N(mu, diag(sigma^2))`` over the flat vector ``[D]`` of the net's
generated parameters (every trainable parameter unless ``deterministic`` keeps some as point
estimates), trained on ``mean NLL + kl_weight * T * KL(q || p) / num_data`` with the KL in
closed form. It takes the same model as ``BayesByHypernet``'s recommended one (``bbh.priors``'s
fan-in prior, the temperature T chosen on validation data, ``log sigma`` free to reach its
optimum), so the two differ only in the posterior family; ``prior="isotropic", prior_scale=1,
temperature=1, sigma_rate=5e-4`` is the paper's (at lr 1e-3). The posterior acts on the
unmodified net from outside (``ParamSpec`` + ``sampled_forward``), so ``sigma_noise="sample"``
works for any module.

``sigma_noise`` (``weight_noise``, its old name, in configs and records), as BbH's:

- ``sample`` (default; Blundell et al. and the paper's code): ``num_train_samples`` weight
  samples per step, each shared by the whole batch (the paper: 1);
- ``local``: the local reparameterisation trick (Kingma et al. 2015), per-example output noise;
- ``flipout``: Flipout (Wen et al. 2018).

``local`` and ``flipout`` need every generated parameter to sit in an ``nn.Linear`` or
``nn.Conv2d``; other layers must be listed in ``deterministic`` (``"norm"`` = all normalisation
layers), checked at construction.

``kl="closed_form"`` (default) or any sample-based estimator of ``bbh.divergences`` on
``kl_samples`` extra posterior samples (the paper ran these variants on MNIST as well).

The paper's settings: ``init_log_var=-9`` (MNIST), ``-30`` (CIFAR), ``-3`` (toy); one sample per
step; no annealing (``kl_weight=1``). The means start from the net's own initial values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.func import functional_call

from bbh.divergences import KL_ESTIMATORS, make_kl_estimator, uses_posterior
from bbh.functional import ForwardMode, ParamSpec, sampled_forward
from bbh.inputs import Inputs, call_args
from bbh.likelihoods import make_likelihood
from bbh.methods.base import Method, check_num_samples
from bbh.methods.temperature import TemperedKL
from bbh.options import parse_enum
from bbh.posteriors.gaussian import MeanFieldGaussian
from bbh.posteriors.layers import deterministic_predicate, select_layers
from bbh.posteriors.local import WeightNoise, make_local, plain_weights
from bbh.priors import GaussianPrior, make_prior
from bbh.validation import at_least, checked_args, positive

#: ``sigma_rate``'s default, as ``BayesByHypernet``'s (``bbh.methods.bbh_options.SIGMA_RATE``)
SIGMA_RATE = 3e-2


class BayesByBackprop(TemperedKL, Method):
    """Mean-field Gaussian posterior over a copy of ``net``.

    Args:
        net: any ``nn.Module`` (copied; the user's net is not changed).
        prior: ``fan_in`` (default): ``N(0, prior_scale^2 / fan_in)`` per tensor; ``isotropic``
            (the paper): ``N(0, prior_scale^2 I)`` (``bbh.priors``); or a ``GaussianPrior``.
        prior_scale: the isotropic prior's s, or the fan-in prior's gain (default 3 for
            ``fan_in``, 1 for ``isotropic``).
        temperature: the KL's weight T, or ``"validation"`` (default): chosen by
            ``bbh.training.fit`` on its ``validation=`` data (``bbh.methods.temperature``).
        sigma_rate: about how far one Adam step at the default lr moves ``log sigma`` (default
            3e-2, as BbH's); ``None``: the log-variance learns at the optimiser's lr (the
            paper's, at lr 1e-3 about 5e-4 on ``log sigma`` a step: from ``init_log_var=-9``
            sigma reaches at most about 0.044 in 5 MNIST epochs).
        sigma_tensor_scale: one more learned scale per parameter tensor multiplying its
            weights' sigmas (default on, as BbH's recommended preset): sigma forgets its start
            within the run (docs/methods.md, "Where sigma goes").
        init_log_var: initial log-variance of every weight (jittered by ``init_log_var_std``).
        init_log_var_std: the standard deviation of the initial log-variances' jitter.
        sigma_noise: how training draws the weights' noise: ``sample``, ``local`` or
            ``flipout`` (see the module docstring).
        num_train_samples: forward passes per training step (each with its own noise).
        deterministic: module names (or ``"norm"``) whose parameters stay point estimates.
        likelihood: ``categorical`` or ``gaussian`` (with ``noise_scale``).
        noise_scale: the Gaussian likelihood's observation noise (its standard deviation),
            required with ``likelihood="gaussian"`` and refused with ``categorical``.
        forward_mode: ``auto``, ``vmap`` or ``loop`` for ``sigma_noise="sample"``.
        sample_batch: weight samples run at once by ``predict_logits``.
        predict_noise: ``weights`` (one weight sample per draw, shared by the batch) or
            ``training`` (the training noise; per example for ``local``/``flipout``).
        kl: ``closed_form`` (default) or a sample-based estimator of ``bbh.divergences``
            (``nn_coordinate``, ``nn_full``, ``discriminator``, ...) on ``kl_samples`` extra
            posterior samples: the paper's MNIST variants ``bbb_klapprox``,
            ``bbb_klapprox_fullkernel`` and ``bbb_disc``.
        kl_samples: the posterior samples (at least 2) a sample-based ``kl`` estimates from.
        **flat: ``weight_noise``, ``sigma_noise``'s old name (run configs and records write it).
    """

    #: the old names taken as keywords (``weight_noise`` for ``sigma_noise``)
    FLAT_OPTIONS: ClassVar[tuple[str, ...]] = ("weight_noise",)
    #: arguments that records write under their old name
    RECORDED_AS: ClassVar[dict[str, str]] = {"sigma_noise": "weight_noise"}

    @staticmethod
    def resolve_options(options: Mapping[str, Any]) -> dict[str, Any]:
        """What a run records for ``options``: ``sigma_noise`` under its old name.

        Args:
            options: The options a config gives.

        Returns:
            ``weight_noise`` alone, the value given under either name (default ``sample``).
        """
        value = options.get("sigma_noise", options.get("weight_noise", WeightNoise.SAMPLE))
        return {"weight_noise": getattr(value, "value", value)}

    @checked_args(prior_scale=positive(), init_log_var_std=at_least(0), sigma_rate=positive())
    def __init__(
        self,
        net: nn.Module,
        *,
        prior: str | GaussianPrior = "fan_in",
        prior_scale: float | None = None,
        temperature: float | str = "validation",
        sigma_rate: float | None = SIGMA_RATE,
        sigma_tensor_scale: bool = True,
        init_log_var: float = -9.0,
        init_log_var_std: float = 0.05,
        sigma_noise: WeightNoise | str = WeightNoise.SAMPLE,
        num_train_samples: int = 1,
        deterministic: Sequence[str] = (),
        likelihood: str = "categorical",
        noise_scale: float | None = None,
        forward_mode: ForwardMode | str = ForwardMode.AUTO,
        sample_batch: int = 25,
        predict_noise: str = "weights",
        kl: str = "closed_form",
        kl_samples: int = 5,
        **flat: Any,
    ):
        unknown = sorted(set(flat) - set(self.FLAT_OPTIONS))
        if unknown:
            raise TypeError(f"BayesByBackprop got unexpected option(s) {unknown}")
        if "weight_noise" in flat:
            old = flat["weight_noise"]
            if sigma_noise not in (WeightNoise.SAMPLE, old):
                raise ValueError(
                    f"sigma_noise={sigma_noise!r} and weight_noise={old!r} (its old name) disagree"
                )
            sigma_noise = old
        super().__init__()
        check_num_samples(kl_samples, minimum=2, name="kl_samples")
        if kl != "closed_form" and (kl not in KL_ESTIMATORS or uses_posterior(kl)):
            estimators = sorted(n.value for n in KL_ESTIMATORS if not uses_posterior(n))
            raise ValueError(f"unknown kl {kl!r}; allowed: {['closed_form', *estimators]}")
        self.kl_estimator = None if kl == "closed_form" else make_kl_estimator(kl)
        self.kl_samples = kl_samples
        check_num_samples(num_train_samples, name="num_train_samples")
        check_num_samples(sample_batch, name="sample_batch")
        #: how training draws the weights' noise
        self.sigma_noise = parse_enum(WeightNoise, sigma_noise, "sigma_noise")
        if predict_noise not in ("weights", "training"):
            raise ValueError(
                f"unknown predict_noise {predict_noise!r}; allowed: ['training', 'weights']"
            )
        self.predict_noise = predict_noise
        self.forward_mode = ForwardMode(forward_mode)
        prior_module = make_prior(prior, prior_scale)
        if prior_module.empirical_bayes:
            raise ValueError(
                "prior='empirical_bayes' is BbH's (its Jacobian KL sets the scales); Bayes by "
                "Backprop takes 'fan_in' or 'isotropic'"
            )
        self.init_temperature(temperature)
        self.sigma_rate = sigma_rate
        self.likelihood = make_likelihood(likelihood, noise_scale)
        self.num_train_samples = num_train_samples
        self.sample_batch = sample_batch

        self.net = copy.deepcopy(net)
        self.spec = ParamSpec.from_module(
            self.net, deterministic_predicate(self.net, deterministic)
        )
        if self.sigma_noise is not WeightNoise.SAMPLE:
            option = f"sigma_noise={self.sigma_noise.value!r}"
            for _, layer in select_layers(self.net, self.spec.names, method="bbb", option=option):
                make_local(layer, self.sigma_noise)
        generated = set(self.spec.names)
        for name, p in self.net.named_parameters():
            if name in generated:
                p.requires_grad_(False)  # replaced by posterior samples or means
        self.posterior = MeanFieldGaussian(
            self.spec.from_module_values(self.net)[0],
            init_log_var,
            init_log_var_std,
            tensor_sizes=[e.numel for e in self.spec] if sigma_tensor_scale else None,
        )
        self.prior = prior_module.bind(self.spec, self.net)

    def optimizer_groups(self, lr: float) -> list[dict[str, Any]]:
        """With ``sigma_rate``, the log-variances learn at ``2 * sigma_rate`` a step (log sigma
        at ``sigma_rate``) relative to the default lr, the rest at ``lr``.

        Args:
            lr: The base learning rate.

        Returns:
            ``torch.optim`` parameter groups.
        """
        if self.sigma_rate is None:
            return super().optimizer_groups(lr)
        post = self.posterior
        scales = [p for p in (post.log_var, post.log_var_tensor) if p is not None]
        rest = [p for p in self.parameters() if p.requires_grad and all(p is not s for s in scales)]
        scale = 2 * self.sigma_rate / self.default_lr
        # the scale of the posterior keeps its rate under a decaying lr schedule: it must reach
        # its optimum, not freeze where the decay leaves it (docs/methods.md)
        sigma_group = {"params": scales, "lr": lr * scale, "lr_schedule": "constant"}
        return [{"params": rest, "lr": lr}, sigma_group]

    def sample_weights(self, num_samples: int) -> Tensor:
        """Weight samples ``[S, D]`` from the posterior (no gradient).

        Args:
            num_samples: S, an int ``>= 1``.

        Returns:
            Weight samples ``[S, D]``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1``.
        """
        check_num_samples(num_samples)
        return self.posterior.sample_weights(num_samples)

    def kl(self) -> Tensor:
        """``KL(q || p)`` (scalar): closed form, or the sample-based estimator's value.

        Returns:
            A scalar tensor.
        """
        if self.kl_estimator is None:
            return self.posterior.kl(self.prior.weight_scales())
        return self.kl_estimator(self.posterior.rsample(self.kl_samples), self.prior)

    def forward_samples(
        self, num_samples: int, x: Inputs, noise: WeightNoise | None = None
    ) -> Tensor:
        """Outputs ``[S, B, C]`` for S independent draws of the weight noise.

        ``noise`` defaults to the training ``sigma_noise``; ``sample`` runs S weight samples,
        each shared by the whole batch, also on a net switched to local noise.

        Args:
            num_samples: S.
            x: Inputs ``[B, ...]``, already checked (``check_input``).
            noise: How the weight noise is drawn (default: the training ``sigma_noise``).

        Returns:
            Outputs ``[S, B, C]``.
        """
        noise = self.sigma_noise if noise is None else noise
        if noise is WeightNoise.SAMPLE:
            return self._forward_weights(self.posterior.rsample(num_samples), x)
        params = {k: v[0] for k, v in self.spec.unflatten(self.posterior.mean[None]).items()}
        log_vars = self.spec.unflatten(self.posterior.full_log_var[None])
        params.update({k + "_log_var": v[0] for k, v in log_vars.items()})
        args, kwargs = call_args(self.net, x)
        outs = [functional_call(self.net, params, args, kwargs) for _ in range(num_samples)]
        return torch.stack(outs)

    def loss(  # noqa: D102 (Method.loss's docstring is inherited)
        self, x: Inputs, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = self.check_batch(x, y, num_data=num_data, kl_weight=kl_weight)
        out = self.forward_samples(self.num_train_samples, x)
        nll = -self.likelihood.log_prob(out, y).mean()
        logs = {"nll": nll.detach()}
        if self.kl_estimator is None:
            kl = self.posterior.kl(self.prior.weight_scales())
            loss = nll + kl_weight * self.temperature * kl / num_data
        else:
            samples = self.posterior.rsample(self.kl_samples)
            kl = self.kl_estimator(samples, self.prior)
            loss = nll + kl_weight * self.temperature * kl / num_data
            aux_loss = self.kl_estimator.auxiliary_loss(samples.detach(), self.prior)
            if aux_loss is not None:
                loss = loss + aux_loss
                logs["kl_aux_loss"] = aux_loss.detach()
        logs.update(kl=kl.detach(), loss=loss.detach())
        return loss, logs

    def draw_predictive(self, num_samples: int) -> Tensor | None:
        """Weight samples ``[S, D]`` for ``predict_logits_with``; None with
        ``predict_noise="training"`` (noise per example is drawn with each batch).

        Args:
            num_samples: S, an int ``>= 1``.

        Returns:
            Weight samples ``[S, D]``, or None.
        """
        if self.predict_noise != "weights":
            return None
        check_num_samples(num_samples)
        return self.posterior.rsample(num_samples)

    def predict_logits_with(self, draws: Tensor, x: Inputs) -> Tensor:
        """Outputs ``[S, B, C]`` of given weight samples ``[S, D]`` on the batch ``x``.

        Args:
            draws: Weight samples ``[S, D]`` from ``draw_predictive``.
            x: Inputs ``[B, ...]``, as for ``loss``.

        Returns:
            Outputs ``[S, B, C]``.
        """
        return self._forward_weights(draws, self.check_input(x))

    def _forward_weights(self, flat: Tensor, x: Inputs) -> Tensor:
        """The net on each weight sample ``[S, D]`` (each shared by the batch), ``[S, B, C]``."""
        # a shared trunk only for plain layers: local-noise layers read their mode in forward
        share = self.sigma_noise is WeightNoise.SAMPLE
        with plain_weights(self.net):
            return sampled_forward(
                self.net, self.spec.unflatten(flat), x, mode=self.forward_mode, share_trunk=share
            )

    def predict_logits(self, x: Inputs, num_samples: int = 100) -> Tensor:
        """Outputs ``[S, B, C]`` for S posterior draws, ``sample_batch`` at a time.

        With ``predict_noise="weights"`` (default) each draw is one weight sample shared by the
        batch (coherent function draws, the paper's evaluation); with ``"training"`` the noise is
        the training ``sigma_noise`` (per example for ``local``/``flipout``).

        Args:
            x: Inputs ``[B, ...]``, as for ``loss``.
            num_samples: S, an int ``>= 1``.

        Returns:
            Outputs ``[S, B, C]``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1`` or ``x`` fails the input checks.
        """
        check_num_samples(num_samples)
        x = self.check_input(x)
        noise = WeightNoise.SAMPLE if self.predict_noise == "weights" else self.sigma_noise
        outs = []
        for start in range(0, num_samples, self.sample_batch):
            n = min(self.sample_batch, num_samples - start)
            outs.append(self.forward_samples(n, x, noise))
        return torch.cat(outs)
