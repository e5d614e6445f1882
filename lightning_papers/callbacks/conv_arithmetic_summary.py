"""Log the convolution arithmetic of a LightningModule when fitting starts.

Dumoulin & Visin, A guide to convolution arithmetic for deep learning, 2016 (arXiv 1603.07285): every
convolution, pooling and transposed convolution of the model, the Relationship that sizes it, predicted
versus actual output sizes and receptive fields, computed by
:func:`lightning_papers.conv_arithmetic.trace_shapes`; this callback only hooks it onto the Trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from typing_extensions import override

from lightning_papers._validation import positive_int
from lightning_papers.callbacks.reporting import report
from lightning_papers.conv_arithmetic import ShapeTrace, trace_shapes

_SPATIAL = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
            nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)


class ConvArithmeticSummary(Callback):
    """Trace the model's shapes and receptive fields at fit start and log them.

    The table goes to the ``logging`` log (``rank_zero_info``), to TensorBoard as Markdown text under the tag
    ``conv_arithmetic/table`` when a ``TensorBoardLogger`` is attached, and as JSON to
    ``trainer.log_dir/conv_arithmetic/trace.json``. Layers whose strides or dilation leave input pixels
    unread, and predictions that differ from PyTorch's shapes, are reported with ``rank_zero_warn``. Every rank
    traces (the same model: the same table), rank 0 writes.

    Args:
        input_size: ``(C, *spatial)`` of the example input, used when the module has no
            ``example_input_array``.

    Raises:
        ValueError: if ``input_size`` is not a non-empty sequence of positive integers.

    Examples:
        >>> import lightning as L
        >>> trainer = L.Trainer(callbacks=[ConvArithmeticSummary(input_size=(3, 32, 32))])
    """

    TAG = "conv_arithmetic/table"

    def __init__(self, input_size: Sequence[int] = (3, 32, 32)) -> None:
        try:
            if isinstance(input_size, str) or not isinstance(input_size, Sequence) or not input_size:
                raise TypeError
            self.input_size = tuple(positive_int("input_size", v) for v in input_size)
        except (TypeError, ValueError):
            raise ValueError(f"Expected `input_size` to be a sequence of positive integers (C, *spatial), "
                             f"got {input_size!r}") from None
        self.trace: ShapeTrace | None = None

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        example: Any = pl_module.example_input_array
        example = self.input_size if example is None else move_data_to_device(example, pl_module.device)
        try:
            self.trace = trace_shapes(pl_module, example)
        except Exception as err:  # noqa: BLE001 - a summary must not stop training
            if not any(isinstance(m, _SPATIAL) for m in pl_module.modules()):
                # a transformer or an MLP: the guessed image input does not fit it, and there is nothing to trace
                rank_zero_warn(f"ConvArithmeticSummary: {type(pl_module).__name__} has no convolution or pooling "
                               "layer, nothing to trace; remove the callback for this model")
            else:
                rank_zero_warn(f"ConvArithmeticSummary could not trace the model: {type(err).__name__}: {err}")
            self.trace = None
        trace = self.trace
        if trace is not None:
            rank_zero_info(f"Convolution arithmetic (Dumoulin & Visin, arXiv 1603.07285):\n{trace.table()}")
            for row in trace.dropping_rows:
                rank_zero_warn(
                    f"ConvArithmeticSummary: layer {row.name!r} ({row.layer}, k={row.kernel}, s={row.stride}, "
                    f"p={row.padding}, d={row.dilation}) never reads {row.ignored} input pixels per axis of its "
                    f"{row.input_shape[-len(row.ignored):]} input"
                )
            for row in trace.mismatches:
                rank_zero_warn(f"ConvArithmeticSummary: layer {row.name!r} predicted {row.predicted}, got {row.actual}")
        # every rank reaches the report (its log_dir is a collective under DDP), traced or not
        report(trainer, "conv_arithmetic", step=trainer.global_step,
               texts={self.TAG: trace.to_markdown()} if trace is not None else None,
               files={"trace.json": trace.to_dict()} if trace is not None else None)
