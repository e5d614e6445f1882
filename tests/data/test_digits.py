import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lightning_papers.data import DigitsDataModule, load_digits_images


def test_all_real_digits_resized_to_rgb_32():
    images, labels = load_digits_images()
    assert images.shape == (1797, 3, 32, 32)
    assert images.dtype == torch.uint8
    ref = load_digits()
    assert torch.equal(labels, torch.as_tensor(ref.target))
    # The three channels are copies; the mean brightness follows the 8x8 originals (0..16 -> 0..255).
    assert torch.equal(images[:, 0], images[:, 2])
    original_mean = ref.images.mean() / 16 * 255
    assert abs(images.float().mean().item() - original_mean) < 2.0


def test_split_is_stratified_seeded_and_complete():
    dm = DigitsDataModule(val_fraction=0.2, seed=3)
    dm.setup("fit")
    x_train, y_train = dm.train_set.tensors
    x_val, y_val = dm.val_set.tensors
    assert len(y_train) + len(y_val) == 1797
    assert len(y_val) == pytest.approx(0.2 * 1797, abs=1)
    # Stratified: each class's share in validation is within one image of its overall share.
    all_counts = np.bincount(np.concatenate([y_train.numpy(), y_val.numpy()]), minlength=10)
    val_counts = np.bincount(y_val.numpy(), minlength=10)
    assert np.all(np.abs(val_counts - 0.2 * all_counts) <= 1)
    again = DigitsDataModule(val_fraction=0.2, seed=3)
    again.setup("fit")
    assert torch.equal(again.val_set.tensors[1], y_val)
    other = DigitsDataModule(val_fraction=0.2, seed=4)
    other.setup("fit")
    assert not torch.equal(other.val_set.tensors[0], x_val)


def test_loader_batches_are_normalised_on_transfer():
    dm = DigitsDataModule(batch_size=16, augment=False)
    dm.setup("fit")
    x, y = next(iter(dm.val_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (16, 3, 32, 32)
    xn, yn = dm.on_after_batch_transfer((x, y), 0)
    assert torch.allclose(xn, (x.float() / 255 - 0.5) / 0.5)
    assert torch.equal(yn, y)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"val_fraction": 0.0}, r"Expected `val_fraction` to be a number in \(0, 1\), got 0.0"),
    ({"val_fraction": 1.5}, r"Expected `val_fraction` to be a number in \(0, 1\), got 1.5"),
    ({"batch_size": 0}, r"Expected `batch_size` to be a positive integer, got 0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs)


def test_loader_before_setup_says_what_to_do():
    with pytest.raises(RuntimeError, match=r"DigitsDataModule has no training data: call `setup\(\)` first"):
        DigitsDataModule().train_dataloader()
