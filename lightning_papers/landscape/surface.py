"""``surface``: evaluate a model at ``theta + a d1 (+ b d2)`` over a 1-D or 2-D grid, fast and without a trace.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
Section 3: ``f(a, b) = L(theta* + a delta + b eta)``. The paper's code rebuilt the weights from CPU copies and
ran a data loader for every point; here (our own design):

* the evaluation batches are materialised and put on the device once;
* the perturbed weights are written in place with ``torch._foreach_copy_`` / ``torch._foreach_add_``
  (centre, then ``+ a d1``, then ``+ b d2``), only for the entries whose directions are non-zero;
* optionally the points run on an evaluation copy with BatchNorm folded into the convolutions and the
  directions scaled alike (``fold_bn``; see :mod:`lightning_papers.landscape.fold`), in channels_last memory
  format, through ``torch.compile``;
* optionally several grid points run in one batched call (``backend="vmap"``: ``torch.func.vmap`` over
  ``functional_call``) and under bf16 autocast (``autocast_dtype``);
* grid points can be sharded across processes (``shard=(rank, world_size)``), saved every few points and
  resumed;
* what is evaluated is either ``metrics(model(inputs), targets)`` on ``(inputs, targets)`` batches, or any
  ``evaluate(batch) -> {name: batch mean}`` on batches of any structure (dicts, ``(x,)``, ...), e.g. a
  LightningModule's own loss;
* the model comes back bit-identical: weights, buffers, train/eval flags and ``requires_grad``.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lightning_papers._helpers import CompiledOrEager, check_writable_folder
from lightning_papers.landscape.directions import Direction, landscape_tensors
from lightning_papers.landscape.fold import fold_batchnorm
from lightning_papers.landscape.result import SurfaceResult
from lightning_papers.landscape.sharding import check_shard, shard_indices
from lightning_papers.landscape.storage import (
    callable_identity,
    check_metadata,
    data_fingerprint,
    load_surface,
    model_fingerprint,
    save_surface,
    surface_paths,
)

__all__ = [
    "SUPPORTED_BACKENDS",
    "Evaluate",
    "accuracy",
    "check_compile_option",
    "prepare_batches",
    "preserved_model",
    "samples_in",
    "surface",
    "to_device",
]

log = logging.getLogger(__name__)

SUPPORTED_BACKENDS = ("inplace", "vmap")
Batch = tuple[torch.Tensor, torch.Tensor]
Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# evaluate(batch) -> {metric name: the batch's mean, a scalar tensor}, for batches of any structure
Evaluate = Callable[[Any], Mapping[str, torch.Tensor]]


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Top-1 accuracy of logits ``output`` (N, C) against class indices ``target`` (N,)."""
    return (output.argmax(dim=-1) == target).float().mean()


def samples_in(batch: Any) -> int:
    """Samples in ``batch``: the first dimension of its first tensor (depth first through tuples, lists and
    dicts), as Lightning counts them.

    Raises:
        ValueError: for a batch without a tensor of at least one dimension.

    Examples:
        >>> samples_in({"image": torch.zeros(5, 3), "label": torch.zeros(5)})
        5
    """
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 0:
            raise ValueError("Expected a batch whose tensors have a batch dimension, got a 0-d tensor")
        return int(batch.shape[0])
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        try:
            return samples_in(item)
        except ValueError:
            continue
    raise ValueError(f"Expected a batch holding a tensor with a batch dimension, got {type(batch).__name__}")


