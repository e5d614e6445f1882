"""Learning-rate and momentum schedules as pure functions of the optimizer step.

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186): the
``triangular``, ``triangular2`` and ``exp_range`` policies. Smith & Topin, Super-Convergence: Very Fast
Training of Neural Networks Using Large Learning Rates, 2018 (arXiv 1708.07120): the 1cycle policy.

One formula per schedule, a function of the (0-based) optimizer step (:func:`cyclical`, :func:`one_cycle`,
:func:`ramp` and their momenta), and a picklable frozen dataclass binding its parameters (:class:`Cyclical`,
:class:`OneCycle`, :class:`Ramp`). Where the values go is core too (timm's ``Scheduler.update_groups``):
:func:`apply_schedule` writes them into an optimizer's param groups before each ``optimizer.step()`` of a plain loop,
:func:`read_lrs` / :func:`read_momenta` read them back. No Lightning here.

The arithmetic is ordered exactly like ``torch.optim.lr_scheduler.CyclicLR`` / ``OneCycleLR`` so that the
sequences agree bit for bit (the tests compare them with ``==``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import InitVar, dataclass, replace
from typing import Any, Literal, get_args

from typing_extensions import Self

from lightning_papers._validation import integer, one_of, positive_int, positive_real, real, renamed

__all__ = [
    "CYCLICAL_POLICIES", "ONE_CYCLE_ANNEALS", "RAMP_SPACINGS", "Cyclical", "OneCycle", "Ramp", "apply_schedule",
    "cyclical", "cyclical_momentum", "one_cycle", "one_cycle_momentum", "one_cycle_pct_start", "one_cycle_peaks",
    "owns_learning_rate", "param_groups", "ramp", "read_lrs", "read_momenta", "steps_from_epochs", "write_groups",
]

Policy = Literal["triangular", "triangular2", "exp_range"]
Anneal = Literal["cos", "linear"]
Spacing = Literal["exponential", "linear"]
CYCLICAL_POLICIES: tuple[Policy, ...] = get_args(Policy)
ONE_CYCLE_ANNEALS: tuple[Anneal, ...] = get_args(Anneal)
RAMP_SPACINGS: tuple[Spacing, ...] = get_args(Spacing)
_RENAMED = {"CYCLICAL_MODES": "CYCLICAL_POLICIES", "RAMP_MODES": "RAMP_SPACINGS"}  # deprecated in 0.3


def __getattr__(name: str) -> Any:
    if name in _RENAMED:
        warnings.warn(f"`schedules.{name}` is deprecated: use `{_RENAMED[name]}`", DeprecationWarning, stacklevel=2)
        return globals()[_RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------------
# Cyclical learning rates (Smith 2017)
# ----------------------------------------------------------------------------------------------------

def cyclical(step: int, base_lr: float, max_lr: float, step_size_up: float, step_size_down: float | None = None,
             policy: Policy = "triangular", gamma: float = 1.0, *, mode: str | None = None) -> float:
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
        policy: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: decay base of ``exp_range``.
        mode: deprecated name of ``policy``.

    Raises:
        ValueError: for an unknown ``policy``.

    Examples:
        >>> cyclical(2000, base_lr=0.001, max_lr=0.006, step_size_up=2000)
        0.006
    """
    policy = one_of("policy", renamed("mode", mode, "policy", policy, "triangular"), CYCLICAL_POLICIES)
    up = float(step_size_up)
    total = up + (float(step_size_down) if step_size_down is not None else up)
    ratio = up / total
    cycle = math.floor(1 + step / total)  # counted from 1
    x = 1.0 + step / total - cycle
    # Equal to the paper's max(0, 1 - |t/step_size - 2*cycle + 1|) for symmetric cycles; written as
    # torch's CyclicLR writes it so that both give identical floats (and asymmetric cycles work).
    height = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    if policy == "triangular":
        scale = 1.0
    elif policy == "triangular2":
        # 1 / 2**(cycle - 1), exactly, without overflowing after ~1000 cycles.
        scale = math.ldexp(1.0, 1 - cycle)
    else:
        scale = gamma**step
    return base_lr + (max_lr - base_lr) * height * scale


