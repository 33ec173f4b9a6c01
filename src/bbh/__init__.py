"""bbh: Bayes by Hypernet, implicit weight posteriors for any PyTorch ``nn.Module``."""

import os

import torch

from bbh import data as data
from bbh import nets as nets
from bbh._version import __version__ as __version__
from bbh.divergences.options import KLOptions
from bbh.functional import ParamSpec, sampled_forward
from bbh.hypernets.options import GeneratorOptions
from bbh.likelihoods import RegressionPrediction
from bbh.methods import BayesByHypernet, Method, build
from bbh.priors import GaussianPrior
from bbh.training import FitResult, finetune, fit

__all__ = [
    "BayesByHypernet",
    "FitResult",
    "GaussianPrior",
    "GeneratorOptions",
    "KLOptions",
    "Method",
    "ParamSpec",
    "RegressionPrediction",
    "build",
    "finetune",
    "fit",
    "load",
    "sampled_forward",
]


def load(run: str | os.PathLike[str], device: str | torch.device | None = None) -> Method:
    """The trained method saved in a run folder (``bbh train``), ready for ``predict``.

    See ``bbh.experiments.runs.load``.

    Args:
        run: The run folder, or its ``model.pt``.
        device: Where the method goes (default: the CPU).

    Returns:
        The trained method, in eval mode.

    Raises:
        bbh.experiments.runs.RunError: The folder holds no trained model (training unfinished
            or never started), or the file is not a bbh model this version reads.

    Example:
        A run trained for two steps (``bbh train CONFIG --out RUN`` does the same from the
        command line):

        >>> import tempfile, torch, bbh
        >>> from bbh.experiments.config import load_config
        >>> from bbh.experiments.train import train_run
        >>> cfg = load_config("demo/map", overrides=["train.epochs=0.1", "net.options.hidden=[8]"])
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = train_run(cfg, f"{tmp}/run", progress=False)
        ...     model = bbh.load(f"{tmp}/run")
        >>> type(model).__name__
        'MAP'
        >>> model.predict(torch.rand(2, 784), num_samples=5).shape
        torch.Size([2, 10])
    """
    from bbh.experiments.runs import load as load_run

    return load_run(run, device)
