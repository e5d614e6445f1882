"""Say which Relationship of Dumoulin & Visin, A guide to convolution arithmetic for deep learning, 2016
(arXiv 1603.07285) sizes a layer, and work the formula out with the layer's numbers.

Examples:
    >>> print(explain(input_size=32, k=3, s=2, p=1))
    Relationship 6 (zero padding, non-unit strides): o = ⌊(i + 2p − k)/s⌋ + 1 = ⌊(32 + 2 − 3)/2⌋ + 1 = 16
    note: (i + 2p − k) mod s = 31 mod 2 = 1 ≠ 0, so the last 1 row/column of the padded input is never \
covered by the kernel (only padding: no input pixel is ignored)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lightning_papers._validation import one_of
from lightning_papers.conv_arithmetic.formulas import RELATIONSHIPS, IntOrTuple, effective_kernel_size, ignored_inputs
from lightning_papers.conv_arithmetic.params import KINDS, LayerParams

__all__ = ["Explanation", "explain", "relationship_for"]

_KEYWORDS = ("k", "s", "p", "d", "output_padding", "transposed", "pool", "ceil_mode")


def relationship_for(kind: str, k: int, s: int = 1, p: int = 0, d: int = 1, a: int = 0,
                     ceil_mode: bool = False) -> int:
    """The number of the guide's Relationship that covers one axis of a layer.

    Pooling is Relationship 7 even when PyTorch pads, dilates or rounds up (extensions the guide does not
    number); a dilated transposed convolution is reported as Relationship 14 with the dilated kernel.

    Raises:
        ValueError: for an unknown ``kind``.

    Examples:
        >>> relationship_for("conv", 3, 1, 1), relationship_for("transposed", 3, 2, 1, a=1)
        (3, 14)
    """
    if one_of("kind", kind, KINDS) == "pool":
        return 7
    if kind == "conv":
        if d > 1:
            return 15
        if s > 1:
            return 5 if p == 0 else 6
        if p == 0:
            return 1
        if k % 2 == 1 and p == k // 2:
            return 3
        if p == k - 1:
            return 4
        return 2
    if d > 1 or a > 0:
        return 14
    if s > 1:
        return 12 if p == 0 else 13
    if p == 0:
        return 8
    if k % 2 == 1 and p == k // 2:
        return 10
    if p == k - 1:
        return 11
    return 9


def _floor(num: str, s: int) -> str:
    return f"⌊({num})/{s}⌋"


def _conv_line(rel: int, i: int, k: int, s: int, p: int, d: int, o: int) -> str:
    pp = 2 * p
    if rel == 1:
        work = f"({i} − {k}) + 1"
    elif rel == 2:
        work = f"({i} − {k}) + {pp} + 1"
    elif rel == 3:
        work = f"{i} + {pp} − {k - 1}"
    elif rel == 4:
        work = f"{i} + {k - 1}"
    elif rel == 5:
        work = _floor(f"{i} − {k}", s) + " + 1"
    elif rel == 6:
        work = _floor(f"{i} + {pp} − {k}", s) + " + 1"
    else:
        work = _floor(f"{i} + {pp} − {k} − {k - 1}·{d - 1}", s) + " + 1"
    r = RELATIONSHIPS[rel]
    formula = "o = i + 2⌊k/2⌋ − (k − 1)" if rel == 3 else r.formula
    return f"Relationship {rel} ({r.title}): {formula} = {work} = {o}"


def _transposed_line(rel: int, i: int, k: int, s: int, p: int, d: int, a: int, o: int) -> str:
    r = RELATIONSHIPS[rel]
    if rel == 8:
        work = f"{i} + {k - 1}"
    elif rel == 9:
        work = f"{i} + {k - 1} − {2 * p}"
    elif rel == 10:
        return (f"Relationship 10 ({r.title}): o' = i' + (k − 1) − 2p = {i} + {k - 1} − {2 * p} = {o}")
    elif rel == 11:
        work = f"{i} − {k - 1}"
    elif rel == 12:
        work = f"{s}·({i} − 1) + {k}"
    elif rel == 13:
        work = f"{s}·({i} − 1) + {k} − {2 * p}"
    elif d == 1:
        work = f"{s}·({i} − 1) + {a} + {k} − {2 * p}"
    else:
        kd = effective_kernel_size(k, d)
        return (f"Relationship 14 ({r.title}) with the dilated kernel k̂ = k + (k − 1)(d − 1) = {kd} of "
                f"Relationship 15: o' = s(i' − 1) + a + k̂ − 2p = {s}·({i} − 1) + {a} + {kd} − {2 * p} = {o}")
    return f"Relationship {rel} ({r.title}): {r.formula} = {work} = {o}"


def _pool_line(i: int, k: int, s: int, p: int, d: int, ceil_mode: bool, o: int) -> str:
    if p == 0 and d == 1 and not ceil_mode:
        return f"Relationship 7 (pooling): o = ⌊(i − k)/s⌋ + 1 = ⌊({i} − {k})/{s}⌋ + 1 = {o}"
    extras = []
    if p:
        extras.append("padding as in Relationship 6")
    if d > 1:
        extras.append("dilation as in Relationship 15")
    if ceil_mode:
        extras.append("ceil_mode")
    kd = effective_kernel_size(k, d)
    lo, hi = ("⌈", "⌉") if ceil_mode else ("⌊", "⌋")
    line = (f"Relationship 7 (pooling) with PyTorch's {', '.join(extras)}: o = {lo}(i + 2p − k̂)/s{hi} + 1 = "
            f"{lo}({i} + {2 * p} − {kd})/{s}{hi} + 1")
    raw = (-(-(i + 2 * p - kd) // s) if ceil_mode else (i + 2 * p - kd) // s) + 1
    if raw != o:
        line += f" = {raw}, minus the last window, which would start in the right padding, = {o}"
    else:
        line += f" = {o}"
    return line


def _stride_note(i: int, k: int, s: int, p: int, d: int) -> str | None:
    if s == 1 and d == 1:
        return None
    kd = effective_kernel_size(k, d)
    r = (i + 2 * p - kd) % s
    skipped = ignored_inputs(i, k, s, p, d)
    parts = []
    if r:
        what = "row/column" if r == 1 else "rows/columns"
        parts.append(f"(i + 2p − k{'̂' if d > 1 else ''}) mod s = {i + 2 * p - kd} mod {s} = {r} ≠ 0, so the last "
                     f"{r} {what} of the padded input {'is' if r == 1 else 'are'} never covered by the kernel")
    if skipped:
        shown = ", ".join(map(str, skipped[:6])) + (", …" if len(skipped) > 6 else "")
        parts.append(f"{len(skipped)} of the {i} input positions are never read ({shown})")
    elif r:
        parts[-1] += " (only padding: no input pixel is ignored)"
    return "; ".join(parts) if parts else None


@dataclass
class Explanation:
    """What :func:`explain` found: per axis the Relationship, the worked formula and notes.

    ``str(explanation)`` is the human-readable text; identical axes are shown once.
    """

    kind: str
    input_size: tuple[int, ...]
    output_size: tuple[int, ...]
    relationships: tuple[int, ...]
    lines: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def ignores_input(self) -> bool:
        """True when some input pixels are never read by the (strided or dilated) kernel."""
        return any("never read" in n for n in self.notes)

    def __str__(self) -> str:
        if len(set(self.lines)) == 1:
            body = [self.lines[0]]
        else:
            body = [f"axis {n}: {line}" for n, line in enumerate(self.lines)]
        return "\n".join(body + [f"note: {n}" for n in dict.fromkeys(self.notes)])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "input_size": list(self.input_size), "output_size": list(self.output_size),
                "relationships": list(self.relationships), "lines": list(self.lines), "notes": list(self.notes)}


def _params(layer_or_params: nn.Module | LayerParams | Mapping[str, Any] | None, **defaults: Any
            ) -> LayerParams:
    """The :class:`LayerParams` of a layer, or of a mapping of :func:`explain`'s keywords over ``defaults``."""
    if isinstance(layer_or_params, nn.Module):
        return LayerParams.from_layer(layer_or_params)
    if isinstance(layer_or_params, LayerParams):
        return layer_or_params
    kw = dict(layer_or_params or {})
    unknown = set(kw) - set(_KEYWORDS)
    if unknown:
        raise ValueError(f"Expected parameters among {_KEYWORDS}, got unknown {sorted(unknown)}")
    kw = {**defaults, **kw}
    if kw["k"] is None:
        raise ValueError("Expected a kernel size `k` (or a layer), got None")
    transposed, pool = kw.pop("transposed"), kw.pop("pool")
    if transposed and pool:
        raise ValueError("Expected at most one of `transposed` and `pool` to be True, got both")
    return LayerParams.create("transposed" if transposed else "pool" if pool else "conv", **kw)


