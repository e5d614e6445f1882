"""Embedded real data: scikit-learn's 1,797 handwritten digits (UCI optdigits) as 32x32 RGB images.

The offline default for the demo and the tests: real images with a real learning curve, shipped inside
scikit-learn, so nothing downloads. Needs the ``data`` extra (``pip install "lightning-papers[data]"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset
from typing_extensions import override

from lightning_papers._validation import integer, one_of, real
from lightning_papers.data._extras import require_extra
from lightning_papers.data.tensor_images import TensorImageDataModule


def _require_sklearn():
    datasets = require_extra("sklearn.datasets", "DigitsDataModule")
    return datasets, require_extra("sklearn.model_selection", "DigitsDataModule")


def load_digits_images(size: int = 32, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 images (N, channels, size, size) and int64 labels.

    The 8x8 images (values 0..16) are scaled to 0..255 and resized with bilinear interpolation.
    """
    size, channels = integer("size", size, 8, fix="the digits are 8x8"), one_of("channels", channels, (1, 3))
    datasets, _ = _require_sklearn()
    bunch = datasets.load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, channels, -1, -1).contiguous()
    return images, torch.as_tensor(bunch.target, dtype=torch.int64)


class DigitsDataModule(TensorImageDataModule):
    """scikit-learn digits, resized to 32x32x3, with a seeded stratified train/validation split.

    Args:
        batch_size: samples per batch.
        val_fraction: share of the 1,797 images held out for validation (stratified by class).
        seed: seed of the split, so every run and every rank sees the same split.
        size: image side after resizing.
        augment: random crop (padding 2) on training batches; no flips (a flipped digit is another digit).
        num_workers: loader workers.

    Raises:
        ValueError: for ``val_fraction`` outside (0, 1).

    Examples:
        >>> dm = DigitsDataModule(batch_size=64)
        >>> dm.setup("fit")
        >>> len(dm.train_set) + len(dm.val_set)
        1797
    """

    num_classes = 10

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.2,
        seed: int = 0,
        size: int = 32,
        augment: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        val_fraction = real("val_fraction", val_fraction, 0, 1, low_open=True, high_open=True)
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            augment=augment,
            crop_padding=2,
            flip=False,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            pin_memory=pin_memory,
        )
        self.save_hyperparameters()
        self.val_fraction = val_fraction
        self.seed = seed
        self.size = size
        self.image_size = (3, size, size)

    @override
    def prepare_data(self) -> None:
        _require_sklearn()  # fail early, on one process, with the install hint

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        _, model_selection = _require_sklearn()
        images, labels = load_digits_images(self.size)
        train_idx, val_idx = model_selection.train_test_split(
            torch.arange(len(labels)).numpy(),
            test_size=self.val_fraction,
            random_state=self.seed,
            stratify=labels.numpy(),
        )
        train_idx, val_idx = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
        self.train_set = TensorDataset(images[train_idx], labels[train_idx])
        self.val_set = TensorDataset(images[val_idx], labels[val_idx])
