"""Evaluation: result dicts, qualitative studies and figures (PAPER.md §9)."""

from bbh.evaluation.progress import Progress

__all__ = ["Progress"]
