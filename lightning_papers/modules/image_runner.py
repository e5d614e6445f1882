"""``ImageRunner``: inference of an image transformation network, with the fast path chosen on purpose.

For the networks of Johnson, Alahi, Fei-Fei, Perceptual Losses for Real-Time Style Transfer and
Super-Resolution, 2016 (arXiv 1603.08155), applied by ``lightning-papers stylize`` and ``super-resolve`` (and
timed by ``benchmarks/style_transfer.py``). Measured on an H100 for ``TransformerNet`` at 1920x1080 with plain
PyTorch: 18.1 ms fp32 eager, 15.9 ms fp16 autocast, 21.6-22.8 ms channels_last or bf16 (slower), 9.7 ms fp32 +
``torch.compile``, 5.8 ms fp16 + compile, 5.7 ms with CUDA graphs as well. So :meth:`ImageRunner.fast` (the
commands' ``--fast``) is fp16 + compile + CUDA graphs on CUDA and plain fp32 eager on a CPU, where compiling
costs more than it saves for a handful of photographs.

Every speed-up has a fallback that works everywhere: if ``torch.compile`` fails (no C compiler, no Triton, an
unsupported Python), the runner warns once, naming the error, and runs the network eagerly.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from lightning_papers._helpers import PRECISIONS, CompiledOrEager, resolve_device
from lightning_papers._validation import one_of

__all__ = ["PRECISIONS", "ImageRunner", "fast_options", "resolve_device"]

def fast_options(device: str | torch.device = "auto") -> dict[str, Any]:
    """The fastest settings for ``device``: fp16 autocast + ``torch.compile`` + CUDA graphs on CUDA, fp32 eager
    elsewhere (``precision``, ``channels_last``, ``compile``, ``cuda_graphs``: :class:`ImageRunner`'s arguments)."""
    if resolve_device(device).type == "cuda":
        return {"precision": "16", "channels_last": False, "compile": True, "cuda_graphs": True}
    return {"precision": "32", "channels_last": False, "compile": False, "cuda_graphs": False}


class ImageRunner:
    """Runs an image-to-image network for inference: ``runner(images) -> outputs`` (float32, on ``device``).

    The network is moved to ``device`` and put in eval mode (in place). Calls run under ``torch.no_grad()``
    and, for ``precision`` ``"bf16"``/``"16"``, under autocast; inputs move to ``device`` (and to channels_last
    when asked). Outputs are not clamped: that is the network's business (:class:`ImageModel` clamps).

    Args:
        net: a module mapping (N, 3, H, W) images to images (e.g. :class:`ImageModel`, ``TransformerNet``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        precision: ``"32"`` (float32), ``"bf16"`` or ``"16"`` (autocast dtypes).
        channels_last: NHWC memory format for the weights and the inputs.
        compile: ``torch.compile`` the network (the first call of each input shape compiles). If compiling
            fails, warn once (naming the error) and run eagerly from then on.
        cuda_graphs: CUDA only; implies ``compile``: ``torch.compile(mode="reduce-overhead")``, which records
            one CUDA graph per input shape and replays it. Outputs are copied out of the graph's memory.

    Raises:
        ValueError: for an unknown ``precision`` or ``device``, or ``cuda_graphs`` on a device that is not CUDA.

    Examples:
        >>> from lightning_papers.models import TransformerNet
        >>> runner = ImageRunner(TransformerNet(), device="cpu")
        >>> runner(torch.rand(1, 3, 20, 28)).shape
        torch.Size([1, 3, 20, 28])
    """

    def __init__(self, net: nn.Module, device: str | torch.device = "auto", precision: str = "32", *,
                 channels_last: bool = False, compile: bool = False, cuda_graphs: bool = False) -> None:
        one_of("precision", precision, tuple(PRECISIONS))
        self.device = resolve_device(device)
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"Expected a CUDA device with `cuda_graphs=True`, got device {str(self.device)!r}")
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.channels_last = bool(channels_last)
        self.cuda_graphs = bool(cuda_graphs)
        net = net.to(self.device)
        self.net = (net.to(memory_format=torch.channels_last) if self.channels_last else net).eval()
        # reduce-overhead = CUDA graphs (CUDA graph trees: one recording per input shape)
        self._run = CompiledOrEager(self.net, enabled=bool(compile or cuda_graphs),
                                    mode="reduce-overhead" if cuda_graphs else None)

    @classmethod
    def fast(cls, net: nn.Module, device: str | torch.device = "auto") -> ImageRunner:
        """The runner with :func:`fast_options` for ``device`` (the commands' ``--fast``)."""
        return cls(net, device, **fast_options(device))

    @property
    def compiled(self) -> bool:
        """Whether calls go through ``torch.compile`` (False after a fallback to eager)."""
        return self._run.compiled

    @property
    def compile_error(self) -> str | None:
        """``"<ExceptionType>: <first line>"`` of a failed compile, or ``None``."""
        return self._run.error

    def describe(self) -> str:
        """A one-line summary, e.g. ``"cuda, fp16 autocast, torch.compile + CUDA graphs"``."""
        parts = [str(self.device), {"32": "fp32", "bf16": "bf16 autocast", "16": "fp16 autocast"}[self.precision]]
        if self.channels_last:
            parts.append("channels_last")
        if self.compiled:
            parts.append("torch.compile + CUDA graphs" if self.cuda_graphs else "torch.compile")
        elif self.compile_error is not None:
            parts.append("eager (torch.compile failed)")
        return ", ".join(parts)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = contextlib.nullcontext() if self.dtype is None else torch.autocast(self.device.type, self.dtype)
        with torch.no_grad(), autocast:
            if not (self.cuda_graphs and self.compiled):
                return self._run(x).float()
            mark_step = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
            if mark_step is not None:  # each call is a new inference step: the previous outputs may be overwritten
                mark_step()
            out = self._run(x)
        # the output lives in the graph's memory pool, which the next replay overwrites: copy it out
        return out.float() if out.dtype != torch.float32 else out.clone()
