"""Double backward (Hessian-vector products) on the models of today: fused attention, and a pre-flight check.

A Hessian-vector product differentiates the gradient a second time. PyTorch's fused scaled-dot-product attention
kernels (CPU flash; CUDA flash and memory-efficient; cuDNN) have a backward but no double backward, so
``nn.TransformerEncoder``, ``nn.MultiheadAttention`` and Hugging Face models with their default ``"sdpa"``
attention fail the second differentiation with "derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented". :func:`second_order` runs the
forward passes that build the differentiated graph under the math kernel (``torch.nn.attention.sdpa_kernel`` with
``SDPBackend.MATH``: softmax(QK^T / sqrt(d)) V written with ordinary differentiable ops), which computes the same
values as the fused kernels (up to float rounding) on every device: the kernel is picked when the forward pass
runs, so one context around graph building covers CPU and CUDA alike.

Every Hessian-vector product of the package runs inside :func:`second_order`: it is the one place that says how.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

__all__ = ["describe_blocker", "double_backward_blocker", "second_order"]


@contextmanager
def second_order() -> Iterator[None]:
    """Graph building (forward passes) and double backward with gradients enabled and scaled-dot-product
    attention on the math kernel, the only one with a double backward."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3 (the package needs >= 2.4)
        with torch.enable_grad():
            yield
        return
    with torch.enable_grad(), sdpa_kernel(SDPBackend.MATH):
        yield


_NOT_IMPLEMENTED = re.compile(r"derivative for (\S+) is not implemented")


def double_backward_blocker(loss: Callable[[], torch.Tensor], params: list[torch.Tensor]) -> str | None:
    """The operation that stops a Hessian-vector product of ``loss()`` w.r.t. ``params``, or ``None`` when one can
    be taken: one forward pass, one gradient with its graph and one product along a ones vector, under
    :func:`second_order` (run it on one small batch, before spending training time).

    Returns:
        ``"aten::_ctc_loss_backward"`` and the like (from PyTorch's "derivative for ... is not implemented"), the
        first line of the error for other failures of the second differentiation (e.g. a custom
        ``autograd.Function`` marked ``@once_differentiable``), or ``None``.
    """
    with second_order():
        value = loss()
        if not isinstance(value, torch.Tensor) or value.dim() != 0 or not value.requires_grad:
            return None  # not a differentiable scalar: the caller's own checks say so
        grads = torch.autograd.grad(value.float(), params, create_graph=True, allow_unused=True)
        pairs = [(g, p) for g, p in zip(grads, params) if g is not None and g.requires_grad]
        if not pairs:
            return None
        try:
            torch.autograd.grad([g for g, _ in pairs], [p for _, p in pairs],
                                grad_outputs=[torch.ones_like(g) for g, _ in pairs], allow_unused=True)
        except RuntimeError as err:
            return _operation(err)
    return None


def _operation(err: Exception) -> str:
    text = str(err)
    match = _NOT_IMPLEMENTED.search(text)
    if match:
        return match.group(1)
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return first[:120]


def describe_blocker(op: str, fix: str) -> str:
    """The one-line refusal for an operation without double backward."""
    return f"Hessian-vector products need a double backward, and {op} has none; {fix}"
