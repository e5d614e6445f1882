"""``LRRangeFinder``: Smith's learning-rate range test, run inside ``fit`` and undone afterwards.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186), Section 3.3: train
for a few hundred steps while the learning rate grows from tiny to large and read good bounds off the
loss (or, as in the paper, the validation accuracy) curve.

The sweep is a small loop of our own inside the ``on_train_start`` / ``on_train_epoch_start`` hook: it
calls the module's ``training_step`` through the strategy (so DDP, precision and gradient clipping apply),
keeps every piece of state it touches in memory, and restores it in ``finally:`` - no sub-``fit``, no
temporary checkpoint, no shared filesystem. The math (ramps, smoothing, suggestions) lives in
:mod:`lightning_papers.schedules` and :mod:`lightning_papers.lr_suggestion`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import CombinedLoader, rank_zero_warn
from lightning.pytorch.utilities.seed import isolate_rng
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature

from lightning_papers.lr_suggestion import SUGGESTIONS, clr_bounds, suggest
from lightning_papers.schedules import RAMP_MODES, Ramp

__all__ = ["LRRangeFinder", "LRRangeResult", "classification_accuracy"]

log = logging.getLogger(__name__)


def classification_accuracy(module: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Default accuracy for the accuracy-vs-lr mode: ``batch = (inputs, targets, ...)``, ``module(inputs)``
    returns logits. Returns ``(correct, total)`` as tensors so they can be summed across ranks."""
    inputs, targets = batch[0], batch[1]
    logits = module(inputs)
    correct = (logits.argmax(dim=-1) == targets).sum()
    return correct, torch.tensor(targets.numel(), device=correct.device)


@dataclass
class LRRangeResult:
    """What one range test measured, and what it suggests.

    Attributes:
        lrs: learning rate of each recorded optimizer step.
        losses: raw training loss (mean over micro-batches and ranks) of each step.
        smoothed_losses: bias-corrected EMA of ``losses`` (the first equals the first raw loss).
        val_accuracies: validation accuracy after each step, NaN where not measured; empty when unused.
        method: suggestion method (``"steepest"``, ``"valley"`` or ``"minimum"``).
        suggestion: suggested learning rate, or ``None``.
        clr_bounds: Smith's ``(base_lr, max_lr)``, or ``None``.
        stop_reason: ``"completed"``, ``"diverged"`` or ``"non-finite"``.
        skipped_steps: optimizer steps skipped by the AMP grad scaler (not recorded).
        epoch: the epoch at whose start the test ran.
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed_losses: list[float] = field(default_factory=list)
    val_accuracies: list[float] = field(default_factory=list)
    method: str = "steepest"
    suggestion: float | None = None
    clr_bounds: tuple[float, float] | None = None
    stop_reason: str = "completed"
    skipped_steps: int = 0
    epoch: int = 0

    def compute_suggestions(self) -> None:
        """(Re)compute :attr:`suggestion` and :attr:`clr_bounds` from the curves."""
        accuracies = self.val_accuracies or None
        self.suggestion = suggest(self.method, self.lrs, self.smoothed_losses, accuracies)
        self.clr_bounds = clr_bounds(self.lrs, self.smoothed_losses, accuracies)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become ``None``)."""

        def clean(values: list[float]) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in values]

        out = asdict(self)
        for key in ("lrs", "losses", "smoothed_losses", "val_accuracies"):
            out[key] = clean(out[key])
        out["clr_bounds"] = list(self.clr_bounds) if self.clr_bounds is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRRangeResult:
        data = dict(data)
        for key in ("lrs", "losses", "smoothed_losses", "val_accuracies"):
            data[key] = [float("nan") if v is None else float(v) for v in data.get(key, [])]
        if data.get("clr_bounds") is not None:
            data["clr_bounds"] = tuple(data["clr_bounds"])
        return cls(**data)

    def plot(self, ax: Any = None) -> Any:
        """Loss (raw and smoothed) against lr on a log axis, suggestions marked; returns the Figure.

        Args:
            ax: a matplotlib Axes to draw into; a new Figure (not registered with pyplot) when ``None``.
        """
        if ax is None:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(6, 4))
            ax = fig.subplots()
        fig = ax.figure
        ax.plot(self.lrs, self.losses, color="0.7", lw=1, label="loss")
        ax.plot(self.lrs, self.smoothed_losses, color="C0", lw=2, label="smoothed loss")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        if self.clr_bounds is not None:
            ax.axvspan(*self.clr_bounds, color="C2", alpha=0.15, label="CLR bounds")
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="C3", ls="--", label=f"{self.method}: {self.suggestion:.2e}")
        if self.val_accuracies:
            pairs = [(lr, a) for lr, a in zip(self.lrs, self.val_accuracies) if math.isfinite(a)]
            if pairs:
                twin = ax.twinx()
                twin.plot(*zip(*pairs), "o-", color="C1", ms=3, label="val accuracy")
                twin.set_ylabel("validation accuracy")
        finite = [v for v in self.smoothed_losses if math.isfinite(v)]
        if finite:  # keep a divergent tail from flattening the interesting part
            low = min(finite)
            # the window spans the curve up to its minimum (which may first rise before it falls)
            high = max(finite[: finite.index(low) + 1])
            if high - low <= 1e-6 * max(abs(low), 1.0):
                high = max(finite)
            if high - low <= 1e-6 * max(abs(low), 1.0):
                high = low + max(abs(low), 1.0) * 0.01
            ax.set_ylim(low - 0.1 * (high - low), high + 0.5 * (high - low))
        ax.legend(loc="lower left", fontsize="small")
        ax.set_title("LR range test")
        return fig


