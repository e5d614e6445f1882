"""Figures of loss surfaces (matplotlib, Agg-safe), TensorBoard meshes, animations and a VTK ``.vtp`` export.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913):
contour plots, 3-D surfaces (rendered in ParaView in the paper), 1-D curves of loss and accuracy, and
optimisation paths drawn over the contours of the PCA plane. NaN/inf values are masked, never plotted.

Every surface plot draws on one :class:`SurfaceScale` (:func:`surface_scale`), so that a first picture shows the
basin without tuning. A loss spans decades between the minimum and the edge of a grid (0.04 to 40 and more), and
linear levels between the two leave the whole basin inside one contour. So for a positive loss the levels are
log-spaced from the minimum up to a clip, ``CLIP_FACTOR`` (100) times the loss at the grid's centre, and values
above the clip are drawn as the clip, said in the figure. The paper draws 0.1 to 10 around minima near 0.1: two
decades, the same span. ``levels=``, ``vmin=``, ``vmax=`` and ``log=`` override the rule.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

import numpy as np
from numpy.typing import ArrayLike

from lightning_papers import _validation as check

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from lightning_papers.landscape.result import SurfaceResult

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


# ----------------------------------------------------------------------------------------------------
# pictures
# ----------------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------------
# the scale every surface picture shares
# ----------------------------------------------------------------------------------------------------
def _round_sig(values: np.ndarray, digits: int = 2) -> np.ndarray:
    """Round to ``digits`` significant digits (readable contour labels: 0.039, 0.05, 0.063, ...), to the double
    nearest the decimal (through its text: 0.37, not 0.37000000000000005)."""
    return np.array([float(f"{v:.{digits}g}") for v in np.ravel(values)], dtype=np.float64).reshape(np.shape(values))


def _fmt(value: float) -> str:
    """Two significant digits, positional where that reads well: 0.039, 6.4, 240."""
    rounded = float(_round_sig(np.array([value]))[0])
    return np.format_float_positional(rounded, trim="-") if 1e-3 <= abs(rounded) < 1e5 else f"{rounded:.2g}"


@dataclass(frozen=True)
class SurfaceScale:
    """How a surface's values become contour levels, colours and heights, shared by every plot of a surface.

    Attributes:
        vmin, vmax: the range drawn; values above ``vmax`` are clipped (drawn as ``vmax``, the colour bar's
            arrow), values below ``vmin`` as ``vmin``.
        levels: contour levels, increasing.
        log: the levels are log-spaced and colours follow ``log10`` of the values.
        clipped: some finite value lies above ``vmax``.
        rule: where ``vmax`` came from (``"100 x centre"``: the centre value, ``"the maximum"``, ``"vmax="`` ...).
        metric: the metric's name.
        spacing: ``"log-spaced"``, ``"linear"`` or ``"given"`` (levels passed in).
    """

    vmin: float
    vmax: float
    levels: np.ndarray
    log: bool
    clipped: bool
    rule: str
    metric: str = "loss"
    spacing: str = "linear"

    def describe(self) -> str:
        """One line for a figure: the levels and the clip, e.g. ``"20 log-spaced levels 0.039 .. 6.4; loss > 6.4
        (100 x centre) clipped"``."""
        text = f"{len(self.levels)} {self.spacing} levels {_fmt(self.levels[0])} .. {_fmt(self.levels[-1])}"
        if self.clipped:
            text += f"; {self.metric} > {_fmt(self.vmax)} ({self.rule}) clipped"
        return text

    def norm(self, log10: bool = False):
        """The matplotlib colour normalisation (``LogNorm`` for a log scale; in ``log10`` units with ``log10``)."""
        from matplotlib.colors import LogNorm, Normalize

        if log10:
            return Normalize(math.log10(self.vmin), math.log10(self.vmax))
        return LogNorm(self.vmin, self.vmax) if self.log else Normalize(self.vmin, self.vmax)

    def clip(self, values: ArrayLike) -> np.ndarray:
        """``values`` limited to ``[vmin, vmax]`` (NaN stays NaN)."""
        with np.errstate(invalid="ignore"):
            return np.clip(np.asarray(values, dtype=np.float64), self.vmin, self.vmax)

    def unit(self, values: ArrayLike) -> np.ndarray:
        """``values`` clipped and mapped to [0, 1]: linearly, or in ``log10`` on a log scale (NaN stays NaN)."""
        v = self.clip(values)
        lo, hi = self.vmin, self.vmax
        if self.log:
            v, lo, hi = np.log10(v), math.log10(lo), math.log10(hi)
        return (v - lo) / (hi - lo)


