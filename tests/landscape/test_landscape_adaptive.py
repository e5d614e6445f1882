"""Framing and adaptive refinement against analytic surfaces (no training): a two-parameter "model" whose loss is
a known function f(a, b) of the point, so the truth is known at every lattice point."""

import threading

import numpy as np
import pytest
import torch
from torch import nn

from lightning_papers import landscape as ls
from lightning_papers.landscape.adaptive import SAFETY, Refinement, filled_values, plotted_values


class Point(nn.Module):
    """Its output is its own weights: the loss below is then a function of the point only."""

    def __init__(self, ndim: int = 2) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(ndim, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w.expand(len(x), -1)


def bowl_with_wall(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A quadratic bowl (minimum 0.05 at the origin) with a steep wall beyond a = 0.3."""
    a, b = out[0, 0], out[0, 1] if out.shape[1] > 1 else torch.zeros((), dtype=out.dtype)
    return 0.05 + a**2 + 0.5 * b**2 + 400.0 * torch.clamp(a - 0.3, min=0.0) ** 2


def two_minima(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    a, b = out[0, 0], out[0, 1]
    return 0.02 + ((a**2 - 0.25) ** 2 + b**2) * 4.0 + 0.01 * a


def truth(fn, axes):
    a, b = np.meshgrid(*axes, indexing="ij")
    out = torch.as_tensor(np.stack([a.ravel(), b.ravel()], axis=1))
    return np.array([float(fn(out[i : i + 1], None)) for i in range(len(out))]).reshape(a.shape)


def directions(ndim: int = 2):
    return [ls.Direction({"w": torch.eye(ndim, dtype=torch.float64)[i]}) for i in range(ndim)]


DATA = (torch.zeros(2, 1), torch.zeros(2, dtype=torch.long))
AXES = (np.linspace(-1, 1, 33), np.linspace(-1, 1, 33))


def run(fn, budget=0.2, axes=AXES, **kwargs):
    return ls.surface(Point(), directions(), axes, DATA, metrics={"loss": fn}, adaptive=budget, **kwargs)


def test_every_stored_value_is_an_evaluation_and_the_budget_holds():
    r = run(bowl_with_wall, budget=200)
    true = truth(bowl_with_wall, AXES)
    assert 100 < r.computed.sum() <= 200
    np.testing.assert_allclose(r["loss"][r.computed], true[r.computed], rtol=1e-6)  # the outputs pass through float32
    assert np.isnan(r["loss"][~r.computed]).all()
    rounds = r.metadata["adaptive"]["rounds"]
    assert [x["points"] for x in rounds] == sorted(x["points"] for x in rounds)
    assert rounds[-1]["points"] == r.computed.sum()
    assert rounds[-1]["estimated_max_error"] <= rounds[0]["estimated_max_error"]


def test_refinement_goes_where_the_error_is():
    r = run(bowl_with_wall, budget=0.25)
    a = AXES[0][:, None] * np.ones((1, 33))
    # the steep wall (0.3 < a < 0.6: the loss climbs to the clip there) against the flat, clipped plateau a > 0.8
    wall, plateau = (a > 0.3) & (a < 0.6), a > 0.8
    assert r.computed[wall].mean() > 3 * r.computed[plateau].mean()
    # and the picture is better than a uniform grid of as many points would be: the mean error over the basin
    true = truth(bowl_with_wall, AXES)
    centre = true[16, 16]
    g_true, _ = plotted_values(true, "loss", centre)
    values, interpolated = filled_values(r)
    g, _ = plotted_values(values, "loss", centre)
    basin = true < 100 * centre
    assert interpolated.sum() == (~r.computed).sum()
    assert np.abs(g - g_true)[basin].mean() < 0.02


@pytest.mark.parametrize("fn", [bowl_with_wall, two_minima])
def test_the_estimated_error_bounds_the_true_one_in_each_cell(fn):
    r = run(fn, budget=0.3)
    true = truth(fn, AXES)
    centre = true[16, 16]
    g_true, _ = plotted_values(true, "loss", centre)
    # interpolated inside each finest cell in the clipped plotted scale, the error there stays below the cell's
    # estimate (twice the parent's error at the points its split added)
    g_eval, _ = plotted_values(np.where(r.computed, r["loss"], np.nan), "loss", centre)
    from lightning_papers.landscape.plot import _leaves_of, _multilinear, _split

    checked = 0
    for box in _leaves_of(r.computed):
        parent = sampler_parent(box)
        if parent is None or not all(r.computed[c] for c in _split(parent)[1]):
            continue
        est = SAFETY * max(abs(g_eval[p] - _multilinear(parent, g_eval, p)) for p in _split(parent)[1])
        err = max(abs(_multilinear(box, g_eval, p) - g_true[p])
                  for p in np.ndindex(*[hi - lo + 1 for lo, hi in box]) for p in [tuple(
                      q + lo for q, (lo, _) in zip(p, box))])
        assert err <= est + 1e-9, (box, err, est)
        checked += 1
    assert checked > 20


def sampler_parent(box):
    """The parent of a cell in the halving tree of the 33-point lattice (0..32)."""
    out = []
    for lo, hi in box:
        w = hi - lo
        if w >= 32:
            return None
        lo2 = lo - lo % (2 * w)
        out.append((lo2, lo2 + 2 * w))
    return tuple(out)


def test_a_fixed_seed_gives_identical_results():
    a = run(two_minima, budget=0.2)
    b = run(two_minima, budget=0.2)
    np.testing.assert_array_equal(a.computed, b.computed)
    np.testing.assert_array_equal(a["loss"], b["loss"])
    assert a.metadata["adaptive"]["rounds"] == b.metadata["adaptive"]["rounds"]


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole = run(two_minima, budget=0.2)
    calls = []

    def stop_after(done, total):
        calls.append(done)
        if len(calls) == 150:
            raise KeyboardInterrupt

    path = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        run(two_minima, budget=0.2, path=str(path), save_every=7, progress=stop_after)
    partial = ls.load_surface(path)
    assert 0 < partial.computed.sum() < whole.computed.sum()
    resumed = run(two_minima, budget=0.2, path=str(path), resume=True)
    np.testing.assert_array_equal(resumed.computed, whole.computed)
    np.testing.assert_array_equal(resumed["loss"], whole["loss"])
    # a larger budget continues the refinement from the saved points
    more = run(two_minima, budget=0.3, path=str(path), resume=True)
    assert more.computed.sum() > whole.computed.sum() and (more.computed >= whole.computed).all()


def test_two_ranks_sharing_each_round_equal_one_process_and_merge():
    whole = run(two_minima, budget=0.2)
    barrier = threading.Barrier(2)
    box: dict = {}
    out: dict = {}

    def gather(rank):
        def fn(part):
            box[rank] = part
            barrier.wait()
            merged = ls.merge_surfaces([box[0], box[1]])
            barrier.wait()
            return merged
        return fn

    def worker(rank):
        out[rank] = run(two_minima, budget=0.2, shard=(rank, 2), gather=gather(rank))

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for rank in range(2):
        np.testing.assert_array_equal(out[rank].computed, whole.computed)
        np.testing.assert_array_equal(out[rank]["loss"], whole["loss"])
    # each rank evaluated only its share of every round; merged, the shares are the uninterrupted run
    own = [box[r] for r in range(2)]  # the last round's parts
    assert not (own[0].computed & own[1].computed).any()
    merged = ls.merge_surfaces(own)
    np.testing.assert_array_equal(merged["loss"][merged.computed], whole["loss"][merged.computed])


def test_curves_refine_where_they_bend():
    axes = np.linspace(-1, 1, 65)
    r = ls.surface(Point(1), directions(1)[0], axes, DATA, metrics={"loss": bowl_with_wall}, adaptive=20)
    assert r.computed.sum() <= 20
    near_wall = (axes > 0.25) & (axes < 0.6)
    assert r.computed[near_wall].mean() > r.computed[axes < -0.5].mean()
    values, interpolated = filled_values(r)
    assert np.isfinite(values).all() and interpolated.sum() == 65 - r.computed.sum()


def test_frame_reaches_the_clip_along_each_axis():
    fr = ls.frame_range(Point(), directions(), DATA, metrics={"loss": bowl_with_wall})
    # f = 0.05 + a^2 (+ wall) reaches 100 x 0.05 = 5 at a = 0.3 + ... on +x, at a = sqrt(4.95) = 2.2 on -x (capped
    # at max_radius 2); along y 0.5 b^2 = 4.95 at b = 3.1 (capped at 2)
    assert fr.reaches["+x"] == pytest.approx(_root_plus_x(), rel=0.05)
    assert fr.reaches["-x"] is None and fr.reaches["+y"] is None
    assert fr.spans[1] == 2.0 and fr.spans[0] == 2.0  # -x never reaches the clip within max_radius
    axis_only = ls.frame_range(Point(), directions(), DATA, framed=ls.Framed(diagonals=False),
                               metrics={"loss": bowl_with_wall})
    assert sorted(axis_only.reaches) == ["+x", "+y", "-x", "-y"] and axis_only.evaluations < fr.evaluations
    r = ls.surface(Point(), directions(), ls.Framed(points=9, max_radius=0.5), DATA, metrics={"loss": bowl_with_wall})
    assert r.metadata["range"]["spans"] == [0.5, 0.5] and r.shape == (9, 9)
    assert "range ±0.5 x ±0.5" in ls.describe_sampling(r)


def _root_plus_x():
    # 0.05 + a^2 + 400 (a - 0.3)^2 = 5 for a > 0.3
    lo, hi = 0.3, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if 0.05 + mid**2 + 400 * (mid - 0.3) ** 2 < 5 else (lo, mid)
    return lo


def test_shared_range_is_the_union():
    shared = ls.shared_range([ls.Frame([0.3, 0.8]), ls.Frame([0.5, 0.2])])
    assert shared.spans == [0.5, 0.8]
    assert [a.max() for a in shared.axes(5)] == [0.5, 0.8]
    with pytest.raises(ValueError, match="at least one frame"):
        ls.shared_range([])
    with pytest.raises(ValueError, match="one dimension"):
        ls.shared_range([ls.Frame([0.3]), ls.Frame([0.5, 0.2])])


def test_a_given_grid_wins():
    r = ls.surface(Point(), directions(), AXES, DATA, metrics={"loss": bowl_with_wall}, points=np.eye(33, dtype=bool))
    assert "range" not in r.metadata and r.computed.sum() == 33


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"budget": 0}, r"Expected `budget` to be a positive integer, got 0: a point count, or pass a fraction"),
    ({"budget": 1.5}, r"Expected `budget` to be a positive integer, got 1.5: .* fraction in \(0, 1\]"),
    ({"tol": -1.0}, "Expected `tol` >= 0"),
    ({"per_round": 0}, "Expected `per_round` to be a positive integer"),
])
def test_bad_refinements_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Refinement(**kwargs)


def test_bad_adaptive_calls_are_refused():
    with pytest.raises(ValueError, match="Expected a budget of at least 9 points"):
        run(bowl_with_wall, budget=5)
    with pytest.raises(ValueError, match="Expected a `gather` with shard"):
        run(bowl_with_wall, shard=(0, 2))
    with pytest.raises(ValueError, match="Expected `grid` to be coordinate axes, 'frame'"):
        ls.surface(Point(), directions(), "framed", DATA, metrics={"loss": bowl_with_wall})
    with pytest.raises(ValueError, match="Expected `adaptive` to be a Refinement"):
        run(bowl_with_wall, budget="a lot")
    with pytest.raises(ValueError, match="Expected `points_per_round`|Expected `points` to be a boolean mask"):
        ls.surface(Point(), directions(), AXES, DATA, metrics={"loss": bowl_with_wall}, points=np.ones(3, bool))
    with pytest.raises(ValueError, match="Expected `margin` >= 1"):
        ls.Framed(margin=0.5)


def test_adaptive_pictures_mark_points_and_say_so():
    r = run(two_minima, budget=0.2)
    ax = r.plot("contour")
    assert "adaptive: " in ax.get_title() and f"{int(r.computed.sum())} of 1089" in ax.get_title()
    dots = [line for line in ax.get_lines() if line.get_label() == "evaluated"]
    assert len(dots) == 1 and len(dots[0].get_xdata()) == r.computed.sum()
