import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightning_papers.cli import main, run_lightning_cli
from lightning_papers.data import DigitsDataModule
from lightning_papers.modules import ImageClassifier

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "lightning_papers" / "recipes" / "quickstart.yaml"


def test_fit_quickstart_recipe_fast_dev_run(tmp_path):
    cli = run_lightning_cli(["fit", "--config", str(QUICKSTART), "--trainer.fast_dev_run=true",
                             "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"])
    assert isinstance(cli.model, ImageClassifier) and isinstance(cli.datamodule, DigitsDataModule)
    assert cli.model.hparams.model == "resnet20" and cli.model.hparams.milestones == [3, 5]
    assert cli.trainer.global_step == 1
    assert cli.trainer.optimizers[0].param_groups[0]["lr"] == 0.05


def test_validate_subcommand(tmp_path):
    cli = run_lightning_cli(["validate", "--config", str(QUICKSTART), "--trainer.limit_val_batches=2",
                             "--trainer.enable_progress_bar=false", "--trainer.logger=false"])
    assert 0.0 <= cli.trainer.callback_metrics["val/acc"].item() <= 1.0
    assert cli.trainer.global_step == 0  # validation alone trains nothing


def test_recipe_runs_as_a_module(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "recipes.quickstart", "--trainer.fast_dev_run=true",
         "--trainer.enable_progress_bar=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "`Trainer.fit` stopped: `max_steps=1` reached." in proc.stderr + proc.stdout


@pytest.mark.parametrize("module, args", [
    ("lightning_papers.cli", ["conv", "explain", "--i", "32", "--k", "3", "--s", "2", "--p", "1"]),
    ("lightning_papers.cli.conv", ["explain", "--i", "32", "--k", "3", "--s", "2", "--p", "1"]),
])
def test_python_dash_m_runs_the_command(tmp_path, module, args):
    """`python -m lightning_papers.cli ...` (README's torchrun line) is `lightning-papers ...`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Relationship 6" in proc.stdout and "= 16" in proc.stdout


def test_unknown_model_in_config_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown model 'resnet21'. Expected one of: .*resnet20"):
        main(["--debug", "fit", "--config", str(QUICKSTART), "--model.init_args.model=resnet21",
              "--trainer.fast_dev_run=true"])


def test_demo_fast_writes_one_run_folder(demo_fast_run):
    run, out = demo_fast_run  # one run folder under --out (the fixture checks there is exactly one)
    assert f"tensorboard --logdir {run}" in out
    assert "final validation accuracy" in out
    result = json.loads((run / "demo_result.json").read_text())
    assert 0.0 <= result["val_acc"] <= 1.0
    assert list(run.glob("events.out.tfevents.*"))
    assert Path(result["artefacts"]["best checkpoint"]).is_file()
    # Every part left its raw results beside the events, and the range test's numbers reached the summary.
    range_test = json.loads((run / "lr_range" / "result.json").read_text())
    assert result["suggested_lr"] == range_test["suggestion"]
    assert f"suggested lr {range_test['suggestion']:.3g}" in out
    assert (run / "conv_arithmetic" / "trace.json").is_file()
    assert Path(result["artefacts"]["init -> final interpolation"]).is_file()
    assert len(list((run / "landscape").glob("interpolate_epoch*.npz"))) == 1
    assert list((run / "landscape").glob("*.npz")) and list((run / "landscape").glob("*.png"))
    # step 5: a stylised photograph, content | style | stylised, each 2 x 64 px in --fast
    stylised = [Path(v) for k, v in result["artefacts"].items() if k.startswith("stylised photograph")]
    assert len(stylised) == 1 and stylised[0].parent == run / "style_transfer"
    from PIL import Image

    with Image.open(stylised[0]) as image:
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[1] == 3 * 128 + 4 * 2
    if "random VGG-16" in out:  # no ImageNet weights here: the picture itself says what it is, under the photos
        caption = pixels[128 + 2 * 2:]
        red = (caption[..., 0] > 100) & (caption[..., 1] < 60) & (caption[..., 2] < 60)
        assert caption.shape[0] >= 16 and red.sum() > 100, (caption.shape, red.sum())
    else:
        assert pixels.shape[0] == 128 + 2 * 2
    assert "stylised photograph" in out


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "demo" in out and "fit" in out


def test_import_needs_neither_cli_nor_data_extras():
    code = (
        "import sys, lightning_papers, lightning_papers.models, lightning_papers.data, "
        "lightning_papers.modules, lightning_papers.callbacks\n"
        "bad = [m for m in ('jsonargparse', 'sklearn', 'skimage', 'onnx', 'onnxruntime', 'onnxscript', "
        "'lightning_papers.cli') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
