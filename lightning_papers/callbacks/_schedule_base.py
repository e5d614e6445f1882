"""What the schedule callbacks (``CyclicalLR``, ``SuperConvergence``) share: one schedule object, driven.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186); Smith & Topin,
Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates, 2017 (arXiv 1708.07120);
Smith, A disciplined approach to neural network hyper-parameters, 2018 (arXiv 1803.09820) for cyclical momentum.

Each subclass builds one schedule object of :mod:`lightning_papers.schedules` (:class:`Cyclical` or
:class:`OneCycle`) when training starts; this base sets every param group's learning rate (and momentum or
Adam's beta1) from it before each optimizer step, logs them and checkpoints the object.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn

from lightning_papers.callbacks._trainer import StateKeyed

__all__ = ["FINDER", "ScheduleCallback", "learning_rates"]

FINDER = "finder"  # the one spelling of "take it from the LR range test in the same Trainer"


def learning_rates(value: Any, name: str, finder_ok: bool = True) -> str | list[float]:
    """``"finder"``, or a positive number or sequence of them as a list of floats.

    Raises:
        ValueError: for anything else, naming ``name`` and the value.
    """
    if isinstance(value, str) and value == FINDER and finder_ok:
        return FINDER
    values = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    ok = isinstance(values, Sequence) and not isinstance(values, str) and len(values) > 0 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf") for v in values)
    if not ok:
        expected = "a positive number, a sequence of them (one per param group)" + (" or 'finder'" if finder_ok else "")
        raise ValueError(f"Expected `{name}` to be {expected}, got {value!r}")
    return [float(v) for v in values]


class ScheduleCallback(StateKeyed):
    """Base of the callbacks that own the learning rate: they set ``owns_learning_rate = True`` so this
    package's modules hand out a bare optimizer (no second scheduler fights them).

    Args:
        cycle_momentum: whether the schedule also drives momentum (SGD) or beta1 (Adam-like). Every param group
            must have one (SGD ``momentum > 0``, or ``betas``): it is never switched on silently.
        log_every_n_steps: write ``schedule/lr`` and ``schedule/momentum`` every this many optimizer steps;
            ``None`` uses the Trainer's.
    """

    owns_learning_rate = True

    def __init__(self, cycle_momentum: bool, log_every_n_steps: int | None) -> None:
        if log_every_n_steps is not None and (isinstance(log_every_n_steps, bool) or
                                              not isinstance(log_every_n_steps, int) or log_every_n_steps < 1):
            raise ValueError(f"Expected `log_every_n_steps` to be a positive integer or None, got "
                             f"{log_every_n_steps!r}")
        self.cycle_momentum = bool(cycle_momentum)
        self.log_every_n_steps = log_every_n_steps
        self.schedule: Any = None  # the schedule object, built at the first training batch (or restored)
        self._last_logged_step = -1

    # -- what subclasses provide --------------------------------------------------------------------------
    def _build(self, trainer: pl.Trainer) -> Any:
        """The schedule object for this run (called at the first training batch, after a range test ran)."""
        raise NotImplementedError

    def _before_step(self, trainer: pl.Trainer, step: int) -> None:
        """Called before the lrs of ``step`` are set."""

    # -- helpers --------------------------------------------------------------------------------------------
    @staticmethod
    def _groups(trainer: pl.Trainer) -> list[dict]:
        """Every param group of every optimizer, in order."""
        return [group for optimizer in trainer.optimizers for group in optimizer.param_groups]

    def _check_length(self, values: Any, trainer: pl.Trainer, name: str) -> None:
        n = len(self._groups(trainer))
        if isinstance(values, list) and len(values) not in (1, n):
            raise ValueError(f"Expected `{name}` to have one value per param group ({n}), got {len(values)}")

    def _finder_bounds(self, trainer: pl.Trainer, strict: bool = False) -> tuple[float, float]:
        """``(base_lr, max_lr)`` from the first ``LRRangeFinder`` of the Trainer (see
        :meth:`LRRangeResult.schedule_bounds`): a curve that cannot be trusted is refused with ``strict``, and
        otherwise handed on with a warning that names this callback and every problem."""
        from lightning_papers.callbacks.lr_range_finder import LRRangeFinder

        finder = next((cb for cb in trainer.callbacks if isinstance(cb, LRRangeFinder)), None)
        if finder is None or finder.result is None:
            raise ValueError("Expected an `LRRangeFinder` that ran before training, in `Trainer(callbacks=...)`, "
                             "for learning rates given as 'finder'")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            bounds = finder.result.schedule_bounds(strict=strict)
        for w in caught:
            rank_zero_warn(f"`{type(self).__name__}` takes its learning rates from the LR range test: {w.message}")
        return bounds

    @staticmethod
    def _needs_finder(trainer: pl.Trainer) -> None:
        from lightning_papers.callbacks.lr_range_finder import LRRangeFinder

        if not any(isinstance(cb, LRRangeFinder) for cb in trainer.callbacks):
            raise ValueError("Expected an `LRRangeFinder` in `Trainer(callbacks=...)` for learning rates given as "
                             "'finder'")

    # -- hooks ----------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.cycle_momentum:
            return
        i = 0
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                if "betas" not in group and not group.get("momentum", 0) > 0:
                    # torch's CyclicLR / OneCycleLR would switch momentum on here (SGD(momentum=0) -> 0.9); we never do
                    raise ValueError(
                        f"Expected an optimizer with momentum for `cycle_momentum=True`, got "
                        f"{type(optimizer).__name__} whose param group {i} has momentum "
                        f"{group.get('momentum', 'absent')} (0 or absent). `{type(self).__name__}` never switches "
                        "momentum on: give the optimizer `momentum>0` (e.g. `SGD(momentum=0.9)`) or pass "
                        "`cycle_momentum=False`."
                    )
                i += 1

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.schedule is None:
            self.schedule = self._build(trainer)
        step = trainer.global_step
        self._before_step(trainer, step)
        groups = self._groups(trainer)
        lrs = self.schedule.lrs(step)
        if len(lrs) == 1:
            lrs = lrs * len(groups)
        elif len(lrs) != len(groups):
            raise ValueError(f"Expected one learning rate per param group ({len(groups)}), got {len(lrs)}")
        momentum = self.schedule.momentum(step) if self.cycle_momentum else None
        for group, lr in zip(groups, lrs):
            group["lr"] = lr
            if momentum is not None:
                if "betas" in group:
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
        if trainer.is_global_zero:  # no collectives on this path: loggers are written on rank 0 only
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    # -- checkpointing --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"schedule": None if self.schedule is None else self.schedule.to_dict()}

