"""Checkpoint helpers for modules with a frozen loss network (VGG-16) that is rebuilt, never saved."""

from __future__ import annotations

from typing import Any


def drop_keys(checkpoint: dict[str, Any], prefix: str) -> None:
    """Remove every ``state_dict`` entry under ``prefix`` (e.g. ``"loss_fn.vgg."``) from a checkpoint, in place."""
    state = checkpoint["state_dict"]
    for key in [k for k in state if k.startswith(prefix)]:
        del state[key]
