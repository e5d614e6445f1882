"""PCA directions of an optimisation trajectory, and the trajectory's path in their plane.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
Section 7: random directions are nearly orthogonal to the (low-dimensional) optimisation path, so the path is
drawn in the plane of the two leading principal components of ``[theta_i - theta_n]``, the differences between
the checkpoints and the final weights.

The principal components come from the small ``T x T`` Gram matrix of those differences, accumulated one
parameter tensor at a time, so no ``checkpoints x parameters`` matrix is ever built; a second streamed pass
assembles the (unit-norm) directions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_papers import _validation as check
from lightning_papers.landscape.directions import Direction, ignored_keys, landscape_tensors


@dataclass
class PCADirections:
    """Principal directions of a trajectory.

    Attributes:
        directions: unit-norm directions (``n_components`` of them), centred on the final checkpoint.
        explained_variance_ratio: share of the trajectory's variance along each direction.
        singular_values: singular values of the (centred) difference matrix.
        path: (T, n_components) coordinates of every checkpoint in the directions' frame, origin at the final one.
        final_state: the final checkpoint's tensors (load it into the model to centre a surface on it).
    """

    directions: list[Direction]
    explained_variance_ratio: np.ndarray
    singular_values: np.ndarray
    path: np.ndarray
    final_state: dict[str, torch.Tensor]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (no tensors)."""
        return {
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "singular_values": self.singular_values.tolist(),
            "path": self.path.tolist(),
            "directions": [d.to_dict() for d in self.directions],
        }

    def plot(self, ax=None, **kwargs):
        """Draw the path (see :func:`lightning_papers.landscape.plot.plot_trajectory`)."""
        from lightning_papers.landscape.plot import plot_trajectory

        return plot_trajectory(self.path, ax=ax, explained_variance_ratio=self.explained_variance_ratio, **kwargs)


def _load(item: Mapping[str, torch.Tensor] | str | os.PathLike) -> Mapping[str, Any]:
    if isinstance(item, (str, os.PathLike)):
        # mmap: tensors are read from disk on access, so T checkpoints cost little memory.
        item = torch.load(item, map_location="cpu", mmap=True, weights_only=True)
    if isinstance(item, Mapping) and "state_dict" in item and isinstance(item["state_dict"], Mapping):
        item = item["state_dict"]  # a Lightning checkpoint
    if not isinstance(item, Mapping):
        raise ValueError(f"Expected a state dict or a checkpoint path in `trajectory`, got {type(item).__name__}")
    return item


def _lookup(state: Mapping[str, Any], key: str) -> torch.Tensor:
    if key in state:
        return state[key]
    # Lightning checkpoints prefix the model's names with the LightningModule attribute (e.g. "model.").
    matches = [k for k in state if k.endswith("." + key)]
    if len(matches) == 1:
        return state[matches[0]]
    raise ValueError(f"Expected every checkpoint to hold {key!r} (or one `<prefix>.{key}`), got {len(matches)}")


def _combinations(names: Mapping[str, torch.Tensor], skip: set[str] | Iterable[str], states: list[Any],
                  coeffs: np.ndarray) -> list[dict[str, torch.Tensor]]:
    """Each direction ``sum_i coeffs[i, j] (theta_i - theta_final)``, one entry at a time (zero for ``skip``)."""
    n_components = coeffs.shape[1]
    final = states[-1]
    dirs: list[dict[str, torch.Tensor]] = [{} for _ in range(n_components)]
    for key, ref in names.items():
        if key in skip:
            for j in range(n_components):
                dirs[j][key] = torch.zeros_like(ref, device="cpu")
            continue
        end = _lookup(final, key).double()
        acc = torch.zeros((n_components, *end.shape), dtype=torch.float64)
        for i, s in enumerate(states[:-1]):
            diff = _lookup(s, key).double() - end
            for j in range(n_components):
                acc[j].add_(diff, alpha=float(coeffs[i, j]))
        for j in range(n_components):
            dirs[j][key] = acc[j].to(ref.dtype)
    return dirs


