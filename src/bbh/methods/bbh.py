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
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from bbh.divergences import make_kl_estimator, uses_posterior
from bbh.enums import LastLayer, NLLMode, Preset, SigmaPer
from bbh.functional import ForwardMode, ParamPredicate, ParamSpec, sampled_forward
from bbh.hypernets import GENERATORS, GeneratorName, NoiseMode
from bbh.inputs import Inputs, batch_size, call_args, map_tensors, tensor_split
from bbh.likelihoods import log_mean_exp, make_likelihood
from bbh.methods.base import Method, check_num_samples
from bbh.methods.temperature import TemperedKL
from bbh.options import parse_enum
from bbh.posteriors.implicit import ImplicitPosterior
from bbh.posteriors.last_layer import log_marginal, sample_readout
from bbh.posteriors.layers import deterministic_predicate, select_layers
from bbh.posteriors.local import WeightNoise, make_local
from bbh.priors import FAN_IN_GAIN, GaussianPrior, make_prior
from bbh.validation import at_least, checked_args, positive


class _Unset:
    """Marks an option the caller did not give (``weight_noise=None`` is a real value)."""


UNSET = _Unset()

#: ``sigma_rate`` of the recommended preset: an Adam step moves ``log sigma`` by up to this much,
#: so a sigma whose gradient keeps its sign crosses a factor of 10 in about 80 steps (where the
#: gradient is mostly noise it moves slower: docs/posterior_check.md, "Sigma at its optimum")
SIGMA_RATE = 3e-2
#: the rate every run before the fan-in prior used (also the paper preset's, where no sigma is
#: learned): a cap that held sigma far below its optimum in a normal run
SIGMA_RATE_PAPER = 1e-3


#: The options each preset fills in where the caller gives none.
PRESETS: dict[Preset, dict[str, Any]] = {
    # the README runs of the paper's code (pawni/BayesByHypernet): layer-wise generator, aligned
    # noise, the full-vector nearest-neighbour KL, the likelihood on sample 0; purely implicit
    Preset.PAPER: dict(
        noise_dim=8,
        num_samples=5,
        generator="layerwise",
        hidden=(64, 256, 512),
        noise="aligned",
        kl="nn_full",
        nll="first",
        weight_noise=None,
        antithetic=False,
        noise_mixing=False,  # used by generator="chunked" only
        prior="isotropic",
        prior_scale=1.0,
        temperature=1.0,
        sigma_rate=SIGMA_RATE_PAPER,
        sigma_tensor_scale=False,
    ),
    # ours, chosen by the posterior checks (docs/posterior_check.md, docs/methods.md)
    Preset.RECOMMENDED: dict(
        noise_dim=8,
        num_samples=2,
        generator="chunked",
        hidden=(64, 16),
        noise="aligned",
        kl="jacobian",
        nll="split",
        weight_noise=0.01,
        antithetic=True,
        noise_mixing=True,
        # the model at its optimum (docs/methods.md): a fan-in prior, the KL's temperature
        # chosen on validation data, and log sigma free to reach its optimum within the run
        prior="fan_in",
        prior_scale=FAN_IN_GAIN,
        temperature="validation",
        sigma_rate=SIGMA_RATE,
        # a learned scale per tensor on top of each weight's: sigma forgets its start within
        # a few hundred steps (docs/methods.md, "Where sigma goes")
        sigma_tensor_scale=True,
    ),
}


#: Nets of at most this many generated weights get the recommended preset's small-net options
#: (``small_net_options``): measured on the posterior check's cases, D = 2 to 500. The samples'
#: bundle (64 on the whole batch) also needs the whole net, point estimates included, this
#: small: each sample is a pass through all of it (a ResNet's output layer alone generated
#: would otherwise train 64 ResNet passes a step)
SMALL_NET_WEIGHTS = 1_024
#: the largest noise size (rank of the affine part) the small-net options give
SMALL_NET_MAX_NOISE = 512
#: weight samples per step of the small-net options, each on the whole batch
SMALL_NET_SAMPLES = 64


