"""The points of a loss surface: ``theta + a d1 (+ b d2)`` over a lattice, evaluated fast and without a trace.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
Section 3: ``f(a, b) = L(theta* + a delta + b eta)``. The paper's code rebuilt the weights from CPU copies and
ran a data loader for every point; here (our own design) the batches are put on the device once
(:class:`~lightning_papers.landscape.evaluation.EvaluationSpec`), and the perturbed weights are written in place
with ``torch._foreach_copy_`` / ``torch._foreach_add_`` (centre, then ``+ a d1``, then ``+ b d2``), only for the
entries whose directions are non-zero; optionally on an evaluation copy (BatchNorm folded, channels_last,
compiled) or several points per ``torch.func.vmap`` call. Points are sharded, saved every few and resumed; the
model comes back bit-identical. :func:`~lightning_papers.landscape.surface` is the public entry.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_papers._helpers import CompiledOrEager, check_writable_folder
from lightning_papers.landscape.directions import Direction, landscape_tensors
from lightning_papers.landscape.evaluation import (
    EvaluationSpec,
    _evaluate,
    _evaluate_vmap,
    _evaluate_with,
    _recompute_bn,
    samples_in,
)
from lightning_papers.landscape.fold import fold_batchnorm
from lightning_papers.landscape.result import SurfaceResult, load_surface, save_surface
from lightning_papers.landscape.sharding import check_shard, shard_indices
from lightning_papers.landscape.storage import (
    SurfaceStore,
    callable_identity,
    check_metadata,
    data_fingerprint,
    model_fingerprint,
    surface_paths,
)

__all__ = ["as_axes", "evaluate_grid"]

log = logging.getLogger(__name__)
PAPER = "Li et al., Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913)"


def evaluate_grid(model: nn.Module, directions: Direction | Sequence[Direction], grid: Any, spec: EvaluationSpec, *,
                  points: Any = None, store: SurfaceStore | None = None, progress: Any = None,
                  trajectory: np.ndarray | None = None) -> SurfaceResult:
    """:func:`~lightning_papers.landscape.surface` on coordinate axes: validate, plan, evaluate the points, store.

    ``points`` is ``None`` (every point of the lattice) or a boolean mask of its shape; the other arguments are
    :func:`~lightning_papers.landscape.surface`'s.
    """
    store = store or SurfaceStore()
    plan = _plan(model, directions, grid, spec, points, store)
    result = _start(plan, spec, store, trajectory)
    recorder = _Recorder(result, plan, store, progress)
    t0 = time.perf_counter()
    try:
        _evaluate_points(model, plan, spec, recorder)
    finally:
        recorder.close()
    elapsed = time.perf_counter() - t0
    n_new = len(plan.todo)
    result.metadata["timing"] = {"points": n_new, "seconds": elapsed,
                                 "points_per_s": n_new / elapsed if elapsed > 0 and n_new else math.nan}
    if store.path is not None:
        save_surface(result, store.path)
    return result


# ----------------------------------------------------------------------------------------------------
# validate and plan
# ----------------------------------------------------------------------------------------------------
@dataclass
class _Plan:
    directions: list[Direction]
    kind: str
    axes: list[np.ndarray]
    keys: list[str]  # the entries some direction moves
    batches: list[Any]
    autocast: Callable[[], Any]
    metrics: dict[str, Any]
    metadata: dict[str, Any]
    owned: np.ndarray  # flat indices of this rank's points
    todo: list[int] = None  # type: ignore[assignment]  # set once a saved surface is read

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    def coords(self, flat: int) -> list[float]:
        idx = np.unravel_index(flat, self.shape)
        return [float(self.axes[j][idx[j]]) for j in range(len(self.axes))]


def _directions(directions: Any) -> tuple[list[Direction], str]:
    dirs = [directions] if isinstance(directions, Direction) else list(directions)
    if not 1 <= len(dirs) <= 2 or not all(isinstance(d, Direction) for d in dirs):
        got = [type(d).__name__ for d in dirs] if isinstance(directions, (list, tuple)) else type(directions).__name__
        raise ValueError(f"Expected one or two `Direction`s, got {got}")
    if any(d.kind != dirs[0].kind for d in dirs):
        raise ValueError(f"Expected directions of one kind, got {[d.kind for d in dirs]}")
    return dirs, dirs[0].kind


def _moved_keys(model: nn.Module, dirs: list[Direction], kind: str) -> tuple[list[str], torch.device]:
    tensors = landscape_tensors(model, kind)
    for d in dirs:
        for key, t in d.tensors.items():
            if key not in tensors or tuple(tensors[key].shape) != tuple(t.shape):
                raise ValueError(f"Expected direction entry {key!r} to match the model's tensors, got a mismatch")
    keys = [k for k in tensors if any(k in d.tensors and bool(d.tensors[k].any()) for d in dirs)]
    if not keys:
        raise ValueError("Expected at least one non-zero direction entry, got all-zero directions")
    return keys, next(iter(tensors.values())).device


def _plan(model: nn.Module, directions: Any, grid: Any, spec: EvaluationSpec, points: Any,
          store: SurfaceStore) -> _Plan:
    """Everything checked (before a point is computed), the batches on the device, the metadata, this rank's
    points."""
    dirs, kind = _directions(directions)
    if spec.recompute_bn and (spec.backend != "inplace" or kind != "weights"):
        raise ValueError(f"Expected `recompute_bn=True` with backend='inplace' and kind='weights', got "
                         f"{spec.backend!r} and {kind!r}")
    rank, world = check_shard(spec.shard)
    axes = as_axes(grid, len(dirs))
    keys, device = _moved_keys(model, dirs, kind)
    if store.path is not None:  # now, not after every point was computed
        check_writable_folder(surface_paths(store.path)[0].parent, "`path`")
    batches, autocast = spec.prepared(device)
    metrics: dict[str, Any] = spec.metric_fns()
    if spec.evaluate is not None:  # the metric names are what the evaluation returns: ask it once at the centre
        with spec.evaluation_mode(model):
            metrics = dict.fromkeys(_evaluate_with(spec.evaluate, batches[:1], autocast))
    shape = tuple(len(a) for a in axes)
    if points is None:
        owned = shard_indices(shape, rank, world)
    else:
        mask = np.asarray(points, dtype=bool)
        if mask.shape != shape:
            raise ValueError(f"Expected `points` to be a boolean mask of the grid's shape {shape}, got {mask.shape}")
        owned = np.flatnonzero(mask)[rank::world]
    metadata = _metadata(model, dirs, axes, spec, batches, metrics)
    return _Plan(dirs, kind, axes, keys, batches, autocast, metrics, metadata, owned)


def _metadata(model: nn.Module, dirs: list[Direction], axes: list[np.ndarray], spec: EvaluationSpec,
              batches: list[Any], metrics: dict[str, Any]) -> dict[str, Any]:
    """What made the surface: a resumed or merged surface must not mix two of anything under one name."""
    rank, world = check_shard(spec.shard)
    evaluation = callable_identity(spec.evaluate) if spec.evaluate is not None else {
        name: callable_identity(fn) for name, fn in metrics.items()}
    return {
        "ndim": len(axes),
        "axes": [a.tolist() for a in axes],
        "directions": [d.to_dict() for d in dirs],
        "model": model_fingerprint(model),
        "data": {"fingerprint": data_fingerprint(batches), "samples": int(sum(samples_in(b) for b in batches))},
        "metrics": list(metrics),
        "evaluation": evaluation,
        "shard": None if world == 1 else [rank, world],
        "autocast_dtype": None if spec.autocast_dtype is None else str(spec.autocast_dtype),
        "recompute_bn": bool(spec.recompute_bn),
        "backend": spec.backend,
        "paper": PAPER,
    }


def as_axes(grid: Any, ndim: int) -> list[np.ndarray]:
    """``grid`` as ``ndim`` coordinate arrays.

    Raises:
        ValueError: for a grid of another dimension, or an axis that is empty, not 1-D or not finite.
    """
    if ndim == 1 and not (isinstance(grid, (list, tuple)) and len(grid) == 1 and np.ndim(grid[0]) == 1):
        grid = [grid]
    if not isinstance(grid, (list, tuple)) or len(grid) != ndim:
        raise ValueError(f"Expected `grid` to be {ndim} coordinate array(s), one per direction, got {grid!r}")
    axes = []
    for a in grid:
        arr = np.asarray(a, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0 or not np.isfinite(arr).all():
            raise ValueError(f"Expected each `grid` axis to be a non-empty 1-D array of finite numbers, got {a!r}")
        axes.append(arr)
    return axes




# ----------------------------------------------------------------------------------------------------
# store
# ----------------------------------------------------------------------------------------------------
def _start(plan: _Plan, spec: EvaluationSpec, store: SurfaceStore, trajectory: np.ndarray | None) -> SurfaceResult:
    """The empty result, or the one saved at ``store.path`` when resuming (its metadata must match)."""
    values = {m: np.full(plan.shape, np.nan) for m in plan.metrics}
    computed = np.zeros(plan.shape, dtype=bool)
    path = store.path
    npz = surface_paths(path)[0] if path is not None else None
    if store.resume and path is not None and npz is not None and npz.exists():
        saved = load_surface(path)
        check_metadata(saved.metadata, plan.metadata, where=f"the saved surface at {str(npz)!r}")
        values = {m: saved.values[m].copy() for m in plan.metrics}
        computed = saved.computed.copy()
        log.info("landscape: resuming %s with %d/%d points done", store.path, int(computed.sum()), computed.size)
    plan.todo = [int(i) for i in plan.owned if not computed.flat[i]]
    return SurfaceResult(plan.axes, values, computed, plan.metadata, trajectory)


class _Recorder:
    """Writes each point's values into the result, saves every ``save_every`` points (and, on the way out, what is
    unsaved) and reports progress."""

    def __init__(self, result: SurfaceResult, plan: _Plan, store: SurfaceStore, progress: Any) -> None:
        self.result, self.plan, self.store = result, plan, store
        self.total = len(plan.owned)
        self.done = self.total - len(plan.todo)
        self.unsaved = 0
        self.report, self._close = _progress_fn(progress, self.total)

    def __call__(self, flat: int, vals: Sequence[float]) -> None:
        idx = np.unravel_index(flat, self.plan.shape)
        for m, v in zip(self.plan.metrics, vals):
            self.result.values[m][idx] = v
        self.result.computed[idx] = True
        self.done += 1
        self.unsaved += 1
        if self.store.path is not None and self.unsaved >= self.store.save_every:
            save_surface(self.result, self.store.path)
            self.unsaved = 0
        if self.report is not None:
            self.report(self.done, self.total)

    def close(self) -> None:
        self._close()
        if self.store.path is not None and self.unsaved:
            save_surface(self.result, self.store.path)


def _progress_fn(progress: Any, total: int) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    if progress is None or progress is False:
        return None, lambda: None
    if progress is True:
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - tqdm ships with most environments
            return (lambda done, tot: log.info("landscape: %d/%d points", done, tot)), lambda: None
        bar = tqdm(total=total, desc="landscape", unit="pt")

        def update(done: int, tot: int) -> None:
            bar.n = done
            bar.refresh()

        return update, bar.close
    if callable(progress):
        return progress, lambda: None
    raise ValueError(f"Expected `progress` to be None, a bool or a callable(done, total), got {progress!r}")



# ----------------------------------------------------------------------------------------------------
# evaluate the points
# ----------------------------------------------------------------------------------------------------
def _evaluate_points(model: nn.Module, plan: _Plan, spec: EvaluationSpec, record: _Recorder) -> None:
    """Every point of ``plan.todo``, with the model restored bit for bit afterwards."""
    batches = plan.batches
    copy_model = bool(plan.todo) and (spec.fold_bn or spec.channels_last or spec.compile is not False)
    with spec.evaluation_mode(model), torch.no_grad():
        run_model, targets, centre, dirs = _evaluated_tensors(model, plan, spec, copy_model)
        if spec.channels_last:
            batches = [(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x, y) for x, y in batches]
        if spec.backend == "vmap":
            for start in range(0, len(plan.todo), spec.points_per_call):
                chunk = plan.todo[start : start + spec.points_per_call]
                coords = np.array([plan.coords(f) for f in chunk])
                rows = _evaluate_vmap(run_model, plan.keys, centre, dirs, coords, batches, plan.metrics, plan.autocast)
                for flat, vals in zip(chunk, rows):
                    record(flat, vals)
            return
        forward = CompiledOrEager(run_model, enabled=spec.compile is not False,
                                  **(dict(spec.compile) if isinstance(spec.compile, Mapping) else {}))
        for flat in plan.todo:
            torch._foreach_copy_(targets, centre)
            for c, dl in zip(plan.coords(flat), dirs):
                if c != 0.0:
                    torch._foreach_add_(targets, dl, alpha=c)
            if spec.recompute_bn:
                _recompute_bn(run_model, batches, plan.autocast)
            record(flat, _point_values(forward, batches, plan, spec))


def _point_values(forward: Callable, batches: list[Any], plan: _Plan, spec: EvaluationSpec) -> list[float]:
    if spec.evaluate is None:
        return _evaluate(forward, batches, plan.metrics, plan.autocast)
    vals = _evaluate_with(spec.evaluate, batches, plan.autocast)
    if set(vals) != set(plan.metrics):
        raise ValueError(f"Expected `evaluate` to return the same names at every point, got {sorted(vals)} after "
                         f"{sorted(plan.metrics)}")
    return [vals[m] for m in plan.metrics]


def _evaluated_tensors(model: nn.Module, plan: _Plan, spec: EvaluationSpec, copy_model: bool
                       ) -> tuple[nn.Module, list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]]]:
    """The module to evaluate, the tensors to write each point's weights into, their centre values and the
    directions: the model itself, or (``copy_model``) an evaluation copy, with BatchNorms folded (``fold_bn``)
    and in channels_last format (``channels_last``), and the directions mapped onto it. Records what was done
    in the plan's metadata."""
    metadata, keys, channels_last = plan.metadata, plan.keys, spec.channels_last
    metadata["fold_bn"] = 0
    metadata["channels_last"] = bool(channels_last)
    run_model, scale_of = model, None
    if copy_model:
        if spec.fold_bn:
            folded = fold_batchnorm(model, keep=keys)
            if folded.reason:
                warnings.warn(f"fold_bn=True: {folded.reason}; the BatchNorms are evaluated unfolded",
                              RuntimeWarning, stacklevel=4)
            run_model, scale_of = folded.model, folded.scale_of
            metadata["fold_bn"] = len(folded.pairs)
        else:
            run_model = copy.deepcopy(model)  # in the evaluation mode the model is in
        if channels_last:
            run_model.to(memory_format=torch.channels_last)
    live = landscape_tensors(run_model, plan.kind)
    targets = [live[k] for k in keys]
    centre = [t.detach().clone() for t in targets]
    dirs = []
    for d in plan.directions:
        row = []
        for k, t in zip(keys, targets):
            if k not in d.tensors:
                row.append(torch.zeros_like(t))
                continue
            s = scale_of(k) if scale_of is not None else None
            v = d.tensors[k].to(device=t.device)
            v = v.to(t.dtype) if s is None else (v.double() * s).to(t.dtype)
            row.append(v.contiguous(memory_format=torch.channels_last) if channels_last and v.dim() == 4 else v)
        dirs.append(row)
    return run_model, targets, centre, dirs

