"""bbh: Bayes by Hypernet, implicit weight posteriors for any PyTorch ``nn.Module``."""

from bbh.functional import ParamSpec, sampled_forward

__all__ = ["ParamSpec", "sampled_forward"]
__version__ = "0.1.0"