def cyclical_momentum(step: int, base_momentum: float, max_momentum: float, step_size_up: float,
                      step_size_down: float | None = None, policy: Policy = "triangular", gamma: float = 1.0) -> float:
    """Momentum cycling opposite to :func:`cyclical`: ``max_momentum`` when the lr is at ``base_lr``.

    Args:
        step: optimizer steps taken so far.
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the lr trough.
        step_size_up: as in :func:`cyclical`.
        step_size_down: as in :func:`cyclical`.
        policy: as in :func:`cyclical`.
        gamma: as in :func:`cyclical`.

    Raises:
        ValueError: for an unknown ``policy``.

    Examples:
        >>> cyclical_momentum(10, base_momentum=0.8, max_momentum=0.9, step_size_up=10)
        0.8
    """
    # max + (base - max) * h * s: bit for bit torch's max - (max - base) * h * s (negation is exact)
    return cyclical(step, max_momentum, base_momentum, step_size_up, step_size_down, policy, gamma)


def _per_group(value: float | Sequence[float], name: str) -> tuple[float, ...]:
    """A number or a non-empty sequence of numbers, as a tuple of floats."""
    values = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (value,)
    if not values:
        raise ValueError(f"Expected `{name}` to be a number or a non-empty sequence of numbers, got {value!r}")
    return tuple(real(name, v) for v in values)


def _broadcast(*columns: tuple[float, ...]) -> list[tuple[float, ...]]:
    """Rows of the columns, a one-element column repeated to the others' length."""
    n = max(len(c) for c in columns)
    return list(zip(*(c * n if len(c) == 1 else c for c in columns)))


