"""``KLOptions``: which estimator gives BbH's ``KL(q || p)`` from weight samples, and its options.

``BayesByHypernet(net, kl=KLOptions(...))`` takes one; a name (``kl="nn_full"``) is
``KLOptions(name="nn_full")``. The options are checked here when the object is made. Run
configs and records write them flat (``kl``, ``jacobian_samples``, ``jacobian_chunks``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bbh.enums import KLName
from bbh.options import AUTO, NestedOptions, parse_enum


@dataclass(frozen=True)
class KLOptions(NestedOptions):
    """The KL estimator of BbH's ELBO and its options, checked when made.

    Args:
        name: A ``KLName`` (``bbh.divergences``): ``jacobian`` (ours, the default; exact for
            the affine generator), ``sivi``, ``nn_full`` (the paper's, arXiv 1711.01297 Sec. 3.1),
            ``nn_coordinate``, ``entropy``, ``entropy_coordinate`` or ``discriminator``.
        jacobian_samples: ``jacobian``: noise draws per step for the log-determinant.
        jacobian_chunks: ``jacobian`` with the chunked generator and aligned noise: the Gram
            from this many random chunks per step (biases the KL up); None: all; ``"auto"``: a
            quarter of them, at least 4, on nets from ``AUTO_JACOBIAN_CHUNKS_FROM`` generated
            weights on (``bbh.methods.bbh_options``).

    Raises:
        ValueError: An unknown name, a value out of range, or a Jacobian option with another
            estimator.

    Example:
        >>> from bbh.divergences.options import KLOptions
        >>> KLOptions("jacobian", jacobian_samples=2).flat()
        {'kl': 'jacobian', 'jacobian_samples': 2, 'jacobian_chunks': 'auto'}
    """

    name: KLName | str = KLName.JACOBIAN
    jacobian_samples: int = 1
    jacobian_chunks: int | str | None = "auto"

    #: the flat names run configs and records give each field
    LABEL: ClassVar[str] = "kl"
    FLAT_NAMES: ClassVar[dict[str, str]] = {
        "name": "kl",
        "jacobian_samples": "jacobian_samples",
        "jacobian_chunks": "jacobian_chunks",
    }

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", parse_enum(KLName, self.name, "kl estimator"))
        samples, chunks = self.jacobian_samples, self.jacobian_chunks
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"KLOptions.jacobian_samples must be an int >= 1, got {samples!r}")
        bad_int = isinstance(chunks, bool) or (isinstance(chunks, int) and chunks < 1)
        if bad_int or not (chunks is None or chunks == AUTO or isinstance(chunks, int)):
            raise ValueError(f"jacobian_chunks must be an int >= 1, None or 'auto', got {chunks!r}")
        if self.name is not KLName.JACOBIAN and (samples != 1 or isinstance(chunks, int)):
            raise ValueError("jacobian_samples and jacobian_chunks apply only to kl='jacobian'")
