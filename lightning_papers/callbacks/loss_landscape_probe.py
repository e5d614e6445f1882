"""``LossLandscapeProbe``: loss surfaces, curves and sharpness of the model being trained, logged to TensorBoard.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913):
filter-normalised 2-D surfaces and 1-D curves around the current weights; Smith & Topin, Exploring Loss
Function Topology with Cyclical Learning Rates, 2017 (arXiv 1702.04283): the line from the weights at the start
of training (``alpha = 0``) to the current ones (``alpha = 1``).

The callback owns no math: it takes fixed evaluation batches (the same on every rank), evaluates the module's
own loss (or a ``loss_fn``) with :func:`lightning_papers.landscape.surface` /
:func:`~lightning_papers.landscape.interpolate` on this rank's share of the grid, gathers the shares and reports
them. The model, optimizer and RNG come back exactly as they were.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.seed import isolate_rng

from lightning_papers import landscape as ls
from lightning_papers.callbacks import _trainer
from lightning_papers.landscape.directions import SUPPORTED_KINDS, SUPPORTED_NORMALIZATIONS
from lightning_papers.landscape.surface import check_compile_option

__all__ = ["LossLandscapeProbe"]

log = logging.getLogger(__name__)
_DEFAULT_GRIDS = {"2d": (np.linspace(-1, 1, 11),) * 2, "1d": np.linspace(-1, 1, 21),
                  "interpolate": np.linspace(-0.5, 1.5, 21)}


class LossLandscapeProbe(_trainer.StateKeyed):
    """Probe the loss landscape of any LightningModule at the end of training or every n epochs.

    What is evaluated is the module's own loss (what its ``training_step`` returns, else what its
    ``validation_step`` returns or logs), in eval mode, with its ``self.log`` calls kept out of your logs;
    accuracy is added when batches are ``(inputs, targets)`` with class targets and the forward pass returns
    logits. ``loss_fn`` / ``metrics`` override that.

    Args:
        mode: ``"2d"`` (surface along two filter-normalised random directions), ``"1d"`` (one random
            direction) or ``"interpolate"`` (the line from the weights at the start of training, ``alpha = 0``, to
            the current ones, ``alpha = 1``).
        at: ``"fit_end"`` (once, when training ends) or ``None`` with ``every_n_epochs``.
        every_n_epochs: probe at the end of every n-th training epoch (overrides ``at``).
        grid: coordinate axes; default 11x11 over [-1, 1]^2 (2d), 21 points over [-1, 1] (1d) or [-0.5, 1.5]
            (interpolate). ``"frame"`` (or a :class:`~lightning_papers.landscape.Framed`, e.g.
            ``Framed(points=21)``): a range chosen at the first probe from 1-D scans so that the basin fills the
            picture, then kept for every later probe, so that the surfaces over training share one range (modes
            ``"2d"``/``"1d"``). The default stays the paper's fixed range, which compares across runs.
        adaptive: spend a point budget where the surface is least known instead of evaluating every grid point
            (:class:`~lightning_papers.landscape.Refinement`, a dict of its arguments, or a budget: an int of
            points or a float fraction of the grid); ranks share each refinement round. Modes ``"2d"``/``"1d"``.
        num_batches: fixed batches of each dataloader used at every point (and for sharpness).
        dataloader: ``"val"``, ``"train"`` or both (``("train", "val")``: metrics named ``train_loss``, ...).
        seed: seed of the random directions (the same directions at every probe).
        normalization: ``"filter"``, ``"layer"`` or ``"none"``.
        ignore: entries with a zero direction (``"bias"``, ``"norm"``).
        kind: ``"weights"`` or ``"states"``; default ``"states"`` for ``"interpolate"`` (BatchNorm statistics move
            with the weights, so alpha 0 is exactly the initial model), ``"weights"`` otherwise.
        backend: ``"inplace"`` or ``"vmap"`` (``"vmap"`` needs ``loss_fn``).
        autocast_dtype: the dtype of the evaluations; default: the Trainer's (``bf16-mixed`` -> bfloat16);
            ``torch.float32`` for full precision.
        fold_bn: evaluate a copy of the network with BatchNorm folded into the convolutions (needs ``loss_fn``:
            the copy has no training step).
        channels_last: evaluate a channels_last copy (needs ``loss_fn``).
        compile: ``torch.compile`` the evaluated copy (``True`` or a dict of arguments; needs ``loss_fn``).
        loss_fn: ``fn(module(inputs), targets)`` on ``(inputs, targets, ...)`` batches instead of the module's loss.
        metrics: extra ``{name: fn(output, target)}`` on the module's forward output.
        sharpness: also estimate the Hessian's top eigenvalue of the same loss (``hessian_iters`` iterations).
        hessian_iters: power iterations for ``sharpness``.
        radius: radius for the ``landscape/sharpness/loss_rise`` summary.
        save_results: rank 0 writes ``.npz``/``.json``, PNGs and ``.vtp`` to ``trainer.log_dir/landscape/``.

    Raises:
        ValueError: for an unknown ``mode``, ``at``, ``dataloader``, ``normalization`` or ``kind``, ``grid="frame"``
            or ``adaptive`` with ``mode="interpolate"``, a bad ``adaptive``, a
            non-positive ``num_batches``/``every_n_epochs``/``hessian_iters``, a grid of the wrong dimension, a bad
            ``compile``, or a copy option (``fold_bn``, ``channels_last``, ``compile``, ``backend="vmap"``)
            without ``loss_fn``.

    Examples:
        >>> probe = LossLandscapeProbe("2d", grid=(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)))
        >>> trainer = pl.Trainer(callbacks=[probe], max_epochs=2)
    """

    SUPPORTED_MODES = ("2d", "1d", "interpolate")
    SUPPORTED_AT = ("fit_end", None)
    SUPPORTED_DATALOADERS = ("val", "train")
    _state_key_fields = ("mode", "dataloader", "every_n_epochs", "seed", "axes")

    def __init__(
        self,
        mode: str = "2d",
        *,
        at: str | None = "fit_end",
        every_n_epochs: int | None = None,
        grid: Any = None,
        adaptive: Any = None,
        num_batches: int = 4,
        dataloader: str | Sequence[str] = "val",
        seed: int = 0,
        normalization: str = "filter",
        ignore: Sequence[str] = ("bias", "norm"),
        kind: str | None = None,
        backend: str = "inplace",
        autocast_dtype: torch.dtype | None = None,
        fold_bn: bool = False,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
        loss_fn: Callable | None = None,
        metrics: Mapping[str, Callable] | None = None,
        sharpness: bool = True,
        hessian_iters: int = 10,
        radius: float = 0.5,
        save_results: bool = True,
    ) -> None:
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"Expected `mode` to be one of {self.SUPPORTED_MODES}, got {mode!r}")
        if at not in self.SUPPORTED_AT:
            raise ValueError(f"Expected `at` to be one of {self.SUPPORTED_AT}, got {at!r}")
        if every_n_epochs is not None and (not isinstance(every_n_epochs, int) or every_n_epochs < 1):
            raise ValueError(f"Expected `every_n_epochs` to be a positive integer or None, got {every_n_epochs!r}")
        if at is None and every_n_epochs is None:
            raise ValueError("Expected `at='fit_end'` or an `every_n_epochs`, got neither")
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f"Expected `num_batches` to be a positive integer, got {num_batches!r}")
        loaders = (dataloader,) if isinstance(dataloader, str) else tuple(dataloader)
        if not loaders or any(d not in self.SUPPORTED_DATALOADERS for d in loaders) or len(set(loaders)) < len(
                loaders):
            raise ValueError(f"Expected `dataloader` to be one or both of {self.SUPPORTED_DATALOADERS}, got "
                             f"{dataloader!r}")
        if normalization not in SUPPORTED_NORMALIZATIONS:
            raise ValueError(f"Expected `normalization` to be one of {SUPPORTED_NORMALIZATIONS}, got {normalization!r}")
        kind = kind or ("states" if mode == "interpolate" else "weights")
        if kind not in SUPPORTED_KINDS:
            raise ValueError(f"Expected `kind` to be one of {SUPPORTED_KINDS}, got {kind!r}")
        if isinstance(hessian_iters, bool) or not isinstance(hessian_iters, int) or hessian_iters < 1:
            raise ValueError(f"Expected `hessian_iters` to be a positive integer, got {hessian_iters!r}")
        check_compile_option(compile, backend)
        copies = [name for name, on in (("fold_bn", fold_bn), ("channels_last", channels_last),
                                        ("compile", compile is not False), ("backend='vmap'", backend == "vmap")) if on]
        if copies and loss_fn is None:
            raise ValueError(f"Expected a `loss_fn` with {copies}: they evaluate a copy of the network, which has no "
                             "training step; e.g. `loss_fn=torch.nn.functional.cross_entropy` for a classifier")
        ndim = 2 if mode == "2d" else 1
        grid = _DEFAULT_GRIDS[mode] if grid is None else grid
        self.framed: ls.Framed | None = None
        if isinstance(grid, (str, ls.Framed)):
            if grid != "frame" and not isinstance(grid, ls.Framed):
                raise ValueError(f"Expected `grid` to be coordinate axes, 'frame' or a Framed(...), got {grid!r}")
            if mode == "interpolate":
                raise ValueError("Expected `grid='frame'` with mode '2d' or '1d', got mode 'interpolate' (its axis "
                                 "runs from the start of training to now; pass it yourself)")
            points = (21 if ndim == 2 else 41) if adaptive is not None else (11 if ndim == 2 else 21)
            self.framed = grid if isinstance(grid, ls.Framed) else ls.Framed(points=points)
            axes = [np.zeros(0)] * ndim  # chosen at the first probe
        else:
            axes = [grid] if ndim == 1 and np.ndim(grid) == 1 else list(grid)
            if len(axes) != ndim or any(np.ndim(a) != 1 or len(a) == 0 for a in axes):
                raise ValueError(f"Expected `grid` to be {ndim} non-empty 1-D coordinate array(s) for mode {mode!r}")
        if adaptive is not None:
            if mode == "interpolate":
                raise ValueError("Expected `adaptive` with mode '2d' or '1d', got mode 'interpolate'")
            from lightning_papers.landscape.adaptive import as_refinement

            adaptive = as_refinement(adaptive)
        self.adaptive = adaptive
        self._framed_axes: list[np.ndarray] | None = None  # the range the first framed probe chose
        self._frame: dict[str, Any] | None = None
        self.mode, self.at, self.every_n_epochs = mode, at, every_n_epochs
        self.axes = [np.asarray(a, dtype=np.float64) for a in axes]
        self.num_batches = num_batches
        self.dataloader = loaders[0] if len(loaders) == 1 else loaders
        self.seed, self.normalization, self.ignore, self.kind = seed, normalization, tuple(ignore), kind
        self.backend, self.autocast_dtype = backend, autocast_dtype
        self.fold_bn, self.channels_last, self.compile = fold_bn, channels_last, compile
        self.loss_fn, self.metrics = loss_fn, dict(metrics or {})
        self.sharpness, self.hessian_iters, self.radius = sharpness, hessian_iters, radius
        self.save_results = save_results
        self.results: dict[int, ls.SurfaceResult] = {}
        self.initial_state: dict[str, torch.Tensor] | None = None

    # -- hooks ------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # everything the probe will need, checked on one batch before the first training step
        evaluation = _trainer.ModuleEvaluation(pl_module, self.loss_fn, self.metrics)
        second_order = self.sharpness and self.mode != "interpolate"
        for split in (self.dataloader,) if isinstance(self.dataloader, str) else self.dataloader:
            _trainer.preflight(trainer, pl_module, "LossLandscapeProbe", split, evaluation, seed=self.seed,
                               hessian_fix="pass `sharpness=False`" if second_order else None)
        log_dir = trainer.log_dir  # a collective under DDP: every rank is here
        self._results_dir = os.path.join(log_dir, "landscape") if log_dir and self.save_results else None
        if self.mode == "interpolate" and self.initial_state is None:  # a resumed run has it from the checkpoint
            self.initial_state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.probe_safely(trainer, pl_module, epoch=trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # before the strategy's teardown: the model is still on its device and the process group alive
        if self.every_n_epochs is None and self.at == "fit_end":
            # the loop has already counted the last epoch as done: step = index of the last epoch trained
            self.probe_safely(trainer, pl_module, epoch=max(trainer.current_epoch - 1, 0))
        with _trainer.guarded("LossLandscapeProbe", "the landscape over training", self._where):
            self.report_over_training(trainer)

    def probe_safely(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     epoch: int | None = None) -> ls.SurfaceResult | None:
        """:meth:`probe` from a training hook: a failure is a warning (what failed, where the results so far are),
        never an exception out of ``fit``; returns ``None`` then."""
        with _trainer.guarded("LossLandscapeProbe", f"the {self.mode} probe at epoch {epoch}", self._where):
            return self.probe(trainer, pl_module, epoch=epoch)
        return None

    def _where(self) -> str | None:
        return getattr(self, "_results_dir", None)

    def report_over_training(self, trainer: pl.Trainer) -> None:
        """With 2-D surfaces from two or more epochs: the surface at every epoch on common axes, levels and colours
        (:func:`~lightning_papers.landscape.surface_frames`), as the image series ``landscape/over_training``
        (step = epoch) and ``<log_dir>/landscape/2d_over_training.gif``. Called at the end of training; call it
        on every rank."""
        surfaces = {e: r for e, r in sorted(self.results.items()) if r.ndim == 2}
        if self.mode != "2d" or len(surfaces) < 2:
            return
        frames: list[Any] = []
        if trainer.is_global_zero:
            metric = "loss" if "loss" in next(iter(surfaces.values())).values else \
                next(iter(next(iter(surfaces.values())).values))
            frames, scale = ls.surface_frames(surfaces, metric)
            log.info("loss landscape over training: epochs %s, %s", list(surfaces), scale.describe())
        for i, epoch in enumerate(surfaces):
            _trainer.report(trainer, "landscape", step=epoch, save_files=False,
                            images={"landscape/over_training": frames[i]} if frames else {})
        files = {"2d_over_training.gif": lambda path: ls.save_gif(frames, path)} if frames else {}
        _trainer.report(trainer, "landscape", files=files, save_files=self.save_results)

    # -- the probe --------------------------------------------------------------------------------------
    def probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int | None = None) -> ls.SurfaceResult:
        """Compute (sharded), gather, report and return the landscape at the current weights; ``epoch`` is the
        TensorBoard step and file suffix (default ``trainer.current_epoch``). Call it on every rank."""
        epoch = trainer.current_epoch if epoch is None else epoch
        loaders = (self.dataloader,) if isinstance(self.dataloader, str) else self.dataloader
        evaluation = _trainer.ModuleEvaluation(pl_module, self.loss_fn, self.metrics)
        dtype = _trainer.autocast_dtype(trainer) if self.autocast_dtype is None else self.autocast_dtype
        options = dict(autocast_dtype=None if dtype == torch.float32 else dtype, shard=(trainer.global_rank,
                       trainer.world_size), backend=self.backend)
        sharp: dict[str, float] = {}
        with isolate_rng(), evaluation.active():
            parts = {}
            if self.adaptive is not None and trainer.world_size > 1:  # every round's points, shared by the ranks
                options["gather"] = functools.partial(_trainer.gather_surface, trainer)
            for split in loaders:
                batches = _trainer.evaluation_batches(trainer, pl_module, split, self.num_batches, seed=self.seed)
                part = self._compute(pl_module, batches, evaluation, options)
                parts[split] = part if "gather" in options else _trainer.gather_surface(trainer, part)
                if self.framed is not None and self._framed_axes is None:  # later probes keep this range
                    self._framed_axes = [np.asarray(a) for a in part.axes]
                    self._frame = part.metadata.get("range")
            result = parts[loaders[0]] if len(parts) == 1 else _joined(parts)
            if self.sharpness and trainer.is_global_zero:
                with _trainer.guarded("LossLandscapeProbe", f"sharpness at epoch {epoch} (the surface is saved)",
                                      self._where):
                    sharp = self._sharpness(pl_module, batches, evaluation, result)
        result.metadata["evaluated"] = evaluation.describe()
        self.results[epoch] = result
        self._report(trainer, result, sharp, epoch)
        return result

    def _compute(self, pl_module: pl.LightningModule, batches: list[Any], evaluation: Any,
                 options: dict[str, Any]) -> ls.SurfaceResult:
        if self.loss_fn is not None and (self.fold_bn or self.channels_last or self.compile is not False
                                         or self.backend == "vmap"):
            metrics = {"loss": self.loss_fn, **self.metrics}
            with ls.preserved_model(pl_module), torch.no_grad():  # eval mode: no BatchNorm statistics change
                pl_module.eval()
                logits = pl_module(batches[0][0])
            if _trainer.classification_target(batches[0], logits) is not None and "accuracy" not in metrics:
                metrics["accuracy"] = ls.accuracy
            options = dict(options, metrics=metrics, fold_bn=self.fold_bn, channels_last=self.channels_last,
                           compile=self.compile)
        else:
            options = dict(options, evaluate=evaluation)
        if self.mode == "interpolate":
            if self.initial_state is None:
                raise RuntimeError("`LossLandscapeProbe(mode='interpolate')` has no initial weights: fit not started")
            return ls.interpolate(pl_module, self.initial_state, self.axes[0], batches, kind=self.kind, **options)
        directions = ls.random_directions(pl_module, len(self.axes), self.seed, self.normalization, self.ignore,
                                          self.kind)
        axes = self._framed_axes if self.framed is not None else self.axes
        grid: Any = self.framed if axes is None else tuple(axes) if len(axes) == 2 else axes[0]
        if self.adaptive is not None:
            options = dict(options, adaptive=self.adaptive)
        result = ls.surface(pl_module, directions, grid, batches, **options)
        if self.framed is not None and "range" not in result.metadata:
            result.metadata["range"] = self._frame
        return result

    def _sharpness(self, pl_module: pl.LightningModule, batches: list[Any], evaluation: Any,
                   result: ls.SurfaceResult) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.mode != "interpolate":  # the centre of an interpolation is the start, not the current weights
            out["hessian_top_eig"] = ls.hessian_top_eigenvalue(pl_module, batches, max_iter=self.hessian_iters,
                                                               evaluate=evaluation).eigenvalue
        metric = "loss" if "loss" in result.values else next(iter(result.values))
        if math.isfinite(result.centre_value(metric)):
            out["loss_rise"] = ls.loss_rise(result, self.radius, metric)
        try:
            for j, c in enumerate(ls.centre_curvature(result, metric)):
                out[f"curvature_{'xy'[j]}"] = c
        except ValueError:  # the grid has no interior point at the origin
            pass
        return out

    def _report(self, trainer: pl.Trainer, result: ls.SurfaceResult, sharp: dict[str, float], epoch: int) -> None:
        figures: dict[str, Any] = {}
        meshes: dict[str, Any] = {}
        series: dict[str, Any] = {}
        files: dict[str, Any] = {}
        stem = f"{self.mode}_epoch{epoch}"
        if trainer.is_global_zero:
            metric = "loss" if "loss" in result.values else next(iter(result.values))
            if not np.isfinite(result[metric]).any():
                rank_zero_warn(f"LossLandscapeProbe ({self.mode}, epoch {epoch}): every point of the surface has a "
                               f"non-finite {metric} (NaN or inf): the model's loss is not finite at these weights; "
                               "the plots below are empty")
            log.info("loss landscape (%s) at epoch %d: %s at the centre %.4g, %s", self.mode, epoch, metric,
                     result.centre_value(metric), sharp)
            if result.ndim == 2:
                figures = {f"landscape/{k}": result.plot(k, metric=metric).figure
                           for k in ("contour", "heatmap", "surface3d")}
                view = ls.mesh_view(result, metric)  # heights scaled to the grid: raw losses render as a needle
                meshes = {"landscape/mesh": view} if len(view.faces) else {}
                files[f"{stem}.vtp"] = lambda path: ls.write_vtp(result, path, metric)
            elif self.mode == "interpolate":
                ax = result.plot("curve", xlabel="alpha (0 = start of training, 1 = current weights)")
                ax.set_title("Interpolation from the initial to the current weights")
                figures = {"landscape/interpolation": ax.figure}
                series = {"landscape/interpolation/alpha": result.axes[0].tolist(),
                          **{f"landscape/interpolation/{k}": v.tolist() for k, v in result.values.items()}}
            else:
                figures = {"landscape/curve1d": result.plot("curve", xlabel="alpha").figure}
            result.metadata["sharpness"] = sharp
            files[stem] = lambda path: ls.save_surface(result, path)
        _trainer.report(trainer, "landscape", step=epoch, figures=figures, meshes=meshes, series=series,
                        scalars={f"landscape/sharpness/{k}": v for k, v in sharp.items()}, files=files,
                        save_files=self.save_results, figure_prefix=f"{stem}_")

    # -- checkpointing ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # the 2-D surfaces go along (small: grid x metrics floats), so a resumed run still draws them all over
        # training
        surfaces = {int(e): {"axes": [a.tolist() for a in r.axes], "computed": r.computed.tolist(),
                             "values": {m: v.tolist() for m, v in r.values.items()}}
                    for e, r in self.results.items() if r.ndim == 2}
        framed = None if self._framed_axes is None else [a.tolist() for a in self._framed_axes]
        return {"probed_epochs": sorted(self.results), "initial_state": self.initial_state, "surfaces": surfaces,
                "framed_axes": framed, "frame": self._frame}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial_state = state_dict.get("initial_state")
        if self.framed is not None and state_dict.get("framed_axes"):  # the range the first probe chose
            self._framed_axes = [np.asarray(a, dtype=np.float64) for a in state_dict["framed_axes"]]
            self._frame = state_dict.get("frame")
        for epoch, saved in (state_dict.get("surfaces") or {}).items():
            self.results.setdefault(int(epoch), ls.SurfaceResult(
                [np.asarray(a) for a in saved["axes"]], {m: np.asarray(v, dtype=np.float64)
                                                         for m, v in saved["values"].items()},
                np.asarray(saved["computed"], dtype=bool)))


def _joined(parts: dict[str, ls.SurfaceResult]) -> ls.SurfaceResult:
    """Results of several dataloaders on one grid as one, metrics named ``<split>_<metric>``."""
    first = next(iter(parts.values()))
    values = {f"{split}_{m}": v for split, part in parts.items() for m, v in part.values.items()}
    computed = np.logical_and.reduce([p.computed for p in parts.values()])
    metadata = dict(first.metadata, data={split: p.metadata["data"] for split, p in parts.items()})
    return ls.SurfaceResult(first.axes, values, computed, metadata)
