import numpy as np
import pytest

from lightning_papers.lr_suggestion import (
    SUGGESTIONS,
    clr_bounds,
    minimum,
    smooth_ema,
    steepest,
    suggest,
    valley,
)

LRS = np.logspace(-6, 1, 71)  # 10 points per decade: 10**-6, 10**-5.9, ...


def _tanh_drop(center_log10: float, width: float = 0.5) -> np.ndarray:
    """A loss that falls from 3 to 1 around ``10**center_log10``; its steepest point is the center."""
    return 2.0 - np.tanh((np.log10(LRS) - center_log10) / width)


def _u_curve() -> np.ndarray:
    """Falls smoothly up to 1e-1, then explodes."""
    log = np.log10(LRS)
    return np.where(log <= -1, 3.0 - 0.3 * (log + 6), 1.5 + 5.0 * (log + 1) ** 2)


@pytest.mark.parametrize("center", [-4.0, -2.5, -1.0])
def test_steepest_finds_the_analytic_inflection(center):
    assert steepest(LRS, _tanh_drop(center)) == pytest.approx(10**center, rel=1e-9)


def test_steepest_ignores_nan_and_inf_points():
    loss = _tanh_drop(-3.0)
    loss[[5, 40, 60]] = [np.nan, np.inf, -np.inf]
    assert steepest(LRS, loss) == pytest.approx(1e-3, rel=1e-9)


def test_steepest_skip_start_and_end():
    loss = _tanh_drop(-3.0)
    loss[1] = -100.0  # a spurious cliff right at the start
    assert steepest(LRS, loss, skip_start=0) < 1e-5
    assert steepest(LRS, loss, skip_start=3) == pytest.approx(1e-3, rel=1e-9)
    # By default the first tenth is skipped: the early wobble of a smoothed curve is not the steepest part.
    assert steepest(LRS, loss) == pytest.approx(1e-3, rel=1e-9)


def test_steepest_ignores_a_fall_after_the_minimum():
    # a tanh descent to its floor at ~1e-2, a blow-up to 6, then a steep fall back to the uniform-prediction
    # loss: the shape a 40-step range test on digits gave (its steepest point was the sweep's end, 2.3)
    log = np.log10(LRS)
    loss = _tanh_drop(-3.0, width=0.3)
    loss = np.where(log > -1.5, loss + 5.0 * np.clip(log + 1.5, 0, None) ** 2, loss)
    loss[log > 0] = np.maximum(6.0 - 40.0 * log[log > 0], 2.3)
    lowest = int(np.argmin(loss))
    assert np.min(np.gradient(loss[lowest:], log[lowest:])) < np.min(np.gradient(loss[: lowest + 1], log[: lowest + 1]))
    assert steepest(LRS, loss) == pytest.approx(1e-3, rel=1e-9)


def test_clr_bounds_ignore_the_wobble_before_the_descent():
    """A loss that first rises a little (noise on the flat start) then falls: the bounds lie on the descent."""
    lrs = np.logspace(-4, 1, 51)
    loss = 2.0 - np.tanh(np.log10(lrs) + 1.0)  # falls around lr = 0.1 by 2 in all
    loss[2:8] += 0.6  # an early bump, bigger than a quarter of the improvement
    base, top = clr_bounds(lrs, loss)
    assert 1e-3 < base < 0.1 < top < 10.0


def test_minimum_is_lr_at_min_divided_by_ten():
    loss = _u_curve()
    assert minimum(LRS, loss) == pytest.approx(1e-2, rel=1e-9)
    assert minimum(LRS, loss, factor=1.0) == pytest.approx(1e-1, rel=1e-9)


def test_valley_is_in_the_middle_of_the_longest_descent():
    loss = _u_curve()
    # descent spans 1e-6 ... 1e-1, its log-midpoint is 10**-3.5
    assert valley(LRS, loss) == pytest.approx(10**-3.5, rel=1e-9)
    assert valley(LRS, loss, position=1.0) == pytest.approx(1e-1, rel=1e-9)


def test_valley_skips_a_short_early_dip():
    log = np.log10(LRS)
    loss = _u_curve()
    loss[log < -5] = 4.0 - 0.1 * np.arange((log < -5).sum())  # short dip, then a jump up
    loss[(log >= -5) & (log < -4.5)] = 10.0
    result = valley(LRS, loss)
    assert 1e-5 < result < 1e-1


