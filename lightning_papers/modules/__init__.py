"""LightningModules: training steps, metrics and optimizers around the plain models."""

from lightning_papers.modules.classifier import ImageClassifier
from lightning_papers.modules.style_transfer import FastStyleTransfer
from lightning_papers.modules.super_resolution import SuperResolution

__all__ = ["FastStyleTransfer", "ImageClassifier", "SuperResolution"]
