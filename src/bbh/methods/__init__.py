"""Methods behind one interface (``bbh.methods.base.Method``) and the registry that builds them.

``bbh.methods.build(name, net, **options)`` wraps any unmodified ``nn.Module``.
"""

from bbh.methods.base import Method
from bbh.methods.bbh import BayesByHypernet, NLLMode
from bbh.methods.registry import METHODS, available, build, register

register("bbh", BayesByHypernet)

# --- baselines (issue 3) ---
# --- end baselines ---

__all__ = ["METHODS", "BayesByHypernet", "Method", "NLLMode", "available", "build", "register"]
