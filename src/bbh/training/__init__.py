"""Training: one loop for every method, its guard, KL schedules, checkpoints and exact resume;
data-parallel over the ranks of a ``torch.distributed`` process group (``distributed``)."""

from bbh.training.checkpoint import (
    CheckpointError,
    TrainState,
    list_checkpoints,
    load_checkpoint,
    load_latest_checkpoint,
    save_checkpoint,
)
from bbh.training.distributed import DDPSettings, DistributedError, process_group_from_env
from bbh.training.finetuning import (
    FINETUNE_STARTS,
    FINETUNE_WARMUP,
    FROZEN_NORMS,
    check_finetune_method,
    finetune,
    frozen_batchnorms,
    start_from,
)
from bbh.training.guards import TrainingDiverged, TrainingGuard, TrainingWarning
from bbh.training.loop import FitHooks, FitResult, TrainingInterrupted, fit, make_optimizer
from bbh.training.sampler import ShuffleSampler
from bbh.training.schedules import annealing, constant, kl_annealing, paper_toy_schedule
from bbh.training.temperature import TemperatureSearch, validation_nll

__all__ = [
    "FINETUNE_STARTS",
    "FINETUNE_WARMUP",
    "FROZEN_NORMS",
    "CheckpointError",
    "DDPSettings",
    "DistributedError",
    "FitHooks",
    "FitResult",
    "ShuffleSampler",
    "TemperatureSearch",
    "TrainState",
    "TrainingDiverged",
    "TrainingGuard",
    "TrainingInterrupted",
    "TrainingWarning",
    "annealing",
    "check_finetune_method",
    "constant",
    "finetune",
    "fit",
    "frozen_batchnorms",
    "kl_annealing",
    "list_checkpoints",
    "load_checkpoint",
    "load_latest_checkpoint",
    "make_optimizer",
    "paper_toy_schedule",
    "process_group_from_env",
    "save_checkpoint",
    "start_from",
    "validation_nll",
]
