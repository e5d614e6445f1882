"""``LRRangeFinder``: Smith's learning-rate range test, run inside ``fit`` and undone afterwards.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186), Section 3.3: train
for a few hundred steps while the learning rate grows from tiny to large and read good bounds off the
loss (or, as in the paper, the validation accuracy) curve.

The callback maps hooks onto the core: the ramp is :class:`lightning_papers.schedules.Ramp`, the smoothing
and the stop rule :class:`lightning_papers.lr_suggestion.SmoothedLoss`, the suggestions and the result
:class:`lightning_papers.lr_suggestion.LRRangeResult`; each step is taken through the strategy (so DDP,
precision and gradient clipping apply) by :func:`lightning_papers.callbacks._trainer.training_step`, and
everything it touches is restored from memory afterwards - no sub-``fit``, no temporary checkpoint.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.seed import isolate_rng
from typing_extensions import override

from lightning_papers._validation import integer, one_of, real, renamed
from lightning_papers.callbacks import _trainer, evaluation, reporting
from lightning_papers.landscape import accuracy, preserved_model
from lightning_papers.lr_suggestion import SUGGESTIONS, LRRangeResult, SmoothedLoss
from lightning_papers.schedules import RAMP_SPACINGS, Ramp, Spacing, write_groups

__all__ = ["LRRangeFinder", "LRRangeResult", "classification_accuracy"]

log = logging.getLogger(__name__)


def classification_accuracy(module: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Default accuracy for the accuracy-vs-lr test: ``batch = (inputs, targets, ...)``, ``module(inputs)``
    returns logits; the package's one top-1 :func:`~lightning_papers.landscape.accuracy`. Returns
    ``(correct, total)`` as tensors so they can be summed across ranks."""
    inputs, targets = batch[0], batch[1]
    total = torch.tensor(targets.numel(), device=targets.device)
    return (accuracy(module(inputs), targets) * total).round(), total