def to_device(batch: Any, device: torch.device | str) -> Any:
    """``batch`` with every tensor moved to ``device`` (tuples, lists and dicts rebuilt, anything else kept)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return type(batch)((k, to_device(v, device)) for k, v in batch.items())  # type: ignore[call-arg]
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _resolve_metrics(metrics: Any, loss_fn: Metric | None) -> dict[str, Metric]:
    if isinstance(metrics, (str, Callable)) and not isinstance(metrics, Mapping):
        metrics = [metrics]
    items = list(metrics.items()) if isinstance(metrics, Mapping) else [(None, m) for m in metrics]
    out: dict[str, Metric] = {}
    for name, m in items:
        if m == "loss":
            name, m = name or "loss", loss_fn or F.cross_entropy
        elif m == "accuracy":
            name, m = name or "accuracy", accuracy
        elif not callable(m):
            raise ValueError(f"Expected `metrics` entries to be 'loss', 'accuracy' or callables, got {m!r}")
        name = name or getattr(m, "__name__", type(m).__name__)
        out[str(name)] = m
    if not out:
        raise ValueError(f"Expected at least one metric, got {metrics!r}")
    return out


def _as_axes(grid: Any, ndim: int) -> list[np.ndarray]:
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


def evaluation_inputs(data: Any, device: torch.device, batch_size: int, transform: Callable | None,
                      evaluate: Evaluate | None, autocast_dtype: torch.dtype | None) -> tuple[list[Any], Callable]:
    """The fixed batches on ``device`` (``(inputs, targets)`` batches through :func:`prepare_batches`, or, with
    ``evaluate``, the user's own batches as they are) and a context-manager factory for ``autocast_dtype``.

    Raises:
        ValueError: with ``evaluate``, for ``data`` that holds no batch.
    """
    if evaluate is None:
        batches = prepare_batches(data, device, batch_size, transform)
    else:
        batches = [to_device(b, device) for b in (list(data) if not isinstance(data, torch.Tensor) else [data])]
        if not batches:
            raise ValueError("Expected `data` to hold at least one batch, got none")
    if autocast_dtype is None:
        return batches, nullcontext

    def autocast() -> Any:
        return torch.autocast(device_type=device.type, dtype=autocast_dtype)

    return batches, autocast


def prepare_batches(
    data: Any,
    device: torch.device | str,
    batch_size: int = 256,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[Batch]:
    """Materialise ``data`` once as a list of ``(inputs, targets)`` on ``device``.

    Args:
        data: a pair of tensors ``(x, y)`` (split into ``batch_size`` chunks), a list of ``(x, y)`` batches,
            or any iterable of batches such as a ``DataLoader`` (iterated once; extra batch items are dropped).
        device: where the batches go.
        batch_size: chunk size for a tensor pair.
        transform: applied to the inputs once on the device (e.g. ``DigitsDataModule.transform``).

    Raises:
        ValueError: for empty data, batches that are not ``(inputs, targets, ...)`` or a bad ``batch_size``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Expected `batch_size` to be a positive integer, got {batch_size!r}")
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if len(x) != len(y):
            raise ValueError(f"Expected inputs and targets of the same length, got {len(x)} and {len(y)}")
        raw = list(zip(x.split(batch_size), y.split(batch_size)))
    elif isinstance(data, (DataLoader, list, tuple)) or hasattr(data, "__iter__"):
        raw = list(data)
    else:
        raise ValueError(f"Expected `data` to be (x, y) tensors, a list of batches or a DataLoader, got {data!r}")
    batches: list[Batch] = []
    for b in raw:
        if not isinstance(b, (tuple, list)) or len(b) < 2 or not isinstance(b[0], torch.Tensor):
            raise ValueError(f"Expected each batch to be (inputs, targets, ...), got {type(b).__name__}")
        x, y = b[0].to(device, non_blocking=True), b[1].to(device, non_blocking=True)
        if transform is not None:
            x = transform(x)
        batches.append((x, y))
    if not batches or sum(len(y) for _, y in batches) == 0:
        raise ValueError("Expected `data` to hold at least one sample, got none")
    return batches


@contextmanager
def preserved_model(model: nn.Module):
    """Snapshot the model's state, train/eval flags and ``requires_grad``; restore them bit for bit on exit.

    Tensors are restored in place (``copy_``), so optimizers and other holders of references stay valid.
    """
    state = model.state_dict(keep_vars=True)
    saved = {k: v.detach().clone() for k, v in state.items()}
    modes = {name: m.training for name, m in model.named_modules()}
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    momenta = {name: m.momentum for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    try:
        yield saved
    finally:
        with torch.no_grad():
            for k, v in state.items():
                v.copy_(saved[k])
        for name, m in model.named_modules():
            if name in modes:
                m.training = modes[name]
            if name in momenta:
                m.momentum = momenta[name]
        for name, p in model.named_parameters():
            p.requires_grad_(grads[name])


def _recompute_bn(model: nn.Module, batches: Sequence[Batch], autocast) -> None:
    """Re-estimate BatchNorm running statistics at the current weights (cumulative average over ``batches``)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
        m.train()
    with torch.no_grad(), autocast():
        for x, _ in batches:
            model(x)
    for m in bns:
        m.eval()


def check_compile_option(compile: Any, backend: str) -> None:
    """Raise ``ValueError`` unless ``compile`` is a bool or a dict of ``torch.compile`` arguments, and (when not
    ``False``) ``backend`` is ``"inplace"``."""
    if not isinstance(compile, (bool, Mapping)):
        raise ValueError(f"Expected `compile` to be a bool or a dict of torch.compile arguments, got {compile!r}")
    if compile is not False and backend != "inplace":
        raise ValueError(f"Expected backend='inplace' with `compile`, got backend {backend!r}")


def _evaluated_tensors(
    model: nn.Module,
    kind: str,
    keys: list[str],
    dirs_list: Sequence[Direction],
    fold_bn: bool,
    channels_last: bool,
    copy_model: bool,
    metadata: dict[str, Any],
) -> tuple[nn.Module, list[torch.Tensor], list[torch.Tensor], list[list[torch.Tensor]]]:
    """The module to evaluate, the tensors to write each point's weights into, their centre values and the
    directions: the model itself, or (``copy_model``) an evaluation copy, with BatchNorms folded (``fold_bn``)
    and in channels_last format (``channels_last``), and the directions mapped onto it. Records what was done
    in ``metadata``."""
    metadata["fold_bn"] = 0
    metadata["channels_last"] = bool(channels_last)
    run_model, scale_of = model, None
    if copy_model:
        if fold_bn:
            folded = fold_batchnorm(model, keep=keys)
            if folded.reason:
                warnings.warn(f"fold_bn=True: {folded.reason}; the BatchNorms are evaluated unfolded",
                              RuntimeWarning, stacklevel=3)
            run_model, scale_of = folded.model, folded.scale_of
            metadata["fold_bn"] = len(folded.pairs)
        else:
            run_model = copy.deepcopy(model).eval()
        if channels_last:
            run_model.to(memory_format=torch.channels_last)
    live = landscape_tensors(run_model, kind)
    targets = [live[k] for k in keys]
    centre = [t.detach().clone() for t in targets]
    dirs = []
    for d in dirs_list:
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


def _scalar(value: Any, name: str) -> torch.Tensor:
    """``value`` as a 0-d float64 tensor, or a ValueError naming the metric and the shape it had."""
    v = torch.as_tensor(value).detach()
    if v.numel() != 1:
        raise ValueError(f"Expected the metric `{name}` to return one number per batch (its mean), got a tensor of "
                         f"shape {tuple(v.shape)}: reduce it (e.g. a loss with reduction='mean')")
    if v.device.type == "meta":
        raise ValueError(f"Expected the metric `{name}` to be computed on a real device, got a tensor on the meta "
                         "device: materialise the model first (e.g. model.to_empty(device='cpu') and load its weights)")
    return v.reshape(()).double()


def _evaluate(
    model: Callable[[torch.Tensor], torch.Tensor], batches: Sequence[Batch], metrics: dict[str, Metric], autocast
) -> list[float]:
    sums = [None] * len(metrics)
    n = 0
    with torch.no_grad():
        for x, y in batches:
            with autocast():
                out = model(x)
            out = out.float()
            for i, (name, fn) in enumerate(metrics.items()):
                v = _scalar(fn(out, y), name) * len(y)
                sums[i] = v if sums[i] is None else sums[i] + v
            n += len(y)
    return [float(s) / n for s in torch.stack(sums).cpu()]


def _evaluate_with(evaluate: Evaluate, batches: Sequence[Any], autocast) -> dict[str, float]:
    """Sample-weighted means over ``batches`` of what ``evaluate(batch)`` returns (batch means)."""
    sums: dict[str, torch.Tensor] = {}
    n = 0
    with torch.no_grad():
        for batch in batches:
            with autocast():
                out = evaluate(batch)
            size = samples_in(batch)
            for name, value in out.items():
                v = _scalar(value, name) * size
                sums[name] = v if name not in sums else sums[name] + v
            n += size
    if not sums:
        raise ValueError("Expected `evaluate(batch)` to return at least one {name: value}, got none")
    names = list(sums)
    return dict(zip(names, (float(v) / n for v in torch.stack([sums[k].cpu() for k in names]))))


def _evaluate_vmap(
    model: nn.Module,
    keys: list[str],
    centre: list[torch.Tensor],
    dirs: list[list[torch.Tensor]],
    coords: np.ndarray,
    batches: Sequence[Batch],
    metrics: dict[str, Metric],
    autocast,
) -> list[list[float]]:
    from torch.func import functional_call, vmap

    k = len(coords)
    stacked = {}
    for i, key in enumerate(keys):
        c = centre[i]
        w = c.unsqueeze(0).repeat(k, *([1] * c.dim()))
        for j, dl in enumerate(dirs):
            coef = torch.as_tensor(coords[:, j], dtype=c.dtype, device=c.device).view(k, *([1] * c.dim()))
            w = w + coef * dl[i]
        stacked[key] = w

    def f(params, x):
        return functional_call(model, params, (x,))

    batched = vmap(f, in_dims=(0, None))
    sums = torch.zeros(k, len(metrics), dtype=torch.float64, device=centre[0].device)
    n = 0
    with torch.no_grad():
        for x, y in batches:
            with autocast():
                out = batched(stacked, x)
            out = out.float()
            for p in range(k):
                for i, (name, fn) in enumerate(metrics.items()):
                    sums[p, i] += _scalar(fn(out[p], y), name) * len(y)
            n += len(y)
    return (sums / n).cpu().tolist()


def _check_writable(path: str | os.PathLike) -> None:
    """Make ``path``'s folder and try a file there.

    Raises:
        ValueError: naming the folder, when it cannot be made or written into.
    """
    check_writable_folder(surface_paths(path)[0].parent, "`path`")


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


def _is_framed(grid: Any) -> bool:
    from lightning_papers.landscape.framing import Framed

    return isinstance(grid, Framed)


def surface(
    model: nn.Module,
    directions: Direction | Sequence[Direction],
    grid: Any,
    data: Any,
    *,
    metrics: Any = None,
    loss_fn: Metric | None = None,
    evaluate: Evaluate | None = None,
    batch_size: int = 256,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    backend: str = "inplace",
    points_per_call: int = 4,
    autocast_dtype: torch.dtype | None = None,
    fold_bn: bool = False,
    channels_last: bool = False,
    compile: bool | Mapping[str, Any] = False,
    recompute_bn: bool = False,
    shard: tuple[int, int] | None = None,
    progress: bool | Callable[[int, int], None] | None = None,
    path: str | None = None,
    resume: bool = False,
    save_every: int = 10,
    trajectory: np.ndarray | None = None,
    points: np.ndarray | None = None,
    adaptive: Any = None,
    gather: Callable[[SurfaceResult], SurfaceResult] | None = None,
) -> SurfaceResult:
    """Evaluate ``metrics`` at ``theta + a d1 (+ b d2)`` for every point of ``grid``.

    Args:
        model: the centre model, evaluated on the device its parameters are on. It comes back bit-identical.
        directions: one :class:`Direction` (a curve) or two (a surface), all of the same ``kind``.
        grid: coordinate axes, one per direction: e.g. ``np.linspace(-1, 1, 21)`` for a curve, or
            ``(np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 4))`` for a 5x4 surface; or ``"frame"`` /
            :class:`~lightning_papers.landscape.framing.Framed` for a range chosen from 1-D scans so that the basin
            fills the picture (:func:`~lightning_papers.landscape.framing.frame_range`; the range goes into
            ``metadata["range"]``). Axes you give are used as they are.
        data: ``(x, y)`` tensors, a list of ``(x, y)`` batches or a ``DataLoader``; materialised on the device
            once (see :func:`prepare_batches`).
        metrics: names (``"loss"``, ``"accuracy"``), callables ``fn(output, target) -> scalar`` (batch mean),
            or a ``{name: fn}`` mapping; default ``("loss", "accuracy")``. Batch means are averaged weighted by
            batch size.
        loss_fn: the ``"loss"`` metric (default ``F.cross_entropy``).
        evaluate: instead of ``metrics``/``loss_fn``, ``evaluate(batch) -> {name: batch mean}`` on batches of any
            structure (``data`` is then a list of batches, moved to the model's device as they are), e.g. a
            LightningModule's own loss. It is called with the point's weights in the model, under
            ``torch.no_grad()``. Backend ``"inplace"`` on the model itself only (no ``fold_bn``,
            ``channels_last``, ``compile`` or ``recompute_bn``: those evaluate a copy).
        batch_size: chunk size when ``data`` is a tensor pair.
        transform: applied to the inputs once on the device.
        backend: ``"inplace"`` (write each point's weights into the model) or ``"vmap"`` (evaluate
            ``points_per_call`` points in one ``torch.func.vmap`` call over ``functional_call``).
        points_per_call: grid points per vmap call (memory grows with it).
        autocast_dtype: e.g. ``torch.bfloat16`` to run the forward passes under autocast; ``None`` for the
            model's own precision.
        fold_bn: evaluate a copy of the model with each BatchNorm folded into the convolution before it, and
            the directions scaled to match (exact up to float rounding; see
            :func:`~lightning_papers.landscape.fold.fold_batchnorm`): no BatchNorm kernels per point. Pairs a
            point would change (a non-zero direction on the BatchNorm) stay unfolded; a model ``torch.fx``
            cannot trace is evaluated unfolded, with a warning.
        channels_last: evaluate a copy of the model in channels_last memory format, with 4-D inputs converted
            once (faster convolutions on GPUs under bf16/fp16, and often on CPUs).
        compile: ``torch.compile`` the evaluated copy (``True``, or a dict of ``torch.compile`` arguments such as
            ``{"mode": "max-autotune-no-cudagraphs"}``); backend ``"inplace"`` only. The first point compiles.
            If compiling fails, warn once and evaluate eagerly.
        recompute_bn: re-estimate BatchNorm running statistics on ``data`` at every point instead of keeping
            the centre's (inplace backend, ``kind="weights"`` only).
        shard: ``(rank, world_size)``: compute only the points ``rank, rank + world_size, ...`` of the flat
            grid (merge with :func:`merge_surfaces`).
        progress: ``True`` for a tqdm bar, or a callable ``progress(done, total)`` called after each point
            (an exception it raises stops the run; with ``path`` the points so far are saved first).
        path: save ``<path>.npz`` / ``<path>.json`` every ``save_every`` points and at the end.
        resume: continue the surface saved at ``path`` (its points are skipped); refuses one whose metadata
            differs.
        save_every: points between two saves.
        trajectory: optional (T, 2) path stored with the result for plotting.
        points: a boolean mask of the grid's shape: compute only those points (sharded round-robin over the
            masked points); the others stay uncomputed.
        adaptive: refine adaptively instead of computing every point: a
            :class:`~lightning_papers.landscape.adaptive.Refinement` (or its keyword arguments as a dict, or an int
            point budget); see :func:`~lightning_papers.landscape.adaptive.adaptive_surface`.
        gather: with ``adaptive`` and ``shard``: ``gather(part) -> merged`` on every rank after each refinement
            round (e.g. an all-gather and :func:`merge_surfaces`), so that every rank takes the same decisions.

    Returns:
        a :class:`SurfaceResult`.

    Raises:
        ValueError: for bad directions, grid, data, metrics, backend, shard, options that cannot go together,
            ``resume`` without ``path``, or a saved surface whose metadata does not match.

    Examples:
        >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
        >>> from lightning_papers.landscape import random_directions
        >>> d1, d2 = random_directions(net, n=2, seed=0)
        >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
        >>> r = surface(net, [d1, d2], (np.linspace(-1, 1, 3), np.linspace(-1, 1, 2)), (x, y))
        >>> r["loss"].shape
        (3, 2)
    """
    if adaptive is not None or gather is not None or isinstance(grid, str) or _is_framed(grid):
        from lightning_papers.landscape.adaptive import adaptive_surface
        from lightning_papers.landscape.framing import framed_axes

        options = dict(metrics=metrics, loss_fn=loss_fn, evaluate=evaluate, batch_size=batch_size,
                       transform=transform, backend=backend, points_per_call=points_per_call,
                       autocast_dtype=autocast_dtype, fold_bn=fold_bn, channels_last=channels_last, compile=compile,
                       recompute_bn=recompute_bn)
        grid, framed = framed_axes(model, directions, grid, data, path=path, resume=resume, **options)
        if adaptive is None:
            if gather is not None:
                raise ValueError("Expected `gather` only with `adaptive`, got `gather` without it")
            result = surface(model, directions, grid, data, shard=shard, progress=progress, path=path,
                             resume=resume, save_every=save_every, trajectory=trajectory, points=points, **options)
        else:
            result = adaptive_surface(model, directions, grid, data, adaptive, shard=shard, gather=gather,
                                      progress=progress, path=path, resume=resume, save_every=save_every,
                                      trajectory=trajectory, **options)
        if framed is not None:
            result.metadata["range"] = framed
            if path is not None:
                save_surface(result, path)
        return result
    dirs_list = [directions] if isinstance(directions, Direction) else list(directions)
    if not 1 <= len(dirs_list) <= 2 or not all(isinstance(d, Direction) for d in dirs_list):
        got = [type(d).__name__ for d in dirs_list] if isinstance(directions, (list, tuple)) else \
            type(directions).__name__
        raise ValueError(f"Expected one or two `Direction`s, got {got}")
    kind = dirs_list[0].kind
    if any(d.kind != kind for d in dirs_list):
        raise ValueError(f"Expected directions of one kind, got {[d.kind for d in dirs_list]}")
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(f"Expected `backend` to be one of {SUPPORTED_BACKENDS}, got {backend!r}")
    if isinstance(points_per_call, bool) or not isinstance(points_per_call, int) or points_per_call < 1:
        raise ValueError(f"Expected `points_per_call` to be a positive integer, got {points_per_call!r}")
    if isinstance(save_every, bool) or not isinstance(save_every, int) or save_every < 1:
        raise ValueError(f"Expected `save_every` to be a positive integer, got {save_every!r}")
    if recompute_bn and (backend != "inplace" or kind != "weights"):
        raise ValueError(
            f"Expected `recompute_bn=True` with backend='inplace' and kind='weights', got {backend!r} and {kind!r}"
        )
    check_compile_option(compile, backend)
    if evaluate is not None:
        if not callable(evaluate):
            raise ValueError(f"Expected `evaluate` to be a callable(batch) -> {{name: value}}, got {evaluate!r}")
        if metrics is not None or loss_fn is not None:
            raise ValueError("Expected either `evaluate` or `metrics`/`loss_fn`, got both")
        copies = {"fold_bn": fold_bn, "channels_last": channels_last, "compile": compile is not False,
                  "recompute_bn": recompute_bn, "backend='vmap'": backend != "inplace"}
        if any(copies.values()):
            raise ValueError(f"Expected `evaluate` without {[k for k, v in copies.items() if v]}: those evaluate a "
                             "copy of the network, `evaluate` calls the model itself; pass `metrics`/`loss_fn` on "
                             "(inputs, targets) batches to use them")
    if fold_bn and recompute_bn:
        raise ValueError("Expected at most one of `fold_bn` and `recompute_bn`, got both True (re-estimated "
                         "statistics change each point's BatchNorm, so there is nothing fixed to fold)")
    if resume and path is None:
        raise ValueError("Expected a `path` to resume from, got `resume=True` with `path=None`")
    if autocast_dtype is not None and not isinstance(autocast_dtype, torch.dtype):
        raise ValueError(f"Expected `autocast_dtype` to be a torch.dtype or None, got {autocast_dtype!r}")
    rank, world = check_shard(shard)
    axes = _as_axes(grid, len(dirs_list))
    metric_fns = _resolve_metrics(("loss", "accuracy") if metrics is None else metrics, loss_fn) if evaluate is None \
        else {}

    tensors = landscape_tensors(model, kind)
    for d in dirs_list:
        for key, t in d.tensors.items():
            if key not in tensors or tuple(tensors[key].shape) != tuple(t.shape):
                raise ValueError(f"Expected direction entry {key!r} to match the model's tensors, got a mismatch")
    keys = [k for k in tensors if any(k in d.tensors and bool(d.tensors[k].any()) for d in dirs_list)]
    if not keys:
        raise ValueError("Expected at least one non-zero direction entry, got all-zero directions")

    if path is not None:
        _check_writable(path)  # now, not after every point was computed
    device = next(iter(tensors.values())).device
    batches, autocast = evaluation_inputs(data, device, batch_size, transform, evaluate, autocast_dtype)
    if evaluate is not None:  # the metric names are what the evaluation returns: ask it once at the centre
        with preserved_model(model):
            model.eval()
            metric_fns = dict.fromkeys(_evaluate_with(evaluate, batches[:1], autocast))

    shape = tuple(len(a) for a in axes)
    metadata = {
        "ndim": len(axes),
        "axes": [a.tolist() for a in axes],
        "directions": [d.to_dict() for d in dirs_list],
        "model": model_fingerprint(model),
        "data": {"fingerprint": data_fingerprint(batches), "samples": int(sum(samples_in(b) for b in batches))},
        "metrics": list(metric_fns),
        # what computed them: a resumed or merged surface must not mix two losses under one name
        "evaluation": callable_identity(evaluate) if evaluate is not None else
        {name: callable_identity(fn) for name, fn in metric_fns.items()},
        "shard": None if world == 1 else [rank, world],
        "autocast_dtype": None if autocast_dtype is None else str(autocast_dtype),
        "recompute_bn": bool(recompute_bn),
        "backend": backend,
        "paper": "Li et al., Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913)",
    }
    values = {m: np.full(shape, np.nan) for m in metric_fns}
    computed = np.zeros(shape, dtype=bool)
    if resume and surface_paths(path)[0].exists():
        saved = load_surface(path)
        check_metadata(saved.metadata, metadata, where=f"the saved surface at {str(surface_paths(path)[0])!r}")
        values = {m: saved.values[m].copy() for m in metric_fns}
        computed = saved.computed.copy()
        log.info("landscape: resuming %s with %d/%d points done", path, int(computed.sum()), computed.size)
    result = SurfaceResult(axes, values, computed, metadata, trajectory)

    if points is None:
        owned = shard_indices(shape, rank, world)
    else:
        mask = np.asarray(points, dtype=bool)
        if mask.shape != shape:
            raise ValueError(f"Expected `points` to be a boolean mask of the grid's shape {shape}, got {mask.shape}")
        owned = np.flatnonzero(mask)[rank::world]
    todo = [int(i) for i in owned if not computed.flat[i]]
    total = len(owned)
    report, close = _progress_fn(progress, total)
    done = total - len(todo)
    unsaved = 0
    t0 = time.perf_counter()

    def record(flat: int, vals: Sequence[float]) -> None:
        nonlocal done, unsaved
        idx = np.unravel_index(flat, shape)
        for m, v in zip(metric_fns, vals):
            result.values[m][idx] = v
        result.computed[idx] = True
        done += 1
        unsaved += 1
        if path is not None and unsaved >= save_every:
            save_surface(result, path)
            unsaved = 0
        if report is not None:
            report(done, total)

    def coords_of(flat: int) -> list[float]:
        idx = np.unravel_index(flat, shape)
        return [float(axes[j][idx[j]]) for j in range(len(axes))]

    try:
        with preserved_model(model):
            model.eval()
            with torch.no_grad():
                run_model, targets, centre, dirs = _evaluated_tensors(
                    model, kind, keys, dirs_list, fold_bn, channels_last,
                    bool(todo) and (fold_bn or channels_last or compile is not False), result.metadata)
                forward = CompiledOrEager(run_model, enabled=compile is not False,
                                          **(dict(compile) if isinstance(compile, Mapping) else {}))
                if channels_last:
                    batches = [(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x, y)
                               for x, y in batches]
                if backend == "inplace":
                    for flat in todo:
                        torch._foreach_copy_(targets, centre)
                        for c, dl in zip(coords_of(flat), dirs):
                            if c != 0.0:
                                torch._foreach_add_(targets, dl, alpha=c)
                        if recompute_bn:
                            _recompute_bn(run_model, batches, autocast)
                        if evaluate is not None:
                            vals = _evaluate_with(evaluate, batches, autocast)
                            if set(vals) != set(metric_fns):
                                raise ValueError(f"Expected `evaluate` to return the same names at every point, "
                                                 f"got {sorted(vals)} after {sorted(metric_fns)}")
                            record(flat, [vals[m] for m in metric_fns])
                        else:
                            record(flat, _evaluate(forward, batches, metric_fns, autocast))
                else:
                    for start in range(0, len(todo), points_per_call):
                        chunk = todo[start : start + points_per_call]
                        coords = np.array([coords_of(f) for f in chunk])
                        rows = _evaluate_vmap(run_model, keys, centre, dirs, coords, batches, metric_fns, autocast)
                        for flat, vals in zip(chunk, rows):
                            record(flat, vals)
    finally:
        close()
        if path is not None and unsaved:
            save_surface(result, path)
    elapsed = time.perf_counter() - t0
    n_new = len(todo)
    result.metadata["timing"] = {
        "points": n_new,
        "seconds": elapsed,
        "points_per_s": n_new / elapsed if elapsed > 0 and n_new else math.nan,
    }
    if path is not None:
        save_surface(result, path)
    return result
