"""LightningDataModules: CIFAR, embedded digits, image folders, synthetic tensors.

Importing this package needs neither scikit-learn nor scikit-image; ``DigitsDataModule`` and
``ImageFolderDataModule(root=None)`` ask for them when they load their data.
"""

from lightning_papers.data.augment import BatchAugment, Normalize
from lightning_papers.data.cifar import CIFARDataModule, read_cifar
from lightning_papers.data.digits import DigitsDataModule, load_digits_images
from lightning_papers.data.image_io import ImageInfo, ImageReadWarning, read_image, write_image
from lightning_papers.data.images import ImageFolderDataModule, load_image, sample_photos
from lightning_papers.data.synthetic import SyntheticDataModule
from lightning_papers.data.tensor_images import TensorImageDataModule

__all__ = [
    "BatchAugment",
    "CIFARDataModule",
    "DigitsDataModule",
    "ImageInfo",
    "ImageReadWarning",
    "ImageFolderDataModule",
    "Normalize",
    "SyntheticDataModule",
    "TensorImageDataModule",
    "load_digits_images",
    "load_image",
    "read_cifar",
    "read_image",
    "sample_photos",
    "write_image",
]
