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
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bbh.divergences import uses_posterior
from bbh.enums import KLName, LastLayer, LikelihoodName, NLLMode, SigmaPer
from bbh.functional import ForwardMode, ParamPredicate, ParamSpec, sampled_forward
from bbh.hypernets import GeneratorName, NoiseMode
from bbh.inputs import Inputs, batch_size, map_tensors, tensor_split
from bbh.likelihoods import log_mean_exp, make_likelihood
from bbh.methods.base import Method, check_num_samples
from bbh.methods.bbh_options import (
    AUTO,
    PAPER,
    PRESETS,
    SIGMA_RATE,
    SIGMA_RATE_PAPER,
    build_generator,
    build_kl,
    default_prior_scale,
    is_affine,
    options_for_state_dict,
    recorded_options,
    resolve_auto,
    sigma_blocks,
)
from bbh.methods.exact_last_layer import ExactReadout
from bbh.methods.temperature import TemperedKL
from bbh.options import parse_enum
from bbh.posteriors.implicit import ImplicitPosterior
from bbh.posteriors.layers import deterministic_predicate, select_layers
from bbh.posteriors.local import WeightNoise, local_noise_copy, local_noise_forward
from bbh.priors import GaussianPrior, make_prior
from bbh.validation import at_least, checked_args, positive


def _combined(include: ParamPredicate | None, kept: ParamPredicate) -> ParamPredicate:
    """Generate a parameter only where ``include`` (if any) and ``deterministic`` both allow it."""
    if include is None:
        return kept
    chosen = include
    return lambda name, param: chosen(name, param) and kept(name, param)


