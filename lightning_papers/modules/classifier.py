"""``ImageClassifier``: the LightningModule behind the CIFAR ResNet experiments.

He et al., "Deep Residual Learning for Image Recognition", 2016 (arXiv 1512.03385) train with SGD,
momentum 0.9, weight decay 1e-4 and a piecewise-constant schedule; Smith's cyclical (arXiv 1506.01186)
and 1cycle (arXiv 1708.07120) schedules replace that schedule with a callback, in which case the module
hands out a bare optimizer and the callback owns the learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.utilities.data import AttributeDict
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import nn
from torchmetrics.classification import MulticlassAccuracy
from typing_extensions import override

from lightning_papers._validation import one_of, positive_int, positive_real
from lightning_papers.models import get_model
from lightning_papers.modules._frozen import images_of, under_trainer
from lightning_papers.schedules import owns_learning_rate

SUPPORTED_OPTIMIZERS = ("sgd", "adamw")
SUPPORTED_SCHEDULERS = (None, "step", "multistep")
SUPPORTED_INTERVALS = ("epoch", "step")


class ImageClassifier(L.LightningModule):
    """Image classification with cross-entropy, accuracy metrics and the papers' optimizers.

    Args:
        model: a registered model name (see :func:`lightning_papers.models.list_models`) or an
            ``nn.Module`` of your own that maps images to logits.
        num_classes: classes of the task (passed to a named model).
        lr: learning rate; a public attribute that range finders may set before the optimizer is built.
        optimizer: ``"sgd"`` or ``"adamw"``.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: L2 penalty (coupled for SGD, decoupled for AdamW).
        betas: AdamW betas.
        scheduler: ``None``, ``"step"`` (x ``gamma`` every ``step_size``) or ``"multistep"``
            (x ``gamma`` at each of ``milestones``) - the paper baselines. Ignored, with a warning, when a
            schedule callback of this package is attached to the Trainer.
        milestones: for ``"multistep"``.
        step_size: for ``"step"``.
        gamma: decay factor.
        scheduler_interval: whether ``milestones``/``step_size`` count ``"epoch"``s or optimizer ``"step"``s.
        channels_last: keep the model and inputs in channels-last memory format (faster convolutions on
            tensor-core GPUs; measure).
        model_kwargs: extra keyword arguments for a named model (e.g. ``{"shortcut": "B"}``).
        image_size: (C, H, W) of the inputs, for ``example_input_array`` (model summaries, traces).

    Raises:
        ValueError: for an unknown optimizer, scheduler or interval, a non-positive ``lr``, or a
            ``"multistep"`` scheduler without milestones.

    Examples:
        >>> module = ImageClassifier("resnet20", num_classes=10, lr=0.1)
        >>> module(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    hparams: AttributeDict  # what save_hyperparameters() stores (Lightning types it as any mutable mapping)

    def __init__(
        self,
        model: str | nn.Module = "resnet20",
        num_classes: int = 10,
        lr: float = 0.1,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: Literal["step", "multistep"] | None = None,
        milestones: Sequence[int] = (),
        step_size: int = 30,
        gamma: float = 0.1,
        scheduler_interval: Literal["epoch", "step"] = "epoch",
        channels_last: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        image_size: tuple[int, int, int] = (3, 32, 32),
    ) -> None:
        super().__init__()
        one_of("optimizer", optimizer, SUPPORTED_OPTIMIZERS)
        one_of("scheduler", scheduler, SUPPORTED_SCHEDULERS)
        one_of("scheduler_interval", scheduler_interval, SUPPORTED_INTERVALS)
        positive_real("lr", lr)
        if scheduler == "multistep" and not milestones:
            raise ValueError("Expected non-empty `milestones` for scheduler='multistep', got an empty sequence")
        if scheduler == "step":
            positive_int("step_size", step_size, fix="scheduler='step' decays the rate every `step_size` steps")

        self.save_hyperparameters(ignore=["model"] if isinstance(model, nn.Module) else None)
        if isinstance(model, nn.Module):
            self.model = model
        else:
            self.model = get_model(model, num_classes=num_classes, **(model_kwargs or {}))
        self.num_classes = num_classes
        self.lr = lr
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.example_input_array = torch.zeros(1, *image_size)

        # validate_args=False: torchmetrics' input checks read tensor values on the host (a device sync in
        # every training step on a GPU); our own logits and labels need no checking.
        self.train_acc, self.val_acc, self.test_acc = (
            MulticlassAccuracy(num_classes=num_classes, average="micro", validate_args=False) for _ in range(3))

    @override
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric = getattr(self, f"{stage}_acc")
        metric.update(logits.detach(), y)
        # Accuracy is a metric object: Lightning computes and syncs it once per epoch, so the training
        # step never waits for the device to report a number.
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss.detach(), on_step=on_step, on_epoch=True, prog_bar=on_step,
                 sync_dist=not on_step)
        return loss

    @override
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    @override
    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    @override
    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    @override
    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(images_of(batch)).argmax(dim=1)

    @override
    def configure_optimizers(self) -> OptimizerLRScheduler:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=self.lr, momentum=hp.momentum, nesterov=hp.nesterov,
                                  weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=self.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        if hp.scheduler is None:
            return opt
        # Trainer.callbacks is set by Lightning's callback connector and not declared on the class
        if under_trainer(self) and owns_learning_rate(self.trainer.callbacks):  # type: ignore[attr-defined]
            rank_zero_warn(
                f"ImageClassifier: scheduler={hp.scheduler!r} is ignored because a schedule callback owns the "
                "learning rate; remove one of the two to silence this warning."
            )
            return opt
        sched: torch.optim.lr_scheduler.LRScheduler
        if hp.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=hp.gamma)
        else:
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(hp.milestones), gamma=hp.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": hp.scheduler_interval}}