def _explain_axis(params: LayerParams, axis: int, i: int, o: int, notes: list[str]) -> tuple[int, str]:
    """The Relationship and the worked line of one axis; notes about it are appended to ``notes``."""
    k, s, d = params.kernel[axis], params.stride[axis], params.dilation[axis]
    p, after = params.padding_amounts(axis)
    if params.kind == "transposed":
        a = params.output_padding[axis]
        kd = effective_kernel_size(k, d)
        stretch = f"the input stretched to ĩ' = {s * (i - 1) + 1} ({s - 1} zero(s) between units), " if s > 1 else ""
        notes.append(f"equivalent direct convolution: {stretch}k' = {kd}, s' = 1, p' = k̂ − p − 1 = {kd - p - 1}"
                     + (f", plus a = {a} zero(s) on the bottom/right" if a else ""))
        rel = relationship_for("transposed", k, s, p, d, a)
        return rel, _transposed_line(rel, i, k, s, p, d, a, o)
    if params.kind == "pool":
        line, rel = _pool_line(i, k, s, p, d, params.ceil_mode, o), 7
    elif p != after:
        return (2 if d == 1 else 15), (
            f"padding='same' (PyTorch, beyond the paper): pads ({p}, {after}) asymmetrically; o = i + {p} + {after} "
            f"− k̂ + 1 = {i} + {p + after} − {effective_kernel_size(k, d)} + 1 = {o}")
    else:
        if isinstance(params.padding, str):
            notes.append(f"padding={params.padding!r} means p = {p}")
        rel = relationship_for("conv", k, s, p, d)
        line = _conv_line(rel, i, k, s, p, d, o)
    note = None if params.ceil_mode else _stride_note(i, k, s, p, d)
    if note:
        notes.append(note)
    return rel, line


