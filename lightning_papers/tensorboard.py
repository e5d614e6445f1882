"""TensorBoard helpers: a custom-scalars layout that groups the package's tags (DESIGN.md's tag table), and
images and meshes that carry a description.

TensorBoard's Scalars tab lists every tag alphabetically, one chart each; the Custom Scalars tab shows
charts that overlay several tags. :data:`LAYOUT` puts train and validation curves on one chart, lr beside
momentum, the range test's raw and smoothed loss together, and the top Hessian eigenvalue on the stability
threshold it is measured against (Cohen et al., arXiv 2103.00065). :class:`TensorBoardLayout` writes it at fit
start into every ``TensorBoardLogger`` of the Trainer (rank zero only), and again at fit end with only the
charts that have data: a chart whose tags the run never logged would be an empty frame.

``SummaryWriter.add_image`` / ``add_mesh`` take no description; :func:`add_image` and :func:`add_mesh` write the
same summaries with one (TensorBoard shows an image tag's description on its card).
"""

from __future__ import annotations

import copy
import glob
import os
import re
from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

__all__ = ["LAYOUT", "TensorBoardLayout", "add_image", "add_layout", "add_mesh", "layout_with_data", "logged_tags"]

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


def layout_with_data(layout: dict[str, dict[str, list[Any]]], tags: Any) -> dict[str, dict[str, list[Any]]]:
    """``layout`` without the charts none of whose regexes matches one of ``tags`` (TensorBoard matches a chart's
    regexes anywhere in a tag, as ``re.search`` does), and without the categories left empty."""
    tags = list(tags)
    kept: dict[str, dict[str, list[Any]]] = {}
    for category, charts in layout.items():
        alive = {chart: copy.deepcopy(spec) for chart, spec in charts.items()
                 if any(re.search(regex, tag) for regex in spec[1] for tag in tags)}
        if alive:
            kept[category] = alive
    return kept


def logged_tags(log_dir: str) -> set[str]:
    """The scalar tags written to the event files directly in ``log_dir`` (not its sub-folders: other runs)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        return set()
    guidance = {"scalars": 1, "tensors": 1, "images": 1, "histograms": 1, "audio": 1,
                "compressedHistograms": 1}
    accumulator = EventAccumulator(log_dir, size_guidance=guidance)
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


class TensorBoardLayout(Callback):
    """Write a custom-scalars layout (default :data:`LAYOUT`) into the Trainer's TensorBoard loggers.

    At fit start the whole layout (charts fill as training logs their tags); at fit end, again, with only the
    charts the run logged a tag for (:func:`layout_with_data`), so no chart is left empty. TensorBoard shows the
    last layout a run wrote, and merges the layouts of the runs it serves.

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

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.flush()
                pruned = layout_with_data(self.layout if self.layout is not None else LAYOUT,
                                          logged_tags(logger.log_dir))
                if pruned:
                    add_layout(logger, pruned)


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


def _file_writer(writer: Any) -> Any:
    # `SummaryWriter._get_file_writer` is what its own add_image / add_mesh write through (it reopens a closed
    # writer); the public methods have no `description`, the summary protos do
    return writer._get_file_writer()


def add_image(writer: Any, tag: str, image: Any, step: int = 0, description: str | None = None,
              dataformats: str = "HWC") -> None:
    """``writer.add_image`` with a ``description`` (Markdown) that TensorBoard shows on the image's card.

    ``image``: uint8 in [0, 255] or float in [0, 1], laid out as ``dataformats`` says."""
    from tensorboard.compat.proto.summary_pb2 import SummaryMetadata
    from torch.utils.tensorboard.summary import image as image_summary

    target = writer.experiment if isinstance(writer, TensorBoardLogger) else writer
    summary = image_summary(tag, np.asarray(image), dataformats=dataformats)  # uint8 as is, floats times 255
    if description:
        # the same image summary add_image writes, with metadata: TensorBoard's loader turns it into the images
        # plugin's form and keeps `summary_description`; naming the plugin keeps EventAccumulator from warning
        for value in summary.value:
            value.metadata.CopyFrom(SummaryMetadata(
                summary_description=description, plugin_data=SummaryMetadata.PluginData(plugin_name="images")))
    _file_writer(target).add_summary(summary, step)


def add_mesh(writer: Any, tag: str, vertices: Any, faces: Any, colors: Any = None, step: int = 0,
             description: str | None = None, config: dict[str, Any] | None = None) -> None:
    """``writer.add_mesh`` of one mesh (vertices (N, 3), faces (F, 3), colors (N, 3) uint8) with a
    ``description`` in the tag's metadata and the viewer's three.js ``config`` (e.g. the camera)."""
    import torch
    from torch.utils.tensorboard.summary import mesh as mesh_summary

    target = writer.experiment if isinstance(writer, TensorBoardLogger) else writer
    summary = mesh_summary(
        tag, torch.as_tensor(np.asarray(vertices), dtype=torch.float32).unsqueeze(0),
        None if colors is None else torch.as_tensor(np.asarray(colors), dtype=torch.uint8).unsqueeze(0),
        torch.as_tensor(np.asarray(faces), dtype=torch.int32).unsqueeze(0), config, description=description)
    _file_writer(target).add_summary(summary, step)
