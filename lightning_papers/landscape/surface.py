"""``surface``: evaluate a model at ``theta + a d1 (+ b d2)`` over a 1-D or 2-D grid, fast and without a trace.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
Section 3: ``f(a, b) = L(theta* + a delta + b eta)``. What is evaluated and how is one
:class:`~lightning_papers.landscape.evaluation.EvaluationSpec`; the points are computed by
:func:`~lightning_papers.landscape.grid.evaluate_grid`, over a range framed to the basin
(:mod:`~lightning_papers.landscape.framing`) or adaptively refined (:mod:`~lightning_papers.landscape.adaptive`)
when asked.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from lightning_papers.landscape.adaptive import Refinement, adaptive_surface, as_refinement
from lightning_papers.landscape.directions import Direction
from lightning_papers.landscape.evaluation import EvaluationSpec
from lightning_papers.landscape.framing import Framed, framed_axes
from lightning_papers.landscape.grid import evaluate_grid
from lightning_papers.landscape.result import SurfaceResult, save_surface
from lightning_papers.landscape.storage import SurfaceStore

__all__ = ["surface"]

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
        >>> import torch
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
