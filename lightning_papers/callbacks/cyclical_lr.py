"""``CyclicalLR``: Smith's cyclical learning-rate policies as a Lightning callback.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186). The learning rate
(and optionally the momentum, in opposition) follows ``triangular``, ``triangular2`` or ``exp_range``
between ``base_lr`` and ``max_lr``; the schedule is one :class:`lightning_papers.schedules.Cyclical`, which
matches ``torch.optim.lr_scheduler.CyclicLR`` bit for bit. Unlike ``CyclicLR`` it never switches momentum on for
an optimizer that has none.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_warn
from typing_extensions import override

from lightning_papers._validation import positive_real, renamed
from lightning_papers.callbacks._schedule_base import FINDER, ScheduleCallback, learning_rates, positive_rates
from lightning_papers.callbacks._trainer import planned_optimizer_steps
from lightning_papers.schedules import Cyclical, Policy, steps_from_epochs

__all__ = ["CyclicalLR"]


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class CyclicalLR(ScheduleCallback):
    """Set every param group's learning rate from a cyclical policy before each optimizer step.

    A step is one ``optimizer.step()``, and each optimizer counts its own (a GAN's two optimizers both run whole
    cycles of ``step_size``; under gradient accumulation the lr changes only between steps); a resumed run
    continues the cycle exactly. Attach it instead of a scheduler (this package's modules then build none).

    Args:
        base_lr: lower bound, a number, one per param group (all optimizers' groups in order), or ``"finder"``
            to take it from the ``clr_bounds`` of an :class:`~lightning_papers.callbacks.LRRangeFinder` in the
            same Trainer.
        max_lr: upper bound, likewise.
        step_size: optimizer steps (of each optimizer) per half cycle (Smith: 2-10 times the steps of an epoch).
        step_size_epochs: half cycle in epochs instead (converted with the steps of one epoch).
        step_size_down: steps of the falling half, if different from ``step_size``.
        policy: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: decay base of ``exp_range`` (per optimizer step).
        cycle_momentum: cycle momentum (SGD) or beta1 (Adam-like) from ``max_momentum`` down to
            ``base_momentum`` while the lr goes up: ``None`` for the param groups whose own value lies in
            ``[base_momentum, max_momentum]`` (others keep theirs, with a warning naming the optimizer), ``True``
            for all (each needs momentum: SGD ``momentum>0`` or Adam-like ``betas``; it is never switched on),
            ``False`` for none.
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the lr trough.
        log_every_n_steps: write ``schedule/lr`` and ``schedule/momentum`` (``/pg{i}`` per group when
            there are several) every this many steps of the first optimizer; ``None`` uses the Trainer's.
        replace_schedulers: remove the scheduler the module's ``configure_optimizers`` returned (logged by
            name) instead of refusing it at fit start.
        fallback_lr: with bounds from the range test, ``(base_lr, max_lr)`` (numbers or one per param group) to
            use, with one warning, when its reading cannot be trusted (:attr:`LRRangeResult.problems`, e.g. a sweep
            too short for the loss to fall) or suggests nothing, instead of refusing the first training step.
        mode: deprecated name of ``policy``.
        bounds: deprecated: ``CyclicalLR(b, m, bounds="finder")`` is
            ``CyclicalLR("finder", "finder", fallback_lr=(b, m))``.

    Raises:
        ValueError: for an unknown ``policy``, non-positive bounds, ``base_lr`` above ``max_lr``, both or neither
            of ``step_size``/``step_size_epochs``, or bad momentum/gamma values; at fit start, for per-group
            lists whose length differs from the number of param groups, ``"finder"`` without an
            ``LRRangeFinder``, a scheduler from ``configure_optimizers`` without ``replace_schedulers=True``, or
            ``cycle_momentum=True`` with an optimizer whose momentum is 0 or absent.

    Warns at train start when the run's steps of each optimizer (``trainer.estimated_stepping_batches``, or the
    batches under manual optimization) do not end on a cycle boundary (Smith: stop training at the end of a cycle).

    Examples:
        >>> import lightning as L
        >>> from lightning_papers.callbacks import LRRangeFinder
        >>> trainer = L.Trainer(callbacks=[CyclicalLR(1e-3, 6e-3, step_size=2000)])
        >>> trainer = L.Trainer(callbacks=[LRRangeFinder(), CyclicalLR("finder", "finder", step_size_epochs=4)])
    """

    schedule: Cyclical | None
    _rate_fields = ("base_lr", "max_lr")
    _state_key_fields = ("base_lr", "max_lr", "mode")  # "mode": the key of checkpoints written before the rename

    def __init__(
        self,
        base_lr: float | Sequence[float] | str | None = None,
        max_lr: float | Sequence[float] | str | None = None,
        *,
        step_size: int | None = None,
        step_size_epochs: float | None = None,
        step_size_down: int | None = None,
        policy: Policy = "triangular",
        gamma: float = 1.0,
        cycle_momentum: bool | None = None,
        base_momentum: float = 0.8,
        max_momentum: float = 0.9,
        log_every_n_steps: int | None = None,
        replace_schedulers: bool = False,
        fallback_lr: tuple[Any, Any] | None = None,
        mode: str | None = None,
        bounds: str | None = None,
    ) -> None:
        policy = renamed("mode", mode, "policy", policy, "triangular")
        if bounds not in (None, FINDER):
            raise ValueError(f"Expected `bounds` to be None or 'finder' (deprecated), got {bounds!r}")
        if bounds == FINDER:
            warnings.warn("`CyclicalLR(bounds='finder')` is deprecated: pass `base_lr='finder', max_lr='finder'` and "
                          "the numbers as `fallback_lr=(base_lr, max_lr)`", DeprecationWarning, stacklevel=2)
            if fallback_lr is None and base_lr is not None and max_lr is not None:
                fallback_lr = (base_lr, max_lr)
            base_lr = max_lr = FINDER
        self._fallback = None if fallback_lr is None else self._fallback_bounds(fallback_lr, base_lr, max_lr)
        if base_lr is None or max_lr is None:
            raise ValueError(f"Expected `base_lr` and `max_lr` (numbers or 'finder'), got {base_lr!r} and {max_lr!r}")
        base, peak = learning_rates(base_lr, "base_lr"), learning_rates(max_lr, "max_lr")
        if (step_size is None) == (step_size_epochs is None):
            raise ValueError(f"Expected exactly one of `step_size` and `step_size_epochs`, got {step_size!r} and "
                             f"{step_size_epochs!r}")
        for name, value in (("step_size", step_size), ("step_size_epochs", step_size_epochs),
                            ("step_size_down", step_size_down)):
            if value is not None:
                positive_real(name, value)
        # the schedule object checks the rest now (policy, gamma, momenta, and base <= max unless from the finder)
        Cyclical(1.0 if isinstance(base, str) or isinstance(peak, str) else tuple(base),
                 1.0 if isinstance(base, str) or isinstance(peak, str) else tuple(peak), float(step_size or 1), None,
                 policy, gamma, base_momentum, max_momentum)
        super().__init__(cycle_momentum, log_every_n_steps, replace_schedulers)
        self.base_lr, self.max_lr = base, peak
        self.step_size, self.step_size_epochs, self.step_size_down = step_size, step_size_epochs, step_size_down
        self.policy, self.gamma = policy, gamma
        self.mode = policy  # its name in the state keys of checkpoints written before the rename
        self.base_momentum, self.max_momentum = base_momentum, max_momentum
        self._steps: tuple[float, float] | None = None  # (up, down), resolved at train start

    @staticmethod
    def _fallback_bounds(fallback_lr: Any, base_lr: Any, max_lr: Any) -> tuple[list[float], list[float]]:
        if FINDER not in (base_lr, max_lr):
            raise ValueError(f"Expected `fallback_lr` only with bounds 'finder', got base_lr={base_lr!r}, "
                             f"max_lr={max_lr!r}")
        if not isinstance(fallback_lr, Sequence) or isinstance(fallback_lr, str) or len(fallback_lr) != 2:
            raise ValueError(f"Expected `fallback_lr` to be (base_lr, max_lr), got {fallback_lr!r}")
        base, peak = (positive_rates(v, "fallback_lr") for v in fallback_lr)
        try:
            Cyclical(tuple(base), tuple(peak), 1.0)  # base <= max
        except ValueError:
            raise ValueError(f"Expected `fallback_lr` to be (base_lr, max_lr) with base_lr <= max_lr, got "
                             f"{fallback_lr!r}") from None
        return base, peak

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first_train_start(trainer)
        if self.step_size is not None:
            up = float(self.step_size)
        else:
            assert self.step_size_epochs is not None
            up = float(steps_from_epochs(self.step_size_epochs, trainer.num_training_batches,
                                         trainer.accumulate_grad_batches))
        self._steps = (up, float(self.step_size_down) if self.step_size_down else up)
        cycle = self.schedule.cycle_length() if self.schedule is not None else sum(self._steps)
        self._check_cycle_boundary(trainer, cycle)

    def _check_cycle_boundary(self, trainer: pl.Trainer, cycle: float) -> None:
        """Warn when the run's total optimizer steps are not a whole number of cycles (Smith, Section 3.2:
        stop training at the end of a cycle, where the lr is back at ``base_lr``)."""
        total = planned_optimizer_steps(trainer)
        if not math.isfinite(total) or total <= 0:
            return
        cycles = total / cycle
        if abs(cycles - round(cycles)) < 1e-9 and round(cycles) >= 1:
            return
        options = " or ".join(_num(t) for t in (math.floor(cycles) * cycle, math.ceil(cycles) * cycle) if t > 0)
        rank_zero_warn(f"`CyclicalLR`: the run's {_num(total)} optimizer steps do not end on a cycle boundary (one "
                       f"cycle is {_num(cycle)} steps = 2 x step_size); set `max_steps` or `max_epochs` for {options} "
                       "steps")

    def _build(self, trainer: pl.Trainer) -> Cyclical:
        base, peak = self.base_lr, self.max_lr
        if isinstance(base, str) or isinstance(peak, str):
            # a range test whose curve cannot be trusted is refused; with numbers to fall back on, they are used
            found = self._finder_bounds(trainer, fallback=self._fallback is not None)
            if found is None:
                assert self._fallback is not None
                base, peak = self._fallback
            else:
                base = [found[0]] if isinstance(base, str) else base
                peak = [found[1]] if isinstance(peak, str) else peak
        assert self._steps is not None and isinstance(base, list) and isinstance(peak, list)
        return Cyclical(tuple(base), tuple(peak), self._steps[0], self._steps[1], self.policy, self.gamma,
                        self.base_momentum, self.max_momentum)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load_steps(state_dict)
        if "schedule" in state_dict:
            schedule = state_dict["schedule"]
            self.schedule = None if schedule is None else Cyclical.from_dict(schedule)
        elif state_dict.get("base_lrs") is not None:  # a checkpoint of version 0.1's CyclicalLR
            self.schedule = Cyclical(tuple(state_dict["base_lrs"]), tuple(state_dict["max_lrs"]),
                                     state_dict["step_size_up"], state_dict["step_size_down"],
                                     state_dict.get("mode", self.policy), state_dict.get("gamma", self.gamma),
                                     self.base_momentum, self.max_momentum)
        if self.schedule is not None and (self.schedule.policy, self.schedule.gamma) != (self.policy, self.gamma):
            rank_zero_warn("Resuming `CyclicalLR` with a different `policy`/`gamma` than the checkpoint's; the "
                           "checkpoint's schedule continues.")
