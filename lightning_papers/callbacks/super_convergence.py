"""``SuperConvergence``: the 1cycle policy as a Lightning callback, plus the initial-to-final interpolation.

Smith & Topin, Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates, 2017
(arXiv 1708.07120): one learning-rate cycle from ``max_lr / div_factor`` up to a large ``max_lr`` and back,
then an "annihilation" phase down to several orders of magnitude below the start. Momentum cycles the other
way (Smith, A disciplined approach to neural network hyper-parameters, 2018, arXiv 1803.09820: 0.95 -> 0.85
-> 0.95). Smith & Topin, Exploring loss function topology with cyclical learning rates, 2017 (arXiv
1702.04283): the loss along the straight line from the initial to the final weights (``interpolation_probe``).

The schedule is one :class:`lightning_papers.schedules.OneCycle` (bit-exact against
``torch.optim.lr_scheduler.OneCycleLR``, with its length, annihilation phase and stretch); the interpolation is
:class:`~lightning_papers.callbacks.LossLandscapeProbe`'s ``view="interpolate"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import lightning.pytorch as pl
import numpy as np
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_papers._validation import integer, optional_positive_int, positive_int, renamed
from lightning_papers.callbacks._schedule_base import FINDER, ScheduleCallback, learning_rates, positive_rates
from lightning_papers.callbacks._trainer import planned_optimizer_steps
from lightning_papers.callbacks.loss_landscape_probe import LossLandscapeProbe
from lightning_papers.landscape import SurfaceResult
from lightning_papers.schedules import Anneal, OneCycle, one_cycle_pct_start, one_cycle_peaks, read_lrs

__all__ = ["SuperConvergence"]


class SuperConvergence(ScheduleCallback):
    """Drive every param group's learning rate (and momentum) through one 1cycle over the whole run.

    A step is one ``optimizer.step()``, and each optimizer counts its own (a GAN's two optimizers both run the
    whole cycle; under gradient accumulation the lr changes only between steps). With equal settings the lr and
    momentum sequences equal ``torch.optim.lr_scheduler.OneCycleLR``'s, but training past the planned length
    holds the final lr (one warning) instead of raising. Resuming continues the same sequence; resuming with a
    different length (e.g. a larger ``max_epochs``) stretches the rest of the cycle over the new remaining steps.

    Args:
        max_lr: the peak learning rate, or ``"finder"`` to take it from an
            :class:`~lightning_papers.callbacks.LRRangeFinder` in the same Trainer (its ``clr_bounds[1]``, the
            largest lr at which the loss still fell - Smith & Topin's reading of the range test - or, when the
            finder found no bounds, its ``suggestion``; the bounds always bracket the suggestion). A curve that
            cannot be trusted (:attr:`LRRangeResult.problems`) is refused before the first training step with a
            one-line error naming the problem and the fix (a longer or wider sweep, or ``max_lr`` as a number).
            A number keeps the optimizer's per-group lr ratios: the group with the largest initial lr peaks at
            ``max_lr``, a group at 0.1x stays at 0.1x. A sequence gives each param group (all optimizers' in order)
            its own peak.
        total_steps: steps of each optimizer over the schedule; ``None``: ``trainer.estimated_stepping_batches``
            (under manual optimization the batches of the run, ``max_steps`` divided among the optimizers).
        div_factor: the cycle starts (and, with ``three_phase``, returns) at ``max_lr / div_factor``.
        final_div_factor: the annihilation ends at ``max_lr / div_factor / final_div_factor``.
        three_phase: the paper's shape: up, symmetrically down, then annihilation. ``False`` is the two-phase
            variant torch and fastai default to (up, then one long anneal to the minimum).
        pct_start: fraction of the steps spent going up (and, with ``three_phase``, again going down). Defaults
            to 0.45 with ``three_phase`` (a 10% annihilation) and 0.3 (torch's default) without.
        annihilation_pct: with ``three_phase``, the fraction of steps of the final phase instead of
            ``pct_start`` (``pct_start = (1 - annihilation_pct) / 2``); both may be given if they agree.
        anneal: ``"linear"`` (the paper) or ``"cos"`` (torch's default).
        cycle_momentum: cycle SGD momentum or Adam's beta1 from ``max_momentum`` down to ``base_momentum``
            while the lr rises: ``None`` for the param groups whose own value lies in ``[base_momentum,
            max_momentum]`` (others, e.g. a GAN's Adam ``beta1=0.5``, keep theirs, with one warning naming the
            optimizer), ``True`` for all (each needs momentum: it is never switched on), ``False`` for none (the
            paper's constant 0.9).
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the start and the end.
        log_every_n_steps: write ``schedule/lr`` and ``schedule/momentum`` (``/pg{i}`` per group when there are
            several) every this many steps of the first optimizer; ``None`` uses the Trainer's.
        replace_schedulers: remove the scheduler the module's ``configure_optimizers`` returned (logged by name)
            instead of refusing it at fit start.
        fallback_lr: with ``max_lr="finder"``, the peak to use (with one warning) when the range test's reading
            cannot be trusted or suggests nothing, instead of refusing to train.
        interpolation_probe: keep the weights of fit start in memory (on the CPU, and in checkpoints) and, when
            training ends, evaluate the module's loss (and accuracy, for a classifier) along
            ``theta_0 + alpha (theta_T - theta_0)`` on training and validation batches - a
            ``LossLandscapeProbe(view="interpolate")``, whose tags and files it writes (``landscape/interpolation``).
            BatchNorm statistics are interpolated with the weights. Result: :attr:`interpolation`.
        interpolation_points: evenly spaced alphas over ``interpolation_range`` (0 and 1 are always added).
        num_batches: batches of each loader the interpolation is evaluated on (the probe's ``num_batches``).
        interpolation_range: smallest and largest alpha (0 = initial weights, 1 = final weights). Alphas below 0
            can give negative running variances (NaN losses) when the variances grew in training.
        interpolation_batches: deprecated name of ``num_batches``.

    Raises:
        ValueError: for a non-positive or non-numeric ``max_lr``, a string other than ``"finder"``, a
            non-positive ``total_steps``, ``div_factor`` or ``final_div_factor``, an unknown ``anneal``,
            ``pct_start``/``annihilation_pct`` out of range, disagreeing or given without ``three_phase``,
            momenta outside ``0 <= base <= max <= 1``, or bad interpolation options; at fit start, for
            ``max_lr="finder"`` without an ``LRRangeFinder``, a per-group list whose length differs from the
            number of param groups, a scheduler from ``configure_optimizers`` without ``replace_schedulers=True``,
            an optimizer without momentum under ``cycle_momentum=True``, or an unbounded run
            (``max_epochs=-1``) without ``total_steps``.

    Examples:
        >>> import lightning as L
        >>> from lightning_papers.callbacks import LRRangeFinder
        >>> trainer = L.Trainer(max_steps=10_000, callbacks=[SuperConvergence(3.0, div_factor=30)])
        >>> trainer = L.Trainer(max_epochs=30, callbacks=[LRRangeFinder(), SuperConvergence("finder")])
    """

    schedule: OneCycle | None
    _rate_fields = ("max_lr",)
    _state_key_fields = ("max_lr", "total_steps")

    def __init__(
        self,
        max_lr: float | Sequence[float] | str,
        *,
        total_steps: int | None = None,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = True,
        pct_start: float | None = None,
        annihilation_pct: float | None = None,
        anneal: Anneal = "linear",
        cycle_momentum: bool | None = None,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        log_every_n_steps: int | None = None,
        replace_schedulers: bool = False,
        fallback_lr: float | None = None,
        interpolation_probe: bool = False,
        interpolation_points: int = 13,
        num_batches: int = 4,
        interpolation_range: tuple[float, float] = (0.0, 1.25),
        interpolation_batches: int | None = None,
    ) -> None:
        num_batches = renamed("interpolation_batches", interpolation_batches, "num_batches", num_batches, 4)
        super().__init__(cycle_momentum, log_every_n_steps, replace_schedulers)
        peaks = learning_rates(max_lr, "max_lr")
        if fallback_lr is not None and peaks != FINDER:
            raise ValueError(f"Expected `fallback_lr` only with max_lr='finder', got max_lr={max_lr!r}")
        self.fallback_lr = None if fallback_lr is None else positive_rates(fallback_lr, "fallback_lr")[0]
        optional_positive_int("total_steps", total_steps)
        pct_start = one_cycle_pct_start(three_phase, pct_start, annihilation_pct)
        # the schedule's form, checked now (factors, anneal, momenta); its length and peaks come at train start
        self._template = OneCycle(1, 1.0, div_factor, final_div_factor, pct_start, anneal, three_phase, base_momentum,
                                  max_momentum)
        integer("interpolation_points", interpolation_points, minimum=2)
        positive_int("num_batches", num_batches)
        try:
            lo, hi = (float(v) for v in interpolation_range)
        except (TypeError, ValueError):
            lo = hi = math.nan
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= 0.0 and hi >= 1.0):
            raise ValueError(f"Expected `interpolation_range` to be (low <= 0, high >= 1), got {interpolation_range!r}")
        self.max_lr = peaks
        self.total_steps = total_steps
        self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)
        self.three_phase, self.pct_start, self.anneal = bool(three_phase), pct_start, anneal
        self.base_momentum, self.max_momentum = base_momentum, max_momentum
        self.interpolation_probe = interpolation_probe
        self.interpolation_range = (lo, hi)
        self.interpolation_points = interpolation_points
        self.interpolation: SurfaceResult | None = None  # after the probe
        self._probe = LossLandscapeProbe(
            "interpolate", grid=self.alphas(), num_batches=num_batches, split=("train", "val"),
            kind="states", sharpness=False,
        )
        self._planned: int | None = None
        self._warned_past_end = False

    def alphas(self) -> np.ndarray:
        """The probe's alphas: ``interpolation_points`` over ``interpolation_range``, plus exactly 0 and 1."""
        lo, hi = self.interpolation_range
        return np.unique(np.concatenate([np.linspace(lo, hi, self.interpolation_points), [0.0, 1.0]]))

    # -- fit start: checks, length, the initial weights ---------------------------------------------------
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.total_steps is None and self.schedule is None and trainer.max_epochs == -1 and trainer.max_steps == -1:
            raise ValueError("Expected `total_steps` for an unbounded run (max_epochs=-1 and max_steps=-1)")
        super().on_fit_start(trainer, pl_module)
        if self.interpolation_probe:
            self._probe.on_fit_start(trainer, pl_module)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._first_train_start(trainer)
        planned = self.total_steps if self.total_steps is not None else planned_optimizer_steps(trainer)
        if not math.isfinite(planned) or planned < 1:
            raise ValueError(f"Expected a finite, positive schedule length, got {planned!r}; pass `total_steps`")
        self._planned, step = int(planned), self.step
        if self.schedule is not None and self._planned != self.schedule.run_total:
            rank_zero_warn(f"SuperConvergence: the run's length changed from {self.schedule.run_total} to "
                           f"{self._planned} optimizer steps; the rest of the 1cycle (from position "
                           f"{self.schedule.position(step):.1f}) is stretched over steps {step}..{self._planned - 1}")
            self.schedule = self.schedule.stretched(step, self._planned)
        elif self.schedule is not None and step:
            rank_zero_info(f"SuperConvergence: resuming the 1cycle at step {step} of {self.schedule.run_total}.")
        self._warned_past_end = False

    def _build(self, trainer: pl.Trainer) -> OneCycle:
        assert self._planned is not None, "on_train_start sets the length"
        if isinstance(self.max_lr, list) and len(self.max_lr) > 1:
            return replace(self._template, total_steps=self._planned, max_lr=tuple(self.max_lr))
        if isinstance(self.max_lr, str):
            found = self._finder_bounds(trainer, fallback=self.fallback_lr is not None)
            peak = found[1] if found is not None else self.fallback_lr
            assert peak is not None
        else:
            peak = self.max_lr[0]
        # the optimizer's own initial lrs (a replaced scheduler may have scaled `lr` already, e.g. LinearLR)
        peaks = one_cycle_peaks(peak, read_lrs(trainer.optimizers, initial=True))
        if len(set(peaks)) > 1:
            rank_zero_info(f"SuperConvergence: per-group peaks {list(peaks)} (the optimizer's lr ratios).")
        return replace(self._template, total_steps=self._planned, max_lr=peaks)

    def _before_step(self, trainer: pl.Trainer, step: int) -> None:
        assert self.schedule is not None, "built at the first training batch"
        if step >= self.schedule.run_total and not self._warned_past_end:
            self._warned_past_end = True
            rank_zero_warn(f"SuperConvergence: training went past the planned {self.schedule.run_total} optimizer "
                           f"steps; holding the final learning rate from step {step} on; pass `total_steps` to plan "
                           "more")

    # -- the interpolation probe (1702.04283) --------------------------------------------------------------
    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.interpolation_probe or self._probe.initial_state is None:
            return
        try:  # a failure is a warning, never an exception out of `fit`
            self.interpolation = self._probe.probe_safely(trainer, pl_module, epoch=max(trainer.current_epoch - 1, 0))
        finally:
            self._probe.initial_state = None  # a later fit starts its own line
        if self.interpolation is None:
            return
        rank_zero_info("SuperConvergence interpolation (alpha: train loss): " + ", ".join(
            f"{a:g}: {v:.4g}" for a, v in zip(self.interpolation.axes[0], self.interpolation.values["train_loss"])))

    # -- checkpointing --------------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "init_state": self._probe.initial_state}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._load_steps(state_dict)
        if "schedule" in state_dict:
            self.schedule = None if state_dict["schedule"] is None else OneCycle.from_dict(state_dict["schedule"])
        elif state_dict.get("max_lrs") is not None:  # a checkpoint of version 0.1's SuperConvergence
            self.schedule = replace(
                self._template, **state_dict.get("shape", {}), total_steps=state_dict["schedule_total"],
                max_lr=tuple(state_dict["max_lrs"]), run_steps=state_dict["run_total"],
                anchor_step=state_dict["anchor_step"], anchor_position=state_dict["anchor_pos"])
        if state_dict.get("init_state") is not None:
            self._probe.initial_state = state_dict["init_state"]
        ours = self._template.shape()
        differ = [] if self.schedule is None else [k for k, v in self.schedule.shape().items() if ours[k] != v]
        if differ:
            rank_zero_warn(f"Resuming `SuperConvergence` with a different schedule shape than the checkpoint's "
                           f"({', '.join(differ)}); the checkpoint's schedule continues")