def _finite(values: ArrayLike) -> np.ndarray:
    arrays = values if isinstance(values, (list, tuple)) else [values]
    flat = np.concatenate([np.ma.filled(np.ma.asarray(a, dtype=np.float64), np.nan).ravel() for a in arrays])
    return flat[np.isfinite(flat)]


def surface_scale(values: ArrayLike, metric: str = "loss", *, centre: float | None = None, levels: ArrayLike = 20,
                  vmin: float | None = None, vmax: float | None = None,
                  clip_factor: float = CLIP_FACTOR) -> SurfaceScale:
    """The levels, colour range and clip that show the basin of ``values`` (one array, or a list of arrays drawn
    on one scale, e.g. the epochs of an animation).

    The rule: for a positive metric that is not an accuracy (no ``"acc"`` in its name), the clip is
    ``min(maximum, clip_factor * centre)`` (``centre``: the value at the grid's centre, default the minimum) and
    the levels are log-spaced from the minimum to the clip when they span more than a decade (linear
    otherwise). Anything else (accuracies, metrics that reach zero or below) gets linear levels from the minimum
    to the maximum, as matplotlib would draw them.

    Args:
        values: finite and non-finite values; only the finite ones count.
        metric: the metric's name (for the rule and the description).
        centre: the value at the centre of the grid.
        levels: a number of levels, or the levels themselves (then ``vmin``/``vmax`` default to their ends).
        vmin: the lower end of the range drawn.
        vmax: the upper end of the range drawn, the clip.
        clip_factor: the clip in multiples of ``centre``.

    Raises:
        ValueError: for a number of levels below 2, levels that are not increasing and finite, ``vmax`` at or
            below ``vmin`` (or below every value), or a non-positive ``clip_factor``.
    """
    check.positive_real("clip_factor", clip_factor)
    explicit = None
    if isinstance(levels, (int, np.integer)) and not isinstance(levels, bool):
        if levels < 2:
            raise ValueError(f"Expected `levels` to be at least 2 or a sequence of levels, got {levels!r}")
        n = int(levels)
    else:
        explicit = np.asarray(levels, dtype=np.float64).ravel()
        if explicit.size < 1 or not np.isfinite(explicit).all() or np.any(np.diff(explicit) <= 0):
            raise ValueError(f"Expected `levels` to be a number of levels or increasing finite levels, got {levels!r}")
        n = explicit.size
    finite = _finite(values)
    if explicit is not None:
        lo = float(explicit[0]) if vmin is None else float(vmin)
        hi = float(explicit[-1]) if vmax is None else float(vmax)
    else:
        lo = float(finite.min()) if finite.size else 0.0
        lo = lo if vmin is None else float(vmin)
        hi = float(finite.max()) if finite.size else 1.0
    rule = "vmax=" if vmax is not None else ("the last level" if explicit is not None else "the maximum")
    lossy = "acc" not in metric.lower()
    positive = finite.size > 0 and finite.min() > 0 and lo > 0
    if explicit is None and vmax is None and lossy and positive:
        c = centre if centre is not None and math.isfinite(centre) and centre > 0 else lo
        if clip_factor * c < hi:
            hi, rule = clip_factor * c, f"{clip_factor:g} x centre"
    elif vmax is not None:
        hi = float(vmax)
    if vmin is not None and vmax is not None and not hi > lo:
        raise ValueError(f"Expected `vmax` > `vmin`, got vmin={vmin!r}, vmax={vmax!r}")
    if not hi > lo:  # a flat surface, or vmax at or below its minimum: one level in the middle
        if vmax is not None:
            raise ValueError(f"Expected `vmax` above the smallest value drawn ({lo:.4g}), got {vmax!r}")
        half = 0.5 * max(abs(lo), 1.0)
        return SurfaceScale(lo - half, lo + half, np.array([lo - half, lo, lo + half]), False, False, "flat",
                            metric, "around the only value")
    log = lossy and positive and hi / lo > 10
    if explicit is not None:
        lv = explicit
    elif log:
        lv = np.geomspace(lo, hi, n)
        rounded = np.unique(_round_sig(lv))
        lv = rounded if len(rounded) >= max(2, n // 2) else lv
    else:
        lv = np.linspace(lo, hi, n)
    clipped = bool(finite.size and finite.max() > hi)
    spacing = "given" if explicit is not None else ("log-spaced" if log else "linear")
    return SurfaceScale(lo, hi, lv, log, clipped, rule, metric, spacing)


def _scale_of(result: SurfaceResult, metric: str, levels: ArrayLike, vmin: float | None, vmax: float | None,
              scale: SurfaceScale | None) -> SurfaceScale:
    if scale is not None:
        return scale
    centre = result.centre_value(metric) if metric in result.values else None
    return surface_scale(result.values[metric], metric, centre=centre, levels=levels, vmin=vmin, vmax=vmax)


def _new_axes(ax: Axes | None = None, projection: str | None = None, figsize: tuple[float, float] = (5.5, 4.5)) -> Axes:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)  # no pyplot: no global state, safe under the Agg backend
    return fig.add_subplot(projection=projection) if projection else fig.add_subplot()


