"""Explicit weight posteriors used by the baselines (mean-field Gaussian, MNF layers and flows)."""

from bbh.posteriors.gaussian import MeanFieldGaussian
from bbh.posteriors.layers import deterministic_predicate, select_layers

__all__ = ["MeanFieldGaussian", "deterministic_predicate", "select_layers"]
