"""The fidelity method of ``benchmarks/_fidelity.py`` (issue 25): the per-seed stratified train / validation / test
split, the paired t-interval and the written verdict rule, against values computed by hand."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

import _fidelity as fid  # noqa: E402


def test_paired_interval_by_hand():
    # diffs 0.1, 0.3, 0.2 (a - b): mean 0.2, sd 0.1, se 0.1 / sqrt(3) = 0.057735, t(0.975, 2) = 4.302653
    d = fid.paired_interval([0.9, 0.8, 0.7], [0.8, 0.5, 0.5])
    assert d.n == 3
    assert d.mean == pytest.approx(0.2)
    half = 4.302653 * 0.1 / math.sqrt(3)  # 0.248414
    assert (d.low, d.high) == pytest.approx((0.2 - half, 0.2 + half), abs=1e-6)
    assert d.as_dict()["ci"] == pytest.approx([-0.048414, 0.448414], abs=1e-6)


def test_paired_interval_drops_unpaired_seeds():
    d = fid.paired_interval([1.0, None, 3.0, 2.0], [0.0, 5.0, 1.0, None])
    assert d.diffs == (1.0, 2.0)  # only the seeds where both arms ran
    half = 12.706205 * math.sqrt(0.5) / math.sqrt(2)  # sd of (1, 2) = 0.7071
    assert (d.low, d.high) == pytest.approx((1.5 - half, 1.5 + half), abs=1e-5)


def test_one_pair_has_no_interval():
    d = fid.paired_interval([0.5])
    assert d.mean == 0.5 and d.low == -math.inf and d.high == math.inf
    assert fid.verdict([0.5], "greater") == "inconclusive"


@pytest.mark.parametrize(("diffs", "direction", "expected"), [
    # mean 1.0, sd sqrt(0.025) = 0.158114, t(0.975, 4) = 2.776445: interval 1.0 ± 0.196324 = (0.804, 1.196)
    ([1.0, 1.2, 0.8, 1.1, 0.9], "greater", "shown"),
    ([1.0, 1.2, 0.8, 1.1, 0.9], "less", "contradicted"),
    ([-1.0, -1.2, -0.8, -1.1, -0.9], "less", "shown"),
    ([-1.0, -1.2, -0.8, -1.1, -0.9], "greater", "contradicted"),
    # mean 2, sd 1, se 0.57735, t(0.975, 2) = 4.302653: 2 ± 2.484 = (-0.484, 4.484) contains 0
    ([1.0, 2.0, 3.0], "greater", "inconclusive"),
    ([1.0, 2.0, 3.0], "less", "inconclusive"),
    # mean -1.8, sd sqrt(1.25) = 1.118, se 0.5: -1.8 ± 1.388 = (-3.19, -0.41) excludes 0 the other way
    ([-1.8 + x for x in (-1.5, -0.5, 0.0, 0.5, 1.5)], "greater", "contradicted"),
])
def test_verdict_rule(diffs, direction, expected):
    assert fid.verdict(diffs, direction) == expected


def test_t_quantile_matches_table():
    for df, t in ((2, 4.303), (4, 2.776), (9, 2.262), (20, 2.086)):
        assert fid.t_quantile(df) == pytest.approx(t, abs=1e-3)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match=r"Expected direction 'greater' or 'less'.*got 'up'"):
        fid.verdict([1.0, 2.0], "up")
    with pytest.raises(ValueError, match=r"Expected paired sequences of equal length, got 2 and 3"):
        fid.paired_interval([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"Expected df >= 1.*got df=0"):
        fid.t_quantile(0)
    with pytest.raises(ValueError, match=r"Expected train_size and val_size >= 100.*val_size=50"):
        fid.digits_split(train_size=300, val_size=50)


def test_split_is_stratified_disjoint_and_resampled_per_seed():
    import torch

    a, b = fid.digits_split(train_size=300, val_size=300, seed=0), fid.digits_split(train_size=300, val_size=300,
                                                                                    seed=1)
    assert (len(a.train_y), len(a.val_y), len(a.test_y)) == (300, 300, 1797 - 600)
    for part in (a.train_y, a.val_y):  # stratified: ~30 of each class (the digits have 174-183 per class)
        counts = torch.bincount(part, minlength=10)
        assert int(counts.min()) >= 28 and int(counts.max()) <= 32
    # disjoint: no image in two parts (rows compared as bytes)
    rows = [{x.numpy().tobytes() for x in part} for part in (a.train_x, a.val_x, a.test_x)]
    assert not (rows[0] & rows[1]) and not (rows[0] & rows[2]) and not (rows[1] & rows[2])
    assert not torch.equal(a.train_x, b.train_x)  # another seed, another split
    assert torch.equal(a.val_x, fid.digits_split(train_size=300, val_size=300, seed=0).val_x)  # same seed, same split
    assert "300 training / 300 validation / 1197 test" in a.describe()
