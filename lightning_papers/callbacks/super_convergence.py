"""``SuperConvergence``: the 1cycle policy as a Lightning callback, plus an init-to-final interpolation probe.

Smith & Topin, Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates, 2017
(arXiv 1708.07120): one learning-rate cycle from ``max_lr / div_factor`` up to a large ``max_lr`` and back,
then an "annihilation" phase down to several orders of magnitude below the start. Momentum cycles the other
way (Smith, A disciplined approach to neural network hyper-parameters, 2018, arXiv 1803.09820: 0.95 -> 0.85
-> 0.95).

Smith & Topin, Exploring loss function topology with cyclical learning rates, 2017 (arXiv 1702.04283), after
Goodfellow, Vinyals & Saxe, 2015: the loss along the straight line from the initial to the final weights.
``interpolation_probe=True`` evaluates it at the end of ``fit`` with :func:`lightning_papers.landscape.surface`.

The math is :func:`lightning_papers.schedules.one_cycle` / :func:`~lightning_papers.schedules.one_cycle_momentum`
(bit-exact against ``torch.optim.lr_scheduler.OneCycleLR``); this module maps Trainer hooks onto it, logs,
and checkpoints its position.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from lightning.pytorch.utilities.seed import isolate_rng

from lightning_papers.callbacks._schedule_base import ScheduleCallback, as_float_list
from lightning_papers.schedules import ONE_CYCLE_ANNEALS, one_cycle, one_cycle_momentum

__all__ = ["SuperConvergence"]

_PAPERS = {
    "schedule": "Smith & Topin, Super-Convergence: Very Fast Training of Neural Networks Using Large Learning "
    "Rates, 2017 (arXiv 1708.07120)",
    "interpolation": "Smith & Topin, Exploring loss function topology with cyclical learning rates, 2017 "
    "(arXiv 1702.04283)",
}
_AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


class SuperConvergence(ScheduleCallback):
    """Drive every param group's learning rate (and momentum) through one 1cycle over the whole run.

    The schedule is indexed by ``trainer.global_step`` (optimizer steps), so gradient accumulation changes the lr
    only between optimizer steps, and its length is ``trainer.estimated_stepping_batches`` (``max_steps`` /
    ``max_epochs`` and accumulation respected) unless ``total_steps`` is given. With equal settings the lr and
    momentum sequences equal ``torch.optim.lr_scheduler.OneCycleLR``'s, but training past the planned length
    holds the final lr (one warning) instead of raising, and momentum is never switched on for an optimizer
    that has none. Resuming continues the same sequence; resuming with a different length (e.g. a larger
    ``max_epochs``) stretches the rest of the schedule from the saved position over the new remaining steps.

    Args:
        max_lr: the peak learning rate, or ``"finder"`` to take it from an
            :class:`~lightning_papers.callbacks.LRRangeFinder` in the same Trainer (its ``clr_bounds[1]``, the
            largest lr at which the loss still fell - Smith & Topin's reading of the range test - or, when the
            finder found no bounds, its ``suggestion``). A float keeps the optimizer's per-group lr ratios: the
            group with the largest initial lr peaks at ``max_lr`` and a group at 0.1x stays at 0.1x. A sequence
            gives each param group (all optimizers' groups in order) its own peak.
        total_steps: optimizer steps of the schedule; ``None`` uses ``trainer.estimated_stepping_batches``.
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
            while the lr rises; ``False`` leaves momentum alone (the paper's constant 0.9). Groups without
            momentum keep theirs, with a warning.
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the start and the end.
        log_every_n_steps: write ``schedule/lr`` and ``schedule/momentum`` (``/pg{i}`` per group when there are
            several) every this many optimizer steps; ``None`` uses the Trainer's.
        interpolation_probe: keep the weights of fit start in memory (on the CPU, and in checkpoints) and, when
            training ends, evaluate loss and accuracy of ``theta_0 + alpha (theta_T - theta_0)`` on training and
            validation batches. The model's ``forward`` must return logits; BatchNorm statistics are interpolated
            with the weights. Results: :attr:`interpolation`, TensorBoard figure ``landscape/interpolation`` and
            scalars ``landscape/interpolation/*`` (x axis: point index), and
            ``<trainer.log_dir>/super_convergence/interpolation.json``. The model comes back bit-identical.
        interpolation_points: evenly spaced alphas over ``interpolation_range`` (0 and 1 are always added).
        interpolation_batches: batches of each loader (per process) to evaluate on.
        interpolation_range: smallest and largest alpha (0 = initial weights, 1 = final weights). The whole
            state is interpolated, BatchNorm running statistics included, so alphas below 0 can give negative
            running variances (NaN losses) when the variances grew in training; the default stays at >= 0.

    Raises:
        ValueError: for a non-positive or non-numeric ``max_lr``, a string other than ``"finder"``, a
            non-positive ``total_steps``, ``div_factor`` or ``final_div_factor``, an unknown ``anneal``,
            ``pct_start``/``annihilation_pct`` out of range, disagreeing or given without ``three_phase``,
            momenta outside ``0 <= base <= max <= 1``, or bad interpolation options; at fit start, for
            ``max_lr="finder"`` without an ``LRRangeFinder``, a per-group list whose length differs from the
            number of param groups, or an unbounded run (``max_epochs=-1``) without ``total_steps``.

    Example::

        trainer = Trainer(max_steps=10_000, callbacks=[SuperConvergence(max_lr=3.0, div_factor=30)])
        trainer = Trainer(max_epochs=30, callbacks=[LRRangeFinder(), SuperConvergence(max_lr="finder")])
    """

    SUPPORTED_ANNEALS = ONE_CYCLE_ANNEALS

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
        anneal: str = "linear",
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
        log_every_n_steps: int | None = None,
        interpolation_probe: bool = False,
        interpolation_points: int = 13,
        interpolation_batches: int = 4,
        interpolation_range: tuple[float, float] = (0.0, 1.25),
    ) -> None:
        super().__init__(cycle_momentum, log_every_n_steps)
        if isinstance(max_lr, str):
            if max_lr != "finder":
                raise ValueError(f"Expected `max_lr` to be a positive number, a sequence or 'finder', got {max_lr!r}")
            peaks = None
        else:
            try:
                peaks = as_float_list(max_lr)
            except (TypeError, ValueError):
                raise ValueError(
                    f"Expected `max_lr` to be a positive number, a sequence or 'finder', got {max_lr!r}"
                ) from None
            if not peaks or not all(math.isfinite(v) and v > 0 for v in peaks):
                raise ValueError(f"Expected `max_lr` to be positive, got {max_lr!r}")
        if total_steps is not None and (isinstance(total_steps, bool) or not isinstance(total_steps, int)
                                        or total_steps < 1):
            raise ValueError(f"Expected `total_steps` to be a positive integer or None, got {total_steps!r}")
        for name, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
            if not value > 0:
                raise ValueError(f"Expected `{name}` to be positive, got {value!r}")
        if anneal not in self.SUPPORTED_ANNEALS:
            raise ValueError(f"Expected `anneal` to be one of {self.SUPPORTED_ANNEALS}, got {anneal!r}")
        pct_start = self._resolve_pct_start(three_phase, pct_start, annihilation_pct)
        if not 0.0 <= base_momentum <= max_momentum <= 1.0:
            raise ValueError(
                f"Expected `0 <= base_momentum <= max_momentum <= 1`, got {base_momentum!r} and {max_momentum!r}"
            )
        if isinstance(interpolation_points, bool) or not isinstance(interpolation_points, int) or (
            interpolation_points < 2
        ):
            raise ValueError(f"Expected `interpolation_points` to be an integer >= 2, got {interpolation_points!r}")
        if isinstance(interpolation_batches, bool) or not isinstance(interpolation_batches, int) or (
            interpolation_batches < 1
        ):
            raise ValueError(
                f"Expected `interpolation_batches` to be a positive integer, got {interpolation_batches!r}"
            )
        try:
            lo, hi = (float(v) for v in interpolation_range)
        except (TypeError, ValueError):
            lo = hi = math.nan
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= 0.0 and hi >= 1.0):
            raise ValueError(
                f"Expected `interpolation_range` to be (low <= 0, high >= 1), got {interpolation_range!r}"
            )

        self.max_lr = max_lr if isinstance(max_lr, str) else peaks
        self.total_steps = total_steps
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.three_phase = bool(three_phase)
        self.pct_start = pct_start
        self.anneal = anneal
        self.base_momentum = base_momentum
        self.max_momentum = max_momentum
        self.interpolation_probe = interpolation_probe
        self.interpolation_points = interpolation_points
        self.interpolation_batches = interpolation_batches
        self.interpolation_range = (lo, hi)
        self.interpolation: Any = None  # a SurfaceResult after a probe

        # resolved at fit start and checkpointed
        self._max_lrs: list[float] | None = None
        self._schedule_total: int | None = None  # length of the 1cycle the positions index
        self._run_total: int | None = None  # optimizer steps this run plans to take
        self._anchor_step = 0  # global step from which positions are stretched (after a length change)
        self._anchor_pos = 0.0  # schedule position at the anchor
        self._init_state: dict[str, torch.Tensor] | None = None
        self._warned_past_end = False

    @staticmethod
    def _resolve_pct_start(three_phase: bool, pct_start: float | None, annihilation_pct: float | None) -> float:
        if annihilation_pct is not None:
            if not three_phase:
                raise ValueError(
                    f"Expected `annihilation_pct=None` with `three_phase=False`, got {annihilation_pct!r}"
                )
            if not 0.0 <= annihilation_pct < 1.0:
                raise ValueError(f"Expected `annihilation_pct` in [0, 1), got {annihilation_pct!r}")
            implied = (1.0 - annihilation_pct) / 2.0
            if pct_start is not None and abs(2 * pct_start + annihilation_pct - 1.0) > 1e-9:
                raise ValueError(
                    f"Expected `2 * pct_start + annihilation_pct == 1`, got {pct_start!r} and {annihilation_pct!r}"
                )
            pct_start = implied if pct_start is None else pct_start
        if pct_start is None:
            pct_start = 0.45 if three_phase else 0.3
        upper = 0.5 if three_phase else 1.0
        if not 0.0 < pct_start <= upper or (not three_phase and pct_start == 1.0):
            raise ValueError(
                f"Expected `pct_start` in (0, {upper}{']' if three_phase else ')'} with three_phase={three_phase}, "
                f"got {pct_start!r}"
            )
        return float(pct_start)

    # ------------------------------------------------------------------------------------------------
    # fit start: checks, length, momentum, the initial weights
    # ------------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.max_lr == "finder" and self._finder(trainer) is None:
            raise ValueError("Expected an `LRRangeFinder` in `Trainer(callbacks=...)` when `max_lr='finder'`")
        if isinstance(self.max_lr, list):
            self._expand(self.max_lr, len(self._groups(trainer)), "max_lr")
        if self.total_steps is None and self._schedule_total is None and trainer.max_epochs == -1 and (
            trainer.max_steps == -1
        ):
            raise ValueError("Expected `total_steps` for an unbounded run (max_epochs=-1 and max_steps=-1)")
        if self.interpolation_probe and self._init_state is None:
            # the start of the line; a resumed run gets it back from the checkpoint (load_state_dict)
            self._init_state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        planned = self.total_steps if self.total_steps is not None else trainer.estimated_stepping_batches
        if not math.isfinite(planned) or planned < 1:
            raise ValueError(f"Expected a finite, positive schedule length, got {planned!r}; pass `total_steps`")
        planned = int(planned)
        step = trainer.global_step
        if self._schedule_total is None:
            self._schedule_total = self._run_total = planned
            self._anchor_step, self._anchor_pos = 0, 0.0
        elif planned != self._run_total:
            position = self.position(step)
            rank_zero_warn(
                f"SuperConvergence: the run's length changed from {self._run_total} to {planned} optimizer steps; "
                f"the rest of the 1cycle (from position {position:.1f} of {self._schedule_total}) is stretched "
                f"over steps {step}..{planned - 1}."
            )
            self._anchor_step, self._anchor_pos, self._run_total = step, float(position), planned
        elif step:
            rank_zero_info(f"SuperConvergence: resuming the 1cycle at step {step} of {self._run_total}.")
        self._warned_past_end = False
        self._detect_momentum_keys(trainer)

    def _resolve_max_lrs(self, trainer: pl.Trainer) -> None:
        groups = self._groups(trainer)
        if isinstance(self.max_lr, list) and len(self.max_lr) > 1:
            self._max_lrs = self._expand(self.max_lr, len(groups), "max_lr")
            return
        if self.max_lr == "finder":
            result = self._finder(trainer).result
            bounds = result.clr_bounds if result is not None else None
            if bounds is not None:
                peak = float(bounds[1])
            elif result is not None and result.suggestion is not None:
                peak = float(result.suggestion)
                rank_zero_warn(f"`LRRangeFinder` found no CLR bounds; using its suggestion {peak:.3g} as `max_lr`.")
            else:
                raise RuntimeError("`LRRangeFinder` suggested no learning rate; pass `max_lr` as a number")
        else:
            peak = self.max_lr[0]
        initial = [float(group["lr"]) for group in groups]
        top = max(initial) if initial else 0.0
        # keep the optimizer's per-group ratios: the largest group peaks at max_lr
        self._max_lrs = [peak * (lr / top) if top > 0 else peak for lr in initial]
        if len(set(self._max_lrs)) > 1:
            rank_zero_info(f"SuperConvergence: per-group peaks {self._max_lrs} (the optimizer's lr ratios).")

    # ------------------------------------------------------------------------------------------------
    # the schedule
    # ------------------------------------------------------------------------------------------------
    def position(self, step: int) -> float:
        """Position in the 1cycle (0 ... ``total - 1``) of optimizer step ``step``; the last one past the end."""
        assert self._schedule_total is not None and self._run_total is not None
        last = self._schedule_total - 1
        if step >= self._run_total:
            return last
        if self._anchor_step == 0 and self._anchor_pos == 0.0 and self._run_total == self._schedule_total:
            return step  # the plain case: exactly torch's step counter
        remaining = self._run_total - 1 - self._anchor_step
        if remaining <= 0:
            return last
        return min(last, self._anchor_pos + (step - self._anchor_step) * (last - self._anchor_pos) / remaining)

    def lr_at(self, step: int) -> list[float]:
        """Learning rate of every param group at optimizer step ``step`` (after the first training batch)."""
        assert self._max_lrs is not None and self._schedule_total is not None
        pos = self.position(step)
        return [
            one_cycle(pos, self._schedule_total, peak, self.div_factor, self.final_div_factor, self.pct_start,
                      self.anneal, self.three_phase)  # type: ignore[arg-type]
            for peak in self._max_lrs
        ]

    def momentum_at(self, step: int) -> float:
        """Momentum (or beta1) at optimizer step ``step``."""
        assert self._schedule_total is not None
        return one_cycle_momentum(
            self.position(step), self._schedule_total, self.base_momentum, self.max_momentum, self.pct_start,
            self.anneal, self.three_phase,  # type: ignore[arg-type]
        )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._max_lrs is None:
            self._resolve_max_lrs(trainer)
        step = trainer.global_step
        assert self._run_total is not None
        if step >= self._run_total and not self._warned_past_end:
            self._warned_past_end = True
            rank_zero_warn(
                f"SuperConvergence: training went past the planned {self._run_total} optimizer steps; holding the "
                f"final learning rate {self.lr_at(step)} from step {step} on."
            )
        self._set(trainer, step, self.lr_at(step), self.momentum_at(step) if self.cycle_momentum else None)

    # ------------------------------------------------------------------------------------------------
    # the interpolation probe (1702.04283)
    # ------------------------------------------------------------------------------------------------
    def alphas(self) -> np.ndarray:
        """The probe's alphas: ``interpolation_points`` over ``interpolation_range``, plus exactly 0 and 1."""
        lo, hi = self.interpolation_range
        return np.unique(np.concatenate([np.linspace(lo, hi, self.interpolation_points), [0.0, 1.0]]))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.interpolation_probe or self._init_state is None:
            return
        try:
            self.interpolation = self._interpolate(trainer, pl_module)
        finally:
            self._init_state = None  # a later fit starts its own line
        if self.interpolation is not None:
            self._report(trainer, self.interpolation)

    def _batches(self, trainer: pl.Trainer, loaders: Any) -> list[Any]:
        if isinstance(loaders, dict):
            loaders = next(iter(loaders.values()), None)
        elif isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        if loaders is None:
            return []
        batches = []
        for batch in _first(loaders, self.interpolation_batches):
            batch = trainer.precision_plugin.convert_input(batch)
            batches.append(tuple(trainer.strategy.batch_to_device(batch, dataloader_idx=0)))
        return batches

    def _interpolate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> Any:
        from lightning_papers.landscape import SurfaceResult, preserved_model, surface, target_direction

        assert self._init_state is not None
        alphas = self.alphas()
        values: dict[str, np.ndarray] = {}
        metadata: dict[str, Any] = {}
        with isolate_rng(), _evaluation_stage(trainer):
            splits = {"train": self._batches(trainer, trainer.train_dataloader),
                      "val": self._batches(trainer, trainer.val_dataloaders)}
            if not splits["val"]:
                rank_zero_warn("SuperConvergence: no validation batches; the interpolation covers training data only.")
            with preserved_model(pl_module) as final_state, torch.no_grad():
                for key, tensor in pl_module.state_dict(keep_vars=True).items():
                    tensor.copy_(self._init_state[key])
                direction = target_direction(pl_module, final_state, kind="states")
                for split, batches in splits.items():
                    if not batches:
                        continue
                    result = surface(pl_module, direction, alphas, batches, metrics=("loss", "accuracy"),
                                     autocast_dtype=_AUTOCAST.get(str(trainer.precision)))
                    samples = float(result.metadata["data"]["samples"])
                    for metric in ("loss", "accuracy"):
                        values[f"{split}_{metric}"] = _mean_over_ranks(trainer, result[metric], samples, pl_module)
                    metadata[split] = {"samples_per_rank": samples, "batches_per_rank": len(batches)}
                    metadata["direction"] = result.metadata["directions"][0]
        if not values:
            rank_zero_warn("SuperConvergence: no batches to evaluate the interpolation on.")
            return None
        metadata.update(
            paper=_PAPERS["interpolation"], global_step=trainer.global_step, world_size=trainer.world_size,
            kind="states (weights and BatchNorm statistics interpolated together)",
        )
        return SurfaceResult([alphas], values, np.ones(len(alphas), dtype=bool), metadata)

    def _report(self, trainer: pl.Trainer, result: Any) -> None:
        alphas = result.axes[0]
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                writer = logger.experiment
                ax = result.plot(kind="curve", xlabel="alpha (0 = initial weights, 1 = final weights)")
                ax.set_title("Interpolation from initial to final weights")
                writer.add_figure("landscape/interpolation", ax.figure, global_step=trainer.global_step)
                for i, alpha in enumerate(alphas):
                    writer.add_scalar("landscape/interpolation/alpha", float(alpha), i)
                    for name, arr in result.values.items():
                        writer.add_scalar(f"landscape/interpolation/{name}", float(arr[i]), i)
                writer.flush()
        log_dir = trainer.log_dir
        if trainer.is_global_zero and log_dir is not None:
            out = os.path.join(log_dir, "super_convergence")
            os.makedirs(out, exist_ok=True)
            data = {"alpha": alphas.tolist(),
                    **{k: [v if math.isfinite(v) else None for v in arr.tolist()] for k, arr in result.values.items()},
                    "metadata": result.metadata}
            with open(os.path.join(out, "interpolation.json"), "w") as f:
                json.dump(data, f, indent=2)
        rank_zero_info(
            "SuperConvergence interpolation (alpha: train loss): "
            + ", ".join(f"{a:g}: {v:.4g}" for a, v in zip(alphas, result.values.get("train_loss", [])))
        )

    # ------------------------------------------------------------------------------------------------
    # checkpointing
    # ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "max_lrs": self._max_lrs,
            "schedule_total": self._schedule_total,
            "run_total": self._run_total,
            "anchor_step": self._anchor_step,
            "anchor_pos": self._anchor_pos,
            "shape": self._shape(),
            "init_state": self._init_state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._max_lrs = state_dict["max_lrs"]
        self._schedule_total = state_dict["schedule_total"]
        self._run_total = state_dict["run_total"]
        self._anchor_step = state_dict["anchor_step"]
        self._anchor_pos = state_dict["anchor_pos"]
        if state_dict.get("init_state") is not None:
            self._init_state = state_dict["init_state"]
        if state_dict.get("shape", self._shape()) != self._shape():
            rank_zero_warn(
                f"Resuming `SuperConvergence` with a different schedule shape than the checkpoint's: "
                f"{self._shape()} vs {state_dict['shape']}; the lr sequence will not continue the old one."
            )

    def _shape(self) -> dict[str, Any]:
        return {"div_factor": self.div_factor, "final_div_factor": self.final_div_factor,
                "three_phase": self.three_phase, "pct_start": self.pct_start, "anneal": self.anneal}


def _first(iterable: Iterable, n: int) -> Iterator[Any]:
    for i, item in enumerate(iterable):
        if i == n:
            return
        yield item


@contextmanager
def _evaluation_stage(trainer: pl.Trainer) -> Iterator[None]:
    """Let the data module's device-side hooks see an evaluation stage (no training augmentation)."""
    saved = trainer.state.stage
    trainer.state.stage = RunningStage.VALIDATING
    try:
        yield
    finally:
        trainer.state.stage = saved


def _mean_over_ranks(trainer: pl.Trainer, values: np.ndarray, samples: float, pl_module: pl.LightningModule
                     ) -> np.ndarray:
    """Sample-weighted mean over processes of per-process means (identity on one process)."""
    if trainer.world_size == 1:
        return np.asarray(values, dtype=np.float64)
    packed = torch.tensor([*(np.asarray(values) * samples).tolist(), samples], dtype=torch.float64,
                          device=pl_module.device)
    packed = trainer.strategy.reduce(packed, reduce_op="sum")
    packed = packed.cpu().numpy()
    return packed[:-1] / packed[-1]
