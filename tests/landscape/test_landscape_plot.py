import xml.etree.ElementTree as ET

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from PIL import Image

from lightning_papers.landscape import (
    SurfaceResult,
    animate_surfaces,
    mesh_arrays,
    mesh_view,
    plot_contour,
    plot_curve,
    plot_filled_contour,
    plot_heatmap,
    plot_surface3d,
    save_gif,
    surface_frames,
    surface_scale,
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
    assert ax.get_title().startswith("loss\n") and any(line.get_label() == "trajectory" for line in ax.lines)
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


# -- the default scale shows the basin -------------------------------------------------------------------
def _demo_like(centre=0.064, corner=40.0, n=11):
    """A basin like the demo's ResNet-20 surface: 0.04 at the minimum, 0.064 at the centre, ~40 in a corner
    (the values span three decades)."""
    xs = np.linspace(-1, 1, n)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    r2 = (gx - 0.2) ** 2 + (gy - 0.2) ** 2
    loss = 0.04 * np.exp(np.log(corner / 0.04) * r2 / r2.max())
    loss[n // 2, n // 2] = centre
    return SurfaceResult([xs, xs], {"loss": loss, "accuracy": 1 - loss / loss.max()}, np.ones((n, n), bool))


def test_default_levels_are_log_spaced_from_the_minimum_to_100x_the_centre():
    res = _demo_like()
    loss = res["loss"]
    scale = surface_scale(loss, centre=res.centre_value())
    assert scale.log and scale.clipped and scale.spacing == "log-spaced"
    assert scale.vmin == loss.min() and scale.vmax == pytest.approx(100 * 0.064)
    # the levels are np.geomspace's, rounded to two significant digits
    reference = np.geomspace(loss.min(), 6.4, 20)
    np.testing.assert_allclose(scale.levels, reference, rtol=0.05)
    assert len(scale.levels) == 20 and np.all(np.diff(scale.levels) > 0)
    # the basin gets the levels: half of them below 0.5, where 20 linear levels up to the maximum put none
    assert (scale.levels < 0.5).sum() >= 10
    assert (np.linspace(loss.min(), loss.max(), 20) < 0.5).sum() == 1
    assert scale.describe() == "20 log-spaced levels 0.04 .. 6.4; loss > 6.4 (100 x centre) clipped"


def test_the_plots_draw_on_that_scale_and_say_so():
    res = _demo_like()
    scale = surface_scale(res["loss"], centre=res.centre_value())
    ax = plot_contour(res)
    np.testing.assert_allclose(ax.collections[0].levels, scale.levels)
    assert ax.get_title().startswith("loss\n" + scale.describe())
    ax = plot_contour(res, smooth=False)
    assert ax.get_title() == "loss\n" + scale.describe()
    ax = plot_filled_contour(res)
    contour_set = ax.collections[0]
    assert contour_set.extend == "max" and contour_set.norm.vmax == pytest.approx(6.4)  # clipped above 6.4
    assert len(contour_set.levels) == 30 and contour_set.levels[0] == pytest.approx(0.04)
    ax = plot_heatmap(res)
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)][0]
    assert type(mesh.norm).__name__ == "LogNorm" and mesh.norm.vmax == pytest.approx(6.4)
    ax = plot_surface3d(res)  # log10 of the clipped loss
    assert ax.get_zlim() == pytest.approx((np.log10(0.04), np.log10(6.4)))
    assert ax.get_zlabel() == "log10 loss" and "clipped" in ax.get_title()


def test_levels_vmax_and_log_overrides():
    res = _demo_like()
    ax = plot_contour(res, levels=[0.1, 0.5, 1, 2, 5, 10])  # Li et al.'s style: given levels, drawn as given
    np.testing.assert_allclose(ax.collections[0].levels, [0.1, 0.5, 1, 2, 5, 10])
    assert "6 given levels 0.1 .. 10" in ax.get_title()
    ax = plot_contour(res, levels=7, vmax=10.0)
    levels = ax.collections[0].levels
    assert len(levels) == 7 and levels[-1] == pytest.approx(10.0) and "(vmax=)" in ax.get_title()
    ax = plot_contour(res, log=True)
    np.testing.assert_allclose(ax.collections[0].levels, np.log10(surface_scale(res["loss"], centre=0.064).levels))
    assert ax.get_title().startswith("log10 loss")
    ax = plot_surface3d(res, log=False, vmax=2.0)
    assert ax.get_zlim() == pytest.approx((0.04, 2.0)) and ax.get_zlabel() == "loss"
    ax = plot_heatmap(res, vmin=0.1, vmax=1.0)
    mesh = [c for c in ax.collections if isinstance(c, QuadMesh)][0]
    assert (mesh.norm.vmin, mesh.norm.vmax) == (0.1, 1.0)


def test_accuracy_and_signed_metrics_keep_linear_levels_over_the_whole_range():
    res = _demo_like()
    acc = res["accuracy"]
    scale = surface_scale(acc, "accuracy", centre=0.99)
    np.testing.assert_allclose(scale.levels, np.linspace(acc.min(), acc.max(), 20))
    assert not scale.log and not scale.clipped
    signed = np.linspace(-1.0, 3.0, 12).reshape(3, 4)
    scale = surface_scale(signed, "elbo", centre=0.5)
    np.testing.assert_allclose(scale.levels, np.linspace(-1, 3, 20))
    flat = surface_scale(np.full((3, 3), 2.0))
    assert list(flat.levels) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"levels": 1}, r"Expected `levels` to be at least 2 or a sequence of levels, got 1"),
        ({"levels": [3.0, 2.0]}, r"Expected `levels` to be a number of levels or increasing finite levels, got "
                                 r"\[3.0, 2.0\]"),
        ({"vmin": 2.0, "vmax": 1.0}, r"Expected `vmax` > `vmin`, got vmin=2.0, vmax=1.0"),
        ({"vmax": 0.01}, r"Expected `vmax` above the smallest value drawn \(0.04\), got 0.01"),
        ({"clip_factor": 0}, r"Expected `clip_factor` to be a positive finite number, got 0"),
    ],
)
def test_scale_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        surface_scale(_demo_like()["loss"], **kwargs)