class LRRangeFinder(_trainer.StateKeyed):
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
        spacing: ``"exponential"`` or ``"linear"`` spacing of the learning rates.
        method: suggestion method, one of ``"steepest"``, ``"valley"``, ``"minimum"``.
        smoothing: EMA factor ``beta`` in [0, 1); ``None`` picks ``min(0.98, 1 - 10 / num_steps)`` so the
            average spans about a tenth of the sweep (a fixed 0.98 lags a short sweep by half its length and
            pulls the steepest slope into the divergent tail).
        divergence_factor: stop when the smoothed loss exceeds this times the best, judged from the EMA's span
            (``1 / (1 - smoothing)`` points, at least 5) on, so noise early in the sweep does not stop it (see
            :class:`~lightning_papers.lr_suggestion.SmoothedLoss`); ``None`` never stops.
        at_epochs: run at the start of these epochs instead of once at the start of training.
        num_batches: when > 0, also measure validation accuracy on the first ``num_batches`` batches of
            the (first) validation loader every ``val_every`` steps (Smith's original accuracy-vs-lr test); the
            name every callback gives its count of evaluation batches.
        val_every: steps between accuracy measurements.
        accuracy_fn: ``fn(module, batch) -> (correct, total)``; defaults to :func:`classification_accuracy`.
        apply: ``"lr"`` sets the suggestion into the module's ``lr`` (or ``learning_rate``) attribute and
            the optimizers' param groups after the test; ``None`` only reports.
        save_results: write ``result.json`` and ``curve.png`` to ``trainer.log_dir/lr_range/`` on rank 0.
        mode: deprecated name of ``spacing``.
        val_batches: deprecated name of ``num_batches``.

    Raises:
        ValueError: for invalid arguments (eagerly), and at fit start for manual optimization or
            ``apply="lr"`` on a module without ``lr``/``learning_rate``.

    Examples:
        >>> import lightning as L
        >>> from lightning_papers.data import DigitsDataModule
        >>> from lightning_papers.modules import ImageClassifier
        >>> finder = LRRangeFinder(1e-4, 1.0, num_steps=20)
        >>> trainer = L.Trainer(max_steps=1, callbacks=[finder], logger=False, enable_checkpointing=False,
        ...                     enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
        >>> trainer.fit(ImageClassifier("resnet20"), DigitsDataModule(batch_size=16, size=8))
        >>> 1e-4 <= finder.result.suggestion <= 1.0
        True
        >>> base_lr, max_lr = finder.result.clr_bounds
        >>> finder.result.plot().figure.savefig("lr_range.png")
    """

    SUPPORTED_METHODS = tuple(SUGGESTIONS)
    SUPPORTED_APPLY = (None, "lr")
    # "mode": the name the spacing had in the state keys of checkpoints written before the rename
    _state_key_fields = ("min_lr", "max_lr", "num_steps", "mode", "at_epochs")

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        *,
        num_steps: int = 100,
        spacing: Spacing = "exponential",
        method: str = "steepest",
        smoothing: float | None = None,
        divergence_factor: float | None = 4.0,
        at_epochs: Iterable[int] | None = None,
        num_batches: int = 0,
        val_every: int = 1,
        accuracy_fn: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, torch.Tensor]] | None = None,
        apply: str | None = None,
        save_results: bool = True,
        mode: str | None = None,
        val_batches: int | None = None,
    ) -> None:
        spacing = one_of("spacing", renamed("mode", mode, "spacing", spacing, "exponential"), RAMP_SPACINGS)
        num_batches = integer("num_batches", renamed("val_batches", val_batches, "num_batches", num_batches, 0), 0)
        one_of("method", method, self.SUPPORTED_METHODS)
        one_of("apply", apply, self.SUPPORTED_APPLY)
        if not 0 < min_lr < max_lr < math.inf:
            raise ValueError(f"Expected `0 < min_lr < max_lr` (finite), got {min_lr!r} and {max_lr!r}")
        self.schedule = Ramp(min_lr, max_lr, num_steps, spacing)  # checks num_steps
        if smoothing is not None:
            real("smoothing", smoothing, 0, 1, high_open=True)
        if divergence_factor is not None:
            real("divergence_factor", divergence_factor, 1, low_open=True, high_open=True)
        epochs = None if at_epochs is None else sorted(set(at_epochs))
        if epochs is not None and (not epochs or any(not isinstance(e, int) or e < 0 for e in epochs)):
            raise ValueError(f"Expected `at_epochs` to be non-negative integers, got {at_epochs!r}")
        integer("val_every", val_every, minimum=1)

        self.min_lr, self.max_lr, self.num_steps, self.spacing = min_lr, max_lr, num_steps, spacing
        self.mode = spacing  # its name in the state keys of checkpoints written before the rename
        self.method = method
        self.smoothing = min(0.98, max(0.0, 1.0 - 10.0 / num_steps)) if smoothing is None else smoothing
        self.divergence_factor = divergence_factor
        self.at_epochs = epochs
        self.num_batches, self.val_every = num_batches, val_every
        self.accuracy_fn = accuracy_fn or classification_accuracy
        self.apply = apply
        self.save_results = save_results
        self.results: dict[int, LRRangeResult] = {}
        self._done: set[int] = set()

    @property
    def result(self) -> LRRangeResult | None:
        """The latest range test's result (``None`` before one has run)."""
        return self.results[max(self.results)] if self.results else None

    # -- hooks --------------------------------------------------------------------------------------------
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise ValueError("Expected automatic optimization; `LRRangeFinder` does not drive manual optimization")
        if self.apply == "lr" and self._lr_attribute(pl_module) is None:
            raise ValueError("Expected the module to have an `lr` or `learning_rate` attribute for `apply='lr'`")

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # at the start of training the data and (restored) optimizer state exist; epoch 0 is not special
        if self.at_epochs is None and not self._done:
            self._run(trainer, pl_module, key=trainer.current_epoch, suffix="")

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self.at_epochs is not None and epoch in self.at_epochs and epoch not in self._done:
            self._run(trainer, pl_module, key=epoch, suffix=f"/epoch{epoch}")

    # -- the sweep ----------------------------------------------------------------------------------------
    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, key: int, suffix: str) -> None:
        result = LRRangeResult(method=self.method, epoch=trainer.current_epoch)
        snapshot = _trainer.TrainingSnapshot(trainer, pl_module)
        try:
            with isolate_rng(), _trainer.silenced_callbacks(trainer):
                self._sweep(trainer, pl_module, result)
        finally:
            snapshot.restore()
        if trainer.is_global_zero:
            result.compute_suggestions()
        # every rank has the same (rank-averaged) curve; broadcast anyway so all agree to the last bit
        result = trainer.strategy.broadcast(result, src=0)
        self.results[key] = result
        self._done.add(key)
        if result.problems:
            rank_zero_warn(f"LR range test at epoch {result.epoch}: its curve cannot be trusted ({result.verdict()}); "
                           "lengthen or widen the sweep (the numbers are in `result.problems`)")
        if self.apply == "lr" and result.suggestion is not None:
            self._apply(trainer, pl_module, result.suggestion)
        self._report(trainer, result, suffix)

    def _sweep(self, trainer: pl.Trainer, pl_module: pl.LightningModule, result: LRRangeResult) -> None:
        optimizer = trainer.optimizers[0]
        loader = trainer.train_dataloader
        if isinstance(loader, torch.utils.data.DataLoader) and loader.persistent_workers and loader.num_workers:
            rank_zero_warn("`LRRangeFinder` shares the train loader's persistent workers with `fit`: the first epoch "
                           "after the test starts a fresh pass over the data (`persistent_workers=False` avoids it)")
        batches = _trainer.cycle_batches(loader)
        val_batches = evaluation.evaluation_batches(trainer, pl_module, "val", self.num_batches,
                                                    same_on_all_ranks=False) if self.num_batches else []
        ema = SmoothedLoss(self.smoothing, self.divergence_factor)
        pl_module.train()
        with reporting.progress_bar(trainer, self.num_steps, "LR range test") as progress:
            for step in range(self.num_steps):
                lr = self.schedule(step)
                write_groups(optimizer, lr)
                loss, skipped = _trainer.training_step(trainer, pl_module, optimizer, batches, step)
                progress.update(1)
                if skipped or loss is None:
                    result.skipped_steps += 1
                    continue
                value = float(trainer.strategy.reduce(loss, reduce_op="mean"))
                result.lrs.append(lr)
                result.losses.append(value)
                result.smoothed_losses.append(ema.update(value))
                if val_batches:
                    measure = step % self.val_every == self.val_every - 1 or step == self.num_steps - 1
                    result.val_accuracies.append(self._accuracy(trainer, pl_module, val_batches)
                                                 if measure and ema.stop_reason is None else math.nan)
                progress.set_postfix(lr=f"{lr:.2e}", loss=f"{value:.4f}")
                if trainer.strategy.reduce_boolean_decision(ema.stop_reason is not None, all=False):
                    result.stop_reason = ema.stop_reason or "diverged"
                    break

    def _accuracy(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batches: list[Any]) -> float:
        correct = torch.zeros((), device=pl_module.device, dtype=torch.float64)
        total = torch.zeros_like(correct)
        with preserved_model(pl_module), torch.no_grad(), trainer.precision_plugin.val_step_context():
            pl_module.eval()
            for batch in batches:
                c, t = self.accuracy_fn(pl_module, batch)
                correct += c.double()
                total += torch.as_tensor(t, device=correct.device).double()
        correct = trainer.strategy.reduce(correct, reduce_op="sum")
        total = trainer.strategy.reduce(total, reduce_op="sum")
        return float(correct / total) if total > 0 else float("nan")

    # -- after the sweep ----------------------------------------------------------------------------------
    @staticmethod
    def _lr_attribute(pl_module: pl.LightningModule) -> str | None:
        return next((name for name in ("lr", "learning_rate") if hasattr(pl_module, name)), None)

    def _apply(self, trainer: pl.Trainer, pl_module: pl.LightningModule, lr: float) -> None:
        name = self._lr_attribute(pl_module)
        if name is not None:
            setattr(pl_module, name, lr)
            if name in pl_module.hparams:
                pl_module.hparams[name] = lr
        write_groups(trainer.optimizers, lr, initial=True)
        for cfg in trainer.lr_scheduler_configs:
            if hasattr(cfg.scheduler, "base_lrs"):
                cfg.scheduler.base_lrs = [lr] * len(cfg.scheduler.base_lrs)

    def _report(self, trainer: pl.Trainer, result: LRRangeResult, suffix: str) -> None:
        name = suffix.replace("/", "_")
        figures, files = {}, {}
        if trainer.is_global_zero:
            log.info("LR range test: %s", result.summary())
            figures = {f"lr_range/curve{suffix}": result.plot().figure}
            files = {f"result{name}.json": result.to_dict()}
        reporting.report(
            trainer, "lr_range", figures=figures, files=files, save_files=self.save_results,
            series={f"lr_range/loss{suffix}": result.losses, f"lr_range/loss_smoothed{suffix}": result.smoothed_losses,
                    f"lr_range/lr{suffix}": result.lrs,
                    **({f"lr_range/val_acc{suffix}": result.val_accuracies} if result.val_accuracies else {})},
            texts={f"lr_range/suggestion{suffix}": result.summary()},
        )

    # -- checkpointing ------------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        return {"results": {k: r.to_dict() for k, r in self.results.items()}, "done": sorted(self._done)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.results = {int(k): LRRangeResult.from_dict(v) for k, v in state_dict["results"].items()}
        self._done = set(state_dict["done"])