class _Snapshot:
    """In-memory copy of everything a sweep changes; ``restore()`` puts it back bit for bit."""

    def __init__(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainer, self.module = trainer, pl_module
        self.model_state = copy.deepcopy(pl_module.state_dict())
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in pl_module.parameters()]
        self.training = {name: m.training for name, m in pl_module.named_modules()}
        self.optimizers = [copy.deepcopy(opt.state_dict()) for opt in trainer.optimizers]
        self.schedulers = [copy.deepcopy(cfg.scheduler.state_dict()) for cfg in trainer.lr_scheduler_configs]
        self.precision = copy.deepcopy(trainer.precision_plugin.state_dict())
        self.metrics = self._metric_states(pl_module)
        self.fx_name = pl_module._current_fx_name

    @staticmethod
    def _metric_states(pl_module: pl.LightningModule) -> dict[str, Any]:
        # torchmetrics states are not in the state_dict; a sweep would otherwise leak into epoch metrics
        from torchmetrics import Metric

        return {
            name: (copy.deepcopy(m.metric_state), m._update_count, m._computed)
            for name, m in pl_module.named_modules()
            if isinstance(m, Metric)
        }

    def restore(self) -> None:
        module, trainer = self.module, self.trainer
        module.load_state_dict(self.model_state)
        for p, grad in zip(module.parameters(), self.grads):
            p.grad = grad
        for name, m in module.named_modules():
            m.train(self.training.get(name, m.training))
        for opt, state in zip(trainer.optimizers, self.optimizers):
            opt.load_state_dict(state)
        for cfg, state in zip(trainer.lr_scheduler_configs, self.schedulers):
            cfg.scheduler.load_state_dict(state)
        if self.precision:
            trainer.precision_plugin.load_state_dict(self.precision)
        modules = dict(module.named_modules())
        for name, (state, update_count, computed) in self.metrics.items():
            metric = modules[name]
            for key, value in state.items():
                setattr(metric, key, value)
            metric._update_count, metric._computed = update_count, computed
        module._current_fx_name = self.fx_name


@contextmanager
def _private_results(trainer: pl.Trainer) -> Iterator[Any]:
    """Route ``self.log`` calls of the sweep's training steps into a throw-away result collection."""
    epoch_loop = trainer.fit_loop.epoch_loop
    saved = epoch_loop._results
    epoch_loop._results = type(saved)(training=True)
    try:
        yield epoch_loop._results
    finally:
        epoch_loop._results = saved


@contextmanager
def _callbacks_silenced(trainer: pl.Trainer) -> Iterator[None]:
    """Keep other callbacks' backward/optimizer hooks from seeing the sweep's steps (the module's own
    hooks, gradient clipping included, still run: they are part of how it trains)."""
    saved = trainer.callbacks
    trainer.callbacks = []
    try:
        yield
    finally:
        trainer.callbacks = saved