def small_net_options(dim: int) -> dict[str, dict[str, Any]]:
    """The recommended preset's options for a net of ``dim <= SMALL_NET_WEIGHTS`` weights, in
    bundles that apply only where the caller gives none of their keys (the generator's three
    go together; ``num_samples`` and ``nll`` each on its own).

    ``generator``: an affine generator with ``k = min(D, 512)``, ``q = N(b, A A^T + diag
    sigma^2)`` (every Gaussian when k >= D), whose Jacobian KL is exact; 64 samples on the
    whole batch, which a small net pays little for and whose gradient noise the chunked
    defaults' two samples leave too large (docs/posterior_check.md: linear-150's std ratio 0.60
    with the large-net defaults, 1.02 with these; linear-500 0.09 against 0.90, 0.78 with 32).
    """
    return {
        "generator": dict(
            generator="layerwise", hidden=(), noise_dim=min(dim, SMALL_NET_MAX_NOISE)
        ),
        "num_samples": dict(num_samples=SMALL_NET_SAMPLES),
        "nll": dict(nll="mean"),
    }


_CHUNKED_ONLY = ("chunk_size", "num_chunks", "noise_mixing")


def auto_num_chunks(dim: int, width: int, embedding_dim: int, noise_dim: int, mixing: bool) -> int:
    """``num_chunks="auto"``: the count that minimises what the chunks cost in parameters, each
    ``embedding_dim (+ width * noise_dim with the noise path)`` against the shared output
    layer's ``width * D / C``, and never fewer than ``width`` (the default count):
    ``sqrt(D / 12)`` with the recommended options, 190 on LeNet-5, 965 on ResNet-18."""
    per_chunk = embedding_dim + (width * noise_dim if mixing else 0)
    return max(width, round(math.sqrt(width * dim / per_chunk)))


#: ``jacobian_chunks="auto"`` subsamples the Jacobian's Gram from this many generated weights on
#: (below it the Gram is cheap and the subset's bias shows: linear-20's std ratio 0.976 -> 0.944)
AUTO_JACOBIAN_CHUNKS_FROM = 65_536
#: ``"auto"`` takes a quarter of the chunks, and at least this many (4 of the default 16)
AUTO_JACOBIAN_CHUNKS = 4


