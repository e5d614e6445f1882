"""Reading a learning rate off an LR range test curve.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186), Section 3.3: sweep
the learning rate up for a few hundred iterations and read ``base_lr`` where the accuracy starts to rise
(the loss starts to fall) and ``max_lr`` where it slows, turns ragged or falls.

All suggestion functions share one signature, ``fn(lrs, losses, accuracies=None, **options)``. Points with
a NaN or infinite value are ignored; when too few finite points remain they warn and return ``None``
instead of raising, so a failed range test never crashes a training run. Pure numpy: no Lightning.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "MIN_POINTS",
    "SUGGESTIONS",
    "clr_bounds",
    "minimum",
    "smooth_ema",
    "steepest",
    "suggest",
    "valley",
]

MIN_POINTS = 5


def smooth_ema(values: Sequence[float], beta: float = 0.98) -> np.ndarray:
    """Bias-corrected exponential moving average, ``avg_i / (1 - beta**(i + 1))``.

    The correction makes the first smoothed value equal the first raw value (Lightning's finder divides
    by ``1 - beta**(i + 2)`` in effect, so its first point is about half the real loss). Non-finite values
    are passed through as NaN and do not enter the average.

    Args:
        values: raw values in order.
        beta: smoothing factor in [0, 1); 0 disables smoothing.

    Raises:
        ValueError: when ``beta`` is outside [0, 1).

    Example::

        >>> smooth_ema([4.0, 8.0], beta=0.5).tolist()
        [4.0, 6.666666666666667]
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"Expected `beta` in [0, 1), got {beta!r}")
    out = np.full(len(values), np.nan)
    avg, count = 0.0, 0
    for i, value in enumerate(values):
        value = float(value)
        if not np.isfinite(value):
            continue
        count += 1
        avg = beta * avg + (1.0 - beta) * value
        out[i] = avg / (1.0 - beta**count)
    return out


def _finite(lrs, values, name: str, min_points: int):
    lrs = np.asarray(lrs, dtype=float)
    values = np.asarray(values, dtype=float)
    if lrs.shape != values.shape:
        raise ValueError(f"Expected `lrs` and `{name}` of the same length, got {lrs.shape} and {values.shape}")
    keep = np.isfinite(lrs) & np.isfinite(values) & (lrs > 0)
    if keep.sum() < min_points:
        warnings.warn(
            f"Only {int(keep.sum())} finite points in `{name}` (need {min_points}); no learning rate suggested.",
            UserWarning,
            stacklevel=3,
        )
        return None
    return lrs[keep], values[keep]


