"""``LossLandscapeProbe``: loss surfaces, curves and sharpness of the model being trained, logged to TensorBoard.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913):
filter-normalised 2-D surfaces and 1-D curves around the current weights; Smith & Topin, Exploring Loss
Function Topology with Cyclical Learning Rates, 2017 (arXiv 1702.04283): the line from the weights at the start
of training (``alpha = 0``) to the current ones (``alpha = 1``).

The callback owns no math: it builds an :class:`~lightning_papers.landscape.EvaluationSpec` of the module
(:func:`~lightning_papers.callbacks.evaluation.module_spec`: fixed batches, the same on every rank, and the
module's own loss or a ``loss_fn``), evaluates it with :func:`lightning_papers.landscape.surface` /
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
from typing_extensions import override

from lightning_papers import _validation as check
from lightning_papers import landscape as ls
from lightning_papers.callbacks._trainer import StateKeyed
from lightning_papers.callbacks.evaluation import ModuleEvaluation, module_spec, preflight
from lightning_papers.callbacks.reporting import gather_surface, guarded, report
from lightning_papers.landscape.adaptive import as_refinement
from lightning_papers.landscape.directions import SUPPORTED_KINDS, SUPPORTED_NORMALIZATIONS

log = logging.getLogger(__name__)
_DEFAULT_GRIDS = {"2d": (np.linspace(-1, 1, 11),) * 2, "1d": np.linspace(-1, 1, 21),
                  "interpolate": np.linspace(-0.5, 1.5, 21)}


class LossLandscapeProbe(StateKeyed):
    """Probe the loss landscape of any LightningModule at the end of training or every n epochs.

    What is evaluated is the module's own loss (what its ``training_step`` returns, else what its
    ``validation_step`` returns or logs), in eval mode, with its ``self.log`` calls kept out of your logs;
    accuracy is added when batches are ``(inputs, targets)`` with class targets and the forward pass returns
    logits. ``loss_fn`` / ``metrics`` override that.

    Args:
        view: ``"2d"`` (surface along two filter-normalised random directions), ``"1d"`` (one random
            direction) or ``"interpolate"`` (the line from the weights at the start of training, ``alpha = 0``, to
            the current ones, ``alpha = 1``). Was ``mode``.
        at: ``"fit_end"`` (once, when training ends) or ``None`` with ``every_n_epochs``.
        every_n_epochs: probe at the end of every n-th training epoch (overrides ``at``).
        grid: coordinate axes; default 11x11 over [-1, 1]^2 (2d), 21 points over [-1, 1] (1d) or [-0.5, 1.5]
            (interpolate). ``"frame"`` (or a :class:`~lightning_papers.landscape.Framed`, e.g.
            ``Framed(points=21)``): a range chosen at the first probe from 1-D scans so that the basin fills the
            picture, then kept for every later probe, so that the surfaces over training share one range (views
            ``"2d"``/``"1d"``). The default stays the paper's fixed range, which compares across runs.
        adaptive: spend a point budget where the surface is least known instead of evaluating every grid point
            (:class:`~lightning_papers.landscape.Refinement`, a dict of its arguments, or a budget: an int of
            points or a float fraction of the grid); ranks share each refinement round. Views ``"2d"``/``"1d"``.
        num_batches: fixed batches of each loader used at every point (and for sharpness).
        split: ``"val"``, ``"train"`` or both (``("train", "val")``: metrics named ``train_loss``, ...). Was
            ``dataloader``.
        seed: seed of the random directions (the same directions at every probe).
        normalization: ``"filter"``, ``"layer"`` or ``"none"``.
        ignore: entries with a zero direction (``"bias"``, ``"norm"``).
        kind: what the directions move, ``"weights"`` or ``"states"`` (as in the core's ``random_direction`` and
            ``interpolate``); default ``"states"`` for ``"interpolate"`` (BatchNorm statistics move with the
            weights, so alpha 0 is exactly the initial model), ``"weights"`` otherwise.
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
        ValueError: for an unknown ``view``, ``at``, ``split``, ``normalization`` or ``kind``, ``grid="frame"``
            or ``adaptive`` with ``view="interpolate"``, a bad ``adaptive``, a
            non-positive ``num_batches``/``every_n_epochs``/``hessian_iters``, a grid of the wrong dimension, a bad
            ``compile``, or a copy option (``fold_bn``, ``channels_last``, ``compile``, ``backend="vmap"``)
            without ``loss_fn``.

    Examples:
        >>> probe = LossLandscapeProbe("2d", grid=(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)))
        >>> trainer = pl.Trainer(callbacks=[probe], max_epochs=2)
    """

    SUPPORTED_VIEWS = ("2d", "1d", "interpolate")
    SUPPORTED_AT = ("fit_end", None)
    SUPPORTED_SPLITS = ("val", "train")
    _state_key_fields = {"mode": "view", "dataloader": "split", "every_n_epochs": "every_n_epochs", "seed": "seed",
                         "axes": "axes"}  # the key names of checkpoints saved before the renames

    def __init__(
        self,
        view: str = "2d",
        *,
        at: str | None = "fit_end",
        every_n_epochs: int | None = None,
        grid: Any = None,
        adaptive: Any = None,
        num_batches: int = 4,
        split: str | Sequence[str] = "val",
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
        mode: str | None = None,
        dataloader: str | Sequence[str] | None = None,
    ) -> None:
        view = check.one_of("view", check.renamed("mode", mode, "view", view, "2d"), self.SUPPORTED_VIEWS)
        split = check.renamed("dataloader", dataloader, "split", split, "val")
        check.one_of("at", at, self.SUPPORTED_AT)
        if every_n_epochs is not None:
            check.positive_int("every_n_epochs", every_n_epochs)
        if at is None and every_n_epochs is None:
            raise ValueError("Expected `at='fit_end'` or an `every_n_epochs`, got neither: pass one of them")
        splits = (split,) if isinstance(split, str) else tuple(split)
        if not splits or any(d not in self.SUPPORTED_SPLITS for d in splits) or len(set(splits)) < len(splits):
            raise ValueError(f"Expected `split` to be one or both of {self.SUPPORTED_SPLITS}, got {split!r}")
        check.one_of("normalization", normalization, SUPPORTED_NORMALIZATIONS)
        kind = check.one_of("kind", kind or ("states" if view == "interpolate" else "weights"), SUPPORTED_KINDS)
        self.num_batches = check.positive_int("num_batches", num_batches)
        self.hessian_iters = check.positive_int("hessian_iters", hessian_iters)
        self._options: dict[str, Any] = dict(backend=backend, autocast_dtype=autocast_dtype, fold_bn=fold_bn,
                             channels_last=channels_last, compile=compile)
        copies = ls.EvaluationSpec([], **self._options).copies  # the core's own checks, now
        if copies and loss_fn is None:
            raise ValueError(f"Expected a `loss_fn` with {copies}: they evaluate a copy of the network, which has no "
                             "training step; e.g. `loss_fn=torch.nn.functional.cross_entropy` for a classifier")
        self.view, self.at, self.every_n_epochs = view, at, every_n_epochs
        self.axes, self.framed = _axes(view, grid, adaptive)
        self.adaptive = None if adaptive is None else as_refinement(adaptive)
        self._framed_axes: list[np.ndarray] | None = None  # the range the first framed probe chose
        self._frame: dict[str, Any] | None = None
        self.split = splits[0] if len(splits) == 1 else splits
        self.seed, self.normalization, self.ignore, self.kind = seed, normalization, tuple(ignore), kind
        self.loss_fn, self.metrics = loss_fn, dict(metrics or {})
        self.sharpness, self.radius, self.save_results = sharpness, radius, save_results
        self.results: dict[int, ls.SurfaceResult] = {}
        self.initial_state: dict[str, torch.Tensor] | None = None

    # -- hooks ------------------------------------------------------------------------------------------
    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # everything the probe will need, checked on one batch before the first training step
        evaluation = ModuleEvaluation(pl_module, self.loss_fn, self.metrics)
        second_order = self.sharpness and self.view != "interpolate"
        for split in self._splits:
            preflight(trainer, pl_module, "LossLandscapeProbe", split, evaluation, seed=self.seed,
                               hessian_fix="pass `sharpness=False`" if second_order else None)
        log_dir = trainer.log_dir  # a collective under DDP: every rank is here
        self._results_dir = os.path.join(log_dir, "landscape") if log_dir and self.save_results else None
        if self.view == "interpolate" and self.initial_state is None:  # a resumed run has it from the checkpoint
            self.initial_state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.probe_safely(trainer, pl_module, epoch=trainer.current_epoch)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # before the strategy's teardown: the model is still on its device and the process group alive
        if self.every_n_epochs is None and self.at == "fit_end":
            # the loop has already counted the last epoch as done: step = index of the last epoch trained
            self.probe_safely(trainer, pl_module, epoch=max(trainer.current_epoch - 1, 0))
        with guarded("LossLandscapeProbe", "the landscape over training", self._where):
            self.report_over_training(trainer)

    def probe_safely(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     epoch: int | None = None) -> ls.SurfaceResult | None:
        """:meth:`probe` from a training hook: a failure is a warning (what failed, where the results so far are),
        never an exception out of ``fit``; returns ``None`` then."""
        with guarded("LossLandscapeProbe", f"the {self.view} probe at epoch {epoch}", self._where):
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
        if self.view != "2d" or len(surfaces) < 2:
            return
        frames: list[np.ndarray] = []
        if trainer.is_global_zero:
            metric = "loss" if "loss" in next(iter(surfaces.values())).values else \
                next(iter(next(iter(surfaces.values())).values))
            frames, scale = ls.surface_frames(surfaces, metric)
            log.info("loss landscape over training: epochs %s, %s", list(surfaces), scale.describe())
        for i, epoch in enumerate(surfaces):
            report(trainer, "landscape", step=epoch, save_files=False,
                            images={"landscape/over_training": frames[i]} if frames else {})
        files = {"2d_over_training.gif": lambda path: ls.save_gif(frames, path)} if frames else {}
        report(trainer, "landscape", files=files, save_files=self.save_results)

    # -- the probe --------------------------------------------------------------------------------------
    def probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int | None = None) -> ls.SurfaceResult:
        """Compute (sharded), gather, report and return the landscape at the current weights; ``epoch`` is the
        TensorBoard step and file suffix (default ``trainer.current_epoch``). Call it on every rank."""
        epoch = trainer.current_epoch if epoch is None else epoch
        gather = functools.partial(gather_surface, trainer)
        sharp: dict[str, float] = {}
        parts = {}
        with isolate_rng():
            for split in self._splits:
                with module_spec(trainer, pl_module, split, self.num_batches, loss_fn=self.loss_fn,
                                 metrics=self.metrics, seed=self.seed, shard=(trainer.global_rank, trainer.world_size),
                                 gather=gather, **self._options) as spec:
                    parts[split] = self._compute(pl_module, spec)
                    if self.framed is not None and self._framed_axes is None:  # later probes keep this range
                        self._framed_axes = [np.asarray(a) for a in parts[split].axes]
                        self._frame = parts[split].metadata.get("range")
                    result = parts[split] if len(self._splits) == 1 else _joined(parts)
                    if self.sharpness and trainer.is_global_zero and split == self._splits[-1]:
                        with guarded("LossLandscapeProbe", f"sharpness at epoch {epoch} (the surface is saved)",
                                     self._where):
                            sharp = self._sharpness(pl_module, spec, result)
        result.metadata["evaluated"] = ModuleEvaluation(pl_module, self.loss_fn, self.metrics).describe()
        self.results[epoch] = result
        self._report(trainer, result, sharp, epoch)
        return result

    @property
    def _splits(self) -> tuple[str, ...]:
        return (self.split,) if isinstance(self.split, str) else tuple(self.split)

    def _compute(self, pl_module: pl.LightningModule, spec: ls.EvaluationSpec) -> ls.SurfaceResult:
        if self.view == "interpolate":
            if self.initial_state is None:
                raise RuntimeError("LossLandscapeProbe('interpolate') has no initial weights: call it after fit "
                                   "has started")
            return ls.interpolate(pl_module, self.initial_state, self.axes[0], spec, kind=self.kind)
        directions = ls.random_directions(pl_module, len(self.axes), self.seed, self.normalization, self.ignore,
                                          self.kind)
        axes = self._framed_axes if self.framed is not None else self.axes
        grid: Any = self.framed if axes is None else tuple(axes) if len(axes) == 2 else axes[0]
        result = ls.surface(pl_module, directions, grid, spec, points=self.adaptive)
        if self.framed is not None and "range" not in result.metadata:
            result.metadata["range"] = self._frame
        return result

    def _sharpness(self, pl_module: pl.LightningModule, spec: ls.EvaluationSpec,
                   result: ls.SurfaceResult) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.view != "interpolate":  # the centre of an interpolation is the start, not the current weights
            # in float32, as before the spec carried the Trainer's autocast dtype
            top = ls.hessian_top_eigenvalue(pl_module, spec, max_iter=self.hessian_iters, autocast_dtype=None)
            out["hessian_top_eig"] = top.eigenvalue
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
        meshes: dict[str, ls.MeshView] = {}
        series: dict[str, list[float]] = {}
        files: dict[str, Callable[[str], object]] = {}
        stem = f"{self.view}_epoch{epoch}"
        if trainer.is_global_zero:
            metric = "loss" if "loss" in result.values else next(iter(result.values))
            if not np.isfinite(result[metric]).any():
                rank_zero_warn(f"LossLandscapeProbe ({self.view}, epoch {epoch}): every point of the surface has a "
                               f"non-finite {metric} (NaN or inf): the model's loss is not finite at these weights; "
                               "the plots below are empty")
            log.info("loss landscape (%s) at epoch %d: %s at the centre %.4g, %s", self.view, epoch, metric,
                     result.centre_value(metric), sharp)
            if result.ndim == 2:
                figures = {f"landscape/{k}": result.plot(k, metric=metric).figure
                           for k in ("contour", "heatmap", "surface3d")}
                mesh = ls.mesh_view(result, metric)  # heights scaled to the grid: raw losses render as a needle
                meshes = {"landscape/mesh": mesh} if len(mesh.faces) else {}
                files[f"{stem}.vtp"] = lambda path: ls.write_vtp(result, path, metric)
            elif self.view == "interpolate":
                ax = result.plot("curve", xlabel="alpha (0 = start of training, 1 = current weights)")
                ax.set_title("Interpolation from the initial to the current weights")
                figures = {"landscape/interpolation": ax.figure}
                series = {"landscape/interpolation/alpha": result.axes[0].tolist(),
                          **{f"landscape/interpolation/{k}": v.tolist() for k, v in result.values.items()}}
            else:
                figures = {"landscape/curve1d": result.plot("curve", xlabel="alpha").figure}
            result.metadata["sharpness"] = sharp
            files[stem] = lambda path: ls.save_surface(result, path)
        report(trainer, "landscape", step=epoch, figures=figures, meshes=meshes, series=series,
                        scalars={f"landscape/sharpness/{k}": v for k, v in sharp.items()}, files=files,
                        save_files=self.save_results, figure_prefix=f"{stem}_")

    # -- checkpointing ------------------------------------------------------------------------------------
    @override
    def state_dict(self) -> dict[str, Any]:
        # the 2-D surfaces go along (small: grid x metrics floats), so a resumed run still draws them all over
        # training
        surfaces = {int(e): {"axes": [a.tolist() for a in r.axes], "computed": r.computed.tolist(),
                             "values": {m: v.tolist() for m, v in r.values.items()}}
                    for e, r in self.results.items() if r.ndim == 2}
        framed = None if self._framed_axes is None else [a.tolist() for a in self._framed_axes]
        return {"probed_epochs": sorted(self.results), "initial_state": self.initial_state, "surfaces": surfaces,
                "framed_axes": framed, "frame": self._frame}

    @override
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


def _axes(view: str, grid: Any, adaptive: Any) -> tuple[list[np.ndarray], ls.Framed | None]:
    """The probe's axes (empty ones for a range framed at the first probe) and its :class:`Framed`, if any."""
    ndim = 2 if view == "2d" else 1
    grid = _DEFAULT_GRIDS[view] if grid is None else grid
    if adaptive is not None and view == "interpolate":
        raise ValueError("Expected `adaptive` with view '2d' or '1d', got view 'interpolate': drop `adaptive`")
    if not isinstance(grid, (str, ls.Framed)):
        axes = [grid] if ndim == 1 and np.ndim(grid) == 1 else list(grid)
        if len(axes) != ndim or any(np.ndim(a) != 1 or len(a) == 0 for a in axes):
            raise ValueError(f"Expected `grid` to be {ndim} non-empty 1-D coordinate array(s) for view {view!r}")
        return [np.asarray(a, dtype=np.float64) for a in axes], None
    if grid != "frame" and not isinstance(grid, ls.Framed):
        raise ValueError(f"Expected `grid` to be coordinate axes, 'frame' or a Framed(...), got {grid!r}")
    if view == "interpolate":
        raise ValueError("Expected `grid='frame'` with view '2d' or '1d', got view 'interpolate' (its axis runs from "
                         "the start of training to now): pass the axis yourself")
    points = (21 if ndim == 2 else 41) if adaptive is not None else (11 if ndim == 2 else 21)
    return [np.zeros(0)] * ndim, grid if isinstance(grid, ls.Framed) else ls.Framed(points=points)


def _joined(parts: dict[str, ls.SurfaceResult]) -> ls.SurfaceResult:
    """Results of several dataloaders on one grid as one, metrics named ``<split>_<metric>``."""
    first = next(iter(parts.values()))
    values = {f"{split}_{m}": v for split, part in parts.items() for m, v in part.values.items()}
    computed = np.logical_and.reduce([p.computed for p in parts.values()])
    metadata = dict(first.metadata, data={split: p.metadata["data"] for split, p in parts.items()})
    return ls.SurfaceResult(first.axes, values, computed, metadata)
