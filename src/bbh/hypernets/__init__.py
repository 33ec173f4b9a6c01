"""Generators: noise -> flat weights ``[S, D]`` (the implicit posterior of BbH)."""

from __future__ import annotations

from bbh.enums import GeneratorName
from bbh.hypernets.chunked import ChunkedGenerator
from bbh.hypernets.common import NoiseMode
from bbh.hypernets.kronecker import KroneckerGenerator
from bbh.hypernets.layerwise import LayerwiseGenerator
from bbh.hypernets.options import GeneratorOptions

GENERATORS = {
    GeneratorName.LAYERWISE.value: LayerwiseGenerator,
    GeneratorName.CHUNKED.value: ChunkedGenerator,
    GeneratorName.AFFINE.value: LayerwiseGenerator,  # with hidden=(): one linear map per tensor
    GeneratorName.KRONECKER.value: KroneckerGenerator,
}

__all__ = [
    "GENERATORS",
    "ChunkedGenerator",
    "GeneratorName",
    "GeneratorOptions",
    "KroneckerGenerator",
    "LayerwiseGenerator",
    "NoiseMode",
]
