"""A LightningDataModule over in-memory image tensors, with augmentation on the device.

Images are kept as uint8 tensors (N, C, H, W) and labels as int64. Loaders yield the raw uint8 batch;
``on_after_batch_transfer`` normalises it (and, for training, augments it) on whatever device the
Trainer uses, so the loader has almost nothing to do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from typing_extensions import override

from lightning_papers._validation import integer, positive_int
from lightning_papers.data.augment import BatchAugment, Normalize

__all__ = ["TensorImageDataModule", "make_loader"]


class _LoaderSettings(Protocol):
    """What :func:`make_loader` reads from a data module."""

    batch_size: int
    num_workers: int
    pin_memory: bool


def make_loader(dm: _LoaderSettings, dataset: Dataset | None, stage: str, shuffle: bool) -> DataLoader:
    """The DataLoader every data module of the package hands out, from ``dm``'s batch and worker settings.

    Raises:
        RuntimeError: if ``dataset`` is ``None`` (``setup()`` has not run).
    """
    if dataset is None:
        raise RuntimeError(f"{type(dm).__name__} has no {stage} data: call `setup()` first (the Trainer does this)")
    return DataLoader(
        dataset,
        batch_size=dm.batch_size,
        shuffle=shuffle,
        num_workers=dm.num_workers,
        pin_memory=dm.pin_memory and torch.cuda.is_available(),
        persistent_workers=dm.num_workers > 0,
        drop_last=False,
    )


class TensorImageDataModule(L.LightningDataModule):
    """Base class: subclasses fill ``self.train_set``, ``self.val_set`` (and ``self.test_set``) in ``setup``.

    Args:
        batch_size: samples per batch for every loader.
        num_workers: loader worker processes (tensors in memory rarely need any).
        augment: pad-and-crop (``crop_padding``) and horizontal flip on training batches.
        crop_padding: zero padding before the random crop.
        flip: random horizontal flips (turn off for digits, where a flip changes the class).
        mean: per-channel normalisation mean, in [0, 1] units.
        std: per-channel normalisation standard deviation, in [0, 1] units.
        pin_memory: pin loader memory when a CUDA device is present (faster host-to-GPU copies).

    Raises:
        ValueError: for a non-positive ``batch_size`` or negative ``num_workers``.
    """

    num_classes: int = 10
    image_size: tuple[int, int, int] = (3, 32, 32)

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        augment: bool = True,
        crop_padding: int = 4,
        flip: bool = True,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        self.batch_size = positive_int("batch_size", batch_size)
        self.num_workers = integer("num_workers", num_workers, 0)
        self.pin_memory = pin_memory
        self.normalize = Normalize(mean, std)
        self.augment = BatchAugment(crop_padding, flip) if augment else None
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    # -- loaders ---------------------------------------------------------------------------------------
    @override
    def train_dataloader(self) -> DataLoader:
        return make_loader(self, self.train_set, "training", shuffle=True)

    @override
    def val_dataloader(self) -> DataLoader:
        return make_loader(self, self.val_set, "validation", shuffle=False)

    @override
    def test_dataloader(self) -> DataLoader:
        return make_loader(self, self.test_set if self.test_set is not None else self.val_set, "test", shuffle=False)

    @override
    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    # -- device-side transforms ------------------------------------------------------------------------
    @override
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, torch.Tensor):
            # A bare tensor is not one of our batches (e.g. a model summary's example input): only raw
            # uint8 images get normalised.
            return self.normalize(batch) if batch.dtype == torch.uint8 else batch
        x, *rest = batch
        training = self.trainer is not None and self.trainer.training
        if training and self.augment is not None:
            x = self.augment(x)
        return (self.normalize(x), *rest)

    def transform(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        """The same transform outside a Trainer (e.g. for a plain PyTorch loop or a probe)."""
        if train and self.augment is not None:
            x = self.augment(x)
        return self.normalize(x)