def _grid2d(result: SurfaceResult, metric: str):
    if result.ndim != 2:
        raise ValueError(f"Expected a 2-D surface for this plot, got {result.ndim}-D")
    if metric not in result.values:
        raise ValueError(f"Expected `metric` to be one of {sorted(result.values)}, got {metric!r}")
    z = display_values(result, metric)
    # values[m][i, j] is at (axes[0][i], axes[1][j]): matplotlib wants Z[row=y, col=x].
    x, y = np.meshgrid(result.axes[0], result.axes[1])
    return x, y, np.ma.masked_invalid(z.T)


def display_values(result: SurfaceResult, metric: str = "loss") -> np.ndarray:
    """What a picture draws: ``result[metric]``, with the points an adaptive surface did not evaluate filled by
    interpolation (:func:`~lightning_papers.landscape.plot.filled_values`; its mask says which)."""
    if result.metadata.get("adaptive") and not result.computed.all():
        return filled_values(result, metric)[0]
    return np.array(result.values[metric], dtype=np.float64)


def describe_sampling(result: SurfaceResult) -> str:
    """One line on the range and the sampling, for a title: ``"range ±0.42 x ±0.37 (framed ...); adaptive: 520 of
    2601 points evaluated, est. error <= 0.05 decades"``; empty for a uniform grid you gave."""
    parts = []
    frame = result.metadata.get("range")
    if frame:
        spans = " x ".join(f"±{s:.2g}" for s in frame.get("spans", []))
        parts.append(f"range {spans} ({frame.get('rule', 'framed')})")
    info = result.metadata.get("adaptive")
    if info:
        unit = " decades" if str(info.get("scale", "")).startswith("log10") else ""
        parts.append(f"adaptive: {int(result.computed.sum())} of {result.computed.size} points evaluated, est. error "
                     f"<= {info.get('estimated_max_error', math.nan):.2g}{unit}")
    return "; ".join(parts)


def mark_evaluated(ax, result: SurfaceResult, **kwargs) -> None:
    """Dots at the evaluated points of a 2-D result (the rest of the picture is interpolated)."""
    xx, yy = np.meshgrid(result.axes[0], result.axes[1], indexing="ij")
    ax.plot(xx[result.computed], yy[result.computed], linestyle="none", marker=kwargs.pop("marker", "."),
            markersize=kwargs.pop("markersize", 2), color=kwargs.pop("color", "black"),
            alpha=kwargs.pop("alpha", 0.5), label="evaluated", **kwargs)


def _log10(z: np.ma.MaskedArray) -> np.ma.MaskedArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.ma.masked_invalid(np.log10(z.filled(np.nan)))


def _colorbar(ax, mappable, scale: SurfaceScale, log10: bool) -> None:
    """A colour bar with about six of the levels as plain-number ticks, an arrow on top when values are clipped."""
    bar = ax.figure.colorbar(mappable, ax=ax, extend="max" if scale.clipped else "neither")
    step = max(1, math.ceil(len(scale.levels) / 6))
    ticks = scale.levels[::step]
    bar.set_ticks(np.log10(ticks) if log10 else ticks, labels=[_fmt(t) for t in ticks])
    bar.minorticks_off()


def _title(ax, metric: str, scale: SurfaceScale, log: bool, title: str | None = None,
           result: SurfaceResult | None = None) -> None:
    sampling = describe_sampling(result) if result is not None else ""
    ax.set_title(f"{title or (('log10 ' if log else '') + metric)}\n{scale.describe()}"
                 + (f"\n{sampling}" if sampling else ""), fontsize=8 if sampling else 9)