def steepest(
    lrs: Sequence[float],
    losses: Sequence[float],
    accuracies: Sequence[float] | None = None,
    *,
    skip_start: int | None = None,
    skip_end: int = 0,
    min_points: int = MIN_POINTS,
) -> float | None:
    """Learning rate at the most negative slope of the loss against ``log(lr)``, up to the loss minimum.

    Pass the smoothed loss (``LRRangeFinder`` does); the slope is the central difference in log space.
    Points after the lowest loss are not candidates: on short sweeps the loss often spikes past the
    minimum and falls back, and that fall is the steepest of the curve without meaning anything.

    Args:
        lrs: learning rates of the points (positive, increasing).
        losses: loss of each point.
        accuracies: unused; accepted for the common signature.
        skip_start: points ignored at the start (after dropping non-finite ones); ``None`` skips the first
            tenth, where a smoothed curve still follows single noisy points and their slopes mean nothing.
        skip_end: points ignored at the end.
        min_points: fewest finite points to decide on.

    Returns:
        The suggested learning rate, or ``None`` (with a warning) when there are too few points.

    Example::

        >>> import numpy as np
        >>> lrs = np.logspace(-4, 0, 41)
        >>> float(round(steepest(lrs, -np.tanh(np.log10(lrs) + 2)), 6))
        0.01
    """
    data = _finite(lrs, losses, "losses", max(min_points, (skip_start or 0) + skip_end + 3))
    if data is None:
        return None
    x, y = data
    if skip_start is None:
        skip_start = min(len(x) // 10, max(0, len(x) - skip_end - 3))
    x, y = x[skip_start : len(x) - skip_end], y[skip_start : len(y) - skip_end]
    slope = np.gradient(y, np.log(x))
    # Only the descent up to the lowest loss counts: past it the loss blows up, and a fall there (a spike
    # settling back, e.g. to the uniform-prediction loss) is recovery, not learning.
    lowest = int(np.argmin(y))
    return float(x[int(np.argmin(slope[: lowest + 1]))])


def minimum(
    lrs: Sequence[float],
    losses: Sequence[float],
    accuracies: Sequence[float] | None = None,
    *,
    factor: float = 10.0,
    min_points: int = MIN_POINTS,
) -> float | None:
    """The learning rate of the lowest loss, divided by ``factor`` (10 by default).

    Args:
        lrs: learning rates of the points.
        losses: loss of each point.
        accuracies: unused; accepted for the common signature.
        factor: divisor applied to the lr at the minimum.
        min_points: fewest finite points to decide on.

    Returns:
        The suggested learning rate, or ``None`` (with a warning).

    Example::

        >>> minimum([1e-3, 1e-2, 1e-1, 1.0, 10.0], [3.0, 2.0, 1.0, 2.0, 9.0])
        0.01
    """
    data = _finite(lrs, losses, "losses", min_points)
    if data is None:
        return None
    x, y = data
    return float(x[int(np.argmin(y))] / factor)


def _longest_decreasing_run(values: np.ndarray) -> tuple[int, int]:
    """(first, last) index of the longest strictly decreasing subsequence of ``values``.

    Patience sorting on the negated values, O(n log n), with back-pointers to recover the ends.
    """
    tails: list[float] = []  # tails[k]: smallest last (negated) value of an increasing run of length k+1
    tail_index: list[int] = []
    parent = [-1] * len(values)
    for i, value in enumerate(-values):
        k = bisect.bisect_left(tails, value)
        if k == len(tails):
            tails.append(value)
            tail_index.append(i)
        else:
            tails[k] = value
            tail_index[k] = i
        parent[i] = tail_index[k - 1] if k > 0 else -1
    last = tail_index[-1]
    first = last
    while parent[first] != -1:
        first = parent[first]
    return first, last


def valley(
    lrs: Sequence[float],
    losses: Sequence[float],
    accuracies: Sequence[float] | None = None,
    *,
    position: float = 0.5,
    min_points: int = MIN_POINTS,
) -> float | None:
    """A learning rate inside the widest "valley" of the loss curve.

    The valley is the longest strictly decreasing subsequence of the loss (the idea of fastai's
    ``valley``, implemented here independently); the suggestion lies ``position`` of the way from its
    first to its last point in ``log(lr)``, i.e. safely before the bottom where training turns unstable.

    Args:
        lrs: learning rates of the points.
        losses: loss of each point.
        accuracies: unused; accepted for the common signature.
        position: where in the valley, 0 (its start) ... 1 (its bottom).
        min_points: fewest finite points to decide on.

    Returns:
        The suggested learning rate, or ``None`` (with a warning).

    Example::

        >>> valley([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0], [5.0, 4.0, 3.0, 2.0, 1.0, 8.0])
        0.01
    """
    data = _finite(lrs, losses, "losses", min_points)
    if data is None:
        return None
    x, y = data
    first, last = _longest_decreasing_run(y)
    log_target = np.log(x[first]) + position * (np.log(x[last]) - np.log(x[first]))
    idx = first + int(np.argmin(np.abs(np.log(x[first : last + 1]) - log_target)))
    return float(x[idx])


def clr_bounds(
    lrs: Sequence[float],
    losses: Sequence[float],
    accuracies: Sequence[float] | None = None,
    *,
    start_fraction: float = 0.1,
    stop_fraction: float = 0.9,
    ragged_fraction: float = 0.25,
    base_divisor: float = 4.0,
    min_points: int = MIN_POINTS,
) -> tuple[float, float] | None:
    """Smith's (``base_lr``, ``max_lr``) for a cyclical schedule, read off a range test.

    On the accuracy curve when given (Smith's original reading), otherwise on the loss curve turned upside
    down. With ``D`` the total improvement from the first point to the best one:

    * ``base_lr`` is the first lr where ``start_fraction * D`` of the improvement is reached (the curve
      "starts to move");
    * ``max_lr`` is the first lr where ``stop_fraction * D`` is reached (it "slows"), or earlier, the last
      best point before the curve turns ragged (falls back by more than ``ragged_fraction * D``);
    * when ``base_lr`` cannot be separated from ``max_lr`` it falls back to ``max_lr / base_divisor``
      (Smith: "within a factor of 3 or 4 of the maximum").

    Args:
        lrs: learning rates of the points.
        losses: loss of each point (used when ``accuracies`` is ``None`` or has too few finite points).
        accuracies: validation accuracy of each point, NaN where not measured.
        start_fraction: fraction of the improvement that marks ``base_lr``.
        stop_fraction: fraction of the improvement that marks ``max_lr``.
        ragged_fraction: a setback of this fraction of the improvement counts as ragged.
        base_divisor: fallback ``base_lr = max_lr / base_divisor``.
        min_points: fewest finite points to decide on.

    Returns:
        ``(base_lr, max_lr)``, or ``None`` (with a warning) when the curve has too few points or never
        improves.

    Example::

        >>> lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
        >>> clr_bounds(lrs, [2.0, 1.9, 1.0, 0.5, 0.45, 3.0, 9.0])
        (0.01, 0.1)
    """
    curve = None
    if accuracies is not None:
        acc = np.asarray(accuracies, dtype=float)
        if np.isfinite(acc).sum() >= min_points:
            curve = _finite(lrs, acc, "accuracies", min_points)
    if curve is None:
        data = _finite(lrs, losses, "losses", min_points)
        if data is None:
            return None
        curve = (data[0], -data[1])  # "higher is better" like accuracy
    x, y = curve
    best = int(np.argmax(y))
    improvement = y[best] - y[0]
    if not improvement > 0:
        warnings.warn("The curve never improves; no cyclical bounds suggested.", UserWarning, stacklevel=2)
        return None
    gain = y - y[0]
    start = int(np.argmax(gain >= start_fraction * improvement))
    stop = int(np.argmax(gain >= stop_fraction * improvement))
    # Ragged means a setback after the curve has started to improve: the wobble of the flat start (where
    # a bias-corrected EMA still follows single noisy points) says nothing about the upper bound.
    running_best = np.maximum.accumulate(y[start:stop])
    ragged = np.nonzero(running_best - y[start:stop] > ragged_fraction * improvement)[0] + start
    if len(ragged):
        stop = start + int(np.argmax(y[start : ragged[0]]))
    max_lr = float(x[stop])
    base_lr = float(x[start])
    if start >= stop:
        base_lr = max_lr / base_divisor
    return base_lr, max_lr


SUGGESTIONS = {"steepest": steepest, "valley": valley, "minimum": minimum}


def suggest(
    method: str, lrs: Sequence[float], losses: Sequence[float], accuracies: Sequence[float] | None = None
) -> float | None:
    """Dispatch to one of :data:`SUGGESTIONS` by name.

    Raises:
        ValueError: for an unknown ``method``.

    Example::

        >>> suggest("minimum", [1e-3, 1e-2, 1e-1, 1.0, 10.0], [3.0, 2.0, 1.0, 2.0, 9.0])
        0.01
    """
    if method not in SUGGESTIONS:
        raise ValueError(f"Expected `method` to be one of {tuple(SUGGESTIONS)}, got {method!r}")
    return SUGGESTIONS[method](lrs, losses, accuracies)
