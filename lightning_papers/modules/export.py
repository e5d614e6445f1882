"""``lightning-papers export``: a trained checkpoint as an ONNX or TorchScript file that runs without this package.

Johnson, Alahi, Fei-Fei, Perceptual Losses for Real-Time Style Transfer and Super-Resolution, 2016
(arXiv 1603.08155). The checkpoint's kind (``FastStyleTransfer`` or ``SuperResolution``) is read from the file;
what is exported is its inference forward, :class:`~lightning_papers.modules.ImageModel`: images in [0, 1]
of shape (N, 3, H, W) in, images in [0, 1] out (clamped), the input's size for style transfer and ``factor``
times it for super-resolution, the bicubic residual included::

    lightning-papers export --ckpt style.ckpt --format onnx --output style.onnx [--opset 17]
    lightning-papers export --ckpt sr.ckpt --format torchscript --output sr.pt

Sizes: the batch, height and width are dynamic. TorchScript (``torch.jit.script``) keeps the networks'
padding logic and takes any H, W >= 1. ONNX (the TorchScript-based ``torch.onnx.export``, which every torch from
2.4 on has; ``dynamo=False`` where the dynamo exporter is the default) computes the padding from the input's
size too, and takes any H, W >= 5 (``ONNX_MIN_SIZE``; below that ONNX Runtime fails in a reflection ``Pad``);
the ONNX file records its kind, factor and minimum size in its metadata.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path
from typing import Any

import torch

from lightning_papers._validation import integer, one_of

__all__ = ["DEFAULT_OPSET", "FORMATS", "MIN_OPSET", "ONNX_MIN_SIZE", "export_checkpoint", "export_model", "max_opset"]

FORMATS = ("onnx", "torchscript")
MIN_OPSET = 11  # ONNX Pad with computed pads and Resize with cubic interpolation
DEFAULT_OPSET = 17
ONNX_MIN_SIZE = 5  # the traced padding handles H, W >= 5; smaller images fail in a reflection Pad
EXAMPLE_SIZE = 32  # the example image the ONNX exporter traces (any size works afterwards)

# Expected while tracing for ONNX, and not the user's business: sizes read as tensors, the legacy exporter's
# deprecation notice, instance norm's train flag, slices that are not constant-folded.
_EXPORT_NOISE = (
    ".*might cause the trace to be incorrect.*",
    ".*legacy TorchScript-based ONNX export.*",
    ".*The feature will be removed.*",
    ".*is set to train=True.*",
    ".*Constant folding.*",
    ".*torch.jit.(script|save|trace).* is deprecated.*",
)


def export_checkpoint(ckpt: str | Path, output: str | Path, format: str = "onnx", *,
                      opset: int = DEFAULT_OPSET) -> Path:
    """Export the inference model of a ``FastStyleTransfer`` or ``SuperResolution`` checkpoint; returns ``output``.

    Raises:
        FileNotFoundError: for a missing checkpoint.
        ValueError: for an unknown ``format``, an ``opset`` out of range, or a file that is not a checkpoint of
            either kind.
        ImportError: for ONNX without the ``onnx`` package (the ``export`` extra).
    """
    from lightning_papers._helpers import check_outputs
    from lightning_papers.modules.image_model import load_image_model

    _check_format(format, opset)
    if Path(output).is_dir():
        raise ValueError(f"Expected `output` to name a file to write, got the folder {str(output)!r}")
    check_outputs([output], [ckpt], flag="--output", input_flag="--ckpt", overwrite=True)
    return export_model(load_image_model(ckpt), output, format, opset=opset)


def export_model(model: torch.nn.Module, output: str | Path, format: str = "onnx", *,
                 opset: int = DEFAULT_OPSET) -> Path:
    """Export an image model (e.g. an :class:`~lightning_papers.modules.ImageModel`, on the CPU, float32) to
    ``output`` with dynamic batch, height and width; returns ``output``.

    Raises:
        ValueError: for an unknown ``format`` or an ``opset`` out of range.
        ImportError: for ONNX without the ``onnx`` package (the ``export`` extra).
    """
    _check_format(format, opset)
    output = Path(output)
    model = model.cpu().float().eval()
    if format == "onnx":
        from lightning_papers.data._extras import require_extra

        require_extra("onnx", "ONNX export", extra="export")
    from lightning_papers._helpers import atomic_write

    with warnings.catch_warnings(), atomic_write(output) as tmp:  # a temporary file, renamed when complete
        for message in _EXPORT_NOISE:
            warnings.filterwarnings("ignore", message=message)
        if format == "onnx":
            _export_onnx(model, tmp, opset)
        else:
            torch.jit.save(torch.jit.script(model), str(tmp))
    return output


def max_opset() -> int:
    """The newest ONNX opset this torch's TorchScript-based exporter writes (20 on torch 2.5-2.11)."""
    try:
        from torch.onnx import _constants
    except ImportError:  # pragma: no cover - a torch without the private table
        return DEFAULT_OPSET
    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", getattr(_constants, "ONNX_MAX_OPSET",
                                                                                 DEFAULT_OPSET)))


def _check_format(format: str, opset: int) -> None:
    one_of("--format", format, FORMATS)
    if format == "onnx":
        integer("--opset", opset, MIN_OPSET, max_opset(), fix=f"pass an ONNX opset torch {torch.__version__} exports")


def _export_onnx(model: torch.nn.Module, output: Path, opset: int) -> None:
    import onnx

    # a fixed example that leaves the global RNG alone; its values do not matter, its size is traced symbolically
    example = torch.rand(1, 3, EXAMPLE_SIZE, EXAMPLE_SIZE, generator=torch.Generator().manual_seed(0))
    kwargs: dict[str, Any] = {
        "input_names": ["image"],
        "output_names": ["output"],
        "dynamic_axes": {"image": {0: "batch", 2: "height", 3: "width"},
                         "output": {0: "batch", 2: "out_height", 3: "out_width"}},
        "opset_version": opset,
    }
    # The TorchScript-based exporter: it records the padding as computed from the input's size (torch.export
    # specialises it to the example's size), it needs no onnxscript and takes seconds, not tens of seconds.
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    try:
        with torch.no_grad():
            torch.onnx.export(model, (example,), str(output), **kwargs)
    except Exception as err:
        if "opset" in str(err).lower():
            raise ValueError(f"Expected --opset to be an ONNX opset version this torch {torch.__version__} exports "
                             f"(>= {MIN_OPSET}), got {opset}: {err}") from err
        raise
    proto = onnx.load(str(output))
    onnx.checker.check_model(proto)
    metadata = {"kind": getattr(model, "kind", "") or type(model).__name__,
                "factor": str(getattr(model, "factor", 1)),
                "min_size": str(ONNX_MIN_SIZE),
                "input": "image: float32 (N, 3, H, W) in [0, 1]",
                "paper": "Johnson, Alahi, Fei-Fei 2016, arXiv 1603.08155"}
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(output))