def plot_contour(result: SurfaceResult, metric: str = "loss", ax=None, levels: ArrayLike = 20, labels: bool = True,
                 log: bool = False, vmin: float | None = None, vmax: float | None = None,
                 scale: SurfaceScale | None = None, mark_points: bool | None = None, smooth: bool = True,
                 **kwargs):
    """Contour lines of ``metric`` with inline level labels; the trajectory, if any, drawn on top; the evaluated
    points as dots when ``mark_points`` (default: for an adaptive surface, whose other points are interpolated, and
    for a smoothed one). ``smooth``: a grid of fewer than ``SMOOTH_BELOW`` points per axis is drawn through a 4x
    finer bicubic lattice (of ``log10`` loss) between its points, as the title says, instead of straight segments.

    The levels follow :func:`surface_scale` (log-spaced from the minimum to the clip for a loss); ``levels`` (a
    number or the levels), ``vmin``/``vmax`` or a whole ``scale`` override it; ``log=True`` draws ``log10`` of the
    values. The title says which levels were drawn and what was clipped."""
    ax = _new_axes(ax)
    x, y, z = _grid2d(result, metric)
    scale = _scale_of(result, metric, levels, vmin, vmax, scale)
    lv, norm = (np.log10(scale.levels), scale.norm(log10=True)) if log and scale.vmin > 0 else (scale.levels,
                                                                                               scale.norm())
    if log and scale.vmin > 0:
        z = _log10(z)
    fine = SMOOTH_BELOW > min(z.shape) and z.count() == z.size and smooth
    if fine:  # a coarse grid: its contour drawn through a bicubic lattice between the evaluated points
        x, y, z = _finer(x, y, z, log=bool(log and scale.vmin > 0))
    if z.count() >= 4:
        cs = ax.contour(x, y, z, levels=lv, norm=norm, **kwargs)
        if labels:
            ax.clabel(cs, inline=True, fontsize=7, fmt=_fmt)
    if mark_points if mark_points is not None else bool(result.metadata.get("adaptive") or fine):
        mark_evaluated(ax, result)
    _finish(ax, result)
    _title(ax, metric, scale, log, result=result)
    if fine:
        ax.set_title(ax.get_title() + f"\ndrawn through a {_FINER}x finer bicubic lattice between the evaluated points",
                     fontsize=8)
    return ax


SMOOTH_BELOW = 21  # grids with fewer points per axis get their contour drawn through a finer interpolated lattice
_FINER = 4


def _finer(x: np.ndarray, y: np.ndarray, z: np.ma.MaskedArray, log: bool):
    """``_FINER``x finer lattice by bicubic interpolation (in log10 when the loss is, so the basin's rings stay
    round): for the picture only; the result's values are untouched."""
    import torch

    rows, cols = z.shape
    values = np.asarray(z.filled(np.nan), dtype=np.float64)
    src = values if log else np.log10(np.maximum(values, np.finfo(float).tiny))
    t = torch.from_numpy(src)[None, None]
    out = torch.nn.functional.interpolate(t, size=((rows - 1) * _FINER + 1, (cols - 1) * _FINER + 1), mode="bicubic",
                                          align_corners=True)[0, 0].numpy()
    out = out if log else 10.0 ** out
    xs = np.linspace(x[0, 0], x[0, -1], out.shape[1])
    ys = np.linspace(y[0, 0], y[-1, 0], out.shape[0])
    xx, yy = np.meshgrid(xs, ys)
    return xx, yy, np.ma.masked_invalid(out)


def plot_filled_contour(result: SurfaceResult, metric: str = "loss", ax=None, levels: ArrayLike = 30, log: bool = False,
                        colorbar: bool = True, vmin: float | None = None, vmax: float | None = None,
                        scale: SurfaceScale | None = None, **kwargs):
    """Filled contours of ``metric`` with a colour bar; values above the clip take the bar's top arrow."""
    ax = _new_axes(ax)
    x, y, z = _grid2d(result, metric)
    scale = _scale_of(result, metric, levels, vmin, vmax, scale)
    use_log10 = log and scale.vmin > 0
    lv, norm = (np.log10(scale.levels), scale.norm(log10=True)) if use_log10 else (scale.levels, scale.norm())
    if use_log10:
        z = _log10(z)
    if z.count() >= 4:
        extend = "max" if scale.clipped else "neither"
        cs = ax.contourf(x, y, z, levels=lv, norm=norm, extend=extend, **kwargs)
        if colorbar:
            _colorbar(ax, cs, scale, use_log10)
    _finish(ax, result)
    _title(ax, metric, scale, log, result=result)
    return ax


