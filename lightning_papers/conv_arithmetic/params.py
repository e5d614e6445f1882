"""The arithmetic parameters of a convolution, transposed convolution or pooling layer.

Dumoulin & Visin, A guide to convolution arithmetic for deep learning, 2016 (arXiv 1603.07285) describe every
layer by its input size ``i``, kernel size ``k``, stride ``s``, zero padding ``p`` and, for dilated
convolutions, dilation ``d`` (plus ``a`` for transposed convolutions). :class:`LayerParams` holds those
numbers per spatial axis and computes the output size with the PyTorch-exact functions of
:mod:`~lightning_papers.conv_arithmetic.formulas`.

Examples:
    >>> from torch import nn
    >>> LayerParams.from_layer(nn.Conv2d(3, 8, 3, stride=2, padding=1)).output_size((32, 32))
    (16, 16)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from torch import nn

from lightning_papers._validation import one_of
from lightning_papers.conv_arithmetic.formulas import (
    IntOrTuple,
    _as_tuple,
    _axes,
    _broadcast,
    conv_output_size,
    pool_output_size,
    same_padding_amounts,
    transposed_output_size,
)

__all__ = ["KINDS", "LayerParams"]

KINDS = ("conv", "transposed", "pool")


def _spatial_dims(layer: nn.Module) -> int:
    for n, classes in (
        (1, (nn.Conv1d, nn.ConvTranspose1d, nn.MaxPool1d, nn.AvgPool1d)),
        (2, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)),
        (3, (nn.Conv3d, nn.ConvTranspose3d, nn.MaxPool3d, nn.AvgPool3d)),
    ):
        if isinstance(layer, classes):
            return n
    raise ValueError(
        f"Expected `layer` to be an nn.Conv*d, nn.ConvTranspose*d, nn.MaxPool*d or nn.AvgPool*d, "
        f"got {type(layer).__name__}"
    )


@dataclass(frozen=True)
class LayerParams:
    """Per-axis ``k``, ``s``, ``p``, ``d`` (and ``a``/``ceil_mode``) of one layer.

    Args:
        kind: ``"conv"``, ``"transposed"`` or ``"pool"``.
        kernel: kernel size per axis.
        stride: stride per axis.
        padding: padding per axis, or ``"same"``/``"valid"`` (convolutions only).
        dilation: dilation per axis.
        output_padding: the paper's ``a`` per axis (transposed convolutions only).
        ceil_mode: PyTorch's rounding mode for pooling.
        pool_mode: ``"max"`` or ``"avg"`` pooling.

    Raises:
        ValueError: for an unknown ``kind`` or tuples of different lengths.

    Examples:
        >>> LayerParams.create("transposed", k=3, s=2, p=1, output_padding=1).output_size(16)
        (32,)
    """

    kind: str
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...] | str
    dilation: tuple[int, ...]
    output_padding: tuple[int, ...]
    ceil_mode: bool = False
    pool_mode: str = "max"

    def __post_init__(self) -> None:
        one_of("kind", self.kind, KINDS)
        if isinstance(self.padding, str) and self.kind != "conv":
            raise ValueError(f"Expected an integer `padding` for kind {self.kind!r}, got {self.padding!r}")

    @property
    def ndim(self) -> int:
        return len(self.kernel)

    @classmethod
    def create(
        cls,
        kind: str = "conv",
        *,
        k: IntOrTuple,
        s: IntOrTuple | None = None,
        p: IntOrTuple | str = 0,
        d: IntOrTuple = 1,
        output_padding: IntOrTuple = 0,
        ceil_mode: bool = False,
        pool_mode: str = "max",
        ndim: int | None = None,
    ) -> LayerParams:
        """Build from ints or tuples; ``s=None`` means 1 (or ``k`` for pooling, as PyTorch does)."""
        if s is None:
            s = k if kind == "pool" else 1
        n = ndim or _broadcast(k=k, s=s, p=0 if isinstance(p, str) else p, d=d, output_padding=output_padding)[0]
        padding = p if isinstance(p, str) else _as_tuple("p", p, n)
        return cls(kind, _as_tuple("k", k, n), _as_tuple("s", s, n), padding, _as_tuple("d", d, n),
                   _as_tuple("output_padding", output_padding, n), bool(ceil_mode), pool_mode)

    @classmethod
    def from_layer(cls, layer: nn.Module) -> LayerParams:
        """Read the parameters of an ``nn.Conv*d``, ``nn.ConvTranspose*d``, ``nn.MaxPool*d`` or ``nn.AvgPool*d``.

        Raises:
            ValueError: for any other module.
        """
        n = _spatial_dims(layer)
        if isinstance(layer, nn.modules.conv._ConvTransposeNd):
            return cls.create("transposed", k=layer.kernel_size, s=layer.stride, p=layer.padding,
                              d=layer.dilation, output_padding=layer.output_padding, ndim=n)
        if isinstance(layer, nn.modules.conv._ConvNd):
            return cls.create("conv", k=layer.kernel_size, s=layer.stride, p=layer.padding, d=layer.dilation,
                              ndim=n)
        if isinstance(layer, nn.modules.pooling._MaxPoolNd):
            return cls.create("pool", k=layer.kernel_size, s=layer.stride, p=layer.padding, d=layer.dilation,
                              ceil_mode=layer.ceil_mode, ndim=n)
        avg = cast("nn.AvgPool1d | nn.AvgPool2d | nn.AvgPool3d", layer)  # all that _spatial_dims leaves
        return cls.create("pool", k=avg.kernel_size, s=avg.stride, p=avg.padding, ceil_mode=avg.ceil_mode,
                          pool_mode="avg", ndim=n)

    def padding_amounts(self, axis: int) -> tuple[int, int]:
        """Zeros (before, after) on one axis: ``"valid"`` adds none, PyTorch's ``"same"`` adds the odd one after."""
        if isinstance(self.padding, str):
            return (0, 0) if self.padding == "valid" else same_padding_amounts(self.kernel[axis], self.dilation[axis])
        return self.padding[axis], self.padding[axis]

    def output_size(self, input_size: IntOrTuple) -> tuple[int, ...]:
        """Spatial output size for spatial ``input_size`` (an int is used for every axis).

        Raises:
            ValueError: as :func:`conv_output_size`, :func:`transposed_output_size` and
                :func:`pool_output_size` do.
        """
        i = _as_tuple("input_size", input_size, self.ndim)
        if self.kind == "conv":
            out = conv_output_size(i, self.kernel, self.stride, self.padding, self.dilation)
        elif isinstance(self.padding, str):  # __post_init__ allows a string for convolutions only
            raise ValueError(f"Expected an integer `padding` for kind {self.kind!r}, got {self.padding!r}")
        elif self.kind == "transposed":
            out = transposed_output_size(i, self.kernel, self.stride, self.padding, self.output_padding, self.dilation)
        else:
            out = pool_output_size(i, self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode,
                                   mode=self.pool_mode)
        return _axes(out)