def explain(
    layer_or_params: nn.Module | LayerParams | Mapping[str, Any] | None = None,
    input_size: IntOrTuple | None = None,
    *,
    k: IntOrTuple | None = None,
    s: IntOrTuple | None = None,
    p: IntOrTuple | str = 0,
    d: IntOrTuple = 1,
    output_padding: IntOrTuple = 0,
    transposed: bool = False,
    pool: bool = False,
    ceil_mode: bool = False,
) -> Explanation:
    """Which Relationship gives a layer's output size, with the formula worked out on its numbers.

    Args:
        layer_or_params: an ``nn.Conv*d``, ``nn.ConvTranspose*d``, ``nn.MaxPool*d``/``nn.AvgPool*d``, a
            :class:`LayerParams`, a mapping of the keyword arguments below, or ``None`` to use them.
        input_size: spatial input size (an int, or one entry per axis).
        k: kernel size. s: stride (default 1, or ``k`` for pooling). p: padding (or ``"same"``/``"valid"``).
        d: dilation. output_padding: the ``a`` of Relationship 14 for transposed convolutions.
        transposed: describe a transposed convolution. pool: describe pooling. ceil_mode: pooling rounding.

    Raises:
        ValueError: for a missing ``input_size`` or ``k``, an unsupported layer, ``transposed`` together with
            ``pool``, or impossible parameters (as the formulas raise).

    Examples:
        >>> from torch import nn
        >>> explain(nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1), 3).output_size
        (6, 6)
    """
    if input_size is None:
        raise ValueError("Expected `input_size` to be an int or a tuple of ints, got None")
    params = _params(layer_or_params, k=k, s=s, p=p, d=d, output_padding=output_padding, transposed=transposed,
                     pool=pool, ceil_mode=ceil_mode)
    size = input_size if isinstance(input_size, (tuple, list)) else (input_size,) * params.ndim
    if len(size) != params.ndim:
        raise ValueError(f"Expected `input_size` to have {params.ndim} entries, got {input_size!r}")
    out = params.output_size(tuple(size))  # validates everything, with PyTorch's rules
    notes: list[str] = []
    rels, lines = zip(*(_explain_axis(params, axis, i, out[axis], notes) for axis, i in enumerate(size)))
    return Explanation(params.kind, tuple(size), out, tuple(rels), tuple(lines), notes)
