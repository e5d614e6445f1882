import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import QuadMesh

from lightning_papers.landscape import (
    SurfaceResult,
    mesh_arrays,
    plot_contour,
    plot_curve,
    plot_filled_contour,
    plot_heatmap,
    plot_surface3d,
    write_vtp,
)

matplotlib.use("Agg")


def _bowl(nan_at=None):
    xs, ys = np.linspace(-1, 1, 6), np.linspace(-0.5, 0.5, 4)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    loss = 1 + gx**2 + 2 * gy**2
    if nan_at is not None:
        loss[nan_at] = np.nan
    return SurfaceResult([xs, ys], {"loss": loss, "accuracy": 1 / loss}, np.ones((6, 4), bool),
                         trajectory=np.array([[0.8, 0.4], [0.3, 0.1], [0.0, 0.0]]))


def test_2d_plots_have_expected_artists():
    res = _bowl(nan_at=(5, 3))
    ax = plot_contour(res)
    assert ax.collections and ax.texts  # contour lines and their labels
    assert ax.get_title() == "loss" and any(line.get_label() == "trajectory" for line in ax.lines)
    ax = plot_filled_contour(res, log=True)
    assert len(ax.figure.axes) == 2  # the plot and its colour bar
    ax = plot_heatmap(res, metric="accuracy")
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)][0]
    assert np.ma.getmaskarray(mesh.get_array()).sum() == 1  # the NaN cell is masked
    ax = plot_surface3d(res)
    assert ax.name == "3d" and ax.collections
    assert res.plot("heatmap").collections and res.plot().texts


def test_curve_plot_with_log_and_twin_axis():
    xs = np.linspace(-1, 1, 7)
    res = SurfaceResult([xs], {"loss": 1 + xs**2, "accuracy": 1 - xs**2 / 2}, np.ones(7, bool))
    ax = plot_curve(res, log=True)
    assert ax.get_yscale() == "log" and len(ax.lines) == 1 and len(ax.figure.axes) == 2
    assert ax.figure.axes[1].lines[0].get_label() == "accuracy"
    assert res.plot().lines


def test_vtp_is_parseable_and_skips_nan_cells(tmp_path):
    res = _bowl(nan_at=(0, 0))
    path = write_vtp(res, tmp_path / "surface.vtp")
    root = ET.parse(path).getroot()
    assert root.tag == "VTKFile" and root.get("type") == "PolyData"
    piece = root.find("PolyData/Piece")
    assert int(piece.get("NumberOfPoints")) == 24
    assert int(piece.get("NumberOfPolys")) == 2 * (5 * 3 - 1)  # the corner cell touching the NaN is dropped
    pts = np.array(piece.find("Points/DataArray").text.split(), dtype=float).reshape(-1, 3)
    assert pts.shape == (24, 3) and np.isfinite(pts).all()
    arrays = {a.get("Name"): a for a in piece.findall("PointData/DataArray")}
    assert set(arrays) == {"loss", "accuracy", "valid"}
    loss = np.array(arrays["loss"].text.split(), dtype=float)
    assert np.isnan(loss).sum() == 1
    conn = np.array(piece.find("Polys/DataArray[@Name='connectivity']").text.split(), dtype=int)
    assert conn.max() < 24 and len(conn) == 3 * int(piece.get("NumberOfPolys"))
    verts, faces, valid = mesh_arrays(res)
    assert verts.shape == (24, 3) and faces.shape == (28, 3) and valid.sum() == 23


def test_plot_errors():
    res = _bowl()
    curve = SurfaceResult([np.arange(3.0)], {"loss": np.ones(3)}, np.ones(3, bool))
    with pytest.raises(ValueError, match="Expected a 2-D surface"):
        plot_contour(curve)
    with pytest.raises(ValueError, match="Expected a 1-D result"):
        plot_curve(res)
    with pytest.raises(ValueError, match="Expected `metric`"):
        plot_heatmap(res, metric="nope")
    with pytest.raises(ValueError, match="Expected `kind`"):
        res.plot("pie")
