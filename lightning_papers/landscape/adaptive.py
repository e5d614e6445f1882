"""Adaptive refinement of a loss surface: the paper's picture from a fraction of its evaluations.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913) evaluate
every point of a uniform 51 x 51 grid: 2,601 passes over the training set, most of them on the flat, clipped
plateau far from the minimum. Here (our own design) the surface is sampled on the same lattice, but only where it
is not yet known:

1. a coarse sub-lattice is evaluated (the lattice halved ``L`` times: 9 x 9 of 51 x 51);
2. every cell of the current subdivision has an **estimated error**: twice the largest distance between the
   values at the points its parent cell added (centre and edge midpoints) and the parent's multilinear
   interpolation of its corners there, in the plotted scale (``log10`` of the loss clipped at ``clip_factor`` x
   the centre loss, the scale of every picture; linear for accuracies). That is the error the parent's
   interpolation had, doubled (:data:`SAFETY`): an upper estimate of the cell's own error (about a quarter of
   its parent's on a smooth surface, a half at a kink such as the clip, up to 1.65x beside a sharp minimum);
3. each round splits the cells with the largest estimate (centre and edge midpoints evaluated), until the point
   budget is spent, every estimate is below ``tol`` or no cell can be split (the lattice is reached).

Every stored value is a real evaluation: the result is a :class:`SurfaceResult` on the full lattice whose
``computed`` mask says which points were evaluated, so saving, resuming (a resumed run replays the same
decisions from the saved values; a larger budget continues the refinement), sharding, :func:`merge_surfaces` and
DDP (each round's new points are sharded over the ranks and gathered before the next decision) work as for a
uniform grid. Pictures fill the other lattice points by interpolation in each finest cell (:func:`filled_values`,
which returns the mask of what it interpolated) and can mark the evaluated points. ``metadata["adaptive"]``
records, per round, the points evaluated and the estimated error. Deterministic: no randomness, ties broken by
position. Works for 1-D curves too (intervals halve where the curve bends).

Why not python-adaptive (``pip install adaptive``; Nijholt et al.)? We studied its ``Learner1D``/``Learner2D``:
they place points anywhere in the plane (triangle centroids and longest-edge midpoints of a Delaunay
triangulation, through scipy), rank triangles by a dimensionless deviation-times-area loss, and run through
executor-based runners. We keep our own sampler because (a) its points lie on no grid, so our results, storage,
resume, ``merge_surfaces``, ``gather_surface`` under DDP, the contour/mesh/VTK writers and the comparison with
the paper's 51 x 51 would all need a second, scattered-point format, while a lattice sampler keeps every one of
them unchanged; (b) its loss has no unit, while ours is an error in the plotted log loss, which gives ``tol`` and
the per-round record a meaning a reader can check against contour spacing; (c) it would add six runtime
dependencies (scipy, sortedcontainers, sortedcollections, loky, cloudpickle, versioningit) to a core that needs
only numpy; (d) its runners are executors, while ranks here must take identical decisions from gathered values.
The idea we share with it: refine where a linear interpolation of the known points is worst.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from torch import nn

from lightning_papers import _validation as check
from lightning_papers.landscape.evaluation import Directions, EvaluationSpec, Progress, as_axes, evaluate_grid
from lightning_papers.landscape.plot import (
    CLIP_FACTOR,
    Box,
    _is_log,
    _multilinear,
    _paint,
    _split,
    _splittable,
    _volume,
    filled_values,
    plotted_values,
)
from lightning_papers.landscape.result import SurfaceResult, save_surface
from lightning_papers.landscape.sharding import check_shard
from lightning_papers.landscape.storage import SurfaceStore

__all__ = ["Refinement", "adaptive_surface", "filled_values", "plotted_values"]  # filled_values: moved to plot

log = logging.getLogger(__name__)

SAFETY = 2.0
"""A cell's estimate is this many times its parent's largest error at the points the parent's split added. On a
smooth surface a cell's own error is about a quarter of its parent's, at a kink (the clip) a half; in log scale
next to a sharp minimum we measured up to 1.65 times (a point-like minimum on a cell's corner)."""


@dataclass(frozen=True)
class Refinement:
    """How :func:`adaptive_surface` spends its evaluations.

    Args:
        budget: points to evaluate at most: a count (``int``), or a fraction of the lattice (``0 < float <= 1``).
        tol: stop when every cell's estimated error (plotted units: decades of loss) is at most this.
        coarse_levels: halvings of the lattice for the first, uniform round; default: the most whose points
            take at most half the budget (9 x 9 = 81 points of a 51 x 51 lattice needs a budget >= 162).
        per_round: points per refinement round (default: about an eighth of what is left after the coarse round;
            fewer rounds run faster, more rounds spend the budget better).
        clip_factor: the clip of the plotted scale, in multiples of the centre loss (the pictures' 100).
        metric: the metric that steers refinement (default ``"loss"``, else the first that is not an accuracy).

    Raises:
        ValueError: for a budget that is neither a positive count nor a fraction in (0, 1], a negative ``tol``,
            or non-positive ``coarse_levels``/``per_round``/``clip_factor``.

    Examples:
        >>> Refinement(budget=0.2).points_for(2601)
        520
    """

    budget: int | float = 0.2
    tol: float = 0.0
    coarse_levels: int | None = None
    per_round: int | None = None
    clip_factor: float = CLIP_FACTOR
    metric: str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.budget, float) and 0 < self.budget <= 1):
            check.positive_int("budget", self.budget, fix="a point count, or pass a fraction in (0, 1]")
        check.real("tol", self.tol, 0.0, fix="a tolerance in decades of loss")
        for name in ("coarse_levels", "per_round"):
            check.optional_positive_int(name, getattr(self, name))
        check.positive_real("clip_factor", self.clip_factor)

    def points_for(self, size: int) -> int:
        """The budget in points for a lattice of ``size`` points."""
        if isinstance(self.budget, float):
            return max(1, int(round(self.budget * size)))
        return min(int(self.budget), size)


