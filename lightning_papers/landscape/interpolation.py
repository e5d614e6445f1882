"""``interpolate``: the loss along the straight line from a start state to the model's current weights.

Goodfellow, Vinyals & Saxe, Qualitatively characterizing neural network optimization problems, 2015 (arXiv
1412.6544); Smith & Topin, Exploring loss function topology with cyclical learning rates, 2017 (arXiv
1702.04283), who draw it from the initial to the final weights of a cyclical run; Li et al., Visualizing the
Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913), Section 3, for 1-D linear interpolation in general.

One convention everywhere in the package: ``alpha = 0`` is the start state (e.g. the weights at the start of
training), ``alpha = 1`` the model's current weights, and alphas outside [0, 1] extrapolate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_papers.landscape.directions import target_direction
from lightning_papers.landscape.evaluation import EvaluationSpec, preserved_model
from lightning_papers.landscape.result import SurfaceResult
from lightning_papers.landscape.surface import surface

__all__ = ["interpolate"]


def interpolate(
    model: nn.Module,
    start: Mapping[str, torch.Tensor],
    alphas: Sequence[float] | np.ndarray,
    spec: EvaluationSpec | Any,
    *,
    kind: str = "states",
    **options: Any,
) -> SurfaceResult:
    """Evaluate ``start + alpha (current - start)`` for each ``alpha``: 0 is ``start``, 1 the model as it is.

    Args:
        model: the model at its current (e.g. final) weights; it comes back bit-identical.
        start: a state dict of the same model (e.g. ``{k: v.clone() for k, v in model.state_dict().items()}``
            taken at the start of training).
        alphas: the points of the line.
        spec: the :class:`~lightning_papers.landscape.EvaluationSpec` (or the data), as for
            :func:`~lightning_papers.landscape.surface`.
        kind: ``"states"`` (weights and BatchNorm running statistics move together, so alpha 0 is exactly the
            start model) or ``"weights"`` (parameters only; running statistics stay the current ones).
        **options: passed on to :func:`~lightning_papers.landscape.surface` (``store``, ``progress``, or the spec's
            fields when ``spec`` is data).

    Returns:
        a 1-D :class:`SurfaceResult` over ``alphas``, with ``metadata["interpolation"]`` saying which end is which.

    Raises:
        ValueError: when ``start`` lacks an entry of the model or its shape differs, or as ``surface`` does.

    Examples:
        >>> net = nn.Linear(4, 3)
        >>> start = {k: v.clone() for k, v in net.state_dict().items()}
        >>> with torch.no_grad():
        ...     _ = net.weight.add_(1.0)
        >>> r = interpolate(net, start, [0.0, 1.0], (torch.randn(8, 4), torch.randint(0, 3, (8,))))
        >>> r["loss"].shape
        (2,)
    """
    state = model.state_dict(keep_vars=True)
    for key, tensor in state.items():
        if key not in start:
            raise ValueError(f"Expected `start` to have an entry {key!r} like the model, got none")
        if tuple(start[key].shape) != tuple(tensor.shape):
            raise ValueError(f"Expected `start[{key!r}]` to have shape {tuple(tensor.shape)}, "
                             f"got {tuple(start[key].shape)}")
    with preserved_model(model) as current:
        with torch.no_grad():
            for key, tensor in state.items():
                tensor.copy_(start[key])
        direction = target_direction(model, current, kind=kind)
        result = surface(model, direction, np.asarray(alphas, dtype=np.float64), spec, **options)
    result.metadata["interpolation"] = {"alpha=0": "start", "alpha=1": "current weights", "kind": kind}
    return result
