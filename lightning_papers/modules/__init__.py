"""LightningModules: training steps, metrics and optimizers around the plain models."""

from lightning_papers.modules.classifier import ImageClassifier

__all__ = ["ImageClassifier"]
