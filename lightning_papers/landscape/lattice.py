"""The lattice an adaptive surface refines, and the scale its pictures are drawn in: cells, their multilinear
interpolation, the plotted (clipped ``log10``) scale, and a picture's values filled from the evaluated cells.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913) draw
losses on a log scale; here (our own design) the pictures clip the loss at ``CLIP_FACTOR`` times the centre loss,
and :mod:`~lightning_papers.landscape.adaptive` refines where the cells' interpolation is least certain. Pure
NumPy: :mod:`~lightning_papers.landscape.plot` and :mod:`~lightning_papers.landscape.adaptive` both build on it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lightning_papers.landscape.result import SurfaceResult

__all__ = ["CLIP_FACTOR", "filled_values", "plotted_values"]

CLIP_FACTOR = 100.0
"""Default clip of a positive loss: this many times its value at the grid's centre (two decades, as the paper's
0.1 .. 10)."""

Box = tuple[tuple[int, int], ...]


# ----------------------------------------------------------------------------------------------------
# the plotted scale
# ----------------------------------------------------------------------------------------------------
def plotted_values(values: np.ndarray, metric: str, centre: float | None,
                   clip_factor: float = CLIP_FACTOR) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """``values`` in the scale the pictures draw them: ``log10`` of a loss clipped at ``clip_factor`` x ``centre``
    (a non-finite loss counts as the clip), linear for accuracies and metrics that reach zero or below; and the
    inverse map back to values.

    Examples:
        >>> g, back = plotted_values(np.array([1.0, 10.0, 1e6]), "loss", centre=1.0)
        >>> g.tolist()
        [0.0, 1.0, 2.0]
    """
    v = np.asarray(values, dtype=np.float64)
    if not _is_log(v, metric):
        return v.copy(), lambda g: np.asarray(g, dtype=np.float64)
    finite = v[np.isfinite(v)]
    c = centre if centre is not None and math.isfinite(centre) and centre > 0 else float(finite.min())
    clip = clip_factor * c
    g = np.log10(np.minimum(np.nan_to_num(v, nan=clip, posinf=clip), clip))
    return g, lambda gg: np.power(10.0, np.asarray(gg, dtype=np.float64))


def _is_log(values: np.ndarray, metric: str) -> bool:
    """A positive loss is drawn in log10; accuracies and metrics reaching zero or below linearly."""
    finite = values[np.isfinite(values)]
    return "acc" not in metric.lower() and finite.size > 0 and finite.min() > 0


# ----------------------------------------------------------------------------------------------------
# cells on the lattice
# ----------------------------------------------------------------------------------------------------
def _splittable(box: Box) -> bool:
    return any(hi - lo >= 2 for lo, hi in box)


def _split(box: Box) -> tuple[list[Box], list[tuple[int, ...]]]:
    """The children of ``box`` (each dimension of width >= 2 halved) and the points they add (its pattern
    minus its corners)."""
    parts: list[list[tuple[int, int]]] = []
    marks: list[tuple[int, ...]] = []
    for lo, hi in box:
        if hi - lo >= 2:
            mid = lo + (hi - lo) // 2
            parts.append([(lo, mid), (mid, hi)])
            marks.append((lo, mid, hi))
        else:
            parts.append([(lo, hi)])
            marks.append((lo, hi))
    children = [tuple(c) for c in itertools.product(*parts)]
    corners = set(itertools.product(*box))
    new = [p for p in itertools.product(*marks) if p not in corners]
    return children, new


def _multilinear(box: Box, g: np.ndarray, point: Sequence[float]) -> float:
    """The multilinear interpolation of ``g`` from ``box``'s corners at ``point`` (lattice coordinates)."""
    total = 0.0
    for corner in itertools.product(*[(0, 1)] * len(box)):
        w = 1.0
        idx = []
        for (lo, hi), c, x in zip(box, corner, point):
            t = (x - lo) / (hi - lo) if hi > lo else 0.0
            w *= t if c else 1.0 - t
            idx.append(hi if c else lo)
        if w:
            total += w * g[tuple(idx)]
    return total


