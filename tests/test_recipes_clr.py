import importlib.util
from pathlib import Path

import pytest
import yaml

from lightning_papers.callbacks import CyclicalLR, LRRangeFinder
from lightning_papers.cli import run_lightning_cli
from lightning_papers.data import DigitsDataModule
from lightning_papers.modules import ImageClassifier

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "lightning_papers" / "recipes" / "clr" / "resnet20_digits_triangular2.yaml"
CIFAR = ROOT / "lightning_papers" / "recipes" / "clr" / "resnet56_cifar10_triangular2.yaml"


def _callback_args(config, name):
    return next(cb["init_args"] for cb in config["trainer"]["callbacks"] if cb["class_path"].endswith(name))


@pytest.mark.parametrize("path", [DIGITS, CIFAR])
def test_recipe_headers_follow_the_house_style(path):
    text = path.read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "arXiv 1506.01186" in header
    for word in ("Reproduces", "Hardware", "Run:"):
        assert word in header, word
    assert "__" not in header  # no placeholder left
    config = yaml.safe_load(text)
    clr = _callback_args(config, "CyclicalLR")
    assert clr["base_lr"] == clr["max_lr"] == "finder" and clr["policy"] == "triangular2"
    assert config["trainer"]["max_steps"] % (2 * clr["step_size"]) == 0  # ends on a cycle boundary
    assert config["model"]["init_args"]["scheduler"] is None


def test_digits_recipe_fits_with_finder_then_cyclical_lr(tmp_path):
    # the recipe as written, shrunk for a test: its 60-step range test (a shorter one cannot be read, and a curve
    # that cannot be read is refused), 2 training steps, tiny validation
    config = yaml.safe_load(DIGITS.read_text())
    _callback_args(config, "LRRangeFinder")["save_results"] = False
    small = tmp_path / "digits.yaml"
    small.write_text(yaml.safe_dump(config))
    with pytest.warns(UserWarning, match="do not end on a cycle boundary"):
        cli = run_lightning_cli([
            "fit", "--config", str(small), "--trainer.max_steps=2", "--trainer.logger=false",
            "--trainer.limit_val_batches=1", "--trainer.val_check_interval=2", "--trainer.enable_progress_bar=false",
            "--trainer.enable_checkpointing=false", "--trainer.enable_model_summary=false",
            f"--trainer.default_root_dir={tmp_path}",
        ])
    assert isinstance(cli.model, ImageClassifier) and isinstance(cli.datamodule, DigitsDataModule)
    finder = next(cb for cb in cli.trainer.callbacks if isinstance(cb, LRRangeFinder))
    clr = next(cb for cb in cli.trainer.callbacks if isinstance(cb, CyclicalLR))
    assert (clr.mode, clr.step_size, clr.base_lr, clr.max_lr) == ("triangular2", 18, "finder", "finder")
    assert len(finder.result.lrs) == 60 and finder.result.lrs[0] == 0.001
    assert finder.result.trusted, finder.result.problems
    assert cli.trainer.global_step == 2
    bounds = finder.result.schedule_bounds(strict=True)
    assert bounds[0] <= finder.result.suggestion <= bounds[1]
    assert clr.schedule.base_lr == (bounds[0],) and clr.schedule.max_lr == (bounds[1],)
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == clr.lr_at(1)[0]


def test_digits_launcher_reads_its_yaml(capsys):
    # `recipes._launch` loaded from its file: inside pytest, `tests/recipes/` shadows the `recipes` package
    launcher = ROOT / "recipes" / "clr" / "resnet20_digits_triangular2.py"
    assert "launch(__file__)" in launcher.read_text()
    spec = importlib.util.spec_from_file_location("_clr_launch", ROOT / "recipes" / "_launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.launch(str(launcher), argv=["--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_steps"] == 144
    assert printed["data"]["init_args"]["size"] == 16
    assert _callback_args(printed, "LRRangeFinder")["num_steps"] == 60


def test_cifar_recipe_parses_without_data(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "--config", str(CIFAR), "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["data"]["class_path"] == "lightning_papers.data.CIFARDataModule"
    assert printed["data"]["init_args"]["download"] is False
    assert printed["model"]["init_args"]["model"] == "resnet56"
    clr = _callback_args(printed, "CyclicalLR")
    assert (clr["step_size"], clr["policy"], clr["base_lr"], clr["max_lr"]) == (2000, "triangular2", "finder", "finder")
    assert printed["trainer"]["max_steps"] == 24000
