"""Every option of ``bbh`` that takes one of a fixed set of names, in one place.

Each is a ``str`` enum: an option accepts the member or its string value (``kl="jacobian"`` or
``kl=KLName.JACOBIAN``), and refuses any other string with the allowed values
(``bbh.options.parse_enum``). The modules that use them import them from here.
"""

from __future__ import annotations

from enum import Enum


class ForwardMode(str, Enum):
    """How ``sampled_forward`` runs S weight samples through a network."""

    AUTO = "auto"  # ``auto_forward_mode``: the faster of the two where it is known
    VMAP = "vmap"  # torch.func.vmap over the sample axis
    LOOP = "loop"  # a Python loop over samples (works for every module)


class GeneratorName(str, Enum):
    """The generators ``BayesByHypernet(generator=...)`` takes."""

    LAYERWISE = "layerwise"  # the paper's: one MLP per tensor
    CHUNKED = "chunked"  # ours: one shared MLP with chunk embeddings
    AFFINE = "affine"  # ours, for small nets: G(z) = A z + b (the layer-wise one, no hidden layer)
    KRONECKER = "kronecker"  # ours: W = M + L_r E L_c^T per layer, a matrix-normal q


class NoiseMode(str, Enum):
    """How noise is shared between generators (pawni/BayesByHypernet: ``--independent_noise``)."""

    ALIGNED = "aligned"  # one z [S, k] shared by every generator (the paper's default)
    INDEPENDENT = "independent"  # one z [S, k] per generator (per tensor, or per chunk)


class KLName(str, Enum):
    """The KL estimators ``BayesByHypernet(kl=...)`` takes (``bbh.divergences``)."""

    NN_FULL = "nn_full"  # the paper's nearest-neighbour estimator over full vectors
    NN_COORDINATE = "nn_coordinate"  # the paper's v2 default: per weight
    ENTROPY = "entropy"  # ours: exact cross term minus a Kozachenko-Leonenko entropy in R^D
    ENTROPY_COORDINATE = "entropy_coordinate"  # ours: per-weight entropies
    DISCRIMINATOR = "discriminator"  # the paper's density-ratio discriminator
    JACOBIAN = "jacobian"  # ours: the entropy linearised through the generator's Jacobian
    SIVI = "sivi"  # the semi-implicit bound of Yin and Zhou (2018), for comparison


class LikelihoodName(str, Enum):
    """The likelihoods a method's ``likelihood=`` names."""

    CATEGORICAL = "categorical"
    GAUSSIAN = "gaussian"


class WeightNoise(str, Enum):
    """How training draws the weights' Gaussian noise: BbH's ``sigma_noise`` and Bayes by
    Backprop's ``weight_noise``."""

    SAMPLE = "sample"  # one weight sample shared by the batch (Blundell et al.; the paper's code)
    LOCAL = "local"  # local reparameterisation trick
    FLIPOUT = "flipout"


class NLLMode(str, Enum):
    """Which weight samples the likelihood sees in one step (pawni/BayesByHypernet: ``-m``)."""

    FIRST = "first"  # the paper's default: sample 0 sees the whole batch
    MEAN = "mean"  # every sample sees the whole batch; mean of the per-sample NLLs
    SPLIT = "split"  # the batch is split between the S samples (B/S examples each)
    PREDICTIVE = "predictive"  # NLL of the S-averaged predictive (the paper's ``-m``)


class Preset(str, Enum):
    """Named option sets: ours (the default) and the paper's."""

    RECOMMENDED = "recommended"
    PAPER = "paper"


class LastLayer(str, Enum):
    """How the net's output layer is treated."""

    SAMPLED = "sampled"  # generated with the other weights (the default)
    EXACT = "exact"  # integrated exactly: its conjugate Gaussian posterior (Gaussian likelihood)


class SigmaPer(str, Enum):
    """How many learned scales the semi-implicit noise ``sigma * eps`` has."""

    WEIGHT = "weight"  # one per generated weight (D)
    UNIT = "unit"  # one per output unit: row of a matrix, output channel of a convolution
    KERNEL = "kernel"  # one per kernel of a convolution (its taps from one input channel to one
    # output channel); per weight for matrices and vectors
    FACTORED = "factored"  # sigma_ij = u_i v_j: one per output unit and one per input


class DataOrder(str, Enum):
    """Whether every member trains on the same batches (``shared``) or on its own."""

    SHARED = "shared"
    SPLIT = "split"


class MemberInit(str, Enum):
    """How the members start: reset (their own initialisation) or copied from the given net."""

    RESET = "reset"  # each member calls reset_parameters() on its layers: its own initialisation
    COPY = "copy"  # every member starts from the given net's values


class Vectorize(str, Enum):
    """How the members run: vectorised with ``torch.func.vmap``, in a loop, or chosen (``auto``)."""

    AUTO = "auto"
    VMAP = "vmap"
    LOOP = "loop"


class WeightDecay(str, Enum):
    """The regulariser ``R(w)`` (see the module docstring)."""

    GAUSSIAN = "gaussian"
    PAPER = "paper"
    NONE = "none"


class ConfidenceScore(str, Enum):
    """What ranks the inputs from most to least confident.

    ``max_probability``: the predictive ``max_c p_c``; ``entropy``: minus the predictive entropy
    ``-H[p]`` (so lower entropy is more confident).
    """

    MAX_PROBABILITY = "max_probability"
    ENTROPY = "entropy"


class EntropyForm(str, Enum):
    """How the predictive entropy is computed.

    ``clean``: ``-sum_c p_c log p_c`` with ``0 log 0 = 0`` (from logits via a stable log-mean-exp).
    ``paper``: ``-sum_c p_c log max(p_c, 1e-5)``, the authors' form (``utils.calc_entropy``); it
    is slightly lower than the clean form when some probability is below 1e-5.
    """

    CLEAN = "clean"
    PAPER = "paper"


class Norm(str, Enum):
    """The normalisation layer of a ResNet."""

    BATCH = "batch"
    INSTANCE = "instance"
    NONE = "none"


class Block(str, Enum):
    """A ResNet's residual block."""

    BASIC = "basic"
    BOTTLENECK = "bottleneck"


class Backend(str, Enum):
    """The ``torch.distributed`` backend: ``auto`` picks ``nccl`` on CUDA, ``gloo`` otherwise."""

    AUTO = "auto"
    GLOO = "gloo"
    NCCL = "nccl"


class AttackName(str, Enum):
    """``fgsm_paper``: averaged signs of R single-draw gradients, unclipped (the paper's).
    ``fgsm``/``pgd``: on the expected predictive (EOT), clipped to the input range."""

    FGSM_PAPER = "fgsm_paper"
    FGSM = "fgsm"
    PGD = "pgd"


__all__ = [
    "AttackName",
    "Backend",
    "Block",
    "ConfidenceScore",
    "DataOrder",
    "EntropyForm",
    "ForwardMode",
    "GeneratorName",
    "KLName",
    "LastLayer",
    "LikelihoodName",
    "MemberInit",
    "NLLMode",
    "NoiseMode",
    "Norm",
    "Preset",
    "SigmaPer",
    "Vectorize",
    "WeightDecay",
    "WeightNoise",
]
