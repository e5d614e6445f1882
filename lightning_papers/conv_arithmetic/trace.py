"""Trace a model's shapes, Relationships and receptive fields along its real dataflow.

For every convolution, transposed convolution, pooling, subsampling (strided slicing), padding and resizing
that a forward pass runs, :func:`trace_shapes` records the input and output shapes, ``k``/``s``/``p``/``d``, the
Relationship of Dumoulin & Visin, A guide to convolution arithmetic for deep learning, 2016
(arXiv 1603.07285) that sizes it, the size the formulas predict next to the size PyTorch produced, and the
receptive field, jump (effective stride) and start (centre of the first unit's field, in input pixels) of
its output.

The geometry follows the tensors themselves, not the order in which layers are called: a
``TorchFunctionMode`` sees every torch operation of the forward pass and keeps, per tensor, its receptive
field. Branches therefore start from the tensor they really read, and at a merge (``out + shortcut(x)``,
``torch.cat``) the receptive field is the largest of the inputs', i.e. the longest path. Operations that keep
the spatial shape (batch norm, activations, channel padding) pass the geometry on unchanged. On a CIFAR
ResNet-(6n+2) this gives 28n - 3 pixels: 81 for ResNet-20 and 249 for ResNet-56.

Examples:
    >>> from lightning_papers.models import get_model
    >>> trace = trace_shapes(get_model("resnet20"), (3, 32, 32))
    >>> trace.receptive_field, len(trace.mismatches)
    (81, 0)
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from fractions import Fraction
from itertools import chain
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from lightning_papers._validation import positive_int
from lightning_papers.conv_arithmetic.explain import relationship_for
from lightning_papers.conv_arithmetic.formulas import (
    _axes,
    conv_output_size,
    effective_kernel_size,
    ignored_inputs,
    pool_output_size,
    same_padding_amounts,
    transposed_output_size,
)

# A receptive field is a whole number of input pixels, or a fraction of one after a transposed convolution or a resize.
Pixels = int | Fraction


@dataclass(frozen=True)
class Geometry:
    """Per spatial axis: receptive field (pixels), jump (input pixels between neighbours) and start.

    ``global_`` marks tensors computed from an adaptive pooling to size 1, which sees the whole input by
    construction and is left out of :attr:`ShapeTrace.receptive_field`.
    """

    rf: tuple[Pixels, ...]
    jump: tuple[Fraction, ...]
    start: tuple[Fraction, ...]
    global_: bool = False

    @property
    def ndim(self) -> int:
        return len(self.rf)

    @classmethod
    def identity(cls, ndim: int) -> Geometry:
        return cls((1,) * ndim, (Fraction(1),) * ndim, (Fraction(0),) * ndim)


def _norm(x: Pixels) -> Pixels:
    return int(x) if isinstance(x, int) or x.denominator == 1 else x


def _num(x: Fraction | None) -> int | float | None:
    if x is None:
        return None
    return int(x) if x.denominator == 1 else round(float(x), 4)


@dataclass
class TraceRow:
    """One geometric operation of the forward pass.

    ``predicted`` is the spatial output size from the formulas; ``actual`` is PyTorch's; ``match`` compares
    them. ``ignored`` counts, per axis, input pixels that a strided or dilated kernel never reads.
    """

    name: str
    layer: str
    op: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    output_padding: tuple[int, ...] | None = None
    relationships: tuple[int | None, ...] = ()
    predicted: tuple[int, ...] | None = None
    actual: tuple[int, ...] = ()
    receptive_field: tuple[Pixels, ...] | None = None
    jump: tuple[Fraction, ...] | None = None
    start: tuple[Fraction, ...] | None = None
    ignored: tuple[int, ...] = ()

    @property
    def match(self) -> bool:
        return self.predicted == self.actual

    @property
    def drops_pixels(self) -> bool:
        return any(self.ignored)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists, fractions of a pixel as floats (4 decimals), ``match`` after ``actual``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            is_tuple = isinstance(value, tuple)
            out[f.name] = [_num(v) if isinstance(v, Fraction) else v for v in value] if is_tuple else value
            if f.name == "actual":
                out["match"] = self.match
        return out


def _short(values: Sequence | None) -> str:
    if values is None:
        return "-"
    shown = [str(_num(v)) if isinstance(v, Fraction) else "-" if v is None else str(v) for v in values]
    return shown[0] if len(set(shown)) == 1 else "x".join(shown)


_COLUMNS = ("layer", "op", "input", "output", "k", "s", "p", "d", "rel", "predicted", "actual", "rf", "jump",
            "start")


@dataclass
class ShapeTrace:
    """The result of :func:`trace_shapes`: one :class:`TraceRow` per geometric operation, in call order."""

    rows: list[TraceRow]
    input_shapes: list[tuple[int, ...]]
    output_shapes: list[tuple[int, ...]]
    max_receptive_field: tuple[Pixels, ...] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def receptive_field(self) -> Pixels | tuple[Pixels, ...] | None:
        """Largest receptive field of any tensor (pixels), adaptive pooling to size 1 aside.

        An int when every spatial axis agrees, else a tuple; ``None`` when nothing had spatial axes.
        """
        rf = self.max_receptive_field
        if rf is None:
            return None
        return rf[0] if len(set(rf)) == 1 else rf

    @property
    def mismatches(self) -> list[TraceRow]:
        """Rows whose predicted output size differs from PyTorch's."""
        return [r for r in self.rows if not r.match]

    @property
    def dropping_rows(self) -> list[TraceRow]:
        """Rows whose strided or dilated kernel never reads some input pixels."""
        return [r for r in self.rows if r.drops_pixels]

    def _cells(self) -> list[list[str]]:
        cells = []
        for r in self.rows:
            rels = [x for x in dict.fromkeys(r.relationships) if x is not None]
            cells.append([
                r.name or "(model)", r.op, "x".join(map(str, r.input_shape)), "x".join(map(str, r.output_shape)),
                _short(r.kernel), _short(r.stride), _short(r.padding), _short(r.dilation),
                ",".join(map(str, rels)) or "-", _short(r.predicted),
                _short(r.actual) + ("" if r.match else " MISMATCH"),
                _short(r.receptive_field), _short(r.jump), _short(r.start),
            ])
        return cells

    def table(self) -> str:
        """A fixed-width text table, one line per row, then the receptive field."""
        cells = self._cells()
        widths = [max([len(h)] + [len(c[n]) for c in cells]) for n, h in enumerate(_COLUMNS)]
        lines = ["  ".join(h.ljust(w) for h, w in zip(_COLUMNS, widths))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
        lines.append(self._summary())
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The table in Markdown (what TensorBoard's text plugin renders)."""
        lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in self._cells()]
        return "\n".join(lines + ["", self._summary()])

    def _summary(self) -> str:
        text = f"receptive field: {self.receptive_field} px; {len(self.rows)} layers"
        if self.mismatches:
            text += f"; {len(self.mismatches)} MISMATCH(ES)"
        return text

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: rows, shapes, receptive field and notes."""
        rf = self.max_receptive_field
        return {
            "input_shapes": [list(s) for s in self.input_shapes],
            "output_shapes": [list(s) for s in self.output_shapes],
            "receptive_field": None if rf is None else [_num(Fraction(v)) for v in rf],
            "mismatches": len(self.mismatches),
            "rows": [r.to_dict() for r in self.rows],
            "notes": list(self.notes),
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


# ------------------------------------------------------------------------------------------- op parsing
_SIGNATURES = {
    "conv": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "transposed": ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"),
    "max_pool": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avg_pool": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "adaptive_pool": ("input", "output_size", "return_indices"),
    "interpolate": ("input", "size", "scale_factor", "mode", "align_corners"),
    "pad": ("input", "pad", "mode", "value"),
}


def _op_family(name: str) -> tuple[str, int] | None:
    for prefix, family in (("conv_transpose", "transposed"), ("conv", "conv"), ("max_pool", "max_pool"),
                           ("avg_pool", "avg_pool"), ("adaptive_avg_pool", "adaptive_pool"),
                           ("adaptive_max_pool", "adaptive_pool")):
        rest = name[len(prefix):]
        if name.startswith(prefix) and rest[:2] in ("1d", "2d", "3d") and rest[2:] in ("", "_with_indices"):
            return family, int(rest[0])
    if name in ("interpolate", "upsample", "pad"):
        return ("interpolate" if name != "pad" else "pad"), 0
    return None


def _bind(family: str, args: tuple, kwargs: dict) -> dict[str, Any]:
    bound = dict(zip(_SIGNATURES[family], args))
    bound.update(kwargs)
    return bound


def _per_axis(value: Any, n: int, default: int) -> tuple:
    if value is None or (isinstance(value, (tuple, list)) and len(value) == 0):
        return (default,) * n
    if isinstance(value, (tuple, list)):
        return tuple(value) if len(value) == n else (value[0],) * n
    return (value,) * n


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


def _predicted(output_size: Callable[..., int | tuple[int, ...]], *args: Any, **kwargs: Any) -> tuple[int, ...] | None:
    """The formulas' output size, or ``None`` where they refuse a layer that PyTorch ran (a row then mismatches)."""
    try:
        return _axes(output_size(*args, **kwargs))
    except ValueError:
        return None


def _transposed_span(k: int, s: int, p: int, d: int) -> int:
    """Largest distance between two inputs that reach one output of a transposed convolution."""
    span = 0
    for o in range(s * d * max(k, 1)):
        xs = [(o + p - m * d) // s for m in range(k) if (o + p - m * d) % s == 0]
        if xs:
            span = max(span, max(xs) - min(xs))
    return span


class _Tracer(TorchFunctionMode):
    """Sees every torch call of the forward pass and attaches a :class:`Geometry` to each new tensor."""

    def __init__(self) -> None:
        super().__init__()
        self._geo: dict[int, tuple[weakref.ref, Geometry]] = {}
        self.rows: list[TraceRow] = []
        self.stack: list[tuple[str, str]] = [("", "")]
        self.max_rf: list[Pixels] | None = None

    # ------------------------------------------------------------------ geometry bookkeeping
    def get(self, t: torch.Tensor) -> Geometry | None:
        entry = self._geo.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        return None

    def set(self, t: torch.Tensor, g: Geometry | None) -> None:
        if g is None:
            self._geo.pop(id(t), None)
            return
        g = Geometry(tuple(_norm(v) for v in g.rf), g.jump, g.start, g.global_)
        self._geo[id(t)] = (weakref.ref(t), g)
        if not g.global_:
            self.max_rf = list(g.rf) if self.max_rf is None or len(self.max_rf) != g.ndim else [
                max(a, b) for a, b in zip(self.max_rf, g.rf)
            ]

    # ------------------------------------------------------------------ interception
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in ("dim", "size", "__get__", "is_contiguous", "numel", "stride"):
            return out
        try:
            self._record(name, args, kwargs, out)
        except Exception as err:  # a tracing bug must never break the user's forward pass
            self.rows.append(TraceRow(self.stack[-1][0], self.stack[-1][1], name, "error", (), (),
                                      predicted=None, actual=(f"{type(err).__name__}: {err}",)))
        return out

    def _record(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        outs = _tensors(out)
        if not outs:
            return
        family = _op_family(name)
        if name == "__getitem__" and args and isinstance(args[0], torch.Tensor):
            self._getitem(args[0], args[1] if len(args) > 1 else None, outs[0])
        elif family is not None and args and isinstance(args[0], torch.Tensor):
            fam, n = family
            bound = _bind(fam, args, kwargs)
            x, y = bound["input"], outs[0]
            n = n or (x.dim() - 2)
            if n < 1 or y.dim() < n:
                return self._generic(args, kwargs, outs)
            handler = getattr(self, f"_{fam}")
            handler(name, bound, x, y, n)
            for extra in outs[1:]:  # pooling indices
                self.set(extra, self.get(y))
        else:
            self._generic(args, kwargs, outs)

    def _generic(self, args: tuple, kwargs: dict, outs: list[torch.Tensor]) -> None:
        inputs = [(t, g) for t in _tensors(args) + _tensors(kwargs) if (g := self.get(t)) is not None]
        for y in outs:
            same = [g for t, g in inputs if y.dim() >= g.ndim and tuple(y.shape[-g.ndim:]) == tuple(t.shape[-g.ndim:])
                    and y.dim() > g.ndim]
            if not same:
                continue
            local = [g for g in same if not g.global_] or same
            best = max(local, key=lambda g: g.rf)
            rf = tuple(max(g.rf[a] for g in local) for a in range(best.ndim))
            self.set(y, Geometry(rf, best.jump, best.start, best.global_))

    def _row(self, op: str, kind: str, x: torch.Tensor, y: torch.Tensor, n: int, **fields: Any) -> TraceRow:
        g = self.get(y)
        row = TraceRow(self.stack[-1][0], self.stack[-1][1], op, kind, tuple(x.shape), tuple(y.shape),
                       actual=tuple(y.shape[-n:]),
                       receptive_field=None if g is None else g.rf, jump=None if g is None else g.jump,
                       start=None if g is None else g.start, **fields)
        self.rows.append(row)
        return row

    def _input_geometry(self, x: torch.Tensor, n: int) -> Geometry | None:
        g = self.get(x)
        return g if g is not None and g.ndim == n else None

    # ------------------------------------------------------------------ convolution-like ops
    def _windowed(self, op: str, kind: str, x: torch.Tensor, y: torch.Tensor, n: int, k: tuple, s: tuple,
                  p: tuple, d: tuple, predicted: tuple | None, rels: tuple, ignored: tuple, **extra: Any) -> None:
        g = self._input_geometry(x, n)
        kd = [effective_kernel_size(k[a], d[a]) for a in range(n)]
        self.set(y, None if g is None else Geometry(
            tuple(g.rf[a] + (kd[a] - 1) * g.jump[a] for a in range(n)),
            tuple(g.jump[a] * s[a] for a in range(n)),
            tuple(g.start[a] + (Fraction(kd[a] - 1, 2) - p[a]) * g.jump[a] for a in range(n)),
            g.global_,
        ))
        self._row(op, kind, x, y, n, kernel=k, stride=s, padding=p, dilation=d, relationships=rels,
                  predicted=predicted, ignored=ignored, **extra)

    def _conv(self, op: str, b: dict, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
        k = tuple(b["weight"].shape[2:])
        s, d = _per_axis(b.get("stride"), n, 1), _per_axis(b.get("dilation"), n, 1)
        padding = b.get("padding", 0)
        i = tuple(x.shape[-n:])
        predicted = _predicted(conv_output_size, i, k, s, padding if isinstance(padding, str) else
                               _per_axis(padding, n, 0), d)
        if isinstance(padding, str):
            p = tuple(0 if padding == "valid" else same_padding_amounts(k[a], d[a])[0] for a in range(n))
        else:
            p = _per_axis(padding, n, 0)
        rels = tuple(relationship_for("conv", k[a], s[a], p[a], d[a]) for a in range(n))
        ignored = tuple(len(ignored_inputs(i[a], k[a], s[a], p[a], d[a])) if predicted else 0 for a in range(n))
        self._windowed(op, "conv", x, y, n, k, s, p, d, predicted, rels, ignored)

    def _max_pool(self, op: str, b: dict, x: torch.Tensor, y: torch.Tensor, n: int, avg: bool = False) -> None:
        k = _per_axis(b["kernel_size"], n, 1)
        s = _per_axis(b.get("stride"), n, 0)
        s = tuple(k[a] if s[a] == 0 else s[a] for a in range(n))
        p = _per_axis(b.get("padding", 0), n, 0)
        d = (1,) * n if avg else _per_axis(b.get("dilation", 1), n, 1)
        ceil = bool(b.get("ceil_mode", False))
        i = tuple(x.shape[-n:])
        predicted = _predicted(pool_output_size, i, k, s, p, d, ceil, mode="avg" if avg else "max")
        ignored = tuple(0 if ceil or not predicted else len(ignored_inputs(i[a], k[a], s[a], p[a], d[a]))
                        for a in range(n))
        self._windowed(op, "pool", x, y, n, k, s, p, d, predicted, (7,) * n, ignored)

    def _avg_pool(self, op: str, b: dict, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
        self._max_pool(op, b, x, y, n, avg=True)

    def _transposed(self, op: str, b: dict, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
        k = tuple(b["weight"].shape[2:])
        s, d = _per_axis(b.get("stride"), n, 1), _per_axis(b.get("dilation"), n, 1)
        p, a = _per_axis(b.get("padding"), n, 0), _per_axis(b.get("output_padding"), n, 0)
        i = tuple(x.shape[-n:])
        predicted = _predicted(transposed_output_size, i, k, s, p, a, d)
        g = self._input_geometry(x, n)
        kd = [effective_kernel_size(k[ax], d[ax]) for ax in range(n)]
        self.set(y, None if g is None else Geometry(
            tuple(g.rf[ax] + _transposed_span(k[ax], s[ax], p[ax], d[ax]) * g.jump[ax] for ax in range(n)),
            tuple(g.jump[ax] / s[ax] for ax in range(n)),
            tuple(g.start[ax] + g.jump[ax] * (p[ax] - Fraction(kd[ax] - 1, 2)) / s[ax] for ax in range(n)),
            g.global_,
        ))
        rels = tuple(relationship_for("transposed", k[ax], s[ax], p[ax], d[ax], a[ax]) for ax in range(n))
        self._row(op, "transposed", x, y, n, kernel=k, stride=s, padding=p, dilation=d, output_padding=a,
                  relationships=rels, predicted=predicted, ignored=(0,) * n)

    def _adaptive_pool(self, op: str, b: dict, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
        i, o = tuple(x.shape[-n:]), tuple(y.shape[-n:])
        wanted = _per_axis(b.get("output_size"), n, 1)
        predicted = tuple(i[a] if wanted[a] is None else wanted[a] for a in range(n))
        g = self._input_geometry(x, n)
        if g is not None:
            rf: list[Pixels] = []
            jump, start = [], []
            for a in range(n):
                windows = [(t * i[a] // o[a], -(-(t + 1) * i[a] // o[a])) for t in range(o[a])]
                kmax = max(end - begin for begin, end in windows)
                rf.append(g.rf[a] + (kmax - 1) * g.jump[a])
                jump.append(g.jump[a] * Fraction(i[a], o[a]))
                start.append(g.start[a] + Fraction(windows[0][1] - 1, 2) * g.jump[a])
            self.set(y, Geometry(tuple(rf), tuple(jump), tuple(start), g.global_ or all(v == 1 for v in o)))
        else:
            self.set(y, None)
        self._row(op, "adaptive_pool", x, y, n, predicted=predicted, relationships=(None,) * n, ignored=(0,) * n)

    def _interpolate(self, op: str, b: dict, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
        i, o = tuple(x.shape[-n:]), tuple(y.shape[-n:])
        size, scale = b.get("size"), b.get("scale_factor")
        if size is not None:
            predicted = _per_axis(size, n, 1)
        else:
            predicted = tuple(math.floor(i[a] * _per_axis(scale, n, 1)[a]) for a in range(n))
        mode = b.get("mode", "nearest")
        reach = {"nearest": 0, "nearest-exact": 0, "bicubic": 3}.get(mode, 1)
        g = self._input_geometry(x, n)
        self.set(y, None if g is None else Geometry(
            tuple(g.rf[a] + reach * g.jump[a] for a in range(n)),
            tuple(g.jump[a] * Fraction(i[a], o[a]) for a in range(n)),
            tuple(g.start[a] + (0 if reach == 0 else (Fraction(i[a], o[a]) - 1) / 2 * g.jump[a]) for a in range(n)),
            g.global_,
        ))
        self._row(op, "resize", x, y, n, predicted=tuple(predicted), relationships=(None,) * n, ignored=(0,) * n)

    def _pad(self, op: str, b: dict, x: torch.Tensor, y: torch.Tensor, n: int) -> None:
        pads = list(b["pad"])
        g = self.get(x)
        n = g.ndim if g is not None else max(x.dim() - 2, 1)
        before = [0] * n
        after = [0] * n
        for j in range(len(pads) // 2):  # (last_left, last_right, second_last_left, ...)
            axis = n - 1 - j
            if axis >= 0:
                before[axis], after[axis] = pads[2 * j], pads[2 * j + 1]
        if not any(before) and not any(after):  # channel/batch padding (option A shortcuts) keeps the geometry
            self.set(y, g)
            return
        i = tuple(x.shape[-n:])
        self.set(y, None if g is None else Geometry(
            g.rf, g.jump, tuple(g.start[a] - before[a] * g.jump[a] for a in range(n)), g.global_))
        self._row(op, "pad", x, y, n, padding=tuple(before), predicted=tuple(i[a] + before[a] + after[a]
                                                                              for a in range(n)),
                  relationships=(None,) * n, ignored=(0,) * n)

    def _getitem(self, x: torch.Tensor, index: Any, y: torch.Tensor) -> None:
        g = self.get(x)
        if g is None:
            return
        index = index if isinstance(index, tuple) else (index,)
        if any(item is None or isinstance(item, (torch.Tensor, list, bool)) for item in index):
            return self._generic((x,), {}, [y])
        if Ellipsis in index:
            at = index.index(Ellipsis)
            fill = x.dim() - (len(index) - 1)
            index = index[:at] + (slice(None),) * fill + index[at + 1:]
        index = index + (slice(None),) * (x.dim() - len(index))
        n = g.ndim
        spatial = index[-n:]
        if any(not isinstance(item, slice) for item in spatial):
            return self.set(y, None)
        bounds = [item.indices(x.shape[-n + a]) for a, item in enumerate(spatial)]
        if any(step < 1 for _, _, step in bounds):
            return self.set(y, None)
        if all(b == (0, x.shape[-n + a], 1) for a, b in enumerate(bounds)):
            return self.set(y, g if y.dim() > n else None)
        self.set(y, Geometry(g.rf, tuple(g.jump[a] * bounds[a][2] for a in range(n)),
                             tuple(g.start[a] + bounds[a][0] * g.jump[a] for a in range(n)), g.global_))
        i = tuple(x.shape[-n:])
        rels = tuple(5 if b[0] == 0 and b[1] == i[a] else None for a, b in enumerate(bounds))
        self._row("__getitem__", "subsample", x, y, n, kernel=(1,) * n, stride=tuple(b[2] for b in bounds),
                  padding=(0,) * n, dilation=(1,) * n, relationships=rels,
                  predicted=tuple(len(range(*b)) for b in bounds),
                  ignored=tuple(len(range(*b[:2])) - len(range(*b)) for b in bounds))


def _make_inputs(model: nn.Module, example: Any) -> tuple[torch.Tensor, ...]:
    if isinstance(example, torch.Tensor):
        return (example,)
    if isinstance(example, (tuple, list)) and example and all(isinstance(t, torch.Tensor) for t in example):
        return tuple(example)
    try:
        sizes = [positive_int("input_size", v) for v in example] if isinstance(example, (tuple, list)) else []
    except ValueError:
        sizes = []
    if sizes:
        ref = next(chain(model.parameters(), model.buffers()), None)
        device = ref.device if ref is not None else None
        dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
        return (torch.zeros(1, *sizes, device=device, dtype=dtype),)
    raise ValueError(
        f"Expected `input_size` to be a tuple of positive ints (C, *spatial), an example tensor or a tuple of "
        f"tensors, got {example!r}"
    )


def trace_shapes(model: nn.Module, input_size: Sequence[int] | torch.Tensor | Sequence[torch.Tensor]) -> ShapeTrace:
    """Run one forward pass and trace the conv arithmetic of every geometric operation.

    The model runs in eval mode under ``torch.no_grad()`` (batch norm statistics are not touched) and its
    train/eval flags are restored afterwards.

    Args:
        model: any ``nn.Module`` (a ``LightningModule`` works too).
        input_size: ``(C, *spatial)`` without the batch dimension (a zero batch of one is built on the
            model's device), an example input tensor with its batch dimension, or a tuple of input tensors.

    Returns:
        A :class:`ShapeTrace`. Every input tensor with more than two dimensions starts with a receptive field
        of 1 pixel, jump 1 and start 0 on its trailing ``ndim - 2`` axes.

    Raises:
        ValueError: if ``model`` is not an ``nn.Module`` or ``input_size`` is none of the above.

    Examples:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.MaxPool2d(2))
        >>> [r.receptive_field for r in trace_shapes(net, (1, 16, 16)).rows]
        [(3, 3), (5, 5)]
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"Expected `model` to be an nn.Module, got {type(model).__name__}")
    inputs = _make_inputs(model, input_size)
    tracer = _Tracer()
    for t in inputs:
        if t.dim() > 2:
            tracer.set(t, Geometry.identity(t.dim() - 2))

    handles = []
    for name, module in model.named_modules():
        def pre(mod, args, _name=name):  # noqa: ANN001, ANN202
            tracer.stack.append((_name, type(mod).__name__))

        def post(mod, args, output):  # noqa: ANN001, ANN202
            tracer.stack.pop()

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post, always_call=True))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), tracer:
            output = model(*inputs)
    finally:
        for h in handles:
            h.remove()
        for m, flag in modes.items():
            m.training = flag
    notes = ["no input had spatial axes"] if tracer.max_rf is None else []
    return ShapeTrace(tracer.rows, [tuple(t.shape) for t in inputs], [tuple(t.shape) for t in _tensors(output)],
                      None if tracer.max_rf is None else tuple(tracer.max_rf), notes)
