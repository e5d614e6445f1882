"""``SurfaceResult``: the values of a loss surface (or curve) on its grid, with the metadata that made it.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913):
1-D curves ``f(alpha)`` and 2-D surfaces ``f(alpha, beta) = L(theta + alpha d1 + beta d2)``.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from lightning_papers.landscape import plot as lp
from lightning_papers.landscape.storage import _atomic_write, _json_default, surface_paths


@dataclass
class SurfaceResult:
    """Metric values on a 1-D or 2-D grid.

    Attributes:
        axes: the grid's coordinate axes (one 1-D array per direction); ``values[m][i, j]`` is the metric at
            ``(axes[0][i], axes[1][j])``.
        values: metric name -> array of the grid's shape; NaN where not computed (and where the metric itself
            was NaN or inf - ``computed`` tells the two apart).
        computed: boolean array of the grid's shape, True where this result holds a value.
        metadata: JSON-able description (grid, directions, fingerprints, options), saved alongside.
        trajectory: optional (T, 2) path to draw over a 2-D plot (e.g. :class:`PCADirections.path`).

    Examples:
        >>> r = SurfaceResult([np.linspace(-1, 1, 3)], {"loss": np.array([1.0, 0.5, 1.0])}, np.ones(3, bool))
        >>> r.centre_value()
        0.5
    """

    axes: list[np.ndarray]
    values: dict[str, np.ndarray]
    computed: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    trajectory: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.axes = [np.asarray(a, dtype=np.float64) for a in self.axes]
        shape = self.shape
        self.computed = np.asarray(self.computed, dtype=bool)
        if self.computed.shape != shape:
            raise ValueError(f"Expected `computed` to have the grid's shape {shape}, got {self.computed.shape}")
        for name, arr in self.values.items():
            arr = np.asarray(arr, dtype=np.float64)
            if arr.shape != shape:
                raise ValueError(f"Expected `values[{name!r}]` to have the grid's shape {shape}, got {arr.shape}")
            self.values[name] = arr

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    @property
    def ndim(self) -> int:
        return len(self.axes)

    @property
    def complete(self) -> bool:
        """True when every grid point is computed."""
        return bool(self.computed.all())

    def __getitem__(self, metric: str) -> np.ndarray:
        if metric not in self.values:
            raise KeyError(f"Expected a metric of this surface ({', '.join(map(repr, self.values)) or 'none'}), got "
                           f"{metric!r}")
        return self.values[metric]

    def centre_index(self) -> tuple[int, ...]:
        """Index of the grid point closest to the origin."""
        return tuple(int(np.argmin(np.abs(a))) for a in self.axes)

    def centre_value(self, metric: str = "loss") -> float:
        """The metric at the grid point closest to the origin."""
        return float(self.values[metric][self.centre_index()])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: axes, values (NaN/inf as ``None``/strings are left to the JSON writer), computed mask."""
        return {
            "axes": [a.tolist() for a in self.axes],
            "values": {k: v.tolist() for k, v in self.values.items()},
            "computed": self.computed.tolist(),
            "metadata": self.metadata,
            "trajectory": None if self.trajectory is None else np.asarray(self.trajectory).tolist(),
        }

    def plot(self, kind: str | None = None, metric: str = "loss", ax=None, **kwargs):
        """Draw the result: ``kind`` in ``"contour"`` (default for 2-D), ``"contourf"``, ``"heatmap"``,
        ``"surface3d"`` or ``"curve"`` (default for 1-D). Returns the matplotlib Axes."""
        kind = kind or ("curve" if self.ndim == 1 else "contour")
        funcs: dict[str, Callable[..., Any]] = {
            "contour": lp.plot_contour,
            "contourf": lp.plot_filled_contour,
            "heatmap": lp.plot_heatmap,
            "surface3d": lp.plot_surface3d,
            "curve": lp.plot_curve,
        }
        if kind not in funcs:
            raise ValueError(f"Expected `kind` to be one of {tuple(funcs)}, got {kind!r}")
        if kind == "curve":
            return lp.plot_curve(self, ax=ax, **kwargs)
        return funcs[kind](self, metric=metric, ax=ax, **kwargs)

    def save(self, path) -> None:
        """Write ``<path>.npz`` and ``<path>.json`` atomically (see :func:`save_surface`)."""
        save_surface(self, path)

    @classmethod
    def load(cls, path) -> SurfaceResult:
        """Read a result written by :meth:`save`."""
        return load_surface(path)


def save_surface(result: SurfaceResult, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``result`` as ``<path>.npz`` (axes, values, computed mask, metadata JSON) and ``<path>.json``.

    Both writes are atomic. NaN and inf values are stored as such. Returns the two paths.

    Examples:
        >>> r = SurfaceResult([np.arange(3.0)], {"loss": np.array([1.0, np.nan, 2.0])}, np.ones(3, bool))
        >>> npz, js = save_surface(r, "curve")  # doctest: +SKIP
    """
    npz_path, json_path = surface_paths(path)
    meta_json = json.dumps(result.metadata, default=_json_default, allow_nan=True, sort_keys=True)
    arrays: dict[str, np.ndarray] = {f"axis_{i}": a for i, a in enumerate(result.axes)}
    arrays.update({f"value_{k}": v for k, v in result.values.items()})
    arrays["computed"] = result.computed
    arrays["metadata"] = np.array(meta_json)
    arrays["metric_names"] = np.array(list(result.values), dtype=np.str_)
    if result.trajectory is not None:
        arrays["trajectory"] = np.asarray(result.trajectory, dtype=np.float64)
    _atomic_write(npz_path, lambda fh: cast(Any, np.savez)(fh, **arrays))
    summary = {
        "metadata": json.loads(meta_json),
        "shape": list(result.shape),
        "computed_points": int(result.computed.sum()),
        "total_points": int(result.computed.size),
        "npz": npz_path.name,
    }
    text = json.dumps(summary, indent=2, sort_keys=True, allow_nan=True)
    _atomic_write(json_path, lambda fh: fh.write(text.encode()))
    return npz_path, json_path


def load_surface(path: str | os.PathLike) -> SurfaceResult:
    """Read a surface written by :func:`save_surface` (the ``.npz`` is self-contained).

    Raises:
        ValueError: when no ``<path>.npz`` exists.
    """
    npz_path, _ = surface_paths(path)
    if not npz_path.exists():
        raise ValueError(f"Expected a saved surface at {str(npz_path)!r}, got no such file")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            ndim = sum(1 for k in data.files if k.startswith("axis_"))
            axes = [data[f"axis_{i}"] for i in range(ndim)]
            values = {str(k): data[f"value_{k}"] for k in data["metric_names"]}
            computed = data["computed"]
            metadata = json.loads(str(data["metadata"]))
            trajectory = data["trajectory"] if "trajectory" in data.files else None
        if not axes or not values or not isinstance(metadata, dict):
            raise ValueError("no axes, no metrics or no metadata")
        return SurfaceResult(axes, values, computed, metadata, trajectory)
    # never "allow_pickle": a surface holds no objects, so a file that needs it is not one of ours
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        what = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise ValueError(f"Expected a surface written by save_surface at {str(npz_path)!r}, got a file that is not "
                         f"one or is damaged ({type(err).__name__}: {what}); delete it to start over") from None
