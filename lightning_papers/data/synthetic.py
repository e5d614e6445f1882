"""Random CIFAR-shaped tensors, for throughput benchmarks only.

The images are noise: a model learns nothing from them, so never use this module for an accuracy claim.
"""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset
from typing_extensions import override

from lightning_papers._validation import integer, positive_int
from lightning_papers.data.tensor_images import TensorImageDataModule


class SyntheticDataModule(TensorImageDataModule):
    """Seeded random uint8 images and labels with CIFAR's shapes (throughput benchmarks only).

    Args:
        num_samples: training images; validation gets ``num_samples // 10`` (at least one).
        num_classes: label range.
        image_size: (C, H, W).
        batch_size: samples per batch.
        augment: run the same device-side augmentation as CIFAR, so the benchmark pays for it too.
        seed: generator seed.

    Raises:
        ValueError: for a non-positive ``num_samples`` or ``num_classes``.
    """

    def __init__(
        self,
        num_samples: int = 10_000,
        num_classes: int = 10,
        image_size: tuple[int, int, int] = (3, 32, 32),
        batch_size: int = 128,
        augment: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        num_samples, num_classes = positive_int("num_samples", num_samples), integer("num_classes", num_classes, 2)
        super().__init__(batch_size=batch_size, num_workers=num_workers, augment=augment,
                         pin_memory=pin_memory)
        self.save_hyperparameters()
        self.num_samples = num_samples
        self.num_classes = num_classes
        c, h, w = image_size
        self.image_size = (c, h, w)
        self.seed = seed

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        g = torch.Generator().manual_seed(self.seed)
        n_val = max(1, self.num_samples // 10)

        def make(n: int) -> TensorDataset:
            x = torch.randint(0, 256, (n, *self.image_size), generator=g, dtype=torch.uint8)
            y = torch.randint(0, self.num_classes, (n,), generator=g)
            return TensorDataset(x, y)

        self.train_set = make(self.num_samples)
        self.val_set = make(n_val)
