"""Helpers for modules: checkpoints of a frozen loss network (VGG-16) that is rebuilt, never saved; the Trainer test."""

from __future__ import annotations

from typing import Any


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
