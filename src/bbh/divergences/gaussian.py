"""Closed-form KL divergences between diagonal Gaussians (Bayes by Backprop, MNF).

``KL(N(mu, sigma^2) || N(0, s^2)) = sum[ log(s / sigma) + (sigma^2 + mu^2) / (2 s^2) - 1/2 ]``
(Blundell et al. 2015; Kingma and Welling 2014, appendix B).

Defined in ``bbh.priors`` (a core module, below ``bbh.posteriors``, whose mean-field Gaussian uses
them) and named here beside the other KL estimators.
"""

from bbh.priors import gaussian_kl_diag, gaussian_kl_to_isotropic

__all__ = ["gaussian_kl_diag", "gaussian_kl_to_isotropic"]
