"""The names the schedule callbacks and the range test import from here, until they import them from the modules
that now hold them: :mod:`~lightning_papers.callbacks.evaluation`, :mod:`~lightning_papers.callbacks.reporting`
and :mod:`~lightning_papers.callbacks._steps`. New code imports from those."""

from lightning_papers.callbacks._steps import (
    StateKeyed,
    TrainingSnapshot,
    cycle_batches,
    optimizer_index,
    planned_optimizer_steps,
    silenced_callbacks,
    training_step,
)
from lightning_papers.callbacks.evaluation import evaluation_batches
from lightning_papers.callbacks.reporting import progress_bar, report

__all__ = ["StateKeyed", "TrainingSnapshot", "cycle_batches", "evaluation_batches", "optimizer_index",
           "planned_optimizer_steps", "progress_bar", "report", "silenced_callbacks", "training_step"]
