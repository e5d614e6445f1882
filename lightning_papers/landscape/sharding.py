"""Splitting a grid across processes and merging the parts back.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913)
computed their surfaces with MPI, one grid point per worker at a time. Here the split is static and
round-robin over the flattened grid (point ``i`` belongs to rank ``i % world_size``, so every rank gets a
spread of cheap and expensive points); each rank computes its share with ``surface(..., shard=(rank, world))``
and :func:`merge_surfaces` assembles the same arrays a single process would have produced.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

from lightning_papers import _validation as check
from lightning_papers.landscape.result import SurfaceResult, load_surface
from lightning_papers.landscape.storage import MATCH_KEYS, check_metadata, surface_paths

__all__ = ["check_shard", "merge_surfaces", "shard_indices"]


def check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    """Validate ``shard = (rank, world_size)``; ``None`` means ``(0, 1)``.

    Raises:
        ValueError: unless ``0 <= rank < world_size``.
    """
    if shard is None:
        return 0, 1
    if not isinstance(shard, (tuple, list)) or len(shard) != 2:
        raise ValueError(f"Expected `shard` to be (rank, world_size), got {shard!r}")
    fix = f"`shard` is (rank, world_size), got {tuple(shard)!r}"
    world_size = check.positive_int("world_size", shard[1], fix=fix)
    return check.integer("rank", shard[0], 0, world_size - 1, fix=fix), world_size


def shard_indices(shape: Sequence[int], rank: int = 0, world_size: int = 1) -> np.ndarray:
    """Flat (C-order) indices of the grid points owned by ``rank``: ``rank, rank + world_size, ...``.

    Examples:
        >>> shard_indices((2, 3), rank=1, world_size=2).tolist()
        [1, 3, 5]
    """
    rank, world_size = check_shard((rank, world_size))
    return np.arange(rank, int(np.prod(shape)), world_size)


def merge_surfaces(parts: Sequence[SurfaceResult | str | os.PathLike]) -> SurfaceResult:
    """Combine per-rank (or partial) results of the same grid into one.

    ``parts`` are results or the paths they were saved under (``surface(..., path=...)``, ``save_surface``: with or
    without ``.npz``). Points computed by several parts must agree (NaN equals NaN). The merged metadata is the
    first part's, with ``shard`` set to ``None``. Shards of one split that lack a rank are merged with a warning
    naming the absent ranks.

    Raises:
        ValueError: for no parts, a file that is not a saved surface, one shard (or one file) given twice, parts
            with different grids, metrics or metadata (directions, model and data fingerprints, what was evaluated:
            the same checks as resuming), or parts that disagree on a point.
    """

    if isinstance(parts, (str, os.PathLike, SurfaceResult)):
        parts = [parts]
    if not parts:
        raise ValueError("Expected at least one surface to merge, got none")
    files = [surface_paths(p)[0].resolve() for p in parts if isinstance(p, (str, os.PathLike))]
    twice = sorted({str(f) for f in files if files.count(f) > 1})
    if twice:
        raise ValueError(f"Expected each saved part once, got {twice[0]!r} twice; merge each shard's file once")
    for p in parts:
        if not isinstance(p, (SurfaceResult, str, os.PathLike)):
            raise ValueError(f"Expected SurfaceResults or paths of saved surfaces, got {type(p).__name__}")
    results = [p if isinstance(p, SurfaceResult) else load_surface(p) for p in parts]
    shards = [tuple(p.metadata["shard"]) if p.metadata.get("shard") else None for p in results]
    for i, shard in enumerate(shards):
        if shard is not None and shard in shards[:i]:
            raise ValueError(f"Expected each shard once, got shard (rank, world_size) = {shard} in parts "
                             f"{shards.index(shard)} and {i}; merge one result per rank")
    first = results[0]

    for i, part in enumerate(results[1:], start=1):  # the same computation, as resuming checks (but for the shard)
        check_metadata(part.metadata, first.metadata, where=f"part {i}", keys=[k for k in MATCH_KEYS if k != "shard"],
                       hint="merge only shards of one surface")
    values = {k: np.full(first.shape, np.nan) for k in first.values}
    computed = np.zeros(first.shape, dtype=bool)
    for part in results:
        if part.shape != first.shape or not all(np.array_equal(a, b) for a, b in zip(part.axes, first.axes)):
            raise ValueError(f"Expected parts with the same grid, got shapes {first.shape} and {part.shape}")
        if set(part.values) != set(first.values):
            raise ValueError(
                f"Expected parts with the same metrics, got {sorted(first.values)} and {sorted(part.values)}"
            )
        both = computed & part.computed
        for k, v in part.values.items():
            if not np.array_equal(values[k][both], v[both], equal_nan=True):
                raise ValueError(f"Expected overlapping parts to agree, got different `{k}` values")
            values[k][part.computed] = v[part.computed]
        computed |= part.computed
    metadata = {**first.metadata, "shard": None}
    worlds = {s[1] for s in shards if s is not None}
    if len(worlds) == 1 and None not in shards:  # shards of one split: say which ranks are absent
        world = worlds.pop()
        absent = sorted(set(range(world)) - {s[0] for s in shards if s is not None})
        if absent:
            warnings.warn(f"The merged surface lacks the points of rank(s) {absent} of {world} "
                          f"({int((~computed).sum())} of {computed.size} points not computed, NaN): merge every "
                          "rank's part", UserWarning, stacklevel=2)
    return SurfaceResult(list(first.axes), values, computed, metadata, first.trajectory)
