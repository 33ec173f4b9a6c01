"""Primary networks: plain ``nn.Module``s with no Bayesian machinery."""

from bbh.nets.mlp import MLP, toy_regression_net

__all__ = ["MLP", "toy_regression_net"]
