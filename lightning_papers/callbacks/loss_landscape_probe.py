"""``LossLandscapeProbe``: loss surfaces, curves and sharpness of the model being trained, logged to TensorBoard.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913):
filter-normalised 2-D surfaces and 1-D curves around the current weights; Smith & Topin, Exploring Loss
Function Topology with Cyclical Learning Rates, 2017 (arXiv 1702.04283): the 1-D interpolation between the
weights at the start of training and the current ones.

The callback owns no math: it picks ``num_batches`` fixed batches (moved to the device once through
``trainer.strategy.batch_to_device``, so the datamodule's ``on_after_batch_transfer`` normalisation applies),
calls :func:`lightning_papers.landscape.surface` on this rank's share of the grid, gathers the shares through
``trainer.strategy.all_gather``, and rank 0 writes files and TensorBoard figures. The model, optimizer and RNG
come back exactly as they were.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.seed import isolate_rng

from lightning_papers.landscape import (
    SurfaceResult,
    centre_curvature,
    hessian_top_eigenvalue,
    loss_rise,
    merge_surfaces,
    mesh_arrays,
    plot_contour,
    plot_curve,
    plot_heatmap,
    plot_surface3d,
    random_directions,
    save_surface,
    surface,
    target_direction,
    write_vtp,
)
from lightning_papers.landscape.directions import SUPPORTED_KINDS, SUPPORTED_NORMALIZATIONS
from lightning_papers.landscape.surface import check_compile_option

__all__ = ["LossLandscapeProbe"]

log = logging.getLogger(__name__)


class LossLandscapeProbe(Callback):
    """Probe the loss landscape around the current weights at the end of training or every n epochs.

    Args:
        mode: ``"2d"`` (surface along two filter-normalised random directions), ``"1d"`` (one random
            direction) or ``"interpolate"`` (from the current weights, ``alpha = 0``, towards the weights at the
            start of training, ``alpha = 1``).
        at: ``"fit_end"`` (once, when training ends) or ``None`` with ``every_n_epochs``.
        every_n_epochs: probe at the end of every n-th training epoch (overrides ``at``).
        grid: coordinate axes; default 11x11 over [-1, 1]^2 (2d), 21 points over [-1, 1] (1d) or [-0.5, 1.5]
            (interpolate).
        num_batches: fixed batches of the dataloader used at every point (and for sharpness).
        dataloader: ``"val"`` or ``"train"``.
        seed: seed of the random directions (the same directions at every probe).
        normalization: ``"filter"``, ``"layer"`` or ``"none"``.
        ignore: entries with a zero direction (``"bias"``, ``"norm"``).
        kind: ``"weights"`` or ``"states"``.
        backend: ``"inplace"`` or ``"vmap"`` (see :func:`lightning_papers.landscape.surface`).
        autocast_dtype: e.g. ``torch.bfloat16`` for the evaluations.
        fold_bn: evaluate a copy of the module with BatchNorm folded into the convolutions (exact up to float
            rounding, no BatchNorm kernels per point); see :func:`lightning_papers.landscape.surface`.
        channels_last: evaluate a channels_last copy of the module.
        compile: ``torch.compile`` the evaluated copy (``True`` or a dict of ``torch.compile`` arguments).
        sharpness: also estimate the Hessian's top eigenvalue (``hessian_iters`` power iterations).
        hessian_iters: power iterations for ``sharpness``.
        radius: radius for the ``landscape/sharpness/loss_rise`` summary.
        save_results: rank 0 writes ``.npz``/``.json``, PNGs and ``.vtp`` to ``trainer.log_dir/landscape/``.

    Raises:
        ValueError: for an unknown ``mode``, ``at``, ``dataloader``, ``normalization`` or ``kind``, a
            non-positive ``num_batches``/``every_n_epochs``/``hessian_iters``, a grid of the wrong dimension, or
            a ``compile`` that is neither a bool nor a dict, or comes with the ``"vmap"`` backend.

    Example::

        >>> probe = LossLandscapeProbe(mode="2d", grid=(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)))
        >>> trainer = pl.Trainer(callbacks=[probe], max_epochs=2)  # doctest: +SKIP
    """

    SUPPORTED_MODES = ("2d", "1d", "interpolate")
    SUPPORTED_AT = ("fit_end", None)
    SUPPORTED_DATALOADERS = ("val", "train")

    def __init__(
        self,
        mode: str = "2d",
        at: str | None = "fit_end",
        every_n_epochs: int | None = None,
        grid: Any = None,
        num_batches: int = 4,
        dataloader: str = "val",
        seed: int = 0,
        normalization: str = "filter",
        ignore: Sequence[str] = ("bias", "norm"),
        kind: str = "weights",
        backend: str = "inplace",
        autocast_dtype: torch.dtype | None = None,
        fold_bn: bool = False,
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
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
        if not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f"Expected `num_batches` to be a positive integer, got {num_batches!r}")
        if dataloader not in self.SUPPORTED_DATALOADERS:
            raise ValueError(f"Expected `dataloader` to be one of {self.SUPPORTED_DATALOADERS}, got {dataloader!r}")
        if normalization not in SUPPORTED_NORMALIZATIONS:
            raise ValueError(f"Expected `normalization` to be one of {SUPPORTED_NORMALIZATIONS}, got {normalization!r}")
        if kind not in SUPPORTED_KINDS:
            raise ValueError(f"Expected `kind` to be one of {SUPPORTED_KINDS}, got {kind!r}")
        if not isinstance(hessian_iters, int) or hessian_iters < 1:
            raise ValueError(f"Expected `hessian_iters` to be a positive integer, got {hessian_iters!r}")
        check_compile_option(compile, backend)
        ndim = 2 if mode == "2d" else 1
        if grid is None:
            if mode == "2d":
                grid = (np.linspace(-1, 1, 11), np.linspace(-1, 1, 11))
            else:
                grid = np.linspace(-1, 1, 21) if mode == "1d" else np.linspace(-0.5, 1.5, 21)
        axes = [grid] if ndim == 1 and np.ndim(grid) == 1 else list(grid)
        if len(axes) != ndim or any(np.ndim(a) != 1 or len(a) == 0 for a in axes):
            raise ValueError(f"Expected `grid` to be {ndim} non-empty 1-D coordinate array(s) for mode {mode!r}")
        self.mode = mode
        self.at = at
        self.every_n_epochs = every_n_epochs
        self.axes = [np.asarray(a, dtype=np.float64) for a in axes]
        self.num_batches = num_batches
        self.dataloader = dataloader
        self.seed = seed
        self.normalization = normalization
        self.ignore = tuple(ignore)
        self.kind = kind
        self.backend = backend
        self.autocast_dtype = autocast_dtype
        self.fold_bn = fold_bn
        self.channels_last = channels_last
        self.compile = compile
        self.sharpness = sharpness
        self.hessian_iters = hessian_iters
        self.radius = radius
        self.save_results = save_results
        self.results: dict[int, SurfaceResult] = {}
        self.initial_state: dict[str, torch.Tensor] | None = None

    # -- hooks ------------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.mode == "interpolate" and self.initial_state is None:
            self.initial_state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs is not None and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.probe(trainer, pl_module, epoch=trainer.current_epoch)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # before the strategy's teardown: the model is still on its device and the process group alive
        if self.every_n_epochs is None and self.at == "fit_end":
            # the loop has already counted the last epoch as done: step = index of the last epoch trained
            self.probe(trainer, pl_module, epoch=max(trainer.current_epoch - 1, 0))

    # -- the probe --------------------------------------------------------------------------------------
    def probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int | None = None) -> SurfaceResult:
        """Compute (sharded), gather, report and return the landscape at the current weights; ``epoch`` is the
        TensorBoard step and file suffix (default ``trainer.current_epoch``)."""
        epoch = trainer.current_epoch if epoch is None else epoch
        stage = trainer.state.stage
        sharp: dict[str, float] = {}
        with isolate_rng():
            try:
                trainer.state.stage = None  # the datamodule must not augment these batches
                batches = self._batches(trainer, pl_module)
            finally:
                trainer.state.stage = stage
            directions = self._directions(pl_module)
            part = surface(
                pl_module,
                directions,
                self.axes,
                batches,
                backend=self.backend,
                autocast_dtype=self.autocast_dtype,
                fold_bn=self.fold_bn,
                channels_last=self.channels_last,
                compile=self.compile,
                shard=(trainer.global_rank, trainer.world_size),
            )
            result = self._gather(trainer, part)
            if self.sharpness and trainer.is_global_zero:
                sharp = self._sharpness(pl_module, batches, result)
        self.results[epoch] = result
        self._report(trainer, result, sharp, epoch)
        return result

    def _directions(self, pl_module: pl.LightningModule):
        if self.mode == "interpolate":
            if self.initial_state is None:
                raise RuntimeError("`LossLandscapeProbe(mode='interpolate')` has no initial weights: fit not started")
            return [target_direction(pl_module, self.initial_state, kind=self.kind)]
        n = 2 if self.mode == "2d" else 1
        return random_directions(pl_module, n, self.seed, self.normalization, self.ignore, self.kind)

    def _batches(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[Any]:
        loader = None
        dm = trainer.datamodule
        if dm is not None:
            loader = dm.val_dataloader() if self.dataloader == "val" else dm.train_dataloader()
        else:
            loaders = trainer.val_dataloaders if self.dataloader == "val" else trainer.train_dataloader
            loader = loaders[0] if isinstance(loaders, (list, tuple)) and loaders else loaders
        if loader is None:
            raise RuntimeError(f"`LossLandscapeProbe` found no {self.dataloader} dataloader")
        batches = []
        for batch in loader:
            if len(batches) == self.num_batches:
                break
            batch = trainer.precision_plugin.convert_input(batch)
            batch = pl_module._on_before_batch_transfer(batch, dataloader_idx=0)
            batches.append(trainer.strategy.batch_to_device(batch, dataloader_idx=0))
        if not batches:
            raise RuntimeError(f"`LossLandscapeProbe` found an empty {self.dataloader} dataloader")
        return batches

    @staticmethod
    def _gather(trainer: pl.Trainer, part: SurfaceResult) -> SurfaceResult:
        if trainer.world_size == 1:
            return part
        names = list(part.values)
        device = trainer.strategy.root_device
        values = torch.as_tensor(np.stack([part.values[m] for m in names]), dtype=torch.float64, device=device)
        computed = torch.as_tensor(part.computed, device=device).to(torch.uint8)
        all_values = trainer.strategy.all_gather(values).cpu().numpy()
        all_computed = trainer.strategy.all_gather(computed).cpu().numpy().astype(bool)
        parts = [
            SurfaceResult(part.axes, {m: all_values[r, i] for i, m in enumerate(names)}, all_computed[r], part.metadata)
            for r in range(trainer.world_size)
        ]
        return merge_surfaces(parts)

    def _sharpness(self, pl_module: pl.LightningModule, batches: list[Any], result: SurfaceResult) -> dict[str, float]:
        out: dict[str, float] = {}
        eig = hessian_top_eigenvalue(pl_module, batches, max_iter=self.hessian_iters)
        out["hessian_top_eig"] = eig.eigenvalue
        if math.isfinite(result.centre_value()):
            out["loss_rise"] = loss_rise(result, self.radius)
        try:
            for j, c in enumerate(centre_curvature(result)):
                out[f"curvature_{'xy'[j]}"] = c
        except ValueError:  # the grid has no interior point at the origin
            pass
        return out

    def _report(self, trainer: pl.Trainer, result: SurfaceResult, sharp: dict[str, float], epoch: int) -> None:
        log_dir = trainer.log_dir  # a collective call under DDP: every rank must reach it
        if not trainer.is_global_zero:
            return
        log.info("loss landscape at epoch %d: centre loss %.4g, %s", epoch, result.centre_value(), sharp)
        figures: dict[str, Any] = {}
        if result.ndim == 2:
            figures["contour"] = plot_contour(result).figure
            figures["heatmap"] = plot_heatmap(result).figure
            figures["surface3d"] = plot_surface3d(result).figure
        else:
            xlabel = "alpha (0: current, 1: start of training)" if self.mode == "interpolate" else "alpha"
            figures["curve1d"] = plot_curve(result, xlabel=xlabel).figure
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                writer = logger.experiment
                for name, fig in figures.items():
                    writer.add_figure(f"landscape/{name}", fig, global_step=epoch, close=False)
                if result.ndim == 2:
                    verts, faces, _ = mesh_arrays(result)
                    if len(faces):
                        writer.add_mesh(
                            "landscape/mesh",
                            vertices=torch.as_tensor(verts, dtype=torch.float32).unsqueeze(0),
                            faces=torch.as_tensor(faces, dtype=torch.int32).unsqueeze(0),
                            global_step=epoch,
                        )
                for k, v in sharp.items():
                    writer.add_scalar(f"landscape/sharpness/{k}", v, global_step=epoch)
                writer.flush()
            elif sharp:
                logger.log_metrics({f"landscape/sharpness/{k}": v for k, v in sharp.items()}, step=epoch)
        if self.save_results:
            if log_dir is None:
                rank_zero_warn("`LossLandscapeProbe(save_results=True)` but the trainer has no log_dir; nothing saved")
                return
            out = os.path.join(log_dir, "landscape")
            os.makedirs(out, exist_ok=True)
            stem = os.path.join(out, f"{self.mode}_epoch{epoch}")
            result.metadata["sharpness"] = sharp
            save_surface(result, stem)
            for name, fig in figures.items():
                fig.savefig(f"{stem}_{name}.png", dpi=100, bbox_inches="tight")
            if result.ndim == 2:
                write_vtp(result, f"{stem}.vtp")

    # -- checkpointing ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "probed_epochs": sorted(self.results),
            "initial_state": self.initial_state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.initial_state = state_dict.get("initial_state")
