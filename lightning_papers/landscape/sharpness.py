"""Sharpness: the Hessian's top eigenvalue by power iteration, and simple summaries of a computed surface.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
Section 6 relates the look of a surface to the Hessian's extreme eigenvalues (computed there with implicitly
restarted Lanczos); :func:`hessian_top_eigenvalue` is the power iteration of
:func:`~lightning_papers.landscape.hessian_eigenvalues` (Hessian-vector products over a fixed batch set), which
gives the eigenvalue of largest magnitude - at a minimum, the largest one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_papers import _validation as check
from lightning_papers.landscape.curvature import _eigenpairs, _spec
from lightning_papers.landscape.directions import Direction
from lightning_papers.landscape.evaluation import EvaluationSpec
from lightning_papers.landscape.plot import _new_axes
from lightning_papers.landscape.result import SurfaceResult


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
        ax = _new_axes(ax, figsize=(5, 3.5))
        ax.plot(range(1, len(self.history) + 1), self.history, marker=".")
        ax.set_xlabel("power iteration")
        ax.set_ylabel("top Hessian eigenvalue")
        return ax


def hessian_top_eigenvalue(
    model: nn.Module,
    spec: EvaluationSpec | Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    max_iter: int = 50,
    tol: float = 1e-4,
    seed: int = 0,
    **options: Any,
) -> HessianEigenvalue:
    """The eigenvalue of largest magnitude of the Hessian of the mean loss over the spec's batches: power
    iteration of :func:`~lightning_papers.landscape.hessian_eigenvalues`, stopped when the estimate's relative
    change is below ``tol``, from a seeded Gaussian start drawn per parameter in float32.

    Args:
        model: the model (comes back bit-identical: weights, ``requires_grad`` flags and ``.grad`` included).
        spec: as for :func:`~lightning_papers.landscape.hessian_eigenvalues` (or the data, with the spec's fields
            as keyword ``options``).
        loss_fn: the spec's ``loss_fn`` (default ``F.cross_entropy``).
        max_iter: power iterations at most.
        tol: stop when the estimate's relative change is below ``tol``.
        seed: seed of the random start vector.

    Raises:
        ValueError: for a non-positive ``max_iter`` or ``tol``, a model without parameters, or as
            :func:`~lightning_papers.landscape.hessian_eigenvalues` does.

    Examples:
        >>> net = nn.Linear(3, 2)
        >>> res = hessian_top_eigenvalue(net, (torch.randn(16, 3), torch.randint(0, 2, (16,))))
        >>> res.eigenvalue > 0
        True
    """
    check.positive_int("max_iter", max_iter)
    if not tol > 0:
        raise ValueError(f"Expected `tol` > 0, got {tol!r}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("Expected a model with parameters that require grad, got none")
    gen = torch.Generator().manual_seed(seed)
    start = Direction({n: torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p) for n, p in named})
    res = _eigenpairs(model, _spec(spec, loss_fn, options), 1, "power", "magnitude", max_iter, tol, start, False,
                      seed, settle=True)
    return HessianEigenvalue(res.eigenvalues[0], len(res.history), res.converged, res.history)


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
