"""BbH's options: the paper's setting, the rules behind ``"auto"``, and what a run records.

``BayesByHypernet``'s signature holds our defaults (docs/methods.md says why each); the paper's
setting (arXiv 1711.01297, its experiments' code pawni/BayesByHypernet) is ``PAPER``, used by
``BayesByHypernet.paper(net, **overrides)`` and by ``preset="paper"`` in ``bbh.build`` and run
configs. Four options default to ``"auto"``, which depends on the net's size
(``resolve_auto``): a net of at most ``SMALL_NET_WEIGHTS`` generated weights gets the affine
generator with 64 samples on the whole batch, a larger one the chunked generator with two samples
that split the batch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import Any

from torch import Tensor

from bbh.divergences import KLEstimator, make_kl_estimator, uses_posterior
from bbh.divergences.options import KLOptions
from bbh.enums import GeneratorName, NoiseMode, Preset, SigmaPer
from bbh.functional import ParamSpec
from bbh.hypernets import GENERATORS, KroneckerGenerator
from bbh.hypernets.options import GeneratorOptions
from bbh.options import AUTO, parse_enum
from bbh.posteriors.implicit import Generator, ImplicitPosterior
from bbh.priors import FAN_IN_GAIN

#: ``sigma_rate``'s default: an Adam step moves ``log sigma`` by up to this much, so a sigma
#: whose gradient keeps its sign crosses a factor of 10 in about 80 steps (where the gradient is
#: mostly noise it moves slower: docs/posterior_check.md, "Sigma at its optimum")
SIGMA_RATE = 3e-2
#: the rate every run before the fan-in prior used (also the paper's, where no sigma is
#: learned): a cap that held sigma far below its optimum in a normal run
SIGMA_RATE_PAPER = 1e-3

#: The paper's setting (the README runs of pawni/BayesByHypernet): layer-wise generator,
#: aligned noise, the full-vector nearest-neighbour KL, the likelihood on sample 0; purely
#: implicit, under ``N(0, I)`` and the plain ELBO
PAPER: dict[str, Any] = dict(
    noise_dim=8,
    num_samples=5,
    generator="layerwise",
    hidden=(64, 256, 512),
    noise="aligned",
    kl="nn_full",
    nll="first",
    weight_noise=None,
    antithetic=False,
    noise_mixing=False,
    prior="isotropic",
    prior_scale=1.0,
    temperature=1.0,
    sigma_rate=SIGMA_RATE_PAPER,
    sigma_tensor_scale=False,
)

#: What the recommended options are on a large net (``"auto"`` resolved there), as run records
#: and config hashes have always written them
RECOMMENDED: dict[str, Any] = dict(
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
    prior="fan_in",
    prior_scale=FAN_IN_GAIN,
    temperature="validation",
    sigma_rate=SIGMA_RATE,
    sigma_tensor_scale=True,
)

#: The named option sets ``preset=`` takes (``bbh.build``, run configs)
PRESETS: dict[Preset, dict[str, Any]] = {Preset.RECOMMENDED: {}, Preset.PAPER: PAPER}

#: ``init_sigma``'s default, the semi-implicit sigma's start
INIT_SIGMA = 0.01
#: the options' old names that configs, records and the presets write: ``weight_noise`` for
#: ``init_sigma``
RENAMED = {"init_sigma": "weight_noise"}
#: the generator's and the KL's options by their flat names (``GeneratorOptions.FLAT_NAMES``,
#: ``KLOptions.FLAT_NAMES``) and the old names, which ``BayesByHypernet`` takes as keywords
FLAT_OPTIONS: tuple[str, ...] = (
    *(n for n in GeneratorOptions.FLAT_NAMES.values() if n != "generator"),
    *(n for n in KLOptions.FLAT_NAMES.values() if n != "kl"),
    *RENAMED.values(),
)


def flat_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` as records and presets write them: a ``GeneratorOptions`` or ``KLOptions``
    (or a config's table of one) as its flat names, with flat names given beside it on top,
    and ``init_sigma`` as ``weight_noise``.

    Args:
        options: Options as ``BayesByHypernet`` takes them.

    Returns:
        The flat options.

    Raises:
        ValueError: ``init_sigma`` and ``weight_noise`` disagree, or a nested option is bad.
    """
    out = dict(options)
    for new, old in RENAMED.items():
        if new in out:
            value = out.pop(new)
            if old in out and out[old] != value:
                raise ValueError(f"{new}={value!r} and {old}={out[old]!r} (its old name) disagree")
            out[old] = value
    nested: tuple[tuple[Any, str], ...] = ((GeneratorOptions, "generator"), (KLOptions, "kl"))
    for cls, key in nested:
        value = out.get(key)
        if value is not None and not isinstance(value, str | Enum):
            beside = {k: out.pop(k) for k in cls.FLAT_NAMES.values() if k != key and k in out}
            out.update(cls.of(value).flat(), **beside)
    return out


