"""Bayes by Hypernet (Pawlowski et al., arXiv 1711.01297): an implicit posterior for any module.

A generator maps noise to the weights of the primary network, ``w = G(z)``, which makes
``q(w)`` an implicit distribution trained on the negative ELBO per example:

    loss = mean NLL + kl_weight * T * KL_hat(q || p) / num_data

with ``KL_hat`` a sample-based estimate from the S generated weight samples (``bbh.divergences``)
and ``T`` the temperature (``bbh.methods.temperature``; the paper: 1).

``sigma_noise="local"`` / ``"flipout"`` trains the semi-implicit part ``sigma * eps`` as
per-example output noise (the local reparameterisation trick, Kingma, Salimans and Welling
2015, or Flipout, Wen et al. 2018; ``bbh.posteriors.local``): with ``local`` a gradient for
``log sigma`` of far lower variance than one ``eps`` per weight sample shared by the batch
(docs/methods.md, "Per-example sigma noise").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bbh.divergences import uses_posterior
from bbh.divergences.options import KLOptions
from bbh.enums import KLName, LastLayer, LikelihoodName, NLLMode, SigmaPer
from bbh.functional import ForwardMode, ParamPredicate, ParamSpec, sampled_forward
from bbh.hypernets import GeneratorName
from bbh.hypernets.options import GeneratorOptions
from bbh.inputs import Inputs, batch_size, map_tensors, tensor_split
from bbh.likelihoods import log_mean_exp, make_likelihood
from bbh.methods.base import Method, check_num_samples
from bbh.methods.bbh_options import (
    FLAT_OPTIONS,
    LEGACY_POSTERIOR_PREFIX,
    PAPER,
    PRESETS,
    RENAMED,
    build_posterior_and_kl,
    in_force,
    merge_options,
    nested_options,
    options_for_state_dict,
    recorded_options,
)
from bbh.methods.exact_last_layer import ExactReadout
from bbh.methods.temperature import TemperedKL
from bbh.options import parse_enum
from bbh.posteriors.layers import both, deterministic_predicate
from bbh.posteriors.local import WeightNoise, local_noise_copy, local_noise_forward
from bbh.priors import GaussianPrior, make_prior
from bbh.validation import checked_args, positive


class BayesByHypernet(TemperedKL, Method):
    """The BbH posterior around an unmodified ``net`` (which is copied, not changed).

    The defaults are ours; docs/methods.md says why each, and what every option was measured
    to give. ``BayesByHypernet.paper(net)`` builds the paper's setting
    (``bbh.methods.bbh_options.PAPER``); ``bbh.build("bbh", net, preset="paper")`` does the same
    from a name. ``"auto"`` depends on the net's size (``bbh_options.resolve_auto``).

    Args:
        net: any ``nn.Module``; its generated parameters are replaced by hypernet samples.
        generator: The hypernetwork ``G`` (arXiv 1711.01297, Sec. 3): a
            ``GeneratorOptions`` (``bbh.hypernets.options``: ``name``, ``hidden``,
            ``noise_dim``, ``noise_sharing``, the chunked generator's ``chunk_size``,
            ``num_chunks``, ``embedding_dim``, ``noise_mixing``) or its name: ``layerwise``
            (the paper's), ``chunked`` or ``affine`` (``q = N(b, A A^T + diag sigma^2)``);
            ``"auto"``: ``affine`` on a net of at most ``SMALL_NET_WEIGHTS`` generated weights,
            else ``chunked``.
        kl: The KL estimator: a ``KLOptions`` (``bbh.divergences.options``: ``name``,
            ``jacobian_samples``, ``jacobian_chunks``) or a ``KLName``; ``jacobian`` is exact
            for the affine generator.
        init_sigma: The initial sigma of the semi-implicit noise, ``w = G(z) + sigma * eps``
            with sigma learned; ``None``: the paper's purely implicit ``w = G(z)``.
        num_samples: S, weight samples per training step; ``"auto"``: 64 on a net of at most
            ``SMALL_NET_WEIGHTS`` parameters, else 2. ``jacobian`` and ``sivi`` allow S = 1.
        antithetic: draw the S samples in mirrored pairs ``(z, eps)``, ``(-z, -eps)``.
        prior: ``fan_in`` (``N(0, prior_scale^2 / fan_in)`` per tensor), ``isotropic``
            (``N(0, prior_scale^2 I)``), ``empirical_bayes`` (a scale per tensor set by the
            ELBO; ``kl="jacobian"`` only) or a ``bbh.priors.GaussianPrior``.
        prior_scale: the isotropic prior's s or the fan-in prior's gain; None: 3 for
            ``fan_in`` (``bbh.priors.FAN_IN_GAIN``), else 1.
        temperature: T in ``NLL + kl_weight * T * KL / N`` (1: the ELBO); ``"validation"``:
            chosen by the validation NLL when ``fit`` gets ``validation=`` data
            (``bbh.methods.temperature``).
        nll: which samples the likelihood sees (``NLLMode``); ``"auto"``: ``mean`` where
            ``num_samples="auto"`` gives 64, else ``split``.
        likelihood: ``categorical`` or ``gaussian`` (with ``noise_scale``).
        noise_scale: the Gaussian likelihood's observation noise (standard deviation).
        include: predicate ``(name, param) -> bool`` choosing generated parameters (default
            all); the others are trained by point estimate.
        deterministic: module names (or ``"norm"`` for every normalisation layer) whose
            parameters stay point estimates; with ``include``, generated where both choose.
        forward_mode: ``auto``, ``vmap`` or ``loop`` (``bbh.functional.sampled_forward``).
        sigma_per: ``weight``: a sigma per weight; ``unit``: per output unit; ``kernel``: per
            convolution kernel; ``factored``: ``sigma_ij = u_i v_j``.
        sigma_rate: about how far one Adam step at the default lr moves ``log sigma``
            (``SIGMA_RATE``: fast enough for sigma to reach its optimum within a run).
        sigma_tensor_scale: a learned log-scale per tensor on top of each weight's sigma: the
            same family, whose level moves at the whole tensor's signal-to-noise ratio.
        last_layer: ``sampled`` (generated with the rest) or ``exact``: for regression, the
            net's last ``nn.Linear`` integrated out (``exact_last_layer.ExactReadout``),
            trained full batch.
        sample_batch: how many weight samples ``predict_logits`` runs at once.
        sigma_noise: how training draws ``sigma * eps``: ``sample`` (one ``eps`` per weight
            sample), ``local`` (per example: the local reparameterisation trick, Kingma et al.
            2015) or ``flipout`` (Wen et al. 2018), both for ``nn.Linear``/``nn.Conv2d`` only.
        **flat: The generator's and the KL's options by the flat names run configs write
            (``hidden``, ``noise_dim``, ``noise``, ``chunk_size``, ``num_chunks``,
            ``embedding_dim``, ``noise_mixing``, ``jacobian_samples``, ``jacobian_chunks``),
            put on top of ``generator`` and ``kl``; ``weight_noise``: ``init_sigma``'s old name.

    Example:
        >>> import torch, bbh
        >>> from bbh.nets import MLP
        >>> model = bbh.BayesByHypernet(MLP(4, [16], 3), temperature=1.0)
        >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> result = bbh.fit(model, x, y, steps=5, batch_size=32)
        >>> model.predict(x[:8], num_samples=10).shape
        torch.Size([8, 3])
    """

    #: the named option sets ``preset=`` takes in ``bbh.build`` and run configs
    PRESETS = PRESETS
    #: what a run records and hashes for the options a config gives (``bbh.experiments``)
    resolve_options = staticmethod(recorded_options)
    #: the options that rebuild a saved state (``bbh.load``)
    options_for_state_dict = staticmethod(options_for_state_dict)
    #: a preset's options with the given ones on top (``bbh.build(..., preset=)``)
    merge_options = staticmethod(merge_options)
    #: the keywords taken besides the arguments: the generator's and KL's options by their flat
    #: names, and the old name ``weight_noise`` (run configs write them so)
    FLAT_OPTIONS = FLAT_OPTIONS
    #: arguments that records write under an older name (``weight_noise``)
    RECORDED_AS = RENAMED

    @classmethod
    def paper(cls, net: nn.Module, **overrides: Any) -> BayesByHypernet:
        """BbH in the paper's setting (``bbh.methods.bbh_options.PAPER``: a layer-wise
        generator with hidden sizes 64-256-512, 5 samples, the full-vector nearest-neighbour
        KL, the likelihood of sample 0, purely implicit, ``N(0, I)``, ``T = 1``).

        Args:
            net: Any ``nn.Module``.
            **overrides: Options that replace the paper's (any of ``BayesByHypernet``'s).

        Returns:
            The method.

        Example:
            >>> import bbh
            >>> from bbh.nets import MLP
            >>> model = bbh.BayesByHypernet.paper(MLP(4, [16], 3), num_samples=3)
            >>> model.num_samples, model.resolved_options["kl"]
            (3, 'nn_full')
        """
        return cls(net, **merge_options(PAPER, overrides))

    @checked_args(prior_scale=positive(), sigma_rate=positive())
    def __init__(
        self,
        net: nn.Module,
        *,
        generator: GeneratorOptions | GeneratorName | str | Mapping[str, Any] = "auto",
        kl: KLOptions | KLName | str | Mapping[str, Any] = KLName.JACOBIAN,
        init_sigma: float | None = 0.01,  # INIT_SIGMA
        num_samples: int | str = "auto",
        antithetic: bool = True,
        prior: str | GaussianPrior = "fan_in",
        prior_scale: float | None = None,
        temperature: float | str = "validation",
        nll: NLLMode | str = "auto",
        likelihood: LikelihoodName | str = LikelihoodName.CATEGORICAL,
        noise_scale: float | None = None,
        include: ParamPredicate | None = None,
        deterministic: Sequence[str] = (),
        forward_mode: ForwardMode | str = ForwardMode.AUTO,
        sigma_per: SigmaPer | str = SigmaPer.WEIGHT,
        sigma_rate: float = 3e-2,  # SIGMA_RATE
        sigma_tensor_scale: bool = True,
        last_layer: LastLayer | str = LastLayer.SAMPLED,
        sample_batch: int = 25,
        sigma_noise: WeightNoise | str = WeightNoise.SAMPLE,
        **flat: Any,
    ):
        gen, kl_options, init_sigma = nested_options(generator, kl, init_sigma, flat)
        given = dict(  # the other options a run records, under the names records use
            num_samples=num_samples,
            nll=nll,
            weight_noise=init_sigma,
            antithetic=antithetic,
            prior=prior,
            prior_scale=prior_scale,
            temperature=temperature,
            sigma_rate=sigma_rate,
            sigma_tensor_scale=sigma_tensor_scale,
        )
        last_mode = parse_enum(LastLayer, last_layer, "last_layer")
        include = both(include, deterministic_predicate(net, deterministic))
        #: every parameter a weight sample holds (the output layer's too, with ``exact``)
        full_spec = ParamSpec.from_module(net, include)
        #: with ``last_layer="exact"``: the integrated output layer
        self.readout: ExactReadout | None = None
        spec = full_spec  # names and shapes: the copy's too
        if last_mode is LastLayer.EXACT:
            readout = ExactReadout.of(net, likelihood, noise_scale, nll, include)
            spec = readout.without(net, full_spec)
        net_dim = sum(p.numel() for p in net.parameters())  # what every pass runs
        #: the options in force after "auto" (for run records)
        self.resolved_options = chosen = in_force(gen, kl_options, given, spec.dim, net_dim)
        sigma_noise = parse_enum(WeightNoise, sigma_noise, "sigma_noise")
        if sigma_noise is not WeightNoise.SAMPLE:  # recorded only where it is not the default
            chosen["sigma_noise"] = sigma_noise.value
        samples, sigma0 = chosen["num_samples"], chosen["weight_noise"]
        #: training steps draw their S samples in mirrored pairs (``ImplicitPosterior.sample``)
        self.antithetic = bool(chosen["antithetic"])
        super().__init__()
        #: the generator's and the KL's options as given (``resolved_options``: in force)
        self.generator_options, self.kl_options = gen, kl_options
        check_num_samples(sample_batch, name="sample_batch")
        self.nll_mode = parse_enum(NLLMode, chosen["nll"], "nll")
        self.forward_mode = parse_enum(ForwardMode, forward_mode, "forward_mode")
        self.likelihood = make_likelihood(likelihood, noise_scale)
        prior_module = make_prior(chosen["prior"], chosen["prior_scale"])
        self.init_temperature(chosen["temperature"])
        self.net = copy.deepcopy(net)
        self.spec = spec
        #: the prior over the generated weights (with ``last_layer="exact"``, its output layer's
        #: scale is ``prior.readout_scale``)
        self.prior = prior_module.bind(spec, self.net)
        if self.prior.empirical_bayes and (
            chosen["kl"] != "jacobian" or last_mode is LastLayer.EXACT
        ):
            raise ValueError(
                "prior='empirical_bayes' needs kl='jacobian' and last_layer='sampled' (its scales "
                "are set in the Jacobian KL's closed-form cross term)"
            )
        sigma_mode = parse_enum(SigmaPer, sigma_per, "sigma_per")
        # the estimators of the posterior need one sample; the others compare samples
        check_num_samples(samples, minimum=1 if uses_posterior(kl_options.name) else 2)
        #: S, weight samples per training step
        self.num_samples: int = samples
        self.sample_batch = sample_batch

        #: the layout of a predictive weight sample (``self.spec`` plus an exact output layer)
        self.predictive_spec = full_spec
        self.last_layer = last_mode
        if last_mode is LastLayer.EXACT:
            self.readout = readout
            # the data the readout's posterior is conditioned on (the last full-batch step's)
            self.register_buffer("conditioning_x", torch.zeros(0))
            self.register_buffer("conditioning_y", torch.zeros(0))
        generated = set(full_spec.names)  # replaced by samples in every forward pass
        for name, p in self.net.named_parameters():
            p.requires_grad_(p.requires_grad and name not in generated)
        posterior, kl_estimator, self.default_lr = build_posterior_and_kl(
            spec,
            spec.from_module_values(self.net)[0],
            chosen,
            chunk_size=gen.chunk_size,
            num_chunks=gen.num_chunks,
            embedding_dim=gen.embedding_dim,
            jacobian_samples=kl_options.jacobian_samples,
            jacobian_chunks=kl_options.jacobian_chunks,
            sigma_per=sigma_mode,
        )
        self.kl_estimator = kl_estimator  # first: the parameters' order of earlier versions
        self.posterior = posterior  #: draws ``[S, D]``; its ``.generator`` is the hypernet
        # the generated tensors are supplied by every pass: not held, trained or saved here
        self.spec.release(self.net)
        #: how training steps draw ``sigma * eps`` (see the class docstring)
        self.sigma_noise = sigma_noise
        #: with ``sigma_noise`` local/flipout: a copy of the net whose generated layers take
        #: per-example noise, every tensor supplied per call (in a tuple: not a submodule, so
        #: not in ``state_dict``, ``parameters()`` or ``.to()``)
        self._local_nets: tuple[nn.Module, ...] = ()
        if sigma_noise is not WeightNoise.SAMPLE:
            exact = last_mode is LastLayer.EXACT
            local = local_noise_copy(net, self.net, spec.names, sigma_noise, sigma0, exact)
            self._local_nets = (local,)

    def _local_forward(self, means: Tensor, x: Inputs) -> Tensor:
        """Outputs ``[S, B, C]`` with per-example weight noise: sample s's layers have mean
        weights ``G(z_s)`` (``means [S, D]``) and variances ``sigma^2`` (Kingma et al. 2015)."""
        (local,) = self._local_nets
        local.train(self.training)
        shared = {**dict(self.net.named_parameters()), **dict(self.net.named_buffers())}
        log_var = {
            k: v[0] for k, v in self.spec.unflatten(2 * self.posterior.log_sigma[None]).items()
        }
        return local_noise_forward(local, shared, log_var, self.spec.unflatten(means), x)

    def _apply(self, fn: Any, recurse: bool = True) -> BayesByHypernet:
        """``.to()``, ``.double()``, ...: the released tensors follow too (the input checks run
        the net copy as it is)."""
        super()._apply(fn, recurse)
        self.spec.apply_to_released(self.net, fn)
        return self

    def optimizer_groups(self, lr: float) -> list[dict[str, Any]]:
        """Every trainable parameter at ``lr``; the semi-implicit noise's ``log sigma`` in a group
        of its own that keeps its rate under a decaying ``lr_schedule``: the posterior's scale
        must reach its optimum, not freeze where the decay leaves it (docs/methods.md).

        Args:
            lr: The base learning rate.

        Returns:
            ``torch.optim`` parameter groups.
        """
        log_sigma = getattr(self.posterior, "log_sigma_param", None)
        if log_sigma is None or not log_sigma.requires_grad:
            return super().optimizer_groups(lr)
        shared = self.posterior.log_sigma_tensor_param
        scales = [log_sigma] if shared is None else [log_sigma, shared]
        rest = [p for p in self.parameters() if p.requires_grad and all(p is not s for s in scales)]
        sigma_group = {"params": scales, "lr": lr, "lr_schedule": "constant"}
        return [{"params": rest, "lr": lr}, sigma_group]

    def sample_weights(self, num_samples: int) -> Tensor:
        """``num_samples`` joint weight samples ``[S, D]`` (fresh noise each call); with an
        exact output layer, ``D`` counts it too (``predictive_spec``), drawn from its
        posterior given the generated weights and the training data. Also the method's
        ``draw_predictive``, the draws ``predict_logits_with`` applies to any batch.

        Args:
            num_samples: S, an int ``>= 1``.

        Returns:
            Weight samples ``[S, D]``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1``.
        """
        check_num_samples(num_samples)
        theta = self.posterior(num_samples)
        r = self.readout
        if r is None:
            return theta
        if self.conditioning_x.shape[0] == 0:  # before training: the prior
            phi = theta.new_zeros(num_samples, 0, r.features)
            y = theta.new_zeros(0, r.out_features)
        else:
            phi = self.features(theta, self.conditioning_x)
            y = self.conditioning_y.reshape(phi.shape[1], -1)
        params = r.draw(dict(self.spec.unflatten(theta)), phi, y, self.readout_prior)
        return self.predictive_spec.flatten(params)

    def _forward(self, flat: Tensor, x: Inputs) -> Tensor:
        """Outputs ``[S, B, C]`` of the net for flat weights ``[S, D]`` (``x`` checked)."""
        params = self.predictive_spec.unflatten(flat)
        return sampled_forward(self.net, params, x, mode=self.forward_mode, share_trunk=True)

    @property
    def readout_prior(self) -> float:
        """The prior scale of the output layer that ``last_layer="exact"`` integrates."""
        assert self.readout is not None
        return self.prior.readout_scale(self.readout.in_features)

    def features(self, theta: Tensor, x: Tensor) -> Tensor:
        """With ``last_layer="exact"``: the output layer's inputs ``[S, B, F]`` for generated
        weights ``theta [S, D]``, with a column of ones for its bias.

        Args:
            theta: Generated weights ``[S, D]``.
            x: Inputs ``[B, ...]``.

        Returns:
            Features ``[S, B, F]``.

        Raises:
            RuntimeError: The model was built without ``last_layer="exact"``.
        """
        if self.readout is None:
            raise RuntimeError("features() is for last_layer='exact'")
        return self.readout.inputs(self.net, self.spec.unflatten(theta), x, self.forward_mode)

    def _exact_readout_nll(self, flat: Tensor, x: Inputs, y: Tensor, num_data: int) -> Tensor:
        """Minus the collapsed log-likelihood per example (the output layer integrated)."""
        r = self.readout
        assert r is not None
        nll = r.collapsed_nll(
            lambda xs: self.features(flat, xs), x, y, num_data, self.readout_prior
        )
        assert isinstance(x, Tensor)  # collapsed_nll refuses others
        if not r.checked:  # once: the net's output is its output layer's
            with torch.no_grad():
                own = r.own_values(self.net, self.spec.unflatten(flat[:1].detach()))
                direct = self._forward(self.predictive_spec.flatten(own), x[:8])[0]
                phi = self.features(flat[:1].detach(), x[:8])[0]
                r.check_output(direct, self.net.get_submodule(r.name), phi)
        self.conditioning_x = x.detach()
        self.conditioning_y = y.detach()
        return nll.to(flat.dtype)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        # the conditioning data's size is the saved model's
        for key in ("conditioning_x", "conditioning_y"):
            saved = state_dict.get(prefix + key)
            if saved is not None and hasattr(self, key):
                setattr(self, key, torch.empty_like(saved))
        # files from before the posterior was named so hold it under ``hypernet.``
        legacy = prefix + LEGACY_POSTERIOR_PREFIX
        for key in [k for k in state_dict if k.startswith(legacy)]:
            state_dict[prefix + "posterior." + key[len(legacy) :]] = state_dict.pop(key)
        # files from before the generated tensors were released hold the net's initial values
        for name in self.spec.names:
            state_dict.pop(f"{prefix}net.{name}", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def loss(  # noqa: D102 (Method.loss's docstring is inherited)
        self, x: Inputs, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = self.check_batch(x, y, num_data=num_data, kl_weight=kl_weight)
        draw = self.posterior.sample(self.num_samples, antithetic=self.antithetic)
        flat = draw.weights
        if self.readout is not None:
            nll = self._exact_readout_nll(flat, x, y, num_data)
        elif self.sigma_noise is not WeightNoise.SAMPLE:  # sigma's noise per example
            nll = self._nll(draw.mean, x, y, local=True)
        else:
            nll = self._nll(flat, x, y)
        if self.kl_estimator.uses_posterior:
            kl = self.kl_estimator(draw, self.prior, self.posterior)
        else:
            kl = self.kl_estimator(flat, self.prior)
        loss = nll + kl_weight * self.temperature * kl / num_data
        logs = {"nll": nll.detach(), "kl": kl.detach()}
        aux_loss = self.kl_estimator.auxiliary_loss(flat.detach(), self.prior)
        if aux_loss is not None:
            loss = loss + aux_loss
            logs["kl_aux_loss"] = aux_loss.detach()
        logs["loss"] = loss.detach()
        return loss, logs

    def predict_logits(self, x: Inputs, num_samples: int = 100) -> Tensor:
        """Outputs ``[S, B, C]`` for S fresh weight samples, run ``sample_batch`` at a time.

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
        outs = []
        for start in range(0, num_samples, self.sample_batch):
            n = min(self.sample_batch, num_samples - start)
            outs.append(self._forward(self.sample_weights(n), x))
        return torch.cat(outs)

    draw_predictive = sample_weights  # the Method interface's name for them

    def predict_logits_with(self, draws: Tensor, x: Inputs) -> Tensor:
        """Outputs ``[S, B, C]`` of given weight samples ``[S, D]`` on the batch ``x``.

        Args:
            draws: Weight samples ``[S, D]`` from ``draw_predictive``.
            x: Inputs ``[B, ...]``, as for ``loss``.

        Returns:
            Outputs ``[S, B, C]``.
        """
        return self._forward(draws, self.check_input(x))

    def _nll(self, flat: Tensor, x: Inputs, y: Tensor, local: bool = False) -> Tensor:
        """The ``nll`` mode's mean NLL of the weight samples ``flat [S, D]``; with ``local``
        they are the means ``G(z_s)`` and the noise ``sigma * eps`` is per example."""
        mode, s, b = self.nll_mode, flat.shape[0], batch_size(x)
        forward = self._local_forward if local else self._forward
        if mode is NLLMode.FIRST:
            return -self.likelihood.log_prob(forward(flat[:1], x), y).mean()
        if mode is NLLMode.SPLIT:
            if b < s:
                raise ValueError(f"nll='split' needs a batch of at least S={s} examples, got {b}")
            if b % s == 0 and not local:
                params = self.spec.unflatten(flat)
                xs = map_tensors(lambda t: t.reshape(s, b // s, *t.shape[1:]), x)
                out = sampled_forward(
                    self.net, params, xs, x_per_sample=True, mode=self.forward_mode
                )
                return -self.likelihood.log_prob(out.reshape(b, *out.shape[2:]), y).mean()
            parts = zip(flat.split(1), tensor_split(x, s), y.tensor_split(s), strict=True)
            lls = [self.likelihood.log_prob(forward(w, xi)[0], yi) for w, xi, yi in parts]
            return -torch.cat(lls).mean()
        loglik = self.likelihood.log_prob(forward(flat, x), y)  # [S, B]
        if mode is NLLMode.MEAN:
            return -loglik.mean()
        return -log_mean_exp(loglik, dim=0).mean()
