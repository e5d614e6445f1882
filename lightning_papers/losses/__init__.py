"""Loss functions and loss networks (plain PyTorch, no Lightning)."""

from lightning_papers.losses.perceptual import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG16_LAYERS,
    PerceptualLoss,
    VGGFeatures,
    feature_loss,
    fetch_vgg16_weights,
    gram_matrix,
    pixel_loss,
    style_loss,
    total_variation,
    vgg16_checkpoint_path,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG16_LAYERS",
    "PerceptualLoss",
    "VGGFeatures",
    "feature_loss",
    "fetch_vgg16_weights",
    "gram_matrix",
    "pixel_loss",
    "style_loss",
    "total_variation",
    "vgg16_checkpoint_path",
]
