"""``SuperResolution``: single-image super-resolution (x4, x8) with a pixel or a feature loss.

Johnson, Alahi, Fei-Fei, Perceptual Losses for Real-Time Style Transfer and Super-Resolution, 2016
(arXiv 1603.08155), §4.2: :class:`~lightning_papers.models.SuperResolutionNet` maps a low-resolution image
to ``factor`` times its size; it is trained with the feature reconstruction loss at VGG-16 relu2_2 (the
paper's choice) or with the per-pixel loss (the paper's baseline). Low-resolution inputs are made on the
fly from the high-resolution crops as in the paper: Gaussian blur (sigma 1), then bicubic downsampling.

Validation reports PSNR and SSIM on the luma (Y) channel beside the bicubic baseline's on the same images
(``sr/psnr``, ``sr/psnr_bicubic``, ``sr/ssim``, ``sr/ssim_bicubic``) and image triplets (bicubic | ours |
ground truth) under ``sr/samples``.

``residual=True`` (default) adds the network's output to the bicubic upsampling of the input and starts
from a zero last layer, so training begins at the bicubic baseline and short runs improve on it; the
paper's network predicts the image directly (``residual=False``).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.data import AttributeDict
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure
from torchvision.transforms.v2 import functional as TF
from typing_extensions import override

from lightning_papers._validation import integer, one_of, positive_real
from lightning_papers.losses import VGGFeatures, feature_loss, fetch_vgg16_weights, pixel_loss
from lightning_papers.models import SuperResolutionNet
from lightning_papers.models.transformer_net import Norm
from lightning_papers.modules._frozen import drop_keys, images_of, log_grid, under_trainer

__all__ = ["SuperResolution", "bicubic_upsample", "degrade", "luma"]

LOSSES = ("feature", "pixel")


def degrade(hr: torch.Tensor, factor: int, sigma: float = 1.0) -> torch.Tensor:
    """The paper's low-resolution input: Gaussian blur (``sigma``), then bicubic downsampling by ``factor``.

    The downsampling is antialiased (the bicubic kernel stretched by ``factor``, as MATLAB's ``imresize``
    and PIL do); torch's plain bicubic interpolation would sample the blurred image almost pointwise.
    """
    size = (hr.shape[-2] // factor, hr.shape[-1] // factor)
    # data preparation, in float32 outside autocast (antialiased bicubic has no bfloat16 CPU kernel)
    with torch.autocast(hr.device.type, enabled=False):
        blurred = TF.gaussian_blur(hr.float(), kernel_size=[4 * round(sigma) + 1] * 2, sigma=[sigma, sigma])
        # antialiased, as MATLAB's imresize that SR benchmarks use: without it a x4 bicubic kernel barely filters
        return F.interpolate(blurred, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)


def bicubic_upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The bicubic baseline: ``x`` upsampled ``factor`` times, clamped to [0, 1] (scriptable, for exports too)."""
    return F.interpolate(x, scale_factor=float(factor), mode="bicubic", align_corners=False).clamp(0, 1)


