import hashlib
import pickle

import numpy as np
import pytest
import torch

from lightning_papers.data import CIFARDataModule, cifar, read_cifar


@pytest.fixture(autouse=True)
def _trust_files_the_test_wrote(monkeypatch):
    """The files below are the tests' own, not the published ones: accept their MD5s (computed here, with
    hashlib) for the names they were written under, before any test reads them."""
    monkeypatch.setattr(cifar, "MD5", {name: dict(files) for name, files in cifar.MD5.items()})


def write_fake_cifar10(root, per_batch=20, seed=0, trusted=True):
    """Files in the real CIFAR-10 python layout, small and random, written by the test itself (and trusted)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    arrays = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, fh)
        arrays[name] = (data, labels)
    if trusted:
        _trust_files_the_test_wrote_for("cifar10", folder)
    return arrays


def test_read_cifar_reads_the_python_batches(tmp_path):
    arrays = write_fake_cifar10(tmp_path)
    x, y = read_cifar(tmp_path, "cifar10", train=True)
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.uint8
    first = arrays["data_batch_1"][0][0]
    # Row layout of CIFAR: 1024 red, then 1024 green, then 1024 blue values, row-major.
    assert torch.equal(x[0, 1].flatten(), torch.from_numpy(first[1024:2048]))
    assert y[:20].tolist() == arrays["data_batch_1"][1]
    xt, yt = read_cifar(tmp_path, "cifar10", train=False)
    assert xt.shape == (20, 3, 32, 32) and yt.tolist() == arrays["test_batch"][1]


def test_cifar100_layout(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name, n in (("train", 30), ("test", 10)):
        data = np.full((n, 3072), 7, dtype=np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({b"data": data, b"fine_labels": list(range(n)), b"coarse_labels": [0] * n}, fh)
    _trust_files_the_test_wrote_for("cifar100", folder)
    dm = CIFARDataModule("cifar100", data_dir=str(tmp_path), val_split=0)
    dm.setup("fit")
    assert dm.num_classes == 100
    assert dm.train_set.tensors[1].tolist() == list(range(30))
    assert dm.val_set is dm.test_set


@pytest.mark.parametrize(("val_split", "n_val"), [(10, 10), (0.25, 25), (0, 20)])
def test_held_out_split(tmp_path, val_split, n_val):
    write_fake_cifar10(tmp_path)
    dm = CIFARDataModule("cifar10", data_dir=str(tmp_path), val_split=val_split, seed=1)
    dm.setup("fit")
    assert len(dm.val_set) == n_val
    if val_split:
        assert len(dm.train_set) == 100 - n_val
        # The two parts are disjoint and together are the whole training set.
        together = torch.cat([dm.train_set.tensors[0], dm.val_set.tensors[0]]).flatten(1)
        full, _ = read_cifar(tmp_path, "cifar10", train=True)
        key = lambda t: sorted(map(bytes, t.numpy()))  # noqa: E731
        assert key(together) == key(full.flatten(1))
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].dtype == torch.uint8


def test_missing_dataset_says_where_and_how(tmp_path):
    dm = CIFARDataModule("cifar10", data_dir=str(tmp_path), download=False)
    dm.prepare_data()  # download=False never touches the network
    with pytest.raises(FileNotFoundError, match=r"cifar10 not found in .*cifar-10-batches-py \(5 of 5 files missing, "
                       r"e\.g\. data_batch_1\): pass `download=True`.*cifar-10-python\.tar\.gz"):
        dm.setup("fit")


def test_download_goes_through_torchvision_in_prepare_data_only(tmp_path, monkeypatch):
    calls = []

    class Recorder:
        def __init__(self, root, train, download):
            calls.append((root, train, download))

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", Recorder)
    dm = CIFARDataModule("cifar10", data_dir=str(tmp_path), download=True)
    assert calls == []  # nothing in __init__
    dm.prepare_data()
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"name": "mnist"}, r"Expected `name` to be one of \('cifar10', 'cifar100'\), got 'mnist'"),
    ({"val_split": -1}, r"Expected `val_split` to be an integer >= 0, got -1: an int counts images"),
    ({"val_split": 1.0}, r"got 1.0"),
    ({"val_split": float("nan")}, r"Expected `val_split` to be a number in \[0, 1\), got nan"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CIFARDataModule(**kwargs)


def test_split_larger_than_the_training_set(tmp_path):
    write_fake_cifar10(tmp_path)
    dm = CIFARDataModule("cifar10", data_dir=str(tmp_path), val_split=100)
    with pytest.raises(ValueError, match=r"Expected `val_split` below the 100 training images, got 100"):
        dm.setup("fit")


def _trust_files_the_test_wrote_for(name, folder):
    for path in folder.iterdir():
        cifar.MD5[name][path.name] = hashlib.md5(path.read_bytes()).hexdigest()


class _Payload:
    def __reduce__(self):  # what a crafted pickle does: call something when unpickled
        return (open, ("unpickled.marker", "w"))


def test_a_batch_file_that_is_not_the_published_one_is_refused_before_unpickling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_fake_cifar10(tmp_path)
    crafted = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    crafted.write_bytes(pickle.dumps({b"data": _Payload(), b"labels": []}))
    with pytest.raises(ValueError, match=r"data_batch_3.*\(MD5 [0-9a-f]{32}\), got MD5 [0-9a-f]{32}.*refused"):
        read_cifar(tmp_path, "cifar10", train=True)
    assert not (tmp_path / "unpickled.marker").exists()
    dm = CIFARDataModule("cifar10", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="data_batch_3"):
        dm.setup("fit")


def test_the_published_checksums_are_torchvisions():
    from torchvision.datasets import CIFAR10, CIFAR100

    for name, cls in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        assert dict(cls.train_list + cls.test_list) == MD5_AT_IMPORT[name]


MD5_AT_IMPORT = {name: dict(files) for name, files in cifar.MD5.items()}