def plot_heatmap(result: SurfaceResult, metric: str = "loss", ax=None, log: bool = False, colorbar: bool = True,
                 vmin: float | None = None, vmax: float | None = None, scale: SurfaceScale | None = None,
                 **kwargs):
    """``metric`` as a heat map on the grid (cells centred on the grid points; masked cells blank); colours on
    the :func:`surface_scale` (log colours up to the clip for a loss)."""
    ax = _new_axes(ax)
    x, y, z = _grid2d(result, metric)
    scale = _scale_of(result, metric, kwargs.pop("levels", 20), vmin, vmax, scale)
    use_log10 = log and scale.vmin > 0
    if use_log10:
        z = _log10(z)
    mesh = ax.pcolormesh(x, y, z, shading="nearest", norm=scale.norm(log10=use_log10), **kwargs)
    if colorbar:
        _colorbar(ax, mesh, scale, use_log10)
    _finish(ax, result)
    _title(ax, metric, scale, log, result=result)
    return ax


def plot_surface3d(result: SurfaceResult, metric: str = "loss", ax=None, log: bool | None = None,
                   cmap: str = "viridis", vmin: float | None = None, vmax: float | None = None,
                   scale: SurfaceScale | None = None, **kwargs):
    """3-D surface of ``metric`` (``fig.add_subplot(projection="3d")``), clipped at the :func:`surface_scale`'s
    ``vmax``; ``log=None`` draws ``log10`` of the values when the scale is logarithmic. Non-finite points are left
    out."""
    if ax is None:
        ax = _new_axes(projection="3d")
    x, y, z = _grid2d(result, metric)
    scale = _scale_of(result, metric, kwargs.pop("levels", 20), vmin, vmax, scale)
    log = scale.log if log is None else log
    zz = np.ma.masked_invalid(scale.clip(z.filled(np.nan)))
    lo, hi = scale.vmin, scale.vmax
    if log and scale.vmin > 0:
        zz, lo, hi = _log10(zz), math.log10(lo), math.log10(hi)
    ax.plot_surface(x, y, zz.filled(np.nan), cmap=cmap, vmin=lo, vmax=hi, linewidth=0, antialiased=True, **kwargs)
    ax.set_zlim(lo, hi)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_zlabel(f"{'log10 ' if log else ''}{metric}")
    clip = f"{metric} > {_fmt(scale.vmax)} ({scale.rule}) clipped" if scale.clipped else \
        f"{metric} {_fmt(scale.vmin)} .. {_fmt(scale.vmax)}"
    ax.set_title(f"{'log10 ' if log else ''}{metric}\n{clip}", fontsize=9)
    return ax


def plot_curve(result: SurfaceResult, ax=None, metrics: tuple[str, ...] | None = None, log: bool = False,
               xlabel: str = "alpha"):
    """1-D curves: the loss on the left axis (log scale with ``log=True``), accuracy (if any) on a twin axis."""
    if result.ndim != 1:
        raise ValueError(f"Expected a 1-D result for a curve, got {result.ndim}-D")
    ax = _new_axes(ax)
    metrics = metrics or tuple(result.values)
    x = result.axes[0]
    left = [m for m in metrics if "acc" not in m]
    right = [m for m in metrics if "acc" in m]
    sampled = bool(result.metadata.get("adaptive"))
    for m in left:
        if sampled:  # the evaluated points as dots, joined by the interpolation
            ax.plot(x, np.ma.masked_invalid(display_values(result, m)), label=f"{m} (interpolated between dots)")
            ax.plot(x[result.computed], result.values[m][result.computed], linestyle="none", marker=".",
                    color="black")
        else:
            ax.plot(x, np.ma.masked_invalid(result.values[m]), marker=".", label=m)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(", ".join(left) or "value")
    if right:
        twin = ax.twinx()
        for m in right:
            twin.plot(x, np.ma.masked_invalid(result.values[m]), linestyle="--", color="tab:red", label=m)
        twin.set_ylabel(", ".join(right))
    ax.legend(loc="upper left", fontsize=8)
    sampling = describe_sampling(result)
    if sampling:
        ax.set_title(sampling, fontsize=8)
    return ax


