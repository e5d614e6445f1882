"""The callbacks on LightningModules that are not classifiers, and two of one callback in one Trainer.

Each of these failed before the callback redesign: the probe evaluated cross-entropy on ``(inputs, targets)``
whatever the module was (an autoencoder's ``(x,)`` batches raised, ``(x, x)`` batches gave a surface of -0.0),
and a second instance of any stateful callback made the Trainer refuse to start.
"""

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_papers.callbacks import CyclicalLR, LossLandscapeProbe, LRRangeFinder, SuperConvergence
from lightning_papers.data import DigitsDataModule
from lightning_papers.landscape import random_directions
from lightning_papers.modules import ImageClassifier

GRID = np.linspace(-1.0, 1.0, 3)


def _x(n=32, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


class AutoEncoder(L.LightningModule):
    """Batches are ``(x,)``; the loss is the reconstruction MSE; nothing is a class."""

    def __init__(self, pairs=False):
        super().__init__()
        self.pairs = pairs
        self.net = nn.Sequential(nn.Linear(6, 3), nn.Tanh(), nn.Linear(3, 6))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x = batch[0]
        loss = F.mse_loss(self(x), batch[1] if self.pairs else x)
        self.log("train/recon", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def train_dataloader(self):
        x = _x()
        return DataLoader(TensorDataset(x, x) if self.pairs else TensorDataset(x), batch_size=8)

    def val_dataloader(self):
        x = _x(seed=1)
        return DataLoader(TensorDataset(x, x) if self.pairs else TensorDataset(x), batch_size=8)


class DictData(Dataset):
    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        self.image = torch.randn(24, 2, 5, 5, generator=g)
        self.mask = (self.image[:, :1] > 0).long().squeeze(1)

    def __len__(self):
        return len(self.image)

    def __getitem__(self, i):
        return {"image": self.image[i], "mask": self.mask[i]}


class Segmenter(L.LightningModule):
    """Dict batches, per-pixel classes, a loss only logged in validation_step (training_step returns a dict)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))

    def forward(self, image):
        return self.net(image)

    def training_step(self, batch, batch_idx):
        return {"loss": F.cross_entropy(self(batch["image"]), batch["mask"]), "extra": 1}

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", F.cross_entropy(self(batch["image"]), batch["mask"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    def train_dataloader(self):
        return DataLoader(DictData(0), batch_size=6)

    def val_dataloader(self):
        return DataLoader(DictData(1), batch_size=6)


def _fit(module, callbacks, tmp_path, **kwargs):
    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=kwargs.pop("max_epochs", 1), logger=False,
                        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=kwargs.pop("enable_checkpointing", False), default_root_dir=tmp_path,
                        **{k: v for k, v in kwargs.items() if k != "ckpt_path"})
    trainer.fit(module, ckpt_path=kwargs.get("ckpt_path"))
    return trainer


def _expected_curve(module, batches, loss_of_batch):
    """An explicit slow reference: the mean loss at theta + a d, batch by batch, in eval mode."""
    direction = random_directions(module, 1, seed=0)[0]
    base = {k: v.detach().clone() for k, v in module.named_parameters()}
    out = []
    module.eval()
    with torch.no_grad():
        for a in GRID:
            for k, p in module.named_parameters():
                p.copy_(base[k] + a * direction.tensors[k])
            total = sum(float(loss_of_batch(module, b)) * len(next(iter(b.values())) if isinstance(b, dict)
                                                                      else b[0]) for b in batches)
            out.append(total / sum(len(next(iter(b.values()))) if isinstance(b, dict) else len(b[0])
                                   for b in batches))
        for k, p in module.named_parameters():
            p.copy_(base[k])
    return np.array(out)


@pytest.mark.parametrize("pairs", [False, True], ids=["(x,) batches", "(x, x) batches"])
def test_probe_on_an_autoencoder_uses_its_own_loss(tmp_path, pairs):
    probe = LossLandscapeProbe("1d", grid=GRID, num_batches=2, sharpness=True, hessian_iters=3, save_results=False)
    module = AutoEncoder(pairs=pairs)
    _fit(module, [probe], tmp_path, limit_train_batches=2)
    result = probe.results[0]
    assert set(result.values) == {"loss"}  # no accuracy column for a model that does not classify
    batches = [tuple(t for t in b) for b in list(module.val_dataloader())[:2]]
    expected = _expected_curve(module, batches, lambda m, b: F.mse_loss(m(b[0]), b[0]))
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)
    assert (result["loss"] > 0.05).all()  # not the -0.0 of cross-entropy on float "targets"


def test_probe_on_dict_batches_and_a_training_step_that_returns_a_dict(tmp_path):
    probe = LossLandscapeProbe("1d", grid=GRID, num_batches=2, sharpness=False, save_results=False)
    module = Segmenter()
    _fit(module, [probe], tmp_path, limit_train_batches=2)
    result = probe.results[0]
    assert set(result.values) == {"loss"}  # per-pixel targets (N, H, W): not a plain classifier's (N,)
    batches = list(module.val_dataloader())[:2]
    expected = _expected_curve(module, batches, lambda m, b: F.cross_entropy(m(b["image"]), b["mask"]))
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)


def _classifier_fit(tmp_path, callbacks):
    L.seed_everything(0, verbose=False)
    module = ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), lr=0.05)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=3, limit_val_batches=1,
                        logger=False, callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=16))
    return trainer, module


def test_probe_on_the_image_classifier_reports_accuracy_and_keeps_logs_clean(tmp_path):
    # at the end of each epoch, before Lightning computes the epoch's metrics: the probe's training_step calls
    # (self.log and the accuracy metric's updates) must not reach them
    probe = LossLandscapeProbe("1d", at=None, every_n_epochs=1, grid=GRID, num_batches=2, sharpness=False,
                               save_results=False)
    trainer, _ = _classifier_fit(tmp_path / "a", [probe])
    plain, _ = _classifier_fit(tmp_path / "b", [])
    result = probe.results[0]
    assert set(result.values) == {"loss", "accuracy"}
    assert 0.0 <= result["accuracy"].min() <= result["accuracy"].max() <= 1.0
    assert trainer.callback_metrics.keys() == plain.callback_metrics.keys()
    for key, value in plain.callback_metrics.items():
        assert torch.equal(trainer.callback_metrics[key], value), key


def test_loss_fn_overrides_the_modules_loss(tmp_path):
    probe = LossLandscapeProbe("1d", grid=GRID, num_batches=1, sharpness=False, save_results=False,
                               loss_fn=lambda out, target: (out - target).abs().mean())
    module = AutoEncoder(pairs=True)
    _fit(module, [probe], tmp_path, limit_train_batches=2)
    batches = [tuple(b) for b in list(module.val_dataloader())[:1]]
    expected = _expected_curve(module, batches, lambda m, b: (m(b[0]) - b[1]).abs().mean())
    np.testing.assert_allclose(probe.results[0]["loss"], expected, rtol=1e-5)


def test_a_module_without_a_loss_is_refused_by_name(tmp_path):
    class NoLoss(AutoEncoder):
        def training_step(self, batch, batch_idx):
            return None  # returns nothing, logs nothing: Lightning skips the step

    probe = LossLandscapeProbe("1d", grid=GRID, num_batches=1, sharpness=False, save_results=False)
    with pytest.raises(ValueError, match="Expected NoLoss's training_step or validation_step to return a loss"):
        _fit(NoLoss(), [probe], tmp_path, limit_train_batches=1)


# ------------------------------------------------------------------------------------------------------
# two of one callback in one Trainer
# ------------------------------------------------------------------------------------------------------
def test_two_probes_and_two_finders_share_a_trainer_and_resume(tmp_path):
    def callbacks():
        return [LossLandscapeProbe("2d", grid=(GRID, GRID), num_batches=1, sharpness=False, save_results=False),
                LossLandscapeProbe("interpolate", grid=GRID, num_batches=1, save_results=False, sharpness=False),
                LRRangeFinder(1e-4, 1.0, num_steps=6, save_results=False),
                LRRangeFinder(1e-3, 0.1, num_steps=5, at_epochs=[1], save_results=False)]

    first = callbacks()
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _fit(AutoEncoder(), [*first, ckpt], tmp_path, max_epochs=2, enable_checkpointing=True)
    assert len({cb.state_key for cb in first}) == 4
    assert len(first[2].result.lrs) == 6 and len(first[3].result.lrs) == 5 and first[3].result.epoch == 1
    assert set(first[0].results[1].values) == {"loss"} and first[1].results[1].shape == (3,)

    resumed = callbacks()
    _fit(AutoEncoder(), resumed, tmp_path, max_epochs=3, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    # each instance got its own state back: the finders did not run again, the line starts at the first init
    assert resumed[2].results.keys() == {0} and resumed[2].result.lrs == first[2].result.lrs
    assert resumed[3].result.lrs == first[3].result.lrs
    for k, v in first[1].initial_state.items():
        assert torch.equal(resumed[1].initial_state[k], v), k


def test_a_checkpoint_saved_under_the_old_class_name_key_still_loads(tmp_path):
    finder = LRRangeFinder(1e-4, 1.0, num_steps=6, save_results=False)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _fit(AutoEncoder(), [finder, ckpt], tmp_path, limit_train_batches=2, enable_checkpointing=True)
    path = tmp_path / "ckpt" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    # as the first release saved it: under the bare class name, before instances had their own keys
    checkpoint["callbacks"] = {"LRRangeFinder": checkpoint["callbacks"].pop(finder.state_key)}
    torch.save(checkpoint, path)
    resumed = LRRangeFinder(1e-4, 1.0, num_steps=6, save_results=False)
    module = AutoEncoder()
    calls = []
    module.training_step = lambda batch, batch_idx: calls.append(1) or AutoEncoder.training_step(module, batch, 0)
    _fit(module, [resumed], tmp_path, max_epochs=2, limit_train_batches=2, ckpt_path=str(path))
    assert resumed.result == finder.result
    assert len(calls) == 2  # the second epoch's two steps: the restored finder did not sweep again


def test_two_schedules_are_told_apart(tmp_path):
    keys = {CyclicalLR(1e-3, 1e-2, step_size=4).state_key, CyclicalLR(1e-4, 1e-2, step_size=4).state_key,
            SuperConvergence(0.5).state_key, SuperConvergence("finder").state_key}
    assert len(keys) == 4
