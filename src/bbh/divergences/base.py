"""The interface every KL estimator of ``bbh.divergences`` implements."""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from bbh.priors import GaussianPrior


class KLEstimator(nn.Module):
    """Base class of the KL estimators ``KL(q || p)`` that BbH and Bayes by Backprop take.

    A subclass defines ``forward``. With ``uses_posterior = False`` (the default) it is called as
    ``kl(samples [S, D], prior)``, from weight samples only; with ``uses_posterior = True`` as
    ``kl(draw, prior, posterior)``, with the step's ``ImplicitSample`` and the
    ``ImplicitPosterior`` that drew it (the Jacobian KL, the semi-implicit bound). A stateful
    estimator (the discriminator) overrides ``auxiliary_loss``, which the method adds to its
    loss.
    """

    #: Called with the posterior's draw and the posterior, not only weight samples.
    uses_posterior: ClassVar[bool] = False

    def auxiliary_loss(self, samples: Tensor, prior: GaussianPrior) -> Tensor | None:
        """A loss of the estimator's own parameters, added to the method's (default: none).

        Args:
            samples: The step's weight samples ``[S, D]``, detached.
            prior: The prior.

        Returns:
            A scalar tensor, or None where the estimator has nothing to train.
        """
        return None