def plot_trajectory(path: np.ndarray, ax=None, explained_variance_ratio: np.ndarray | None = None, **kwargs):
    """The optimisation path (T, 2) in the PCA plane, start to end, the final point marked."""
    ax = _new_axes(ax)
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2 or path.shape[1] < 2:
        raise ValueError(f"Expected `path` of shape (T, 2), got {path.shape}")
    ax.plot(path[:, 0], path[:, 1], marker=".", color=kwargs.pop("color", "tab:red"), label="trajectory", **kwargs)
    ax.plot(path[-1, 0], path[-1, 1], marker="*", markersize=12, color="black", linestyle="none", label="final")
    if explained_variance_ratio is not None:
        evr = np.asarray(explained_variance_ratio)
        ax.set_xlabel(f"PC1 ({100 * evr[0]:.1f}%)")
        ax.set_ylabel(f"PC2 ({100 * evr[1]:.1f}%)")
    return ax


def _finish(ax, result: SurfaceResult) -> None:
    if result.trajectory is not None:
        plot_trajectory(result.trajectory, ax=ax)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")


def _triangles(valid: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Two triangles per grid cell whose four corners are all valid (vertex ``r * nx + c``)."""
    faces = []
    flat = valid.ravel()
    for r in range(ny - 1):
        for c in range(nx - 1):
            a, b, d, e = r * nx + c, r * nx + c + 1, (r + 1) * nx + c, (r + 1) * nx + c + 1
            if flat[[a, b, d, e]].all():
                faces.append((a, b, e))
                faces.append((a, e, d))
    return np.array(faces, dtype=np.int64).reshape(-1, 3)


def mesh_arrays(result: SurfaceResult, metric: str = "loss", log: bool = False, zmax: float | None = None):
    """Vertices (N, 3) and triangles (F, 3) of a 2-D surface with the raw values as heights, for ``.vtp`` files
    (:func:`mesh_view` is the version scaled for TensorBoard).

    Non-finite values become ``zmax`` (default: the largest finite value) in the vertices, and triangles that
    touch one are dropped.
    """
    x, y, z = _grid2d(result, metric)
    if log:
        z = _log10(z)
    valid = ~np.ma.getmaskarray(z)
    fill = zmax if zmax is not None else (float(z.max()) if z.count() else 0.0)
    zz = np.minimum(z.filled(fill), fill) if zmax is not None else z.filled(fill)
    verts = np.stack([x.ravel(), y.ravel(), zz.ravel()], axis=1)
    return verts, _triangles(valid, *x.shape), valid.ravel()


@dataclass
class MeshView:
    """A surface as a TensorBoard mesh: ``vertices`` (N, 3) float32, ``faces`` (F, 3) int32, per-vertex ``colors``
    (N, 3) uint8, the ``description`` of how heights and colours were made (the tag's description), and the
    viewer's ``config`` (three.js camera: an oblique view; TensorBoard's default looks straight down)."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    description: str
    config: dict[str, Any]


def mesh_view(result: SurfaceResult, metric: str = "loss", *, vmin: float | None = None,
              vmax: float | None = None, height: float | None = None, cmap: str = "viridis",
              scale: SurfaceScale | None = None) -> MeshView:
    """The surface as a mesh that renders as a surface: heights on the :func:`surface_scale` mapped to
    ``[0, height]`` (``log10`` of the clipped loss for a loss), so z spans the same order as x and y.

    Raw losses reach hundreds at a grid's corners over x, y in [-1, 1]; drawn as they are, a viewer frames a
    needle. ``height`` defaults to half the larger of the two axes' extents. Colours are ``cmap`` on the same
    scale. Points with no finite value sit at the top and their triangles are dropped.
    """
    from matplotlib import colormaps

    x, y, z = _grid2d(result, metric)
    scale = _scale_of(result, metric, 20, vmin, vmax, scale)
    extent = max(float(np.ptp(result.axes[0])), float(np.ptp(result.axes[1])))
    height = 0.5 * (extent or 1.0) if height is None else float(height)
    valid = ~np.ma.getmaskarray(z)
    unit = np.nan_to_num(scale.unit(z.filled(np.nan)), nan=1.0)
    # three.js (TensorBoard's viewer) has +y up: the height goes there, direction 2 runs into the screen (-z)
    verts = np.stack([x.ravel(), (unit * height).ravel(), -y.ravel()], axis=1).astype(np.float32)
    colors = (np.asarray(colormaps[cmap](unit.ravel()))[:, :3] * 255).round().astype(np.uint8)
    how = (f"log10 of {metric}" if scale.log else metric) + f" clipped to [{_fmt(scale.vmin)}, {_fmt(scale.vmax)}]"
    description = (f"Vertices (direction 1, height, -direction 2), y up as in three.js. Height and colour ({cmap}): "
                   f"{how}, mapped linearly to [0, {height:.3g}] "
                   f"(half the grid's extent), so the surface is half as tall as it is wide. "
                   + (f"{metric.capitalize()} above {_fmt(scale.vmax)} ({scale.rule} value) is drawn at the top. "
                      if scale.clipped else "")
                   + "The raw values are in the .npz beside the event files.")
    # TensorBoard centres the mesh; its default camera looks along -z, which would show the surface edge-on: look
    # from above and in front instead
    half = 0.5 * (extent or 1.0)
    config = {"camera": {"cls": "PerspectiveCamera", "fov": 60, "position": [0.8 * half, 2.8 * half, 1.8 * half],
                         "lookAt": [0.0, 0.0, 0.0]},
              # the default light comes from below (-y here): light the surface from above, mostly ambient so the
              # colours stay readable
              "lights": [{"cls": "AmbientLight", "color": "#ffffff", "intensity": 0.9},
                         {"cls": "DirectionalLight", "color": "#ffffff", "intensity": 0.5, "position": [1, 2, 2]}]}
    return MeshView(verts, _triangles(valid, *x.shape).astype(np.int32), colors, description, config)


# ----------------------------------------------------------------------------------------------------
# the landscape over training
# ----------------------------------------------------------------------------------------------------
def _epochs_and_results(results: Any) -> list[tuple[int, SurfaceResult]]:
    items = sorted(results.items()) if isinstance(results, Mapping) else list(results)
    if not items:
        raise ValueError("Expected at least one (epoch, SurfaceResult) to draw, got none")
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and hasattr(item[1], "computed")):
            raise ValueError(f"Expected {{epoch: SurfaceResult}} or (epoch, SurfaceResult) pairs, got {item!r}")
    first = items[0][1]
    for epoch, r in items:
        same = r.ndim == 2 and first.ndim == 2 and all(
            a.shape == b.shape and np.allclose(a, b) for a, b in zip(r.axes, first.axes))
        if not same:
            raise ValueError(f"Expected 2-D surfaces on one grid to draw on common axes, got the grid "
                             f"{r.shape} at epoch {epoch} and {first.shape} at epoch {items[0][0]} (or other "
                             "coordinates)")
    return items


