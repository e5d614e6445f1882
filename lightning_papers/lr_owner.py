"""Who owns the learning rate: a schedule callback, or the module's own scheduler.

Smith's cyclical (arXiv 1506.01186) and 1cycle (arXiv 1708.07120) schedules are callbacks here; a module that
also hands Lightning a scheduler would have two schedules fighting over one learning rate. Schedule callbacks
set the class attribute ``owns_learning_rate = True``; modules ask :func:`owns_learning_rate` before they
build a scheduler. This file sits below both ``callbacks/`` and ``modules/`` so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["owns_learning_rate"]


def owns_learning_rate(callbacks: Iterable[Any]) -> bool:
    """True when one of ``callbacks`` drives the learning rate while training runs.

    Schedule callbacks (``CyclicalLR``, ``SuperConvergence``) set the class attribute
    ``owns_learning_rate = True``; ``ImageClassifier.configure_optimizers`` then returns a bare optimizer
    so no second scheduler fights them (DESIGN.md).

    Examples:
        >>> class Schedule:
        ...     owns_learning_rate = True
        >>> owns_learning_rate([object(), Schedule()])
        True
    """
    return any(getattr(cb, "owns_learning_rate", False) for cb in callbacks)
