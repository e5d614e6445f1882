"""LightningDataModules: CIFAR, embedded digits, synthetic tensors.

Importing this package needs neither scikit-learn nor scikit-image; ``DigitsDataModule`` asks for them
when it loads its data.
"""

from lightning_papers.data.augment import BatchAugment, Normalize
from lightning_papers.data.cifar import CIFARDataModule, read_cifar
from lightning_papers.data.digits import DigitsDataModule, load_digits_images
from lightning_papers.data.synthetic import SyntheticDataModule
from lightning_papers.data.tensor_images import TensorImageDataModule

__all__ = [
    "BatchAugment",
    "CIFARDataModule",
    "DigitsDataModule",
    "Normalize",
    "SyntheticDataModule",
    "TensorImageDataModule",
    "load_digits_images",
    "read_cifar",
]