def _inside(point: Sequence[int], box: Box) -> bool:
    return all(lo <= x <= hi for x, (lo, hi) in zip(point, box))


def _volume(box: Box) -> int:
    return int(np.prod([hi - lo for lo, hi in box]))


def _paint(shape: tuple[int, ...], leaves: dict[Box, float], computed: np.ndarray) -> np.ndarray:
    """Per lattice point, the estimate of the smallest leaf holding it (0 where evaluated)."""
    out = np.zeros(shape)
    for box, est in sorted(leaves.items(), key=lambda kv: (-_volume(kv[0]), kv[0])):
        out[tuple(slice(lo, hi + 1) for lo, hi in box)] = est
    out[computed] = 0.0
    return out


# ----------------------------------------------------------------------------------------------------
# pictures
# ----------------------------------------------------------------------------------------------------
def _leaves_of(computed: np.ndarray) -> list[Box]:
    """The finest cells a computed mask spells: a cell is split when every point its split adds was evaluated."""
    root: Box = tuple((0, n - 1) for n in computed.shape)
    out, stack = [], [root]
    while stack:
        box = stack.pop()
        if _splittable(box):
            children, new = _split(box)
            if all(computed[p] for p in new):
                stack.extend(children)
                continue
        out.append(box)
    return out


def filled_values(result: SurfaceResult, metric: str = "loss",
                  clip_factor: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``result[metric]`` on the whole lattice for a picture: evaluated values where ``computed``, elsewhere the
    multilinear interpolation (in the plotted scale) of the finest evaluated cell holding the point; and the mask
    of the interpolated points. A point no evaluated cell holds stays NaN.

    Examples:
        >>> from lightning_papers.landscape import SurfaceResult
        >>> r = SurfaceResult([np.linspace(-1, 1, 5)], {"loss": np.array([4.0, np.nan, 1.0, np.nan, 4.0])},
        ...                   np.array([True, False, True, False, True]))
        >>> values, interpolated = filled_values(r)
        >>> values.round(3).tolist(), interpolated.tolist()
        ([4.0, 2.0, 1.0, 2.0, 4.0], [False, True, False, True, False])
    """
    raw = result.values[metric]
    computed = result.computed
    if computed.all():
        return raw.copy(), np.zeros_like(computed)
    info = result.metadata.get("adaptive") or {}
    clip_factor = clip_factor or info.get("clip_factor", CLIP_FACTOR)
    centre = float(raw[result.centre_index()]) if computed[result.centre_index()] else None
    g, back = plotted_values(np.where(computed, raw, np.nan), metric, centre, clip_factor)
    g = np.where(computed, g, np.nan)
    top = float(np.nanmax(g)) if np.isfinite(g).any() else 0.0
    # the picture interpolates the unclipped log values (the estimate is in the clipped scale): cells of clipped
    # corners then draw above the clip as the evaluated points do, and a cell across the rim puts the clip contour
    # where its log values cross it (the clipped scale would draw a box along the cells; measured: half the mean
    # error of the clipped interpolation over the basin of an MLP at 20 % of 51 x 51)
    log_scale = _is_log(np.where(computed, raw, np.nan), metric)
    with np.errstate(divide="ignore", invalid="ignore"):
        unclipped = np.where(np.isfinite(raw) & (raw > 0), np.log10(np.where(raw > 0, raw, 1.0)), top + 1.0) \
            if log_scale else g
    out = np.full(raw.shape, np.nan)
    boxes = sorted(_leaves_of(computed), key=lambda b: (-_volume(b), b))
    for box in boxes:
        corners = list(itertools.product(*box))
        if not all(computed[c] and np.isfinite(g[c]) for c in corners):
            continue
        for p in itertools.product(*[range(lo, hi + 1) for lo, hi in box]):
            if not computed[p]:
                out[p] = _multilinear(box, unclipped, p)
    interpolated = ~computed & np.isfinite(out)
    values = raw.copy()
    values[interpolated] = back(out[interpolated])
    return values, interpolated
