"""Batch-level image augmentation and normalisation, run on the device after transfer.

The standard CIFAR augmentation of He et al. 2016 (arXiv 1512.03385, §4.2): pad 4 pixels with zeros,
take a random 32x32 crop, flip horizontally with probability 1/2. Doing it for a whole batch on the
accelerator (instead of per sample in loader workers) keeps the input pipeline off the critical path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_papers._validation import integer

__all__ = ["BatchAugment", "Normalize"]


class Normalize(nn.Module):
    """Turn uint8 images (N, C, H, W) into float images normalised per channel.

    Float inputs are taken to be in [0, 1] already.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"Expected `mean` and `std` of equal length, got {len(mean)} and {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"Expected every `std` to be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        mean = self.mean.to(x.device)
        std = self.std.to(x.device)
        return (x - mean) / std


class BatchAugment(nn.Module):
    """Random crop with zero padding and random horizontal flip, per sample, for a whole batch.

    Args:
        padding: zero padding added on each side before cropping back to the input size.
        flip: flip each image horizontally with probability 1/2.

    Raises:
        ValueError: for a negative ``padding``.

    Examples:
        >>> aug = BatchAugment(padding=4, flip=True)
        >>> aug(torch.rand(8, 3, 32, 32)).shape
        torch.Size([8, 3, 32, 32])
    """

    def __init__(self, padding: int = 4, flip: bool = True) -> None:
        super().__init__()
        self.padding = integer("padding", padding, 0)
        self.flip = flip

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, _, h, w = x.shape
        p = self.padding
        if p > 0:
            padded = nn.functional.pad(x, (p, p, p, p))
            oy = torch.randint(0, 2 * p + 1, (n,), device=x.device, generator=generator)
            ox = torch.randint(0, 2 * p + 1, (n,), device=x.device, generator=generator)
            rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
            cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chan = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[batch, chan, rows, cols]
        if self.flip:
            mask = torch.rand(n, device=x.device, generator=generator) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(-1), x)
        return x

    def extra_repr(self) -> str:
        return f"padding={self.padding}, flip={self.flip}"
