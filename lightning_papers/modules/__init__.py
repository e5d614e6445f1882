"""LightningModules: training steps, metrics and optimizers around the plain models; and, for the perceptual-loss
networks, their inference model (:class:`ImageModel`) and runner (:class:`ImageRunner`)."""

from lightning_papers.modules.classifier import ImageClassifier
from lightning_papers.modules.image_model import ImageModel, load_image_model
from lightning_papers.modules.image_runner import ImageRunner
from lightning_papers.modules.style_transfer import FastStyleTransfer
from lightning_papers.modules.super_resolution import SuperResolution

__all__ = ["FastStyleTransfer", "ImageClassifier", "ImageModel", "ImageRunner", "SuperResolution", "load_image_model"]
