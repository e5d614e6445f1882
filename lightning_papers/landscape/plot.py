"""Figures of loss surfaces (matplotlib, Agg-safe) and a VTK ``.vtp`` export for ParaView.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913):
contour plots, 3-D surfaces (rendered in ParaView in the paper), 1-D curves of loss and accuracy, and
optimisation paths drawn over the contours of the PCA plane. NaN/inf values are masked, never plotted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from lightning_papers.landscape.result import SurfaceResult

__all__ = [
    "mesh_arrays",
    "plot_contour",
    "plot_curve",
    "plot_filled_contour",
    "plot_heatmap",
    "plot_surface3d",
    "plot_trajectory",
    "write_vtp",
]


def _new_axes(ax=None, projection: str | None = None):
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5))  # no pyplot: no global state, safe under the Agg backend
    return fig.add_subplot(projection=projection) if projection else fig.add_subplot()


def _grid2d(result: SurfaceResult, metric: str, log: bool = False):
    if result.ndim != 2:
        raise ValueError(f"Expected a 2-D surface for this plot, got {result.ndim}-D")
    if metric not in result.values:
        raise ValueError(f"Expected `metric` to be one of {sorted(result.values)}, got {metric!r}")
    z = np.array(result.values[metric], dtype=np.float64)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.log10(z)
    # values[m][i, j] is at (axes[0][i], axes[1][j]): matplotlib wants Z[row=y, col=x].
    x, y = np.meshgrid(result.axes[0], result.axes[1])
    return x, y, np.ma.masked_invalid(z.T)


def _levels(z: np.ma.MaskedArray, levels: Any) -> Any:
    if not isinstance(levels, int) or z.count() == 0:
        return levels
    lo, hi = float(z.min()), float(z.max())
    return levels if hi > lo else [lo - 0.5, lo, lo + 0.5]


def plot_contour(result: SurfaceResult, metric: str = "loss", ax=None, levels: Any = 20, labels: bool = True,
                 log: bool = False, **kwargs):
    """Contour lines of ``metric`` with inline level labels; the trajectory, if any, drawn on top."""
    ax = _new_axes(ax)
    x, y, z = _grid2d(result, metric, log)
    if z.count() >= 4:
        cs = ax.contour(x, y, z, levels=_levels(z, levels), **kwargs)
        if labels:
            ax.clabel(cs, inline=True, fontsize=7, fmt="%.3g")
    _finish(ax, result, f"{'log10 ' if log else ''}{metric}")
    return ax


def plot_filled_contour(result: SurfaceResult, metric: str = "loss", ax=None, levels: Any = 30, log: bool = False,
                        colorbar: bool = True, **kwargs):
    """Filled contours of ``metric`` with a colour bar."""
    ax = _new_axes(ax)
    x, y, z = _grid2d(result, metric, log)
    if z.count() >= 4:
        cs = ax.contourf(x, y, z, levels=_levels(z, levels), **kwargs)
        if colorbar:
            ax.figure.colorbar(cs, ax=ax)
    _finish(ax, result, f"{'log10 ' if log else ''}{metric}")
    return ax


def plot_heatmap(result: SurfaceResult, metric: str = "loss", ax=None, log: bool = False, colorbar: bool = True,
                 **kwargs):
    """``metric`` as a heat map on the grid (cells centred on the grid points; masked cells blank)."""
    ax = _new_axes(ax)
    x, y, z = _grid2d(result, metric, log)
    mesh = ax.pcolormesh(x, y, z, shading="nearest", **kwargs)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax)
    _finish(ax, result, f"{'log10 ' if log else ''}{metric}")
    return ax


def plot_surface3d(result: SurfaceResult, metric: str = "loss", ax=None, log: bool = False, cmap: str = "viridis",
                   **kwargs):
    """3-D surface of ``metric`` (``fig.add_subplot(projection="3d")``); non-finite points are left out."""
    if ax is None:
        ax = _new_axes(projection="3d")
    x, y, z = _grid2d(result, metric, log)
    ax.plot_surface(x, y, z.filled(np.nan), cmap=cmap, linewidth=0, antialiased=True, **kwargs)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_zlabel(f"{'log10 ' if log else ''}{metric}")
    return ax


def plot_curve(result: SurfaceResult, ax=None, metrics: tuple[str, ...] | None = None, log: bool = False,
               xlabel: str = "alpha"):
    """1-D curves: the loss on the left axis (log scale with ``log=True``), accuracy (if any) on a twin axis."""
    if result.ndim != 1:
        raise ValueError(f"Expected a 1-D result for a curve, got {result.ndim}-D")
    ax = _new_axes(ax)
    metrics = metrics or tuple(result.values)
    x = result.axes[0]
    left = [m for m in metrics if "acc" not in m]
    right = [m for m in metrics if "acc" in m]
    for m in left:
        ax.plot(x, np.ma.masked_invalid(result.values[m]), marker=".", label=m)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(", ".join(left) or "value")
    if right:
        twin = ax.twinx()
        for m in right:
            twin.plot(x, np.ma.masked_invalid(result.values[m]), linestyle="--", color="tab:red", label=m)
        twin.set_ylabel(", ".join(right))
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_trajectory(path: np.ndarray, ax=None, explained_variance_ratio: np.ndarray | None = None, **kwargs):
    """The optimisation path (T, 2) in the PCA plane, start to end, the final point marked."""
    ax = _new_axes(ax)
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2 or path.shape[1] < 2:
        raise ValueError(f"Expected `path` of shape (T, 2), got {path.shape}")
    ax.plot(path[:, 0], path[:, 1], marker=".", color=kwargs.pop("color", "tab:red"), label="trajectory", **kwargs)
    ax.plot(path[-1, 0], path[-1, 1], marker="*", markersize=12, color="black", linestyle="none", label="final")
    if explained_variance_ratio is not None:
        evr = np.asarray(explained_variance_ratio)
        ax.set_xlabel(f"PC1 ({100 * evr[0]:.1f}%)")
        ax.set_ylabel(f"PC2 ({100 * evr[1]:.1f}%)")
    return ax


def _finish(ax, result: SurfaceResult, title: str) -> None:
    if result.trajectory is not None:
        plot_trajectory(result.trajectory, ax=ax)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_title(title)


def mesh_arrays(result: SurfaceResult, metric: str = "loss", log: bool = False, zmax: float | None = None):
    """Vertices (N, 3) and triangles (F, 3) of a 2-D surface, for ``.vtp`` files and TensorBoard meshes.

    Non-finite values become ``zmax`` (default: the largest finite value) in the vertices, and triangles that
    touch one are dropped.
    """
    x, y, z = _grid2d(result, metric, log)
    valid = ~np.ma.getmaskarray(z)
    fill = zmax if zmax is not None else (float(z.max()) if z.count() else 0.0)
    zz = np.minimum(z.filled(fill), fill) if zmax is not None else z.filled(fill)
    verts = np.stack([x.ravel(), y.ravel(), zz.ravel()], axis=1)
    ny, nx = x.shape
    faces = []
    for r in range(ny - 1):
        for c in range(nx - 1):
            a, b, d, e = r * nx + c, r * nx + c + 1, (r + 1) * nx + c, (r + 1) * nx + c + 1
            if valid.ravel()[[a, b, d, e]].all():
                faces.append((a, b, e))
                faces.append((a, e, d))
    return verts, np.array(faces, dtype=np.int64).reshape(-1, 3), valid.ravel()


def _data_array(name: str, values: np.ndarray, kind: str = "Float64", components: int = 1) -> str:
    body = " ".join(repr(float(v)) if kind.startswith("Float") else str(int(v)) for v in np.ravel(values))
    return (
        f'<DataArray type="{kind}" Name={quoteattr(name)} NumberOfComponents="{components}" format="ascii">'
        f"{body}</DataArray>"
    )


def write_vtp(result: SurfaceResult, path: str | os.PathLike, metric: str = "loss", log: bool = False,
              zmax: float | None = None) -> Path:
    """Write a 2-D surface as VTK XML PolyData (ASCII) for ParaView: the surface as quads' triangles, with
    every metric (NaN kept) and a ``valid`` flag as point data. Returns the path.

    Raises:
        ValueError: for a 1-D result or an unknown metric.
    """
    verts, faces, valid = mesh_arrays(result, metric, log, zmax)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    point_data = [_data_array(m, v.T) for m, v in result.values.items()]  # same (y, x) order as the vertices
    point_data.append(_data_array("valid", valid.astype(np.uint8), "UInt8"))
    offsets = np.arange(1, len(faces) + 1) * 3
    xml = "\n".join([
        '<?xml version="1.0"?>',
        '<VTKFile type="PolyData" version="0.1" byte_order="LittleEndian">',
        "<PolyData>",
        f'<Piece NumberOfPoints="{len(verts)}" NumberOfVerts="0" NumberOfLines="0" NumberOfStrips="0" '
        f'NumberOfPolys="{len(faces)}">',
        f"<PointData Scalars={quoteattr(metric)}>",
        *point_data,
        "</PointData>",
        "<Points>",
        _data_array("Points", verts, "Float64", 3),
        "</Points>",
        "<Polys>",
        _data_array("connectivity", faces, "Int64"),
        _data_array("offsets", offsets, "Int64"),
        "</Polys>",
        "</Piece>",
        "</PolyData>",
        "</VTKFile>",
        "",
    ])
    path.write_text(xml)
    return path
