"""What a landscape evaluates and how: one frozen :class:`EvaluationSpec`, taken by
:func:`~lightning_papers.landscape.surface`, :func:`~lightning_papers.landscape.interpolate`, the ``hessian_*``
functions and :func:`~lightning_papers.landscape.hessian_top_eigenvalue`.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
Section 3: the loss ``L(theta)`` over a fixed set of samples. Here (our own design) the batches are materialised
on the model's device once; what is evaluated is either ``metrics(model(inputs), targets)`` on
``(inputs, targets)`` batches, or any ``evaluate(batch) -> {name: batch mean}`` on batches of any structure (e.g. a
LightningModule's own loss); batch means are averaged weighted by batch size.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lightning_papers import _validation as check
from lightning_papers.landscape.sharding import check_shard

__all__ = [
    "SUPPORTED_BACKENDS",
    "SUPPORTED_BATCHNORM",
    "EvaluationSpec",
    "Evaluate",
    "accuracy",
    "prepare_batches",
    "preserved_model",
    "samples_in",
    "to_device",
]

SUPPORTED_BACKENDS = ("inplace", "vmap")
SUPPORTED_BATCHNORM = ("running", "batch")
Batch = tuple[torch.Tensor, torch.Tensor]
Metric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# evaluate(batch) -> {metric name: the batch's mean, a scalar tensor}, for batches of any structure
Evaluate = Callable[[Any], Mapping[str, torch.Tensor]]
AllReduce = Callable[[torch.Tensor], torch.Tensor]


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
    metrics: Any = None
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
    gather: Callable[[Any], Any] | None = None
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
        return _EvaluatedLoss(self.evaluate) if self.evaluate is not None else _ModelLoss(
            model, self.loss_fn or F.cross_entropy)

    def prepared(self, device: torch.device) -> tuple[list[Any], Callable[[], Any]]:
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


class _ModelLoss:
    def __init__(self, model: nn.Module, loss_fn: Callable) -> None:
        self.model, self.loss_fn = model, loss_fn

    def __call__(self, batch: Any) -> torch.Tensor:
        return self.loss_fn(self.model(batch[0]), batch[1])


class _EvaluatedLoss:
    def __init__(self, evaluate: Evaluate) -> None:
        self.evaluate = evaluate

    def __call__(self, batch: Any) -> torch.Tensor:
        return self.evaluate(batch)["loss"]


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
    sums: dict[str, torch.Tensor] = {}
    n = 0
    with torch.no_grad():
        for x, y in batches:
            with autocast():
                out = model(x)
            out = out.float()
            for name, fn in metrics.items():
                v = _scalar(fn(out, y), name) * len(y)
                sums[name] = v if name not in sums else sums[name] + v
            n += len(y)
    return [float(s) / n for s in torch.stack([sums[name] for name in metrics]).cpu()]


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

