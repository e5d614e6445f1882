"""Learning-rate and momentum schedules as pure functions of the optimizer step.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186): the
``triangular``, ``triangular2`` and ``exp_range`` policies. Smith & Topin, Super-Convergence: Very Fast
Training of Neural Networks Using Large Learning Rates, 2018 (arXiv 1708.07120): the 1cycle policy.

Every function takes the (0-based) optimizer step first and returns a float; nothing here knows about
Lightning, so a plain PyTorch loop can call ``lr = triangular(step, 1e-3, 6e-3, 2000)`` directly. The
callable classes (:class:`Cyclical`, :class:`OneCycle`, :class:`Ramp`) bind the parameters and pickle,
unlike closures, so DDP spawn and checkpoints can carry them.

The arithmetic is ordered exactly like ``torch.optim.lr_scheduler.CyclicLR`` / ``OneCycleLR`` so that the
sequences agree bit for bit (the tests compare them with ``==``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CYCLICAL_MODES",
    "ONE_CYCLE_ANNEALS",
    "RAMP_MODES",
    "Cyclical",
    "OneCycle",
    "Ramp",
    "cyclical",
    "cyclical_momentum",
    "exp_range",
    "exponential_ramp",
    "linear_ramp",
    "one_cycle",
    "one_cycle_momentum",
    "ramp",
    "triangular",
    "triangular2",
]

CYCLICAL_MODES = ("triangular", "triangular2", "exp_range")
ONE_CYCLE_ANNEALS = ("cos", "linear")
RAMP_MODES = ("exponential", "linear")


# ----------------------------------------------------------------------------------------------------
# Cyclical learning rates (Smith 2017)
# ----------------------------------------------------------------------------------------------------
def _check_mode(name: str, value: object, supported: tuple) -> None:
    if value not in supported:
        raise ValueError(f"Expected `{name}` to be one of {supported}, got {value!r}")


def _cycle_position(step: int, step_size_up: float, step_size_down: float | None) -> tuple[int, float]:
    """(cycle, height) with cycle counted from 1 and height in [0, 1] (1 at the peak)."""
    up = float(step_size_up)
    down = float(step_size_down) if step_size_down is not None else up
    total = up + down
    ratio = up / total
    cycle = math.floor(1 + step / total)
    x = 1.0 + step / total - cycle
    # Equal to the paper's max(0, 1 - |t/step_size - 2*cycle + 1|) for symmetric cycles; written as
    # torch's CyclicLR writes it so that both give identical floats (and asymmetric cycles work).
    height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    return cycle, height


def _cyclical_scale(step: int, cycle: int, mode: str, gamma: float) -> float:
    if mode == "triangular":
        return 1.0
    if mode == "triangular2":
        # 1 / 2**(cycle - 1), exactly, without overflowing after ~1000 cycles.
        return math.ldexp(1.0, 1 - cycle)
    return gamma**step


def cyclical(
    step: int,
    base_lr: float,
    max_lr: float,
    step_size_up: float,
    step_size_down: float | None = None,
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
    gamma: float = 1.0,
) -> float:
    """Cyclical learning rate at ``step`` (Smith 2017, Section 3.1).

    With ``cycle = floor(1 + t / (2 * step_size))`` and ``x = |t / step_size - 2 * cycle + 1|``:
    ``lr = base_lr + (max_lr - base_lr) * max(0, 1 - x) * scale``, where ``scale`` is 1 (triangular),
    ``1 / 2**(cycle - 1)`` (triangular2) or ``gamma**t`` (exp_range).

    Args:
        step: optimizer steps taken so far (0 for the first step).
        base_lr: lower bound of the cycle.
        max_lr: upper bound of the cycle.
        step_size_up: steps from ``base_lr`` to ``max_lr`` (Smith's ``stepsize``).
        step_size_down: steps back down; defaults to ``step_size_up``.
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: decay base of ``exp_range``.

    Raises:
        ValueError: for an unknown ``mode``.

    Example::

        >>> cyclical(2000, base_lr=0.001, max_lr=0.006, step_size_up=2000)
        0.006
    """
    _check_mode("mode", mode, CYCLICAL_MODES)
    cycle, height = _cycle_position(step, step_size_up, step_size_down)
    return base_lr + (max_lr - base_lr) * height * _cyclical_scale(step, cycle, mode, gamma)


def cyclical_momentum(
    step: int,
    base_momentum: float,
    max_momentum: float,
    step_size_up: float,
    step_size_down: float | None = None,
    mode: Literal["triangular", "triangular2", "exp_range"] = "triangular",
    gamma: float = 1.0,
) -> float:
    """Momentum cycling opposite to :func:`cyclical`: ``max_momentum`` when the lr is at ``base_lr``.

    Args:
        step: optimizer steps taken so far.
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the lr trough.
        step_size_up: as in :func:`cyclical`.
        step_size_down: as in :func:`cyclical`.
        mode: as in :func:`cyclical`.
        gamma: as in :func:`cyclical`.

    Raises:
        ValueError: for an unknown ``mode``.

    Example::

        >>> cyclical_momentum(10, base_momentum=0.8, max_momentum=0.9, step_size_up=10)
        0.8
    """
    _check_mode("mode", mode, CYCLICAL_MODES)
    cycle, height = _cycle_position(step, step_size_up, step_size_down)
    return max_momentum - (max_momentum - base_momentum) * height * _cyclical_scale(step, cycle, mode, gamma)


def triangular(step: int, base_lr: float, max_lr: float, step_size: float) -> float:
    """Smith's ``triangular`` policy: a constant-amplitude triangle wave (see :func:`cyclical`).

    Example::

        >>> triangular(1, 0.0, 1.0, step_size=2)
        0.5
    """
    return cyclical(step, base_lr, max_lr, step_size, mode="triangular")


def triangular2(step: int, base_lr: float, max_lr: float, step_size: float) -> float:
    """Smith's ``triangular2`` policy: the amplitude halves after every cycle (see :func:`cyclical`).

    Example::

        >>> triangular2(6, 0.0, 1.0, step_size=2)
        0.5
    """
    return cyclical(step, base_lr, max_lr, step_size, mode="triangular2")


def exp_range(step: int, base_lr: float, max_lr: float, step_size: float, gamma: float) -> float:
    """Smith's ``exp_range`` policy: the amplitude decays as ``gamma**step`` (see :func:`cyclical`).

    Example::

        >>> round(exp_range(2, 0.0, 1.0, step_size=2, gamma=0.5), 6)
        0.25
    """
    return cyclical(step, base_lr, max_lr, step_size, mode="exp_range", gamma=gamma)


@dataclass(frozen=True)
class Cyclical:
    """Picklable cyclical schedule: ``Cyclical(...)(step)`` equals :func:`cyclical`; ``.momentum(step)``
    equals :func:`cyclical_momentum` with ``base_momentum``/``max_momentum``.

    Args:
        base_lr: lower lr bound.
        max_lr: upper lr bound.
        step_size_up: steps from ``base_lr`` to ``max_lr``.
        step_size_down: steps back down (defaults to ``step_size_up``).
        mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: decay base of ``exp_range``.
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the lr trough.

    Raises:
        ValueError: for an unknown ``mode``, non-positive step sizes or ``base_lr > max_lr``.

    Example::

        >>> Cyclical(0.001, 0.006, step_size_up=2000)(1000)
        0.0035
    """

    base_lr: float
    max_lr: float
    step_size_up: float
    step_size_down: float | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    base_momentum: float = 0.8
    max_momentum: float = 0.9

    def __post_init__(self) -> None:
        _check_mode("mode", self.mode, CYCLICAL_MODES)
        if not self.step_size_up > 0:
            raise ValueError(f"Expected `step_size_up` to be positive, got {self.step_size_up!r}")
        if self.step_size_down is not None and not self.step_size_down > 0:
            raise ValueError(f"Expected `step_size_down` to be positive, got {self.step_size_down!r}")
        if self.base_lr > self.max_lr:
            raise ValueError(f"Expected `base_lr <= max_lr`, got {self.base_lr!r} > {self.max_lr!r}")

    def __call__(self, step: int) -> float:
        return cyclical(step, self.base_lr, self.max_lr, self.step_size_up, self.step_size_down, self.mode, self.gamma)

    def momentum(self, step: int) -> float:
        return cyclical_momentum(
            step,
            self.base_momentum,
            self.max_momentum,
            self.step_size_up,
            self.step_size_down,
            self.mode,
            self.gamma,
        )


# ----------------------------------------------------------------------------------------------------
# Ramps for the LR range test
# ----------------------------------------------------------------------------------------------------
def ramp(
    step: int, num_steps: int, start: float, end: float, mode: Literal["exponential", "linear"] = "exponential"
) -> float:
    """Monotone ramp from ``start`` (step 0) to ``end`` (step ``num_steps - 1``), both hit exactly.

    Args:
        step: 0 ... ``num_steps - 1`` (later steps stay at ``end``).
        num_steps: number of points, at least 2.
        start: first value (> 0 for ``"exponential"``).
        end: last value (> 0 for ``"exponential"``).
        mode: ``"exponential"`` (evenly spaced in log) or ``"linear"``.

    Raises:
        ValueError: for an unknown ``mode``, ``num_steps < 2`` or non-positive exponential bounds.

    Example::

        >>> [ramp(i, 3, 1e-3, 1e-1) for i in range(3)]
        [0.001, 0.01, 0.1]
    """
    _check_mode("mode", mode, RAMP_MODES)
    if num_steps < 2:
        raise ValueError(f"Expected `num_steps >= 2`, got {num_steps!r}")
    if step <= 0:
        return float(start)
    if step >= num_steps - 1:
        return float(end)
    frac = step / (num_steps - 1)
    if mode == "linear":
        return start + (end - start) * frac
    if start <= 0 or end <= 0:
        raise ValueError(f"Expected positive bounds for an exponential ramp, got {start!r} and {end!r}")
    return start * (end / start) ** frac


def linear_ramp(step: int, num_steps: int, start: float, end: float) -> float:
    """:func:`ramp` with ``mode="linear"``.

    Example::

        >>> linear_ramp(1, 3, 0.0, 1.0)
        0.5
    """
    return ramp(step, num_steps, start, end, mode="linear")


def exponential_ramp(step: int, num_steps: int, start: float, end: float) -> float:
    """:func:`ramp` with ``mode="exponential"``.

    Example::

        >>> exponential_ramp(2, 3, 1.0, 100.0)
        100.0
    """
    return ramp(step, num_steps, start, end, mode="exponential")


@dataclass(frozen=True)
class Ramp:
    """Picklable :func:`ramp`: ``Ramp(1e-7, 10.0, 100)(step)``.

    Args:
        start: first value.
        end: last value.
        num_steps: number of points.
        mode: ``"exponential"`` or ``"linear"``.

    Raises:
        ValueError: as :func:`ramp`, eagerly.

    Example::

        >>> Ramp(1.0, 100.0, 3).values()
        [1.0, 10.0, 100.0]
    """

    start: float
    end: float
    num_steps: int
    mode: str = "exponential"

    def __post_init__(self) -> None:
        _check_mode("mode", self.mode, RAMP_MODES)
        if self.num_steps < 2:
            raise ValueError(f"Expected `num_steps >= 2`, got {self.num_steps!r}")
        if self.mode == "exponential" and (self.start <= 0 or self.end <= 0):
            raise ValueError(f"Expected positive bounds for an exponential ramp, got {self.start!r} and {self.end!r}")

    def __call__(self, step: int) -> float:
        return ramp(step, self.num_steps, self.start, self.end, self.mode)  # type: ignore[arg-type]

    def values(self) -> list[float]:
        return [self(i) for i in range(self.num_steps)]


# ----------------------------------------------------------------------------------------------------
# 1cycle (Smith & Topin 2018), ordered like torch.optim.lr_scheduler.OneCycleLR
# ----------------------------------------------------------------------------------------------------
def _anneal(start: float, end: float, pct: float, anneal: str) -> float:
    if anneal == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def _one_cycle_phases(total_steps: int, pct_start: float, three_phase: bool) -> list[tuple[float, int, int]]:
    """(end_step, start_key, end_key) per phase; keys index (initial, max, min) and momenta (max, base)."""
    if three_phase:
        return [
            (float(pct_start * total_steps) - 1, 0, 1),
            (float(2 * pct_start * total_steps) - 2, 1, 0),
            (total_steps - 1, 0, 2),
        ]
    return [(float(pct_start * total_steps) - 1, 0, 1), (total_steps - 1, 1, 2)]


def _one_cycle_interp(
    step: int, total_steps: int, pct_start: float, anneal: str, three_phase: bool, values: tuple, keys: str
) -> float:
    _check_mode("anneal", anneal, ONE_CYCLE_ANNEALS)
    if total_steps <= 0:
        raise ValueError(f"Expected a positive `total_steps`, got {total_steps!r}")
    if not 0.0 <= pct_start <= 1.0:
        raise ValueError(f"Expected `pct_start` in [0, 1], got {pct_start!r}")
    if step < 0 or step > total_steps:
        raise ValueError(f"Expected `step` in [0, {total_steps}], got {step!r}")
    phases = _one_cycle_phases(total_steps, pct_start, three_phase)
    start_step = 0.0
    for i, (end_step, start_key, end_key) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            span = end_step - start_step
            # torch divides by zero here (a zero-length phase); we treat the phase as finished.
            pct = (step - start_step) / span if span != 0 else 1.0
            if keys == "momentum":
                # lr keys (initial, max, min) map to momenta (max, base, max).
                start, end = values[(0, 1, 0)[start_key]], values[(0, 1, 0)[end_key]]
            else:
                start, end = values[start_key], values[end_key]
            return _anneal(start, end, pct, anneal)
        start_step = end_step
    raise AssertionError("unreachable")  # pragma: no cover


def one_cycle(
    step: int,
    total_steps: int,
    max_lr: float,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    pct_start: float = 0.3,
    anneal: Literal["cos", "linear"] = "cos",
    three_phase: bool = False,
) -> float:
    """The 1cycle learning rate at ``step``, identical to ``torch.optim.lr_scheduler.OneCycleLR``.

    Warm up from ``max_lr / div_factor`` to ``max_lr`` over ``pct_start * total_steps`` steps, then anneal
    to ``max_lr / div_factor / final_div_factor`` (two phases), or with ``three_phase=True`` go back down to
    the initial lr symmetrically before annealing to the minimum (Smith & Topin's original shape).

    Args:
        step: optimizer steps taken so far (0 ... ``total_steps``).
        total_steps: total optimizer steps of the cycle.
        max_lr: peak learning rate.
        div_factor: initial lr is ``max_lr / div_factor``.
        final_div_factor: final lr is ``initial_lr / final_div_factor``.
        pct_start: fraction of the steps spent warming up.
        anneal: ``"cos"`` or ``"linear"``.
        three_phase: use the symmetric three-phase shape.

    Raises:
        ValueError: for an unknown ``anneal``, ``pct_start`` outside [0, 1], a non-positive ``total_steps``
            or ``step`` outside [0, ``total_steps``].

    Example::

        >>> one_cycle(0, 100, max_lr=1.0, anneal="linear")
        0.04
    """
    initial = max_lr / div_factor
    values = (initial, max_lr, initial / final_div_factor)
    return _one_cycle_interp(step, total_steps, pct_start, anneal, three_phase, values, "lr")


def one_cycle_momentum(
    step: int,
    total_steps: int,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    pct_start: float = 0.3,
    anneal: Literal["cos", "linear"] = "cos",
    three_phase: bool = False,
) -> float:
    """Momentum matching :func:`one_cycle`: ``max_momentum`` when the lr is low, ``base_momentum`` at the peak.

    Args:
        step: optimizer steps taken so far.
        total_steps: total optimizer steps of the cycle.
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the start and end.
        pct_start: as in :func:`one_cycle`.
        anneal: as in :func:`one_cycle`.
        three_phase: as in :func:`one_cycle`.

    Raises:
        ValueError: as :func:`one_cycle`.

    Example::

        >>> one_cycle_momentum(29, 100, anneal="linear")
        0.85
    """
    values = (max_momentum, base_momentum)
    return _one_cycle_interp(step, total_steps, pct_start, anneal, three_phase, values, "momentum")


@dataclass(frozen=True)
class OneCycle:
    """Picklable 1cycle schedule: ``OneCycle(...)(step)`` is :func:`one_cycle`, ``.momentum(step)`` is
    :func:`one_cycle_momentum`.

    Args:
        total_steps: total optimizer steps.
        max_lr: peak learning rate.
        div_factor: initial lr is ``max_lr / div_factor``.
        final_div_factor: final lr is ``initial_lr / final_div_factor``.
        pct_start: fraction of steps spent warming up.
        anneal: ``"cos"`` or ``"linear"``.
        three_phase: symmetric three-phase shape.
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the ends.

    Raises:
        ValueError: for an unknown ``anneal``, ``pct_start`` outside [0, 1] or a non-positive ``total_steps``.

    Example::

        >>> OneCycle(100, max_lr=1.0)(99)
        4e-06
    """

    total_steps: int
    max_lr: float
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    pct_start: float = 0.3
    anneal: str = "cos"
    three_phase: bool = False
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def __post_init__(self) -> None:
        _check_mode("anneal", self.anneal, ONE_CYCLE_ANNEALS)
        if self.total_steps <= 0:
            raise ValueError(f"Expected a positive `total_steps`, got {self.total_steps!r}")
        if not 0.0 <= self.pct_start <= 1.0:
            raise ValueError(f"Expected `pct_start` in [0, 1], got {self.pct_start!r}")

    def __call__(self, step: int) -> float:
        return one_cycle(
            step,
            self.total_steps,
            self.max_lr,
            self.div_factor,
            self.final_div_factor,
            self.pct_start,
            self.anneal,  # type: ignore[arg-type]
            self.three_phase,
        )

    def momentum(self, step: int) -> float:
        return one_cycle_momentum(
            step,
            self.total_steps,
            self.base_momentum,
            self.max_momentum,
            self.pct_start,
            self.anneal,  # type: ignore[arg-type]
            self.three_phase,
        )
