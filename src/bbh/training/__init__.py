"""Training: one loop for every method, its guard, KL schedules."""

from bbh.training.guards import TrainingDiverged, TrainingGuard, TrainingWarning
from bbh.training.loop import FitResult, fit, make_optimizer
from bbh.training.schedules import annealing, constant, kl_annealing, paper_toy_schedule

__all__ = [
    "FitResult",
    "TrainingDiverged",
    "TrainingGuard",
    "TrainingWarning",
    "annealing",
    "constant",
    "fit",
    "kl_annealing",
    "make_optimizer",
    "paper_toy_schedule",
]