def luma(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of RGB images in [0, 1], in [16/255, 235/255] (the Y used for SR benchmarks)."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


class SuperResolution(pl.LightningModule):
    """A ``SuperResolutionNet`` trained on high-resolution crops (e.g. ``ImageFolderDataModule(image_size=288)``).

    Args:
        factor: 4 or 8.
        loss: ``"feature"`` (VGG-16 relu2_2, the paper's) or ``"pixel"`` (the paper's baseline).
        lr: Adam learning rate. The default 1e-4 suits ``norm="none"``: at the paper's 1e-3, Adam's
            same-sign steps over 576 inputs per unit pushed the last upsampling stage's ReLUs dead within 100
            steps (its output stopped changing); 1e-4 gave +0.50 dB over bicubic after 150 steps (held-out
            128 px crops of the sample photographs). The paper's setting (``norm="batch"``, 1e-3) is in the
            COCO recipes.
        vgg_weights: for ``loss="feature"``: ``"imagenet"``, a local ``.pth`` path or ``"random"`` (tests).
        residual: predict a correction to the bicubic upsampling (see the module docstring).
        norm: the network's normalisation: ``"none"`` (default) or ``"batch"`` (the paper's). With the paper's
            batch of 4, batch and running statistics differ enough that a batch-norm network evaluates worse
            than it trains for a long while (sample photographs, 200 pixel-loss steps at 1e-3: 28.68 dB
            against bicubic's 28.76 on held-out 128 px crops).
        sample_every_n_epochs: log ``sr/samples`` every this many validation epochs (``0``: never).

    Raises:
        ValueError: for an unknown ``loss``, a non-positive ``lr`` or a negative ``sample_every_n_epochs``;
            the network raises for a ``factor`` other than 4 or 8.
    """

    hparams: AttributeDict  # what save_hyperparameters() stores (Lightning types it as any mutable mapping)

    def __init__(
        self,
        factor: int = 4,
        loss: str = "feature",
        lr: float = 1e-4,
        vgg_weights: str = "imagenet",
        residual: bool = True,
        sample_every_n_epochs: int = 1,
        norm: Norm = "none",
    ) -> None:
        super().__init__()
        one_of("loss", loss, LOSSES)
        positive_real("lr", lr)
        integer("sample_every_n_epochs", sample_every_n_epochs, minimum=0)
        self.save_hyperparameters()
        self.lr = lr
        self.net = SuperResolutionNet(factor=factor, norm=norm, output="none" if residual else "sigmoid")
        if residual:
            last = [m for m in self.net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
            torch.nn.init.zeros_(last.weight)
            if last.bias is not None:
                torch.nn.init.zeros_(last.bias)
        self.vgg: VGGFeatures | None = None
        self.strict_loading = False  # checkpoints leave the frozen VGG out
        self.psnr, self.psnr_bicubic = PeakSignalNoiseRatio(data_range=1.0), PeakSignalNoiseRatio(data_range=1.0)
        self.ssim, self.ssim_bicubic = (StructuralSimilarityIndexMeasure(data_range=1.0),
                                        StructuralSimilarityIndexMeasure(data_range=1.0))

    @override
    def prepare_data(self) -> None:
        if self.hparams.loss == "feature" and self.hparams.vgg_weights == "imagenet":
            fetch_vgg16_weights(download=True)

    @override
    def configure_model(self) -> None:
        if self.hparams.loss == "feature" and under_trainer(self):
            self._loss_network()

    def _loss_network(self) -> VGGFeatures:
        if self.vgg is None:
            self.vgg = VGGFeatures(weights=self.hparams.vgg_weights, layers=("relu2_2",)).to(self.device)
        return self.vgg

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        drop_keys(checkpoint, "vgg.")

    # -- steps ------------------------------------------------------------------------------------------
    def bicubic(self, lr: torch.Tensor) -> torch.Tensor:
        return bicubic_upsample(lr, self.hparams.factor)

    @override
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """Upscale low-resolution images in [0, 1] by ``factor``."""
        out = self.net(lr)
        if not self.hparams.residual:
            return out
        # clamped for use, not in training: a clamp there zeroes the gradient of every overshooting pixel
        out = self.bicubic(lr) + out
        return out if self.training else out.clamp(0, 1)

    def _crop(self, hr: torch.Tensor) -> torch.Tensor:
        f = self.hparams.factor
        return hr[..., : hr.shape[-2] // f * f, : hr.shape[-1] // f * f]

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        hr = self._crop(images_of(batch))
        sr = self(degrade(hr, self.hparams.factor))
        if self.hparams.loss == "pixel":
            loss = pixel_loss(sr, hr)
        else:
            vgg = self._loss_network()
            loss = feature_loss(vgg(sr)["relu2_2"], vgg(hr)["relu2_2"].detach())
        self.log("sr/loss", loss.detach(), on_step=True, on_epoch=True, prog_bar=True)
        return loss

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        hr = self._crop(images_of(batch))
        lr = degrade(hr, self.hparams.factor)
        sr, bicubic = self(lr), self.bicubic(lr)
        y_hr, y_sr, y_bi = luma(hr), luma(sr.float()), luma(bicubic)
        self.psnr.update(y_sr, y_hr)
        self.psnr_bicubic.update(y_bi, y_hr)
        self.ssim.update(y_sr, y_hr)
        self.ssim_bicubic.update(y_bi, y_hr)
        for name in ("psnr", "psnr_bicubic", "ssim", "ssim_bicubic"):
            self.log(f"sr/{name}", getattr(self, name), on_epoch=True)
        every = self.hparams.sample_every_n_epochs
        if batch_idx == 0 and every and self.current_epoch % every == 0:
            self._log_samples(bicubic, sr, hr)

    def _log_samples(self, bicubic: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor) -> None:
        from torchvision.utils import make_grid

        n = min(2, len(hr))
        rows = torch.stack([bicubic[:n], sr[:n].float(), hr[:n]], dim=1).flatten(0, 1)  # bicubic | ours | truth
        grid = make_grid(rows.detach().clamp(0, 1).cpu(), nrow=3, padding=2)
        log_grid(self, "sr/samples", grid)

    @override
    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)
