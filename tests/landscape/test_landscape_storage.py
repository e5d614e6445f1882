import json

import numpy as np
import pytest
import torch
from landscape_helpers import assert_bit_identical, state_snapshot

from lightning_papers.landscape import (
    SurfaceResult,
    load_surface,
    merge_surfaces,
    plot_contour,
    plot_curve,
    random_directions,
    save_surface,
    surface,
)
from lightning_papers.landscape.storage import check_metadata, surface_paths

AXES = (np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 4))


class _StopAfter:
    def __init__(self, k):
        self.k, self.calls = k, []

    def __call__(self, done, total):
        self.calls.append(done)
        if len(self.calls) >= self.k:
            raise KeyboardInterrupt("killed")


def test_killed_then_resumed_equals_uninterrupted(bn_net, digits64, tmp_path):
    d = random_directions(bn_net, n=2, seed=0)
    full = surface(bn_net, d, AXES, digits64)
    path = tmp_path / "landscape" / "surface"
    snap = state_snapshot(bn_net)
    with pytest.raises(KeyboardInterrupt):
        surface(bn_net, d, AXES, digits64, path=path, save_every=3, progress=_StopAfter(7))
    assert_bit_identical(bn_net, snap)
    partial = load_surface(path)
    assert 6 <= partial.computed.sum() <= 7 and not partial.complete
    assert np.isnan(partial["loss"][~partial.computed]).all()
    rest = _StopAfter(100)
    resumed = surface(bn_net, d, AXES, digits64, path=path, resume=True, save_every=3, progress=rest)
    assert len(rest.calls) == 20 - partial.computed.sum() and rest.calls[-1] == 20
    assert resumed.complete
    for m in ("loss", "accuracy"):
        assert np.array_equal(resumed[m], full[m])
        assert np.array_equal(load_surface(path)[m], full[m])
    # nothing left behind but the two files
    assert sorted(p.name for p in path.parent.iterdir()) == ["surface.json", "surface.npz"]
    meta = json.loads((path.parent / "surface.json").read_text())
    assert meta["computed_points"] == 20 and meta["metadata"]["directions"][1]["seed"] == 1


_KILLED_SCRIPT = """
import os, signal, sys
import torch
from lightning_papers.landscape import random_directions, surface

net = torch.load(sys.argv[1], weights_only=False)
x, y = torch.load(sys.argv[2], weights_only=True)
axes = torch.load(sys.argv[3], weights_only=False)
done = []

def progress(n, total):
    done.append(n)
    if len(done) == 7:  # mid-way, right after a point was computed: no chance to save anything more
        os.kill(os.getpid(), signal.SIGKILL)

surface(net, random_directions(net, n=2, seed=0), axes, (x, y), path=sys.argv[4], save_every=3, progress=progress)
"""


def test_kill_9_mid_surface_then_resume_equals_uninterrupted(bn_net, digits64, tmp_path):
    """A real SIGKILL in a separate process: the files on disk are whole, and resuming gives the same arrays."""
    import subprocess
    import sys

    d = random_directions(bn_net, n=2, seed=0)
    full = surface(bn_net, d, AXES, digits64)
    torch.save(bn_net, tmp_path / "net.pt")
    torch.save(digits64, tmp_path / "data.pt")
    torch.save(AXES, tmp_path / "axes.pt")
    (tmp_path / "run.py").write_text(_KILLED_SCRIPT)
    path = tmp_path / "landscape" / "surface"
    args = [str(tmp_path / name) for name in ("run.py", "net.pt", "data.pt", "axes.pt")] + [str(path)]
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    partial = load_surface(path)
    assert 3 <= partial.computed.sum() <= 6 and not partial.complete
    resumed = surface(bn_net, d, AXES, digits64, path=path, resume=True)
    assert resumed.complete
    for m in ("loss", "accuracy"):
        assert np.array_equal(resumed[m], full[m])
        assert np.array_equal(load_surface(path)[m], full[m])
    assert sorted(p.name for p in path.parent.iterdir()) == ["surface.json", "surface.npz"]


