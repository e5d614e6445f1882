"""What the schedule callbacks (``CyclicalLR``, ``SuperConvergence``) share: one schedule object, driven.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186); Smith & Topin,
Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates, 2017 (arXiv 1708.07120);
Smith, A disciplined approach to neural network hyper-parameters, 2018 (arXiv 1803.09820) for cyclical momentum.

Each subclass builds one schedule object of :mod:`lightning_papers.schedules` (:class:`Cyclical` or
:class:`OneCycle`) when training starts; this base hands it to the core's
:func:`~lightning_papers.schedules.write_groups` before each optimizer step (learning rate, and momentum or Adam's
beta1), logs the values and checkpoints the object.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_papers._validation import flag, optional_positive_int, positive_real
from lightning_papers.callbacks._trainer import StateKeyed, optimizer_index
from lightning_papers.schedules import Schedule, _per_group, param_groups, read_lrs, read_momenta, write_groups

if TYPE_CHECKING:
    from lightning_papers.callbacks.lr_range_finder import LRRangeFinder

__all__ = ["FINDER", "ScheduleCallback", "learning_rates", "positive_rates"]

FINDER = "finder"  # the one spelling of "take it from the LR range test in the same Trainer"


def positive_rates(value: Any, name: str, finder_ok: bool = False) -> list[float]:
    """A positive number or a non-empty sequence of them, as a list of floats (else ``ValueError``)."""
    try:
        return [positive_real(name, v) for v in _per_group(value, name)]
    except ValueError:
        expected = "a positive number, a sequence of them (one per param group)" + (" or 'finder'" if finder_ok else "")
        raise ValueError(f"Expected `{name}` to be {expected}, got {value!r}") from None


def learning_rates(value: Any, name: str) -> str | list[float]:
    """``"finder"``, or :func:`positive_rates`."""
    return FINDER if isinstance(value, str) and value == FINDER else positive_rates(value, name, finder_ok=True)


class ScheduleCallback(StateKeyed):
    """Base of the callbacks that own the learning rate (``owns_learning_rate = True``: this package's modules
    then hand out a bare optimizer). A step is one ``optimizer.step()`` of one optimizer: each optimizer follows
    the schedule over its own (checkpointed) count of steps, so a GAN's two optimizers both run the whole schedule
    and gradient accumulation changes the rate only between steps. The arguments are the subclasses'.
    """

    owns_learning_rate = True
    _rate_fields: tuple[str, ...] = ()  # the arguments that give learning rates: per param group, or "finder"

    def __init__(self, cycle_momentum: bool | None, log_every_n_steps: int | None,
                 replace_schedulers: bool = False) -> None:
        if cycle_momentum is not None and not isinstance(cycle_momentum, bool):
            raise ValueError(f"Expected `cycle_momentum` to be None, True or False, got {cycle_momentum!r}")
        self.cycle_momentum = cycle_momentum
        self.log_every_n_steps = optional_positive_int("log_every_n_steps", log_every_n_steps)
        self.replace_schedulers = flag("replace_schedulers", replace_schedulers)
        self.schedule: Schedule | None = None  # built at the first training batch (or restored)
        self.optimizer_steps: list[int] | None = None  # steps each optimizer has taken (set at train start)
        self._cycled: list[bool] | None = None  # per param group: is its momentum cycled
        self._last_logged_step = -1

    # -- what subclasses provide --------------------------------------------------------------------------
    def _build(self, trainer: pl.Trainer) -> Schedule:
        """The schedule object for this run (called at the first training batch, after a range test ran)."""
        raise NotImplementedError

    def _before_step(self, trainer: pl.Trainer, step: int) -> None:
        """Called before the lrs of ``step`` are set."""

    # -- helpers --------------------------------------------------------------------------------------------
    def _check_rates(self, trainer: pl.Trainer) -> None:
        """Rates given as ``"finder"`` need an ``LRRangeFinder``; lists, one value or one per param group."""
        n = len(param_groups(trainer.optimizers))
        for name in self._rate_fields:
            values = getattr(self, name)
            if values == FINDER:
                self._finder(trainer)
            elif len(values) not in (1, n):
                raise ValueError(f"Expected `{name}` to have one value per param group ({n}), got {len(values)}")

    def _finder_bounds(self, trainer: pl.Trainer, fallback: bool = False) -> tuple[float, float] | None:
        """``(base_lr, max_lr)`` from the Trainer's ``LRRangeFinder`` (:meth:`LRRangeResult.schedule_bounds`). A
        curve that cannot be trusted never drives a schedule: ``None`` and one warning with ``fallback`` (the user
        gave numbers to fall back on), else a one-line ``ValueError`` naming this callback."""
        me, result = type(self).__name__, self._finder(trainer, ran=True).result
        assert result is not None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                bounds = result.schedule_bounds(strict=True)
        except ValueError as err:
            if not fallback:
                raise ValueError(f"{me}: {err}") from None
            why = result.verdict() if result.problems else "no suggestion"
            rank_zero_warn(f"{me}: the LR range test is refused ({why}); using the given fallback learning rates")
            return None
        for w in caught:
            rank_zero_warn(f"{me}: {w.message}")
        return bounds

    @staticmethod
    def _finder(trainer: pl.Trainer, ran: bool = False) -> LRRangeFinder:
        """The first ``LRRangeFinder`` of the Trainer (with ``ran``, one that has a result); ``ValueError`` if none."""
        from lightning_papers.callbacks.lr_range_finder import LRRangeFinder

        callbacks = trainer.callbacks  # type: ignore[attr-defined]  # Lightning sets it, undeclared
        finder = next((cb for cb in callbacks if isinstance(cb, LRRangeFinder)), None)
        if finder is None or (ran and finder.result is None):
            raise ValueError(f"Expected an `LRRangeFinder` {'that ran before training, ' if ran else ''}in "
                             "`Trainer(callbacks=...)` for learning rates given as 'finder'")
        return finder

    def lr_at(self, step: int) -> list[float]:
        """Learning rate of every param group at optimizer step ``step`` (after the first training batch)."""
        assert self.schedule is not None, "built at the first training batch"
        return self.schedule.lrs(step)

    def momentum_at(self, step: int) -> float:
        """Momentum (or beta1) at optimizer step ``step``."""
        assert self.schedule is not None, "built at the first training batch"
        return self.schedule.momentum(step)

    # -- hooks ----------------------------------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.optimizer_steps = None  # a checkpoint (loaded after this) or the train start sets them

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check_rates(trainer)
        self._take_over_schedulers(trainer)
        self._cycled = self._momentum_groups(trainer, announce=True)

    def _take_over_schedulers(self, trainer: pl.Trainer) -> None:
        """Refuse (or, with ``replace_schedulers``, remove) the schedulers of the module's ``configure_optimizers``."""
        configs = trainer.lr_scheduler_configs
        if not configs:
            return
        names = ", ".join(type(cfg.scheduler).__name__ for cfg in configs)
        me = type(self).__name__
        if not self.replace_schedulers:
            raise ValueError(f"{me}: expected no LR scheduler from `configure_optimizers`, got {names}; pass "
                             f"`{me}(..., replace_schedulers=True)` to replace it, or remove one of the two")
        trainer.strategy.lr_scheduler_configs = []  # public attribute: Lightning steps only what it lists
        rank_zero_info(f"{me}: replacing the module's LR scheduler {names} (replace_schedulers=True); it is not "
                       "stepped while this callback runs")

    def _momentum_groups(self, trainer: pl.Trainer, announce: bool = False) -> list[bool]:
        """Per param group (all optimizers' in order): is its momentum / beta1 cycled (``cycle_momentum``)."""
        lo, hi = getattr(self, "base_momentum", 0.0), getattr(self, "max_momentum", 1.0)
        cycled: list[bool] = []
        for optimizer in trainer.optimizers:
            name, outside = type(optimizer).__name__, []
            for group, value in zip(optimizer.param_groups, read_momenta(optimizer)):
                has = "betas" in group or (value or 0) > 0
                if self.cycle_momentum is True and not has:
                    # torch's CyclicLR / OneCycleLR would switch momentum on here (SGD(momentum=0) -> 0.9); we never do
                    raise ValueError(
                        f"Expected an optimizer with momentum for `cycle_momentum=True`, got {name} whose param group "
                        f"{len(cycled)} has momentum {group.get('momentum', 'absent')} (0 or absent); give it "
                        "`momentum>0` or pass `cycle_momentum=False`"
                    )
                inside = has and lo <= float(value or 0) <= hi
                cycled.append(bool(self.cycle_momentum) if self.cycle_momentum is not None else inside)
                if self.cycle_momentum is None and has and not inside:
                    outside.append(f"{'beta1' if 'betas' in group else 'momentum'}={float(value or 0):g}")
            if announce and outside:
                rank_zero_warn(f"{type(self).__name__}: {name} {outside[0]} is outside {lo:g}..{hi:g}: momentum is "
                               "not cycled; pass cycle_momentum=True to cycle it")
        return cycled

    def _first_train_start(self, trainer: pl.Trainer) -> None:
        """The step counts at train start: a checkpoint's, else (a fresh run, or a checkpoint of an older version)
        from ``global_step``, which counts the steps of every optimizer."""
        n = max(1, len(trainer.optimizers))
        if self.optimizer_steps is None or len(self.optimizer_steps) != n:
            self.optimizer_steps = [trainer.global_step // n] * n

    @property
    def step(self) -> int:
        """Steps the first optimizer has taken (the index of its next step's learning rate)."""
        return self.optimizer_steps[0] if self.optimizer_steps else 0

    def _set(self, trainer: pl.Trainer, index: int) -> None:
        """Set optimizer ``index``'s param groups to the schedule at that optimizer's own step."""
        if self.schedule is None:
            self.schedule = self._build(trainer)
        if self.optimizer_steps is None:
            self._first_train_start(trainer)
        if self._cycled is None:
            self._cycled = self._momentum_groups(trainer)
        assert self.optimizer_steps is not None
        step = self.optimizer_steps[index]
        self._before_step(trainer, step)
        n_groups = len(self._cycled)
        lrs = self.schedule.lrs(step)
        if len(lrs) not in (1, n_groups):
            raise ValueError(f"Expected one learning rate per param group ({n_groups}), got {len(lrs)}")
        offset = len(param_groups(trainer.optimizers[:index]))
        own = slice(offset, offset + len(trainer.optimizers[index].param_groups))
        momentum = self.schedule.momentum(step) if any(self._cycled) else None
        write_groups(trainer.optimizers[index], lrs if len(lrs) == 1 else lrs[own], momentum, self._cycled[own])

    @override
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        # every optimizer at its next step's values already here, so the step and other callbacks see them
        for index in range(len(trainer.optimizers)):
            self._set(trainer, index)
        self._log(trainer, self.step)

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        index = optimizer_index(trainer, optimizer)
        if index is None:
            return
        self._set(trainer, index)  # this optimizer's own step (a second optimizer, or a second step in one batch)
        assert self.optimizer_steps is not None
        self.optimizer_steps[index] += 1

    def _log(self, trainer: pl.Trainer, step: int) -> None:
        every = self.log_every_n_steps or trainer.log_every_n_steps  # type: ignore[attr-defined]  # set, undeclared
        if not trainer.loggers or step == self._last_logged_step or step % every:
            return
        self._last_logged_step = step
        lrs, momenta = read_lrs(trainer.optimizers), read_momenta(trainer.optimizers)
        metrics: dict[str, float] = {}
        for i, (lr, momentum) in enumerate(zip(lrs, momenta)):
            suffix = f"/pg{i}" if len(lrs) > 1 else ""
            metrics[f"schedule/lr{suffix}"] = lr
            if momentum is not None:
                metrics[f"schedule/momentum{suffix}"] = momentum
        if trainer.is_global_zero:  # no collectives on this path: loggers are written on rank 0 only
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    # -- checkpointing --------------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"schedule": None if self.schedule is None else self.schedule.to_dict(),
                "optimizer_steps": None if self.optimizer_steps is None else list(self.optimizer_steps)}

    def _load_steps(self, state_dict: dict[str, Any]) -> None:
        steps = state_dict.get("optimizer_steps")  # absent in checkpoints of older versions: from global_step
        self.optimizer_steps = None if steps is None else [int(s) for s in steps]

