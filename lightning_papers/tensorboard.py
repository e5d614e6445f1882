"""TensorBoard helpers: a custom-scalars layout that groups the package's tags (DESIGN.md's tag table), and
images and meshes that carry a description. No Lightning: the callback that writes the layout during a fit is
:class:`lightning_papers.callbacks.TensorBoardLayout`.

TensorBoard's Scalars tab lists every tag alphabetically, one chart each; the Custom Scalars tab shows
charts that overlay several tags. :data:`LAYOUT` puts train and validation curves on one chart, lr beside
momentum, the range test's raw and smoothed loss together, and the top Hessian eigenvalue on the stability
threshold it is measured against (Cohen et al., arXiv 2103.00065). :func:`layout_for_tags` keeps the charts of
it that a run has data for, plus a chart per metric the module logged under any other name (``train_loss`` and
``val_loss`` together, as Lightning's docs spell them): a chart whose tags the run never logged would be an empty
frame.

``SummaryWriter.add_image`` / ``add_mesh`` take no description; :func:`add_image` and :func:`add_mesh` write the
same summaries with one (TensorBoard shows an image tag's description on its card).
"""

from __future__ import annotations

import copy
import glob
import os
import re
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from lightning_papers._helpers import moved

__all__ = ["LAYOUT", "add_image", "add_layout", "add_mesh", "charts_for_tags", "layout_for_tags", "layout_with_data",
           "logged_tags", "metric_name"]

# {category: {chart title: ["Multiline" | "Margin", [tag regexes]]}}, the format of
# ``SummaryWriter.add_custom_scalars``. Lightning appends ``_step`` / ``_epoch`` to a metric logged both
# per step and per epoch, hence the ``.*`` suffixes.
Layout = dict[str, dict[str, list[Any]]]
LAYOUT: Layout = {
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


def add_layout(writer: Any, layout: Layout | None = None) -> None:
    """Write ``layout`` (default :data:`LAYOUT`) to a ``SummaryWriter`` or a ``TensorBoardLogger``.

    Raises:
        TypeError: if ``writer`` has no ``add_custom_scalars`` (directly or as ``.experiment``).
    """
    target = getattr(writer, "experiment", writer)  # a TensorBoardLogger's SummaryWriter
    if not callable(getattr(target, "add_custom_scalars", None)):
        raise TypeError(f"Expected a SummaryWriter or a TensorBoardLogger, got {type(writer).__name__}")
    target.add_custom_scalars(copy.deepcopy(layout if layout is not None else LAYOUT))


def layout_with_data(layout: Layout, tags: Iterable[str]) -> Layout:
    """``layout`` without the charts none of whose regexes matches one of ``tags`` (TensorBoard matches a chart's
    regexes anywhere in a tag, as ``re.search`` does), and without the categories left empty."""
    tags = list(tags)
    kept: Layout = {}
    for category, charts in layout.items():
        alive = {chart: copy.deepcopy(spec) for chart, spec in charts.items()
                 if any(re.search(regex, tag) for regex in spec[1] for tag in tags)}
        if alive:
            kept[category] = alive
    return kept


def logged_tags(log_dir: str) -> set[str]:
    """The scalar tags written to the event files directly in ``log_dir`` (not its sub-folders: other runs)."""
    if not glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        return set()
    accumulator = _scalar_reader(log_dir)
    accumulator.Reload()
    return set(accumulator.Tags()["scalars"])


def _scalar_reader(log_dir: str) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    guidance = {"scalars": 1, "tensors": 1, "images": 1, "histograms": 1, "audio": 1, "compressedHistograms": 1}
    return EventAccumulator(log_dir, size_guidance=guidance)


# The split a metric's name says it belongs to: Lightning's docs write ``train_loss`` / ``val_acc``, ours
# ``train/loss``, TensorBoard's tutorials ``Loss/train``; Lightning adds ``_step`` / ``_epoch``.
_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test",
           "eval": "val"}
_SPLIT_ORDER = ("train", "val", "test")
_PREFIX = re.compile(r"^(?P<split>" + "|".join(_SPLITS) + r")[/_.\-](?P<metric>.+)$", re.IGNORECASE)
_SUFFIX = re.compile(r"^(?P<metric>.+?)[/_.\-](?P<split>" + "|".join(_SPLITS) + r")$", re.IGNORECASE)
# what Lightning and its TensorBoardLogger log besides the module's metrics
_NOT_METRICS = ("epoch", "hp_metric")
AUTO_CATEGORY = "Training"


def metric_name(tag: str) -> tuple[str, str | None]:
    """``(metric, split)`` of a logged scalar tag: ``"val_acc_epoch"`` -> ``("acc", "val")``, ``"train/loss"`` ->
    ``("loss", "train")``, ``"Loss/train"`` -> ``("Loss", "train")``, ``"loss"`` -> ``("loss", None)``."""
    name = re.sub(r"_(step|epoch)$", "", tag)
    for pattern in (_PREFIX, _SUFFIX):
        match = pattern.match(name)
        if match:
            return match["metric"], _SPLITS[match["split"].lower()]
    return name, None