def test_mesh_view_heights_are_the_normalised_log_loss():
    res = _demo_like()
    res.values["loss"][0, -1] = np.nan
    view = mesh_view(res)
    scale = surface_scale(res["loss"], centre=res.centre_value())
    # vertex (row = y index, col = x index) = (x, height, -y); height = (log10 clip(l) - log10 vmin) / decades
    loss_yx = res["loss"].T.ravel()
    expected = (np.log10(np.clip(loss_yx, scale.vmin, scale.vmax)) - np.log10(scale.vmin)) / np.log10(
        scale.vmax / scale.vmin)
    expected[np.isnan(loss_yx)] = 1.0  # no value: at the top
    np.testing.assert_allclose(view.vertices[:, 1], expected * 1.0, rtol=1e-5, atol=1e-6)  # height = 1: half of 2
    gx, gy = np.meshgrid(res.axes[0], res.axes[1])
    np.testing.assert_allclose(view.vertices[:, 0], gx.ravel())
    np.testing.assert_allclose(view.vertices[:, 2], -gy.ravel())
    assert view.vertices[:, 1].max() <= 1.0 and view.vertices[:, 1].min() == 0.0
    assert len(view.faces) == 2 * 10 * 10 - 2  # the cell at the NaN corner is dropped
    assert view.colors.shape == (121, 3) and view.colors.dtype == np.uint8
    assert tuple(view.colors[np.argmin(view.vertices[:, 1])]) == (68, 1, 84)  # viridis' bottom
    assert "log10 of loss clipped to [0.04, 6.4]" in view.description and "(100 x centre value)" in \
        view.description
    assert view.config["camera"]["position"][1] > 0  # looking down at the surface, not along it


def _epochs():
    return {e: _demo_like(centre=c, corner=k) for e, c, k in ((0, 2.3, 60.0), (1, 0.5, 50.0), (2, 0.064, 40.0))}


def test_frames_over_training_share_one_scale(tmp_path):
    results = _epochs()
    frames, scale = surface_frames(results)
    assert len(frames) == 3 and len({f.shape for f in frames}) == 1 and frames[0].dtype == np.uint8
    # one scale for all: from the lowest value of any epoch to 100 x the lowest centre
    assert scale.vmin == pytest.approx(0.04) and scale.vmax == pytest.approx(6.4)
    assert not np.array_equal(frames[0], frames[2])  # the basin changed
    path = animate_surfaces(results, tmp_path / "basin.gif", duration=100)
    gif = Image.open(path)
    assert gif.n_frames == 3 and gif.size == frames[0].shape[1::-1]
    gif.seek(2)
    assert gif.info["duration"] == 300  # the last frame held three times as long


def test_frame_errors(tmp_path):
    results = _epochs()
    other = _bowl()
    with pytest.raises(ValueError, match=r"Expected 2-D surfaces on one grid to draw on common axes, got the grid "
                                         r"\(6, 4\) at epoch 3 and \(11, 11\) at epoch 0"):
        surface_frames({**results, 3: other})
    with pytest.raises(ValueError, match=r"Expected at least one \(epoch, SurfaceResult\) to draw, got none"):
        surface_frames({})
    with pytest.raises(ValueError, match=r"Expected \{epoch: SurfaceResult\} or \(epoch, SurfaceResult\) pairs, "
                                         r"got 3"):
        surface_frames([3])
    with pytest.raises(ValueError, match=r"Expected `metric` to be one of \['accuracy', 'loss'\], got 'nope'"):
        surface_frames(results, "nope")
    with pytest.raises(ValueError, match=r"Expected `duration` to be a positive number of milliseconds, got 0"):
        animate_surfaces(results, tmp_path / "x.gif", duration=0)
    with pytest.raises(ValueError, match=r"Expected one or more frames of one size, got 2 of sizes"):
        save_gif([np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)], tmp_path / "y.gif")


def test_a_coarse_grid_is_drawn_through_a_finer_lattice_that_passes_through_its_points():
    from lightning_papers.landscape import plot as lp

    res = _demo_like()
    assert min(res["loss"].shape) < lp.SMOOTH_BELOW
    x, y, z = lp._grid2d(res, "loss")
    fx, fy, fz = lp._finer(x, y, z, log=False)
    step = lp._FINER
    assert fz.shape == ((z.shape[0] - 1) * step + 1, (z.shape[1] - 1) * step + 1)
    # the evaluated points are on the lattice, with their own values (interpolation, not smoothing away)
    np.testing.assert_allclose(fz[::step, ::step], z, rtol=1e-9)
    np.testing.assert_allclose(fx[::step, ::step], x) and np.testing.assert_allclose(fy[::step, ::step], y)
    ax = plot_contour(res)
    assert "finer bicubic lattice between the evaluated points" in ax.get_title()
    dots = [line for line in ax.lines if line.get_label() == "evaluated"]
    assert len(dots) == 1 and len(dots[0].get_xdata()) == res["loss"].size
