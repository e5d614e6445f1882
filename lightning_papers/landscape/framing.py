"""A range that frames the basin: each axis's span chosen from cheap 1-D scans of the surface itself.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913) draw
every surface over ``[-1, 1]^2``: filter normalisation makes that range comparable between networks. But around
a well-trained minimum the loss leaves the plotted range (the clip, :data:`~lightning_papers.landscape.plot.
CLIP_FACTOR` times the centre loss) long before ``|alpha| = 1``, so most grid points draw the clipped plateau and
the basin gets a handful of points. :func:`frame_range` walks out from the centre along each direction, both
ways (and along the four diagonals of a surface), doubling the step until the loss reaches the clip, then bisects
the last step; each axis spans the farthest crossing (times a ``margin``), so the clip contour just fits.

Comparing surfaces: a framed range is the surface's own. Wherever two surfaces are compared side by side (two
models, two epochs, the fidelity scripts) they must share one range, or framing makes different basins look
alike by zooming each differently: frame each, then draw all of them on :func:`shared_range` (the union), or
keep the paper's fixed ``[-1, 1]``. A grid you give is always used as it is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from torch import nn

from lightning_papers import _validation as check
from lightning_papers.landscape.directions import Direction
from lightning_papers.landscape.evaluation import Directions, EvaluationSpec, evaluate_grid
from lightning_papers.landscape.plot import CLIP_FACTOR
from lightning_papers.landscape.result import SurfaceResult, load_surface
from lightning_papers.landscape.storage import SurfaceStore, surface_paths

__all__ = ["Frame", "Framed", "frame_range", "framed_axes", "shared_range"]

# ray name -> unit step in (alpha, beta); a diagonal point (t, t) lies at t on both axes
_RAYS_1D = {"+x": (1.0,), "-x": (-1.0,)}
_RAYS_2D = {"+x": (1.0, 0.0), "-x": (-1.0, 0.0), "+y": (0.0, 1.0), "-y": (0.0, -1.0),
            "+x+y": (1.0, 1.0), "+x-y": (1.0, -1.0), "-x+y": (-1.0, 1.0), "-x-y": (-1.0, -1.0)}


@dataclass(frozen=True)
class Framed:
    """Ask :func:`~lightning_papers.landscape.surface` for a framed grid: ``grid=Framed(points=51)`` (``"frame"``
    is ``Framed()``).

    Args:
        points: grid points per axis (odd keeps the centre on the grid).
        clip_factor: the clip in multiples of the centre loss (the pictures' clip, 100).
        max_radius: the farthest a scan goes (an axis whose loss never reaches the clip spans this).
        min_radius: the first step of a scan.
        bisections: halvings of the last step of each scan (2: the crossing within a factor 2^(1/4)).
        margin: each span is the farthest crossing times this.
        diagonals: scan the four diagonals of a surface too (twice the scans; a basin elongated along a diagonal
            is framed by them).

    Raises:
        ValueError: for points < 3, non-positive radii or clip, ``min_radius > max_radius``, negative
            ``bisections`` or ``margin < 1``.
    """

    points: int = 51
    clip_factor: float = CLIP_FACTOR
    max_radius: float = 2.0
    min_radius: float = 1.0 / 32
    bisections: int = 2
    margin: float = 1.15
    diagonals: bool = True

    def __post_init__(self) -> None:
        check.integer("points", self.points, minimum=3)
        for name in ("clip_factor", "max_radius", "min_radius"):
            check.positive_real(name, getattr(self, name))
        if self.min_radius > self.max_radius:
            raise ValueError(f"Expected `min_radius` <= `max_radius`, got {self.min_radius!r} > {self.max_radius!r}")
        check.integer("bisections", self.bisections, minimum=0)
        if not isinstance(self.margin, (int, float)) or not self.margin >= 1:
            raise ValueError(f"Expected `margin` >= 1, got {self.margin!r}")


@dataclass
class Frame:
    """The range :func:`frame_range` chose, and why.

    Attributes:
        spans: per axis, the grid runs ``-span .. span``.
        reaches: per ray (``"+x"``, ``"-x+y"``, ...), the distance along that axis at which the loss reaches the
            clip (``None``: not within ``max_radius``).
        clip: the loss the scans stopped at (``clip_factor`` x centre loss).
        centre: the loss at the centre.
        metric: the metric scanned.
        evaluations: points the scans evaluated.
        rule: how the spans were chosen (``"framed"`` or ``"shared by n surfaces"``).
        scans: per ray, the ``(t, value)`` pairs evaluated.
    """

    spans: list[float]
    reaches: dict[str, float | None] = field(default_factory=dict)
    clip: float = math.nan
    centre: float = math.nan
    metric: str = "loss"
    evaluations: int = 0
    rule: str = "framed"
    scans: dict[str, list[list[float]]] = field(default_factory=dict)

    def axes(self, points: int = 51) -> list[np.ndarray]:
        """``np.linspace(-span, span, points)`` per axis."""
        return [np.linspace(-s, s, points) for s in self.spans]

    def describe(self) -> str:
        """One line for a picture's title, e.g. ``"range ±0.42 x ±0.37 (framed: loss 100 x centre at the rim)"``."""
        spans = " x ".join(f"±{s:.2g}" for s in self.spans)
        return f"range {spans} ({self.rule})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _round_up(value: float) -> float:
    """Up to two significant digits (readable tick labels): 0.4137 -> 0.42."""
    if value <= 0 or not math.isfinite(value):
        return value
    exponent = math.floor(math.log10(value)) - 1
    return float(f"{math.ceil(value / 10.0**exponent - 1e-9) * 10.0**exponent:.3g}")


def _points_grid(coords: Sequence[Sequence[float]], ndim: int) -> tuple[list[np.ndarray], np.ndarray, list]:
    """The smallest grid holding ``coords``, the mask of those points and each point's index in it."""
    axes = [np.unique(np.array([c[j] for c in coords], dtype=np.float64)) for j in range(ndim)]
    mask = np.zeros(tuple(len(a) for a in axes), dtype=bool)
    index = []
    for c in coords:
        idx = tuple(int(np.searchsorted(axes[j], c[j])) for j in range(ndim))
        mask[idx] = True
        index.append(idx)
    return axes, mask, index


def _scan_metric(names: Sequence[str]) -> str:
    return "loss" if "loss" in names else next((n for n in names if "acc" not in n.lower()), names[0])


def frame_range(model: nn.Module, directions: Directions, spec: Any, *, framed: Framed | None = None,
                **options: Any) -> Frame:
    """Scan the loss from the centre along each direction, both ways (and along the four diagonals of a
    surface), and return the span per axis that just holds the basin: where the loss reaches
    ``clip_factor`` x the centre loss (the pictures' clip), times ``margin``.

    Each scan round evaluates the next radius of every ray still below the clip in one grid evaluation: steps
    double from ``min_radius`` until the clip (or ``max_radius``), then the last step is bisected ``bisections``
    times (geometric mean) and the crossing is interpolated in log loss; about 6-8 evaluations per ray. Every
    rank scans alike (not sharded), on the model itself (without the copies ``fold_bn``/``channels_last``/
    ``compile`` make: the same values up to float rounding). ``model`` and ``directions`` are
    :func:`~lightning_papers.landscape.surface`'s; ``spec`` an :class:`~lightning_papers.landscape.EvaluationSpec`
    (or the data, with its fields as ``options``); ``framed`` the scan's settings (:class:`Framed`).

    Raises:
        ValueError: when the centre's loss is not a positive finite number (there is no clip to frame).

    Examples:
        >>> frame_range(net, random_directions(net, n=2, seed=0), (x, y)).axes(51)  # doctest: +SKIP
    """
    framed = framed or Framed()
    dirs = [directions] if isinstance(directions, Direction) else list(directions)
    rays: dict[str, tuple[float, ...]] = dict(_RAYS_1D if len(dirs) == 1 else _RAYS_2D)
    if not framed.diagonals:
        rays = {n: u for n, u in rays.items() if 0.0 in u or len(u) == 1}
    # the copies (fold_bn, channels_last, compile) pay off over a grid, not over the few points of a scan round
    spec = dataclasses.replace(EvaluationSpec.of(spec, **options), shard=None, gather=None, fold_bn=False,
                               channels_last=False, compile=False)

    def evaluate(coords: list[tuple[float, ...]]) -> list[float]:
        axes, mask, index = _points_grid(coords, len(dirs))
        r = evaluate_grid(model, dirs, axes, spec, points=mask)
        scanned["metric"] = _scan_metric(list(r.values))
        return [float(r.values[scanned["metric"]][i]) for i in index]

    scanned = {"metric": "loss"}
    centre = evaluate([(0.0,) * len(dirs)])[0]
    metric = scanned["metric"]
    if not (math.isfinite(centre) and centre > 0):
        raise ValueError(f"Expected a positive finite {metric} at the centre to frame the range, got {centre!r}; "
                         "pass the grid yourself")
    clip = framed.clip_factor * centre
    scans: dict[str, list[list[float]]] = {name: [[0.0, centre]] for name in rays}
    below = {name: 0.0 for name in rays}  # the farthest radius still below the clip
    above: dict[str, float | None] = {name: None for name in rays}
    evaluations = 1

    def step(todo: dict[str, float]) -> None:
        nonlocal evaluations
        names = list(todo)
        values = evaluate([tuple(todo[n] * u for u in rays[n]) for n in names])
        evaluations += len(names)
        for n, v in zip(names, values):
            scans[n].append([todo[n], v])
            if math.isfinite(v) and v < clip:
                below[n] = todo[n]
            else:
                above[n] = todo[n]

    t = framed.min_radius
    while True:  # outward: double the radius of every ray that has not reached the clip
        todo = {n: min(t, framed.max_radius) for n in rays if above[n] is None}
        if not todo:
            break
        step(todo)
        if t >= framed.max_radius:
            break
        t *= 2
    for _ in range(framed.bisections):  # then halve the last step (geometric mean of the bracket)
        todo = {n: math.sqrt(below[n] * a) if below[n] > 0 else 0.5 * a for n in rays if (a := above[n]) is not None}
        if not todo:
            break
        step(todo)
    reaches = {n: _crossing(scans[n], below[n], above[n], clip) for n in rays}
    far = {n: framed.max_radius if r is None else r for n, r in reaches.items()}
    spans = [_round_up(min(framed.margin * max(far[n] for n in rays if rays[n][j] != 0.0), framed.max_radius))
             for j in range(len(dirs))]
    rule = f"framed: {metric} reaches {framed.clip_factor:g} x centre inside"
    return Frame(spans, reaches, clip, centre, metric, evaluations, rule, {n: sorted(v) for n, v in scans.items()})


def _crossing(scan: list[list[float]], below: float, above: float | None, clip: float) -> float | None:
    """Where a ray's loss crosses ``clip``, interpolated in log loss between the last radius below it and the first
    above it (``None``: never above)."""
    if above is None:
        return None

    def g(value: float) -> float:  # log loss (a non-finite loss: beyond any clip)
        return math.log10(value) if math.isfinite(value) and value > 0 else math.inf

    pts = {t: v for t, v in scan}
    glo, ghi = g(pts[below]), g(pts[above])
    frac = (math.log10(clip) - glo) / (ghi - glo) if math.isfinite(ghi) and ghi > glo else 1.0
    return below + min(max(frac, 0.0), 1.0) * (above - below)


def shared_range(frames: Sequence[Frame | SurfaceResult]) -> Frame:
    """One range for surfaces drawn side by side: per axis the largest span of ``frames`` (frames, or results whose
    metadata holds one). Draw every compared surface on ``shared_range(frames).axes(points)``.

    Raises:
        ValueError: for no frames, or frames of different dimensions.

    Examples:
        >>> shared_range([Frame([0.3, 0.5]), Frame([0.4, 0.2])]).spans
        [0.4, 0.5]
    """
    spans = []
    for f in frames:
        if isinstance(f, SurfaceResult):
            f = Frame(**f.metadata["range"]) if "range" in f.metadata else Frame(
                [float(np.max(np.abs(a))) for a in f.axes])
        spans.append(list(f.spans))
    if not spans:
        raise ValueError("Expected at least one frame to share, got none")
    if len({len(s) for s in spans}) != 1:
        raise ValueError(f"Expected frames of one dimension, got {[len(s) for s in spans]} axes")
    union = [max(s[j] for s in spans) for j in range(len(spans[0]))]
    return Frame(union, rule=f"shared by {len(spans)} surfaces")


def framed_axes(model: nn.Module, directions: Directions, grid: Any, spec: EvaluationSpec,
                store: SurfaceStore) -> tuple[Any, dict[str, Any] | None]:
    """``(grid, None)`` for a grid given as axes; for ``"frame"`` or a :class:`Framed`: the framed axes and the
    :class:`Frame` as a dict (for ``metadata["range"]``). Resuming a framed surface reuses its saved range.

    Raises:
        ValueError: for a string other than ``"frame"``.
    """
    if isinstance(grid, str):
        if grid != "frame":
            raise ValueError(f"Expected `grid` to be coordinate axes, 'frame' or a Framed(...), got {grid!r}")
        grid = Framed()
    if not isinstance(grid, Framed):
        return grid, None
    if store.resume and store.path is not None and surface_paths(store.path)[0].exists():
        saved = load_surface(store.path)
        if "range" in saved.metadata:  # the same model and data are checked when the points are resumed
            axes = list(saved.axes)
            return (axes if len(axes) == 2 else axes[0]), saved.metadata["range"]
    frame = frame_range(model, directions, spec, framed=grid)
    axes = frame.axes(grid.points)
    return (axes if len(axes) == 2 else axes[0]), frame.to_dict()
