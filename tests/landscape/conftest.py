"""Fixtures of the landscape tests: real data (scikit-learn digits at 8x8) and tiny trained models."""

import pytest
import torch
from landscape_helpers import small_convnet, trained

from lightning_papers.data.digits import load_digits_images


@pytest.fixture(scope="session")
def digits64():
    """64 real digits, 8x8x3, normalised to about [-1, 1], with their labels."""
    images, labels = load_digits_images(size=8)
    x = images[:64].float() / 127.5 - 1.0
    return x, labels[:64]


@pytest.fixture
def bn_net(digits64):
    torch.manual_seed(0)
    return trained(small_convnet("bn"), *digits64)


@pytest.fixture
def ln_net(digits64):
    torch.manual_seed(0)
    return trained(small_convnet("ln"), *digits64)
