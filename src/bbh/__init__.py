"""bbh: Bayes by Hypernet, implicit weight posteriors for any PyTorch ``nn.Module``."""

from bbh.functional import ParamSpec, sampled_forward
from bbh.methods import BayesByHypernet, Method, build
from bbh.priors import GaussianPrior

__all__ = ["BayesByHypernet", "GaussianPrior", "Method", "ParamSpec", "build", "sampled_forward"]
__version__ = "0.1.0"
