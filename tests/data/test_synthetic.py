import pytest
import torch

from lightning_papers.data import SyntheticDataModule


def test_shapes_seed_and_sizes():
    dm = SyntheticDataModule(num_samples=50, num_classes=4, image_size=(3, 16, 16), seed=5)
    dm.setup("fit")
    x, y = dm.train_set.tensors
    assert x.shape == (50, 3, 16, 16) and x.dtype == torch.uint8
    assert int(y.max()) < 4 and len(dm.val_set) == 5
    again = SyntheticDataModule(num_samples=50, num_classes=4, image_size=(3, 16, 16), seed=5)
    again.setup("fit")
    assert torch.equal(again.train_set.tensors[0], x)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Expected `num_samples` to be a positive integer, got 0"):
        SyntheticDataModule(num_samples=0)
    with pytest.raises(ValueError, match=r"Expected `num_classes` to be an integer >= 2, got 1"):
        SyntheticDataModule(num_classes=1)