def merge_options(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` on top of ``base`` (a preset), both flat (``flat_options``): a nested object
    in ``overrides`` replaces all of ``base``'s generator or KL options, a name alone only the
    name.

    Args:
        base: The preset's options.
        overrides: The options given.

    Returns:
        The merged flat options.
    """
    return {**flat_options(base), **flat_options(overrides)}


def nested_options(
    generator: Any, kl: Any, init_sigma: float | None, flat: Mapping[str, Any]
) -> tuple[GeneratorOptions, KLOptions, float | None]:
    """``BayesByHypernet``'s generator, KL and ``init_sigma`` from its arguments and the flat
    keywords (``FLAT_OPTIONS``), which go on top of the objects.

    Args:
        generator: A ``GeneratorOptions``, a name or a mapping.
        kl: A ``KLOptions``, a name or a mapping.
        init_sigma: The argument.
        flat: The flat keywords given.

    Returns:
        The generator's options, the KL's and ``init_sigma``.

    Raises:
        TypeError: A keyword that is none of ``FLAT_OPTIONS``.
        ValueError: A bad option, or ``weight_noise`` against a different ``init_sigma``.
    """
    unknown = sorted(set(flat) - set(FLAT_OPTIONS))
    if unknown:
        raise TypeError(
            f"BayesByHypernet got unexpected option(s) {unknown}; besides its arguments it takes "
            f"the flat names of the generator's and the KL's options: {sorted(FLAT_OPTIONS)}"
        )
    flat = dict(flat)
    if "weight_noise" in flat:
        old = flat.pop("weight_noise")
        if init_sigma not in (INIT_SIGMA, old):
            raise ValueError(
                f"init_sigma={init_sigma!r} and weight_noise={old!r} (its old name) disagree"
            )
        init_sigma = old
    gen = GeneratorOptions.of(generator).replace(**GeneratorOptions.from_flat(flat))
    kl_options = KLOptions.of(kl).replace(**KLOptions.from_flat(flat))
    return gen, kl_options, init_sigma


#: Nets of at most this many generated weights get the small-net options of ``"auto"``:
#: measured on the posterior check's cases, D = 2 to 500. The samples' options (64 on the whole
#: batch) also need the whole net, point estimates included, this small: each sample is a pass
#: through all of it (a ResNet's output layer alone generated would otherwise train 64 ResNet
#: passes a step)
SMALL_NET_WEIGHTS = 1_024
#: the largest noise size (rank of the affine part) the small-net options give
SMALL_NET_MAX_NOISE = 512
#: weight samples per step of the small-net options, each on the whole batch
SMALL_NET_SAMPLES = 64


def resolve_auto(options: Mapping[str, Any], dim: int, net_dim: int) -> dict[str, Any]:
    """``options`` with ``"auto"`` made a value for a net of ``dim`` generated weights and
    ``net_dim`` parameters in all.

    - ``generator``: ``affine`` (``q = N(b, A A^T + diag sigma^2)``, every Gaussian when k >= D,
      whose Jacobian KL is exact) where ``dim <= SMALL_NET_WEIGHTS`` and none of ``hidden``,
      ``noise_dim``, ``chunk_size``, ``num_chunks`` is given; else ``chunked``.
    - ``hidden``: ``()`` for the affine generator, ``(64, 16)`` otherwise.
    - ``noise_dim``: ``min(D, 512)`` for the affine generator, D for the Kronecker one, 8
      otherwise.
    - ``num_samples`` and ``nll``: 64 samples on the whole batch (``mean``) where the whole net
      is small too, else two that split it (``split``): a small net pays little for 64 samples,
      whose gradient noise two leave too large (docs/posterior_check.md: linear-150's std
      ratio 0.60 with two, 1.02 with 64; linear-500 0.09 against 0.90, 0.78 with 32).

    Args:
        options: The options as given, any of them ``"auto"``.
        dim: D, the generated weights.
        net_dim: The net's parameters, point estimates included.

    Returns:
        A new dict without ``"auto"`` in those four options.
    """
    out = dict(options)
    small = dim <= SMALL_NET_WEIGHTS
    if out["generator"] == AUTO:
        given = [k for k in ("hidden", "noise_dim") if out[k] != AUTO]
        given += [k for k in ("chunk_size", "num_chunks") if out.get(k) is not None]
        out["generator"] = "affine" if small and not given else "chunked"
    name = parse_enum(GeneratorName, out["generator"], "generator")
    affine = name is GeneratorName.AFFINE
    if out["hidden"] == AUTO:
        out["hidden"] = () if affine or name is GeneratorName.KRONECKER else RECOMMENDED["hidden"]
    if name is GeneratorName.KRONECKER:  # one noise value per weight
        out["noise_dim"] = dim
    if out["noise_dim"] == AUTO:
        out["noise_dim"] = min(dim, SMALL_NET_MAX_NOISE) if affine else RECOMMENDED["noise_dim"]
    whole_small = small and net_dim <= SMALL_NET_WEIGHTS
    if out["num_samples"] == AUTO:
        out["num_samples"] = SMALL_NET_SAMPLES if whole_small else RECOMMENDED["num_samples"]
    if out["nll"] == AUTO:
        out["nll"] = "mean" if whole_small else RECOMMENDED["nll"]
    return out


def recorded_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options a run records and hashes for ``options`` as a config gives them (no net):
    ``preset``'s values where ``options`` gives none, ``"auto"`` written as it resolves on a
    large net, the prior's own scale where none is given, and ``preset`` by name; the generator's
    and KL's options flat and ``init_sigma`` as ``weight_noise`` (``flat_options``), as records
    have always written them, so a config has one hash however it spells them.

    Args:
        options: Options as ``BayesByHypernet`` or ``bbh.build("bbh", ...)`` takes them.

    Returns:
        The recorded options (``RECOMMENDED``'s keys, the other flat generator and KL options,
        and ``preset``).
    """
    options = flat_options(options)
    preset = parse_enum(Preset, options.get("preset", Preset.RECOMMENDED), "preset")
    chosen = {**RECOMMENDED, **PRESETS[preset]}
    for key in chosen:
        value = options.get(key, AUTO)
        if value != AUTO and (value is not None or key == "weight_noise"):
            chosen[key] = value
    if "prior" in options and options.get("prior_scale") is None:
        chosen["prior_scale"] = default_prior_scale(chosen["prior"])
    defaults = {**GeneratorOptions().flat(), **KLOptions().flat()}
    rest = {k: options.get(k, v) for k, v in defaults.items() if k not in chosen}
    return dict(chosen, **rest, preset=preset.value)


def default_prior_scale(prior: object) -> float:
    """``prior_scale=None``: the fan-in prior's gain (3), else 1.

    Args:
        prior: The ``prior`` option.

    Returns:
        The scale that goes with it.
    """
    return FAN_IN_GAIN if prior == "fan_in" else 1.0


def auto_num_chunks(dim: int, width: int, embedding_dim: int, noise_dim: int, mixing: bool) -> int:
    """``num_chunks="auto"``: the count that minimises what the chunks cost in parameters, each
    ``embedding_dim (+ width * noise_dim with the noise path)`` against the shared output
    layer's ``width * D / C``, and never fewer than ``width`` (the default count):
    ``sqrt(D / 12)`` with the recommended options, 190 on LeNet-5, 965 on ResNet-18.

    Args:
        dim: D, the generated weights.
        width: The generator's last hidden width.
        embedding_dim: The chunks' embedding size.
        noise_dim: k.
        mixing: Whether the chunks have the linear noise path.

    Returns:
        The number of chunks.
    """
    per_chunk = embedding_dim + (width * noise_dim if mixing else 0)
    return max(width, round(math.sqrt(width * dim / per_chunk)))


#: ``jacobian_chunks="auto"`` subsamples the Jacobian's Gram from this many generated weights on
#: (below it the Gram is cheap and the subset's bias shows: linear-20's std ratio 0.976 -> 0.944)
AUTO_JACOBIAN_CHUNKS_FROM = 65_536
#: ``"auto"`` takes a quarter of the chunks, and at least this many (4 of the default 16)
AUTO_JACOBIAN_CHUNKS = 4


def resolve_jacobian_chunks(
    value: int | str | None,
    kl: str,
    generator: GeneratorName,
    noise: NoiseMode,
    dim: int,
    num_chunks: int | None,
) -> int | None:
    """``jacobian_chunks`` as ``JacobianKL`` takes it: ``"auto"`` made an int or None.

    Args:
        value: The option: an int, None or ``"auto"`` (other strings are refused before).
        kl: The KL estimator's name.
        generator: The generator.
        noise: How noise is shared.
        dim: D.
        num_chunks: The chunked generator's chunk count (None for others).

    Returns:
        The number of chunks per step, or None for all of them.
    """
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


def sigma_blocks(spec: ParamSpec, per: SigmaPer = SigmaPer.UNIT) -> list[tuple[int, int]]:
    """``ImplicitPosterior``'s ``sigma_blocks`` (rows of ``cols`` weights sharing a scale).

    ``unit`` (and ``factored``): ``(shape[0], numel / shape[0])`` for tensors of 2 or more
    dimensions (units x inputs). ``kernel``: ``(shape[0] * shape[1], numel / that)`` for tensors
    of 3 or more dimensions (a convolution's kernels x taps), one per weight for matrices.
    Vectors and scalars: ``(numel, 1)``, one per entry.

    Args:
        spec: The generated tensors.
        per: What shares a scale.

    Returns:
        ``(rows, cols)`` per tensor.
    """
    lead = 2 if per is SigmaPer.KERNEL else 1  # the dimensions whose index picks the scale
    rows = [math.prod(e.shape[:lead]) if len(e.shape) > lead else e.numel for e in spec]
    return [(r, e.numel // r) for r, e in zip(rows, spec, strict=True)]


def options_for_state_dict(
    options: Mapping[str, Any], state_dict: Mapping[str, Any]
) -> dict[str, Any]:
    """``options`` that rebuild the module ``state_dict`` was saved from (``bbh.load``).

    - a chunked generator saved without an explicit ``generator`` keeps it (a small net saved
      before the small-net options), and its chunk size is the saved one unless ``chunk_size``
      or an int ``num_chunks`` is given;
    - a model saved before the fan-in prior and the temperature (no ``temperature`` in its
      state) gets the model it was trained as (``N(0, I)``, ``T = 1``, ``sigma_rate`` 1e-3)
      where its options do not say;
    - a chunked generator saved without the linear noise path (before it became the default)
      gets ``noise_mixing=False``.

    Args:
        options: The saved run's method options.
        state_dict: The saved method's state.

    Returns:
        The options to build it with.
    """
    options = flat_options(options)
    state_dict = {_current_key(k): v for k, v in state_dict.items()}
    chunked_keys = "posterior.generator.embeddings" in state_dict
    if chunked_keys and options.get("generator") in (None, AUTO):
        options["generator"] = GeneratorName.CHUNKED.value
    layers = [k for k in state_dict if k.startswith("posterior.generator.net.")]
    sized = options.get("chunk_size") is not None or isinstance(options.get("num_chunks"), int)
    if chunked_keys and layers and not sized:  # the saved chunk size, whatever the rule
        last = max(layers, key=lambda k: int(k.split(".")[3]))
        options["chunk_size"] = int(state_dict[last].shape[0])
        options.pop("num_chunks", None)
    if "temperature" not in state_dict:  # a model of before the fan-in prior (issue 25)
        for key in ("prior", "prior_scale", "temperature", "sigma_rate"):
            options.setdefault(key, PAPER[key])  # the ELBO under N(0, I), sigma_rate 1e-3
    saved_without_path = chunked_keys and "posterior.generator.noise_mixing" not in state_dict
    if saved_without_path and "noise_mixing" not in options:
        options["noise_mixing"] = False
    return options


def build_generator(
    name: GeneratorName,
    spec: ParamSpec,
    init: Tensor,
    *,
    noise_dim: int,
    hidden: tuple[int, ...],
    noise: str,
    chunk_size: int | None,
    num_chunks: int | str | None,
    embedding_dim: int,
    noise_mixing: bool,
    init_sigma: float | None,
    log_scale: float = 1.0,
) -> Generator:
    """The generator ``name`` over ``spec`` (its options checked by ``GeneratorOptions``).

    Args:
        name: The generator (``"auto"`` resolved).
        spec: The generated tensors.
        init: The net's values of them ``[D]`` (the chunked and affine generators start there).
        noise_dim: k.
        hidden: Hidden sizes (none for the affine generator).
        noise: How noise is shared.
        chunk_size: The chunked generator's weights per chunk.
        num_chunks: Its number of chunks, or ``"auto"`` (``auto_num_chunks``).
        embedding_dim: Its chunk embeddings' size.
        noise_mixing: Its linear noise path (other generators leave it out).
        init_sigma: The semi-implicit sigma's start; the affine generator's spread starts there.
        log_scale: The rate multiplier of the Kronecker generator's log-scales (as
            ``ImplicitPosterior``'s ``log_sigma_scale``).

    Returns:
        The generator.
    """
    if name is GeneratorName.KRONECKER:  # a Gaussian of its own (``in_force`` drops init_sigma)
        return KroneckerGenerator(spec, init, init_noise_scale=INIT_SIGMA, log_scale=log_scale)
    options: dict[str, Any] = {"noise_dim": noise_dim, "hidden": hidden, "noise": noise}
    if num_chunks == AUTO:
        num_chunks = None
        if name is GeneratorName.CHUNKED and chunk_size is None:
            width = hidden[-1] if hidden else noise_dim + embedding_dim
            num_chunks = auto_num_chunks(spec.dim, width, embedding_dim, noise_dim, noise_mixing)
    if name is GeneratorName.CHUNKED:
        options.update(
            chunk_size=chunk_size,
            num_chunks=num_chunks,
            embedding_dim=embedding_dim,
            init=init,
            noise_mixing=noise_mixing,
        )
    if is_affine(name, hidden):  # ours: starts at the net's init with a spread of about sigma
        options.update(init=init, init_noise_scale=0.01 if init_sigma is None else init_sigma)
    generator: Generator = GENERATORS[name.value](spec, **options)
    return generator


def is_affine(name: GeneratorName, hidden: tuple[int, ...]) -> bool:
    """Whether the generator is affine, ``G(z) = A z + b`` (named so, or layer-wise without
    hidden layers).

    Args:
        name: The generator.
        hidden: Its hidden sizes.

    Returns:
        True for an affine generator.
    """
    return name is GeneratorName.AFFINE or (name is GeneratorName.LAYERWISE and not hidden)


def build_kl(
    kl: str,
    generator: Generator,
    name: GeneratorName,
    noise: NoiseMode,
    dim: int,
    *,
    jacobian_samples: int,
    jacobian_chunks: int | str | None,
) -> KLEstimator:
    """The KL estimator ``kl`` for ``generator``, ``jacobian_chunks="auto"`` resolved.

    Args:
        kl: The estimator's name.
        generator: The generator it estimates for.
        name: The generator's name.
        noise: How its noise is shared.
        dim: D, the generated weights.
        jacobian_samples: ``JacobianKL``'s noise draws per step.
        jacobian_chunks: ``JacobianKL``'s chunks per step, None or ``"auto"``.

    Returns:
        The estimator.

    Raises:
        ValueError: ``jacobian_chunks`` with a generator other than the chunked one with
            aligned noise.
    """
    usable = name is GeneratorName.CHUNKED and noise is NoiseMode.ALIGNED
    if jacobian_chunks not in (AUTO, None) and not usable:
        raise ValueError("jacobian_chunks needs generator='chunked' with noise_sharing='aligned'")
    chunks = resolve_jacobian_chunks(
        jacobian_chunks, kl, name, noise, dim, getattr(generator, "num_chunks", None)
    )
    if kl == "jacobian":  # KLOptions refuses the Jacobian's options with another estimator
        return make_kl_estimator(kl, jacobian_samples=jacobian_samples, jacobian_chunks=chunks)
    return make_kl_estimator(kl)


def in_force(
    gen: GeneratorOptions,
    kl_options: KLOptions,
    given: Mapping[str, Any],
    dim: int,
    net_dim: int,
) -> dict[str, Any]:
    """The options in force (``RECOMMENDED``'s keys) for the generator's, the KL's and the
    ``given`` others: enum members as their values, ``prior_scale=None`` as the prior's own and
    ``"auto"`` resolved (``resolve_auto``), after checking the ones that depend on each other.

    Args:
        gen: The generator's options.
        kl_options: The KL's options.
        given: The other recorded options, as given (``init_sigma`` as ``weight_noise``).
        dim: D, the generated weights.
        net_dim: The net's parameters in all.

    Returns:
        The options, ``RECOMMENDED``'s keys.

    Raises:
        ValueError: ``num_samples`` is neither ``"auto"`` nor an int, or an estimator of the
            posterior lacks ``init_sigma``.
    """
    flat = {**gen.flat(), **kl_options.flat(), **given}  # the generator's and KL's as values
    out = {k: flat[k].value if isinstance(flat[k], Enum) else flat[k] for k in RECOMMENDED}
    if out["prior_scale"] is None:
        out["prior_scale"] = default_prior_scale(out["prior"])
    auto = resolve_auto(
        dict(out, chunk_size=gen.chunk_size, num_chunks=gen.num_chunks), dim, net_dim
    )
    out = {key: auto[key] for key in out}
    if isinstance(out["num_samples"], str):
        raise ValueError(f"num_samples must be an int >= 1 or 'auto', got {out['num_samples']!r}")
    if out["generator"] == GeneratorName.KRONECKER.value:
        # a Gaussian with its own covariance and exact entropy: no semi-implicit noise on top
        if out["weight_noise"] not in (None, INIT_SIGMA):
            raise ValueError(
                "generator='kronecker' is a Gaussian of its own (no semi-implicit noise): give "
                f"init_sigma=None or leave it at its default, got {out['weight_noise']!r}"
            )
        out["weight_noise"] = None
        if uses_posterior(out["kl"]) and out["kl"] != "jacobian":
            raise ValueError(
                f"kl={out['kl']!r} bounds a semi-implicit posterior's entropy, and "
                "generator='kronecker' has no semi-implicit noise: use kl='jacobian' (exact for "
                "it) or a sample-based estimator"
            )
    elif uses_posterior(out["kl"]) and out["weight_noise"] is None:
        raise ValueError(
            f"kl={out['kl']!r} needs init_sigma > 0 (the semi-implicit posterior's initial "
            "sigma, e.g. 0.01; weight_noise in configs): a purely implicit q has no density in R^D"
        )
    return out


def build_posterior(
    generator: Generator,
    spec: ParamSpec,
    init_sigma: float | None,
    *,
    sigma_per: SigmaPer,
    log_sigma_scale: float,
    tensor_scale: bool,
    legacy_scale: float,
) -> ImplicitPosterior:
    """The semi-implicit posterior around ``generator``, sigma shared as ``sigma_per`` says.

    Args:
        generator: The generator.
        spec: The generated tensors.
        init_sigma: Sigma's start (None: purely implicit).
        sigma_per: What shares a sigma (``sigma_blocks``).
        log_sigma_scale: The scale ``log sigma`` is stored at (its rate over the default lr).
        tensor_scale: A learned scale per tensor on top.
        legacy_scale: The scale a file without a saved one was stored at.

    Returns:
        The posterior.

    Raises:
        ValueError: ``sigma_per`` other than ``weight`` without ``init_sigma``.
    """
    if sigma_per is not SigmaPer.WEIGHT and init_sigma is None:
        raise ValueError(
            f"sigma_per={sigma_per.value!r} needs init_sigma (a semi-implicit q); with none, or "
            "with generator='kronecker' (no semi-implicit noise), keep the default"
        )
    posterior = ImplicitPosterior(
        generator,
        init_sigma,
        log_sigma_scale=log_sigma_scale,
        sigma_blocks=None if sigma_per is SigmaPer.WEIGHT else sigma_blocks(spec, sigma_per),
        sigma_columns=sigma_per is SigmaPer.FACTORED,
        tensor_sizes=[e.numel for e in spec] if tensor_scale else None,
    )
    posterior.legacy_log_sigma_scale = legacy_scale
    return posterior


def build_posterior_and_kl(
    spec: ParamSpec,
    init: Tensor,
    chosen: Mapping[str, Any],
    *,
    chunk_size: int | None,
    num_chunks: int | str | None,
    embedding_dim: int,
    jacobian_samples: int,
    jacobian_chunks: int | str | None,
    sigma_per: SigmaPer,
) -> tuple[ImplicitPosterior, KLEstimator, float]:
    """BbH's posterior (its generator and sigma), its KL estimator and its default learning
    rate, from the options in force (``in_force``).

    Args:
        spec: The generated tensors.
        init: The net's values of them ``[D]``.
        chosen: The options in force.
        chunk_size: The chunked generator's option.
        num_chunks: The same.
        embedding_dim: The same.
        jacobian_samples: The Jacobian KL's option.
        jacobian_chunks: The same.
        sigma_per: What shares a sigma.

    Returns:
        ``(posterior, kl_estimator, default_lr)``.
    """
    name = parse_enum(GeneratorName, chosen["generator"], "generator")
    noise = parse_enum(NoiseMode, chosen["noise"], "noise")
    hidden, init_sigma = tuple(chosen["hidden"]), chosen["weight_noise"]
    # the layer-wise output layers move each weight by ~hidden[-1] x lr per Adam step
    lr = 1e-4 if name is GeneratorName.LAYERWISE and not is_affine(name, hidden) else 1e-3
    rate = float(chosen["sigma_rate"])
    generator = build_generator(
        name,
        spec,
        init,
        noise_dim=int(chosen["noise_dim"]),
        hidden=hidden,
        noise=noise.value,
        chunk_size=chunk_size,
        num_chunks=num_chunks,
        embedding_dim=embedding_dim,
        noise_mixing=bool(chosen["noise_mixing"]),
        init_sigma=init_sigma,
        log_scale=rate / lr,
    )
    kl = build_kl(
        chosen["kl"],
        generator,
        name,
        noise,
        spec.dim,
        jacobian_samples=jacobian_samples,
        jacobian_chunks=jacobian_chunks,
    )
    # a file written before the stored scale was saved holds log sigma at its own rate, which
    # was 1e-3 unless given: no such file was trained at today's default rate
    legacy_rate = SIGMA_RATE_PAPER if rate == SIGMA_RATE else rate
    posterior = build_posterior(
        generator,
        spec,
        init_sigma,
        sigma_per=sigma_per,
        log_sigma_scale=rate / lr,
        tensor_scale=bool(chosen["sigma_tensor_scale"]),
        legacy_scale=legacy_rate / lr,
    )
    return posterior, kl, lr


#: the posterior's attribute before it was named ``posterior`` (files saved before 0.3)
LEGACY_POSTERIOR_PREFIX = "hypernet."


def _current_key(key: str) -> str:
    """A state-dict key as this version names it (``hypernet.*`` -> ``posterior.*``)."""
    if key.startswith(LEGACY_POSTERIOR_PREFIX):
        return "posterior." + key[len(LEGACY_POSTERIOR_PREFIX) :]
    return key