class BayesByHypernet(TemperedKL, Method):
    """The BbH posterior around an unmodified ``net`` (which is copied, not changed).

    The defaults are ours (docs/methods.md says why each); ``BayesByHypernet.paper(net)`` builds
    the paper's setting (``bbh.methods.bbh_options.PAPER``), and ``bbh.build("bbh", net,
    preset="paper")`` does the same from a name.

    Args:
        net: any ``nn.Module``; its generated parameters are replaced by hypernet samples.
        noise_dim: k, the size of the noise z (the paper: 1, 8 or 64); ``"auto"``: 8, or
            ``min(D, 512)`` for the affine generator.
        num_samples: S, weight samples per training step (the paper: 5); ``"auto"``: 64 on a
            net of at most ``SMALL_NET_WEIGHTS`` parameters, else 2. The KL estimators of the
            posterior (``jacobian``, ``sivi``) allow S = 1; the others need S >= 2.
        generator: ``layerwise`` (the paper's, one MLP per tensor), ``chunked`` (ours, one
            shared MLP) or ``affine`` (ours, ``G(z) = A z + b``, so ``q = N(b, A A^T + diag
            sigma^2)`` with an exact Jacobian KL); ``"auto"``: ``affine`` on a net of at most
            ``SMALL_NET_WEIGHTS`` generated weights where none of ``hidden``, ``noise_dim``,
            ``chunk_size``, ``num_chunks`` is given, else ``chunked``
            (``bbh.methods.bbh_options.resolve_auto``).
        hidden: generator hidden sizes (the paper: 64, 256, 512); ``"auto"``: ``(64, 16)``,
            none for the affine generator.
        noise: ``aligned`` (one z for every generator) or ``independent``.
        kl: ``nn_full``, ``nn_coordinate``, ``entropy``, ``entropy_coordinate``,
            ``discriminator`` or ``jacobian`` (see ``bbh.divergences``).
        weight_noise: initial sigma of semi-implicit per-weight noise, ``w = G(z) + sigma * eps``
            with sigma learned (``bbh.posteriors.ImplicitPosterior``); ``None`` for the paper's
            purely implicit ``w = G(z)``. ``kl="jacobian"`` needs it.
        antithetic: training steps draw the S samples in mirrored pairs ``(z, eps)``,
            ``(-z, -eps)`` (``ImplicitPosterior.sample``): still unbiased, with less gradient
            noise and half the random draws (recommended: on; paper: off).
        jacobian_samples: noise draws per step for the log-determinant of ``kl="jacobian"``.
        jacobian_chunks: ``kl="jacobian"`` with the chunked generator: the Jacobian's Gram from
            this many random chunks per step (cheaper; biases the KL up, see ``JacobianKL``);
            ``None``: all chunks, exact; ``"auto"`` (default): a quarter of the chunks, at least
            4 (4 of the default 16), where the net has at least ``AUTO_JACOBIAN_CHUNKS_FROM``
            generated weights (chunked generator, aligned noise; a net of 4 chunks or fewer
            gets all of them; its saving on LeNet-5: docs/results.md), else all.
        prior: ``fan_in`` (recommended): ``N(0, prior_scale^2 / fan_in)`` per tensor
            (``bbh.priors``); ``isotropic`` (paper): ``N(0, prior_scale^2 I)``;
            ``empirical_bayes``: a scale per tensor set by the ELBO (``kl="jacobian"`` only); or
            a ``bbh.priors.GaussianPrior`` (then ``prior_scale`` does not apply).
        prior_scale: the isotropic prior's s (paper: 1), or the fan-in prior's gain; None:
            the prior's own, ``bbh.priors.FAN_IN_GAIN`` = 3 for ``fan_in``, else 1.
        temperature: the KL's weight T in ``NLL + kl_weight * T * KL / N`` (1: the ELBO);
            ``"validation"`` (recommended) chooses it from ``TEMPERATURE_CANDIDATES`` by the
            validation NLL when ``bbh.training.fit`` is given ``validation=`` data
            (``bbh.methods.temperature``); the paper: 1.
        nll: ``first``, ``mean``, ``split`` or ``predictive`` (see ``NLLMode``); ``"auto"``:
            ``mean`` where ``num_samples="auto"`` gives 64, else ``split``.
        likelihood: ``categorical`` or ``gaussian`` (with ``noise_scale``).
        noise_scale: the Gaussian likelihood's observation noise (its standard deviation),
            required with ``likelihood="gaussian"`` and refused with ``categorical``.
        include: predicate ``(name, param) -> bool`` choosing generated parameters (default all);
            the others stay ordinary deterministic parameters, trained by point estimate.
        deterministic: module names (or ``"norm"`` for every normalisation layer) whose
            parameters stay point estimates, as for ``bbb`` and ``mnf``; with ``include`` a
            parameter is generated only where both choose it. A Bayesian subnetwork: on
            LeNet-5, ``deterministic=["fc1"]`` generates 31k of the 431k weights
            (docs/performance.md: its step time and calibration).
        forward_mode: ``auto``, ``vmap`` or ``loop`` (see ``bbh.functional.sampled_forward``).
        chunk_size: weights per chunk of the chunked generator.
        embedding_dim: the size of each chunk's learned embedding (chunked generator).
        num_chunks: the chunked generator's number of chunks (give
            ``chunk_size`` or ``num_chunks``; default ``hidden[-1]`` chunks). Its shared output
            layer has ``hidden[-1] * D / num_chunks`` parameters, about D by default;
            ``num_chunks="auto"`` picks the count with the fewest parameters in all
            (``auto_num_chunks``: 190 on LeNet-5; at a slightly worse MNIST calibration,
            docs/methods.md).
        sigma_rate: about how far one Adam step at the default lr moves ``log sigma``
            (recommended 3e-2, ``SIGMA_RATE``: fast enough that sigma reaches its optimum within
            a run, not a cap on it; every run before the fan-in prior used 1e-3, which held
            MNIST's sigmas far below their optimum after 5 epochs: docs/posterior_check.md).
        sigma_tensor_scale: one more learned log-scale per parameter tensor, multiplying its
            weights' sigmas (recommended: on; paper: off). The same posterior family; the
            shared scale's gradient sums its tensor's, so Adam moves a tensor's level of sigma
            at the whole tensor's signal-to-noise ratio: per weight, the entropy's pull on a
            weakly constrained sigma is far below its gradient's noise and sigma ends near
            where it started (what it changes, measured from two starts: docs/methods.md,
            "Where sigma goes").
        sigma_per: ``weight`` (default): a learned sigma per weight; ``unit``: one per output
            unit (row or output channel; per entry for vectors); ``kernel``: one per kernel of a
            convolution (its ``kh x kw`` taps from one input channel to one output channel),
            per weight elsewhere: about D / 9 scales on a net of 3 x 3 convolutions;
            ``factored``: ``sigma_ij = u_i v_j``, one scale per unit and one per input of each
            tensor. ``unit`` and ``factored`` have about D fewer parameters in q and in Adam's
            state, for large nets (docs/performance.md); the generator's low-rank part still
            varies weight by weight.
        noise_mixing: the chunked generator's free linear path from z into each chunk
            (``ChunkedGenerator``; ours: on, paper: off; other generators leave it out). It lets q
            take a dense low-rank covariance (docs/posterior_check.md); it costs
            C * width * k parameters (2,048 with the recommended options).
        last_layer: ``sampled`` (default): the output layer is generated with the rest;
            ``exact``: for regression (``likelihood="gaussian"``), the net's last ``nn.Linear``
            (whose output must be the net's) is integrated out exactly, its conjugate Gaussian
            posterior given the other weights (``bbh.posteriors.last_layer``), and the hypernet
            generates only the others. Training is then full batch (the collapsed likelihood
            needs every example; the model keeps the training data to condition its
            predictions on) and ``nll`` does not apply. On the toy it brings BbH's predictive
            std to HMC's (docs/posterior_check.md, docs/results.md).
        sample_batch: how many weight samples ``predict_logits`` runs at once.
        sigma_noise: how training steps draw the semi-implicit noise ``sigma * eps``:
            ``sample`` (default): one ``eps`` per weight sample, shared by the examples it sees;
            ``local``: the local reparameterisation trick (Kingma, Salimans and Welling 2015),
            each layer's output ``x G(z_s)^T + sqrt(x^2 sigma^2) * xi`` with ``xi`` per example
            and unit; ``flipout`` (Wen et al. 2018): one perturbation per sample, decorrelated
            between examples by random signs. Both keep the mean of the ``log sigma`` gradient;
            ``local`` cuts its variance, ``flipout`` does not, and both slow a step (measured
            on LeNet-5: docs/methods.md, docs/results.md). The S
            samples run in a loop (``forward_mode`` does not apply); the KL and predictions
            still use whole weight samples ``G(z) + sigma * eps``.
            Needs ``weight_noise``, ``last_layer="sampled"`` and every generated parameter in
            an ``nn.Linear`` or ``nn.Conv2d`` (others listed in ``deterministic``). ``local``
            is exact per example for ``nn.Linear``; for ``nn.Conv2d`` it draws the noise of each
            output position independently (the weights' share of it is correlated over
            positions), so its expected NLL differs slightly; ``flipout`` is exact per example
            for both.

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
        return cls(net, **{**PAPER, **overrides})

    @checked_args(
        prior_scale=positive(),
        sigma_rate=positive(),
        embedding_dim=at_least(1),
        chunk_size=at_least(1),
    )
    def __init__(
        self,
        net: nn.Module,
        noise_dim: int | str = AUTO,
        num_samples: int | str = AUTO,
        *,
        generator: GeneratorName | str = AUTO,
        hidden: Sequence[int] | str = AUTO,
        noise: NoiseMode | str = NoiseMode.ALIGNED,
        kl: KLName | str = KLName.JACOBIAN,
        weight_noise: float | None = 0.01,
        antithetic: bool = True,
        jacobian_samples: int = 1,
        jacobian_chunks: int | str | None = AUTO,
        prior: str | GaussianPrior = "fan_in",
        prior_scale: float | None = None,
        temperature: float | str = "validation",
        nll: NLLMode | str = AUTO,
        likelihood: LikelihoodName | str = LikelihoodName.CATEGORICAL,
        noise_scale: float | None = None,
        include: ParamPredicate | None = None,
        deterministic: Sequence[str] = (),
        forward_mode: ForwardMode | str = ForwardMode.AUTO,
        chunk_size: int | None = None,
        num_chunks: int | str | None = None,
        embedding_dim: int = 64,
        noise_mixing: bool = True,
        sigma_per: SigmaPer | str = SigmaPer.WEIGHT,
        sigma_rate: float = SIGMA_RATE,
        sigma_tensor_scale: bool = True,
        last_layer: LastLayer | str = LastLayer.SAMPLED,
        sample_batch: int = 25,
        sigma_noise: WeightNoise | str = WeightNoise.SAMPLE,
    ):
        last_mode = parse_enum(LastLayer, last_layer, "last_layer")
        include = _combined(include, deterministic_predicate(net, deterministic))
        #: every parameter a weight sample holds (the output layer's too, with ``exact``)
        full_spec = ParamSpec.from_module(net, include)
        #: with ``last_layer="exact"``: the integrated output layer
        self.readout: ExactReadout | None = None
        spec = full_spec  # names and shapes: the copy's too
        if last_mode is LastLayer.EXACT:
            readout = ExactReadout.of(net, likelihood, noise_scale, nll, include)
            spec = readout.without(net, full_spec)
        given = dict(
            noise_dim=noise_dim,
            num_samples=num_samples,
            generator=generator.value if isinstance(generator, GeneratorName) else generator,
            hidden=hidden if isinstance(hidden, str) else tuple(hidden),
            noise=parse_enum(NoiseMode, noise, "noise").value,
            kl=parse_enum(KLName, kl, "kl").value if isinstance(kl, KLName) else kl,
            nll=nll.value if isinstance(nll, NLLMode) else nll,
            weight_noise=weight_noise,
            antithetic=antithetic,
            noise_mixing=noise_mixing,
            prior=prior,
            prior_scale=default_prior_scale(prior) if prior_scale is None else prior_scale,
            temperature=temperature,
            sigma_rate=sigma_rate,
            sigma_tensor_scale=sigma_tensor_scale,
        )
        auto_given = dict(given, chunk_size=chunk_size, num_chunks=num_chunks)
        net_dim = sum(p.numel() for p in net.parameters())  # what every pass runs
        resolved = resolve_auto(auto_given, spec.dim, net_dim)
        chosen = {key: resolved[key] for key in given}
        k = chosen["noise_dim"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"noise_dim must be an int >= 1 or 'auto', got {k!r}")
        if isinstance(chosen["num_samples"], str):
            raise ValueError(f"num_samples must be an int >= 1 or 'auto', got {num_samples!r}")
        #: the options in force after "auto" (for run records)
        self.resolved_options = chosen
        sigma_noise = parse_enum(WeightNoise, sigma_noise, "sigma_noise")
        if sigma_noise is not WeightNoise.SAMPLE:  # recorded only where it is not the default
            chosen["sigma_noise"] = sigma_noise.value
        noise_dim, samples = int(chosen["noise_dim"]), chosen["num_samples"]
        generator, hidden = chosen["generator"], tuple(chosen["hidden"])
        noise, kl, nll = chosen["noise"], chosen["kl"], chosen["nll"]
        sigma0: float | None = chosen["weight_noise"]
        #: training steps draw their S samples in mirrored pairs (``ImplicitPosterior.sample``)
        self.antithetic = bool(chosen["antithetic"])
        super().__init__()
        check_num_samples(sample_batch, name="sample_batch")
        self.nll_mode = parse_enum(NLLMode, nll, "nll")
        self.forward_mode = parse_enum(ForwardMode, forward_mode, "forward_mode")
        gen_name = parse_enum(GeneratorName, generator, "generator")
        self.likelihood = make_likelihood(likelihood, noise_scale)
        prior_module = make_prior(chosen["prior"], chosen["prior_scale"])
        self.init_temperature(chosen["temperature"])
        sigma_rate = float(chosen["sigma_rate"])
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
        noise_mode = parse_enum(NoiseMode, noise, "noise")
        sigma_mode = parse_enum(SigmaPer, sigma_per, "sigma_per")
        if uses_posterior(kl) and sigma0 is None:
            raise ValueError(
                f"kl={kl!r} needs weight_noise > 0 (the semi-implicit posterior's initial sigma, "
                "e.g. 0.01): a purely implicit q has no density in R^D"
            )
        if sigma_mode is not SigmaPer.WEIGHT and sigma0 is None:
            raise ValueError(
                f"sigma_per={sigma_mode.value!r} needs weight_noise (a semi-implicit q)"
            )
        # the estimators of the posterior need one sample; the others compare samples
        check_num_samples(samples, minimum=1 if uses_posterior(kl) else 2)
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
        generated = set(full_spec.names)
        for name, p in self.net.named_parameters():
            if name in generated:
                p.requires_grad_(False)  # replaced by samples in every forward pass
        hypernet = build_generator(
            gen_name,
            spec,
            spec.from_module_values(self.net)[0],
            noise_dim=noise_dim,
            hidden=hidden,
            noise=noise,
            chunk_size=chunk_size,
            num_chunks=num_chunks,
            embedding_dim=embedding_dim,
            noise_mixing=bool(chosen["noise_mixing"]),
            init_sigma=sigma0,
        )
        self.kl_estimator = build_kl(
            kl,
            hypernet,
            gen_name,
            noise_mode,
            spec.dim,
            jacobian_samples=jacobian_samples,
            jacobian_chunks=jacobian_chunks,
        )
        affine = is_affine(gen_name, hidden)
        # the layer-wise output layers move each weight by ~hidden[-1] x lr per Adam step
        self.default_lr = 1e-4 if gen_name is GeneratorName.LAYERWISE and not affine else 1e-3
        #: the posterior: ``self.hypernet(S)`` draws ``[S, D]``; ``.generator`` is the hypernet
        self.hypernet = ImplicitPosterior(
            hypernet,
            sigma0,
            log_sigma_scale=sigma_rate / self.default_lr,
            sigma_blocks=(
                None if sigma_mode is SigmaPer.WEIGHT else sigma_blocks(self.spec, sigma_mode)
            ),
            sigma_columns=sigma_mode is SigmaPer.FACTORED,
            tensor_sizes=[e.numel for e in self.spec] if chosen["sigma_tensor_scale"] else None,
        )
        # a file written before the stored scale was saved holds log sigma at its own rate,
        # which was 1e-3 unless given: no such file was trained at today's default rate
        legacy_rate = SIGMA_RATE_PAPER if sigma_rate == SIGMA_RATE else sigma_rate
        self.hypernet.legacy_log_sigma_scale = legacy_rate / self.default_lr
        self._release_generated()
        #: how training steps draw ``sigma * eps`` (see the class docstring)
        self.sigma_noise = sigma_noise
        #: with ``sigma_noise`` local/flipout: a copy of the net whose generated layers take
        #: per-example noise, every tensor supplied per call (in a tuple: not a submodule, so
        #: not in ``state_dict``, ``parameters()`` or ``.to()``)
        self._local_nets: tuple[nn.Module, ...] = ()
        if sigma_noise is not WeightNoise.SAMPLE:
            self._local_nets = (self._local_copy(net, sigma_noise, sigma0, last_mode),)

    def _local_copy(
        self, net: nn.Module, noise: WeightNoise, sigma0: float | None, last_mode: LastLayer
    ) -> nn.Module:
        """The net copy whose generated ``nn.Linear``/``nn.Conv2d`` layers are local-noise
        layers (``bbh.posteriors.local``), after checking that ``sigma_noise`` applies."""
        option = f"sigma_noise={noise.value!r}"
        if sigma0 is None:
            raise ValueError(f"{option} needs weight_noise (a semi-implicit q with a sigma)")
        if last_mode is LastLayer.EXACT:
            raise ValueError(
                f"{option} does not apply with last_layer='exact' (the output layer is "
                "integrated and the other weights' likelihood is collapsed over the batch)"
            )
        # checked on the user's net: the copy's generated tensors are no longer parameters
        layers = select_layers(net, self.spec.names, method="bbh", option=option)
        return local_noise_copy(self.net, [name for name, _ in layers], noise)

    def _local_forward(self, means: Tensor, x: Inputs) -> Tensor:
        """Outputs ``[S, B, C]`` with per-example weight noise: sample s's layers have mean
        weights ``G(z_s)`` (``means [S, D]``) and variances ``sigma^2`` (Kingma et al. 2015)."""
        (local,) = self._local_nets
        local.train(self.training)
        shared = {**dict(self.net.named_parameters()), **dict(self.net.named_buffers())}
        log_var = {
            k: v[0] for k, v in self.spec.unflatten(2 * self.hypernet.log_sigma[None]).items()
        }
        return local_noise_forward(local, shared, log_var, self.spec.unflatten(means), x)

    def _released_slots(self) -> Iterator[tuple[nn.Module, str]]:
        """``(module, attribute)`` of every generated tensor of the net copy."""
        for name in self.spec.names:
            owner_name, _, attr = name.rpartition(".")
            yield self.net.get_submodule(owner_name), attr

    def _release_generated(self) -> None:
        """Turn the net copy's generated parameters into plain tensor attributes of their shape
        on one shared zero: every forward pass replaces them with samples, and as parameters
        their D numbers would stay resident (about 3% of a ResNet-18 BbH step's peak memory)
        and be saved with every checkpoint. They are no longer in ``parameters()`` or
        ``state_dict()``."""
        for owner, attr in self._released_slots():
            p = owner._parameters.pop(attr)
            assert p is not None  # the spec lists registered parameters only
            setattr(owner, attr, torch.zeros((), dtype=p.dtype, device=p.device).expand(p.shape))

    def _apply(self, fn: Any, recurse: bool = True) -> BayesByHypernet:
        """``.to()``, ``.double()``, ...: the released tensors follow too (the input checks run
        the net copy as it is)."""
        super()._apply(fn, recurse)
        for owner, attr in self._released_slots():
            t = getattr(owner, attr)
            setattr(
                owner, attr, fn(torch.zeros((), dtype=t.dtype, device=t.device)).expand(t.shape)
            )
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
        log_sigma = getattr(self.hypernet, "log_sigma_param", None)
        if log_sigma is None or not log_sigma.requires_grad:
            return super().optimizer_groups(lr)
        shared = self.hypernet.log_sigma_tensor_param
        scales = [log_sigma] if shared is None else [log_sigma, shared]
        rest = [p for p in self.parameters() if p.requires_grad and all(p is not s for s in scales)]
        sigma_group = {"params": scales, "lr": lr, "lr_schedule": "constant"}
        return [{"params": rest, "lr": lr}, sigma_group]

    def sample_weights(self, num_samples: int) -> Tensor:
        """``num_samples`` joint weight samples ``[S, D]`` (fresh noise each call); with an
        exact output layer, ``D`` counts it too (``predictive_spec``), drawn from its
        posterior given the generated weights and the training data.

        Args:
            num_samples: S, an int ``>= 1``.

        Returns:
            Weight samples ``[S, D]``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1``.
        """
        check_num_samples(num_samples)
        theta = self.hypernet(num_samples)
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

    def forward_samples(self, flat: Tensor, x: Inputs) -> Tensor:
        """Outputs ``[S, B, C]`` of the primary net for given flat weights ``[S, D]``.

        Args:
            flat: Flat weight samples ``[S, D]`` (``sample_weights``).
            x: Inputs ``[B, ...]``, already checked (``check_input``).

        Returns:
            Outputs ``[S, B, C]``.
        """
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
        prior = self.readout_prior
        nll = r.collapsed_nll(lambda xs: self.features(flat, xs), x, y, num_data, prior)
        assert isinstance(x, Tensor)  # collapsed_nll refuses others
        if not r.checked:  # once: the net's output is its output layer's
            theta, head = flat[:1].detach(), x[:8]
            layer = self.net.get_submodule(r.name)
            with torch.no_grad():
                own = {k: v.unsqueeze(0) for k, v in layer.named_parameters(prefix=r.name)}
                whole = self.predictive_spec.flatten({**self.spec.unflatten(theta), **own})
                direct = self.forward_samples(whole, head)[0]
                r.check_output(direct, layer, self.features(theta, head)[0])
        self.conditioning_x = x.detach()
        self.conditioning_y = y.detach()
        return nll.to(flat.dtype)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any) -> None:
        # the conditioning data's size is the saved model's
        for key in ("conditioning_x", "conditioning_y"):
            saved = state_dict.get(prefix + key)
            if saved is not None and hasattr(self, key):
                setattr(self, key, torch.empty_like(saved))
        # files from before ``_release_generated`` hold the net's initial values there
        for name in self.spec.names:
            state_dict.pop(f"{prefix}net.{name}", None)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def loss(  # noqa: D102 (Method.loss's docstring is inherited)
        self, x: Inputs, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x, y = self.check_batch(x, y, num_data=num_data, kl_weight=kl_weight)
        draw = self.hypernet.sample(self.num_samples, antithetic=self.antithetic)
        flat = draw.weights
        if self.readout is not None:
            nll = self._exact_readout_nll(flat, x, y, num_data)
        elif self.sigma_noise is not WeightNoise.SAMPLE:  # sigma's noise per example
            nll = self._nll(draw.mean, x, y, local=True)
        else:
            nll = self._nll(flat, x, y)
        if self.kl_estimator.uses_posterior:
            kl = self.kl_estimator(draw, self.prior, self.hypernet)
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
            outs.append(self.forward_samples(self.sample_weights(n), x))
        return torch.cat(outs)

    def draw_predictive(self, num_samples: int) -> Tensor:
        """Joint weight samples ``[S, D]`` for ``predict_logits_with`` (fresh noise; with
        an exact output layer, D counts it).

        Args:
            num_samples: S, an int ``>= 1``.

        Returns:
            Weight samples ``[S, D]``.
        """
        return self.sample_weights(num_samples)

    def predict_logits_with(self, draws: Tensor, x: Inputs) -> Tensor:
        """Outputs ``[S, B, C]`` of given weight samples ``[S, D]`` on the batch ``x``.

        Args:
            draws: Weight samples ``[S, D]`` from ``draw_predictive``.
            x: Inputs ``[B, ...]``, as for ``loss``.

        Returns:
            Outputs ``[S, B, C]``.
        """
        return self.forward_samples(draws, self.check_input(x))

    def _nll(self, flat: Tensor, x: Inputs, y: Tensor, local: bool = False) -> Tensor:
        """The ``nll`` mode's mean NLL of the weight samples ``flat [S, D]``; with ``local``
        they are the means ``G(z_s)`` and the noise ``sigma * eps`` is per example."""
        mode, s, b = self.nll_mode, flat.shape[0], batch_size(x)
        forward = self._local_forward if local else self.forward_samples
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