def test_clr_bounds_on_loss_curve():
    loss = _tanh_drop(-3.0, width=0.4)
    loss[LRS > 1e-1] = np.linspace(1.5, 10, (LRS > 1e-1).sum())  # divergence after 1e-1
    base, peak = clr_bounds(LRS, loss)
    # 10 % of the drop is reached ~0.44 decades before the center, 90 % ~0.44 after it
    assert base == pytest.approx(10**-3.4, rel=0.3)
    assert peak == pytest.approx(10**-2.6, rel=0.3)
    assert base < 1e-3 < peak


def test_clr_bounds_prefers_accuracy_when_given():
    loss = np.full_like(LRS, 2.0)  # an uninformative loss
    log = np.log10(LRS)
    acc = np.clip((log + 4.0) / 2.0, 0.0, 1.0) * 0.8 + 0.1  # rises linearly from 1e-4 to 1e-2
    acc[log > -1] = 0.1  # collapses after 1e-1
    acc[::3] = np.nan  # measured only on some steps
    base, peak = clr_bounds(LRS, loss, acc)
    assert 1e-4 <= base <= 10**-3.6
    assert 10**-2.3 <= peak <= 1e-2


def test_clr_bounds_stops_where_the_curve_turns_ragged():
    loss = _tanh_drop(-3.0, width=0.4)
    spike = np.argmin(np.abs(np.log10(LRS) + 2.9))
    loss[spike] += 1.5  # a ragged setback just after the center, before 90 % of the drop
    base, peak = clr_bounds(LRS, loss)
    assert peak < LRS[spike]
    assert peak == LRS[spike - 1]
    assert base < peak


def test_clr_bounds_base_falls_back_to_max_over_four():
    loss = np.array([3.0, 3.0, 3.0, 1.0, 1.0, 5.0, 9.0])
    lrs = np.logspace(-4, 2, 7)
    base, peak = clr_bounds(lrs, loss)
    assert peak == lrs[3]
    assert base == pytest.approx(peak / 4)


@pytest.mark.parametrize("fn", [steepest, valley, minimum, clr_bounds])
def test_too_few_finite_points_warn_and_return_none(fn):
    lrs = np.logspace(-4, 0, 8)
    loss = np.array([1.0, np.nan, 0.5, np.inf, np.nan, 0.4, np.nan, np.nan])
    with pytest.warns(UserWarning, match="finite points"):
        assert fn(lrs, loss) is None


def test_clr_bounds_never_improving_warns():
    with pytest.warns(UserWarning, match="never improves"):
        assert clr_bounds(np.logspace(-4, 0, 10), np.linspace(1, 5, 10)) is None


def test_smooth_ema_is_bias_corrected():
    raw = [2.3, 2.1, 2.2, 1.9, 1.5]
    smoothed = smooth_ema(raw, beta=0.98)
    assert smoothed[0] == pytest.approx(raw[0], rel=1e-12)  # not ~half of it
    avg = 0.0
    for i, value in enumerate(raw):
        avg = 0.98 * avg + 0.02 * value
        assert smoothed[i] == pytest.approx(avg / (1 - 0.98 ** (i + 1)), rel=1e-12)
    assert np.array_equal(smooth_ema(raw, beta=0.0), np.array(raw))


def test_smooth_ema_passes_nan_through():
    smoothed = smooth_ema([1.0, float("nan"), 3.0], beta=0.5)
    assert smoothed[0] == 1.0 and np.isnan(smoothed[1])
    assert smoothed[2] == pytest.approx((0.25 + 1.5) / 0.75)


def test_suggest_dispatch():
    loss = _u_curve()
    for name, fn in SUGGESTIONS.items():
        assert suggest(name, LRS, loss) == fn(LRS, loss)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: suggest("fastest", LRS, _u_curve()), "Expected `method` to be one of"),
        (lambda: smooth_ema([1.0], beta=1.0), r"Expected `beta` in \[0, 1\)"),
        (lambda: steepest(LRS, _u_curve()[:-1]), "Expected `lrs` and `losses` of the same length"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
