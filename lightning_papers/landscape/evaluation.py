"""What a landscape evaluates and how: one frozen :class:`EvaluationSpec`, taken by
:func:`~lightning_papers.landscape.surface`, :func:`~lightning_papers.landscape.interpolate`, the ``hessian_*``
functions and :func:`~lightning_papers.landscape.hessian_top_eigenvalue`.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
Section 3: the loss ``L(theta)`` over a fixed set of samples. Here (our own design) the batches are materialised
on the model's device once; what is evaluated is either ``metrics(model(inputs), targets)`` on
``(inputs, targets)`` batches, or any ``evaluate(batch) -> {name: batch mean}`` on batches of any structure (e.g. a
LightningModule's own loss); batch means are averaged weighted by batch size.

:func:`evaluate_grid` computes the points of a surface, ``f(a, b) = L(theta* + a delta + b eta)`` (Section 3),
without a trace: each point's weights are written in place (``torch._foreach_copy_`` / ``_foreach_add_``, only the
entries some direction moves), optionally on a folded, channels_last or compiled copy or several points per
``torch.func.vmap`` call; points are sharded, saved and resumed.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lightning_papers import _validation as check
from lightning_papers._helpers import CompiledOrEager, check_writable_folder
from lightning_papers.landscape.directions import Direction, landscape_tensors
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

__all__ = [
    "SUPPORTED_BACKENDS", "SUPPORTED_BATCHNORM", "EvaluationSpec", "Evaluate", "accuracy", "as_axes", "evaluate_grid",
    "prepare_batches", "preserved_model", "samples_in", "to_device",
]

SUPPORTED_BACKENDS = ("inplace", "vmap")
SUPPORTED_BATCHNORM = ("running", "batch")
Batch = tuple[torch.Tensor, torch.Tensor]
Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Metrics = str | Metric | Sequence[str | Metric] | Mapping[str, str | Metric]  # see EvaluationSpec
# evaluate(batch) -> {metric name: the batch's mean, a scalar tensor}, for batches of any structure
Evaluate = Callable[[Any], Mapping[str, torch.Tensor]]
AllReduce = Callable[[torch.Tensor], torch.Tensor]
Autocast = Callable[[], AbstractContextManager[object]]  # a fresh autocast (or null) context per call
Directions = Direction | Sequence[Direction]
Progress = bool | Callable[[int, int], None] | None  # True: a progress bar


@dataclass(frozen=True)
class EvaluationSpec:
    """What is evaluated, on which batches, and how: built once, validated once, passed down unchanged.

    Args:
        data: ``(x, y)`` tensors (split into ``batch_size`` chunks), a list of ``(x, y, ...)`` batches or a
            ``DataLoader`` (see :func:`prepare_batches`); with ``evaluate``, batches of any structure. Put on the
            model's device once per call.
        metrics: names (``"loss"``, ``"accuracy"``), callables ``fn(output, target) -> scalar`` (batch mean), or a
            ``{name: fn}`` mapping; default ``("loss", "accuracy")`` for surfaces. The Hessians use ``"loss"``.
        loss_fn: the ``"loss"`` metric (default ``F.cross_entropy``).
        evaluate: instead of ``metrics``/``loss_fn``, ``evaluate(batch) -> {name: batch mean}`` (the Hessians use
            its ``"loss"``), called with the point's weights in the model itself.
        batch_size: chunk size when ``data`` is a tensor pair.
        transform: applied to the inputs once on the device.
        autocast_dtype: e.g. ``torch.bfloat16``: forward passes (and double backward) under autocast; ``None`` for
            the model's own precision.
        batchnorm: ``"running"`` (eval mode: BatchNorm uses its running statistics) or ``"batch"`` (each batch's
            own statistics, as in training, the running ones untouched).
        recompute_bn: surfaces: re-estimate BatchNorm running statistics on ``data`` at every point (backend
            ``"inplace"``, directions of kind ``"weights"``).
        fold_bn: surfaces: evaluate a copy with each BatchNorm folded into the convolution before it
            (:func:`~lightning_papers.landscape.fold.fold_batchnorm`); a model ``torch.fx`` cannot trace is
            evaluated unfolded, with a warning.
        channels_last: surfaces: evaluate a copy in channels_last memory format (4-D inputs converted once).
        compile: surfaces: ``torch.compile`` the evaluated copy (``True`` or a dict of its arguments); backend
            ``"inplace"`` only; a failure to compile warns once and runs eagerly.
        backend: surfaces: ``"inplace"`` (write each point's weights into the model) or ``"vmap"``
            (``points_per_call`` points per ``torch.func.vmap`` call over ``functional_call``).
        points_per_call: grid points per vmap call.
        cache_graph: Hessians: keep each batch's gradient graph for every product of a call (faster; memory of
            about a training step's activations per batch).
        shard: ``(rank, world_size)``: a surface computes the points ``rank, rank + world_size, ...`` of its grid.
        gather: ``gather(part) -> merged`` on every rank (e.g. an all-gather and
            :func:`~lightning_papers.landscape.merge_surfaces`): an adaptive surface's rounds are shared through it.
        all_reduce: ``fn(tensor) -> tensor`` summing over processes: the Hessian is that of the mean loss over
            every process's batches.

    Raises:
        ValueError: for an option of the wrong type or value, ``evaluate`` with ``metrics``/``loss_fn`` or with an
            option that evaluates a copy, ``fold_bn`` with ``recompute_bn`` or ``batchnorm="batch"``.

    Examples:
        >>> spec = EvaluationSpec((torch.randn(8, 4), torch.randint(0, 3, (8,))), metrics=("loss",))
        >>> list(spec.metric_fns())
        ['loss']
    """

    data: Any
    metrics: Metrics | None = None
    loss_fn: Metric | None = None
    evaluate: Evaluate | None = None
    batch_size: int = 256
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    autocast_dtype: torch.dtype | None = None
    batchnorm: str = "running"
    recompute_bn: bool = False
    fold_bn: bool = False
    channels_last: bool = False
    compile: bool | Mapping[str, Any] = False
    backend: str = "inplace"
    points_per_call: int = 4
    cache_graph: bool = True
    shard: tuple[int, int] | None = None
    gather: Callable[[SurfaceResult], SurfaceResult] | None = None
    all_reduce: AllReduce | None = None

    def __post_init__(self) -> None:
        check.positive_int("batch_size", self.batch_size)
        check.positive_int("points_per_call", self.points_per_call)
        check.one_of("backend", self.backend, SUPPORTED_BACKENDS)
        check.one_of("batchnorm", self.batchnorm, SUPPORTED_BATCHNORM)
        if self.autocast_dtype is not None and not isinstance(self.autocast_dtype, torch.dtype):
            raise ValueError(f"Expected `autocast_dtype` to be a torch.dtype or None, got {self.autocast_dtype!r}")
        if not isinstance(self.compile, (bool, Mapping)):
            raise ValueError(f"Expected `compile` to be a bool or a dict of torch.compile arguments, got "
                             f"{self.compile!r}")
        if self.compile is not False and self.backend != "inplace":
            raise ValueError(f"Expected backend='inplace' with `compile`, got backend {self.backend!r}")
        if self.fold_bn and (self.recompute_bn or self.batchnorm == "batch"):
            raise ValueError("Expected at most one of `fold_bn` and `recompute_bn`, got both True (re-estimated "
                             "statistics change each point's BatchNorm, so there is nothing fixed to fold)"
                             if self.recompute_bn else "Expected batchnorm='running' with `fold_bn`, got 'batch': "
                             "folding needs fixed running statistics")
        check_shard(self.shard)
        for name in ("gather", "all_reduce", "transform", "loss_fn"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ValueError(f"Expected `{name}` to be a callable or None, got {getattr(self, name)!r}")
        if self.evaluate is None:
            self.metric_fns()  # names and callables checked now, not at the first point
            return
        if not callable(self.evaluate):
            raise ValueError(f"Expected `evaluate` to be a callable(batch) -> {{name: batch mean}}, got "
                             f"{self.evaluate!r}")
        if self.metrics is not None or self.loss_fn is not None:
            other = "`loss_fn`" if self.metrics is None else "`metrics`/`loss_fn`"
            raise ValueError(f"Expected either `evaluate` or {other}, got both")
        if self.copies:
            raise ValueError(f"Expected `evaluate` without {self.copies}: those evaluate a copy of the network, "
                             "`evaluate` calls the model itself; pass `metrics`/`loss_fn` on (inputs, targets) "
                             "batches to use them")

    @classmethod
    def of(cls, spec: Any, **options: Any) -> EvaluationSpec:
        """``spec`` itself, with ``options`` replaced; or, for data, ``EvaluationSpec(spec, **options)`` (the
        keyword style of the functions that take a spec)."""
        if isinstance(spec, EvaluationSpec):
            return dataclasses.replace(spec, **options) if options else spec
        return cls(spec, **options)

    @property
    def copies(self) -> list[str]:
        """The options set that evaluate a copy of the network rather than the model itself."""
        on = (("fold_bn", self.fold_bn), ("channels_last", self.channels_last), ("compile", self.compile is not False),
              ("recompute_bn", self.recompute_bn), ("backend='vmap'", self.backend != "inplace"))
        return [name for name, value in on if value]

    def metric_fns(self) -> dict[str, Metric]:
        """``{name: fn(output, target)}`` of ``metrics``/``loss_fn`` (empty with ``evaluate``)."""
        if self.evaluate is not None:
            return {}
        return _resolve_metrics(("loss", "accuracy") if self.metrics is None else self.metrics, self.loss_fn)

    def batch_loss(self, model: nn.Module) -> Callable[[Any], torch.Tensor]:
        """``fn(batch) -> the batch-mean loss``: ``evaluate(batch)["loss"]``, or ``loss_fn(model(x), y)``."""
        if self.evaluate is not None:
            return functools.partial(_evaluated_loss, self.evaluate)
        return functools.partial(_model_loss, model, self.loss_fn or F.cross_entropy)

    def prepared(self, device: torch.device) -> tuple[list[Any], Autocast]:
        """The fixed batches on ``device`` (``(inputs, targets)`` through :func:`prepare_batches`, or, with
        ``evaluate``, the batches as they are) and a context-manager factory for ``autocast_dtype``.

        Raises:
            ValueError: for data without a batch.
        """
        if self.evaluate is None:
            batches: list[Any] = prepare_batches(self.data, device, self.batch_size, self.transform)
        else:
            data = self.data
            batches = [to_device(b, device) for b in ([data] if isinstance(data, torch.Tensor) else list(data))]
            if not batches:
                raise ValueError("Expected `data` to hold at least one batch, got none")
        dtype = self.autocast_dtype
        return batches, nullcontext if dtype is None else functools.partial(torch.autocast, device.type, dtype)

    @contextmanager
    def evaluation_mode(self, model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
        """``model`` in eval mode (BatchNorm on batch statistics for ``batchnorm="batch"``, the running ones
        untouched) inside :func:`preserved_model`; yields the saved state."""
        with preserved_model(model) as saved:
            model.eval()
            if self.batchnorm == "batch":
                for m in model.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.train()
                        m.track_running_stats = False
            yield saved


def _model_loss(model: nn.Module, loss_fn: Metric, batch: Any) -> torch.Tensor:
    return loss_fn(model(batch[0]), batch[1])


def _evaluated_loss(evaluate: Evaluate, batch: Any) -> torch.Tensor:
    return evaluate(batch)["loss"]


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
        return type(batch)((k, to_device(v, device)) for k, v in batch.items())  # type: ignore[call-arg]  # dict-like
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _resolve_metrics(metrics: Metrics, loss_fn: Metric | None) -> dict[str, Metric]:
    if isinstance(metrics, str) or callable(metrics) and not isinstance(metrics, Mapping):
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
    check.positive_int("batch_size", batch_size)
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
def preserved_model(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Snapshot the model's state, train/eval flags, ``requires_grad`` and BatchNorm settings; restore them bit for
    bit on exit.

    Tensors are restored in place (``copy_``), so optimizers and other holders of references stay valid.
    """
    state = model.state_dict(keep_vars=True)
    saved = {k: v.detach().clone() for k, v in state.items()}
    modes = {name: m.training for name, m in model.named_modules()}
    grads = {name: p.requires_grad for name, p in model.named_parameters()}
    norms = {name: (m.momentum, m.track_running_stats) for name, m in model.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    try:
        yield saved
    finally:
        with torch.no_grad():
            for k, v in state.items():
                v.copy_(saved[k])
        for name, m in model.named_modules():
            if name in modes:
                m.training = modes[name]
            if name in norms:
                m.momentum, m.track_running_stats = norms[name]
        for name, p in model.named_parameters():
            p.requires_grad_(grads[name])


def _recompute_bn(model: nn.Module, batches: Sequence[Batch], autocast: Autocast) -> None:
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


def _evaluate(model: Callable[[torch.Tensor], torch.Tensor], batches: Sequence[Batch], metrics: dict[str, Metric],
              autocast: Autocast) -> list[float]:
    """The sample-weighted means of ``metrics(model(x), y)`` over ``(x, y)`` batches, in ``metrics``' order."""
    values = _evaluate_with(functools.partial(_metric_values, model, metrics), batches, autocast)
    return [values[name] for name in metrics]


def _metric_values(model: Callable[[torch.Tensor], torch.Tensor], metrics: dict[str, Metric],
                   batch: Batch) -> dict[str, torch.Tensor]:
    out = model(batch[0]).float()
    return {name: fn(out, batch[1]) for name, fn in metrics.items()}


def _evaluate_with(evaluate: Evaluate, batches: Sequence[Any], autocast: Autocast) -> dict[str, float]:
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
    autocast: Autocast,
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


log = logging.getLogger(__name__)
PAPER = "Li et al., Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913)"


def evaluate_grid(model: nn.Module, directions: Directions, grid: Any, spec: EvaluationSpec, *,
                  points: Any = None, store: SurfaceStore | None = None, progress: Progress = None,
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
    autocast: Autocast
    metrics: dict[str, Any]
    metadata: dict[str, Any]
    owned: np.ndarray  # flat indices of this rank's points
    todo: list[int] = field(default_factory=list)  # set once a saved surface is read

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


def _plan(model: nn.Module, directions: Directions, grid: Any, spec: EvaluationSpec, points: Any,
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

    def __init__(self, result: SurfaceResult, plan: _Plan, store: SurfaceStore, progress: Progress) -> None:
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


def _progress_fn(progress: Progress, total: int) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
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

