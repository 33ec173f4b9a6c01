"""Methods behind one interface (``bbh.methods.base.Method``) and the registry that builds them.

``bbh.methods.build(name, net, **options)`` wraps any unmodified ``nn.Module``.
"""

from bbh.methods.base import Method
from bbh.methods.bbh import BayesByHypernet, NLLMode
from bbh.methods.registry import METHODS, available, build, register

register("bbh", BayesByHypernet)

# --- baselines (issue 3) ---
from bbh.methods.bbb import BayesByBackprop  # noqa: E402
from bbh.methods.ensemble import DeepEnsemble  # noqa: E402
from bbh.methods.map import MAP  # noqa: E402
from bbh.methods.mc_dropout import MCDropout  # noqa: E402
from bbh.methods.mnf import MNF  # noqa: E402

register("map", MAP)
register("mc_dropout", MCDropout)
register("ensemble", DeepEnsemble)
register("bbb", BayesByBackprop)
register("mnf", MNF)
# --- end baselines ---

__all__ = [
    "MAP",
    "METHODS",
    "MNF",
    "BayesByBackprop",
    "BayesByHypernet",
    "DeepEnsemble",
    "MCDropout",
    "Method",
    "NLLMode",
    "available",
    "build",
    "register",
]
