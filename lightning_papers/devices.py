"""Device names and precisions: the one place that turns what a user types into a ``torch.device`` and an
autocast dtype.

The command line takes ``--device auto|cpu|cuda|cuda:N`` and ``--precision 32|bf16|16``; a Trainer has
Lightning's precision names (``"32-true"``, ``"bf16-mixed"``, ``"16-mixed"``, ...). Everything that runs a
model outside Lightning's own step (the image runner, loss surfaces, the probes inside a Trainer, the
benchmarks) maps them here, so a name means the same everywhere. Pure PyTorch: no Lightning.
"""

from __future__ import annotations

import torch

__all__ = ["LIGHTNING_PRECISIONS", "PRECISIONS", "autocast_dtype", "resolve_device"]

# --precision value -> autocast dtype (None: plain float32)
PRECISIONS: dict[str, torch.dtype | None] = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
# --precision value -> Lightning's name for the same
LIGHTNING_PRECISIONS: dict[str, str] = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}
# Lightning precision -> the autocast dtype its training step runs under ("-true" precisions cast the weights
# themselves, so a forward pass needs no autocast)
_LIGHTNING_AUTOCAST: dict[str, torch.dtype | None] = {
    "32-true": None, "32": None, "64-true": None, "64": None, "bf16-true": None, "16-true": None,
    "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; any other torch device name as is.

    Raises:
        ValueError: for a name torch does not know, or a CUDA device when CUDA is not available.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"Expected --device to be auto, cpu, cuda or cuda:N, got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Expected --device to be a device this machine has, got {device!r} (CUDA is not available)")
    return dev


def autocast_dtype(precision: str | int | None) -> torch.dtype | None:
    """The autocast dtype of a precision name: ours (``"32"``, ``"bf16"``, ``"16"``) or Lightning's
    (``"32-true"``, ``"bf16-mixed"``, ``"16-mixed"``, ``"bf16-true"``, ...); ``None`` means no autocast.

    Raises:
        ValueError: for a name that is neither.

    Examples:
        >>> autocast_dtype("bf16-mixed"), autocast_dtype("32")
        (torch.bfloat16, None)
    """
    name = "32" if precision is None else str(precision)
    if name in PRECISIONS:
        return PRECISIONS[name]
    if name in _LIGHTNING_AUTOCAST:
        return _LIGHTNING_AUTOCAST[name]
    raise ValueError(f"Expected a precision among {sorted(PRECISIONS)} or Lightning's "
                     f"{sorted(_LIGHTNING_AUTOCAST)}, got {precision!r}")