def _cycle(iterable: Iterable) -> Iterator[Any]:
    """Yield batches forever, starting a new pass when the loader is exhausted."""
    while True:
        empty = True
        for item in iterable:
            empty = False
            yield item
        if empty:
            raise RuntimeError("The train dataloader is empty; cannot run the LR range test")


class LRRangeFinder(Callback):
    """Learning-rate range test (Smith 2017) that runs inside ``fit`` and leaves no trace.

    Sweeps the lr from ``min_lr`` to ``max_lr`` over ``num_steps`` optimizer steps, records the training
    loss of each step (mean over its accumulated micro-batches and over DDP ranks; the AMP scaler's skipped
    steps are not recorded), smooths it with a bias-corrected EMA, stops early when the smoothed loss
    exceeds ``divergence_factor`` times the best one or turns non-finite, then restores model, optimizer,
    schedulers, precision (grad scaler), torchmetrics states and RNG exactly. The result is in
    :attr:`result` (and :attr:`results` per epoch), logged under ``lr_range/`` and written to
    ``trainer.log_dir/lr_range/``.

    Args:
        min_lr: first learning rate (exact).
        max_lr: last learning rate (exact, unless the test stops early).
        num_steps: optimizer steps of the sweep.
        mode: ``"exponential"`` or ``"linear"`` spacing.
        method: suggestion method, one of ``"steepest"``, ``"valley"``, ``"minimum"``.
        smoothing: EMA factor ``beta`` in [0, 1); ``None`` picks ``min(0.98, 1 - 10 / num_steps)`` so the
            average spans about a tenth of the sweep (a fixed 0.98 lags a short sweep by half its length and
            pulls the steepest slope into the divergent tail).
        divergence_factor: stop when the smoothed loss exceeds this times the best; ``None`` never stops.
        at_epochs: run at the start of these epochs instead of once at the start of training.
        val_batches: when > 0, also measure validation accuracy on the first ``val_batches`` batches of
            the (first) validation loader every ``val_every`` steps (Smith's original accuracy-vs-lr test).
        val_every: steps between accuracy measurements.
        accuracy_fn: ``fn(module, batch) -> (correct, total)``; defaults to
            :func:`classification_accuracy`.
        apply: ``"lr"`` sets the suggestion into the module's ``lr`` (or ``learning_rate``) attribute and
            the optimizers' param groups after the test; ``None`` only reports.
        save_results: write ``result.json`` and ``curve.png`` to ``trainer.log_dir/lr_range/`` on rank 0.

    Raises:
        ValueError: for invalid arguments (eagerly), and at fit start for manual optimization or
            ``apply="lr"`` on a module without ``lr``/``learning_rate``.

    Example::

        finder = LRRangeFinder(min_lr=1e-6, max_lr=1.0, num_steps=100)
        trainer = Trainer(max_epochs=10, callbacks=[finder])
        trainer.fit(model, datamodule)
        finder.result.suggestion, finder.result.clr_bounds
        finder.result.plot().savefig("lr_range.png")
    """

    SUPPORTED_MODES = RAMP_MODES
    SUPPORTED_METHODS = tuple(SUGGESTIONS)
    SUPPORTED_APPLY = (None, "lr")

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        mode: str = "exponential",
        method: str = "steepest",
        smoothing: float | None = None,
        divergence_factor: float | None = 4.0,
        at_epochs: Iterable[int] | None = None,
        val_batches: int = 0,
        val_every: int = 1,
        accuracy_fn: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
        apply: str | None = None,
        save_results: bool = True,
    ) -> None:
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"Expected `mode` to be one of {self.SUPPORTED_MODES}, got {mode!r}")
        if method not in self.SUPPORTED_METHODS:
            raise ValueError(f"Expected `method` to be one of {self.SUPPORTED_METHODS}, got {method!r}")
        if apply not in self.SUPPORTED_APPLY:
            raise ValueError(f"Expected `apply` to be one of {self.SUPPORTED_APPLY}, got {apply!r}")
        if not 0 < min_lr < max_lr:
            raise ValueError(f"Expected `0 < min_lr < max_lr`, got {min_lr!r} and {max_lr!r}")
        if num_steps < 2:
            raise ValueError(f"Expected `num_steps >= 2`, got {num_steps!r}")
        if smoothing is not None and not 0.0 <= smoothing < 1.0:
            raise ValueError(f"Expected `smoothing` in [0, 1) or None, got {smoothing!r}")
        if divergence_factor is not None and not divergence_factor > 1.0:
            raise ValueError(f"Expected `divergence_factor > 1` or None, got {divergence_factor!r}")
        epochs = None if at_epochs is None else sorted(set(at_epochs))
        if epochs is not None and (not epochs or any(not isinstance(e, int) or e < 0 for e in epochs)):
            raise ValueError(f"Expected `at_epochs` to be non-negative integers, got {at_epochs!r}")
        if val_batches < 0:
            raise ValueError(f"Expected `val_batches >= 0`, got {val_batches!r}")
        if val_every < 1:
            raise ValueError(f"Expected `val_every >= 1`, got {val_every!r}")

        self.schedule = Ramp(min_lr, max_lr, num_steps, mode)
        self.min_lr, self.max_lr, self.num_steps, self.mode = min_lr, max_lr, num_steps, mode
        self.method = method
        self.smoothing = min(0.98, max(0.0, 1.0 - 10.0 / num_steps)) if smoothing is None else smoothing
        self.divergence_factor = divergence_factor
        self.at_epochs = epochs
        self.val_batches = val_batches
        self.val_every = val_every
        self.accuracy_fn = accuracy_fn or classification_accuracy
        self.apply = apply
        self.save_results = save_results
        self.results: dict[int, LRRangeResult] = {}
        self._done: set[int] = set()

    @property
    def result(self) -> LRRangeResult | None:
        """The latest range test's result (``None`` before one has run)."""
        return self.results[max(self.results)] if self.results else None

    # ------------------------------------------------------------------------------------------------
    # hooks
    # ------------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise ValueError("Expected automatic optimization; `LRRangeFinder` does not drive manual optimization")
        if self.apply == "lr" and self._lr_attribute(pl_module) is None:
            raise ValueError("Expected the module to have an `lr` or `learning_rate` attribute for `apply='lr'`")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # at the start of training the data and (restored) optimizer state exist; epoch 0 is not special
        if self.at_epochs is None and not self._done:
            self._run(trainer, pl_module, key=trainer.current_epoch, suffix="")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.at_epochs is not None and epoch in self.at_epochs and epoch not in self._done:
            self._run(trainer, pl_module, key=epoch, suffix=f"/epoch{epoch}")

    # ------------------------------------------------------------------------------------------------
    # the sweep
    # ------------------------------------------------------------------------------------------------
    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, key: int, suffix: str) -> None:
        result = LRRangeResult(method=self.method, epoch=trainer.current_epoch)
        snapshot = _Snapshot(trainer, pl_module)
        try:
            with isolate_rng(), _private_results(trainer) as results, _callbacks_silenced(trainer):
                self._sweep(trainer, pl_module, result, results)
        finally:
            snapshot.restore()
        if trainer.is_global_zero:
            result.compute_suggestions()
        # every rank has the same (rank-averaged) curve; broadcast anyway so all agree to the last bit
        result = trainer.strategy.broadcast(result, src=0)
        self.results[key] = result
        self._done.add(key)
        if self.apply == "lr" and result.suggestion is not None:
            self._apply(trainer, pl_module, result.suggestion)
        self._report(trainer, result, suffix)

    def _train_iterable(self, trainer: pl.Trainer) -> Iterable:
        loaders = trainer.train_dataloader
        if loaders is None:
            raise RuntimeError("No train dataloader is set up; cannot run the LR range test")
        if isinstance(loaders, torch.utils.data.DataLoader):
            if loaders.persistent_workers and loaders.num_workers > 0:
                rank_zero_warn(
                    "`LRRangeFinder` shares the persistent workers of the train dataloader with `fit`; the "
                    "first training epoch after the test starts a fresh pass over the data."
                )
            return loaders
        return _BatchOnly(CombinedLoader(loaders, "max_size_cycle"))

    def _val_batches(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[Any]:
        if not self.val_batches:
            return []
        loaders = trainer.val_dataloaders
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if loaders else None
        if loaders is None:
            rank_zero_warn("`val_batches > 0` but there is no validation dataloader; accuracy is not measured.")
            return []
        batches = []
        for batch in loaders:
            if len(batches) == self.val_batches:
                break
            batches.append(self._to_device(trainer, pl_module, batch))
        return batches

    @staticmethod
    def _to_device(trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any) -> Any:
        batch = trainer.precision_plugin.convert_input(batch)
        batch = pl_module._on_before_batch_transfer(batch, dataloader_idx=0)
        return trainer.strategy.batch_to_device(batch, dataloader_idx=0)

    def _accuracy(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batches: list[Any]) -> float:
        was_training = {name: m.training for name, m in pl_module.named_modules()}
        pl_module.eval()
        correct = torch.zeros((), device=pl_module.device, dtype=torch.float64)
        total = torch.zeros_like(correct)
        with torch.no_grad(), trainer.precision_plugin.val_step_context():
            for batch in batches:
                c, t = self.accuracy_fn(pl_module, batch)
                correct += c.double()
                total += torch.as_tensor(t, device=correct.device).double()
        for name, m in pl_module.named_modules():
            m.train(was_training[name])
        correct = trainer.strategy.reduce(correct, reduce_op="sum")
        total = trainer.strategy.reduce(total, reduce_op="sum")
        return float(correct / total) if total > 0 else float("nan")

    def _sweep(self, trainer: pl.Trainer, pl_module: pl.LightningModule, result: LRRangeResult, results: Any) -> None:
        optimizer = trainer.optimizers[0]
        accumulate = trainer.accumulate_grad_batches
        strategy = trainer.strategy
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        with_idx = is_param_in_hook_signature(pl_module.training_step, "batch_idx", min_args=2)
        batches = _cycle(self._train_iterable(trainer))
        val_batches = self._val_batches(trainer, pl_module)
        no_sync = getattr(strategy.model, "no_sync", None)
        pl_module.train()

        avg, count, best = 0.0, 0, math.inf
        progress = _progress(trainer, self.num_steps)
        try:
            for step in range(self.num_steps):
                lr = self.schedule(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                losses: list[torch.Tensor] = []
                calls = [0]

                def closure(step: int = step, losses: list = losses, calls: list = calls) -> torch.Tensor | None:
                    calls[0] += 1
                    pl_module.optimizer_zero_grad(trainer.current_epoch, step, optimizer)
                    micro_losses = []
                    for k in range(accumulate):
                        batch = self._to_device(trainer, pl_module, next(batches))
                        results.batch, results.batch_size = batch, None
                        last = k == accumulate - 1
                        with nullcontext() if last or no_sync is None else no_sync():
                            pl_module._current_fx_name = "training_step"
                            args = (batch, step * accumulate + k) if with_idx else (batch,)
                            output = strategy.training_step(*args)
                            loss = output["loss"] if isinstance(output, dict) else output
                            if loss is None:
                                continue
                            strategy.backward(loss / accumulate, optimizer)
                        micro_losses.append(loss.detach().float())
                    if not micro_losses:
                        return None
                    mean = torch.stack(micro_losses).mean()
                    if calls[0] == 1:  # LBFGS may call the closure again: record the first evaluation
                        losses.append(mean)
                    return mean

                scale_before = scaler.get_scale() if scaler is not None and scaler.is_enabled() else None
                strategy.optimizer_step(optimizer, closure, model=pl_module)
                skipped = scale_before is not None and scaler.get_scale() < scale_before
                if skipped or not losses:
                    result.skipped_steps += 1
                    progress.update(1)
                    continue
                loss = float(strategy.reduce(losses[0], reduce_op="mean"))

                result.lrs.append(lr)
                result.losses.append(loss)
                stop = None
                if not math.isfinite(loss):
                    result.smoothed_losses.append(float("nan"))
                    stop = "non-finite"
                else:
                    count += 1
                    avg = self.smoothing * avg + (1.0 - self.smoothing) * loss
                    smoothed = avg / (1.0 - self.smoothing**count)  # bias-corrected: first == raw
                    result.smoothed_losses.append(smoothed)
                    best = min(best, smoothed)
                    if self.divergence_factor is not None and smoothed > self.divergence_factor * best:
                        stop = "diverged"
                if val_batches:
                    measure = step % self.val_every == self.val_every - 1 or step == self.num_steps - 1
                    acc = self._accuracy(trainer, pl_module, val_batches) if measure and stop is None else math.nan
                    result.val_accuracies.append(acc)
                progress.update(1)
                progress.set_postfix(lr=f"{lr:.2e}", loss=f"{loss:.4f}")
                if strategy.reduce_boolean_decision(stop is not None, all=False):
                    result.stop_reason = stop or "diverged"
                    break
        finally:
            progress.close()

    # ------------------------------------------------------------------------------------------------
    # after the sweep
    # ------------------------------------------------------------------------------------------------
    @staticmethod
    def _lr_attribute(pl_module: pl.LightningModule) -> str | None:
        return next((name for name in ("lr", "learning_rate") if hasattr(pl_module, name)), None)

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule, lr: float) -> None:
        name = self._lr_attribute(pl_module)
        if name is not None:
            setattr(pl_module, name, lr)
            if name in pl_module.hparams:
                pl_module.hparams[name] = lr
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
                if "initial_lr" in group:
                    group["initial_lr"] = lr
        for cfg in trainer.lr_scheduler_configs:
            if hasattr(cfg.scheduler, "base_lrs"):
                cfg.scheduler.base_lrs = [lr] * len(cfg.scheduler.base_lrs)

    def _report(self, trainer: pl.Trainer, result: LRRangeResult, suffix: str) -> None:
        log_dir = trainer.log_dir  # a collective call under DDP: every rank must reach it
        if not trainer.is_global_zero:
            return
        bounds = result.clr_bounds
        text = (
            f"suggestion ({result.method}): {result.suggestion!r}; "
            f"CLR bounds: {bounds!r}; points: {len(result.lrs)}; stop: {result.stop_reason}"
        )
        log.info("LR range test: %s", text)
        figure = result.plot() if (trainer.loggers or self.save_results) else None
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment
                for i, (lr, loss, smoothed) in enumerate(zip(result.lrs, result.losses, result.smoothed_losses)):
                    writer.add_scalar(f"lr_range/loss{suffix}", loss, i)
                    writer.add_scalar(f"lr_range/loss_smoothed{suffix}", smoothed, i)
                    writer.add_scalar(f"lr_range/lr{suffix}", lr, i)
                for i, acc in enumerate(result.val_accuracies):
                    if math.isfinite(acc):
                        writer.add_scalar(f"lr_range/val_acc{suffix}", acc, i)
                writer.add_figure(f"lr_range/curve{suffix}", figure, close=False)
                writer.add_text(f"lr_range/suggestion{suffix}", text)
                writer.flush()
            else:
                for i, (lr, loss, smoothed) in enumerate(zip(result.lrs, result.losses, result.smoothed_losses)):
                    metrics = {
                        f"lr_range/loss{suffix}": loss,
                        f"lr_range/loss_smoothed{suffix}": smoothed,
                        f"lr_range/lr{suffix}": lr,
                    }
                    if result.val_accuracies and math.isfinite(result.val_accuracies[i]):
                        metrics[f"lr_range/val_acc{suffix}"] = result.val_accuracies[i]
                    logger.log_metrics(metrics, step=i)
        if self.save_results and log_dir is not None:
            out = os.path.join(log_dir, "lr_range")
            os.makedirs(out, exist_ok=True)
            name = suffix.replace("/", "_")
            with open(os.path.join(out, f"result{name}.json"), "w") as f:
                json.dump(result.to_dict(), f, indent=2)
            figure.savefig(os.path.join(out, f"curve{name}.png"), dpi=100)

    # ------------------------------------------------------------------------------------------------
    # checkpointing
    # ------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"results": {k: r.to_dict() for k, r in self.results.items()}, "done": sorted(self._done)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.results = {int(k): LRRangeResult.from_dict(v) for k, v in state_dict["results"].items()}
        self._done = set(state_dict["done"])


class _BatchOnly:
    """Iterate a ``CombinedLoader`` yielding only the batch (it yields ``batch, batch_idx, dataloader_idx``)."""

    def __init__(self, loader: CombinedLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        for batch, _, _ in self.loader:
            yield batch


def _progress(trainer: pl.Trainer, total: int) -> Any:
    from tqdm.auto import tqdm

    disable = not trainer.is_global_zero or trainer.progress_bar_callback is None
    return tqdm(total=total, desc="LR range test", leave=False, disable=disable, dynamic_ncols=True)