def as_refinement(spec: Any) -> Refinement:
    """A :class:`Refinement` from one, a dict of its arguments, an int budget or a float fraction.

    Raises:
        ValueError: for anything else.
    """
    if isinstance(spec, Refinement):
        return spec
    if isinstance(spec, dict):
        return Refinement(**spec)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return Refinement(budget=spec)
    raise ValueError(f"Expected `adaptive` to be a Refinement, a dict of its arguments or a budget, got {spec!r}")


class _Sampler:
    """The subdivision and its estimates: pure lattice bookkeeping, no evaluation."""

    def __init__(self, shape: tuple[int, ...], levels: int) -> None:
        self.shape = shape
        root: Box = tuple((0, n - 1) for n in shape)
        self.leaves: dict[Box, float] = {}
        self.parent: dict[Box, Box] = {}
        leaves = [root]
        points = {tuple(c) for c in itertools.product(*root)}
        for _ in range(levels):
            nxt = []
            for box in leaves:
                if not _splittable(box):
                    nxt.append(box)
                    continue
                children, new = _split(box)
                points.update(new)
                for c in children:
                    self.parent[c] = box
                nxt.extend(children)
            leaves = nxt
        self.pending = leaves
        self.first_points = points

    @staticmethod
    def coarse_count(shape: tuple[int, ...], levels: int) -> int:
        return len(_Sampler(shape, levels).first_points)

    def estimate(self, g: np.ndarray) -> None:
        """Give every pending leaf its estimate from the values ``g`` (plotted scale) at its parent's new points."""
        for box in self.pending:
            parent = self.parent.get(box)
            est = 0.0
            if parent is not None and _splittable(box):
                _, new = _split(parent)
                for p in new:  # every point the parent added: the parent's error, not only at this child's corners
                    est = max(est, abs(float(g[p]) - _multilinear(parent, g, p)))
            self.leaves[box] = SAFETY * est if _splittable(box) else 0.0
        self.pending = []

    def choose(self, tol: float, limit: int, computed: np.ndarray) -> tuple[list[Box], set[tuple[int, ...]]]:
        """The leaves to split this round (largest estimate first, ties: larger, then lower-left) and the points
        that adds, at most ``limit`` new points."""
        ranked = sorted((kv for kv in self.leaves.items() if kv[1] > tol and _splittable(kv[0])),
                        key=lambda kv: (-kv[1], -_volume(kv[0]), kv[0]))
        chosen: list[Box] = []
        points: set[tuple[int, ...]] = set()
        for box, _ in ranked:
            if len(points) >= limit:
                break
            _, new = _split(box)
            extra = {p for p in new if not computed[p] and p not in points}
            if len(points) + len(extra) > limit:
                continue
            chosen.append(box)
            points |= extra
        return chosen, points

    def split(self, boxes: Sequence[Box]) -> None:
        for box in boxes:
            del self.leaves[box]
            children, _ = _split(box)
            for c in children:
                self.parent[c] = box
            self.pending.extend(children)

    def errors(self, computed: np.ndarray) -> tuple[float, float]:
        """Estimated (max, mean over the lattice) error of the interpolated picture."""
        painted = _paint(self.shape, self.leaves, computed)
        return float(painted.max()), float(painted.mean())