def test_stale_metadata_is_refused(bn_net, digits64, tmp_path):
    path = tmp_path / "s"
    d = random_directions(bn_net, n=2, seed=0)
    with pytest.raises(KeyboardInterrupt):
        surface(bn_net, d, AXES, digits64, path=path, save_every=1, progress=_StopAfter(2))
    with pytest.raises(ValueError, match="to match this run's `directions`"):
        surface(bn_net, random_directions(bn_net, n=2, seed=9), AXES, digits64, path=path, resume=True)
    with pytest.raises(ValueError, match="to match this run's `axes`"):
        surface(bn_net, d, (AXES[0], AXES[1] * 2), digits64, path=path, resume=True)
    with pytest.raises(ValueError, match="to match this run's `data`"):
        surface(bn_net, d, AXES, (digits64[0][:32], digits64[1][:32]), path=path, resume=True)
    with pytest.raises(ValueError, match="to match this run's `metrics`"):
        surface(bn_net, d, AXES, digits64, path=path, resume=True, metrics=("loss",))
    with torch.no_grad():
        bn_net[0].weight[0, 0, 0, 0] += 1e-3
    with pytest.raises(ValueError, match="to match this run's `model`"):
        surface(bn_net, d, AXES, digits64, path=path, resume=True)
    with pytest.raises(ValueError, match="Expected a saved surface"):
        load_surface(tmp_path / "missing")
    with pytest.raises(ValueError, match="`shard`"):
        check_metadata({"shard": [0, 2]}, {"shard": None})


def test_nan_points_survive_saving_and_plots(bn_net, digits64, tmp_path):
    d = random_directions(bn_net, n=2, seed=0)
    axes = (np.array([-1.0, 0.0, 1.0, 1e30]), np.array([0.0, 0.5, 1.0]))  # 1e30: activations overflow
    res = surface(bn_net, d, axes, digits64, path=tmp_path / "nan")
    assert res.complete and not np.isfinite(res["loss"][3]).any() and np.isfinite(res["loss"][:3]).all()
    back = load_surface(tmp_path / "nan.npz")
    assert back.computed.all() and np.array_equal(back["loss"], res["loss"], equal_nan=True)
    ax = plot_contour(back)
    assert ax.collections  # contours drawn from the finite points only
    line = plot_curve(SurfaceResult([axes[0]], {"loss": back["loss"][:, 0]}, np.ones(4, bool))).lines[0]
    assert np.ma.getmaskarray(line.get_ydata()).tolist() == [False, False, False, True]


def test_save_load_roundtrip_and_merge_errors(tmp_path):
    vals = {"loss": np.arange(6.0).reshape(3, 2), "accuracy": np.full((3, 2), 0.5)}
    vals["loss"][0, 1] = np.inf
    r = SurfaceResult([np.arange(3.0), np.arange(2.0)], vals, np.ones((3, 2), bool), {"k": [1, 2]},
                      trajectory=np.ones((4, 2)))
    npz, js = save_surface(r, tmp_path / "a.json")
    assert npz.name == "a.npz" and js.name == "a.json" and surface_paths(tmp_path / "a") == (npz, js)
    back = SurfaceResult.load(tmp_path / "a")
    assert np.array_equal(back["loss"], r["loss"]) and back.metadata == {"k": [1, 2]}
    assert back.trajectory.shape == (4, 2) and back.to_dict()["axes"] == [[0.0, 1.0, 2.0], [0.0, 1.0]]
    other = SurfaceResult([np.arange(2.0)], {"loss": np.zeros(2)}, np.ones(2, bool))
    with pytest.raises(ValueError, match="Expected parts with the same grid"):
        merge_surfaces([r, other])
    with pytest.raises(ValueError, match="Expected at least one surface"):
        merge_surfaces([])
    changed = SurfaceResult(r.axes, {"loss": r["loss"] + 1, "accuracy": r["accuracy"]}, r.computed)
    with pytest.raises(ValueError, match="Expected overlapping parts to agree"):
        merge_surfaces([r, changed])
    with pytest.raises(ValueError, match="Expected parts with the same metrics"):
        merge_surfaces([r, SurfaceResult(r.axes, {"loss": r["loss"]}, r.computed)])
    with pytest.raises(ValueError, match="Expected `computed` to have the grid's shape"):
        SurfaceResult(r.axes, vals, np.ones(3, bool))
    with pytest.raises(ValueError, match=r"Expected `values\['loss'\]`"):
        SurfaceResult(r.axes, {"loss": np.zeros(3)}, np.ones((3, 2), bool))
