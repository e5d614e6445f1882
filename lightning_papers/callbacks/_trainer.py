"""Training steps of the package's own (the range test) and what "a step" is, through the Trainer.

DESIGN.md: "step" means one optimizer step, counted per optimizer. :class:`TrainingSnapshot` and
:func:`training_step` take steps the way ``fit`` takes them (the strategy, precision and clipping apply) and put
everything back; :class:`StateKeyed` lets two instances of a callback share a Trainer. Evaluation batches and the
module's loss are in :mod:`~lightning_papers.callbacks.evaluation`, reporting in
:mod:`~lightning_papers.callbacks.reporting`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import CombinedLoader
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature
from typing_extensions import override

from lightning_papers.callbacks.evaluation import (
    _metric_states,
    _prepare,
    _restore_metric_states,
    _step_loss,
    captured_logs,
)

__all__ = ["StateKeyed", "TrainingSnapshot", "cycle_batches", "optimizer_index", "planned_optimizer_steps",
           "silenced_callbacks", "training_step"]


def cycle_batches(loaders: Any) -> Iterator[Any]:
    """Training batches forever (a new pass when the loader is exhausted); several loaders are combined as a
    training epoch combines them.

    Raises:
        RuntimeError: for an empty loader.
    """
    if loaders is None:
        raise RuntimeError("Expected a train dataloader, got none")
    if not isinstance(loaders, torch.utils.data.DataLoader):
        loaders = _BatchesOf(CombinedLoader(loaders, "max_size_cycle"))
    while True:
        empty = True
        for item in loaders:
            empty = False
            yield item
        if empty:
            raise RuntimeError("Expected a non-empty train dataloader, got an empty one")


class _BatchesOf:
    """A ``CombinedLoader`` yielding only the batch (it yields ``batch, batch_idx, dataloader_idx``)."""

    def __init__(self, loader: CombinedLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        for batch, _, _ in self.loader:
            yield batch


# ----------------------------------------------------------------------------------------------------
# what a step is: optimizer steps, counted per optimizer
# ----------------------------------------------------------------------------------------------------
def optimizer_index(trainer: pl.Trainer, optimizer: torch.optim.Optimizer) -> int | None:
    """Position of ``optimizer`` (a torch optimizer or Lightning's wrapper of one) in ``trainer.optimizers``."""
    raw = getattr(optimizer, "optimizer", optimizer)
    return next((i for i, opt in enumerate(trainer.optimizers) if opt is optimizer or opt is raw), None)


def planned_optimizer_steps(trainer: pl.Trainer) -> float:
    """Optimizer steps EACH optimizer is planned to take in this fit (``inf`` when unbounded).

    Automatic optimization (one optimizer): ``trainer.estimated_stepping_batches``. Manual optimization: one
    ``optimizer.step()`` of every optimizer per batch (a GAN), so the batches of the run; ``max_steps`` bounds
    them by ``max_steps / len(optimizers)``, because Lightning's ``global_step`` counts the steps of all optimizers.
    """
    total = trainer.estimated_stepping_batches  # sets up the train loader when it is not yet
    module = trainer.lightning_module
    if module is None or module.automatic_optimization:
        return total
    n = max(1, len(trainer.optimizers))
    batches = trainer.num_training_batches
    batches = math.inf if trainer.max_epochs == -1 or not math.isfinite(batches) else batches * max(
        trainer.max_epochs or 1, 1)
    if trainer.max_steps != -1:
        batches = min(batches, math.ceil(trainer.max_steps / n))
    return batches


class TrainingSnapshot:
    """In-memory copy of everything training steps change; ``restore()`` puts it back bit for bit: weights,
    ``.grad``, train/eval flags, optimizers, schedulers, the precision plugin (grad scaler), metric states."""

    def __init__(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainer, self.module = trainer, pl_module
        self.model_state = copy.deepcopy(pl_module.state_dict())
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in pl_module.parameters()]
        self.training = {name: m.training for name, m in pl_module.named_modules()}
        self.optimizers = [copy.deepcopy(opt.state_dict()) for opt in trainer.optimizers]
        self.schedulers = [copy.deepcopy(cfg.scheduler.state_dict()) for cfg in trainer.lr_scheduler_configs]
        self.precision = copy.deepcopy(trainer.precision_plugin.state_dict())
        self.metrics = _metric_states(pl_module)

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
        _restore_metric_states(module, self.metrics)


@contextmanager
def silenced_callbacks(trainer: pl.Trainer) -> Iterator[None]:
    """Keep other callbacks' backward/optimizer hooks from seeing steps of our own (the module's own hooks,
    gradient clipping included, still run: they are part of how it trains)."""
    saved, trainer.callbacks = trainer.callbacks, []  # type: ignore[attr-defined]  # Lightning sets it, undeclared
    try:
        yield
    finally:
        trainer.callbacks = saved  # type: ignore[attr-defined]  # as above


def training_step(trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer,
                  batches: Iterator[Any], step: int) -> tuple[torch.Tensor | None, bool]:
    """One optimizer step the way ``fit`` takes it: ``accumulate_grad_batches`` micro-batches through the strategy
    (DDP gradient sync on the last only), precision and clipping applied, ``self.log`` calls captured.

    Returns:
        ``(loss, skipped)``: the mean loss of the micro-batches at the first closure call (``None`` when the step
        returned none) and whether the AMP grad scaler skipped the step.
    """
    accumulate = trainer.accumulate_grad_batches
    strategy = trainer.strategy
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    with_idx = is_param_in_hook_signature(pl_module.training_step, "batch_idx", min_args=2)
    no_sync = getattr(strategy.model, "no_sync", None)
    losses: list[torch.Tensor] = []
    calls = [0]

    def closure() -> torch.Tensor | None:
        calls[0] += 1
        pl_module.optimizer_zero_grad(trainer.current_epoch, step, optimizer)
        micro = []
        for k in range(accumulate):
            batch = _prepare(trainer, pl_module, next(batches))
            last = k == accumulate - 1
            with nullcontext() if last or no_sync is None else no_sync():
                args = (batch, step * accumulate + k) if with_idx else (batch,)
                loss = _step_loss(strategy.training_step(*args))
                if loss is None:
                    continue
                strategy.backward(loss / accumulate, optimizer)
            micro.append(loss.detach().float())
        if not micro:
            return None
        mean = torch.stack(micro).mean()
        if calls[0] == 1:  # LBFGS may call the closure again: record the first evaluation
            losses.append(mean)
        return mean

    scale_before = scaler.get_scale() if scaler is not None and scaler.is_enabled() else None
    with captured_logs(pl_module, keep_metrics=False):  # the caller's TrainingSnapshot restores the metrics
        strategy.optimizer_step(optimizer, closure, model=pl_module)
    skipped = scale_before is not None and scaler is not None and scaler.get_scale() < scale_before
    return (losses[0] if losses else None), bool(skipped)


class StateKeyed(Callback):
    """Checkpoint-state plumbing for callbacks two of which can share a Trainer: a ``state_key`` made of the
    arguments that tell instances apart (Lightning's ``_generate_state_key``), and checkpoints saved under the
    old key, the bare class name, still load.

    Subclasses list those arguments in ``_state_key_fields``, as attribute names or ``{key name: attribute}`` (a
    renamed argument keeps its key name, so checkpoints saved before the rename still load).
    """

    _state_key_fields: tuple[str, ...] | dict[str, str] = ()

    @property
    @override
    def state_key(self) -> str:
        fields = self._state_key_fields
        named = fields.items() if isinstance(fields, dict) else ((name, name) for name in fields)
        return self._generate_state_key(**{key: _key_value(getattr(self, attr)) for key, attr in named})

    @override
    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("callbacks") or {}
        old = type(self).__qualname__
        if self.state_key not in states and old in states:  # saved before instances had their own keys
            self.load_state_dict(copy.deepcopy(states[old]))


def _key_value(value: Any) -> Any:
    """A compact, stable rendering of an argument for a state key."""
    if isinstance(value, np.ndarray):
        return [round(float(v), 6) for v in value]
    if isinstance(value, (list, tuple)):
        return [_key_value(v) for v in value]
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__qualname__", type(value).__name__)
    return value


