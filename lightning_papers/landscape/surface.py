"""``surface``: evaluate a model at ``theta + a d1 (+ b d2)`` over a 1-D or 2-D grid, fast and without a trace.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
Section 3: ``f(a, b) = L(theta* + a delta + b eta)``. What is evaluated and how is one
:class:`~lightning_papers.landscape.evaluation.EvaluationSpec`; the points are computed by
:func:`~lightning_papers.landscape.evaluation.evaluate_grid`, over a range framed to the basin
(:mod:`~lightning_papers.landscape.framing`) or adaptively refined (:mod:`~lightning_papers.landscape.adaptive`)
when asked.

:func:`interpolate`: the loss along the straight line from a start state (``alpha = 0``, e.g. the weights at the
start of training) to the model's current weights (``alpha = 1``; outside [0, 1] extrapolates): Goodfellow,
Vinyals & Saxe, 2015 (arXiv 1412.6544); Smith & Topin, 2017 (arXiv 1702.04283), from the initial to the final
weights of a cyclical run; Li et al., Section 3, for 1-D linear interpolation in general.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_papers.landscape.adaptive import Refinement, adaptive_surface, as_refinement
from lightning_papers.landscape.directions import Direction, target_direction
from lightning_papers.landscape.evaluation import EvaluationSpec, evaluate_grid, preserved_model
from lightning_papers.landscape.framing import Framed, framed_axes
from lightning_papers.landscape.result import SurfaceResult, save_surface
from lightning_papers.landscape.storage import SurfaceStore

_STORE_KEYS = ("path", "resume", "save_every")


def surface(model: nn.Module, directions: Direction | Sequence[Direction], grid: Any, spec: EvaluationSpec | Any, *,
            points: np.ndarray | Refinement | Mapping[str, Any] | float | None = None,
            store: SurfaceStore | str | os.PathLike | None = None,
            progress: bool | Callable[[int, int], None] | None = None, **options: Any) -> SurfaceResult:
    """Evaluate ``spec`` at ``theta + a d1 (+ b d2)`` for every point of ``grid``; ``model`` (the centre, on its
    device) comes back bit-identical: weights, buffers, train/eval flags and ``requires_grad``.

    Args:
        directions: one :class:`Direction` (a curve) or two (a surface), of one ``kind``.
        grid: one coordinate axis per direction (e.g. ``(np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 4))``), used
            as given; or ``"frame"`` / :class:`~lightning_papers.landscape.framing.Framed`: a range from 1-D scans
            that the basin fills (:func:`~lightning_papers.landscape.framing.frame_range`, in ``metadata["range"]``).
        spec: an :class:`~lightning_papers.landscape.EvaluationSpec`, or the data with its fields as ``options``.
        points: every point (``None``); a boolean mask of the grid's shape (the rest stay uncomputed); or an adaptive
            :class:`~lightning_papers.landscape.adaptive.Refinement` (its dict, an int budget or a float fraction).
        store: a :class:`~lightning_papers.landscape.storage.SurfaceStore` (or a path): saved and resumed.
        progress: ``True`` for a tqdm bar, or ``progress(done, total)`` after each point (raising stops the run).
        **options: the spec's fields when ``spec`` is data, and the keywords ``path=``, ``resume=``,
            ``save_every=`` (a ``store``), ``adaptive=`` (``points``) and ``trajectory=`` (a (T, 2) path to draw).

    Returns:
        a :class:`SurfaceResult`; with ``spec.gather``, every rank's part merged.

    Raises:
        ValueError: for bad directions, grid, data, metrics or options, or a saved surface that does not match.

    Examples:
        >>> from lightning_papers.landscape import random_directions
        >>> net, (x, y) = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), (torch.randn(8, 4), torch.randint(0, 3, (8,)))
        >>> r = surface(net, random_directions(net, n=2), (np.linspace(-1, 1, 3), np.linspace(-1, 1, 2)), (x, y))
        >>> r["loss"].shape
        (3, 2)
    """
    trajectory = options.pop("trajectory", None)
    if "adaptive" in options:
        points = options.pop("adaptive")
    given = {k: options.pop(k) for k in _STORE_KEYS if k in options}
    if not isinstance(store, SurfaceStore):
        store = SurfaceStore(**given) if store is None else SurfaceStore(store, **given)
    elif given:
        store = dataclasses.replace(store, **given)
    spec = EvaluationSpec.of(spec, **options)
    refinement = None if points is None or isinstance(points, (np.ndarray, list, tuple)) else as_refinement(points)
    if refinement is None and not isinstance(grid, (str, Framed)):
        result = evaluate_grid(model, directions, grid, spec, points=points, store=store, progress=progress,
                               trajectory=trajectory)
        return result if spec.gather is None else spec.gather(result)
    grid, framed = framed_axes(model, directions, grid, spec, store)
    if refinement is None:
        result = surface(model, directions, grid, spec, store=store, progress=progress, trajectory=trajectory)
    else:
        result = adaptive_surface(model, directions, grid, spec, refinement, store=store, progress=progress,
                                  trajectory=trajectory)
    if framed is not None:
        result.metadata["range"] = framed
        if store.path is not None:
            save_surface(result, store.path)
    return result


def interpolate(
    model: nn.Module,
    start: Mapping[str, torch.Tensor],
    alphas: Sequence[float] | np.ndarray,
    spec: EvaluationSpec | Any,
    *,
    kind: str = "states",
    **options: Any,
) -> SurfaceResult:
    """Evaluate ``start + alpha (current - start)`` for each ``alpha``: 0 is ``start``, 1 the model as it is.

    Args:
        model: the model at its current (e.g. final) weights; it comes back bit-identical.
        start: a state dict of the same model (e.g. ``{k: v.clone() for k, v in model.state_dict().items()}``
            taken at the start of training).
        alphas: the points of the line.
        spec: the :class:`~lightning_papers.landscape.EvaluationSpec` (or the data), as for
            :func:`~lightning_papers.landscape.surface`.
        kind: ``"states"`` (weights and BatchNorm running statistics move together, so alpha 0 is exactly the
            start model) or ``"weights"`` (parameters only; running statistics stay the current ones).
        **options: passed on to :func:`~lightning_papers.landscape.surface` (``store``, ``progress``, or the spec's
            fields when ``spec`` is data).

    Returns:
        a 1-D :class:`SurfaceResult` over ``alphas``, with ``metadata["interpolation"]`` saying which end is which.

    Raises:
        ValueError: when ``start`` lacks an entry of the model or its shape differs, or as ``surface`` does.

    Examples:
        >>> net = nn.Linear(4, 3)
        >>> start = {k: v.clone() for k, v in net.state_dict().items()}
        >>> with torch.no_grad():
        ...     _ = net.weight.add_(1.0)
        >>> r = interpolate(net, start, [0.0, 1.0], (torch.randn(8, 4), torch.randint(0, 3, (8,))))
        >>> r["loss"].shape
        (2,)
    """
    state = model.state_dict(keep_vars=True)
    for key, tensor in state.items():
        if key not in start:
            raise ValueError(f"Expected `start` to have an entry {key!r} like the model, got none")
        if tuple(start[key].shape) != tuple(tensor.shape):
            raise ValueError(f"Expected `start[{key!r}]` to have shape {tuple(tensor.shape)}, "
                             f"got {tuple(start[key].shape)}")
    with preserved_model(model) as current:
        with torch.no_grad():
            for key, tensor in state.items():
                tensor.copy_(start[key])
        direction = target_direction(model, current, kind=kind)
        result = surface(model, direction, np.asarray(alphas, dtype=np.float64), spec, **options)
    result.metadata["interpolation"] = {"alpha=0": "start", "alpha=1": "current weights", "kind": kind}
    return result
