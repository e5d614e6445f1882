"""``CyclicalLR``: Smith's cyclical learning-rate policies as a Lightning callback.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186). The learning rate
(and optionally the momentum, in opposition) follows ``triangular``, ``triangular2`` or ``exp_range``
between ``base_lr`` and ``max_lr``; the math is :func:`lightning_papers.schedules.cyclical`, which matches
``torch.optim.lr_scheduler.CyclicLR`` bit for bit. Unlike ``CyclicLR`` it never switches momentum on for
an optimizer that has none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn

from lightning_papers.callbacks._schedule_base import ScheduleCallback, as_float_list
from lightning_papers.schedules import CYCLICAL_MODES, cyclical, cyclical_momentum

__all__ = ["CyclicalLR"]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class CyclicalLR(ScheduleCallback):
    """Set every param group's learning rate from a cyclical policy before each optimizer step.

    The step counted is ``trainer.global_step`` (optimizer steps), so under gradient accumulation the lr
    changes only between optimizer steps, and a run resumed from a checkpoint continues the cycle exactly.
    Attach it instead of a scheduler: it sets ``owns_learning_rate = True`` so this package's modules hand
    out a bare optimizer.

    Args:
        base_lr: lower bound, a float or one per param group (all optimizers' groups in order).
        max_lr: upper bound, a float or one per param group.
        step_size: optimizer steps per half cycle (Smith: 2-10 times the steps of an epoch).
        step_size_epochs: half cycle in epochs instead (converted with the steps of one epoch).
        step_size_down: steps of the falling half, if different from ``step_size``.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: decay base of ``exp_range`` (per optimizer step).
        bounds: ``"finder"`` takes ``(base_lr, max_lr)`` from the ``clr_bounds`` of an
            :class:`~lightning_papers.callbacks.LRRangeFinder` in the same Trainer (``base_lr``/``max_lr``
            given too serve as fallback when the finder cannot suggest bounds).
        cycle_momentum: cycle momentum (SGD) or beta1 (Adam-like) from ``max_momentum`` down to
            ``base_momentum`` while the lr goes up. Every param group needs momentum (SGD ``momentum>0``,
            or Adam-like ``betas``): it is never switched on silently.
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the lr trough.
        log_every_n_steps: write ``schedule/lr`` and ``schedule/momentum`` (``/pg{i}`` per group when
            there are several) every this many optimizer steps; ``None`` uses the Trainer's.

    Raises:
        ValueError: for an unknown ``mode`` or ``bounds``, missing or non-positive bounds, ``base_lr`` above
            ``max_lr``, both or neither of ``step_size``/``step_size_epochs``, or bad momentum/gamma values;
            at fit start, for per-group lists whose length differs from the number of param groups, or
            ``bounds="finder"`` without an ``LRRangeFinder``, or ``cycle_momentum=True`` with an optimizer
            whose momentum is 0 or absent.

    Warns at train start when the run's total optimizer steps (``trainer.estimated_stepping_batches``) do not
    end on a cycle boundary (Smith: stop training at the end of a cycle).

    Example::

        trainer = Trainer(callbacks=[CyclicalLR(base_lr=1e-3, max_lr=6e-3, step_size=2000)])
    """

    SUPPORTED_MODES = CYCLICAL_MODES
    SUPPORTED_BOUNDS = (None, "finder")

    def __init__(
        self,
        base_lr: float | Sequence[float] | None = None,
        max_lr: float | Sequence[float] | None = None,
        step_size: int | None = None,
        *,
        step_size_epochs: float | None = None,
        step_size_down: int | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        bounds: str | None = None,
        cycle_momentum: bool = False,
        base_momentum: float = 0.8,
        max_momentum: float = 0.9,
        log_every_n_steps: int | None = None,
    ) -> None:
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"Expected `mode` to be one of {self.SUPPORTED_MODES}, got {mode!r}")
        if bounds not in self.SUPPORTED_BOUNDS:
            raise ValueError(f"Expected `bounds` to be one of {self.SUPPORTED_BOUNDS}, got {bounds!r}")
        if (step_size is None) == (step_size_epochs is None):
            raise ValueError(
                f"Expected exactly one of `step_size` and `step_size_epochs`, got {step_size!r} and "
                f"{step_size_epochs!r}"
            )
        for name, value in (
            ("step_size", step_size),
            ("step_size_epochs", step_size_epochs),
            ("step_size_down", step_size_down),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"Expected `{name}` to be positive, got {value!r}")
        base, peak = as_float_list(base_lr), as_float_list(max_lr)
        if bounds is None and (base is None or peak is None):
            raise ValueError(
                f"Expected `base_lr` and `max_lr` unless `bounds='finder'`, got {base_lr!r} and {max_lr!r}"
            )
        if (base is None) != (peak is None):
            raise ValueError(f"Expected both or neither of `base_lr` and `max_lr`, got {base_lr!r} and {max_lr!r}")
        if base is not None and peak is not None:
            if any(v <= 0 for v in base + peak):
                raise ValueError(f"Expected positive learning rates, got {base_lr!r} and {max_lr!r}")
            if len(base) != len(peak) and 1 not in (len(base), len(peak)):
                raise ValueError(f"Expected `base_lr` and `max_lr` of the same length, got {len(base)} and {len(peak)}")
            if len(base) == len(peak) and any(b > m for b, m in zip(base, peak)):
                raise ValueError(f"Expected `base_lr <= max_lr`, got {base_lr!r} and {max_lr!r}")
        if not gamma > 0:
            raise ValueError(f"Expected a positive `gamma`, got {gamma!r}")
        if not 0.0 <= base_momentum <= max_momentum <= 1.0:
            raise ValueError(
                f"Expected `0 <= base_momentum <= max_momentum <= 1`, got {base_momentum!r} and {max_momentum!r}"
            )
        super().__init__(cycle_momentum, log_every_n_steps)
        self.base_lr, self.max_lr = base, peak
        self.step_size = step_size
        self.step_size_epochs = step_size_epochs
        self.step_size_down = step_size_down
        self.mode = mode
        self.gamma = gamma
        self.bounds = bounds
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum

        # resolved at fit start (and checkpointed)
        self._base_lrs: list[float] | None = None
        self._max_lrs: list[float] | None = None
        self._step_size_up: float | None = None
        self._step_size_down: float | None = None

    # ------------------------------------------------------------------------------------------------
    # resolution
    # ------------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bounds == "finder" and self._finder(trainer) is None:
            raise ValueError("Expected an `LRRangeFinder` in `Trainer(callbacks=...)` when `bounds='finder'`")
        n_groups = len(self._groups(trainer))
        if self.base_lr is not None and self.max_lr is not None:
            self._expand(self.base_lr, n_groups, "base_lr")
            self._expand(self.max_lr, n_groups, "max_lr")
        if self.cycle_momentum:
            self._check_momentum(trainer)

    @staticmethod
    def _check_momentum(trainer: pl.Trainer) -> None:
        # torch's CyclicLR would switch momentum on here (SGD(momentum=0) -> 0.9); we never do, we refuse.
        i = 0
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                if "betas" not in group and not group.get("momentum", 0) > 0:
                    value = group.get("momentum", "absent")
                    raise ValueError(
                        f"Expected an optimizer with momentum for `cycle_momentum=True`, got "
                        f"{type(optimizer).__name__} whose param group {i} has momentum {value} (0 or absent). "
                        "`CyclicalLR` never switches momentum on: give the optimizer `momentum>0` (e.g. "
                        "`SGD(momentum=0.9)`) or pass `cycle_momentum=False`."
                    )
                i += 1

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._step_size_up is None:
            if self.step_size is not None:
                self._step_size_up = float(self.step_size)
            else:
                steps_per_epoch = -(-trainer.num_training_batches // trainer.accumulate_grad_batches)
                self._step_size_up = float(max(1, round(self.step_size_epochs * steps_per_epoch)))
            self._step_size_down = float(self.step_size_down) if self.step_size_down else self._step_size_up
        self._detect_momentum_keys(trainer)
        self._check_cycle_boundary(trainer)

    def _check_cycle_boundary(self, trainer: pl.Trainer) -> None:
        """Warn when the run's total optimizer steps are not a whole number of cycles (Smith, Section 3.2:
        stop training at the end of a cycle, where the lr is back at ``base_lr``)."""
        total = trainer.estimated_stepping_batches
        assert self._step_size_up is not None and self._step_size_down is not None
        cycle = self._step_size_up + self._step_size_down
        if not math.isfinite(total) or total <= 0:
            return
        cycles = total / cycle
        if abs(cycles - round(cycles)) < 1e-9 and round(cycles) >= 1:
            return
        below, above = math.floor(cycles) * cycle, math.ceil(cycles) * cycle
        options = " or ".join(f"{_num(t)}" for t in (below, above) if t > 0)
        rank_zero_warn(
            f"`CyclicalLR`: the run's {_num(total)} optimizer steps do not end on a cycle boundary (one cycle is "
            f"{_num(cycle)} steps = 2 x step_size); Smith stops training at the end of a cycle. Nearest "
            f"cycle-ending totals: {options} steps (set `max_steps` or `max_epochs` accordingly)."
        )

    def _resolve_bounds(self, trainer: pl.Trainer) -> None:
        n_groups = len(self._groups(trainer))
        base, peak = self.base_lr, self.max_lr
        if self.bounds == "finder":
            finder = self._finder(trainer)
            result = finder.result if finder is not None else None
            found = result.clr_bounds if result is not None else None
            if found is not None:
                base, peak = [found[0]], [found[1]]
            elif base is None or peak is None:
                raise RuntimeError("`LRRangeFinder` suggested no cyclical bounds and no fallback was given")
            else:
                rank_zero_warn("`LRRangeFinder` suggested no cyclical bounds; using `base_lr`/`max_lr`.")
        assert base is not None and peak is not None
        self._base_lrs = self._expand(base, n_groups, "base_lr")
        self._max_lrs = self._expand(peak, n_groups, "max_lr")

    # ------------------------------------------------------------------------------------------------
    # the schedule
    # ------------------------------------------------------------------------------------------------
    def lr_at(self, step: int) -> list[float]:
        """Learning rate of every param group at optimizer step ``step`` (after fit start)."""
        assert self._base_lrs is not None and self._max_lrs is not None and self._step_size_up is not None
        return [
            cyclical(step, b, m, self._step_size_up, self._step_size_down, self.mode, self.gamma)  # type: ignore[arg-type]
            for b, m in zip(self._base_lrs, self._max_lrs)
        ]

    def momentum_at(self, step: int) -> float:
        """Cyclical momentum at optimizer step ``step``."""
        assert self._step_size_up is not None
        return cyclical_momentum(
            step,
            self.base_momentum,
            self.max_momentum,
            self._step_size_up,
            self._step_size_down,
            self.mode,
            self.gamma,  # type: ignore[arg-type]
        )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._base_lrs is None:
            self._resolve_bounds(trainer)
        step = trainer.global_step
        self._set(trainer, step, self.lr_at(step), self.momentum_at(step) if self.cycle_momentum else None)

    # ------------------------------------------------------------------------------------------------
    # checkpointing
    # ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "base_lrs": self._base_lrs,
            "max_lrs": self._max_lrs,
            "step_size_up": self._step_size_up,
            "step_size_down": self._step_size_down,
            "mode": self.mode,
            "gamma": self.gamma,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._base_lrs = state_dict["base_lrs"]
        self._max_lrs = state_dict["max_lrs"]
        self._step_size_up = state_dict["step_size_up"]
        self._step_size_down = state_dict["step_size_down"]
        if state_dict.get("mode", self.mode) != self.mode or state_dict.get("gamma", self.gamma) != self.gamma:
            rank_zero_warn("Resuming `CyclicalLR` with a different `mode`/`gamma` than the checkpoint's.")