class _Schedule:
    """What the schedule objects share: a checkpoint-friendly dict form."""

    _old_keys: dict[str, str] = {}  # keys of checkpoints written before a field was renamed

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (tuples as lists), for checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}  # the fields: all flat

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The schedule :meth:`to_dict` described (also one written before a field was renamed)."""
        return cls(**{cls._old_keys.get(k, k): tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class Cyclical(_Schedule):
    """Smith's cyclical schedule as an object: ``Cyclical(...)(step)`` is :func:`cyclical`, ``.momentum(step)``
    is :func:`cyclical_momentum` with ``base_momentum``/``max_momentum``.

    Args:
        base_lr: lower lr bound, a number or one per param group.
        max_lr: upper lr bound, a number or one per param group (a single value of either is repeated).
        step_size_up: steps from ``base_lr`` to ``max_lr``.
        step_size_down: steps back down (defaults to ``step_size_up``).
        policy: ``"triangular"``, ``"triangular2"`` or ``"exp_range"``.
        gamma: decay base of ``exp_range``.
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the lr trough.
        mode: deprecated name of ``policy``.

    Raises:
        ValueError: for an unknown ``policy``, non-positive step sizes or learning rates, ``base_lr > max_lr``,
            per-group sequences of different lengths, or momenta outside ``0 <= base <= max <= 1``.

    Examples:
        >>> Cyclical(0.001, 0.006, step_size_up=2000)(1000)
        0.0035
        >>> Cyclical((0.001, 0.01), 0.02, step_size_up=10).lrs(10)
        [0.02, 0.02]
    """

    base_lr: float | tuple[float, ...]
    max_lr: float | tuple[float, ...]
    step_size_up: float
    step_size_down: float | None = None
    policy: Policy = "triangular"
    gamma: float = 1.0
    base_momentum: float = 0.8
    max_momentum: float = 0.9
    mode: InitVar[str | None] = None
    _old_keys = {"mode": "policy"}

    def __post_init__(self, mode: str | None) -> None:
        object.__setattr__(self, "policy", renamed("mode", mode, "policy", self.policy, "triangular", stacklevel=4))
        one_of("policy", self.policy, CYCLICAL_POLICIES)
        positive_real("step_size_up", self.step_size_up)
        if self.step_size_down is not None:
            positive_real("step_size_down", self.step_size_down)
        base, peak = _per_group(self.base_lr, "base_lr"), _per_group(self.max_lr, "max_lr")
        if len(base) != len(peak) and 1 not in (len(base), len(peak)):
            raise ValueError(f"Expected `base_lr` and `max_lr` of the same length, got {len(base)} and {len(peak)}")
        if any(b > m for b, m in _broadcast(base, peak)):
            raise ValueError(f"Expected `base_lr <= max_lr`, got {self.base_lr!r} > {self.max_lr!r}")
        positive_real("gamma", self.gamma)
        if not 0.0 <= self.base_momentum <= self.max_momentum <= 1.0:
            raise ValueError(f"Expected `0 <= base_momentum <= max_momentum <= 1`, got {self.base_momentum!r} and "
                             f"{self.max_momentum!r}")

    @property
    def groups(self) -> int:
        """Param groups the bounds describe (1 when both are single values, which fit any number)."""
        return len(_broadcast(_per_group(self.base_lr, "base_lr"), _per_group(self.max_lr, "max_lr")))

    def lrs(self, step: int) -> list[float]:
        """One learning rate per param group at ``step``."""
        pairs = _broadcast(_per_group(self.base_lr, "base_lr"), _per_group(self.max_lr, "max_lr"))
        return [cyclical(step, b, m, self.step_size_up, self.step_size_down, self.policy, self.gamma)
                for b, m in pairs]

    def __call__(self, step: int) -> float | list[float]:
        """The learning rate at ``step``: a number, or a list when the bounds are per param group."""
        lrs = self.lrs(step)
        return lrs[0] if len(lrs) == 1 and not isinstance(self.max_lr, tuple) else lrs

    def momentum(self, step: int) -> float:
        """The momentum (or Adam's beta1) at ``step``."""
        return cyclical_momentum(step, self.base_momentum, self.max_momentum, self.step_size_up,
                                 self.step_size_down, self.policy, self.gamma)

    def cycle_length(self) -> float:
        """Optimizer steps of one whole cycle (up and down)."""
        return float(self.step_size_up) + float(self.step_size_down or self.step_size_up)


# ----------------------------------------------------------------------------------------------------
# Ramps for the LR range test
# ----------------------------------------------------------------------------------------------------
def ramp(step: int, num_steps: int, start: float, end: float, spacing: Spacing = "exponential",
         *, mode: str | None = None) -> float:
    """Monotone ramp from ``start`` (step 0) to ``end`` (step ``num_steps - 1``), both hit exactly.

    Args:
        step: 0 ... ``num_steps - 1`` (later steps stay at ``end``).
        num_steps: number of points, at least 2.
        start: first value (> 0 for ``"exponential"``).
        end: last value (> 0 for ``"exponential"``).
        spacing: ``"exponential"`` (evenly spaced in log) or ``"linear"``.
        mode: deprecated name of ``spacing``.

    Raises:
        ValueError: for an unknown ``spacing``, ``num_steps < 2`` or non-positive exponential bounds.

    Examples:
        >>> [ramp(i, 3, 1e-3, 1e-1) for i in range(3)]
        [0.001, 0.01, 0.1]
    """
    spacing = one_of("spacing", renamed("mode", mode, "spacing", spacing, "exponential"), RAMP_SPACINGS)
    integer("num_steps", num_steps, minimum=2)
    if spacing == "exponential":
        positive_real("start", start, fix="an exponential ramp needs positive bounds")
        positive_real("end", end, fix="an exponential ramp needs positive bounds")
    if step <= 0:
        return float(start)
    if step >= num_steps - 1:
        return float(end)
    frac = step / (num_steps - 1)
    if spacing == "linear":
        return start + (end - start) * frac
    return start * (end / start) ** frac


@dataclass(frozen=True)
class Ramp:
    """Picklable :func:`ramp`: ``Ramp(1e-7, 10.0, 100)(step)``.

    Args:
        start: first value.
        end: last value.
        num_steps: number of points.
        spacing: ``"exponential"`` or ``"linear"``.
        mode: deprecated name of ``spacing``.

    Raises:
        ValueError: as :func:`ramp`, eagerly.

    Examples:
        >>> Ramp(1.0, 100.0, 3).values()
        [1.0, 10.0, 100.0]
    """

    start: float
    end: float
    num_steps: int
    spacing: Spacing = "exponential"
    mode: InitVar[str | None] = None

    def __post_init__(self, mode: str | None) -> None:
        object.__setattr__(self, "spacing", renamed("mode", mode, "spacing", self.spacing, "exponential", stacklevel=4))
        self(0)  # the checks, eagerly

    def __call__(self, step: int) -> float:
        return ramp(step, self.num_steps, self.start, self.end, self.spacing)

    def values(self) -> list[float]:
        """Every value of the ramp, in order."""
        return [self(i) for i in range(self.num_steps)]


# ----------------------------------------------------------------------------------------------------
# 1cycle (Smith & Topin 2018), ordered like torch.optim.lr_scheduler.OneCycleLR
# ----------------------------------------------------------------------------------------------------
def _anneal(start: float, end: float, pct: float, anneal: Anneal) -> float:
    if anneal == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return (end - start) * pct + start


def _one_cycle_phases(total_steps: int, pct_start: float, three_phase: bool) -> list[tuple[float, int, int]]:
    """(end_step, start_key, end_key) per phase; keys index the lrs (initial, max, min) or momenta (max, base, max)."""
    if three_phase:
        return [
            (float(pct_start * total_steps) - 1, 0, 1),
            (float(2 * pct_start * total_steps) - 2, 1, 0),
            (total_steps - 1, 0, 2),
        ]
    return [(float(pct_start * total_steps) - 1, 0, 1), (total_steps - 1, 1, 2)]


def _one_cycle_interp(step: float, total_steps: int, pct_start: float, anneal: Anneal, three_phase: bool,
                      values: tuple[float, float, float]) -> float:
    one_of("anneal", anneal, ONE_CYCLE_ANNEALS)
    positive_int("total_steps", total_steps)
    real("pct_start", pct_start, 0, 1)
    real("step", step, 0, total_steps)
    phases = _one_cycle_phases(total_steps, pct_start, three_phase)
    start_step = 0.0
    for i, (end_step, start_key, end_key) in enumerate(phases):
        if step <= end_step or i == len(phases) - 1:
            span = end_step - start_step
            # torch divides by zero here (a zero-length phase); we treat the phase as finished.
            pct = (step - start_step) / span if span != 0 else 1.0
            return _anneal(values[start_key], values[end_key], pct, anneal)
        start_step = end_step
    raise AssertionError("unreachable")  # pragma: no cover


def one_cycle(step: float, total_steps: int, max_lr: float, div_factor: float = 25.0, final_div_factor: float = 1e4,
              pct_start: float = 0.3, anneal: Anneal = "cos", three_phase: bool = False) -> float:
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

    Examples:
        >>> one_cycle(0, 100, max_lr=1.0, anneal="linear")
        0.04
    """
    initial = max_lr / div_factor
    values = (initial, max_lr, initial / final_div_factor)
    return _one_cycle_interp(step, total_steps, pct_start, anneal, three_phase, values)


def one_cycle_momentum(step: float, total_steps: int, base_momentum: float = 0.85, max_momentum: float = 0.95,
                       pct_start: float = 0.3, anneal: Anneal = "cos",
                       three_phase: bool = False) -> float:
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

    Examples:
        >>> one_cycle_momentum(29, 100, anneal="linear")
        0.85
    """
    values = (max_momentum, base_momentum, max_momentum)
    return _one_cycle_interp(step, total_steps, pct_start, anneal, three_phase, values)


def one_cycle_pct_start(three_phase: bool, pct_start: float | None = None,
                        annihilation_pct: float | None = None) -> float:
    """The warm-up fraction of a 1cycle from the ways one can give it.

    Smith & Topin's shape (``three_phase``) goes up for ``pct_start`` of the steps, down again for as long, and
    spends the rest, ``annihilation_pct = 1 - 2 pct_start``, annealing far below the start. Either fraction can
    be given (both if they agree). Defaults: 0.45 with ``three_phase`` (a 10% annihilation), else 0.3 (torch's).

    Raises:
        ValueError: for an ``annihilation_pct`` without ``three_phase`` or outside [0, 1), fractions that
            disagree, or a ``pct_start`` outside (0, 0.5] (``three_phase``) or (0, 1).

    Examples:
        >>> one_cycle_pct_start(True, annihilation_pct=0.2)
        0.4
    """
    if annihilation_pct is not None:
        if not three_phase:
            raise ValueError(f"Expected `annihilation_pct=None` with `three_phase=False`, got {annihilation_pct!r}")
        real("annihilation_pct", annihilation_pct, 0, 1, high_open=True)
        if pct_start is not None and abs(2 * pct_start + annihilation_pct - 1.0) > 1e-9:
            raise ValueError(
                f"Expected `2 * pct_start + annihilation_pct == 1`, got {pct_start!r} and {annihilation_pct!r}"
            )
        pct_start = (1.0 - annihilation_pct) / 2.0 if pct_start is None else pct_start
    if pct_start is None:
        pct_start = 0.45 if three_phase else 0.3
    return real("pct_start", pct_start, 0, 0.5 if three_phase else 1, low_open=True, high_open=not three_phase,
                fix=f"the range with three_phase={three_phase}")


@dataclass(frozen=True)
class OneCycle(_Schedule):
    """The 1cycle schedule as an object: ``OneCycle(...)(step)`` is :func:`one_cycle`, ``.momentum(step)`` is
    :func:`one_cycle_momentum`, and a run whose length changes midway can stretch the rest of the cycle.

    Args:
        total_steps: optimizer steps of the cycle.
        max_lr: peak learning rate, a number or one per param group.
        div_factor: initial lr is ``max_lr / div_factor``.
        final_div_factor: final lr is ``initial_lr / final_div_factor``.
        pct_start: fraction of steps spent warming up; ``None`` resolves with ``annihilation_pct`` as
            :func:`one_cycle_pct_start` does (0.45 with ``three_phase``, else 0.3).
        anneal: ``"cos"`` or ``"linear"``.
        three_phase: Smith & Topin's symmetric shape with a final annihilation phase.
        base_momentum: momentum at the lr peak.
        max_momentum: momentum at the ends.
        annihilation_pct: with ``three_phase``, the fraction of the final phase instead of ``pct_start``.
        run_steps: optimizer steps the run spreads the cycle over (default ``total_steps``); see :meth:`stretched`.
        anchor_step: step from which the cycle is stretched.
        anchor_position: the cycle's position at ``anchor_step``.

    Raises:
        ValueError: for an unknown ``anneal``, bad fractions (see :func:`one_cycle_pct_start`), non-positive
            ``total_steps``, learning rates or factors, or momenta outside ``0 <= base <= max <= 1``.

    Examples:
        >>> OneCycle(100, max_lr=1.0)(99)
        4e-06
        >>> OneCycle(10, max_lr=1.0, three_phase=True).pct_start
        0.45
    """

    total_steps: int
    max_lr: float | tuple[float, ...]
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    pct_start: float | None = None
    anneal: Anneal = "cos"
    three_phase: bool = False
    base_momentum: float = 0.85
    max_momentum: float = 0.95
    annihilation_pct: float | None = None
    run_steps: int | None = None
    anchor_step: int = 0
    anchor_position: float = 0.0

    def __post_init__(self) -> None:
        one_of("anneal", self.anneal, ONE_CYCLE_ANNEALS)
        positive_int("total_steps", self.total_steps)
        for peak in _per_group(self.max_lr, "max_lr"):
            positive_real("max_lr", peak)
        positive_real("div_factor", self.div_factor)
        positive_real("final_div_factor", self.final_div_factor)
        if self.pct_start is not None:
            real("pct_start", self.pct_start, 0, 1)
        if self.pct_start is None or self.annihilation_pct is not None:
            object.__setattr__(self, "pct_start",
                               one_cycle_pct_start(self.three_phase, self.pct_start, self.annihilation_pct))
        if not 0.0 <= self.base_momentum <= self.max_momentum <= 1.0:
            raise ValueError(f"Expected `0 <= base_momentum <= max_momentum <= 1`, got {self.base_momentum!r} and "
                             f"{self.max_momentum!r}")
        if self.run_steps is not None:
            positive_int("run_steps", self.run_steps)

    @property
    def run_total(self) -> int:
        """Optimizer steps the run plans to take (the cycle ends at the last of them)."""
        return self.run_steps if self.run_steps is not None else self.total_steps

    @property
    def _pct_start(self) -> float:
        assert self.pct_start is not None, "__post_init__ sets it"
        return self.pct_start

    def position(self, step: int) -> float:
        """Position in the cycle (0 ... ``total_steps - 1``) of optimizer step ``step``; the end past the run."""
        last = self.total_steps - 1
        if step >= self.run_total:
            return last
        if self.anchor_step == 0 and self.anchor_position == 0.0 and self.run_total == self.total_steps:
            return step  # the plain case: exactly torch's step counter
        remaining = self.run_total - 1 - self.anchor_step
        if remaining <= 0:
            return last
        return min(last, self.anchor_position + (step - self.anchor_step) * (last - self.anchor_position) / remaining)

    def stretched(self, step: int, run_steps: int) -> OneCycle:
        """The same cycle with its rest, from ``step`` on, spread over a run of ``run_steps`` steps (a resumed run
        whose length changed continues where it was instead of jumping)."""
        position = float(self.position(step))
        return replace(self, run_steps=int(run_steps), anchor_step=int(step), anchor_position=position)

    def lrs(self, step: int) -> list[float]:
        """One learning rate per param group at ``step``."""
        pos = self.position(step)
        return [one_cycle(pos, self.total_steps, peak, self.div_factor, self.final_div_factor,
                          self._pct_start, self.anneal, self.three_phase)
                for peak in _per_group(self.max_lr, "max_lr")]

    def __call__(self, step: int) -> float | list[float]:
        """The learning rate at ``step``: a number, or a list when ``max_lr`` is per param group."""
        return self.lrs(step) if isinstance(self.max_lr, tuple) else self.lrs(step)[0]

    def momentum(self, step: int) -> float:
        """The momentum (or Adam's beta1) at ``step``."""
        return one_cycle_momentum(self.position(step), self.total_steps, self.base_momentum,
                                  self.max_momentum, self._pct_start, self.anneal, self.three_phase)

    def shape(self) -> dict[str, Any]:
        """What fixes the cycle's form (not its length or peak): to compare a checkpoint's with the callback's."""
        return {"div_factor": self.div_factor, "final_div_factor": self.final_div_factor,
                "three_phase": self.three_phase, "pct_start": self.pct_start, "anneal": self.anneal}


Schedule = Cyclical | OneCycle


# ----------------------------------------------------------------------------------------------------
# Param groups: where a schedule's values go (timm's Scheduler.update_groups, fastai's ParamScheduler)
# ----------------------------------------------------------------------------------------------------
def param_groups(target: Any) -> list[MutableMapping[str, Any]]:
    """Every param group of ``target``: an optimizer, a sequence of optimizers (their groups in order) or of groups."""
    if hasattr(target, "param_groups"):
        return list(target.param_groups)
    items: Iterable[Any] = target
    return [g for item in items for g in (item.param_groups if hasattr(item, "param_groups") else [item])]


def read_lrs(target: Any, initial: bool = False) -> list[float]:
    """Each param group's learning rate (see :func:`param_groups`); with ``initial``, the ``initial_lr`` a torch
    scheduler recorded where there is one (it may have scaled ``lr`` already, e.g. ``LinearLR``)."""
    return [float(g.get("initial_lr", g["lr"]) if initial else g["lr"]) for g in param_groups(target)]


def read_momenta(target: Any) -> list[float | None]:
    """Each param group's momentum: Adam-like ``betas[0]``, else SGD's ``momentum``; ``None`` when it has neither."""
    return [float(g["betas"][0]) if "betas" in g else float(g["momentum"]) if "momentum" in g else None
            for g in param_groups(target)]


def write_groups(target: Any, lrs: float | Sequence[float], momentum: float | None = None,
                 cycled: Sequence[bool] | None = None, initial: bool = False) -> None:
    """Set each param group's ``lr`` (one value for all, or one per group) and, with a ``momentum``, its momentum or
    Adam's beta1 where ``cycled`` (default: every group that has one); ``initial`` also sets ``initial_lr``
    where a torch scheduler recorded one.

    Raises:
        ValueError: for a number of learning rates that is neither 1 nor the number of groups.
    """
    groups = param_groups(target)
    values = _per_group(lrs, "lrs")
    if len(values) not in (1, len(groups)):
        raise ValueError(f"Expected one learning rate per param group ({len(groups)}), got {len(values)}")
    for k, group in enumerate(groups):
        group["lr"] = values[k if len(values) > 1 else 0]
        if initial and "initial_lr" in group:
            group["initial_lr"] = group["lr"]
        if momentum is None or (cycled is not None and not cycled[k]):
            continue
        if "betas" in group:
            group["betas"] = (momentum, *group["betas"][1:])
        elif "momentum" in group:
            group["momentum"] = momentum


def apply_schedule(target: Any, schedule: Schedule, step: int, cycled: Sequence[bool] | None = None) -> None:
    """Set the param groups of ``target`` to ``schedule`` at optimizer step ``step``: its ``lrs(step)`` and its
    ``momentum(step)`` where ``cycled`` (see :func:`write_groups`; all ``False``: the lr only). Call it before each
    ``optimizer.step()`` of a plain PyTorch loop.

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0, momentum=0.9)
        >>> apply_schedule(opt, OneCycle(100, max_lr=1.0, anneal="linear"), 0)
        >>> read_lrs(opt), read_momenta(opt)
        ([0.04], [0.95])
    """
    momentum = schedule.momentum(step) if cycled is None or any(cycled) else None
    write_groups(target, schedule.lrs(step), momentum, cycled)


def one_cycle_peaks(max_lr: float, initial_lrs: Sequence[float]) -> tuple[float, ...]:
    """Per-group 1cycle peaks that keep the optimizer's lr ratios: the group with the largest initial lr peaks at
    ``max_lr``, a group at a tenth of it at a tenth of ``max_lr``.

    Examples:
        >>> one_cycle_peaks(2.0, [0.2, 0.1])
        (2.0, 1.0)
    """
    top = max(initial_lrs, default=0.0)
    return tuple(max_lr * (lr / top) if top > 0 else float(max_lr) for lr in initial_lrs)


def steps_from_epochs(epochs: float, batches_per_epoch: int | float, accumulate: int = 1) -> int:
    """Optimizer steps (at least 1) in ``epochs`` epochs of ``batches_per_epoch`` batches with ``accumulate`` batches
    per step (a partial last step of an epoch counts as one).

    Examples:
        >>> steps_from_epochs(2.5, 10, accumulate=4)
        8
    """
    batches = positive_int("batches_per_epoch", batches_per_epoch, fix="an epoch of unknown length: count in steps")
    per_epoch = -(-batches // positive_int("accumulate", accumulate))
    return max(1, round(positive_real("epochs", epochs) * per_epoch))


def owns_learning_rate(callbacks: Iterable[object]) -> bool:
    """True when one of ``callbacks`` drives the learning rate while training runs: schedule callbacks
    (``CyclicalLR``, ``SuperConvergence``) set the class attribute ``owns_learning_rate = True``, and
    ``ImageClassifier.configure_optimizers`` then returns a bare optimizer, so no second scheduler fights them.

    Examples:
        >>> class Schedule:
        ...     owns_learning_rate = True
        >>> owns_learning_rate([object(), Schedule()])
        True
    """
    return any(getattr(cb, "owns_learning_rate", False) for cb in callbacks)
