"""The package's one set of argument checks (lightning_papers._validation)."""

import math

import numpy as np
import pytest

from lightning_papers import _validation as v


@pytest.mark.parametrize("value", [0, -1, 1.0, True, "3", None])
def test_positive_int_refuses(value):
    with pytest.raises(ValueError, match=rf"^Expected `k` to be a positive integer, got {value!r}$"):
        v.positive_int("k", value)


def test_positive_int_accepts_numpy_and_returns_plain_int():
    out = v.positive_int("k", np.int64(3))
    assert out == 3 and type(out) is int


def test_integer_bounds_and_fix_in_message():
    assert v.integer("n", 0, minimum=0) == 0
    with pytest.raises(ValueError, match=r"^Expected `n` to be an integer in \[2, 4\], got 5: pass 3$"):
        v.integer("n", 5, 2, 4, fix="pass 3")
    with pytest.raises(ValueError, match=r"an integer >= 2, got 1$"):
        v.integer("n", 1, minimum=2)
    assert v.optional_positive_int("n", None) is None


@pytest.mark.parametrize("value", [0, -1e-3, math.inf, math.nan, False, "1"])
def test_positive_real_refuses(value):
    with pytest.raises(ValueError, match=r"^Expected `lr` to be a positive finite number, got "):
        v.positive_real("lr", value)


def test_real_interval_edges():
    assert v.real("p", 1, 0, 1) == 1.0 and type(v.real("p", 1, 0, 1)) is float
    with pytest.raises(ValueError, match=r"a number in \[0, 1\), got 1$"):
        v.real("p", 1, 0, 1, high_open=True)


def test_one_of_and_flag():
    assert v.one_of("mode", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"^Expected `mode` to be one of \('a', 'b'\), got 'c'$"):
        v.one_of("mode", "c", ("a", "b"))
    with pytest.raises(ValueError, match="one of"):
        v.one_of("factor", True, (1, 2))
    assert v.flag("x", False) is False
    with pytest.raises(ValueError, match=r"^Expected `x` to be True or False, got 1$"):
        v.flag("x", 1)


def test_renamed_warns_naming_the_new_spelling_and_refuses_both():
    assert v.renamed("mode", None, "spacing", "linear", "exponential") == "linear"
    with pytest.warns(DeprecationWarning, match=r"^`mode` is deprecated: pass `spacing='linear'`$"):
        assert v.renamed("mode", "linear", "spacing", "exponential", "exponential") == "linear"
    with pytest.raises(ValueError, match=r"^Expected `spacing` to be given once .*got 'linear': drop `mode='x'`$"):
        v.renamed("mode", "x", "spacing", "linear", "exponential")
