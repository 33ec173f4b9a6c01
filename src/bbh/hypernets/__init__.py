"""Generators: noise -> flat weights ``[S, D]`` (the implicit posterior of BbH)."""

from __future__ import annotations

from enum import Enum

from bbh.hypernets.chunked import ChunkedGenerator
from bbh.hypernets.common import NoiseMode
from bbh.hypernets.layerwise import LayerwiseGenerator


class GeneratorName(str, Enum):
    """The generators ``BayesByHypernet(generator=...)`` takes."""

    LAYERWISE = "layerwise"  # the paper's: one MLP per tensor
    CHUNKED = "chunked"  # ours: one shared MLP with chunk embeddings


GENERATORS = {
    GeneratorName.LAYERWISE.value: LayerwiseGenerator,
    GeneratorName.CHUNKED.value: ChunkedGenerator,
}

__all__ = ["GENERATORS", "ChunkedGenerator", "GeneratorName", "LayerwiseGenerator", "NoiseMode"]
