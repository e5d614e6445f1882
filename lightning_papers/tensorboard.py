"""TensorBoard helpers: a custom-scalars layout that groups the package's tags (DESIGN.md's tag table).

TensorBoard's Scalars tab lists every tag alphabetically, one chart each; the Custom Scalars tab shows
charts that overlay several tags. :data:`LAYOUT` puts train and validation curves on one chart, lr beside
momentum, the range test's raw and smoothed loss together, and the top Hessian eigenvalue on the stability
threshold it is measured against (Cohen et al., arXiv 2103.00065). :class:`TensorBoardLayout` writes it at fit
start into every ``TensorBoardLogger`` of the Trainer (rank zero only); tags that a run never logs simply
leave their chart empty.
"""

from __future__ import annotations

import copy
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

__all__ = ["LAYOUT", "TensorBoardLayout", "add_layout"]

# {category: {chart title: ["Multiline" | "Margin", [tag regexes]]}}, the format of
# ``SummaryWriter.add_custom_scalars``. Lightning appends ``_step`` / ``_epoch`` to a metric logged both
# per step and per epoch, hence the ``.*`` suffixes.
LAYOUT: dict[str, dict[str, list[Any]]] = {
    "Training": {
        "loss (train, val)": ["Multiline", [r"train/loss.*", r"val/loss.*"]],
        "accuracy (train, val)": ["Multiline", [r"train/acc.*", r"val/acc.*"]],
    },
    "Schedule": {
        "learning rate": ["Multiline", [r"schedule/lr.*"]],
        "momentum": ["Multiline", [r"schedule/momentum.*"]],
    },
    "LR range test": {
        "loss (raw, smoothed)": ["Multiline", [r"lr_range/loss.*"]],
        "learning rate": ["Multiline", [r"lr_range/lr.*"]],
        "validation accuracy": ["Multiline", [r"lr_range/val_acc.*"]],
    },
    "Loss landscape": {
        "sharpness": ["Multiline", [r"landscape/sharpness/.*"]],
        "init -> final interpolation": ["Multiline", [r"landscape/interpolation/.*"]],
    },
    "Curvature": {
        "top Hessian eigenvalue vs (2 + 2 momentum) / lr": ["Multiline", [r"curvature/top_eigenvalue",
                                                                          r"curvature/2_over_lr.*"]],
        "Hessian trace": ["Multiline", [r"curvature/trace"]],
    },
    "Perceptual losses": {
        "style transfer losses": ["Multiline", [r"style/.*"]],
        "super-resolution quality": ["Multiline", [r"sr/.*"]],
    },
}


def add_layout(writer: Any, layout: dict[str, dict[str, list[Any]]] | None = None) -> None:
    """Write ``layout`` (default :data:`LAYOUT`) to a ``SummaryWriter`` or a ``TensorBoardLogger``.

    Raises:
        TypeError: if ``writer`` has no ``add_custom_scalars`` (directly or as ``.experiment``).
    """
    target = writer.experiment if isinstance(writer, TensorBoardLogger) else writer
    if not callable(getattr(target, "add_custom_scalars", None)):
        raise TypeError(f"Expected a SummaryWriter or a TensorBoardLogger, got {type(writer).__name__}")
    target.add_custom_scalars(copy.deepcopy(layout if layout is not None else LAYOUT))


class TensorBoardLayout(Callback):
    """Write a custom-scalars layout (default :data:`LAYOUT`) into the Trainer's TensorBoard loggers.

    Args:
        layout: ``{category: {chart: ["Multiline", [tag regex, ...]]}}``; ``None`` uses :data:`LAYOUT`.

    Raises:
        ValueError: if ``layout`` is not in that form.
    """

    def __init__(self, layout: dict[str, dict[str, list[Any]]] | None = None) -> None:
        if layout is not None:
            _check_layout(layout)
        self.layout = layout

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                add_layout(logger, self.layout)


def _check_layout(layout: Any) -> None:
    expected = 'Expected `layout` as {category: {chart: ["Multiline" or "Margin", [tag regex, ...]]}}'
    if not isinstance(layout, dict) or not layout:
        raise ValueError(f"{expected}, got {layout!r}")
    for category, charts in layout.items():
        if not isinstance(category, str) or not isinstance(charts, dict) or not charts:
            raise ValueError(f"{expected}; category {category!r} maps to {charts!r}")
        for chart, spec in charts.items():
            ok = (isinstance(chart, str) and isinstance(spec, (list, tuple)) and len(spec) == 2
                  and spec[0] in ("Multiline", "Margin") and isinstance(spec[1], (list, tuple))
                  and all(isinstance(t, str) for t in spec[1]))
            if not ok:
                raise ValueError(f"{expected}; chart {chart!r} in {category!r} is {spec!r}")
