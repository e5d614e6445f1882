"""``CurvatureMonitor``: the Hessian's top eigenvalue against the learning rate's stability threshold, during
training.

Cohen, Kaur, Li, Kolter, Talwalkar, Gradient Descent on Neural Networks Typically Occurs at the Edge of
Stability, 2021 (arXiv 2103.00065): the top eigenvalue of the training loss's Hessian rises until it reaches
``2 / lr`` (``(2 + 2 beta) / lr`` with momentum ``beta``) and hovers there. Smith & Topin, Super-Convergence, 2017
(arXiv 1708.07120), explain large learning rates through curvature; with :class:`CyclicalLR` or
:class:`SuperConvergence` attached the threshold moves with the schedule. Yao et al., PyHessian, 2020 (arXiv
1912.07145): the trace and the spectrum as well.

The callback owns no math: it takes a few fixed batches once per fit (through the module's own transfer hooks),
and every ``every_n_steps`` optimizer steps calls :func:`lightning_papers.landscape.hessian_eigenvalues`
(warm-started from the previous top eigenvector) and optionally :func:`~lightning_papers.landscape.hessian_trace`
on the module's own loss; the threshold is :func:`~lightning_papers.landscape.optimizer_stability_thresholds` of
the optimizer's current settings. Under DDP each rank takes its own batches and the Hessian-vector products are
summed over ranks, so the Hessian is that of the loss over every rank's batches and the value the same on each.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.seed import isolate_rng
from typing_extensions import override

from lightning_papers import _validation as check
from lightning_papers import landscape as ls
from lightning_papers.callbacks._trainer import StateKeyed, optimizer_index, planned_optimizer_steps
from lightning_papers.callbacks.evaluation import ModuleEvaluation, evaluation_batches, preflight
from lightning_papers.callbacks.reporting import guarded, report, sum_across_ranks
from lightning_papers.schedules import param_groups, read_momenta

log = logging.getLogger(__name__)


class CurvatureMonitor(StateKeyed):
    """Log the Hessian's top eigenvalue beside the optimizer's stability threshold every few optimizer steps.

    What is measured is the curvature of the module's own loss (what its ``training_step`` returns, else what
    ``validation_step`` returns or logs; ``loss_fn`` overrides it) on ``num_batches`` fixed batches of the
    training loader, taken once when training starts (through the module's transfer hooks, without augmentation),
    in float32. BatchNorm normalises with each batch's statistics by default (``batchnorm="batch"``: the loss the
    optimizer descends; the running statistics are not touched). Model, optimizer and RNG come back unchanged.

    TensorBoard (and every other logger): ``curvature/top_eigenvalue``, ``curvature/2_over_lr`` (the
    threshold of :func:`~lightning_papers.landscape.stability_threshold`: ``(2 + 2 momentum) / lr`` for SGD, with
    Nesterov, dampening and weight decay accounted for; ``/pg{i}`` per param group when there are several; not
    logged for adaptive optimizers, whose threshold bounds the preconditioned Hessian), ``curvature/lr``,
    ``curvature/trace`` (with ``trace=True``); when training ends the figures ``curvature/sharpness`` (both
    against the step) and ``curvature/spectrum`` (with ``spectrum=True``), saved with ``history.json`` and
    ``spectrum.json`` under ``<log_dir>/curvature/``.

    Checkpoints hold the history (so the figure of a resumed run covers the whole run) and the warm-start vector
    (a copy of the trainable parameters); the fixed batches are drawn with ``seed`` (a shuffled loader's random
    sources seeded, then restored), so a resumed run measures on the same batches, from the same start, as an
    uninterrupted one. Everything is checked on one batch at fit start (the loader, the loss, a Hessian-vector
    product through it); a measurement that fails later is a warning, never an exception out of ``fit``.

    Args:
        every_n_steps: measure after every n-th optimizer step; with several optimizers (a GAN under manual
            optimization), every n-th step of the first one. A run whose planned steps never reach ``n`` is warned
            about at train start.
        num_batches: fixed batches of the ``split`` loader (per rank) the curvature is measured on.
        split: ``"train"`` (default) or ``"val"``. Was ``dataloader``.
        k: eigenvalues per measurement (the top one is logged).
        max_iter: Lanczos steps per measurement at most (each one Hessian-vector product per batch).
        tol: stop earlier when the top pair's residual is below ``tol`` times the eigenvalue.
        trace: also estimate the trace (Hutchinson, ``trace_samples`` Rademacher vectors) at every measurement.
        trace_samples: samples per trace estimate.
        spectrum: when training ends, estimate the eigenvalue density (``spectrum_runs`` stochastic Lanczos
            quadrature runs of ``spectrum_steps`` steps) and log its figure.
        spectrum_runs: Lanczos runs of the spectrum.
        spectrum_steps: steps per run.
        batchnorm: ``"batch"`` (BatchNorm on each batch's statistics, as in training) or ``"running"`` (eval mode).
        loss_fn: ``fn(module(inputs), targets)`` on ``(inputs, targets, ...)`` batches instead of the module's loss.
        autocast_dtype: run the Hessian-vector products under autocast in this dtype (default: float32, whatever
            the Trainer's precision).
        seed: seed of the random start vectors.
        save_results: rank 0 writes the JSON files and PNGs.

    Raises:
        ValueError: for a non-positive ``every_n_steps``, ``num_batches``, ``k``, ``max_iter``, ``trace_samples``
            (below 2), ``spectrum_runs`` or ``spectrum_steps``, a non-positive ``tol``, an unknown ``split`` or
            ``batchnorm``, or an ``autocast_dtype`` that is not a torch dtype.

    Examples:
        >>> monitor = CurvatureMonitor(every_n_steps=20, trace=True)
        >>> from lightning_papers.callbacks import SuperConvergence
        >>> trainer = pl.Trainer(callbacks=[SuperConvergence(0.4), monitor])
    """

    SUPPORTED_SPLITS = ("train", "val")
    _state_key_fields = {"every_n_steps": "every_n_steps", "dataloader": "split", "num_batches": "num_batches",
                         "batchnorm": "batchnorm"}  # the key names of checkpoints saved before the rename

    def __init__(
        self,
        every_n_steps: int = 25,
        *,
        num_batches: int = 1,
        split: str = "train",
        k: int = 1,
        max_iter: int = 20,
        tol: float = 1e-2,
        trace: bool = False,
        trace_samples: int = 10,
        spectrum: bool = False,
        spectrum_runs: int = 3,
        spectrum_steps: int = 40,
        batchnorm: str = "batch",
        loss_fn: Callable | None = None,
        autocast_dtype: torch.dtype | None = None,
        seed: int = 0,
        save_results: bool = True,
        dataloader: str | None = None,
    ) -> None:
        for name, value in (("every_n_steps", every_n_steps), ("num_batches", num_batches), ("k", k),
                            ("max_iter", max_iter), ("spectrum_runs", spectrum_runs),
                            ("spectrum_steps", spectrum_steps)):
            check.positive_int(name, value)
        if check.integer("trace_samples", trace_samples) < 2:
            raise ValueError(f"Expected `trace_samples` to be an integer >= 2 (a standard error needs two), got "
                             f"{trace_samples!r}")
        check.positive_real("tol", tol)
        split = check.one_of("split", check.renamed("dataloader", dataloader, "split", split, "train"),
                             self.SUPPORTED_SPLITS)
        ls.EvaluationSpec([], batchnorm=batchnorm, autocast_dtype=autocast_dtype)  # the core's own checks, now
        check.integer("seed", seed)
        self.every_n_steps, self.num_batches, self.split = every_n_steps, num_batches, split
        self.k, self.max_iter, self.tol = k, max_iter, float(tol)
        self.trace, self.trace_samples = bool(trace), trace_samples
        self.spectrum, self.spectrum_runs, self.spectrum_steps = bool(spectrum), spectrum_runs, spectrum_steps
        self.batchnorm, self.loss_fn, self.autocast_dtype, self.seed = batchnorm, loss_fn, autocast_dtype, seed
        self.save_results = save_results
        self.history = ls.CurvatureHistory()
        self.spectrum_result: ls.HessianSpectrum | None = None
        self.last_result: ls.HessianEigenpairs | None = None
        self._last_step = -1
        self.optimizer_steps: int | None = None  # steps the first optimizer has taken (set at train start)
        self._batches: list[Any] | None = None
        self._start: ls.Direction | None = None  # the previous top eigenvector (not checkpointed)

    # -- hooks ------------------------------------------------------------------------------------------
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.optimizer_steps = None  # a checkpoint (loaded after this) or the train start sets it

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the loader, the loss and a Hessian-vector product through it, on one batch before the first step
        preflight(trainer, pl_module, "CurvatureMonitor", self.split, ModuleEvaluation(pl_module, self.loss_fn),
                  seed=self.seed, hessian_fix="pass a twice-differentiable `loss_fn=` or remove CurvatureMonitor")
        log_dir = trainer.log_dir  # a collective under DDP: every rank is here
        self._results_dir = os.path.join(log_dir, "curvature") if log_dir and self.save_results else None
        self._failed = False

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.optimizer_steps is None:  # a fresh run, or a checkpoint of an older version
            self.optimizer_steps = trainer.global_step // max(1, len(trainer.optimizers))
        planned = planned_optimizer_steps(trainer)
        if math.isfinite(planned) and planned < self.every_n_steps:
            name = type(trainer.optimizers[0]).__name__ if trainer.optimizers else "optimizer"
            rank_zero_warn(f"CurvatureMonitor: every_n_steps={self.every_n_steps} never fires: the run plans "
                           f"{planned:g} steps of the first optimizer ({name}); lower `every_n_steps` or train longer")
        if not any(isinstance(opt, torch.optim.SGD) for opt in trainer.optimizers):
            names = sorted({type(opt).__name__ for opt in trainer.optimizers})
            rank_zero_warn(f"CurvatureMonitor: no `curvature/2_over_lr` for {names}: the stability threshold of an "
                           "adaptive optimizer bounds its preconditioned Hessian, not the Hessian measured here")
        # seeded and under isolate_rng: the same batches in a resumed run, and the training order is the one
        # without us
        self._batches = self._take_batches(trainer, pl_module)

    @override
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if optimizer_index(trainer, optimizer) == 0:
            self.optimizer_steps = (self.optimizer_steps or 0) + 1

    @override
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = self._step(trainer)
        # accumulation: one measurement per optimizer step; none before the first (a schedule callback may not
        # have set the learning rate yet, so the threshold would be the optimizer's placeholder)
        if step == 0 or step == self._last_step or step % self.every_n_steps or getattr(self, "_failed", False):
            return
        with guarded("CurvatureMonitor", f"the measurement at step {step} (no more are taken)",
                              self._where) as failures:
            self.measure(trainer, pl_module)
        self._failed = bool(failures)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        figures: dict[str, Any] = {}
        files: dict[str, Any] = {}
        if self.spectrum and not getattr(self, "_failed", False):
            with guarded("CurvatureMonitor", "the spectrum (the history is saved)", self._where):
                self.spectrum_result = self._run(trainer, pl_module, ls.hessian_spectrum, runs=self.spectrum_runs,
                                                 steps=self.spectrum_steps)
                files["spectrum.json"] = self.spectrum_result.to_dict()
        if trainer.is_global_zero:
            if len(self.history):
                figures["curvature/sharpness"] = self.history.plot(
                    title=f"{type(pl_module).__name__}: top Hessian eigenvalue vs the stability threshold").figure
            if self.spectrum_result is not None:
                ax = self.spectrum_result.plot()
                ax.set_title(f"Hessian eigenvalue density at step {self._step(trainer)}", fontsize=9)
                figures["curvature/spectrum"] = ax.figure
        files["history.json"] = self.history.to_dict()
        report(trainer, "curvature", step=self._step(trainer), figures=figures, files=files,
                        save_files=self.save_results)

    # -- the measurement ----------------------------------------------------------------------------------
    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        """Measure at the current weights, record, log and return the values (the same on every rank). Call it on
        every rank."""
        step = self._step(trainer)
        self._last_step = step
        trainable = {name for name, p in pl_module.named_parameters() if p.requires_grad}
        start = self._start if self._start is not None and set(self._start.tensors) == trainable else None
        result = self._run(trainer, pl_module, ls.hessian_eigenvalues, k=self.k, max_iter=self.max_iter, tol=self.tol,
                           start=start)  # no warm start after a change of the trainable parameters
        self.last_result, self._start = result, result.eigenvectors[0]
        values = {"curvature/top_eigenvalue": result.eigenvalues[0]}
        if self.trace:
            estimate = self._run(trainer, pl_module, ls.hessian_trace, min_samples=self.trace_samples,
                                 max_samples=self.trace_samples)
            values["curvature/trace"] = estimate.trace
        values = trainer.strategy.broadcast(values, src=0)  # the ranks agree already; this makes it a guarantee
        groups = param_groups(trainer.optimizers)
        thresholds = [t for opt in trainer.optimizers for t in ls.optimizer_stability_thresholds(opt)]
        scalars = dict(values)
        for i, (group, threshold) in enumerate(zip(groups, thresholds)):
            suffix = f"/pg{i}" if len(groups) > 1 else ""
            scalars[f"curvature/lr{suffix}"] = float(group["lr"])
            if threshold is not None and math.isfinite(threshold):
                scalars[f"curvature/2_over_lr{suffix}"] = threshold
        first = groups[0] if groups else {}
        momentum = ([m for m in read_momenta(groups[:1]) if m is not None] or [math.nan])[0]
        self.history.record(step, values["curvature/top_eigenvalue"], thresholds[0] if thresholds else None,
                            lr=float(first.get("lr", math.nan)), momentum=float(momentum),
                            trace=values.get("curvature/trace"))
        log.debug("curvature at step %d: %s", step, scalars)
        report(trainer, "curvature", step=step, scalars=scalars, save_files=False)
        return scalars

    def _step(self, trainer: pl.Trainer) -> int:
        """Steps the first optimizer has taken (``global_step`` outside fit's hooks)."""
        return trainer.global_step if self.optimizer_steps is None else self.optimizer_steps

    def _where(self) -> str | None:
        return getattr(self, "_results_dir", None)

    def _take_batches(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[Any]:
        return evaluation_batches(trainer, pl_module, self.split, self.num_batches, same_on_all_ranks=False,
                                  seed=self.seed)

    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, fn: Callable, **kwargs: Any) -> Any:
        if self._batches is None:  # measure() called outside fit's hooks
            self._batches = self._take_batches(trainer, pl_module)
        evaluation = ModuleEvaluation(pl_module, self.loss_fn)
        spec = ls.EvaluationSpec(self._batches, evaluate=evaluation, batchnorm=self.batchnorm,
                                 autocast_dtype=self.autocast_dtype, all_reduce=sum_across_ranks(trainer))
        with isolate_rng(), evaluation.active():
            return fn(pl_module, spec, seed=self.seed, **kwargs)

    # -- checkpointing ------------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        # the warm start goes along (a copy of the trainable parameters, on the CPU): without it the first
        # measurement after a resume starts elsewhere and, unconverged, reads another value
        start = None if self._start is None else {k: v.detach().cpu() for k, v in self._start.tensors.items()}
        return {"history": self.history.to_dict(), "last_step": self._last_step, "start": start,
                "optimizer_steps": self.optimizer_steps}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = ls.CurvatureHistory.from_dict(state_dict["history"])
        self._last_step = int(state_dict.get("last_step", -1))
        steps = state_dict.get("optimizer_steps")  # absent in checkpoints of older versions: from global_step
        self.optimizer_steps = None if steps is None else int(steps)
        start = state_dict.get("start")
        self._start = None if start is None else ls.Direction(dict(start), "weights")
