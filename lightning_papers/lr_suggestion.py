"""Reading a learning rate off an LR range test curve.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186), Section 3.3: sweep
the learning rate up for a few hundred iterations and read ``base_lr`` where the accuracy starts to rise
(the loss starts to fall) and ``max_lr`` where it slows, turns ragged or falls.

All suggestion functions share one signature, ``fn(lrs, losses, accuracies=None, **options)``. Points with
a NaN or infinite value are ignored; when too few finite points remain they warn and return ``None``
instead of raising, so a failed range test never crashes a training run. :class:`SmoothedLoss` is the range
test's online rule (bias-corrected EMA, stop on divergence or a non-finite loss) and :class:`LRRangeResult`
what a test measured, with its suggestions and a plot. Pure numpy and matplotlib: no Lightning.

A suggestion is only as good as the curve it is read from: :func:`diagnose` says when a curve cannot be read
(:attr:`LRRangeResult.problems`), and :meth:`LRRangeResult.schedule_bounds` never hands such bounds on silently.
"""

from __future__ import annotations

import bisect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from lightning_papers._validation import one_of, optional_positive_int, real

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "MIN_POINTS", "SUGGESTIONS", "LRRangeResult", "SmoothedLoss", "clr_bounds", "diagnose", "minimum", "smooth_ema",
    "steepest", "suggest", "valley",
]

MIN_POINTS = 5


class SmoothedLoss:
    """The range test's online rule: a bias-corrected EMA of the loss, and when to stop.

    ``update(loss)`` returns ``avg_i / (1 - beta**i)`` over the finite losses seen so far (the first smoothed value
    equals the first raw value; Lightning's finder's first point is about half the real loss). A non-finite loss
    returns NaN, does not enter the average and sets :attr:`stop_reason` to ``"non-finite"``; a smoothed loss above
    ``divergence_factor`` times the best one sets it to ``"diverged"`` - judged only from the ``min_points``-th
    finite loss on, against the best from there: on a noisy loss one low early value would make any later average
    look like a divergence.

    Args:
        beta: smoothing factor in [0, 1); 0 disables smoothing.
        divergence_factor: ``> 1``, or ``None`` to never call a divergence.
        min_points: finite losses before a divergence can be called; ``None``: the EMA's span
            ``ceil(1 / (1 - beta))``, at least :data:`MIN_POINTS`.

    Raises:
        ValueError: for ``beta`` outside [0, 1), ``divergence_factor <= 1`` or ``min_points < 1``.

    Examples:
        >>> ema = SmoothedLoss(beta=0.5, divergence_factor=2.0, min_points=1)
        >>> [ema.update(v) for v in (4.0, 8.0)], ema.stop_reason
        ([4.0, 6.666666666666667], None)
        >>> ema.update(40.0), ema.stop_reason
        (25.714285714285715, 'diverged')
    """

    def __init__(self, beta: float = 0.98, divergence_factor: float | None = None,
                 min_points: int | None = None) -> None:
        real("beta", beta, 0, 1, high_open=True)
        if divergence_factor is not None:
            real("divergence_factor", divergence_factor, 1, low_open=True, high_open=True)
        optional_positive_int("min_points", min_points)
        self.beta = beta
        self.min_points = max(MIN_POINTS, math.ceil(1.0 / (1.0 - beta) - 1e-9)) if min_points is None else min_points
        self.divergence_factor = divergence_factor
        self.best = math.inf
        self.stop_reason: str | None = None
        self._avg = 0.0
        self._count = 0

    def update(self, loss: float) -> float:
        """Add one raw loss; return its smoothed value (NaN for a non-finite loss)."""
        loss = float(loss)
        if not math.isfinite(loss):
            self.stop_reason = "non-finite"
            return math.nan
        self._count += 1
        self._avg = self.beta * self._avg + (1.0 - self.beta) * loss
        smoothed = self._avg / (1.0 - self.beta**self._count)
        if self._count < self.min_points:
            return smoothed  # still averaging the first few losses: neither a best nor a divergence yet
        self.best = min(self.best, smoothed)
        if self.divergence_factor is not None and smoothed > self.divergence_factor * self.best:
            self.stop_reason = "diverged"
        return smoothed


