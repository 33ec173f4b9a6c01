"""bbh: Bayes by Hypernet, implicit weight posteriors for any PyTorch ``nn.Module``."""

import os

import torch

from bbh import data as data
from bbh import nets as nets
from bbh._version import __version__ as __version__
from bbh.functional import ParamSpec, sampled_forward
from bbh.likelihoods import RegressionPrediction
from bbh.methods import BayesByHypernet, Method, build
from bbh.priors import GaussianPrior
from bbh.training import FitResult, fit

__all__ = [
    "BayesByHypernet",
    "FitResult",
    "GaussianPrior",
    "Method",
    "ParamSpec",
    "RegressionPrediction",
    "build",
    "fit",
    "load",
    "sampled_forward",
]


def load(run: str | os.PathLike[str], device: str | torch.device | None = None) -> Method:
    """The trained method saved in a run folder (``bbh train``), ready for ``predict``.

    ``device`` (default: the CPU) is where it goes. See ``bbh.experiments.runs.load``.
    """
    from bbh.experiments.runs import load as load_run

    return load_run(run, device)
