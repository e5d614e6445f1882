"""Find layer parameters for a wanted output size, and the transposed convolution that undoes a convolution.

Both run Dumoulin & Visin, A guide to convolution arithmetic for deep learning, 2016 (arXiv 1603.07285)
backwards: :func:`solve` searches the Relationships for every ``(k, s, p, d)`` (and ``a``) within bounds that
maps ``i`` to ``o``; :func:`inverse_of` applies Relationship 14 (``a = (i + 2p - k) mod s``) to build the
transposed convolution that restores a convolution's input size.

Examples:
    >>> [(x.k, x.s, x.p) for x in solve(32, 16, dilation=1)][:3]
    [(2, 2, 0), (3, 2, 1), (4, 2, 1)]
    >>> from torch import nn
    >>> inverse_of(nn.Conv2d(8, 16, 3, stride=2, padding=1), 32)
    ConvTranspose2d(16, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), output_padding=(1, 1))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from lightning_papers._validation import integer, positive_int
from lightning_papers.conv_arithmetic.explain import relationship_for
from lightning_papers.conv_arithmetic.formulas import (
    IntOrTuple,
    _as_tuple,
    conv_output_size,
    ignored_inputs,
    transposed_output_size,
)
from lightning_papers.conv_arithmetic.params import LayerParams

__all__ = ["Solution", "inverse_of", "solve"]


@dataclass(frozen=True)
class Solution:
    """One ``(k, s, p, d, a)`` that maps ``input_size`` to ``output_size`` along one axis.

    Attributes:
        ignored: input pixels a convolution never reads (for a transposed convolution: output pixels that no
            input reaches); 0 for a clean solution.
        relationship: the number of the guide's Relationship that applies.
    """

    k: int
    s: int
    p: int
    d: int
    output_padding: int
    transposed: bool
    relationship: int
    ignored: int

    def layer(self, in_channels: int = 1, out_channels: int = 1, ndim: int = 2) -> nn.Module:
        """Build the matching ``nn.Conv{ndim}d`` or ``nn.ConvTranspose{ndim}d`` (same numbers on every axis).

        Raises:
            ValueError: if ``ndim`` is not 1, 2 or 3.
        """
        ndim = integer("ndim", ndim, 1, 3)
        if self.transposed:
            return _TRANSPOSED[ndim - 1](in_channels, out_channels, self.k, stride=self.s, padding=self.p,
                                         output_padding=self.output_padding, dilation=self.d)
        return (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1](in_channels, out_channels, self.k, stride=self.s,
                                                           padding=self.p, dilation=self.d)


# Picked by the number of spatial axes, the sizes passed are tuples of that length: a plain callable to the checker.
_TRANSPOSED: tuple[Callable[..., nn.Module], ...] = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


MAX_COMBINATIONS = 500_000


def _total(values: range) -> int:
    """``sum(values)`` without iterating (the bounds may be 10**9)."""
    return (values[0] + values[-1]) * len(values) // 2 if len(values) else 0


def _range(name: str, fixed: int | None, low: int, high: int) -> range:
    if fixed is not None:
        fixed = integer(name, fixed, low)
        return range(fixed, fixed + 1)
    return range(low, high + 1)


def _check_search_size(ds: range, ss: range, ks: range, padding: int | None, max_padding: int | None,
                       output_paddings: int) -> None:
    """Refuse a search of more than :data:`MAX_COMBINATIONS` up front (~10 µs each): not minutes of silence."""
    if padding is not None:
        paddings = len(ks) * len(ds)
    elif max_padding is not None:
        paddings = len(ks) * len(ds) * (max_padding + 1)
    else:  # 0..d(k-1) for each k and d
        paddings = _total(ds) * (_total(ks) - len(ks)) + len(ks) * len(ds)
    combinations = paddings * len(ss) * output_paddings
    if combinations > MAX_COMBINATIONS:
        raise ValueError(f"Expected a search of at most {MAX_COMBINATIONS:,} combinations, got {combinations:,}: "
                         "lower max_kernel, max_stride or max_dilation, or fix kernel, stride, padding or dilation")


def _solutions(input_size: int, output_size: int, transposed: bool, ds: range, ss: range, ks: range,
               padding: int | None, max_padding: int | None, output_padding: int | None) -> Iterator[Solution]:
    """Every ``(k, s, p, d, a)`` of the ranges that maps ``input_size`` to ``output_size``, unsorted."""
    kind = "transposed" if transposed else "conv"
    for d in ds:
        for s in ss:
            for k in ks:
                p_high = max_padding if max_padding is not None else d * (k - 1)
                for p in _range("padding", padding, 0, p_high):
                    a_high = max(s, d) - 1 if transposed else 0
                    for a in _range("output_padding", output_padding, 0, a_high):
                        try:
                            if transposed:
                                o = transposed_output_size(input_size, k, s, p, a, d)
                            else:
                                o = conv_output_size(input_size, k, s, p, d)
                        except ValueError:
                            continue
                        if o != output_size:
                            continue
                        # A transposed convolution is the adjoint of the convolution from o to i: the output
                        # pixels it never reaches are that convolution's ignored inputs.
                        skipped = ignored_inputs(o if transposed else input_size, k, s, p, d)
                        yield Solution(k, s, p, d, a, transposed, relationship_for(kind, k, s, p, d, a), len(skipped))


def solve(
    input_size: int,
    output_size: int,
    kernel: int | None = None,
    stride: int | None = None,
    padding: int | None = None,
    dilation: int | None = None,
    transposed: bool = False,
    output_padding: int | None = None,
    *,
    max_kernel: int = 7,
    max_stride: int = 4,
    max_padding: int | None = None,
    max_dilation: int = 3,
) -> list[Solution]:
    """Every convolution (or transposed convolution) within bounds that maps ``input_size`` to ``output_size``.

    One spatial axis (axes do not interact). Fixed arguments restrict the search; the others range over
    ``1..max_kernel``, ``1..max_stride``, ``1..max_dilation`` and ``0..max_padding`` (default: full padding
    ``d(k - 1)``), and ``output_padding`` over what PyTorch allows. Solutions are sorted simplest first: by
    dilation, stride, whether pixels are left out, kernel, padding and output padding.

    Args:
        input_size: the size ``i`` (or ``i'``) going in.
        output_size: the wanted size ``o`` (or ``o'``).
        kernel: fix kernel instead of searching it.
        stride: fix stride instead of searching it.
        padding: fix padding instead of searching it.
        dilation: fix dilation instead of searching it.
        output_padding: fix output_padding instead of searching it.
        transposed: search transposed convolutions.
        max_kernel: the largest kernel searched.
        max_stride: the largest stride searched.
        max_padding: the largest padding searched.
        max_dilation: the largest dilation searched.

    Returns:
        A list of :class:`Solution`, empty when nothing within the bounds fits.

    Raises:
        ValueError: for non-positive sizes or bounds, or invalid fixed parameters.

    Examples:
        >>> best = solve(16, 32, kernel=3, transposed=True, dilation=1)[0]
        >>> best.s, best.p, best.output_padding
        (2, 1, 1)
    """
    for name, value in (("input_size", input_size), ("output_size", output_size), ("max_kernel", max_kernel),
                        ("max_stride", max_stride), ("max_dilation", max_dilation)):
        positive_int(name, value)
    if max_padding is not None:
        integer("max_padding", max_padding, 0)
    if output_padding is not None and not transposed:
        raise ValueError(f"Expected `output_padding` only with transposed=True, got {output_padding!r}")

    ds, ss, ks = (_range("dilation", dilation, 1, max_dilation), _range("stride", stride, 1, max_stride),
                  _range("kernel", kernel, 1, max_kernel))
    _check_search_size(ds, ss, ks, padding, max_padding,
                       max(max_stride, max_dilation) if transposed and output_padding is None else 1)
    found = list(_solutions(input_size, output_size, transposed, ds, ss, ks, padding, max_padding, output_padding))
    found.sort(key=lambda x: (x.d, x.s, x.ignored > 0, x.k, x.p, x.output_padding))
    return found


def inverse_of(
    conv: nn.Module | LayerParams | Mapping[str, Any], input_size: IntOrTuple
) -> nn.Module | LayerParams:
    """The transposed convolution that maps ``conv``'s output back to ``input_size`` (Relationship 14).

    It has the same ``k``, ``s``, ``p`` and ``d`` and ``output_padding = a = (i + 2p - k̂) mod s``, which picks
    the one of the ``s`` input sizes that the strided convolution maps to the same output.

    Args:
        conv: an ``nn.Conv1d/2d/3d`` (the result is an ``nn.ConvTranspose*d`` with the channels swapped and the
            same groups and bias setting), or a :class:`LayerParams` / mapping of ``k, s, p, d`` (the result
            is a :class:`LayerParams` of kind ``"transposed"``).
        input_size: the convolution's spatial input size (an int for every axis, or a tuple).

    Raises:
        ValueError: if ``conv`` is not a convolution, the sizes are impossible, or ``padding="same"`` pads
            asymmetrically in a way no ``ConvTranspose`` (symmetric padding, ``a < max(s, d)``) can undo.

    Examples:
        >>> inverse_of({"k": 3, "s": 2, "p": 1}, 6).output_padding   # Figure 4.7
        (1,)
    """
    if isinstance(conv, nn.Module):
        if not isinstance(conv, nn.modules.conv._ConvNd) or isinstance(conv, nn.modules.conv._ConvTransposeNd):
            raise ValueError(f"Expected `conv` to be an nn.Conv1d/2d/3d, got {type(conv).__name__}")
        params = LayerParams.from_layer(conv)
    elif isinstance(conv, LayerParams):
        params = conv
    elif isinstance(conv, Mapping):
        params = LayerParams.create("conv", **dict(conv))
    else:
        raise ValueError(f"Expected `conv` to be an nn.Conv*d, LayerParams or a mapping, got {conv!r}")
    if params.kind != "conv":
        raise ValueError(f"Expected a convolution, got kind {params.kind!r}")
    out, size = params.output_size(input_size), _as_tuple("input_size", input_size, params.ndim)

    pads, extra = [], []
    for axis, i in enumerate(size):
        k, s, d = params.kernel[axis], params.stride[axis], params.dilation[axis]
        before, after = params.padding_amounts(axis)
        if before == after:
            p = before
            a = (i + 2 * p - (d * (k - 1) + 1)) % s
        else:
            # PyTorch's padding="same" with an even dilated extent pads one more zero after: undo it by
            # padding the larger amount and giving the missing row back as output_padding (needs a < d).
            p, a = after, after - before
            if not (a < s or a < d):
                raise ValueError(f"Expected a convolution whose padding a ConvTranspose can undo, got padding='same' "
                                 f"padding ({before}, {after}) with k={k}, d={d}: use an odd kernel or integer padding")
        pads.append(p)
        extra.append(a)
    result = LayerParams.create("transposed", k=params.kernel, s=params.stride, p=tuple(pads), d=params.dilation,
                                output_padding=tuple(extra), ndim=params.ndim)
    if result.output_size(out) != size:  # pragma: no cover - guarded by Relationship 14
        raise ValueError(f"Expected to restore {size}, got {result.output_size(out)}")
    if not isinstance(conv, nn.Module):
        return result
    return _TRANSPOSED[params.ndim - 1](
        conv.out_channels, conv.in_channels, params.kernel, stride=params.stride, padding=tuple(pads),
        output_padding=tuple(extra), groups=conv.groups, bias=conv.bias is not None, dilation=params.dilation,
        device=conv.weight.device, dtype=conv.weight.dtype)
