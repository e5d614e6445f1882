"""Lightning callbacks: thin glue from Trainer hooks to the pure core, plus logging and state."""

from lightning_papers.callbacks.conv_arithmetic_summary import ConvArithmeticSummary
from lightning_papers.callbacks.curvature_monitor import CurvatureMonitor
from lightning_papers.callbacks.cyclical_lr import CyclicalLR
from lightning_papers.callbacks.loss_landscape_probe import LossLandscapeProbe
from lightning_papers.callbacks.lr_range_finder import LRRangeFinder, LRRangeResult
from lightning_papers.callbacks.super_convergence import SuperConvergence
from lightning_papers.callbacks.tensorboard_layout import TensorBoardLayout
from lightning_papers.schedules import owns_learning_rate

__all__ = [
    "ConvArithmeticSummary",
    "CurvatureMonitor",
    "CyclicalLR",
    "LossLandscapeProbe",
    "LRRangeFinder",
    "LRRangeResult",
    "SuperConvergence",
    "TensorBoardLayout",
    "owns_learning_rate",
]
