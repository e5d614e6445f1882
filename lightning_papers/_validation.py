"""Argument checks shared by the whole package, with one message style.

Every check raises ``ValueError`` (``TypeError`` never: a wrong type and a wrong value read the same to a user)
with one line: the argument's name, what was expected, the value it got, and, where one is known, the fix.
Each returns the value in its canonical type, so a caller writes ``self.k = positive_int("k", k)``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Collection
from typing import Any, TypeVar

T = TypeVar("T")


def _fail(name: str, expected: str, value: object, fix: str | None) -> ValueError:
    return ValueError(f"Expected `{name}` to be {expected}, got {value!r}" + (f": {fix}" if fix else ""))


def integer(name: str, value: Any, minimum: int | None = None, maximum: int | None = None, *,
            fix: str | None = None) -> int:
    """``value`` as a plain ``int``: any ``numbers.Integral`` (numpy's too) but a bool, within the bounds."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and (minimum is not None and int(value) < minimum or maximum is not None and int(value) > maximum):
        ok = False
    if not ok:
        if minimum is not None and maximum is not None:
            expected = f"an integer in [{minimum}, {maximum}]"
        elif minimum == 1:
            expected = "a positive integer"
        elif minimum is not None:
            expected = f"an integer >= {minimum}"
        elif maximum is not None:
            expected = f"an integer <= {maximum}"
        else:
            expected = "an integer"
        raise _fail(name, expected, value, fix)
    return int(value)


def positive_int(name: str, value: Any, *, fix: str | None = None) -> int:
    """The one "positive integer, not a bool" check of the package."""
    return integer(name, value, minimum=1, fix=fix)


def optional_positive_int(name: str, value: Any, *, fix: str | None = None) -> int | None:
    """``None`` or a positive integer."""
    return None if value is None else integer(name, value, minimum=1, fix=fix)


def real(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
         high_open: bool = False, fix: str | None = None) -> float:
    """``value`` as a finite ``float`` (a real number but a bool) in the interval from ``low`` to ``high``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        if low == 0 and low_open and high == math.inf:
            expected = "a positive finite number"
        elif low == 0 and high == math.inf:
            expected = "a non-negative finite number"
        elif low == -math.inf and high == math.inf:
            expected = "a finite number"
        else:
            expected = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise _fail(name, expected, value, fix)
    return float(value)


def positive_real(name: str, value: Any, *, fix: str | None = None) -> float:
    """A finite number > 0."""
    return real(name, value, 0.0, low_open=True, fix=fix)


def one_of(name: str, value: T, supported: Collection[Any], *, fix: str | None = None) -> T:
    """``value`` when it is one of ``supported`` (a bool is never taken for 0 or 1)."""
    if isinstance(value, bool) and not any(isinstance(s, bool) for s in supported) or value not in supported:
        raise _fail(name, f"one of {tuple(supported)}", value, fix)
    return value


def flag(name: str, value: Any, *, fix: str | None = None) -> bool:
    """A real bool (``0``/``1`` or a string are refused: they usually mean a misplaced argument)."""
    if not isinstance(value, bool):
        raise _fail(name, "True or False", value, fix)
    return value


def renamed(old: str, old_value: Any, new: str, new_value: T, default: T, *, stacklevel: int = 3) -> T:
    """The value of an argument renamed from ``old`` to ``new`` (accepted one release): ``new_value``, or, when the
    caller gave ``old_value`` (not ``None``), that one with a ``DeprecationWarning`` naming ``new``.

    Raises:
        ValueError: when both are given, with different values.
    """
    if old_value is None:
        return new_value
    if new_value != default and new_value != old_value:
        raise _fail(new, f"given once (`{old}` is its deprecated name)", new_value, f"drop `{old}={old_value!r}`")
    warnings.warn(f"`{old}` is deprecated: pass `{new}={old_value!r}`", DeprecationWarning, stacklevel=stacklevel)
    return old_value
