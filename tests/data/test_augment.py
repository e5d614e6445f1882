import pytest
import torch

from lightning_papers.data import BatchAugment, Normalize


def test_random_crop_and_flip_match_a_per_sample_loop():
    x = torch.randn(6, 3, 10, 12)
    aug = BatchAugment(padding=3, flip=True)
    out = aug(x, generator=torch.Generator().manual_seed(7))
    # Replay the same random draws and crop/flip each image with plain slicing.
    g = torch.Generator().manual_seed(7)
    oy = torch.randint(0, 7, (6,), generator=g)
    ox = torch.randint(0, 7, (6,), generator=g)
    flip = torch.rand(6, generator=g) < 0.5
    padded = torch.nn.functional.pad(x, (3, 3, 3, 3))
    for i in range(6):
        ref = padded[i, :, oy[i] : oy[i] + 10, ox[i] : ox[i] + 12]
        if flip[i]:
            ref = ref.flip(-1)
        assert torch.equal(out[i], ref)


def test_no_padding_no_flip_is_identity():
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(BatchAugment(padding=0, flip=False)(x), x)


def test_uint8_images_survive_augmentation():
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    out = BatchAugment(padding=2)(x)
    assert out.dtype == torch.uint8 and out.shape == x.shape


def test_normalize_uint8_and_float():
    norm = Normalize((0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    ref = (x.float() / 255 - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 1.0]).view(
        1, 3, 1, 1
    )
    assert torch.allclose(norm(x), ref)
    assert torch.allclose(norm(x.float() / 255), ref)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"Expected `padding` to be an integer >= 0, got -1"):
        BatchAugment(padding=-1)
    with pytest.raises(ValueError, match=r"Expected `mean` and `std` of equal length, got 3 and 2"):
        Normalize((0.5, 0.5, 0.5), (0.5, 0.5))
    with pytest.raises(ValueError, match=r"Expected every `std` to be positive, got \[0.5, 0.0\]"):
        Normalize((0.5, 0.5), (0.5, 0.0))