def surface_frames(results: Mapping[int, SurfaceResult] | Sequence[tuple[int, SurfaceResult]],
                   metric: str = "loss", *, levels: ArrayLike = 20, vmin: float | None = None,
                   vmax: float | None = None, dpi: int = 80) -> tuple[list[np.ndarray], SurfaceScale]:
    """One picture (H, W, 3 uint8) per epoch of the surfaces in ``results`` ({epoch: result}), all on the same
    axes, levels and colours, so that the basin forming over training is what changes between them.

    The common scale is :func:`surface_scale` over every epoch's values, with the clip taken from the lowest
    centre value (the trained model's, usually): early epochs then show how far above the final basin they lie.

    Raises:
        ValueError: for no results, results that are not 2-D surfaces on one grid, or an unknown ``metric``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = _epochs_and_results(results)
    for epoch, r in items:
        if metric not in r.values:
            raise ValueError(f"Expected `metric` to be one of {sorted(r.values)}, got {metric!r} (epoch {epoch})")
    centres = [r.centre_value(metric) for _, r in items]
    finite_centres = [c for c in centres if math.isfinite(c)]
    scale = surface_scale([r.values[metric] for _, r in items], metric,
                          centre=min(finite_centres) if finite_centres else None, levels=levels, vmin=vmin,
                          vmax=vmax)
    frames = []
    for epoch, r in items:
        fig = Figure(figsize=(5.0, 4.4))
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        plot_filled_contour(r, metric, ax=ax, scale=scale, cmap="viridis")
        x, y, z = _grid2d(r, metric)
        if z.count() >= 4:
            ax.contour(x, y, z, levels=scale.levels, colors="white", linewidths=0.5, alpha=0.6)
        ax.set_xlim(r.axes[0][0], r.axes[0][-1])
        ax.set_ylim(r.axes[1][0], r.axes[1][-1])
        ax.set_title(f"{metric} at epoch {epoch} (centre {r.centre_value(metric):.3g})\n{scale.describe()}",
                     fontsize=9)
        fig.tight_layout()
        canvas.draw()
        frames.append(np.asarray(canvas.buffer_rgba())[..., :3].copy())
    return frames, scale


def save_gif(frames: Sequence[np.ndarray], path: str | os.PathLike, duration: int = 800) -> Path:
    """Write pictures (H, W, 3 uint8, one size) as a looping GIF, ``duration`` ms each and the last three times
    as long. Returns the path.

    Raises:
        ValueError: for no frames, frames of different sizes, or a non-positive ``duration``.
    """
    from PIL import Image

    if check.integer("duration", duration) < 1:
        raise ValueError(f"Expected `duration` to be a positive number of milliseconds, got {duration!r}")
    shapes = {np.shape(f) for f in frames}
    if not frames or len(shapes) != 1:
        raise ValueError(f"Expected one or more frames of one size, got {len(frames)} of sizes {sorted(shapes)}")
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)).quantize(colors=128, method=Image.Quantize.MEDIANCUT,
                                                                         dither=Image.Dither.NONE) for f in frames]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [duration] * (len(images) - 1) + [3 * duration]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0, optimize=False,
                   format="GIF")
    return path


def animate_surfaces(results: Mapping[int, SurfaceResult] | Sequence[tuple[int, SurfaceResult]],
                     path: str | os.PathLike, metric: str = "loss", *, levels: ArrayLike = 20,
                     vmin: float | None = None, vmax: float | None = None, duration: int = 800) -> Path:
    """Write the surfaces of several epochs as one animated GIF (:func:`surface_frames`: same axes, levels and
    colours in every frame, :func:`save_gif`). Returns the path.

    Examples:
        >>> probe.results   # {epoch: SurfaceResult} of a LossLandscapeProbe(every_n_epochs=1)  # doctest: +SKIP
        >>> animate_surfaces(probe.results, "basin.gif")  # doctest: +SKIP

    Raises:
        ValueError: as :func:`surface_frames` and :func:`save_gif`.
    """
    if check.integer("duration", duration) < 1:  # before the drawing
        raise ValueError(f"Expected `duration` to be a positive number of milliseconds, got {duration!r}")
    frames, _ = surface_frames(results, metric, levels=levels, vmin=vmin, vmax=vmax)
    return save_gif(frames, path, duration)


def _data_array(name: str, values: np.ndarray, kind: str = "Float64", components: int = 1) -> str:
    body = " ".join(repr(float(v)) if kind.startswith("Float") else str(int(v)) for v in np.ravel(values))
    return (
        f'<DataArray type="{kind}" Name={quoteattr(name)} NumberOfComponents="{components}" format="ascii">'
        f"{body}</DataArray>"
    )


def write_vtp(result: SurfaceResult, path: str | os.PathLike, metric: str = "loss", log: bool = False,
              zmax: float | None = None) -> Path:
    """Write a 2-D surface as VTK XML PolyData (ASCII) for ParaView: the surface as quads' triangles, with
    every metric (NaN kept) and a ``valid`` flag as point data. Returns the path.

    Raises:
        ValueError: for a 1-D result or an unknown metric.
    """
    verts, faces, valid = mesh_arrays(result, metric, log, zmax)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    point_data = [_data_array(m, v.T) for m, v in result.values.items()]  # same (y, x) order as the vertices
    point_data.append(_data_array("valid", valid.astype(np.uint8), "UInt8"))
    offsets = np.arange(1, len(faces) + 1) * 3
    xml = "\n".join([
        '<?xml version="1.0"?>',
        '<VTKFile type="PolyData" version="0.1" byte_order="LittleEndian">',
        "<PolyData>",
        f'<Piece NumberOfPoints="{len(verts)}" NumberOfVerts="0" NumberOfLines="0" NumberOfStrips="0" '
        f'NumberOfPolys="{len(faces)}">',
        f"<PointData Scalars={quoteattr(metric)}>",
        *point_data,
        "</PointData>",
        "<Points>",
        _data_array("Points", verts, "Float64", 3),
        "</Points>",
        "<Polys>",
        _data_array("connectivity", faces, "Int64"),
        _data_array("offsets", offsets, "Int64"),
        "</Polys>",
        "</Piece>",
        "</PolyData>",
        "</VTKFile>",
        "",
    ])
    path.write_text(xml)
    return path