def charts_for_tags(tags: Iterable[str]) -> dict[str, list[Any]]:
    """One chart per metric of ``tags``, its splits overlaid: ``{"loss (train, val)": ["Multiline", [regexes]]}``
    for ``train_loss_step``, ``train_loss_epoch`` and ``val_loss``. Each regex matches exactly one of ``tags``."""
    groups: dict[str, dict[str, Any]] = {}
    for tag in sorted(set(tags)):
        if tag in _NOT_METRICS:
            continue
        metric, split = metric_name(tag)
        group = groups.setdefault(metric.lower(), {"spellings": [], "splits": set(), "tags": []})
        group["spellings"].append(metric)
        group["splits"].add(split)
        group["tags"].append(tag)
    charts: dict[str, list[Any]] = {}
    for group in groups.values():
        splits = [s for s in _SPLIT_ORDER if s in group["splits"]]
        spellings = group["spellings"]
        metric = max(sorted(set(spellings)), key=spellings.count)  # the spelling most of its tags use
        title = f"{metric} ({', '.join(splits)})" if splits else metric
        charts[title] = ["Multiline", [f"^{re.escape(tag)}$" for tag in group["tags"]]]
    return charts


def layout_for_tags(tags: Iterable[str], layout: Layout | None = None, *,
                    auto: bool = True) -> Layout:
    """The layout to show for a run that logged the scalar ``tags``: ``layout`` (default :data:`LAYOUT`) without
    its charts that match none of them (:func:`layout_with_data`), and, with ``auto``, a chart per metric that no
    kept chart shows (:func:`charts_for_tags`, category ``"Training"``): ``train_loss`` and ``val_loss`` are
    charted together whatever their spelling. No chart of the result is empty; no tags, no layout (``{}``)."""
    tags = [t for t in tags if t not in _NOT_METRICS]
    kept = layout_with_data(layout if layout is not None else LAYOUT, tags)
    if not auto:
        return kept
    shown = {tag for charts in kept.values() for _, regexes in charts.values() for tag in tags
             if any(re.search(regex, tag) for regex in regexes)}
    extra = charts_for_tags(t for t in tags if t not in shown)
    if extra:
        category = kept.setdefault(AUTO_CATEGORY, {})
        for title, spec in extra.items():
            category.setdefault(title if title not in category else f"{title} as logged", spec)
        # the module's metrics first, as a user looks for them first
        kept = {AUTO_CATEGORY: kept.pop(AUTO_CATEGORY), **kept}
    return kept


def _file_writer(writer: Any) -> Any:
    # `SummaryWriter._get_file_writer` is what its own add_image / add_mesh write through (it reopens a closed
    # writer); the public methods have no `description`, the summary protos do
    return writer._get_file_writer()


def add_image(writer: Any, tag: str, image: ArrayLike, step: int = 0, description: str | None = None,
              dataformats: str = "HWC") -> None:
    """``writer.add_image`` with a ``description`` (Markdown) that TensorBoard shows on the image's card.

    ``image``: uint8 in [0, 255] or float in [0, 1], laid out as ``dataformats`` says."""
    from tensorboard.compat.proto.summary_pb2 import SummaryMetadata
    from torch.utils.tensorboard.summary import image as image_summary

    target = getattr(writer, "experiment", writer)  # a TensorBoardLogger's SummaryWriter
    summary = image_summary(tag, np.asarray(image), dataformats=dataformats)  # uint8 as is, floats times 255
    if description:
        # the same image summary add_image writes, with metadata: TensorBoard's loader turns it into the images
        # plugin's form and keeps `summary_description`; naming the plugin keeps EventAccumulator from warning
        for value in summary.value:
            value.metadata.CopyFrom(SummaryMetadata(
                summary_description=description, plugin_data=SummaryMetadata.PluginData(plugin_name="images")))
    _file_writer(target).add_summary(summary, step)


def add_mesh(writer: Any, tag: str, vertices: ArrayLike, faces: ArrayLike, colors: ArrayLike | None = None,
             step: int = 0, description: str | None = None, config: dict[str, Any] | None = None) -> None:
    """``writer.add_mesh`` of one mesh (vertices (N, 3), faces (F, 3), colors (N, 3) uint8) with a
    ``description`` in the tag's metadata and the viewer's three.js ``config`` (e.g. the camera)."""
    import torch
    from torch.utils.tensorboard.summary import mesh as mesh_summary

    target = getattr(writer, "experiment", writer)  # a TensorBoardLogger's SummaryWriter
    summary = mesh_summary(
        tag, torch.as_tensor(np.asarray(vertices), dtype=torch.float32).unsqueeze(0),
        None if colors is None else torch.as_tensor(np.asarray(colors), dtype=torch.uint8).unsqueeze(0),
        torch.as_tensor(np.asarray(faces), dtype=torch.int32).unsqueeze(0), config, description=description)
    _file_writer(target).add_summary(summary, step)


__getattr__ = moved(__name__, "lightning_papers.callbacks.tensorboard_layout", ("TensorBoardLayout",))
