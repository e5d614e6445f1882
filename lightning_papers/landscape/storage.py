"""Saving and resuming loss surfaces: ``.npz`` (arrays + metadata) and ``.json`` (metadata, for people).

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913):
a surface costs one full evaluation per grid point, so partial results are written every few points (write
to a temporary file, then ``os.replace``: a crash never leaves a torn file) and a resumed run skips the
points already there - but only when the saved metadata (grid, directions, model and data fingerprints,
options) matches; otherwise it refuses instead of silently mixing two different surfaces.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_papers import _validation as check

__all__ = [
    "MATCH_KEYS", "SurfaceStore", "callable_identity", "check_metadata", "data_fingerprint", "model_fingerprint",
    "surface_paths",
]

# Metadata entries that must be equal for a saved surface to be resumed (and, but for `shard`, for parts to merge).
MATCH_KEYS = ("ndim", "axes", "directions", "model", "data", "metrics", "evaluation", "shard", "autocast_dtype",
              "recompute_bn")


@dataclass(frozen=True)
class SurfaceStore:
    """Where a surface is saved while it is computed, and whether a saved one is resumed.

    Args:
        path: save ``<path>.npz`` / ``<path>.json`` every ``save_every`` points and at the end (``None``: keep it in
            memory only).
        resume: continue the surface saved at ``path`` (its points are skipped); one whose metadata differs is
            refused.
        save_every: points between two saves.

    Raises:
        ValueError: for a non-positive ``save_every`` or ``resume`` without ``path``.
    """

    path: str | os.PathLike | None = None
    resume: bool = False
    save_every: int = 10

    def __post_init__(self) -> None:
        check.positive_int("save_every", self.save_every)
        if self.resume and self.path is None:
            raise ValueError("Expected a `path` to resume from, got `resume=True` with `path=None`")


def callable_identity(fn: object) -> str:
    """What a loss or metric is, for a surface's metadata: ``module.qualname#<hash of its code>`` (so an edited
    function, or another lambda, differs), a ``describe()`` of its own when it has one, and partials with their
    arguments.

    Examples:
        >>> callable_identity(len)
        'builtins.len'
    """
    if isinstance(fn, functools.partial):
        return f"partial({callable_identity(fn.func)}, args={fn.args!r}, keywords={sorted(fn.keywords.items())!r})"
    describe = getattr(fn, "describe", None)
    if callable(describe):
        return str(describe())
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"
    call = vars(type(fn)).get("__call__")  # a callable object: its class's __call__ is the code that runs
    code = getattr(fn, "__code__", None) or getattr(call, "__code__", None)
    if code is None or name.split(".", 1)[0] in ("torch", "numpy", "builtins"):  # a library's: its name says it
        return name
    digest = hashlib.sha256(code.co_code + repr(code.co_consts).encode() + repr(code.co_names).encode())
    return f"{name}#{digest.hexdigest()[:12]}"


def surface_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(<stem>.npz, <stem>.json)`` for ``path`` given with or without either suffix."""
    p = Path(path)
    if p.suffix in (".npz", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".npz"), p.with_name(p.name + ".json")


def _hash_tensor(h, t: torch.Tensor) -> None:
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def model_fingerprint(model: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{"shapes": hash of names/shapes/dtypes, "weights": hash of the state's bytes}`` (16 hex digits each)."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    hs, hw = hashlib.sha256(), hashlib.sha256()
    for k, v in state.items():
        hs.update(f"{k}:{tuple(v.shape)}:{v.dtype};".encode())
        _hash_tensor(hw, v)
    return {"shapes": hs.hexdigest()[:16], "weights": hw.hexdigest()[:16]}


def data_fingerprint(batches: Iterable[Any]) -> str:
    """Hash of every tensor in ``batches`` (shapes, dtypes and bytes), 16 hex digits."""
    h = hashlib.sha256()

    def visit(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            h.update(f"{tuple(obj.shape)}:{obj.dtype};".encode())
            _hash_tensor(h, obj)
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                visit(o)
        elif isinstance(obj, Mapping):
            for k in sorted(obj):
                visit(obj[k])

    for batch in batches:
        visit(batch)
    return h.hexdigest()[:16]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return str(obj)


def _normalise(obj: Any) -> Any:
    """Round-trip through JSON, so tuples vs lists and numpy scalars compare equal."""
    return json.loads(json.dumps(obj, default=_json_default))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the user's usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def check_metadata(saved: Mapping[str, Any], expected: Mapping[str, Any], where: str = "the saved surface",
                   keys: Iterable[str] = MATCH_KEYS,
                   hint: str = "delete the file or pass `resume=False` to start over") -> None:
    """Refuse to resume from (or merge) a surface made with another grid, directions, model, data, loss or options.

    Raises:
        ValueError: naming the first entry of ``keys`` (default :data:`MATCH_KEYS`) that differs.
    """
    saved_n, expected_n = _normalise(dict(saved)), _normalise(dict(expected))
    for key in keys:
        if saved_n.get(key) != expected_n.get(key):
            theirs, ours = (_short(saved_n.get(key)), _short(expected_n.get(key)))
            raise ValueError(f"Expected {where} to match this run's `{key}`, got {theirs} instead of {ours}; {hint}")


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + " ...]"
