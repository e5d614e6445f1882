"""Image folders (and scikit-image's sample photographs) for the perceptual-loss networks of Johnson, Alahi and
Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution", 2016 (arXiv 1603.08155).

The paper trains on the 80k images of MS-COCO resized to 256x256; :class:`ImageFolderDataModule` reads any
folder of photographs instead (recursively), and with ``root=None`` the colour photographs that ship inside
scikit-image (astronaut, chelsea, coffee, rocket, ...), so the demo and the tests never download anything.

Batches are float tensors (N, 3, S, S) in [0, 1], without labels.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T
from torchvision.transforms.v2 import functional as TF
from typing_extensions import override

from lightning_papers._validation import integer, positive_int, real
from lightning_papers.data._extras import require_extra
from lightning_papers.data.image_io import read_image
from lightning_papers.data.tensor_images import make_loader

__all__ = [
    "IMAGE_EXTENSIONS",
    "SAMPLE_PHOTOS",
    "ImageFolderDataModule",
    "ImageListDataset",
    "find_images",
    "load_image",
    "sample_photos",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
# RGB photographs bundled with the scikit-image distribution (no pooch download). ``cat`` is an alias of
# ``chelsea`` and ``coins``/``camera`` are greyscale, so they are left out.
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")

ImageSource = str | os.PathLike | np.ndarray | Image.Image


def _require_skimage_data():
    return require_extra("skimage.data", "Loading the sample photographs")


def sample_photos() -> list[tuple[str, np.ndarray]]:
    """The colour photographs shipped in ``skimage.data``: a list of (name, H x W x 3 uint8 array).

    Raises:
        ImportError: without scikit-image (the ``data`` extra).
    """
    data = _require_skimage_data()
    photos = []
    for name in SAMPLE_PHOTOS:
        loader = getattr(data, name, None)
        if loader is None:  # an older or newer scikit-image without this photograph
            continue
        image = np.asarray(loader())
        if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
            photos.append((name, image))
    return photos


def find_images(root: str | os.PathLike) -> list[Path]:
    """Image files under ``root`` (recursive, extensions :data:`IMAGE_EXTENSIONS`, any case), sorted.

    Raises:
        FileNotFoundError: if ``root`` does not exist or is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Expected `root` to be a folder of images, but {str(root)!r} is not a directory")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def load_image(source: ImageSource, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """One image as a float tensor (3, H, W) in [0, 1].

    Args:
        source: a file path, a PIL image, an array (H, W) or (H, W, C) or a tensor (H, W) or (C, H, W), C in 1..4.
            Values are scaled by their real range (uint8 / 255, uint16 / 65535, floats kept in [0, 1]; every PIL
            mode, 16-bit PNG and TIFF included) or refused by name: :mod:`lightning_papers.data.image_io`.
            Greyscale is replicated to RGB, alpha composited over white, a palette converted, EXIF orientation
            applied, the first frame of an animation read (with a warning).
        size: ``None`` keeps the size; an int resizes the shorter side to it (aspect kept); ``(H, W)`` resizes
            to exactly that.

    Raises:
        FileNotFoundError: for a path that does not exist.
        ValueError: for a file PIL cannot read, a mode or dtype without a known range, values outside it, an array
            of the wrong shape or a non-positive size.
    """
    if size is not None:
        try:
            sizes = [positive_int("size", s) for s in (size if isinstance(size, (tuple, list)) else (size,))]
        except ValueError:
            sizes = []
        if len(sizes) not in (1, 2):
            raise ValueError(f"Expected `size` to be a positive int or an (H, W) pair, got {size!r}")
    tensor = read_image(source)[0]
    if size is not None:
        tensor = TF.resize(tensor, sizes, antialias=True).clamp_(0.0, 1.0)
    return tensor


def _readable(path: Path) -> bool:
    """Whether ``path`` decodes: ``verify()`` checks the structure only (a truncated JPEG passes it), so the pixel
    data is decoded too, at reduced size where the format allows (JPEG's DCT scaling: about 1/8 of the work)."""
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
        return True
    except Exception:  # PIL raises many kinds (OSError, SyntaxError, struct.error, ...) on broken files
        return False


class ImageListDataset(Dataset):
    """Images from files or in-memory arrays, read as float tensors (3, H, W) in [0, 1] by their real range
    (:func:`~lightning_papers.data.read_image`), then passed to ``transform`` (a tensor transform).

    A file that fails to load (e.g. truncated after it passed verification) is skipped: the next readable image
    is returned instead and a warning names it once, so an epoch never crashes on a bad file.
    """

    def __init__(self, sources: Sequence[ImageSource], transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if not sources:
            raise ValueError("Expected at least one image, got none")
        self.sources = list(sources)
        self.transform = transform
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> torch.Tensor:
        for offset in range(len(self.sources)):
            i = (index + offset) % len(self.sources)
            if i in self._bad:
                continue
            try:
                image = read_image(self.sources[i])[0]
            except Exception as err:  # never crash mid-epoch: warn once, use the next image
                self._bad.add(i)
                warnings.warn(f"Skipping unreadable image {self.sources[i]!s}: {err}", UserWarning, stacklevel=2)
                continue
            out = self.transform(image)  # resampling can step a rounding error outside [0, 1]
            return out.clamp_(0.0, 1.0) if isinstance(out, torch.Tensor) and out.is_floating_point() else out
        raise RuntimeError(f"None of the {len(self.sources)} images could be read")


class ImageFolderDataModule(L.LightningDataModule):
    """Photographs from a folder (recursive) or scikit-image's samples, as (N, 3, S, S) batches in [0, 1].

    Training images are random resized crops (``scale`` of the area, aspect 3/4..4/3) resized to
    ``image_size``; validation images are resized (shorter side) and centre-cropped. The paper instead resizes
    every COCO image to 256x256; the crops add variety when the folder is small. Unreadable files are found in
    ``setup`` (PIL ``verify`` and a decode, at 1/8 size for JPEGs, so truncated files are caught) and skipped with one
    warning naming them.

    Args:
        root: a folder of ``.jpg/.jpeg/.png/.bmp/.webp/.tif/.tiff/.gif`` files (any case, searched recursively),
            or ``None`` for the colour photographs in ``skimage.data`` (needs the ``data`` extra).
        image_size: side of the square crops.
        batch_size: images per batch.
        val_fraction: share of the images held out for validation (at least one image when there are two or
            more; a single image serves both splits).
        seed: seed of the train/validation split.
        num_workers: loader worker processes.
        scale: area range of the training crops, relative to the image.
        pin_memory: pin loader memory when a CUDA device is present.
        val_resize: resize validation images (shorter side to ``image_size``) before the centre crop; ``False``
            crops them at their own resolution, as super-resolution benchmarks evaluate (a photo shrunk
            to the crop size holds detail no upsampler could recover).

    Raises:
        ValueError: for a non-positive ``image_size`` or ``batch_size``, a negative ``num_workers``, a
            ``val_fraction`` outside [0, 1) or a bad ``scale``; in ``setup``, for a folder without readable images.
        FileNotFoundError: in ``setup``, if ``root`` is not a directory.

    Examples:
        >>> dm = ImageFolderDataModule(image_size=64, batch_size=2)
        >>> dm.setup("fit")
        >>> next(iter(dm.train_dataloader())).shape
        torch.Size([2, 3, 64, 64])
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        image_size: int = 256,
        batch_size: int = 4,
        val_fraction: float = 0.1,
        seed: int = 0,
        num_workers: int = 0,
        scale: tuple[float, float] = (0.25, 1.0),
        pin_memory: bool = False,
        val_resize: bool = True,
    ) -> None:
        super().__init__()
        self.image_size = positive_int("image_size", image_size)
        self.batch_size = positive_int("batch_size", batch_size)
        self.num_workers = integer("num_workers", num_workers, 0)
        self.val_fraction = real("val_fraction", val_fraction, 0, 1, high_open=True)
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"Expected `scale` to be (low, high) with 0 < low <= high <= 1, got {scale!r}")
        self.save_hyperparameters()
        self.root = None if root is None else Path(root)
        self.seed = seed
        self.scale = (scale[0], scale[1])
        self.pin_memory = pin_memory
        self.val_resize = val_resize
        self.train_set: ImageListDataset | None = None
        self.val_set: ImageListDataset | None = None
        self.skipped: list[Path] = []

    @property
    def train_transform(self) -> T.Compose:
        return T.Compose([T.RandomResizedCrop(self.image_size, scale=self.scale, antialias=True)])

    @property
    def val_transform(self) -> T.Compose:
        resize = [T.Resize(self.image_size, antialias=True)] if self.val_resize else []
        return T.Compose([*resize, T.CenterCrop(self.image_size)])

    @override
    def prepare_data(self) -> None:
        if self.root is None:
            _require_skimage_data()  # fail early, on one process, with the install hint

    def _sources(self) -> Sequence[ImageSource]:
        if self.root is None:
            return [image for _, image in sample_photos()]
        files = find_images(self.root)
        readable = [p for p in files if _readable(p)]
        kept = set(readable)
        self.skipped = [p for p in files if p not in kept]
        if self.skipped:
            names = ", ".join(str(p) for p in self.skipped[:3]) + (", ..." if len(self.skipped) > 3 else "")
            warnings.warn(f"Skipping {len(self.skipped)} unreadable image file(s) of {len(files)} under "
                          f"{str(self.root)!r} ({names}; all in `skipped`)", UserWarning, stacklevel=3)
        if not readable:
            raise ValueError(
                f"Expected image files ({', '.join(IMAGE_EXTENSIONS)}) under {str(self.root)!r}, "
                f"found {len(files)} file(s) and none readable"
            )
        return readable

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        sources = self._sources()
        n = len(sources)
        if n == 1:
            train_idx = val_idx = [0]
        else:
            n_val = min(n - 1, max(1, math.floor(n * self.val_fraction + 0.5))) if self.val_fraction > 0 else 0
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).tolist()
            val_idx, train_idx = sorted(order[:n_val]), sorted(order[n_val:])
        self.train_set = ImageListDataset([sources[i] for i in train_idx], self.train_transform)
        self.val_set = ImageListDataset([sources[i] for i in val_idx], self.val_transform) if val_idx else None

    @override
    def train_dataloader(self) -> DataLoader:
        return make_loader(self, self.train_set, "training", shuffle=True)

    @override
    def val_dataloader(self) -> DataLoader | list:
        if self.train_set is not None and self.val_set is None:
            return []  # `val_fraction=0`: no validation
        return make_loader(self, self.val_set, "validation", shuffle=False)