def _resolve_jacobian_chunks(
    value: int | str | None,
    kl: str,
    generator: GeneratorName,
    noise: NoiseMode,
    dim: int,
    num_chunks: int | None,
) -> int | None:
    """``jacobian_chunks`` as ``JacobianKL`` takes it: ``"auto"`` made an int or None (other
    strings are refused before, by ``BayesByHypernet``)."""
    if not isinstance(value, str):
        return value
    usable = (
        kl == "jacobian"
        and generator is GeneratorName.CHUNKED
        and noise is NoiseMode.ALIGNED
        and dim >= AUTO_JACOBIAN_CHUNKS_FROM
    )
    if not usable or num_chunks is None:
        return None
    return max(AUTO_JACOBIAN_CHUNKS, num_chunks // 4)


@dataclass(frozen=True)
class Readout:
    """The output layer that ``last_layer="exact"`` integrates: where it is and its sizes."""

    name: str  # the module's name in the net
    weight: str  # its parameters' names
    bias: str | None
    in_features: int
    out_features: int
    noise_scale: float  # the Gaussian likelihood's

    @property
    def features(self) -> int:
        """F: the layer's inputs, plus one for the bias."""
        return self.in_features + (self.bias is not None)


def output_layer(net: nn.Module) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` registered in ``net``: its name and the layer."""
    linears = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"last_layer='exact' needs an nn.Linear output layer; {type(net).__name__} has none"
        )
    return linears[-1]


def sigma_blocks(spec: ParamSpec, per: SigmaPer = SigmaPer.UNIT) -> list[tuple[int, int]]:
    """``ImplicitPosterior``'s ``sigma_blocks`` (rows of ``cols`` weights sharing a scale).

    ``unit`` (and ``factored``): ``(shape[0], numel / shape[0])`` for tensors of 2 or more
    dimensions (units x inputs). ``kernel``: ``(shape[0] * shape[1], numel / that)`` for tensors
    of 3 or more dimensions (a convolution's kernels x taps), one per weight for matrices.
    Vectors and scalars: ``(numel, 1)``, one per entry.
    """
    lead = 2 if per is SigmaPer.KERNEL else 1  # the dimensions whose index picks the scale
    rows = [math.prod(e.shape[:lead]) if len(e.shape) > lead else e.numel for e in spec]
    return [(r, e.numel // r) for r, e in zip(rows, spec, strict=True)]


def _check_exact_readout(
    net: nn.Module,
    likelihood: str,
    noise_scale: float | None,
    nll: NLLMode | str | None,
    include: ParamPredicate | None,
) -> tuple[str, nn.Linear]:
    """The output layer that ``last_layer="exact"`` integrates, after checking that it can."""
    if likelihood != "gaussian" or noise_scale is None:
        raise ValueError(
            "last_layer='exact' needs likelihood='gaussian' with a noise_scale (the output "
            f"layer's posterior is conjugate only there); got likelihood={likelihood!r}"
        )
    if nll is not None and parse_enum(NLLMode, nll, "nll") is not NLLMode.MEAN:
        raise ValueError(
            "nll does not apply with last_layer='exact' (the collapsed likelihood sees every "
            f"example with every sample); got nll={nll!r}"
        )
    name, layer = output_layer(net)
    if not name:
        raise ValueError(
            "last_layer='exact' on a bare nn.Linear leaves nothing for the hypernet: that is "
            "Bayesian linear regression, whose posterior is exact without one"
        )
    for pname, param in layer.named_parameters():
        kept = include is None or include(f"{name}.{pname}", param)
        if not param.requires_grad or not kept:
            raise ValueError(
                f"last_layer='exact': the output layer {name!r}'s {pname} must be a trainable "
                "parameter that include and deterministic keep (it is integrated, not "
                "point-estimated)"
            )
    return name, layer


def _zeros_like_shape(t: Tensor) -> Tensor:
    """A tensor of ``t``'s shape on one shared zero (no memory of its size)."""
    return torch.zeros((), dtype=t.dtype, device=t.device).expand(t.shape)


def _combined(include: ParamPredicate | None, kept: ParamPredicate) -> ParamPredicate:
    """Generate a parameter only where ``include`` (if any) and ``deterministic`` both allow it."""
    if include is None:
        return kept
    chosen = include
    return lambda name, param: chosen(name, param) and kept(name, param)


class BayesByHypernet(TemperedKL, Method):
    """The BbH posterior around an unmodified ``net`` (which is copied, not changed).

    Args:
        net: any ``nn.Module``; its generated parameters are replaced by hypernet samples.
        preset: ``recommended`` (default) or ``paper``: fills in every option below that is
            not given (``PRESETS`` lists them); explicit arguments win.
        noise_dim: k, the size of the noise z (the paper: 1, 8 or 64).
        num_samples: S, weight samples per training step (the paper: 5). The KL estimators
            of the posterior (``jacobian``, ``sivi``) allow S = 1; the others need S >= 2.
        generator: ``layerwise`` (the paper's, one MLP per tensor) or ``chunked`` (ours).
        hidden: generator hidden sizes (the paper: 64, 256, 512).
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
        prior_scale: the isotropic prior's s (paper: 1), or the fan-in prior's gain (default
            ``bbh.priors.FAN_IN_GAIN`` = 3).
        temperature: the KL's weight T in ``NLL + kl_weight * T * KL / N`` (1: the ELBO);
            ``"validation"`` (recommended) chooses it from ``TEMPERATURE_CANDIDATES`` by the
            validation NLL when ``bbh.training.fit`` is given ``validation=`` data
            (``bbh.methods.temperature``); the paper: 1.
        nll: ``first``, ``mean``, ``split`` or ``predictive`` (see ``NLLMode``).
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
            (``ChunkedGenerator``; recommended: on, paper: off; only for ``chunked``). It lets q
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

    @staticmethod
    def resolve_options(
        options: Mapping[str, Any], dim: int | None = None, net_dim: int | None = None
    ) -> dict[str, Any]:
        """The preset's options overridden by those in ``options`` that are given (not ``None``;
        for ``weight_noise``, present and not ``UNSET``), with ``preset`` as its name. With the
        net's number of generated weights ``dim``, the recommended preset of a small net takes
        ``small_net_options`` (each bundle only where none of its keys is given); the samples'
        bundles (``num_samples``, ``nll``) only where the whole net, ``net_dim`` parameters
        with its point estimates (default: ``dim``), is that small too."""
        preset = parse_enum(Preset, options.get("preset", Preset.RECOMMENDED), "preset")
        chosen = dict(PRESETS[preset])

        def given(key: str) -> bool:
            value = options.get(key, UNSET)
            return not isinstance(value, _Unset) and (value is not None or key == "weight_noise")

        if preset is Preset.RECOMMENDED and dim is not None and dim <= SMALL_NET_WEIGHTS:
            whole_small = (dim if net_dim is None else net_dim) <= SMALL_NET_WEIGHTS
            for name, bundle in small_net_options(dim).items():
                if name != "generator" and not whole_small:
                    continue  # each of the 64 samples would be a pass through the whole net
                # the chunked generator's own options ask for it
                keys = [*bundle, *(_CHUNKED_ONLY if name == "generator" else ())]
                if not any(given(key) for key in keys):
                    chosen.update(bundle)
        for key in chosen:
            value = options.get(key, UNSET)
            if key == "weight_noise":
                if not isinstance(value, _Unset):
                    chosen[key] = value
            elif value is not None and not isinstance(value, _Unset):
                chosen[key] = value
        if given("prior") and not given("prior_scale"):  # the scale that goes with the prior
            chosen["prior_scale"] = FAN_IN_GAIN if chosen["prior"] == "fan_in" else 1.0
        return dict(chosen, preset=preset.value)

    @staticmethod
    def options_for_state_dict(
        options: Mapping[str, Any], state_dict: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``options`` that rebuild the module ``state_dict`` was saved from: a chunked
        generator saved without the linear noise path (model files written before it became
        the default) gets ``noise_mixing=False``, a chunked generator saved without an
        explicit ``generator`` keeps it (a small net saved before ``small_net_options``), and
        its chunk size is the saved one unless ``chunk_size`` or an int ``num_chunks`` is given,
        and a model saved before the fan-in prior and the temperature (no ``temperature`` in
        its state) gets the model it was trained as (``N(0, I)``, ``T = 1``, ``sigma_rate``
        1e-3) where its options do not say; ``bbh.load`` uses this."""
        options = dict(options)
        chunked_keys = "hypernet.generator.embeddings" in state_dict
        if chunked_keys and options.get("generator") is None:
            # a small net saved before the small-net options: it had the chunked generator
            options["generator"] = GeneratorName.CHUNKED.value
        layers = [k for k in state_dict if k.startswith("hypernet.generator.net.")]
        sized = options.get("chunk_size") is not None or isinstance(options.get("num_chunks"), int)
        if chunked_keys and layers and not sized:  # the saved chunk size, whatever the rule
            last = max(layers, key=lambda k: int(k.split(".")[3]))
            options["chunk_size"] = int(state_dict[last].shape[0])
            options.pop("num_chunks", None)
        if "temperature" not in state_dict:  # a model of before the fan-in prior (issue 25)
            for key, value in PRESETS[Preset.PAPER].items():
                if key in ("prior", "prior_scale", "temperature", "sigma_rate"):
                    options.setdefault(key, value)  # the ELBO under N(0, I), sigma_rate 1e-3
        saved_without_path = chunked_keys and "hypernet.generator.noise_mixing" not in state_dict
        if saved_without_path and "noise_mixing" not in options:
            options["noise_mixing"] = False
        return options

    @checked_args(
        noise_dim=at_least(1),
        prior_scale=positive(),
        sigma_rate=positive(),
        embedding_dim=at_least(1),
        chunk_size=at_least(1),
    )
    def __init__(
        self,
        net: nn.Module,
        noise_dim: int | None = None,
        num_samples: int | None = None,
        *,
        preset: Preset | str = Preset.RECOMMENDED,
        generator: GeneratorName | str | None = None,
        hidden: Sequence[int] | None = None,
        noise: NoiseMode | str | None = None,
        kl: str | None = None,
        weight_noise: float | _Unset | None = UNSET,
        antithetic: bool | None = None,
        jacobian_samples: int = 1,
        jacobian_chunks: int | str | None = "auto",
        prior_scale: float | None = None,
        prior: str | GaussianPrior | None = None,
        temperature: float | str | None = None,
        nll: NLLMode | str | None = None,
        likelihood: str = "categorical",
        noise_scale: float | None = None,
        include: ParamPredicate | None = None,
        deterministic: Sequence[str] = (),
        forward_mode: ForwardMode | str = ForwardMode.AUTO,
        chunk_size: int | None = None,
        num_chunks: int | str | None = None,
        embedding_dim: int = 64,
        noise_mixing: bool | None = None,
        sigma_per: SigmaPer | str = SigmaPer.WEIGHT,
        sigma_rate: float | None = None,
        sigma_tensor_scale: bool | None = None,
        last_layer: LastLayer | str = LastLayer.SAMPLED,
        sample_batch: int = 25,
        sigma_noise: WeightNoise | str = WeightNoise.SAMPLE,
    ):
        last_mode = parse_enum(LastLayer, last_layer, "last_layer")
        include = _combined(include, deterministic_predicate(net, deterministic))
        #: every parameter a weight sample holds (the output layer's too, with ``exact``)
        full_spec = ParamSpec.from_module(net, include)
        readout: tuple[str, nn.Linear] | None = None
        if last_mode is LastLayer.EXACT:
            readout = _check_exact_readout(net, likelihood, noise_scale, nll, include)
            prefix = f"{readout[0]}."
            generated_full = set(full_spec.names)

            def without_readout(name: str, param: nn.Parameter) -> bool:
                return name in generated_full and not name.startswith(prefix)

            spec = ParamSpec.from_module(net, without_readout)
        else:
            spec = full_spec  # names and shapes: the copy's too
        chosen = self.resolve_options(
            dict(
                preset=preset,
                noise_dim=noise_dim,
                num_samples=num_samples,
                generator=generator,
                hidden=hidden,
                noise=noise,
                kl=kl,
                nll=nll,
                weight_noise=weight_noise,
                antithetic=antithetic,
                noise_mixing=noise_mixing,
                chunk_size=chunk_size,
                num_chunks=None if num_chunks == "auto" else num_chunks,
                prior=prior,
                prior_scale=prior_scale,
                temperature=temperature,
                sigma_rate=sigma_rate,
                sigma_tensor_scale=sigma_tensor_scale,
            ),
            dim=spec.dim,  # the small-net options depend on D
            net_dim=sum(p.numel() for p in net.parameters()),  # what every pass runs
        )
        #: the options in force after the preset and the explicit arguments (for run records)
        self.resolved_options = chosen
        sigma_noise = parse_enum(WeightNoise, sigma_noise, "sigma_noise")
        if sigma_noise is not WeightNoise.SAMPLE:  # recorded only where it is not the default
            chosen["sigma_noise"] = sigma_noise.value
        noise_dim, num_samples, generator = (
            chosen["noise_dim"],
            chosen["num_samples"],
            chosen["generator"],
        )
        hidden, noise, kl, nll = chosen["hidden"], chosen["noise"], chosen["kl"], chosen["nll"]
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
        sigma_rate_given = sigma_rate
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
        if isinstance(jacobian_chunks, str) and jacobian_chunks != "auto":
            raise ValueError(
                f"jacobian_chunks must be an int >= 1, None or 'auto', got {jacobian_chunks!r}"
            )
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
        check_num_samples(num_samples, minimum=1 if uses_posterior(kl) else 2)
        self.num_samples = num_samples
        self.sample_batch = sample_batch

        #: the layout of a predictive weight sample (``self.spec`` plus an exact output layer)
        self.predictive_spec = full_spec
        self.last_layer = last_mode
        #: with ``last_layer="exact"``: the integrated output layer
        self.readout: Readout | None = None
        if readout is not None:
            name, layer = readout
            self.readout = Readout(
                name,
                f"{name}.weight",
                f"{name}.bias" if layer.bias is not None else None,
                layer.in_features,
                layer.out_features,
                float(noise_scale),  # type: ignore[arg-type]  # checked: not None
            )
            # the data the readout's posterior is conditioned on (the last full-batch step's)
            self.register_buffer("conditioning_x", torch.zeros(0))
            self.register_buffer("conditioning_y", torch.zeros(0))
            self._readout_checked = False
        generated = set(full_spec.names)
        for name, p in self.net.named_parameters():
            if name in generated:
                p.requires_grad_(False)  # replaced by samples in every forward pass
        gen_options: dict[str, Any] = {"noise_dim": noise_dim, "hidden": hidden, "noise": noise}
        if jacobian_chunks not in ("auto", None) and (
            gen_name is not GeneratorName.CHUNKED or noise_mode is not NoiseMode.ALIGNED
        ):
            raise ValueError("jacobian_chunks needs generator='chunked' with noise='aligned'")
        if num_chunks == "auto":
            num_chunks = None
            if gen_name is GeneratorName.CHUNKED and chunk_size is None:
                width = tuple(hidden)[-1] if tuple(hidden) else noise_dim + embedding_dim
                num_chunks = auto_num_chunks(
                    self.spec.dim, width, embedding_dim, noise_dim, bool(chosen["noise_mixing"])
                )
        elif isinstance(num_chunks, str):
            raise ValueError(f"num_chunks must be an int >= 1, None or 'auto', got {num_chunks!r}")
        if gen_name is GeneratorName.CHUNKED:
            gen_options.update(
                chunk_size=chunk_size,
                num_chunks=num_chunks,
                embedding_dim=embedding_dim,
                init=self.spec.from_module_values(self.net)[0],
                noise_mixing=bool(chosen["noise_mixing"]),
            )
        elif chunk_size is not None or num_chunks is not None or noise_mixing is not None:
            raise ValueError(
                "chunk_size, num_chunks and noise_mixing apply only to generator='chunked'"
            )
        affine = gen_name is GeneratorName.LAYERWISE and not tuple(hidden)
        if affine:  # ours: starts at the net's init with a spread of about sigma0
            gen_options.update(
                init=self.spec.from_module_values(self.net)[0],
                init_noise_scale=sigma0 if sigma0 is not None else 0.01,
            )
        hypernet = GENERATORS[gen_name.value](self.spec, **gen_options)
        jacobian_chunks = _resolve_jacobian_chunks(
            jacobian_chunks,
            kl,
            gen_name,
            noise_mode,
            self.spec.dim,
            getattr(hypernet, "num_chunks", None),
        )
        kl_options: dict[str, Any] = {}
        if kl == "jacobian":
            kl_options = dict(jacobian_samples=jacobian_samples, jacobian_chunks=jacobian_chunks)
        elif jacobian_samples != 1 or jacobian_chunks is not None:
            raise ValueError("jacobian_samples and jacobian_chunks apply only to kl='jacobian'")
        self.kl_estimator = make_kl_estimator(kl, **kl_options)
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
        if sigma_rate_given is None:  # files of before the saved scale: the old default rate
            self.hypernet.legacy_log_sigma_scale = SIGMA_RATE_PAPER / self.default_lr
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
        local = copy.deepcopy(self.net)
        for name, _ in layers:
            layer = local.get_submodule(name)
            make_local(layer, noise)
            # every generated tensor and variance is supplied per call: no D numbers held here
            for key, buffer in layer._buffers.items():
                if key.endswith("_log_var") and buffer is not None:
                    layer._buffers[key] = _zeros_like_shape(buffer)
            for attr in ("weight", "bias"):
                t = getattr(layer, attr, None)
                if isinstance(t, Tensor) and not isinstance(t, nn.Parameter):
                    setattr(layer, attr, _zeros_like_shape(t))
        return local

    def _local_forward(self, means: Tensor, x: Inputs) -> Tensor:
        """Outputs ``[S, B, C]`` with per-example weight noise: sample s's layers have mean
        weights ``G(z_s)`` (``means [S, D]``) and variances ``sigma^2`` (Kingma et al. 2015)."""
        (local,) = self._local_nets
        local.train(self.training)
        shared = {**dict(self.net.named_parameters()), **dict(self.net.named_buffers())}
        log_var = self.spec.unflatten(2 * self.hypernet.log_sigma[None])
        shared.update({k + "_log_var": v[0] for k, v in log_var.items()})
        args, kwargs = call_args(local, x)
        per_sample = self.spec.unflatten(means)
        outs = [
            functional_call(
                local, {**shared, **{k: v[i] for k, v in per_sample.items()}}, args, kwargs
            )
            for i in range(means.shape[0])
        ]
        return torch.stack(outs)

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
        v = sample_readout(phi, y, r.noise_scale, self.readout_prior).to(theta.dtype)  # [S, F, O]
        params = dict(self.spec.unflatten(theta))
        params[r.weight] = v[:, : r.in_features].transpose(1, 2)  # [S, O, in]
        if r.bias is not None:
            params[r.bias] = v[:, r.in_features]
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
        r = self.readout
        if r is None:
            raise RuntimeError("features() is for last_layer='exact'")
        parent_name, _, child = r.name.rpartition(".")
        parent = self.net.get_submodule(parent_name)
        layer = getattr(parent, child)
        setattr(parent, child, nn.Identity())  # the net now returns the layer's input
        try:
            phi = sampled_forward(self.net, self.spec.unflatten(theta), x, mode=self.forward_mode)
        finally:
            setattr(parent, child, layer)
        if phi.dim() != 3 or phi.shape[-1] != r.in_features:
            raise ValueError(
                f"last_layer='exact': the net must end with its output layer {r.name!r} on "
                f"[B, {r.in_features}] features; without it the net returned "
                f"{list(phi.shape[1:])}"
            )
        if r.bias is not None:
            phi = torch.cat([phi, torch.ones_like(phi[..., :1])], dim=-1)
        return phi

    def _exact_readout_nll(self, flat: Tensor, x: Inputs, y: Tensor, num_data: int) -> Tensor:
        """Minus the collapsed log-likelihood per example (the output layer integrated)."""
        r = self.readout
        assert r is not None
        if not isinstance(x, Tensor):
            raise TypeError(
                "last_layer='exact' keeps the training inputs in a buffer and takes x as one "
                f"tensor, got a {type(x).__name__} of tensors; use last_layer='sampled'"
            )
        if x.shape[0] != num_data:
            raise ValueError(
                "last_layer='exact' trains full batch (the output layer is integrated over "
                f"every example): got a batch of {x.shape[0]} of num_data={num_data}"
            )
        phi = self.features(flat, x)
        targets = y.reshape(x.shape[0], -1)
        if targets.shape[1] != r.out_features:
            raise ValueError(
                f"targets {list(y.shape)} do not match the output layer's {r.out_features} outputs"
            )
        if not self._readout_checked:
            self._check_output_is_readout(flat[:1].detach(), x[:8])
        self.conditioning_x = x.detach()
        self.conditioning_y = y.detach()
        log_lik = log_marginal(phi, targets, r.noise_scale, self.readout_prior)  # [S]
        return -(log_lik.mean() / num_data).to(flat.dtype)

    def _check_output_is_readout(self, theta: Tensor, x: Tensor) -> None:
        """Once: the net's output is its output layer's (nothing runs after it)."""
        r = self.readout
        assert r is not None
        layer = self.net.get_submodule(r.name)
        with torch.no_grad():
            readout = {k: v.unsqueeze(0) for k, v in layer.named_parameters(prefix=r.name)}
            whole = {**self.spec.unflatten(theta), **readout}
            direct = self.forward_samples(self.predictive_spec.flatten(whole), x)[0]
            via = layer(self.features(theta, x)[0, :, : r.in_features])
        if direct.shape != via.shape or not torch.allclose(direct, via, atol=1e-5, rtol=1e-4):
            raise ValueError(
                "last_layer='exact': the net's output must be its last nn.Linear's output "
                f"({r.name!r}); something runs after it"
            )
        self._readout_checked = True

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
