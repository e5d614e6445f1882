"""Directions in weight space: seeded random (filter/layer-normalised), towards another model, orthogonalised.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913),
Section 4: a Gaussian direction ``d`` is rescaled filter by filter, ``d_ij <- d_ij / ||d_ij|| * ||theta_ij||``,
so that plots of different networks (and of scale-invariant networks) are comparable. Biases and normalisation
parameters get a zero direction by default (the paper's ``biasbn`` option).

A :class:`Direction` is a dictionary of tensors keyed like the model's ``named_parameters()`` (``kind="weights"``)
or its floating-point ``state_dict()`` entries (``kind="states"``, running statistics included), plus a small
JSON-able description (``info``) that goes into saved surfaces.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lightning_papers import _validation as check

__all__ = [
    "Direction", "SUPPORTED_KINDS", "SUPPORTED_NORMALIZATIONS", "orthogonalize", "random_direction",
    "random_directions", "target_direction", "ignored_keys", "landscape_tensors",
]

SUPPORTED_KINDS = ("weights", "states")
SUPPORTED_NORMALIZATIONS = ("filter", "layer", "none")
SUPPORTED_IGNORE = ("bias", "norm")

_NORM_TYPES: tuple[type, ...] = tuple(
    t
    for t in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
        nn.LayerNorm,
        nn.GroupNorm,
        getattr(nn, "RMSNorm", None),
    )
    if t is not None
)
_EPS = 1e-10


@dataclass
class Direction:
    """One direction in weight (or state) space.

    Attributes:
        tensors: direction tensors keyed like the model's parameters (``kind="weights"``) or floating-point
            state entries (``kind="states"``); ignored entries hold zeros.
        kind: ``"weights"`` or ``"states"``.
        info: JSON-able description (how it was made: type, seed, normalisation, ignore), saved with surfaces.

    Examples:
        >>> d = random_direction(nn.Linear(3, 2), seed=0)
        >>> sorted(d.tensors), d.kind
        (['bias', 'weight'], 'weights')
    """

    tensors: dict[str, torch.Tensor]
    kind: str = "weights"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in SUPPORTED_KINDS:
            raise ValueError(f"Expected `kind` to be one of {SUPPORTED_KINDS}, got {self.kind!r}")
        if not isinstance(self.tensors, Mapping) or not self.tensors:
            raise ValueError(f"Expected `tensors` to be a non-empty mapping of name -> tensor, got {self.tensors!r}")

    def dot(self, other: Direction) -> float:
        """Inner product over all entries (float64 accumulation)."""
        return float(sum((a.double() * other.tensors[k].double()).sum() for k, a in self.tensors.items()))

    def norm(self) -> float:
        """Euclidean norm over all entries."""
        return math.sqrt(self.dot(self))

    def fingerprint(self) -> str:
        """A short hash of the direction's values (names, shapes and bytes), for surface metadata."""
        h = hashlib.sha256()
        for k, t in self.tensors.items():
            h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: kind, info, number of entries and elements, norm and fingerprint."""
        return {
            "kind": self.kind,
            **self.info,
            "num_tensors": len(self.tensors),
            "num_elements": int(sum(t.numel() for t in self.tensors.values())),
            "norm": self.norm(),
            "fingerprint": self.fingerprint(),
        }


def check_materialised(model: nn.Module) -> None:
    """Refuse a model whose weights are not there: parameters or buffers on the ``meta`` device (a model built under
    ``torch.device("meta")`` or by ``init_empty_weights`` and never loaded) have shapes and no values.

    Raises:
        ValueError: naming the first such tensor and the fix.
    """
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.device.type == "meta":
            raise ValueError(f"Expected a model with its weights on a real device, got {name!r} on the meta device "
                             "(shapes, no values): materialise it first (model.to_empty(device='cpu'), then load "
                             "its state_dict)")


def landscape_tensors(model: nn.Module, kind: str = "weights") -> dict[str, torch.Tensor]:
    """The model's tensors a direction of ``kind`` covers: parameters, or floating-point state entries.

    Returns the live tensors (parameters / buffers themselves, not copies), in a stable order.

    Raises:
        ValueError: for an unknown ``kind``, or a model on the meta device (:func:`check_materialised`).
    """
    if kind not in SUPPORTED_KINDS:
        raise ValueError(f"Expected `kind` to be one of {SUPPORTED_KINDS}, got {kind!r}")
    check_materialised(model)
    if kind == "weights":
        return dict(model.named_parameters())
    return {k: v for k, v in model.state_dict(keep_vars=True).items() if torch.is_floating_point(v)}


def _owners(model: nn.Module) -> dict[str, nn.Module]:
    """Map each parameter/buffer name to the module that owns it directly."""
    owners: dict[str, nn.Module] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        for name, _ in module.named_parameters(recurse=False):
            owners[prefix + name] = module
        for name, _ in module.named_buffers(recurse=False):
            owners[prefix + name] = module
    return owners


def _check_ignore(ignore: Iterable[str]) -> tuple[str, ...]:
    if isinstance(ignore, str):
        ignore = (ignore,)
    ignore = tuple(ignore)
    for item in ignore:
        if item not in SUPPORTED_IGNORE:
            raise ValueError(f"Expected `ignore` entries to be among {SUPPORTED_IGNORE}, got {item!r}")
    return ignore


def ignored_keys(model: nn.Module, kind: str = "weights", ignore: Iterable[str] = ("bias", "norm")) -> set[str]:
    """Names that get a zero direction: ``"bias"`` (any entry named ``bias``) and ``"norm"`` (every
    parameter and buffer of a normalisation layer: BatchNorm, InstanceNorm, LayerNorm, GroupNorm, RMSNorm).

    Raises:
        ValueError: for an unknown ``kind`` or ``ignore`` entry.
    """
    ignore = _check_ignore(ignore)
    owners = _owners(model)
    out = set()
    for key in landscape_tensors(model, kind):
        owner = owners.get(key)
        if "bias" in ignore and key.rsplit(".", 1)[-1] == "bias":
            out.add(key)
        if "norm" in ignore and isinstance(owner, _NORM_TYPES):
            out.add(key)
    return out


def _filter_dim(owner: nn.Module | None, key: str) -> int:
    # ConvTranspose weights are (in, out / groups, *k): their output filters run along dim 1.
    if isinstance(owner, nn.modules.conv._ConvTransposeNd) and key.rsplit(".", 1)[-1] == "weight":
        return 1
    return 0


def _normalize_(d: torch.Tensor, w: torch.Tensor, normalization: str, dim: int) -> torch.Tensor:
    if normalization == "none":
        return d
    if normalization == "layer" or d.dim() <= 1:
        # 0-D/1-D entries that are not ignored count as one "filter" (there is no filter axis to split).
        return d.mul_(w.norm() / (d.norm() + _EPS))
    dims = [i for i in range(d.dim()) if i != dim]
    d_norm = torch.linalg.vector_norm(d, dim=dims, keepdim=True)
    w_norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
    return d.mul_(w_norm / (d_norm + _EPS))


def random_direction(
    model: nn.Module,
    seed: int = 0,
    normalization: str = "filter",
    ignore: Iterable[str] = ("bias", "norm"),
    kind: str = "weights",
) -> Direction:
    """A seeded Gaussian direction, normalised to the model's weights.

    The Gaussian draw is made on the CPU in float32 from ``torch.Generator().manual_seed(seed)`` entry by entry
    (ignored entries included, then zeroed), so a seed gives the same direction on every device and for every
    ``ignore`` choice.

    Args:
        model: the centre model (its weights set the filter/layer norms).
        seed: seed of the draw.
        normalization: ``"filter"`` (each output filter rescaled to the norm of the matching weight filter;
            output channels are dim 0 for Conv/Linear and dim 1 for ConvTranspose), ``"layer"`` (each tensor
            rescaled to the tensor's norm) or ``"none"`` (raw Gaussian).
        ignore: entries that get a zero direction: ``"bias"`` and/or ``"norm"`` (normalisation layers).
        kind: ``"weights"`` (parameters only; BatchNorm running statistics stay the centre model's) or
            ``"states"`` (every floating-point state entry, running statistics included).

    Raises:
        ValueError: for an unknown ``normalization``, ``kind`` or ``ignore`` entry, or a non-integer ``seed``.

    Examples:
        >>> d = random_direction(nn.Conv2d(3, 8, 3), seed=1)
        >>> d.tensors["weight"].shape, bool(d.tensors["bias"].any())
        (torch.Size([8, 3, 3, 3]), False)
    """
    if normalization not in SUPPORTED_NORMALIZATIONS:
        raise ValueError(f"Expected `normalization` to be one of {SUPPORTED_NORMALIZATIONS}, got {normalization!r}")
    check.integer("seed", seed)
    ignore = _check_ignore(ignore)
    tensors = landscape_tensors(model, kind)
    skip = ignored_keys(model, kind, ignore)
    owners = _owners(model)
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, w in tensors.items():
            d = torch.randn(w.shape, generator=gen, dtype=torch.float32)
            if key in skip:
                d.zero_()
            else:
                d = _normalize_(d, w.detach().float().cpu(), normalization, _filter_dim(owners.get(key), key))
            out[key] = d.to(device=w.device, dtype=w.dtype)
    info = {"type": "random", "seed": seed, "normalization": normalization, "ignore": list(ignore)}
    return Direction(out, kind=kind, info=info)


def random_directions(
    model: nn.Module,
    n: int = 2,
    seed: int = 0,
    normalization: str = "filter",
    ignore: Iterable[str] = ("bias", "norm"),
    kind: str = "weights",
    orthogonal: bool = False,
) -> list[Direction]:
    """``n`` random directions with seeds ``seed, seed + 1, ...`` (see :func:`random_direction`).

    Args:
        model: the centre model.
        n: number of directions (1 or 2 for a curve or a surface).
        seed: seed of the first direction.
        normalization: see :func:`random_direction`.
        ignore: see :func:`random_direction`.
        kind: see :func:`random_direction`.
        orthogonal: orthogonalise each direction against the previous ones (Gram-Schmidt). In high dimension
            random directions are nearly orthogonal already (the paper relies on this); after the projection
            the filter norms no longer match the weights' exactly.

    Raises:
        ValueError: for ``n < 1`` and as :func:`random_direction`.

    Examples:
        >>> d1, d2 = random_directions(nn.Linear(4, 3), seed=0, ignore=(), orthogonal=True)
        >>> abs(d1.dot(d2)) < 1e-6
        True
    """
    check.positive_int("n", n)
    if not isinstance(model, nn.Module):  # a model name, say: named, not "'str' object has no attribute ..."
        raise ValueError(f"Expected `model` to be a torch.nn.Module, got {type(model).__name__} {model!r:.60}: build "
                         "it first (e.g. lightning_papers.models.get_model)")
    dirs: list[Direction] = []
    for i in range(n):
        d = random_direction(model, seed + i, normalization, ignore, kind)
        if orthogonal and dirs:
            d = orthogonalize(d, dirs)
        dirs.append(d)
    return dirs


def orthogonalize(direction: Direction, against: Direction | Sequence[Direction]) -> Direction:
    """Remove from ``direction`` its components along ``against`` (modified Gram-Schmidt, float64 dots).

    Raises:
        ValueError: when the directions' kinds or keys differ, or a direction to project on is zero.
    """
    others = [against] if isinstance(against, Direction) else list(against)
    tensors = {k: v.clone() for k, v in direction.tensors.items()}
    for other in others:
        if other.kind != direction.kind or set(other.tensors) != set(tensors):
            raise ValueError(
                f"Expected directions of the same kind and keys, got {direction.kind!r} and {other.kind!r}"
            )
        denom = other.dot(other)
        if denom == 0.0:
            raise ValueError("Expected a non-zero direction to orthogonalise against, got a zero direction")
        coef = Direction(tensors, direction.kind).dot(other) / denom
        for k in tensors:
            tensors[k] = (tensors[k].double() - coef * other.tensors[k].double()).to(tensors[k].dtype)
    info = {**direction.info, "orthogonalized": True}
    return Direction(tensors, kind=direction.kind, info=info)


def target_direction(
    model: nn.Module,
    target: nn.Module | Mapping[str, torch.Tensor],
    kind: str = "weights",
    ignore: Iterable[str] = (),
) -> Direction:
    """The direction from ``model`` (A) to ``target`` (B): ``B - A``, so ``alpha = 1`` lands on B.

    Used for 1-D linear interpolation between two solutions (Goodfellow et al.; Li et al. Section 3) or between
    the start and the end of training (Smith & Topin, arXiv 1702.04283).

    Args:
        model: model A, the centre (alpha = 0).
        target: model B or its state dict (same architecture).
        kind: ``"weights"`` or ``"states"`` (see :func:`random_direction`).
        ignore: entries whose direction is zeroed (none by default: interpolation moves every weight).

    Raises:
        ValueError: when ``target`` lacks an entry of ``model`` or its shape differs.

    Examples:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> d = target_direction(a, b)
        >>> torch.allclose(a.weight + d.tensors["weight"], b.weight)
        True
    """
    ignore = _check_ignore(ignore)
    tensors = landscape_tensors(model, kind)
    other = target.state_dict(keep_vars=True) if isinstance(target, nn.Module) else dict(target)
    skip = ignored_keys(model, kind, ignore)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for key, w in tensors.items():
            if key not in other:
                raise ValueError(f"Expected `target` to have an entry {key!r} like the model, got none")
            t = other[key]
            if tuple(t.shape) != tuple(w.shape):
                raise ValueError(f"Expected `target[{key!r}]` to have shape {tuple(w.shape)}, got {tuple(t.shape)}")
            d = t.detach().to(device=w.device, dtype=w.dtype) - w.detach()
            out[key] = torch.zeros_like(d) if key in skip else d
    return Direction(out, kind=kind, info={"type": "target", "ignore": list(ignore)})
