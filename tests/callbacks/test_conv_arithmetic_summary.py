"""ConvArithmeticSummary: table to the log, TensorBoard text and JSON at fit start."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import TENSORS, EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_papers.callbacks import ConvArithmeticSummary


class TinyNet(LightningModule):
    def __init__(self, with_example: bool = True) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1, stride=2))
        self.head = nn.Linear(4, 2)
        if with_example:
            self.example_input_array = torch.zeros(2, 1, 9, 9)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    return DataLoader(TensorDataset(torch.randn(4, 1, 9, 9), torch.randint(0, 2, (4,))), batch_size=2)


def _fit(tmp_path, model, callback):
    trainer = Trainer(max_steps=1, limit_val_batches=0, logger=TensorBoardLogger(tmp_path),
                      enable_checkpointing=False, callbacks=[callback], enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(model, _loader())
    return trainer


def test_logs_table_to_tensorboard_json_and_log(tmp_path, caplog):
    callback = ConvArithmeticSummary()
    with caplog.at_level(logging.INFO), pytest.warns(UserWarning, match="never reads"):
        trainer = _fit(tmp_path, TinyNet(), callback)

    assert callback.trace is not None and callback.trace.input_shapes == [(2, 1, 9, 9)]
    assert callback.trace.receptive_field == 3
    assert "Convolution arithmetic" in caplog.text and "features.2" in caplog.text

    path = os.path.join(trainer.log_dir, "conv_arithmetic", "trace.json")
    data = json.loads(open(path).read())
    assert [r["name"] for r in data["rows"]] == ["features.0", "features.2"]
    assert data["rows"][1]["ignored"] == [4, 4] and data["mismatches"] == 0

    events = EventAccumulator(trainer.log_dir, size_guidance={TENSORS: 0})
    events.Reload()
    # SummaryWriter.add_text stores tag "<tag>/text_summary"; TensorBoard's text tab shows it as <tag>.
    assert "conv_arithmetic/table/text_summary" in events.Tags()[TENSORS]
    text = events.Tensors("conv_arithmetic/table/text_summary")[0].tensor_proto.string_val[0].decode()
    assert text.startswith("| layer | op |") and "features.0" in text


def test_uses_input_size_without_example_input(tmp_path):
    callback = ConvArithmeticSummary(input_size=(1, 5, 5))
    with pytest.warns(UserWarning, match="never reads"):
        _fit(tmp_path, TinyNet(with_example=False), callback)
    assert callback.trace.input_shapes == [(1, 1, 5, 5)]


def test_untraceable_model_warns_instead_of_failing(tmp_path):
    callback = ConvArithmeticSummary(input_size=(3, 9, 9))  # the model takes one channel
    with pytest.warns(UserWarning, match="could not trace"):
        _fit(tmp_path, TinyNet(with_example=False), callback)
    assert callback.trace is None


@pytest.mark.parametrize("bad", [(), (3, 0, 4), "3x32x32", (3.0, 32), 7])
def test_invalid_input_size(bad):
    with pytest.raises(ValueError, match="Expected `input_size` to be a sequence of positive integers"):
        ConvArithmeticSummary(input_size=bad)
