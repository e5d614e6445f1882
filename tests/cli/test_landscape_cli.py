"""`lightning-papers landscape --ckpt --config`: a checkpoint's surface, its centre equal to the model's own
loss (cross-entropy for the quickstart classifier, the mean squared error for a regressor with dict batches),
files written, a rerun resumed instead of recomputed, other settings refused, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from cli_helpers import DiabetesData, DiabetesRegression, SmoothedDigitsClassifier

from lightning_papers.cli import main
from lightning_papers.cli.landscape import _trainer_device, parse_grid
from lightning_papers.data import DigitsDataModule
from lightning_papers.landscape import load_surface, random_directions, surface, surface_scale
from lightning_papers.modules import ImageClassifier

QUICKSTART = Path(__file__).resolve().parents[2] / "lightning_papers" / "recipes" / "quickstart.yaml"
# a recipe naming the test helpers' modules by class path, as a user's YAML names theirs
CONFIG = """seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
model:
  class_path: cli_helpers.{model}
data:
  class_path: {data}
  init_args:
    batch_size: 16
"""


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
    assert {"surface.npz", "surface.json", "contour.png", "heatmap.png", "surface3d.png", "surface.vtp"} <= {
        p.name for p in out.iterdir()}
    saved = load_surface(out / "surface")
    assert saved.shape == (3, 3) and saved.complete
    # the pictures' levels and clip, as every landscape picture draws them, printed
    assert f"pictures: {surface_scale(saved['loss'], centre=saved.centre_value()).describe()}\n" in first
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


@pytest.mark.parametrize("device, expected", [("auto", ("auto", 1)), ("cpu", ("cpu", 1)), ("cuda", ("gpu", 1)),
                                              ("cuda:1", ("gpu", [1]))])
def test_device_names_map_to_lightning_accelerators(device, expected, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the names are checked, nothing runs on CUDA
    assert _trainer_device(device) == expected


def test_a_device_lightning_cannot_run_is_refused():
    with pytest.raises(ValueError, match=r"Expected --device to be auto, cpu, cuda or cuda:N, got 'meta'"):
        _trainer_device("meta")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Expected --ckpt to be a checkpoint file, got '.*nope.ckpt'"):
        main(["--debug", "landscape", "--ckpt", str(tmp_path / "nope.ckpt"), "--config", str(QUICKSTART)])


def test_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.ckpt"
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match=r"Expected --ckpt to be a Lightning checkpoint with a 'state_dict'"):
        main(["--debug", "landscape", "--ckpt", str(bad), "--config", str(QUICKSTART), "--grid", "-1:1:3",
              "--device", "cpu"])


def test_an_unknown_device_is_refused_before_any_loading(tmp_path):
    ckpt = tmp_path / "any.ckpt"
    ckpt.write_bytes(b"not read: the device is checked first")
    with pytest.raises(ValueError, match=r"Expected --device to be auto, cpu, cuda or cuda:N, got 'gpu0'"):
        main(["--debug", "landscape", "--ckpt", str(ckpt), "--config", str(QUICKSTART),
              "--grid", "-1:1:3", "--device", "gpu0"])


@pytest.fixture
def regression(tmp_path):
    """(checkpoint, config, trained module) of the diabetes regressor: its own loss is the mean squared error."""
    L.seed_everything(0)
    module = DiabetesRegression()
    trainer = L.Trainer(accelerator="cpu", max_steps=3, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=DiabetesData())
    path = tmp_path / "regression.ckpt"
    trainer.save_checkpoint(path)
    config = tmp_path / "regression.yaml"
    config.write_text(CONFIG.format(model="DiabetesRegression", data="cli_helpers.DiabetesData"))
    return path, config, module.eval()


def test_a_regressor_with_dict_batches_gets_its_own_loss_at_every_point(regression, tmp_path, capsys):
    path, config, module = regression
    out = tmp_path / "surf"
    assert main(["landscape", "--ckpt", str(path), "--config", str(config), "--mode", "1d", "--grid", "-1:1:5",
                 "--batches", "2", "--device", "cpu", "--out", str(out)]) == 0
    saved = load_surface(out / "surface")
    assert list(saved.values) == ["loss"]  # no accuracy: not a classifier
    assert saved.metadata["evaluated"].endswith("DiabetesRegression's own step loss")  # module-qualified

    # independent reference: the mean squared error of the module's forward pass on the first 32 validation patients,
    # scaled as the datamodule's hook scales them (no training noise), at theta + a d with the command's directions
    dm = DiabetesData()
    dm.setup("validate")
    x, y = dm.val_set.tensors
    x, y = dm.transform(x[:32]), y[:32]
    with torch.no_grad():
        centre = float(F.mse_loss(module(x), y))
    reference = surface(module, random_directions(module, 1, seed=0), np.linspace(-1, 1, 5), (x, y),
                        metrics={"loss": F.mse_loss})
    np.testing.assert_allclose(saved["loss"], reference["loss"], rtol=1e-5)
    assert saved.centre_value() == pytest.approx(centre, rel=1e-5) and np.ptp(saved["loss"]) > 0.01
    assert f"centre loss {centre:.4f}" in capsys.readouterr().out


@pytest.mark.parametrize("change, key", [(["--seed", "1"], "directions"), (["--bf16"], "autocast_dtype"),
                                         (["--batches", "1"], "data")])
def test_a_rerun_with_other_settings_is_refused_and_leaves_the_file(regression, tmp_path, change, key):
    path, config, _ = regression
    out = tmp_path / "surf"
    args = ["landscape", "--ckpt", str(path), "--config", str(config), "--mode", "1d", "--grid", "-1:1:3",
            "--batches", "2", "--device", "cpu", "--out", str(out)]
    assert main(args) == 0
    before = (out / "surface.npz").read_bytes()
    with pytest.raises(ValueError, match=rf"Expected the saved surface at '.*surface.npz' to match this run's `{key}`"):
        main(["--debug", *args, *change])
    assert (out / "surface.npz").read_bytes() == before


def test_fast_is_refused_for_batches_that_are_not_a_classifiers(regression, tmp_path):
    path, config, _ = regression
    with pytest.raises(ValueError, match=r"Expected \(inputs, integer class targets\) batches and logits out with "
                                         r"--fast .*--fast is for classifiers\), got batches of a dict with keys "
                                         r"\['x', 'y'\]"):
        main(["--debug", "landscape", "--ckpt", str(path), "--config", str(config), "--mode", "1d", "--grid", "-1:1:3",
              "--batches", "1", "--device", "cpu", "--out", str(tmp_path / "fast"), "--fast"])
    assert not (tmp_path / "fast" / "surface.npz").exists()


def test_fast_is_refused_for_a_classifier_whose_own_loss_is_not_cross_entropy(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "smoothed.ckpt"
    torch.save({"state_dict": SmoothedDigitsClassifier().state_dict()}, path)
    config = tmp_path / "smoothed.yaml"
    config.write_text(CONFIG.format(model="SmoothedDigitsClassifier", data="lightning_papers.data.DigitsDataModule"))
    args = ["landscape", "--ckpt", str(path), "--config", str(config), "--mode", "1d", "--grid", "-1:1:3",
            "--batches", "1", "--device", "cpu"]
    with pytest.raises(ValueError, match=r"Expected the module's loss to be cross-entropy with --fast, got "
                                         r"[0-9.]+ from SmoothedDigitsClassifier's step vs [0-9.]+"):
        main(["--debug", *args, "--out", str(tmp_path / "fast"), "--fast"])
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0  # its own loss, label smoothing included
    saved = load_surface(tmp_path / "plain" / "surface")
    assert set(saved.values) == {"loss", "accuracy"}


def test_a_model_without_validation_step_is_refused(regression, tmp_path):
    path, _, _ = regression
    config = tmp_path / "no_validation.yaml"
    config.write_text(CONFIG.format(model="DiabetesRegressionNoValidation", data="cli_helpers.DiabetesData"))
    with pytest.raises(ValueError, match=r"Expected the config's model to define validation_step .*, got "
                                         r"DiabetesRegressionNoValidation without one"):
        main(["--debug", "landscape", "--ckpt", str(path), "--config", str(config),
              "--grid", "-1:1:3", "--device", "cpu",
              "--out", str(tmp_path / "surf")])


def test_an_empty_validation_loader_is_refused(regression, tmp_path):
    path, config, _ = regression
    config.write_text(config.read_text() + "    val_size: 0\n")
    with pytest.raises(ValueError, match=r"Expected the config's data module to have a non-empty validation loader, "
                                         r"got DiabetesData with none"):
        main(["--debug", "landscape", "--ckpt", str(path), "--config", str(config),
              "--grid", "-1:1:3", "--device", "cpu",
              "--out", str(tmp_path / "surf")])


def test_frame_and_adaptive_evaluate_a_budget_on_a_framed_range(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    out = tmp_path / "adaptive"
    assert main(["landscape", "--ckpt", str(path), "--config", str(QUICKSTART), "--mode", "1d", "--grid",
                 "-1:1:17", "--frame", "--adaptive", "9", "--batches", "1", "--device", "cpu", "--out",
                 str(out)]) == 0
    saved = load_surface(out / "surface")
    assert saved.shape == (17,) and 5 <= saved.computed.sum() <= 9
    span = saved.metadata["range"]["spans"][0]
    assert saved.axes[0][-1] == pytest.approx(span) and span != 1.0
    assert saved.metadata["adaptive"]["budget_points"] == 9
    printed = capsys.readouterr().out
    assert f"adaptive: {int(saved.computed.sum())} of 17 points evaluated" in printed and "range ±" in printed


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "lots"])
def test_bad_adaptive_budgets_are_refused(text):
    import argparse

    from lightning_papers.cli.landscape import _budget

    with pytest.raises(argparse.ArgumentTypeError, match=f"Expected --adaptive to be a point count .* got '{text}'"):
        _budget(text)


def test_view_names_the_surface_as_the_probe_does_and_mode_still_works():
    import argparse

    from lightning_papers.cli.landscape import add_subparser

    parser = argparse.ArgumentParser()
    add_subparser(parser.add_subparsers())
    common = ["landscape", "--ckpt", "a.ckpt", "--config", "b.yaml"]
    assert parser.parse_args(common + ["--view", "1d"]).view == "1d"
    assert parser.parse_args(common + ["--mode", "1d"]).view == "1d"
    assert parser.parse_args(common).view == "2d"
