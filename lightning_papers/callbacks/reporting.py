"""Results to every logger and beside the event files, from every rank: the package's callbacks report here.

DESIGN.md: collectives on every rank (``trainer.log_dir``, gathers, all-reduces), then scalars, figures, text,
meshes and files on rank 0, to every logger, under ``<trainer.log_dir>/<part>/``; an analysis that fails at the
end of training becomes one warning (:func:`guarded`), never an exception out of ``fit``.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import Strategy

from lightning_papers.landscape import MeshView, SurfaceResult, merge_surfaces
from lightning_papers.tensorboard import add_image, add_mesh

__all__ = ["gather_surface", "guarded", "progress_bar", "report", "sum_across_ranks"]


@contextmanager
def guarded(owner: str, what: str, where: Callable[[], str | None] = lambda: None) -> Iterator[list[BaseException]]:
    """Run an analysis at the end of training without letting it raise out of ``fit``: a failure becomes one
    rank-zero warning naming what failed and where the results written so far are (``where()``); the caught
    exception is appended to the yielded list. ``KeyboardInterrupt`` and the like still propagate."""
    from lightning.pytorch.utilities import rank_zero_warn

    failures: list[BaseException] = []
    try:
        yield failures
    except Exception as err:  # noqa: BLE001 - the point: nothing computed is lost to an analysis' failure
        failures.append(err)
        place = where()
        saved = f"; results so far are in {place}" if place else ""
        message = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        rank_zero_warn(f"{owner}: {what} failed, the trained model is kept{saved} ({type(err).__name__}: {message})")


def gather_surface(trainer: pl.Trainer, part: SurfaceResult) -> SurfaceResult:
    """Every rank's share of a sharded surface, merged (on every rank)."""
    if trainer.world_size == 1:
        return part
    names = list(part.values)
    device = trainer.strategy.root_device
    values = torch.as_tensor(np.stack([part.values[m] for m in names]), dtype=torch.float64, device=device)
    computed = torch.as_tensor(part.computed, device=device).to(torch.uint8)
    all_values = trainer.strategy.all_gather(values).cpu().numpy()
    all_computed = trainer.strategy.all_gather(computed).cpu().numpy().astype(bool)
    shard = part.metadata.get("shard")

    def metadata(rank: int) -> dict:  # each part says which rank computed it (merge refuses one shard twice)
        return {**part.metadata, "shard": [rank, shard[1]]} if shard else part.metadata

    return merge_surfaces([
        SurfaceResult(part.axes, {m: all_values[r, i] for i, m in enumerate(names)}, all_computed[r], metadata(r))
        for r in range(trainer.world_size)
    ])


def sum_across_ranks(trainer: pl.Trainer) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``fn(tensor) -> tensor`` summed over every rank (the same sum on each; every rank must call it the same
    number of times), as the core's ``all_reduce=`` takes it; ``None`` on a single process."""
    if trainer.world_size == 1:
        return None
    return functools.partial(_reduce_sum, trainer.strategy)


def _reduce_sum(strategy: Strategy, tensor: torch.Tensor) -> torch.Tensor:
    return strategy.reduce(tensor, reduce_op="sum")


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return _json_ready(obj.tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return _json_ready(obj.item())
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return obj


def report(
    trainer: pl.Trainer,
    part: str,
    *,
    step: int = 0,
    scalars: Mapping[str, float] | None = None,
    series: Mapping[str, Sequence[float]] | None = None,
    figures: Mapping[str, Any] | None = None,
    texts: Mapping[str, str] | None = None,
    meshes: Mapping[str, MeshView | tuple[np.ndarray, np.ndarray]] | None = None,
    images: Mapping[str, np.ndarray] | None = None,
    files: Mapping[str, Any] | None = None,
    save_files: bool = True,
    figure_prefix: str = "",
) -> str | None:
    """Log results to every logger and write them under ``<trainer.log_dir>/<part>/``. Call it on every rank.

    ``trainer.log_dir`` is a collective under DDP, so every rank calls it here; then rank 0 alone writes:
    ``scalars`` at ``step`` and ``series`` (one point per index) to every logger, and to TensorBoard loggers
    also ``figures`` (matplotlib Figures), ``texts``, ``meshes`` (a :class:`~lightning_papers.landscape.MeshView`,
    whose description goes into the tag, or ``(vertices, faces)``) and ``images`` (H, W, 3 uint8); with ``save_files``,
    the figures as ``<figure_prefix><tag without its first part>.png`` (``lr_range/curve/epoch1`` ->
    ``curve_epoch1.png``) and ``files``: ``{name.json: JSON-able}`` (non-finite numbers become ``null``)
    or ``{name: writer(path)}``.

    Returns:
        the output folder on rank 0 (``None`` elsewhere, or when nothing is saved).
    """
    log_dir = trainer.log_dir  # a collective under DDP: every rank must get here
    if not trainer.is_global_zero:
        return None
    scalars, series, figures = dict(scalars or {}), dict(series or {}), dict(figures or {})
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, global_step=step)
            for tag, values in series.items():
                for i, value in enumerate(values):
                    if math.isfinite(value):
                        writer.add_scalar(tag, value, global_step=i)
            for tag, fig in figures.items():
                writer.add_figure(tag, fig, global_step=step, close=False)
            for tag, text in (texts or {}).items():
                writer.add_text(tag, text, global_step=step)
            for tag, mesh in (meshes or {}).items():
                if isinstance(mesh, MeshView):
                    add_mesh(writer, tag, mesh.vertices, mesh.faces, mesh.colors, step=step,
                             description=mesh.description, config=mesh.config)
                else:
                    add_mesh(writer, tag, mesh[0], mesh[1], step=step)
            for tag, image in (images or {}).items():
                add_image(writer, tag, image, step=step)
            writer.flush()
        else:
            if scalars:
                logger.log_metrics(scalars, step=step)
            length = max((len(v) for v in series.values()), default=0)
            for i in range(length):
                row = {t: v[i] for t, v in series.items() if i < len(v) and math.isfinite(v[i])}
                if row:
                    logger.log_metrics(row, step=i)
    if not save_files or log_dir is None or not (figures or files):
        return None
    out = os.path.join(log_dir, part)
    os.makedirs(out, exist_ok=True)
    for tag, fig in figures.items():
        name = figure_prefix + tag.split("/", 1)[-1].replace("/", "_") + ".png"
        fig.savefig(os.path.join(out, name), dpi=100, bbox_inches="tight")
    for name, content in (files or {}).items():
        path = os.path.join(out, name)
        if callable(content):
            content(path)
        else:
            with open(path, "w") as f:
                json.dump(_json_ready(content), f, indent=2)
    return out


def progress_bar(trainer: pl.Trainer, total: int, desc: str) -> Any:
    """A tqdm bar on rank 0 when the Trainer shows progress bars (disabled otherwise)."""
    from tqdm.auto import tqdm

    disable = not trainer.is_global_zero or trainer.progress_bar_callback is None
    return tqdm(total=total, desc=desc, leave=False, disable=disable, dynamic_ncols=True)
