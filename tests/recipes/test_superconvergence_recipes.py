"""The super-convergence recipes parse and train one step (CIFAR ones on synthetic data: no downloads)."""

from pathlib import Path

import pytest
import yaml

from lightning_papers.callbacks import SuperConvergence
from lightning_papers.cli import run_lightning_cli
from lightning_papers.modules import ImageClassifier

RECIPES = Path(__file__).resolve().parents[2] / "lightning_papers" / "recipes" / "superconvergence"
SYNTHETIC = {"class_path": "lightning_papers.data.SyntheticDataModule",
             "init_args": {"num_samples": 32, "batch_size": 16}}


def _small_copy(name, tmp_path, synthetic):
    """The recipe with a tiny probe (and synthetic data for CIFAR), written next to the test."""
    config = yaml.safe_load((RECIPES / name).read_text())
    for cb in config["trainer"].get("callbacks", []):
        if cb["class_path"].endswith("SuperConvergence"):
            # a tiny probe on digits; none on ResNet-56 (the probe itself is tested in tests/callbacks)
            cb["init_args"].update(interpolation_points=2, num_batches=1, interpolation_probe=not synthetic)
    if synthetic:
        config["data"] = SYNTHETIC
    else:
        config["data"]["init_args"]["batch_size"] = 16
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("name", "synthetic", "model", "first_lr"),
    [
        ("resnet20_digits_1cycle.yaml", False, "resnet20", 0.05),
        ("resnet20_digits_baseline.yaml", False, "resnet20", 0.1),
        ("resnet56_cifar10_1cycle.yaml", True, "resnet56", 0.1),
        ("resnet56_cifar10_baseline.yaml", True, "resnet56", 0.35),
    ],
)
def test_recipe_fast_dev_run(tmp_path, name, synthetic, model, first_lr):
    text = (RECIPES / name).read_text()
    assert "1708.07120" in text and "1702.04283" in text and "Hardware:" in text and "result" in text
    assert (RECIPES.parents[2] / "recipes" / "superconvergence" / name).with_suffix(".py").is_file()  # its launcher
    cli = run_lightning_cli(["fit", "--config", str(_small_copy(name, tmp_path, synthetic)),
                             "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false",
                             f"--trainer.default_root_dir={tmp_path}"])
    assert isinstance(cli.model, ImageClassifier) and cli.model.hparams.model == model
    assert cli.trainer.global_step == 1
    schedule = [cb for cb in cli.trainer.callbacks if isinstance(cb, SuperConvergence)]
    if "1cycle" in name:
        (sc,) = schedule
        assert sc.three_phase and sc.anneal == "linear" and not sc.cycle_momentum
        assert sc.schedule.max_lr[0] / sc.div_factor == pytest.approx(first_lr)  # where the cycle starts
        assert sc.schedule.run_total == 1  # fast_dev_run: a one-step schedule, which is its own annihilation
        assert (sc.interpolation is not None) == (not synthetic)
    else:
        assert not schedule and cli.model.hparams.scheduler == "multistep"
        assert cli.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(first_lr)


def test_cifar_recipes_match_the_paper():
    one = yaml.safe_load((RECIPES / "resnet56_cifar10_1cycle.yaml").read_text())
    base = yaml.safe_load((RECIPES / "resnet56_cifar10_baseline.yaml").read_text())
    sc = one["trainer"]["callbacks"][0]["init_args"]
    assert sc["max_lr"] == 3.0 and sc["max_lr"] / sc["div_factor"] == pytest.approx(0.1)
    assert one["trainer"]["max_steps"] == 10_000 and base["trainer"]["max_steps"] == 80_000
    assert base["model"]["init_args"]["milestones"] == [50_000, 70_000] and base["model"]["init_args"]["lr"] == 0.35
    for cfg in (one, base):
        assert cfg["model"]["init_args"]["weight_decay"] == 1e-4 and cfg["model"]["init_args"]["momentum"] == 0.9
        assert cfg["data"]["init_args"]["val_split"] == 0