def _default_levels(shape: tuple[int, ...], budget: int) -> int:
    levels = 1
    while _Sampler.coarse_count(shape, levels + 1) <= budget / 2 and \
            _Sampler.coarse_count(shape, levels + 1) > _Sampler.coarse_count(shape, levels):
        levels += 1
    return levels


def _steering_metric(names: Sequence[str], metric: str | None) -> str:
    if metric is not None:
        if metric not in names:
            raise ValueError(f"Expected the refinement `metric` to be one of {list(names)}, got {metric!r}")
        return metric
    return "loss" if "loss" in names else next((n for n in names if "acc" not in n.lower()), names[0])


class _Rounds:
    """Evaluates a round's points (one :func:`~lightning_papers.landscape.evaluation.evaluate_grid` call on a mask) and
    adds them, gathered across ranks, to one result over the whole lattice."""

    def __init__(self, model: nn.Module, directions: Directions, axes: list[np.ndarray], spec: EvaluationSpec,
                 store: SurfaceStore, progress: Progress, trajectory: np.ndarray | None,
                 gather: Callable[[SurfaceResult], SurfaceResult] | None) -> None:
        self.model, self.directions, self.axes, self.spec = model, directions, axes, spec
        self.store, self.progress, self.trajectory, self.gather = store, progress, trajectory, gather
        self.result: SurfaceResult | None = None
        self.seconds = 0.0

    def run(self, points: set[tuple[int, ...]], first: bool) -> SurfaceResult:
        mask = np.zeros(tuple(len(a) for a in self.axes), dtype=bool)
        for p in points:
            mask[p] = True
        store = self.store  # later rounds continue the file the first wrote
        again = store.resume or (not first and store.path is not None)
        part = evaluate_grid(self.model, self.directions, self.axes, self.spec, points=mask, progress=self.progress,
                             trajectory=self.trajectory, store=dataclasses.replace(store, resume=again))
        self.seconds += float(part.metadata.get("timing", {}).get("seconds", 0.0))
        full = self.gather(part) if self.gather is not None else part
        if self.result is None:
            self.result = SurfaceResult(full.axes, {m: v.copy() for m, v in full.values.items()},
                                        full.computed.copy(), dict(full.metadata), self.trajectory)
        else:
            for m, v in full.values.items():
                self.result.values[m][full.computed] = v[full.computed]
            self.result.computed |= full.computed
        return self.result


