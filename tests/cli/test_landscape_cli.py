"""`lightning-papers landscape --ckpt --config`: a checkpoint's surface, its centre equal to the model's own
loss, files written, a rerun resumed instead of recomputed, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_papers.cli import main
from lightning_papers.cli.landscape import parse_grid
from lightning_papers.data import DigitsDataModule
from lightning_papers.landscape import load_surface
from lightning_papers.modules import ImageClassifier

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"


@pytest.fixture
def checkpoint(tmp_path):
    L.seed_everything(0)
    module = ImageClassifier("resnet20", lr=0.05)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=64))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path, module


def test_checkpoint_surface_centre_is_the_models_own_loss_and_reruns_resume(checkpoint, tmp_path, capsys):
    path, module = checkpoint
    out = tmp_path / "surf"
    args = ["landscape", "--ckpt", str(path), "--config", str(QUICKSTART), "--grid", "-1:1:3", "--ygrid",
            "-0.5:0.5:3", "--batches", "1", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "9 computed now" in first
    assert {"surface.npz", "surface.json", "contour.png", "surface3d.png", "surface.vtp"} <= {
        p.name for p in out.iterdir()}
    saved = load_surface(out / "surface")
    assert saved.shape == (3, 3) and saved.complete
    np.testing.assert_allclose(saved.axes[1], [-0.5, 0.0, 0.5])

    # independent reference: the trained module's own loss on the first validation batch, normalised
    dm = DigitsDataModule(batch_size=64, val_fraction=0.2, seed=0)  # the quickstart recipe's data
    dm.setup("validate")
    x, y = next(iter(dm.val_dataloader()))
    module.eval()
    with torch.no_grad():
        expected = float(F.cross_entropy(module(dm.transform(x)), y))
    assert saved.centre_value() == pytest.approx(expected, rel=1e-5)

    assert main(args) == 0  # the same command again: everything is resumed, nothing recomputed
    assert "0 computed now" in capsys.readouterr().out
    assert json.loads((out / "surface.json").read_text())["shape"] == [3, 3]


def test_1d_mode_writes_a_curve(checkpoint, tmp_path):
    path, _ = checkpoint
    out = tmp_path / "curve"
    assert main(["landscape", "--ckpt", str(path), "--config", str(QUICKSTART), "--mode", "1d", "--grid",
                 "-1:1:4", "--batches", "1", "--device", "cpu", "--out", str(out)]) == 0
    assert load_surface(out / "surface").shape == (4,)
    assert (out / "curve.png").is_file()


def test_fast_folds_the_classifiers_batchnorms_and_gives_the_same_curve(checkpoint, tmp_path, capsys, monkeypatch):
    path, _ = checkpoint
    real_compile = torch.compile
    # a real dynamo graph without the C++ compile time of inductor on a 2-core CI machine
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend="aot_eager"))
    common = ["landscape", "--ckpt", str(path), "--config", str(QUICKSTART), "--mode", "1d", "--grid", "-1:1:3",
              "--batches", "1", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert "--fast" not in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "fast"), "--fast"]) == 0
    assert "; --fast: 19 BatchNorms folded, channels_last, torch.compile" in capsys.readouterr().out
    plain, fast = load_surface(tmp_path / "plain" / "surface"), load_surface(tmp_path / "fast" / "surface")
    np.testing.assert_allclose(fast["loss"], plain["loss"], rtol=1e-5)
    assert fast.metadata["fold_bn"] == 19 and fast.metadata["channels_last"] and np.ptp(fast["loss"]) > 0.1


@pytest.mark.parametrize("spec", ["-1:1", "1:-1:5", "a:b:c", "-1:1:0", "-1:1:51:2"])
def test_bad_grid_specs(spec):
    with pytest.raises(ValueError, match=r"Expected a grid as START:STOP:POINTS .* got '" + spec):
        parse_grid(spec)


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Expected --ckpt to be a checkpoint file, got '.*nope.ckpt'"):
        main(["landscape", "--ckpt", str(tmp_path / "nope.ckpt"), "--config", str(QUICKSTART)])


def test_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.ckpt"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match=r"Expected a Lightning checkpoint with a 'state_dict'"):
        main(["landscape", "--ckpt", str(bad), "--config", str(QUICKSTART), "--grid", "-1:1:3", "--device", "cpu"])


def test_an_unknown_device_is_refused_before_any_loading(tmp_path):
    ckpt = tmp_path / "any.ckpt"
    ckpt.write_bytes(b"not read: the device is checked first")
    with pytest.raises(ValueError, match=r"Expected --device to be auto, cpu, cuda or cuda:N, got 'gpu0'"):
        main(["landscape", "--ckpt", str(ckpt), "--config", str(QUICKSTART), "--grid", "-1:1:3", "--device", "gpu0"])