def pca_directions(
    model: nn.Module,
    trajectory: Sequence[Mapping[str, torch.Tensor] | str | os.PathLike],
    n_components: int = 2,
    kind: str = "weights",
    ignore: Iterable[str] = ("bias", "norm"),
    center: bool = True,
) -> PCADirections:
    """Principal directions of ``trajectory`` around its last checkpoint.

    Args:
        model: the architecture (names, shapes, which entries are biases / normalisation). Its own weights are
            not used.
        trajectory: state dicts or checkpoint paths (``torch.save``-d state dicts or Lightning ``.ckpt`` files),
            in training order; the last one is the centre.
        n_components: number of directions.
        kind: ``"weights"`` or ``"states"``.
        ignore: entries left out of the PCA (zero direction), as in :func:`random_direction`.
        center: subtract the mean difference before the decomposition (standard PCA, as
            ``sklearn.decomposition.PCA`` does); ``False`` decomposes the raw differences.

    Raises:
        ValueError: for fewer than ``n_components + 1`` checkpoints, a non-positive ``n_components``, or
            checkpoints that miss an entry.

    Examples:
        >>> net = nn.Linear(3, 2)
        >>> states = [{k: v + 0.1 * i * torch.randn_like(v) for k, v in net.state_dict().items()} for i in range(5)]
        >>> pca = pca_directions(net, states, ignore=())
        >>> pca.path.shape
        (5, 2)
    """
    check.positive_int("n_components", n_components)
    if len(trajectory) < n_components + 1:
        raise ValueError(
            f"Expected `trajectory` to hold at least n_components + 1 = {n_components + 1} checkpoints, "
            f"got {len(trajectory)}"
        )
    states = [_load(item) for item in trajectory]
    names = landscape_tensors(model, kind)
    skip = ignored_keys(model, kind, ignore)
    keys = [k for k in names if k not in skip]
    final = states[-1]
    t = len(states) - 1  # the final checkpoint's own difference is zero: leave it out
    gram = np.zeros((t, t), dtype=np.float64)
    for key in keys:  # one parameter tensor at a time: a T x numel(key) block, never T x P
        end = _lookup(final, key).double().flatten()
        block = torch.stack([_lookup(s, key).double().flatten() - end for s in states[:-1]])
        gram += (block @ block.T).numpy()
    if center:
        h = np.eye(t) - np.full((t, t), 1.0 / t)
        work = h @ gram @ h
    else:
        h = np.eye(t)
        work = gram
    eigvals, eigvecs = np.linalg.eigh(work)
    order = np.argsort(eigvals)[::-1]
    eigvals, eigvecs = np.clip(eigvals[order], 0.0, None), eigvecs[:, order]
    total = eigvals.sum()
    if eigvals[n_components - 1] <= 0.0:
        raise ValueError(f"Expected the trajectory to span {n_components} dimensions, got a degenerate trajectory")
    sv = np.sqrt(eigvals[:n_components])
    # v_j = D^T H u_j / s_j: combination weights of the checkpoints' differences for each direction.
    coeffs = (h @ eigvecs[:, :n_components]) / sv  # (t, n)
    dirs = _combinations(names, skip, states, coeffs)
    # Coordinates of theta_i - theta_n on the unit directions: D v_j = G H u_j / s_j (last checkpoint: origin).
    path = np.zeros((t + 1, n_components))
    path[:t] = gram @ coeffs
    info = [{"type": "pca", "component": j, "ignore": list(ignore), "center": center} for j in range(n_components)]
    directions = [Direction(dirs[j], kind=kind, info=info[j]) for j in range(n_components)]
    final_state = {k: _lookup(final, k).detach().clone() for k in names}
    return PCADirections(
        directions=directions,
        explained_variance_ratio=eigvals[:n_components] / total,
        singular_values=sv,
        path=path,
        final_state=final_state,
    )
