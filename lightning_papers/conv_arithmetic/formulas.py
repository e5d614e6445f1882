"""The numbered Relationships of Dumoulin & Visin, A guide to convolution arithmetic for deep learning, 2016
(arXiv 1603.07285), and PyTorch-exact output-size functions built on them.

The guide numbers its fifteen Relationships as follows (checked against the paper's LaTeX source):

====  ===========================================================  =====================================
 No.  case                                                         output size
====  ===========================================================  =====================================
  1   no zero padding, unit strides                                o = (i - k) + 1
  2   zero padding, unit strides                                   o = (i - k) + 2p + 1
  3   half (same) padding, k = 2n + 1, p = n                       o = i
  4   full padding, p = k - 1                                      o = i + (k - 1)
  5   no zero padding, non-unit strides                            o = floor((i - k) / s) + 1
  6   zero padding, non-unit strides                               o = floor((i + 2p - k) / s) + 1
  7   pooling                                                      o = floor((i - k) / s) + 1
  8   transposed of Rel. 1                                         o' = i' + (k - 1)
  9   transposed of Rel. 2                                         o' = i' + (k - 1) - 2p
 10   transposed of Rel. 3 (half padding)                          o' = i'
 11   transposed of Rel. 4 (full padding)                          o' = i' - (k - 1)
 12   transposed of Rel. 5, (i - k) a multiple of s                o' = s (i' - 1) + k
 13   transposed of Rel. 6, (i + 2p - k) a multiple of s           o' = s (i' - 1) + k - 2p
 14   transposed of Rel. 6, any i, a = (i + 2p - k) mod s          o' = s (i' - 1) + a + k - 2p
 15   dilated convolution                                          o = floor((i + 2p - k - (k-1)(d-1)) / s) + 1
====  ===========================================================  =====================================

Each Relationship is a named function below and is listed in :data:`RELATIONSHIPS`. The general functions
:func:`conv_output_size`, :func:`transposed_output_size` and :func:`pool_output_size` agree with PyTorch's
``nn.Conv*d``, ``nn.ConvTranspose*d`` and ``nn.MaxPool*d``/``nn.AvgPool*d`` exactly, including where
PyTorch goes beyond the paper: ``padding="same"``, ``output_padding`` (the paper's ``a``) for dilated
transposed convolutions, padded and dilated pooling, and ``ceil_mode``.

Every function works on one spatial axis at a time (axes do not interact, paper §2); the general functions
also accept tuples for 1-D, 2-D and 3-D layers and then return a tuple.

Examples:
    >>> zero_padding_strides(32, 3, 2, 1)           # Relationship 6
    16
    >>> conv_output_size((32, 17), 3, s=2, p=1)
    (16, 9)
    >>> transposed_output_size(16, 3, s=2, p=1, output_padding=1)
    32
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, overload

from lightning_papers._validation import flag, integer, one_of

__all__ = [
    "RELATIONSHIPS",
    "Relationship",
    "conv_output_size",
    "dilated",
    "effective_kernel_size",
    "full_padding",
    "half_padding",
    "ignored_inputs",
    "no_padding_strides",
    "no_padding_unit_strides",
    "pool_output_size",
    "pooling",
    "same_padding_amounts",
    "transposed_full_padding",
    "transposed_half_padding",
    "transposed_no_padding_strides",
    "transposed_no_padding_unit_strides",
    "transposed_output_padding",
    "transposed_output_size",
    "transposed_zero_padding_strides",
    "transposed_zero_padding_strides_odd",
    "transposed_zero_padding_unit_strides",
    "zero_padding_strides",
    "zero_padding_unit_strides",
]

IntOrTuple = int | tuple[int, ...] | list[int]
T = TypeVar("T")


# --------------------------------------------------------------------------------------------- validation
_NON_NEGATIVE = ("p", "a", "output_padding")


def _ints(**values: object) -> list[int]:
    """Each size as a plain ``int``, checked in order: paddings (``p``, ``a``, ``output_padding``) >= 0, others >= 1."""
    return [integer(name, value, 0 if name in _NON_NEGATIVE else 1) for name, value in values.items()]


def _check_positive_output(o: int, formula: str, **values: int) -> int:
    if o < 1:
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        raise ValueError(
            f"Expected a positive output size, got o = {o} from {formula} with {shown}: "
            f"the (dilated) kernel must fit in the (padded) input"
        )
    return o


def effective_kernel_size(k: int, d: int = 1) -> int:
    """The dilated kernel's extent ``k + (k - 1)(d - 1)`` (paper §5.1, the ``k̂`` of Relationship 15).

    Raises:
        ValueError: if ``k`` or ``d`` is not a positive integer.
    """
    _ints(k=k, d=d)
    return k + (k - 1) * (d - 1)


# ------------------------------------------------------------------------------------------ Relationships
def no_padding_unit_strides(i: int, k: int) -> int:
    """Relationship 1 (no zero padding, unit strides): ``o = (i - k) + 1``.

    Args:
        i: input size.
        k: kernel size.

    Raises:
        ValueError: for non-positive sizes or a kernel larger than the input.

    Examples:
        >>> no_padding_unit_strides(4, 3)   # the paper's Figure 2.1
        2
    """
    _ints(i=i, k=k)
    return _check_positive_output((i - k) + 1, "Relationship 1, o = (i - k) + 1", i=i, k=k)


def zero_padding_unit_strides(i: int, k: int, p: int) -> int:
    """Relationship 2 (zero padding, unit strides): ``o = (i - k) + 2p + 1``.

    Args:
        i: input size.
        k: kernel size.
        p: zero padding on each side.

    Raises:
        ValueError: for invalid sizes or a non-positive output.

    Examples:
        >>> zero_padding_unit_strides(5, 4, 2)   # Figure 2.2
        6
    """
    _ints(i=i, k=k, p=p)
    return _check_positive_output((i - k) + 2 * p + 1, "Relationship 2, o = (i - k) + 2p + 1", i=i, k=k, p=p)


def half_padding(i: int, k: int) -> int:
    """Relationship 3 (half or "same" padding): for odd ``k = 2n + 1``, ``p = n`` and ``s = 1``, ``o = i``.

    Args:
        i: input size.
        k: an odd kernel size.

    Raises:
        ValueError: if ``k`` is even (half padding is only symmetric for odd kernels).

    Examples:
        >>> half_padding(5, 3)   # Figure 2.3
        5
    """
    _ints(i=i, k=k)
    if k % 2 == 0:
        raise ValueError(f"Expected `k` to be odd for half padding (Relationship 3: k = 2n + 1), got {k!r}")
    return i + 2 * (k // 2) - (k - 1)


def full_padding(i: int, k: int) -> int:
    """Relationship 4 (full padding, ``p = k - 1``, ``s = 1``): ``o = i + (k - 1)``.

    Args:
        i: input size.
        k: kernel size.

    Raises:
        ValueError: for non-positive sizes.

    Examples:
        >>> full_padding(5, 3)   # Figure 2.4
        7
    """
    _ints(i=i, k=k)
    return i + (k - 1)


def no_padding_strides(i: int, k: int, s: int) -> int:
    """Relationship 5 (no zero padding, non-unit strides): ``o = floor((i - k) / s) + 1``.

    Args:
        i: input size.
        k: kernel size.
        s: stride.

    Raises:
        ValueError: for invalid sizes or a kernel larger than the input.

    Examples:
        >>> no_padding_strides(5, 3, 2)   # Figure 2.5
        2
    """
    _ints(i=i, k=k, s=s)
    return _check_positive_output((i - k) // s + 1, "Relationship 5, o = floor((i - k)/s) + 1", i=i, k=k, s=s)


def zero_padding_strides(i: int, k: int, s: int, p: int) -> int:
    """Relationship 6 (zero padding, non-unit strides), the general case: ``o = floor((i + 2p - k)/s) + 1``.

    When ``(i + 2p - k) mod s != 0`` the last rows/columns of the padded input are never covered by the
    kernel (the paper's remark after Relationship 6; see :func:`ignored_inputs`).

    Args:
        i: input size.
        k: kernel size.
        s: stride.
        p: zero padding on each side.

    Raises:
        ValueError: for invalid sizes or a non-positive output.

    Examples:
        >>> zero_padding_strides(5, 3, 2, 1), zero_padding_strides(6, 3, 2, 1)   # Figures 2.6 and 2.7
        (3, 3)
    """
    _ints(i=i, k=k, s=s, p=p)
    return _check_positive_output(
        (i + 2 * p - k) // s + 1, "Relationship 6, o = floor((i + 2p - k)/s) + 1", i=i, k=k, s=s, p=p
    )


def pooling(i: int, k: int, s: int) -> int:
    """Relationship 7 (pooling, any kind): ``o = floor((i - k) / s) + 1``.

    Args:
        i: input size.
        k: pooling window size.
        s: stride.

    Raises:
        ValueError: for invalid sizes or a window larger than the input.

    Examples:
        >>> pooling(5, 3, 1)   # Figures 1.5 and 1.6
        3
    """
    _ints(i=i, k=k, s=s)
    return _check_positive_output((i - k) // s + 1, "Relationship 7, o = floor((i - k)/s) + 1", i=i, k=k, s=s)


def transposed_no_padding_unit_strides(i_t: int, k: int) -> int:
    """Relationship 8: the transpose of a ``s = 1, p = 0`` convolution, ``o' = i' + (k - 1)``.

    It equals a fully padded direct convolution (``k' = k``, ``s' = 1``, ``p' = k - 1``).

    Args:
        i_t: input size ``i'`` of the transposed convolution.
        k: kernel size.

    Raises:
        ValueError: for non-positive sizes.

    Examples:
        >>> transposed_no_padding_unit_strides(2, 3)   # Figure 4.1
        4
    """
    _ints(i_t=i_t, k=k)
    return i_t + (k - 1)


def transposed_zero_padding_unit_strides(i_t: int, k: int, p: int) -> int:
    """Relationship 9: the transpose of a ``s = 1`` convolution with padding ``p``, ``o' = i' + (k - 1) - 2p``.

    The equivalent direct convolution has ``p' = k - p - 1``.

    Args:
        i_t: input size ``i'`` of the transposed convolution.
        k: kernel size.
        p: padding of the direct convolution.

    Raises:
        ValueError: for invalid sizes or a non-positive output.

    Examples:
        >>> transposed_zero_padding_unit_strides(6, 4, 2)   # Figure 4.2
        5
    """
    _ints(i_t=i_t, k=k, p=p)
    return _check_positive_output(
        i_t + (k - 1) - 2 * p, "Relationship 9, o' = i' + (k - 1) - 2p", i_t=i_t, k=k, p=p
    )


def transposed_half_padding(i_t: int, k: int) -> int:
    """Relationship 10: the transpose of a half-padded convolution is half padded, ``o' = i'``.

    Args:
        i_t: input size ``i'`` of the transposed convolution.
        k: an odd kernel size.

    Raises:
        ValueError: if ``k`` is even.

    Examples:
        >>> transposed_half_padding(5, 3)   # Figure 4.3
        5
    """
    _ints(i_t=i_t, k=k)
    if k % 2 == 0:
        raise ValueError(f"Expected `k` to be odd for half padding (Relationship 10: k = 2n + 1), got {k!r}")
    return i_t + (k - 1) - 2 * (k // 2)


def transposed_full_padding(i_t: int, k: int) -> int:
    """Relationship 11: the transpose of a fully padded convolution is unpadded, ``o' = i' - (k - 1)``.

    Args:
        i_t: input size ``i'`` of the transposed convolution.
        k: kernel size.

    Raises:
        ValueError: for a non-positive output (``i' < k``).

    Examples:
        >>> transposed_full_padding(7, 3)   # Figure 4.4
        5
    """
    _ints(i_t=i_t, k=k)
    return _check_positive_output(i_t - (k - 1), "Relationship 11, o' = i' - (k - 1)", i_t=i_t, k=k)


def transposed_no_padding_strides(i_t: int, k: int, s: int) -> int:
    """Relationship 12: the transpose of a ``p = 0`` strided convolution (``(i - k) mod s = 0``),
    ``o' = s (i' - 1) + k``.

    The equivalent direct convolution runs over the *stretched* input (``s - 1`` zeros between input
    units) with ``s' = 1`` and ``p' = k - 1``.

    Args:
        i_t: input size ``i'`` of the transposed convolution.
        k: kernel size.
        s: stride of the direct convolution.

    Raises:
        ValueError: for non-positive sizes.

    Examples:
        >>> transposed_no_padding_strides(2, 3, 2)   # Figure 4.5
        5
    """
    _ints(i_t=i_t, k=k, s=s)
    return s * (i_t - 1) + k


def transposed_zero_padding_strides(i_t: int, k: int, s: int, p: int) -> int:
    """Relationship 13: the transpose of a padded strided convolution whose ``(i + 2p - k) mod s = 0``,
    ``o' = s (i' - 1) + k - 2p``.

    Args:
        i_t: input size ``i'`` of the transposed convolution.
        k: kernel size.
        s: stride of the direct convolution.
        p: padding of the direct convolution.

    Raises:
        ValueError: for invalid sizes or a non-positive output.

    Examples:
        >>> transposed_zero_padding_strides(3, 3, 2, 1)   # Figure 4.6
        5
    """
    return transposed_zero_padding_strides_odd(i_t, k, s, p, 0)


def transposed_zero_padding_strides_odd(i_t: int, k: int, s: int, p: int, a: int) -> int:
    """Relationship 14: the transpose of any padded strided convolution, ``o' = s (i' - 1) + a + k - 2p``,
    where ``a = (i + 2p - k) mod s`` (PyTorch's ``output_padding``) tells apart the ``s`` input sizes
    that the direct convolution maps to the same output.

    Args:
        i_t: input size ``i'`` of the transposed convolution.
        k: kernel size.
        s: stride of the direct convolution.
        p: padding of the direct convolution.
        a: extra zeros on the bottom/right edge, ``0 <= a < s``.

    Raises:
        ValueError: if ``a`` is not in ``[0, s)`` or the output is non-positive.

    Examples:
        >>> transposed_zero_padding_strides_odd(3, 3, 2, 1, 1)   # Figure 4.7
        6
    """
    _ints(i_t=i_t, k=k, s=s, p=p, a=a)
    if a >= s:
        raise ValueError(f"Expected `a` to be smaller than the stride (Relationship 14: 0 <= a < s), got a={a}, s={s}")
    return _check_positive_output(
        s * (i_t - 1) + a + k - 2 * p, "Relationship 14, o' = s(i' - 1) + a + k - 2p", i_t=i_t, k=k, s=s, p=p, a=a
    )


def dilated(i: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """Relationship 15 (dilated convolution): ``o = floor((i + 2p - k - (k - 1)(d - 1)) / s) + 1``.

    Args:
        i: input size.
        k: kernel size.
        s: stride.
        p: zero padding on each side.
        d: dilation rate (``d = 1`` is an ordinary convolution).

    Raises:
        ValueError: for invalid sizes or a non-positive output.

    Examples:
        >>> dilated(7, 3, d=2)   # Figure 5.1
        3
    """
    _ints(i=i, k=k, s=s, p=p, d=d)
    return _check_positive_output(
        (i + 2 * p - k - (k - 1) * (d - 1)) // s + 1,
        "Relationship 15, o = floor((i + 2p - k - (k - 1)(d - 1))/s) + 1",
        i=i, k=k, s=s, p=p, d=d,
    )


@dataclass(frozen=True)
class Relationship:
    """One numbered Relationship of the guide: its number, case, formula and function."""

    number: int
    title: str
    formula: str
    function: Callable[..., int]
    transposed: bool = False


RELATIONSHIPS: dict[int, Relationship] = {
    r.number: r
    for r in (
        Relationship(1, "no zero padding, unit strides", "o = (i − k) + 1", no_padding_unit_strides),
        Relationship(2, "zero padding, unit strides", "o = (i − k) + 2p + 1", zero_padding_unit_strides),
        Relationship(3, "half (same) padding", "o = i + 2⌊k/2⌋ − (k − 1) = i", half_padding),
        Relationship(4, "full padding", "o = i + (k − 1)", full_padding),
        Relationship(5, "no zero padding, non-unit strides", "o = ⌊(i − k)/s⌋ + 1", no_padding_strides),
        Relationship(6, "zero padding, non-unit strides", "o = ⌊(i + 2p − k)/s⌋ + 1", zero_padding_strides),
        Relationship(7, "pooling", "o = ⌊(i − k)/s⌋ + 1", pooling),
        Relationship(8, "no zero padding, unit strides, transposed", "o' = i' + (k − 1)",
                     transposed_no_padding_unit_strides, True),
        Relationship(9, "zero padding, unit strides, transposed", "o' = i' + (k − 1) − 2p",
                     transposed_zero_padding_unit_strides, True),
        Relationship(10, "half (same) padding, transposed", "o' = i'", transposed_half_padding, True),
        Relationship(11, "full padding, transposed", "o' = i' − (k − 1)", transposed_full_padding, True),
        Relationship(12, "no zero padding, non-unit strides, transposed", "o' = s(i' − 1) + k",
                     transposed_no_padding_strides, True),
        Relationship(13, "zero padding, non-unit strides, transposed", "o' = s(i' − 1) + k − 2p",
                     transposed_zero_padding_strides, True),
        Relationship(14, "zero padding, non-unit strides, transposed, any input size",
                     "o' = s(i' − 1) + a + k − 2p", transposed_zero_padding_strides_odd, True),
        Relationship(15, "dilated convolution", "o = ⌊(i + 2p − k − (k − 1)(d − 1))/s⌋ + 1", dilated),
    )
}


# -------------------------------------------------------------------------------- per-axis broadcasting
def _as_tuple(name: str, value: T | tuple[T, ...] | list[T], n: int) -> tuple[T, ...]:
    """``value`` with one entry per spatial axis: a tuple or list of ``n`` entries as a tuple, a scalar repeated."""
    if isinstance(value, (tuple, list)):
        if len(value) != n:
            raise ValueError(f"Expected `{name}` to have {n} entries (one per spatial axis), got {value!r}")
        return tuple(value)
    return (value,) * n


def _axes(size: int | tuple[int, ...]) -> tuple[int, ...]:
    """A size of the general functions as one entry per spatial axis."""
    return size if isinstance(size, tuple) else (size,)


def _broadcast(**values: object) -> tuple[int, bool]:
    """Number of spatial axes (1 when all are scalars) and whether a tuple was given."""
    lengths = {len(v) for v in values.values() if isinstance(v, (tuple, list))}
    if len(lengths) > 1:
        raise ValueError(f"Expected tuple arguments of one length (one entry per spatial axis), got {values!r}")
    if lengths:
        n = lengths.pop()
        if n not in (1, 2, 3):
            raise ValueError(f"Expected 1, 2 or 3 spatial axes, got {n} in {values!r}")
        return n, True
    return 1, False


def same_padding_amounts(k: int, d: int = 1) -> tuple[int, int]:
    """Zeros added (before, after) by PyTorch's ``padding="same"``: ``d(k - 1)`` in all, the odd one after.

    For odd ``k`` this is the paper's half padding (Relationship 3); for an even dilated extent PyTorch pads
    asymmetrically, which the paper does not cover.
    """
    total = effective_kernel_size(k, d) - 1
    return total // 2, total - total // 2


def _conv_1d(i_: object, k_: object, s_: object, p: object, d_: object) -> int:
    i, k, s, d = _ints(i=i_, k=k_, s=s_, d=d_)
    if isinstance(p, str):
        if p == "valid":
            p = 0
        elif p == "same":
            if s != 1:
                raise ValueError(f"Expected `s` to be 1 with padding='same' (PyTorch rule), got s={s!r}")
            before, after = same_padding_amounts(k, d)
            return _check_positive_output(
                i + before + after - effective_kernel_size(k, d) + 1, "padding='same'", i=i, k=k, d=d
            )
        else:
            raise ValueError(f"Expected `p` to be an integer >= 0, 'same' or 'valid', got {p!r}")
    return dilated(i, k, s, integer("p", p, 0), d)


@overload
def conv_output_size(i: int, k: int, s: int = ..., p: int | str = ..., d: int = ...) -> int: ...
@overload
def conv_output_size(i: IntOrTuple, k: IntOrTuple, s: IntOrTuple = ..., p: IntOrTuple | str = ...,
                     d: IntOrTuple = ...) -> int | tuple[int, ...]: ...
def conv_output_size(
    i: IntOrTuple, k: IntOrTuple, s: IntOrTuple = 1, p: IntOrTuple | str = 0, d: IntOrTuple = 1
) -> int | tuple[int, ...]:
    """Output size of ``nn.Conv1d/2d/3d`` (Relationship 15, which contains Relationships 1-6).

    Args:
        i: input size, an int or a tuple with one entry per spatial axis.
        k: kernel size (int or tuple).
        s: stride (int or tuple).
        p: zero padding on each side (int or tuple), or PyTorch's ``"same"`` / ``"valid"``.
        d: dilation (int or tuple).

    Returns:
        An int when every argument is an int, else a tuple with one size per axis.

    Raises:
        ValueError: for non-integer or out-of-range arguments, tuples of different lengths,
            ``padding="same"`` with a stride other than 1, or a non-positive output (the dilated kernel
            larger than the padded input).

    Examples:
        >>> conv_output_size(32, 3, s=2, p=1)
        16
        >>> conv_output_size((8, 9), 4, p="same")
        (8, 9)
    """
    n, as_tuple = _broadcast(i=i, k=k, s=s, p=p if not isinstance(p, str) else 0, d=d)
    out = tuple(
        _conv_1d(*args)
        for args in zip(*(_as_tuple(name, v, n) for name, v in (("i", i), ("k", k), ("s", s), ("p", p), ("d", d))))
    )
    return out if as_tuple else out[0]


def transposed_output_padding(i: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> int:
    """The ``a`` of Relationship 14 for a direct convolution on input size ``i``: ``(i + 2p - k̂) mod s``.

    Passing it as ``output_padding`` to the transposed convolution restores the size ``i``.

    Raises:
        ValueError: for invalid parameters.

    Examples:
        >>> transposed_output_padding(6, 3, 2, 1)   # Figure 4.7: a = 1
        1
    """
    dilated(i, k, s, p, d)  # validates
    return (i + 2 * p - effective_kernel_size(k, d)) % s


def _transposed_1d(*values: object) -> int:
    i, k, s, p, a, d = _ints(**dict(zip(("i", "k", "s", "p", "output_padding", "d"), values)))
    if a >= s and a >= d:
        # PyTorch's rule; the paper only has a < s (Relationship 14).
        raise ValueError(f"Expected `output_padding` to be smaller than either the stride or the dilation (PyTorch "
                         f"rule), got output_padding={a}, s={s}, d={d}: lower output_padding")
    o = s * (i - 1) + a + effective_kernel_size(k, d) - 2 * p
    return _check_positive_output(o, "o' = s(i' - 1) + a + d(k - 1) + 1 - 2p", i=i, k=k, s=s, p=p, a=a, d=d)


@overload
def transposed_output_size(i: int, k: int, s: int = ..., p: int = ..., output_padding: int = ..., d: int = ...
                           ) -> int: ...
@overload
def transposed_output_size(i: IntOrTuple, k: IntOrTuple, s: IntOrTuple = ..., p: IntOrTuple = ...,
                           output_padding: IntOrTuple = ..., d: IntOrTuple = ...) -> int | tuple[int, ...]: ...
def transposed_output_size(
    i: IntOrTuple, k: IntOrTuple, s: IntOrTuple = 1, p: IntOrTuple = 0, output_padding: IntOrTuple = 0,
    d: IntOrTuple = 1,
) -> int | tuple[int, ...]:
    """Output size of ``nn.ConvTranspose1d/2d/3d``: ``o' = s(i' - 1) + a + d(k - 1) + 1 - 2p``.

    With ``d = 1`` this is Relationship 14 (``a`` = ``output_padding``), which contains Relationships 8-13.

    Args:
        i: input size ``i'`` (int or tuple per spatial axis).
        k: kernel size.
        s: stride.
        p: padding of the direct convolution it transposes.
        output_padding: the paper's ``a``; PyTorch requires it smaller than the stride *or* the dilation.
        d: dilation.

    Raises:
        ValueError: for invalid arguments, an ``output_padding`` not smaller than both stride and dilation,
            or a non-positive output (PyTorch returns an empty tensor for some zero-sized outputs; a layer
            whose output is empty is treated as impossible here).

    Examples:
        >>> transposed_output_size(3, 3, s=2, p=1, output_padding=1)   # Figure 4.7
        6
    """
    n, as_tuple = _broadcast(i=i, k=k, s=s, p=p, output_padding=output_padding, d=d)
    names = (("i", i), ("k", k), ("s", s), ("p", p), ("output_padding", output_padding), ("d", d))
    out = tuple(_transposed_1d(*args) for args in zip(*(_as_tuple(name, v, n) for name, v in names)))
    return out if as_tuple else out[0]


def _pool_1d(ceil_mode: bool, check_input: bool, *values: object) -> int:
    i, k, s, p, d = _ints(**dict(zip(("i", "k", "s", "p", "d"), values)))
    if check_input and i < k:
        # PyTorch's avg_pool3d alone insists that the unpadded input holds a whole window.
        raise ValueError(f"Expected `i` >= `k` for 3-D average pooling (PyTorch rule), got i={i}, k={k}")
    if p > k // 2:
        # PyTorch's rule (the paper's pooling has no padding at all).
        raise ValueError(f"Expected `p` to be at most half the kernel size (p <= k // 2), got p={p}, k={k}")
    span = i + 2 * p - effective_kernel_size(k, d)
    o = -(-span // s) + 1 if ceil_mode else span // s + 1
    if ceil_mode and (o - 1) * s >= i + p:
        # Beyond the paper: ceil_mode drops a last window that would start inside the right padding.
        o -= 1
    formula = "o = ⌈(i + 2p − k̂)/s⌉ + 1" if ceil_mode else "o = ⌊(i + 2p − k̂)/s⌋ + 1"
    return _check_positive_output(o, formula, i=i, k=k, s=s, p=p, d=d)


@overload
def pool_output_size(i: int, k: int, s: int | None = ..., p: int = ..., d: int = ..., ceil_mode: bool = ..., *,
                     mode: str = ...) -> int: ...
@overload
def pool_output_size(i: IntOrTuple, k: IntOrTuple, s: IntOrTuple | None = ..., p: IntOrTuple = ...,
                     d: IntOrTuple = ..., ceil_mode: bool = ..., *, mode: str = ...) -> int | tuple[int, ...]: ...
def pool_output_size(
    i: IntOrTuple, k: IntOrTuple, s: IntOrTuple | None = None, p: IntOrTuple = 0, d: IntOrTuple = 1,
    ceil_mode: bool = False, *, mode: str = "max",
) -> int | tuple[int, ...]:
    """Output size of ``nn.MaxPool*d`` and ``nn.AvgPool*d`` (Relationship 7, extended as PyTorch does).

    Args:
        i: input size (int or tuple per spatial axis).
        k: window size.
        s: stride; ``None`` means the window size, as in PyTorch.
        p: implicit padding on each side, at most ``k // 2``.
        d: dilation (max pooling only in PyTorch).
        ceil_mode: round up instead of down; a last window that would start in the right padding is dropped.
        mode: ``"max"`` or ``"avg"``; average pooling has no dilation, and in 3-D PyTorch also requires the
            unpadded input to be at least one window wide.

    Raises:
        ValueError: for invalid arguments, ``p > k // 2``, dilated average pooling, a 3-D average pooling
            input smaller than its window, or a non-positive output.

    Examples:
        >>> pool_output_size(5, 3, 1)
        3
        >>> pool_output_size(6, 2, 2, p=1, ceil_mode=True)
        4
    """
    flag("ceil_mode", ceil_mode)
    one_of("mode", mode, ("max", "avg"))
    if mode == "avg" and any(v != 1 for v in (d if isinstance(d, (tuple, list)) else (d,))):
        raise ValueError(f"Expected `d` to be 1 for average pooling (PyTorch has no dilated AvgPool), got {d!r}")
    s = k if s is None else s
    n, as_tuple = _broadcast(i=i, k=k, s=s, p=p, d=d)
    names = (("i", i), ("k", k), ("s", s), ("p", p), ("d", d))
    check = mode == "avg" and n == 3
    out = tuple(_pool_1d(ceil_mode, check, *args) for args in zip(*(_as_tuple(name, v, n) for name, v in names)))
    return out if as_tuple else out[0]


def ignored_inputs(i: int, k: int, s: int = 1, p: int = 0, d: int = 1) -> list[int]:
    """Input positions (0-based, padding excluded) that no kernel application of a convolution reads.

    The paper's remark after Relationship 6 covers the tail: when ``(i + 2p - k̂) mod s != 0`` the last
    rows/columns of the padded input are never covered. Strides larger than the (dilated) kernel also skip
    positions between windows, and dilation skips the holes of the kernel.

    Raises:
        ValueError: for invalid parameters.

    Examples:
        >>> ignored_inputs(32, 1, 2)[:3]   # a 1x1 stride-2 projection reads every other pixel
        [1, 3, 5]
        >>> ignored_inputs(6, 3, 2, 1)     # Figure 2.7: only padding is left out
        []
    """
    o = dilated(i, k, s, p, d)
    covered = bytearray(i)
    for t in range(o):
        for m in range(k):
            j = t * s + m * d - p
            if 0 <= j < i:
                covered[j] = 1
    return [j for j in range(i) if not covered[j]]
