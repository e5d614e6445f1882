"""Convolution arithmetic: Dumoulin & Visin, A guide to convolution arithmetic for deep learning, 2016
(arXiv 1603.07285).

Pure core (no Lightning): the guide's fifteen numbered Relationships and PyTorch-exact output sizes
(:mod:`.formulas`), worked explanations (:func:`explain`), a parameter solver (:func:`solve`,
:func:`inverse_of`), a dataflow-true shape and receptive-field trace of any model (:func:`trace_shapes`) and
animations in the paper's style (:func:`animate`, :func:`animate_all`).

Examples:
    >>> from lightning_papers.conv_arithmetic import conv_output_size, explain
    >>> conv_output_size(32, 3, s=2, p=1)
    16
    >>> explain(input_size=7, k=3, d=2).relationships
    (15,)
"""

from lightning_papers.conv_arithmetic.animation import animate, animate_all, animation_cost, frames
from lightning_papers.conv_arithmetic.explain import Explanation, explain, relationship_for
from lightning_papers.conv_arithmetic.formulas import (
    RELATIONSHIPS,
    Relationship,
    conv_output_size,
    dilated,
    effective_kernel_size,
    full_padding,
    half_padding,
    ignored_inputs,
    no_padding_strides,
    no_padding_unit_strides,
    pool_output_size,
    pooling,
    same_padding_amounts,
    transposed_full_padding,
    transposed_half_padding,
    transposed_no_padding_strides,
    transposed_no_padding_unit_strides,
    transposed_output_padding,
    transposed_output_size,
    transposed_zero_padding_strides,
    transposed_zero_padding_strides_odd,
    transposed_zero_padding_unit_strides,
    zero_padding_strides,
    zero_padding_unit_strides,
)
from lightning_papers.conv_arithmetic.params import LayerParams
from lightning_papers.conv_arithmetic.solve import Solution, inverse_of, solve
from lightning_papers.conv_arithmetic.trace import Geometry, ShapeTrace, TraceRow, trace_shapes

__all__ = [
    "RELATIONSHIPS",
    "Explanation",
    "Geometry",
    "LayerParams",
    "Relationship",
    "ShapeTrace",
    "Solution",
    "TraceRow",
    "animate",
    "animate_all",
    "animation_cost",
    "conv_output_size",
    "dilated",
    "effective_kernel_size",
    "explain",
    "frames",
    "full_padding",
    "half_padding",
    "ignored_inputs",
    "inverse_of",
    "no_padding_strides",
    "no_padding_unit_strides",
    "pool_output_size",
    "pooling",
    "relationship_for",
    "same_padding_amounts",
    "solve",
    "trace_shapes",
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