def adaptive_surface(model: nn.Module, directions: Directions, grid: Any, spec: EvaluationSpec, refinement: Any, *,
                     store: SurfaceStore | None = None, progress: Progress = None,
                     trajectory: np.ndarray | None = None) -> SurfaceResult:
    """Evaluate the surface on ``grid``'s lattice (e.g. 51 x 51 axes) where it is least known, within
    ``refinement``'s budget (a :class:`Refinement`, a dict of its arguments, an ``int`` of points or a ``float``
    fraction). ``surface(..., points=refinement)`` calls this; the other arguments are its own. Each round is one
    :func:`~lightning_papers.landscape.evaluation.evaluate_grid` call on the round's points, sharded with ``spec.shard``
    and merged across ranks by ``spec.gather``; every round saves to ``store``, whose ``resume`` replays the
    refinement from the saved values, evaluating only what is missing.

    Returns:
        a :class:`SurfaceResult` on the full lattice, ``computed`` True at the evaluated points, with
        ``metadata["adaptive"]``: the settings, ``rounds`` (per round: ``points`` evaluated so far, ``new`` points,
        ``estimated_max_error`` and ``estimated_mean_error`` in plotted units) and the final estimates.

    Raises:
        ValueError: for a bad ``refinement``, a budget below the 3^d points of the first halving, or a sharded
            run without ``gather``.
    """
    store = store or SurfaceStore()
    gather, spec = spec.gather, dataclasses.replace(spec, gather=None)  # each round's part is gathered here
    refinement = as_refinement(refinement)
    ndim = 1 if not isinstance(directions, (list, tuple)) or len(directions) == 1 else 2
    axes = as_axes(grid, ndim)
    shape = tuple(len(a) for a in axes)
    size = int(np.prod(shape))
    _, world = check_shard(spec.shard)
    if world > 1 and gather is None:
        raise ValueError(f"Expected a `gather` with shard={spec.shard!r}: every rank needs every round's values to "
                         "take the same decisions; pass e.g. an all-gather followed by merge_surfaces")
    budget = refinement.points_for(size)
    levels = refinement.coarse_levels or _default_levels(shape, budget)
    sampler = _Sampler(shape, levels)
    if len(sampler.first_points) > budget:
        raise ValueError(f"Expected a budget of at least {len(sampler.first_points)} points (the first, uniform "
                         f"round at coarse_levels={levels}), got {budget}; raise `budget` or lower `coarse_levels`")
    rounds_of = _Rounds(model, directions, axes, spec, store, progress, trajectory, gather)
    acc = rounds_of.run(sampler.first_points, first=True)
    metric = _steering_metric(list(acc.values), refinement.metric)
    centre = float(acc.values[metric][acc.centre_index()]) if acc.computed[acc.centre_index()] else None
    rounds = []
    per_round = refinement.per_round or max(2 * 3**ndim, math.ceil((budget - len(sampler.first_points)) / 8))

    def plotted() -> np.ndarray:
        g, _ = plotted_values(acc.values[metric], metric, centre, refinement.clip_factor)
        return g

    sampler.estimate(plotted())
    err_max, err_mean = sampler.errors(acc.computed)
    rounds.append({"round": 0, "points": int(acc.computed.sum()), "new": len(sampler.first_points),
                   "estimated_max_error": err_max, "estimated_mean_error": err_mean})
    while err_max > refinement.tol:
        left = budget - int(acc.computed.sum())
        boxes, points = sampler.choose(refinement.tol, min(per_round, left), acc.computed)
        if not boxes:
            break
        rounds_of.run(points, first=False)
        sampler.split(boxes)
        sampler.estimate(plotted())
        err_max, err_mean = sampler.errors(acc.computed)
        rounds.append({"round": len(rounds), "points": int(acc.computed.sum()), "new": len(points),
                       "estimated_max_error": err_max, "estimated_mean_error": err_mean})
        log.info("landscape: adaptive round %d, %d/%d points, estimated error max %.3g mean %.3g", len(rounds) - 1,
                 int(acc.computed.sum()), budget, err_max, err_mean)
    scale = f"log10 {metric} up to {refinement.clip_factor:g} x centre" if _is_log(acc.values[metric], metric) else \
        f"{metric} (linear)"
    acc.metadata["adaptive"] = {
        **asdict(refinement), "budget_points": budget, "coarse_levels": levels, "metric": metric, "scale": scale,
        "lattice_points": size, "evaluated": int(acc.computed.sum()), "rounds": rounds,
        "estimated_max_error": err_max, "estimated_mean_error": err_mean,
    }
    seconds = rounds_of.seconds
    acc.metadata["timing"] = {"points": int(acc.computed.sum()), "seconds": seconds,
                              "points_per_s": acc.computed.sum() / seconds if seconds > 0 else math.nan}
    acc.metadata["shard"] = None if gather is not None else acc.metadata.get("shard")
    if store.path is not None:
        save_surface(acc, store.path)
    return acc
