"""What the package's callbacks share."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["owns_learning_rate"]


def owns_learning_rate(callbacks: Iterable[Any]) -> bool:
    """True when one of ``callbacks`` drives the learning rate while training runs.

    Schedule callbacks (``CyclicalLR``, ``SuperConvergence``) set the class attribute
    ``owns_learning_rate = True``; ``ImageClassifier.configure_optimizers`` then returns a bare optimizer
    so no second scheduler fights them (DESIGN.md).
    """
    return any(getattr(cb, "owns_learning_rate", False) for cb in callbacks)
