"""``GeneratorOptions``: which generator maps BbH's noise to weights, and its options.

The generator is the hypernetwork of Bayes by Hypernet (Pawlowski et al., arXiv 1711.01297,
Sec. 3): ``w = G(z)``. ``BayesByHypernet(net, generator=GeneratorOptions(...))`` takes one;
a name (``generator="chunked"``) is ``GeneratorOptions(name="chunked")``. Each option is checked
here, where it belongs, when the object is made; what depends on the net's size (``"auto"``)
is resolved by ``bbh.methods.bbh_options.resolve_auto``.

Run configs and records write these options flat, under the names they have always had
(``FLAT_NAMES``: ``generator``, ``hidden``, ``noise_dim``, ``noise``, ...); ``flat`` and
``from_flat`` convert, so a config written either way has the same hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from bbh.enums import GeneratorName, NoiseMode
from bbh.options import AUTO, NestedOptions, parse_enum


def _int_at_least_one(value: object, name: str, *, allow: tuple[object, ...] = ()) -> None:
    if value in allow and not isinstance(value, bool):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = "".join(f" or {a!r}" for a in allow)
        raise ValueError(f"GeneratorOptions.{name} must be an int >= 1{extra}, got {value!r}")


@dataclass(frozen=True)
class GeneratorOptions(NestedOptions):
    """The generator of BbH's posterior and its options, checked when made.

    Args:
        name: ``layerwise`` (the paper's: one MLP per weight tensor), ``chunked`` (one MLP
            shared by chunks of the flat weight vector, each with a learned embedding) or
            ``affine`` (``G(z) = A z + b``, a Gaussian ``N(b, A A^T)``) or ``kronecker`` (per
            layer ``W = M + L_r E L_c^T``, a matrix-normal Gaussian with full row and column
            covariances and an exact KL: ``bbh.hypernets.kronecker``); ``"auto"``: ``affine``
            on a net of at most ``bbh_options.SMALL_NET_WEIGHTS`` generated weights unless
            ``hidden``, ``noise_dim``, ``chunk_size`` or ``num_chunks`` is given, else
            ``chunked``.
        hidden: The generator's hidden sizes; ``"auto"``: ``(64, 16)``, none for ``affine``
            and ``kronecker``.
        noise_dim: k, the size of the noise z; ``"auto"``: 8, or ``min(D, 512)`` for
            ``affine``; ``kronecker``'s noise is D (``"auto"`` only).
        noise_sharing: ``aligned`` (one z for every tensor's generator, the paper's default) or
            ``independent`` (a z per tensor).
        chunk_size: The chunked generator's weights per chunk (default: from ``num_chunks``).
        num_chunks: The chunked generator's number of chunks; None: ``hidden[-1]``;
            ``"auto"``: the count with the fewest parameters (``bbh_options.auto_num_chunks``).
        embedding_dim: The size of each chunk's learned embedding (chunked only).
        noise_mixing: The chunked generator's linear path from z into each chunk (a dense
            low-rank covariance); other generators leave it out.

    Raises:
        ValueError: An option out of range, or one that the named generator does not have
            (``chunk_size``/``num_chunks`` without ``chunked``, ``hidden`` with ``affine``).

    Example:
        >>> import bbh
        >>> from bbh.hypernets.options import GeneratorOptions
        >>> from bbh.nets import MLP
        >>> gen = GeneratorOptions("chunked", hidden=(32, 16), num_chunks="auto")
        >>> model = bbh.BayesByHypernet(MLP(4, [16], 3), generator=gen, temperature=1.0)
        >>> model.resolved_options["generator"], model.resolved_options["hidden"]
        ('chunked', (32, 16))
    """

    name: GeneratorName | str = "auto"
    hidden: Sequence[int] | str = "auto"
    noise_dim: int | str = "auto"
    noise_sharing: NoiseMode | str = NoiseMode.ALIGNED
    chunk_size: int | None = None
    num_chunks: int | str | None = None
    embedding_dim: int = 64
    noise_mixing: bool = True

    #: the flat names run configs and records give each field (``flat``, ``from_flat``)
    LABEL: ClassVar[str] = "generator"
    FLAT_NAMES: ClassVar[dict[str, str]] = {
        "name": "generator",
        "hidden": "hidden",
        "noise_dim": "noise_dim",
        "noise_sharing": "noise",
        "chunk_size": "chunk_size",
        "num_chunks": "num_chunks",
        "embedding_dim": "embedding_dim",
        "noise_mixing": "noise_mixing",
    }

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: the normalised values are set once, here
        if self.name != AUTO:
            set_(self, "name", parse_enum(GeneratorName, self.name, "generator"))
        set_(self, "noise_sharing", parse_enum(NoiseMode, self.noise_sharing, "noise_sharing"))
        if self.hidden != AUTO:
            if isinstance(self.hidden, str) or not isinstance(self.hidden, Sequence):
                raise ValueError(
                    f"GeneratorOptions.hidden must be a sequence of ints or 'auto', "
                    f"got {self.hidden!r}"
                )
            for width in self.hidden:
                _int_at_least_one(width, "hidden's sizes")
            set_(self, "hidden", tuple(int(h) for h in self.hidden))
        _int_at_least_one(self.noise_dim, "noise_dim", allow=(AUTO,))
        _int_at_least_one(self.chunk_size, "chunk_size", allow=(None,))
        _int_at_least_one(self.num_chunks, "num_chunks", allow=(None, AUTO))
        _int_at_least_one(self.embedding_dim, "embedding_dim")
        if not isinstance(self.noise_mixing, bool):
            raise ValueError(
                f"GeneratorOptions.noise_mixing must be a bool, got {self.noise_mixing!r}"
            )
        named = self.name if isinstance(self.name, GeneratorName) else None
        if named not in (None, GeneratorName.CHUNKED) and (
            self.chunk_size is not None or self.num_chunks is not None
        ):
            raise ValueError("chunk_size and num_chunks apply only to generator='chunked'")
        linear = (GeneratorName.AFFINE, GeneratorName.KRONECKER)
        if named in linear and self.hidden not in (AUTO, ()):
            raise ValueError(
                f"generator={named.value!r} has no hidden layers; got hidden={self.hidden!r}"
            )
        if named is GeneratorName.KRONECKER and self.noise_dim != AUTO:
            raise ValueError(
                "generator='kronecker' draws one noise value per weight (its noise size is D); "
                f"got noise_dim={self.noise_dim!r}"
            )
