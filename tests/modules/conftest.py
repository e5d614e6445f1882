"""Checkpoints of both perceptual-loss modules, made once per session by one-step Trainer runs (random VGG for
style transfer, the pixel loss for super-resolution): shared by the image-command, model and export tests."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch

from lightning_papers.data import ImageFolderDataModule
from lightning_papers.modules import FastStyleTransfer, SuperResolution


def _fit_and_save(module, root, name):
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=root)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*random.*")
        trainer.fit(module, datamodule=ImageFolderDataModule(image_size=32, batch_size=2))
    if isinstance(module, SuperResolution):
        # one step from the zero-initialised last layer barely moves it: give the network a visible correction,
        # so that a test dropping the network (bicubic only) or the bicubic would fail
        last = [m for m in module.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        with torch.no_grad():
            last.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(1))
    path = root / name
    trainer.save_checkpoint(path)
    return path, module.eval()


@pytest.fixture(scope="session")
def style_checkpoint(tmp_path_factory):
    """(path, module in eval mode) of a FastStyleTransfer checkpoint."""
    torch.manual_seed(0)
    module = FastStyleTransfer(style_size=32, vgg_weights="random", sample_every_n_steps=0)
    return _fit_and_save(module, tmp_path_factory.mktemp("style"), "style.ckpt")


@pytest.fixture(scope="session")
def sr_checkpoint(tmp_path_factory):
    """(path, module in eval mode) of a x4 SuperResolution checkpoint (pixel loss, residual over bicubic)."""
    torch.manual_seed(0)
    module = SuperResolution(factor=4, loss="pixel", sample_every_n_epochs=0)
    return _fit_and_save(module, tmp_path_factory.mktemp("sr"), "sr.ckpt")
