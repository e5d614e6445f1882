"""A LightningModule whose own loss is not cross-entropy, and its data, for the command-line tests.

Importable by class path from a recipe YAML (``cli_helpers.DiabetesRegression``): pytest puts this folder on
``sys.path``. The data are scikit-learn's embedded diabetes measurements (442 real patients, 10 features), in
dict batches; the datamodule scales the features on the device and adds noise to training batches only, so a
test can tell that its hooks ran and that evaluation batches are not augmented.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class DiabetesRegression(L.LightningModule):
    """A two-layer regressor trained with the mean squared error, its ``training_step`` taking dict batches."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(10, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = F.mse_loss(self(batch["x"]), batch["y"])
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/loss", F.mse_loss(self(batch["x"]), batch["y"]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class DiabetesRegressionNoValidation(DiabetesRegression):
    """The same without a ``validation_step`` of its own."""

    validation_step = L.LightningModule.validation_step


class DiabetesData(L.LightningDataModule):
    """scikit-learn's diabetes data, the first ``val_size`` patients for validation; ``{"x", "y"}`` batches with
    ``x`` multiplied by ``scale`` on the device (and noise added while training), ``y`` the target / 100."""

    def __init__(self, batch_size: int = 16, val_size: int = 64, scale: float = 10.0) -> None:
        super().__init__()
        self.batch_size, self.val_size, self.scale = batch_size, val_size, scale

    def setup(self, stage: str | None = None) -> None:
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True)
        x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32) / 100
        self.val_set = TensorDataset(x[: self.val_size], y[: self.val_size])
        self.train_set = TensorDataset(x[self.val_size :], y[self.val_size :])

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def on_after_batch_transfer(self, batch, dataloader_idx: int) -> dict:
        x, y = batch
        x = x * self.scale
        if self.trainer is not None and self.trainer.training:
            x = x + torch.randn_like(x)
        return {"x": x, "y": y}

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """What ``on_after_batch_transfer`` does to evaluation inputs (for a test's reference)."""
        return x * self.scale


class SmoothedDigitsClassifier(L.LightningModule):
    """A linear classifier of (inputs, class) batches trained with label-smoothed cross-entropy: a classifier whose
    own loss is not plain cross-entropy."""

    def __init__(self, label_smoothing: float = 0.2) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y, label_smoothing=self.label_smoothing)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.log("val/loss", F.cross_entropy(self(x), y, label_smoothing=self.label_smoothing))
