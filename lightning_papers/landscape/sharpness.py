"""Sharpness: the Hessian's top eigenvalue by power iteration, and simple summaries of a computed surface.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
Section 6 relates the look of a surface to the Hessian's extreme eigenvalues (computed there with implicitly
restarted Lanczos); we use plain power iteration on Hessian-vector products (double backward) over a fixed
batch set, which gives the eigenvalue of largest magnitude - at a minimum, the largest one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_papers.landscape.double_backward import second_order
from lightning_papers.landscape.result import SurfaceResult
from lightning_papers.landscape.surface import Evaluate, prepare_batches, preserved_model, samples_in, to_device

__all__ = ["HessianEigenvalue", "centre_curvature", "hessian_top_eigenvalue", "loss_rise"]


@dataclass
class HessianEigenvalue:
    """Result of :func:`hessian_top_eigenvalue`.

    Attributes:
        eigenvalue: the estimate (largest-magnitude eigenvalue of the loss Hessian w.r.t. the parameters).
        iterations: power iterations run.
        converged: relative change below ``tol`` before ``max_iter``.
        history: the estimate after each iteration.
    """

    eigenvalue: float
    iterations: int
    converged: bool
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"eigenvalue": self.eigenvalue, "iterations": self.iterations, "converged": self.converged,
                "history": list(self.history)}

    def plot(self, ax=None):
        """The estimate against the iteration."""
        if ax is None:
            from matplotlib.figure import Figure

            ax = Figure(figsize=(5, 3.5)).add_subplot()
        ax.plot(range(1, len(self.history) + 1), self.history, marker=".")
        ax.set_xlabel("power iteration")
        ax.set_ylabel("top Hessian eigenvalue")
        return ax


def hessian_top_eigenvalue(
    model: nn.Module,
    data: Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    max_iter: int = 50,
    tol: float = 1e-4,
    seed: int = 0,
    batch_size: int = 256,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    evaluate: Evaluate | None = None,
) -> HessianEigenvalue:
    """Top Hessian eigenvalue of the mean loss over ``data`` (eval mode) by Hessian-vector-product power iteration.

    Args:
        model: the model (comes back bit-identical: weights, ``requires_grad`` flags and ``.grad`` included).
        data: as for :func:`surface` (materialised on the model's device once).
        loss_fn: batch-mean loss ``fn(output, target)`` (default ``F.cross_entropy``); batches are weighted by size.
        max_iter: power iterations at most.
        tol: stop when the estimate's relative change is below ``tol``.
        seed: seed of the random start vector.
        batch_size: chunk size when ``data`` is a tensor pair.
        transform: applied to the inputs once on the device.
        evaluate: instead of ``loss_fn``, ``evaluate(batch)["loss"]`` is the batch-mean loss, on batches of any
            structure (e.g. a LightningModule's own loss; see :func:`~lightning_papers.landscape.surface`).

    Raises:
        ValueError: for a non-positive ``max_iter`` or ``tol``, a model without parameters, or both ``loss_fn``
            and ``evaluate``.

    Examples:
        >>> net = nn.Linear(3, 2)
        >>> res = hessian_top_eigenvalue(net, (torch.randn(16, 3), torch.randint(0, 2, (16,))))
        >>> res.eigenvalue > 0
        True
    """
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"Expected `max_iter` to be a positive integer, got {max_iter!r}")
    if not tol > 0:
        raise ValueError(f"Expected `tol` > 0, got {tol!r}")
    from lightning_papers.landscape.directions import check_materialised

    check_materialised(model)
    params = list(model.parameters())
    if not params:
        raise ValueError("Expected a model with parameters, got none")
    if evaluate is not None and loss_fn is not None:
        raise ValueError("Expected either `evaluate` or `loss_fn`, got both")
    if evaluate is None:
        loss_fn = loss_fn or F.cross_entropy
        batches = prepare_batches(data, params[0].device, batch_size, transform)

        def batch_loss(batch: Any) -> torch.Tensor:
            return loss_fn(model(batch[0]), batch[1])
    else:
        batches = [to_device(b, params[0].device) for b in data]

        def batch_loss(batch: Any) -> torch.Tensor:
            return evaluate(batch)["loss"]
    n_total = sum(samples_in(b) for b in batches)
    grads_before = [p.grad for p in params]
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    converged = False
    with preserved_model(model), second_order():  # fused attention has no double backward: the math kernel
        model.eval()
        for p in params:
            p.requires_grad_(True)

        def hvp(vec: list[torch.Tensor]) -> list[torch.Tensor]:
            out = [torch.zeros_like(p) for p in params]
            for batch in batches:
                loss = batch_loss(batch) * (samples_in(batch) / n_total)
                grads = torch.autograd.grad(loss, params, create_graph=True)
                dot = sum((g * v).sum() for g, v in zip(grads, vec))
                hv = torch.autograd.grad(dot, params)
                torch._foreach_add_(out, [h.detach() for h in hv])
            return out

        v = [torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p) for p in params]
        norm = math.sqrt(sum(float((t * t).sum()) for t in v))
        v = [t / norm for t in v]
        estimate = math.nan
        for _ in range(max_iter):
            hv = hvp(v)
            new = float(sum((h * t).sum() for h, t in zip(hv, v)))  # Rayleigh quotient, |v| = 1
            history.append(new)
            norm = math.sqrt(sum(float((h * h).sum()) for h in hv))
            if norm == 0.0:
                estimate, converged = 0.0, True
                break
            v = [h / norm for h in hv]
            if not math.isnan(estimate) and abs(new - estimate) <= tol * max(abs(new), 1e-12):
                estimate, converged = new, True
                break
            estimate = new
        for p, grad in zip(params, grads_before):  # `.grad` as found (a loss_fn may have called backward)
            p.grad = grad
    return HessianEigenvalue(eigenvalue=estimate, iterations=len(history), converged=converged, history=history)


def loss_rise(result: SurfaceResult, radius: float, metric: str = "loss") -> float:
    """Largest increase of ``metric`` over its centre value among computed points within ``radius`` of the
    origin (Euclidean in grid coordinates). A flat-vs-sharp summary of a surface or curve.

    Raises:
        ValueError: for a negative ``radius``, an unknown metric, or no finite centre value.
    """
    if not radius >= 0:
        raise ValueError(f"Expected `radius` >= 0, got {radius!r}")
    if metric not in result.values:
        raise ValueError(f"Expected `metric` to be one of {sorted(result.values)}, got {metric!r}")
    centre = result.centre_value(metric)
    if not math.isfinite(centre):
        raise ValueError(f"Expected a finite `{metric}` at the centre, got {centre!r}")
    mesh = np.meshgrid(*result.axes, indexing="ij")
    dist = np.sqrt(sum(m**2 for m in mesh))
    vals = result.values[metric]
    inside = (dist <= radius + 1e-12) & result.computed
    return float(np.max(np.where(inside, vals, -np.inf)) - centre)


def centre_curvature(result: SurfaceResult, metric: str = "loss") -> list[float]:
    """Second derivative of ``metric`` along each axis at the centre, by finite differences (non-uniform
    spacing allowed): ``2 (h1 f+ - (h1 + h2) f0 + h2 f-) / (h1 h2 (h1 + h2))``.

    Raises:
        ValueError: when the grid point closest to the origin is on an edge of an axis.
    """
    centre = result.centre_index()
    out: list[float] = []
    values = result.values[metric]
    for j, axis in enumerate(result.axes):
        i = centre[j]
        if i == 0 or i == len(axis) - 1:
            raise ValueError(f"Expected the centre inside axis {j} to take finite differences, got index {i}")

        def at(k: int, j=j) -> float:
            idx: Sequence[int] = tuple(k if a == j else centre[a] for a in range(result.ndim))
            return float(values[idx])

        h1, h2 = axis[i] - axis[i - 1], axis[i + 1] - axis[i]
        out.append(float(2 * (h1 * at(i + 1) - (h1 + h2) * at(i) + h2 * at(i - 1)) / (h1 * h2 * (h1 + h2))))
    return out
