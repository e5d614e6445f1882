"""``FastStyleTransfer``: train a feed-forward stylisation network with perceptual losses.

Johnson, Alahi, Fei-Fei, Perceptual Losses for Real-Time Style Transfer and Super-Resolution, 2016
(arXiv 1603.08155): an image transformation network (:class:`~lightning_papers.models.TransformerNet`) is
trained so that a frozen VGG-16 sees the content of its input and the Gram statistics of one style image
in its output (plus a total-variation smoothness term). Adam at 1e-3, as in the paper.

The frozen VGG-16 is not saved in checkpoints (it is about 30 MB and never changes): a checkpoint holds the
transformation network, the optimizer and the style targets (Gram matrices), and loads back with the VGG
rebuilt from ``vgg_weights``. ImageNet weights come from the torch hub cache; :meth:`prepare_data` fetches
them there (one process, the only place this package downloads them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.data import AttributeDict
from typing_extensions import override

from lightning_papers._validation import integer, positive_int, positive_real
from lightning_papers.losses import PerceptualLoss, VGGFeatures, fetch_vgg16_weights
from lightning_papers.models import TransformerNet
from lightning_papers.models.transformer_net import Norm, Upsample
from lightning_papers.modules._frozen import drop_keys, images_of, log_grid, under_trainer

_VGG_PREFIX = "loss_fn.vgg."
RANDOM_VGG_NOTE = ("Random VGG-16 weights (no ImageNet weights were available): the loss network sees no real "
                   "features, so these pictures only check the pipeline; they are not a stylisation to judge.")


class FastStyleTransfer(pl.LightningModule):
    """A ``TransformerNet`` trained for one style.

    Args:
        style_image: a path to the style image, or the name of one of scikit-image's sample photographs
            (``lightning_papers.data.sample_photos()``, e.g. ``"immunohistochemistry"``) for offline runs.
        style_size: shorter side the style image is resized to before its Gram matrices are taken.
        content_weight: weight of the content term (:class:`PerceptualLoss`).
        style_weight: weight of the style term.
        tv_weight: weight of the total-variation term.
        content_layer: ``"relu2_2"`` (the paper's text) or ``"relu3_3"`` (its figure, the reference code).
        style_layers: VGG-16 layers whose Gram matrices are matched.
        lr: Adam learning rate (paper: 1e-3).
        vgg_weights: ``"imagenet"`` (the hub cache), a local ``.pth`` path, or ``"random"`` (tests only).
        norm: :class:`TransformerNet`'s ``norm``.
        upsample: :class:`TransformerNet`'s ``upsample``.
        sample_every_n_steps: log an image grid (content | stylised) to TensorBoard as ``style/samples``
            every this many optimizer steps (``0``: never). With ``vgg_weights="random"`` the tag's description
            (shown on its TensorBoard card) says the pictures only check the pipeline.

    Raises:
        ValueError: for a non-positive ``lr``/``style_size``, a negative ``sample_every_n_steps`` or an unknown
            sample-photo name; the losses and network raise for their own bad options.
    """

    hparams: AttributeDict  # what save_hyperparameters() stores (Lightning types it as any mutable mapping)

    def __init__(
        self,
        style_image: str = "immunohistochemistry",
        style_size: int = 256,
        content_weight: float = 1.0,
        style_weight: float = 1e5,
        tv_weight: float = 0.0,
        content_layer: str = "relu2_2",
        style_layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        lr: float = 1e-3,
        vgg_weights: str = "imagenet",
        norm: Norm = "instance",
        upsample: Upsample = "resize_conv",
        sample_every_n_steps: int = 100,
    ) -> None:
        super().__init__()
        positive_real("lr", lr)
        positive_int("style_size", style_size)
        integer("sample_every_n_steps", sample_every_n_steps, minimum=0)
        self.save_hyperparameters()
        self.lr = lr
        self.net = TransformerNet(norm=norm, upsample=upsample)
        # The loss network is built in configure_model (after prepare_data may have fetched its weights).
        self.loss_fn: PerceptualLoss | None = None
        # The checkpoint leaves the frozen VGG out; loading tolerates exactly those missing keys.
        self.strict_loading = False

    # -- set-up -----------------------------------------------------------------------------------------
    @override
    def prepare_data(self) -> None:
        if self.hparams.vgg_weights == "imagenet":
            fetch_vgg16_weights(download=True)

    @override
    def configure_model(self) -> None:
        # Under a Trainer only: ``load_from_checkpoint`` calls this hook too, and inference needs no VGG.
        if under_trainer(self):
            self.build_loss()

    def build_loss(self) -> PerceptualLoss:
        """The loss network with the style targets, built once (from ``vgg_weights`` and ``style_image``)."""
        if self.loss_fn is not None:
            return self.loss_fn
        hp = self.hparams
        layers = tuple(dict.fromkeys((hp.content_layer, *hp.style_layers)))
        vgg = VGGFeatures(weights=hp.vgg_weights, layers=layers)
        self.loss_fn = PerceptualLoss(vgg, content_layer=hp.content_layer, style_layers=hp.style_layers,
                                      content_weight=hp.content_weight, style_weight=hp.style_weight,
                                      tv_weight=hp.tv_weight).to(self.device)
        self.loss_fn.set_style(self._style_tensor().to(self.device))
        return self.loss_fn

    def _style_tensor(self) -> torch.Tensor:
        from lightning_papers.data import load_image, sample_photos

        source: Any = self.hparams.style_image
        if not isinstance(source, str):
            raise ValueError(f"Expected `style_image` to be a path or a sample-photo name, got {source!r}")
        if not any(sep in source for sep in ("/", "\\", ".")):  # a bare name: one of the sample photographs
            photos = dict(sample_photos())
            if source not in photos:
                raise ValueError(f"Expected `style_image` to be an image path or one of the sample photographs "
                                 f"{sorted(photos)}, got {source!r}")
            source = photos[source]
        return load_image(source, size=self.hparams.style_size)

    # -- checkpoints: the frozen VGG stays out ---------------------------------------------------------------
    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        drop_keys(checkpoint, _VGG_PREFIX)

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Resuming under a Trainer, configure_model has built the loss network: the style targets load into it.
        # Loading for inference (load_from_checkpoint), there is none and no VGG is needed: keep the network's
        # weights only (training later rebuilds the targets from the style image).
        if self.loss_fn is None:
            drop_keys(checkpoint, "loss_fn.")

    # -- steps ------------------------------------------------------------------------------------------
    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _terms(self, content: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss_fn = self.build_loss()
        output = self(content)
        return output, loss_fn(output, content)

    @override
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        content = images_of(batch)
        output, terms = self._terms(content)
        self.log_dict({f"style/{k}": v.detach() for k, v in terms.items()}, on_step=True, on_epoch=False,
                      prog_bar=False)
        every = self.hparams.sample_every_n_steps
        if every and self.global_step % every == 0:
            self._log_samples(content, output)
        return terms["loss"]

    @override
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _, terms = self._terms(images_of(batch))
        self.log("style/val_loss", terms["loss"], on_epoch=True, sync_dist=True)

    def _log_samples(self, content: torch.Tensor, output: torch.Tensor) -> None:
        from torchvision.utils import make_grid

        n = min(4, len(content))
        # one row per image: content | stylised
        pairs = torch.stack([content[:n].detach(), output[:n].detach().float()], dim=1).flatten(0, 1)
        grid = make_grid(pairs.clamp(0, 1).cpu(), nrow=2, padding=2)
        log_grid(self, "style/samples", grid, RANDOM_VGG_NOTE if self.hparams.vgg_weights == "random" else None)

    @override
    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)