def smooth_ema(values: Sequence[float], beta: float = 0.98) -> np.ndarray:
    """:class:`SmoothedLoss` over a whole curve: bias-corrected EMA, ``avg_i / (1 - beta**(i + 1))``.

    Non-finite values are passed through as NaN and do not enter the average.

    Args:
        values: raw values in order.
        beta: smoothing factor in [0, 1); 0 disables smoothing.

    Raises:
        ValueError: when ``beta`` is outside [0, 1).

    Examples:
        >>> smooth_ema([4.0, 8.0], beta=0.5).tolist()
        [4.0, 6.666666666666667]
    """
    ema = SmoothedLoss(beta)
    return np.array([ema.update(v) for v in values], dtype=np.float64)


def _finite(lrs: ArrayLike, values: ArrayLike, name: str, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The points with a positive lr and finite values; none, with a warning, when fewer than ``min_points``."""
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
        keep[:] = False
    return lrs[keep], values[keep]


def steepest(lrs: Sequence[float], losses: Sequence[float], accuracies: Sequence[float] | None = None, *,
             skip_start: int | None = None, skip_end: int = 0, min_points: int = MIN_POINTS) -> float | None:
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

    Examples:
        >>> import numpy as np
        >>> lrs = np.logspace(-4, 0, 41)
        >>> float(round(steepest(lrs, -np.tanh(np.log10(lrs) + 2)), 6))
        0.01
    """
    x, y = _finite(lrs, losses, "losses", max(min_points, (skip_start or 0) + skip_end + 3))
    if not len(x):
        return None
    if skip_start is None:
        skip_start = min(len(x) // 10, max(0, len(x) - skip_end - 3))
    x, y = x[skip_start : len(x) - skip_end], y[skip_start : len(y) - skip_end]
    slope = np.gradient(y, np.log(x))
    # Only the descent up to the lowest loss counts: past it the loss blows up, and a fall there (a spike
    # settling back, e.g. to the uniform-prediction loss) is recovery, not learning.
    lowest = int(np.argmin(y))
    return float(x[int(np.argmin(slope[: lowest + 1]))])


def minimum(lrs: Sequence[float], losses: Sequence[float], accuracies: Sequence[float] | None = None, *,
            factor: float = 10.0, min_points: int = MIN_POINTS) -> float | None:
    """The learning rate of the lowest loss, divided by ``factor`` (10 by default).

    Args:
        lrs: learning rates of the points.
        losses: loss of each point.
        accuracies: unused; accepted for the common signature.
        factor: divisor applied to the lr at the minimum.
        min_points: fewest finite points to decide on.

    Examples:
        >>> minimum([1e-3, 1e-2, 1e-1, 1.0, 10.0], [3.0, 2.0, 1.0, 2.0, 9.0])
        0.01
    """
    x, y = _finite(lrs, losses, "losses", min_points)
    if not len(x):
        return None
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


def valley(lrs: Sequence[float], losses: Sequence[float], accuracies: Sequence[float] | None = None, *,
           position: float = 0.5, min_points: int = MIN_POINTS) -> float | None:
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

    Examples:
        >>> valley([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0], [5.0, 4.0, 3.0, 2.0, 1.0, 8.0])
        0.01
    """
    x, y = _finite(lrs, losses, "losses", min_points)
    if not len(x):
        return None
    first, last = _longest_decreasing_run(y)
    log_target = np.log(x[first]) + position * (np.log(x[last]) - np.log(x[first]))
    idx = first + int(np.argmin(np.abs(np.log(x[first : last + 1]) - log_target)))
    return float(x[idx])


def _descent(y: np.ndarray, fraction: float = 0.1) -> tuple[int, int, float, float]:
    """Where a "higher is better" curve starts to improve clearly: ``(start, best, level, improvement)``.

    ``level`` is the flat start, the best of the first ``k`` points (a tenth, at least 2): never the first point
    alone (on a real sweep the first batch's loss is often far off the rest) and never raised by a bump of the
    noise, so what counts as improvement is improvement over the whole flat start. ``best`` is the index of the
    highest point, ``improvement`` its height above ``level``. ``start`` is the first point after the last one
    still within ``fraction * improvement`` of the level before the curve makes ``3 * fraction`` of it: from there
    on it has left its flat start for good. A wobble of the noise in the flat start, even one that dips past the
    threshold and comes back, is not a start; a setback later in the descent is not a flat start (it is ragged).
    """
    k = min(len(y), max(2, len(y) // 10))
    level = float(np.max(y[:k]))
    best = int(np.argmax(y))
    improvement = float(y[best] - level)
    gain = y[: best + 1] - level
    # a setback after the curve made three times that much of its improvement is ragged, not a flat start
    underway = int(np.argmax(gain >= min(1.0, 3 * fraction) * improvement))
    flat = np.nonzero(gain[: underway + 1] < fraction * improvement)[0]
    start = min(int(flat[-1]) + 1, best) if len(flat) else 0
    return start, best, level, improvement


def clr_bounds(lrs: Sequence[float], losses: Sequence[float], accuracies: Sequence[float] | None = None, *,
               start_fraction: float = 0.1, stop_fraction: float = 0.9, ragged_fraction: float = 0.25,
               base_divisor: float = 4.0, min_points: int = MIN_POINTS) -> tuple[float, float] | None:
    """Smith's (``base_lr``, ``max_lr``) for a cyclical schedule, read off a range test.

    On the accuracy curve when given (Smith's original reading), otherwise on the loss curve turned upside
    down. With ``D`` the total improvement from the flat start (the best of the first tenth of the points) to the
    best point:

    * ``base_lr`` is the lr where the curve leaves its flat start for good, the first point after the last one
      within ``start_fraction * D`` of it (the curve "starts to move"; a noisy first point or an early wobble is
      not a start);
    * ``max_lr`` is the first lr where ``stop_fraction * D`` is reached (it "slows"), or earlier, the last
      best point before the curve turns ragged (falls back by more than ``ragged_fraction * D``);
    * when ``base_lr`` cannot be separated from ``max_lr`` it falls back to ``max_lr / base_divisor``
      (Smith: "within a factor of 3 or 4 of the maximum"), but never below the sweep's first learning rate:
      a bound the test never tried is not a reading of it.

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

    Examples:
        >>> lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
        >>> clr_bounds(lrs, [2.0, 1.9, 1.0, 0.5, 0.45, 3.0, 9.0])
        (0.01, 0.1)
    """
    acc = None if accuracies is None else np.asarray(accuracies, dtype=float)
    x = y = np.array([])
    if acc is not None and np.isfinite(acc).sum() >= min_points:
        x, y = _finite(lrs, acc, "accuracies", min_points)
    if not len(x):
        x, y = _finite(lrs, losses, "losses", min_points)
        if not len(x):
            return None
        y = -y  # "higher is better" like accuracy
    start, best, level, improvement = _descent(y, start_fraction)
    if not improvement > 0:
        warnings.warn("The curve never improves; no cyclical bounds suggested.", UserWarning, stacklevel=2)
        return None
    gain = y - level
    stop = start + int(np.argmax(gain[start:] >= stop_fraction * improvement))
    # Ragged means a setback after the curve has started to improve: the wobble of the flat start (where
    # a bias-corrected EMA still follows single noisy points) says nothing about the upper bound.
    running_best = np.maximum.accumulate(y[start:stop])
    ragged = np.nonzero(running_best - y[start:stop] > ragged_fraction * improvement)[0] + start
    if len(ragged):
        stop = start + int(np.argmax(y[start : ragged[0]]))
    max_lr = float(x[stop])
    base_lr = float(x[start])
    if start >= stop:
        # not below the sweep's range: a 30-step sweep from 1e-4 whose "maximum" was its second point gave 3.7e-5
        base_lr = max(max_lr / base_divisor, float(x[0]))
    return base_lr, max_lr


def _no_descent(x: np.ndarray, raw: np.ndarray, smooth: np.ndarray, span: str, stop_reason: str, min_drop: float,
                noise_factor: float) -> tuple[int, str | None]:
    """``(low, problem)``: the lowest smoothed point past the first ``k`` (a tenth of the points, at least 3; before
    that the smoothed loss is a few single losses, and a lucky first batch is no descent) and, when the loss did not
    fall measurably, why. ``start`` is the mean of the first ``k`` raw losses, ``end`` that of the ``k`` up to
    ``low``, ``noise`` the scatter of single losses up to it, ``std(diff(losses)) / sqrt(2)`` (a slow trend hardly
    enters successive differences), and ``se = noise * sqrt(2 / k)`` the standard error of ``start - end``."""
    n, k = len(x), max(3, len(x) // 10)
    low = k + int(np.argmin(smooth[k:])) if n > k else int(np.argmin(smooth))
    start = float(np.mean(raw[:k]))
    end = float(np.mean(raw[max(0, low - k + 1) : low + 1]))
    drop = start - end
    noise = float(np.std(np.diff(raw[: low + 1])) / math.sqrt(2.0)) if low >= 2 else float(np.std(raw[:k]))
    se = noise * math.sqrt(2.0 / k)
    if drop >= min_drop * abs(start) and drop >= noise_factor * se:
        return low, None
    return low, (f"no descent: the {k} raw losses up to the lowest point (lr {x[low]:.3g}) average {end:.3g}, the "
                 f"first {k} {start:.3g}: a fall of {drop:.3g} ({100 * drop / abs(start):.1f} %) against a standard "
                 f"error of {se:.2g} (single losses scatter by {noise:.2g}); the sweep ({span}, stop: {stop_reason}) "
                 f"is too short or too noisy for the loss to fall before it turns, and every reading of it reads "
                 f"noise - lengthen the sweep (more num_steps) or average more (a larger batch)")


def diagnose(lrs: Sequence[float], losses: Sequence[float], smoothed_losses: Sequence[float] | None = None, *,
             stop_reason: str = "completed", suggestion: float | None = None, max_lr: float | None = None,
             min_drop: float = 0.05, noise_factor: float = 3.0, min_descent_points: int = 4,
             min_points: int = MIN_POINTS) -> list[str]:
    """Why a range-test curve cannot be trusted, one sentence per problem with its numbers; ``[]`` when it can.

    * **no descent**: the mean raw loss of the first tenth of the points falls to that up to the lowest smoothed
      point by less than ``min_drop`` of itself or ``noise_factor`` standard errors: every reading of the curve
      (steepest slope, lowest point, Smith's bounds) reads noise. Raw losses: the lowest point of a lightly
      smoothed curve of pure noise lies well below its start;
    * **coarse descent**: fewer than ``min_descent_points`` steps from the flat start (read as :func:`clr_bounds`
      reads it) to the lowest point - a rate read off two or three points is a guess;
    * **still falling**: the lowest point is the last of a sweep that ran to the end (the sweep stopped, not the loss);
    * **read off the flat start**: the ``suggestion`` (or the CLR ``max_lr``) lies in the flat start, a wobble of
      the noise; and fewer than ``min_points`` finite points.

    Args:
        lrs: learning rate of each point.
        losses: raw loss of each point.
        smoothed_losses: the smoothed curve the suggestions are read from (``None``: the raw one).
        stop_reason: the sweep's (``"completed"``, ``"diverged"``, ``"non-finite"``).
        suggestion: the learning rate suggested from this curve, to check where it lies (``None``: not checked).
        max_lr: the CLR upper bound read from it, likewise.
        min_drop: smallest drop, as a fraction of the starting loss, that counts as a descent.
        noise_factor: standard errors the drop must exceed too.
        min_descent_points: fewest steps the descent must span.
        min_points: fewest finite points.

    Examples:
        >>> import numpy as np
        >>> lrs = np.logspace(-4, 1, 30)
        >>> descent = 2.0 - np.tanh(np.log10(lrs) + 2.0)  # falls by ~2 around lr 0.01
        >>> diagnose(lrs, np.where(lrs > 1.0, 9.0, descent), stop_reason="diverged")
        []
        >>> [p.split(":")[0] for p in diagnose(lrs, descent)]  # never turns
        ["the loss was still falling at the sweep's last learning rate 10"]
        >>> [p.split(":")[0] for p in diagnose(lrs, 2.5 + 0.01 * np.sin(lrs))]
        ['no descent']
    """
    x = np.asarray(lrs, dtype=float)
    raw = np.asarray(losses, dtype=float)
    smooth = raw if smoothed_losses is None else np.asarray(smoothed_losses, dtype=float)
    if not x.shape == raw.shape == smooth.shape:
        raise ValueError(f"Expected `lrs`, `losses` and `smoothed_losses` of the same length, got {x.shape}, "
                         f"{raw.shape} and {smooth.shape}")
    keep = np.isfinite(x) & (x > 0) & np.isfinite(raw) & np.isfinite(smooth)
    x, raw, smooth = x[keep], raw[keep], smooth[keep]
    n = len(x)
    if n < min_points:
        return [f"only {n} finite points (need {min_points}): nothing to read"]
    decades = math.log10(x[-1] / x[0]) if x[-1] > x[0] else 0.0
    span = f"{n} points over {decades:.1f} decades" + (f", {n / decades:.1f} per decade" if decades > 0 else "")
    low, flat = _no_descent(x, raw, smooth, span, stop_reason, min_drop, noise_factor)
    if flat is not None:
        return [flat]
    problems = []
    # the same reading of the descent as `clr_bounds`: the last point still at the flat start, up to the lowest
    begin = max(0, _descent(-smooth[: low + 1])[0] - 1)
    if low - begin < min_descent_points:
        problems.append(f"coarse descent: the loss falls from lr {x[begin]:.3g} to {x[low]:.3g} in {low - begin} "
                        f"steps (need {min_descent_points}; {span}): lengthen the sweep")
    for name, value in (("suggestion", suggestion), ("CLR upper bound", max_lr)):
        if value is not None and value <= x[begin]:
            problems.append(f"read off the flat start: the {name} {value:.3g} lies where the loss has not begun to "
                            f"fall (it falls from lr {x[begin]:.3g} to {x[low]:.3g}); it reads a wobble of the noise, "
                            f"not the descent")
    if low == n - 1 and stop_reason == "completed":
        problems.append(f"the loss was still falling at the sweep's last learning rate {x[-1]:.3g}: the upper bound "
                        f"is where the sweep stopped, not where the loss turned; widen the sweep (a larger max_lr)")
    return problems


SUGGESTIONS: dict[str, Callable[..., float | None]] = {"steepest": steepest, "valley": valley, "minimum": minimum}


def suggest(method: str, lrs: Sequence[float], losses: Sequence[float],
            accuracies: Sequence[float] | None = None) -> float | None:
    """Dispatch to one of :data:`SUGGESTIONS` by name.

    Raises:
        ValueError: for an unknown ``method``.

    Examples:
        >>> suggest("minimum", [1e-3, 1e-2, 1e-1, 1.0, 10.0], [3.0, 2.0, 1.0, 2.0, 9.0])
        0.01
    """
    return SUGGESTIONS[one_of("method", method, tuple(SUGGESTIONS))](lrs, losses, accuracies)


@dataclass
class LRRangeResult:
    """What one range test measured, and what it suggests.

    Attributes:
        lrs: learning rate of each recorded optimizer step.
        losses: raw training loss (mean over micro-batches and ranks) of each step.
        smoothed_losses: bias-corrected EMA of ``losses`` (the first equals the first raw loss).
        val_accuracies: validation accuracy after each step, NaN where not measured; empty when unused.
        method: suggestion method (``"steepest"``, ``"valley"`` or ``"minimum"``).
        suggestion: suggested learning rate, or ``None``.
        clr_bounds: Smith's ``(base_lr, max_lr)``, or ``None``.
        stop_reason: ``"completed"``, ``"diverged"`` or ``"non-finite"``.
        skipped_steps: optimizer steps skipped by the AMP grad scaler (not recorded).
        epoch: the epoch at whose start the test ran.
        problems: why the curve cannot be trusted (:func:`diagnose`), one sentence each; empty when it can.

    Examples:
        >>> r = LRRangeResult(lrs=[1e-3, 1e-2, 1e-1, 1.0, 10.0], losses=[3.0, 2.0, 1.0, 2.0, 9.0],
        ...                   smoothed_losses=[3.0, 2.0, 1.0, 2.0, 9.0], method="minimum")
        >>> r.compute_suggestions(); r.suggestion
        0.01
    """

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smoothed_losses: list[float] = field(default_factory=list)
    val_accuracies: list[float] = field(default_factory=list)
    method: str = "steepest"
    suggestion: float | None = None
    clr_bounds: tuple[float, float] | None = None
    stop_reason: str = "completed"
    skipped_steps: int = 0
    epoch: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def trusted(self) -> bool:
        """Whether the curve can be read (:attr:`problems` is empty)."""
        return not self.problems

    def compute_suggestions(self) -> None:
        """(Re)compute :attr:`suggestion`, :attr:`clr_bounds` and :attr:`problems` from the curves; the bounds
        always bracket the suggestion."""
        accuracies = self.val_accuracies or None
        self.suggestion = suggest(self.method, self.lrs, self.smoothed_losses, accuracies)
        self.clr_bounds = clr_bounds(self.lrs, self.smoothed_losses, accuracies)
        if self.clr_bounds is not None and self.suggestion is not None:
            # one reading: the bounds bracket the suggestion (a schedule from them passes through it); one lying
            # outside the descent is then flagged below ("read off the flat start"), not hidden
            base, top = self.clr_bounds
            self.clr_bounds = (min(base, self.suggestion), max(top, self.suggestion))
        self.problems = diagnose(self.lrs, self.losses, self.smoothed_losses, stop_reason=self.stop_reason,
                                 suggestion=self.suggestion,
                                 max_lr=None if self.clr_bounds is None else self.clr_bounds[1])

    def schedule_bounds(self, strict: bool = False) -> tuple[float, float]:
        """``(base_lr, max_lr)`` for a schedule that takes its rates from this test: :attr:`clr_bounds`, or, when
        the curve gave none, the suggestion as ``max_lr`` and a quarter of it as ``base_lr`` (Smith: "within a
        factor of 3 or 4 of the maximum"), with a warning.

        A curve with :attr:`problems` is never handed on silently: with ``strict`` it is refused, otherwise the
        bounds come with a one-line warning that names the problems (their numbers are in :attr:`problems`).

        Raises:
            ValueError: when the test suggested nothing at all, or, with ``strict``, when its curve has problems.
        """
        if self.problems and strict:
            raise ValueError(f"Expected an LR range test whose curve can be read, got one that cannot "
                             f"({self.verdict()}); lengthen or widen the sweep (num_steps, min_lr/max_lr), or give the "
                             f"learning rates as numbers")
        if self.clr_bounds is not None:
            bounds = float(self.clr_bounds[0]), float(self.clr_bounds[1])
        elif self.suggestion is None:
            raise ValueError(f"Expected the LR range test to suggest a learning rate, got none ({len(self.lrs)} "
                             f"points, stop: {self.stop_reason}); widen or lengthen the sweep, or give the rates as "
                             f"numbers")
        else:
            warnings.warn(f"The LR range test found no cyclical bounds; using its suggestion {self.suggestion:.3g} "
                          f"as max_lr and {self.suggestion / 4:.3g} as base_lr.", UserWarning, stacklevel=2)
            bounds = self.suggestion / 4.0, float(self.suggestion)
        if self.problems:
            warnings.warn(f"The LR range test's curve cannot be trusted, yet its bounds {bounds[0]:.3g} .. "
                          f"{bounds[1]:.3g} are being used: {self.verdict()}; give the learning rates as numbers "
                          f"(details in `result.problems`)", UserWarning, stacklevel=2)
        return bounds

    def verdict(self) -> str:
        """The problems' names, e.g. ``"no descent"`` (the sentences with the numbers are :attr:`problems`)."""
        return ", ".join(p.split(":")[0] for p in self.problems) or "trusted"

    def summary(self) -> str:
        """One line: suggestion, bounds, points, why the sweep stopped, and what makes the curve untrustworthy."""
        line = (f"suggestion ({self.method}): {self.suggestion!r}; CLR bounds: {self.clr_bounds!r}; "
                f"points: {len(self.lrs)}; stop: {self.stop_reason}")
        return line + (f"; NOT TRUSTWORTHY: {'; '.join(self.problems)}" if self.problems else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers become ``None``)."""
        out = asdict(self)
        for key in ("lrs", "losses", "smoothed_losses", "val_accuracies"):
            out[key] = [v if math.isfinite(v) else None for v in out[key]]
        out["clr_bounds"] = list(self.clr_bounds) if self.clr_bounds is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRRangeResult:
        data = dict(data)
        for key in ("lrs", "losses", "smoothed_losses", "val_accuracies"):
            data[key] = [float("nan") if v is None else float(v) for v in data.get(key, [])]
        if data.get("clr_bounds") is not None:
            data["clr_bounds"] = tuple(data["clr_bounds"])
        data["problems"] = list(data.get("problems", []))  # results saved before `problems` existed
        return cls(**data)

    def plot(self, ax: Axes | None = None) -> Axes:
        """Loss (raw and smoothed) against lr on a log axis, suggestions marked; returns the Axes (like every
        ``plot`` of the package; ``.figure`` is its Figure).

        Args:
            ax: a matplotlib Axes to draw into; a new Figure (not registered with pyplot) when ``None``.
        """
        if ax is None:
            from matplotlib.figure import Figure

            ax = Figure(figsize=(6, 4)).subplots()
        ax.plot(self.lrs, self.losses, color="0.7", lw=1, label="loss")
        ax.plot(self.lrs, self.smoothed_losses, color="C0", lw=2, label="smoothed loss")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        if self.clr_bounds is not None:
            ax.axvspan(*self.clr_bounds, color="C2", alpha=0.15, label="CLR bounds")
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="C3", ls="--", label=f"{self.method}: {self.suggestion:.2e}")
        if self.val_accuracies:
            pairs = [(lr, a) for lr, a in zip(self.lrs, self.val_accuracies) if math.isfinite(a)]
            if pairs:
                twin = ax.twinx()
                twin.plot(*zip(*pairs), "o-", color="C1", ms=3, label="val accuracy")
                twin.set_ylabel("validation accuracy")
        finite = [v for v in self.smoothed_losses if math.isfinite(v)]
        if finite:  # keep a divergent tail from flattening the interesting part
            low = min(finite)
            # the window spans the curve up to its minimum (which may first rise before it falls)
            high = max(finite[: finite.index(low) + 1])
            if high - low <= 1e-6 * max(abs(low), 1.0):
                high = max(finite)
            if high - low <= 1e-6 * max(abs(low), 1.0):
                high = low + max(abs(low), 1.0) * 0.01
            ax.set_ylim(low - 0.1 * (high - low), high + 0.5 * (high - low))
        ax.legend(loc="lower left", fontsize="small")
        ax.set_title("LR range test" + (" - NOT TRUSTWORTHY (see result.problems)" if self.problems else ""),
                     color="C3" if self.problems else "black")
        return ax
