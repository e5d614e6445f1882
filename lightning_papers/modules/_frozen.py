"""Helpers for modules: checkpoints of a frozen loss network (VGG-16) that is rebuilt, never saved; the Trainer test;
the images of a batch; sample grids to TensorBoard."""

from __future__ import annotations

from typing import Any

import torch


def drop_keys(checkpoint: dict[str, Any], prefix: str) -> None:
    """Remove every ``state_dict`` entry under ``prefix`` (e.g. ``"loss_fn.vgg."``) from a checkpoint, in place."""
    state = checkpoint["state_dict"]
    for key in [k for k in state if k.startswith(prefix)]:
        del state[key]


def under_trainer(module: Any) -> bool:
    """Whether ``module`` (a LightningModule) is attached to a Trainer: ``configure_model`` also runs from
    ``load_from_checkpoint``, where the loss network is not needed. Lightning's public ``trainer`` property
    raises when there is none."""
    try:
        return module.trainer is not None
    except RuntimeError:
        return False


def images_of(batch: Any) -> torch.Tensor:
    """The images of a batch: ``batch`` itself, or its first element for an ``(images, ...)`` pair."""
    return batch[0] if isinstance(batch, (list, tuple)) else batch


def log_grid(module: Any, tag: str, grid: torch.Tensor, description: str | None = None) -> None:
    """Write an image ``grid`` (C, H, W in [0, 1]) to every ``TensorBoardLogger`` of ``module``'s Trainer, rank zero
    only, at the current step; ``description`` is shown on the image's TensorBoard card."""
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_papers.tensorboard import add_image

    if not module.trainer.is_global_zero:
        return
    for logger in module.trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            add_image(logger, tag, grid.numpy(), module.global_step, description=description, dataformats="CHW")
