"""CIFAR-10 and CIFAR-100 (Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009).

Files are fetched through torchvision only in ``prepare_data`` and only with ``download=True``; ``setup``
reads the extracted "python version" batches itself into uint8 tensors (no per-sample PIL work), and
the standard augmentation of He et al. 2016 (arXiv 1512.03385, §4.2) runs batched on the device.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset
from typing_extensions import override

from lightning_papers._validation import integer, one_of, real
from lightning_papers.data.tensor_images import TensorImageDataModule

__all__ = ["MD5", "CIFARDataModule", "read_cifar"]

_LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": b"labels",
        "classes": 10,
        "archive": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label_key": b"fine_labels",
        "classes": 100,
        "archive": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "mean": (0.5071, 0.4865, 0.4409),
        "std": (0.2673, 0.2564, 0.2762),
    },
}
SUPPORTED_NAMES = tuple(_LAYOUT)
# The published files' MD5s (the same list torchvision's CIFAR10/CIFAR100 check): a batch file is unpickled only
# after its checksum matches, since unpickling a file that is not the real one could run code.
MD5 = {
    "cifar10": {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
                "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
                "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e"},
    "cifar100": {"train": "16019d7e3df5f24257cddd939b257f8d", "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"},
}


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_name(name: str) -> dict:
    return _LAYOUT[one_of("name", name, SUPPORTED_NAMES)]


def read_cifar(data_dir: str | Path, name: str = "cifar10", train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Read an extracted CIFAR python-version split as uint8 images (N, 3, 32, 32) and int64 labels.

    Raises:
        FileNotFoundError: when a batch file is missing; the message says where the files are expected
            and how to get them.
        ValueError: when a batch file's MD5 is not the published one (checked before it is unpickled), naming it.
    """
    layout = _check_name(name)
    folder = Path(data_dir).expanduser() / layout["folder"]
    files = layout["train"] if train else layout["test"]
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{name} not found in {folder} ({len(missing)} of {len(files)} files missing, "
                                f"e.g. {missing[0]}): pass `download=True`, or extract {layout['archive']} into "
                                f"{folder.parent}")
    for f in files:
        actual, expected = _md5(folder / f), MD5[name][f]
        if actual != expected:
            raise ValueError(f"Expected {str(folder / f)!r} to be the published {name} file (MD5 {expected}), got MD5 "
                             f"{actual}: delete it and download {layout['archive']} again (refused: unpickling it "
                             "could run code)")
    images, labels = [], []
    for f in files:
        with open(folder / f, "rb") as fh:
            entry = pickle.load(fh, encoding="bytes")
        images.append(np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry[layout["label_key"]], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


class CIFARDataModule(TensorImageDataModule):
    """CIFAR-10/100 with pad-4 random crops and flips, per-channel normalisation and a held-out split.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        data_dir: folder that holds (or will hold) ``cifar-10-batches-py`` / ``cifar-100-python``.
        download: fetch the archive in ``prepare_data`` when the files are missing.
        batch_size: samples per batch.
        num_workers: loader workers.
        val_split: training images held out for validation (an int count or a fraction). ``0`` validates
            on the 10,000 test images, as the papers' curves do.
        seed: seed of the held-out split.
        augment: pad-and-crop + horizontal flip on training batches.

    Raises:
        ValueError: for an unknown ``name`` or a bad ``val_split``.
        FileNotFoundError: in ``setup`` when the files are missing and ``download`` is False.

    Examples:
        >>> dm = CIFARDataModule("cifar10", data_dir="~/data", download=True)  # doctest: +SKIP
    """

    name: str

    def __init__(
        self,
        name: str = "cifar10",
        data_dir: str = "./data",
        download: bool = False,
        batch_size: int = 128,
        num_workers: int = 0,
        val_split: int | float = 5000,
        seed: int = 0,
        augment: bool = True,
        pin_memory: bool = True,
    ) -> None:
        layout = _check_name(name)
        if isinstance(val_split, float):
            val_split = real("val_split", val_split, 0, 1, high_open=True, fix="a float is a fraction, an int a count")
        else:
            val_split = integer("val_split", val_split, 0, fix="an int counts images, a float in [0, 1) is a fraction")
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            augment=augment,
            crop_padding=4,
            flip=True,
            mean=layout["mean"],
            std=layout["std"],
            pin_memory=pin_memory,
        )
        self.save_hyperparameters()
        self.name = name
        self.data_dir = data_dir
        self.download = download
        self.val_split = val_split
        self.seed = seed
        self.num_classes = layout["classes"]

    @override
    def prepare_data(self) -> None:
        if not self.download:
            return
        from torchvision import datasets

        cls = datasets.CIFAR10 if self.name == "cifar10" else datasets.CIFAR100
        for train in (True, False):
            cls(root=str(Path(self.data_dir).expanduser()), train=train, download=True)

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        x_train, y_train = read_cifar(self.data_dir, self.name, train=True)
        x_test, y_test = read_cifar(self.data_dir, self.name, train=False)
        self.test_set = TensorDataset(x_test, y_test)
        n_val = int(round(self.val_split * len(y_train))) if isinstance(self.val_split, float) else self.val_split
        if n_val >= len(y_train):
            raise ValueError(f"Expected `val_split` below the {len(y_train)} training images, got {self.val_split!r}")
        if n_val == 0:
            self.train_set = TensorDataset(x_train, y_train)
            self.val_set = self.test_set
            return
        perm = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(self.seed))
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        self.train_set = TensorDataset(x_train[train_idx], y_train[train_idx])
        self.val_set = TensorDataset(x_train[val_idx], y_train[val_idx])
