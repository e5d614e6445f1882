"""What the schedule callbacks (``CyclicalLR``, ``SuperConvergence``) share: param groups, momentum, logging.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186); Smith & Topin,
Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates, 2017 (arXiv 1708.07120);
Smith, A disciplined approach to neural network hyper-parameters, 2018 (arXiv 1803.09820) for cyclical momentum.

Both callbacks set every param group's learning rate (and, optionally, momentum or Adam's beta1) before each
optimizer step from a pure schedule in :mod:`lightning_papers.schedules`; this base holds the Trainer glue so
that neither copies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

__all__ = ["ScheduleCallback", "as_float_list"]


def as_float_list(value: float | Sequence[float] | None) -> list[float] | None:
    """``None`` stays ``None``; a number becomes a one-element list; a sequence becomes a list of floats."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(v) for v in value]


class ScheduleCallback(Callback):
    """Base of the callbacks that own the learning rate: they set ``owns_learning_rate = True`` so this
    package's modules hand out a bare optimizer (no second scheduler fights them).

    Args:
        cycle_momentum: whether the subclass cycles momentum (SGD) or beta1 (Adam-like).
        log_every_n_steps: write ``schedule/lr`` and ``schedule/momentum`` every this many optimizer steps;
            ``None`` uses the Trainer's.
    """

    owns_learning_rate = True

    def __init__(self, cycle_momentum: bool, log_every_n_steps: int | None) -> None:
        if log_every_n_steps is not None and log_every_n_steps < 1:
            raise ValueError(f"Expected `log_every_n_steps >= 1` or None, got {log_every_n_steps!r}")
        self.cycle_momentum = cycle_momentum
        self.log_every_n_steps = log_every_n_steps
        self._momentum_keys: list[str | None] = []
        self._last_logged_step = -1

    @staticmethod
    def _groups(trainer: pl.Trainer) -> list[dict]:
        """Every param group of every optimizer, in order."""
        return [group for optimizer in trainer.optimizers for group in optimizer.param_groups]

    @staticmethod
    def _expand(values: list[float], n_groups: int, name: str) -> list[float]:
        """One value per param group: a single value is repeated, otherwise the lengths must match."""
        if len(values) == 1:
            return values * n_groups
        if len(values) != n_groups:
            raise ValueError(f"Expected `{name}` to have one value per param group ({n_groups}), got {len(values)}")
        return list(values)

    @staticmethod
    def _finder(trainer: pl.Trainer) -> Any:
        """The first :class:`~lightning_papers.callbacks.LRRangeFinder` attached to ``trainer``, or ``None``."""
        from lightning_papers.callbacks.lr_range_finder import LRRangeFinder

        return next((cb for cb in trainer.callbacks if isinstance(cb, LRRangeFinder)), None)

    def _detect_momentum_keys(self, trainer: pl.Trainer) -> None:
        """Remember per group whether momentum lives in ``betas`` (Adam-like), ``momentum`` (SGD) or nowhere."""
        self._momentum_keys = []
        for i, group in enumerate(self._groups(trainer)):
            key = "betas" if "betas" in group else "momentum" if group.get("momentum", 0) > 0 else None
            if self.cycle_momentum and key is None:
                # torch's CyclicLR / OneCycleLR would switch momentum on here (SGD(momentum=0) -> 0.9); we never do.
                rank_zero_warn(
                    f"`cycle_momentum=True` but param group {i} has no momentum; its momentum stays "
                    f"{group.get('momentum', 'absent')}."
                )
            self._momentum_keys.append(key)

    def _set(self, trainer: pl.Trainer, step: int, lrs: list[float], momentum: float | None) -> None:
        """Write ``lrs`` (one per group) and ``momentum`` (where the group has one) and log them."""
        groups = self._groups(trainer)
        for group, lr, key in zip(groups, lrs, self._momentum_keys):
            group["lr"] = lr
            if momentum is None or key is None:
                continue
            if key == "betas":
                group["betas"] = (momentum, *group["betas"][1:])
            else:
                group["momentum"] = momentum
        self._log(trainer, step, groups)

    def _log(self, trainer: pl.Trainer, step: int, groups: list[dict]) -> None:
        every = self.log_every_n_steps or trainer.log_every_n_steps
        if not trainer.loggers or step == self._last_logged_step or step % every:
            return
        self._last_logged_step = step
        metrics: dict[str, float] = {}
        for i, group in enumerate(groups):
            suffix = f"/pg{i}" if len(groups) > 1 else ""
            metrics[f"schedule/lr{suffix}"] = float(group["lr"])
            if "betas" in group:
                metrics[f"schedule/momentum{suffix}"] = float(group["betas"][0])
            elif "momentum" in group:
                metrics[f"schedule/momentum{suffix}"] = float(group["momentum"])
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
