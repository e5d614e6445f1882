"""The perceptual-loss recipes (Johnson et al., arXiv 1603.08155): every YAML parses through the CLI with the
paper's settings, the offline ones train (shrunk) and leave a checkpoint and a log, and a launcher runs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from lightning_papers.cli import run_lightning_cli
from lightning_papers.data import ImageFolderDataModule
from lightning_papers.modules import FastStyleTransfer, SuperResolution

ROOT = Path(__file__).resolve().parents[2]
STYLE = ROOT / "lightning_papers" / "recipes" / "style_transfer"
SR = ROOT / "lightning_papers" / "recipes" / "super_resolution"
RECIPES = sorted(STYLE.glob("*.yaml")) + sorted(SR.glob("*.yaml"))
MODULES = {"FastStyleTransfer": FastStyleTransfer, "SuperResolution": SuperResolution}
# a run shrunk for a test: one epoch of one step (5 training photographs, batch 8), then one validation pass
SHORT = ["--trainer.max_steps=1", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--trainer.check_val_every_n_epoch=1", "--trainer.num_sanity_val_steps=0",
         "--data.init_args.image_size=16", "--data.init_args.batch_size=8"]


def _printed_config(path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_lightning_cli(["fit", "--config", str(path), "--print_config"])
    assert exit_info.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_and_builds(path, capsys):
    text = path.read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert "arXiv 1603.08155" in header
    for word in ("Reproduces:", "Hardware:", "Wall-clock and result:", "Run:", f"python -m recipes.{path.parent.name}"):
        assert word in header, word
    assert "__" not in header  # no placeholder left
    launcher = ROOT / "recipes" / path.parent.name / f"{path.stem}.py"
    assert "launch(__file__)" in launcher.read_text()

    config = _printed_config(path, capsys)  # every key checked against the class signatures by jsonargparse
    model_cls = MODULES[config["model"]["class_path"].rsplit(".", 1)[1]]
    model = model_cls(**config["model"]["init_args"])  # the constructors' own checks; neither downloads
    data = ImageFolderDataModule(**config["data"]["init_args"])
    offline = path.stem.startswith("sample")
    assert data.batch_size == 4  # the paper's batch for every recipe
    # the paper's Adam rate, but for the offline SR run (no batch norm: 1e-4, see SuperResolution's `lr`)
    assert model.hparams.lr == (1e-4 if offline and model_cls is SuperResolution else 1e-3)
    assert (data.root is None) == offline
    if model_cls is FastStyleTransfer or model.hparams.loss == "feature":
        assert model.hparams.vgg_weights == ("random" if offline else "imagenet")


def test_coco_recipes_have_the_papers_settings():
    assert [p.name for p in RECIPES] == ["coco_starry_night.yaml", "sample_images.yaml", "coco_x4_feature.yaml",
                                         "coco_x4_pixel.yaml", "coco_x8_feature.yaml", "sample_images_x4.yaml"]
    style = yaml.safe_load((STYLE / "coco_starry_night.yaml").read_text())
    m, d = style["model"]["init_args"], style["data"]["init_args"]
    assert style["trainer"]["max_steps"] == 40_000 and d["image_size"] == 256 and d["scale"] == [1.0, 1.0]
    assert m["content_layer"] == "relu2_2" and m["style_layers"] == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    assert 1e-6 <= m["tv_weight"] <= 1e-4
    assert d["root"] == "data/coco/train2014"
    for name, factor, loss in (("coco_x4_feature", 4, "feature"), ("coco_x8_feature", 8, "feature"),
                               ("coco_x4_pixel", 4, "pixel")):
        sr = yaml.safe_load((SR / f"{name}.yaml").read_text())
        m, d = sr["model"]["init_args"], sr["data"]["init_args"]
        assert sr["trainer"]["max_steps"] == 200_000 and d["image_size"] == 288
        assert (m["factor"], m["loss"], m["residual"], m["norm"]) == (factor, loss, False, "batch")
        assert sr["trainer"]["logger"]["init_args"]["name"] == name


def _only(pattern, root):
    (found,) = sorted(root.glob(pattern))
    return found


def test_style_sample_trains_and_checkpoints(tmp_path):
    with pytest.warns(UserWarning, match="untrained loss network"):
        cli = run_lightning_cli(["fit", "--config", str(STYLE / "sample_images.yaml"), *SHORT,
                                 "--model.init_args.style_size=16"])
    assert isinstance(cli.model, FastStyleTransfer) and cli.trainer.global_step == 1
    metrics = cli.trainer.callback_metrics
    assert torch.isfinite(metrics["style/loss"]) and torch.isfinite(metrics["style/val_loss"])
    run = tmp_path / "runs" / "style_transfer_sample" / "version_0"
    assert _only("events.out.tfevents.*", run).stat().st_size > 0
    state = torch.load(_only("checkpoints/*.ckpt", run), map_location="cpu", weights_only=False)["state_dict"]
    assert any(k.startswith("net.") for k in state) and not any(k.startswith("loss_fn.vgg.") for k in state)
    # the checkpoint stylises without any VGG
    loaded = FastStyleTransfer.load_from_checkpoint(_only("checkpoints/*.ckpt", run), map_location="cpu")
    assert loaded.eval()(torch.rand(1, 3, 20, 28)).shape == (1, 3, 20, 28)


def test_sr_sample_trains_and_checkpoints(tmp_path):
    cli = run_lightning_cli(["fit", "--config", str(SR / "sample_images_x4.yaml"), *SHORT])
    assert isinstance(cli.model, SuperResolution) and cli.trainer.global_step == 1
    metrics = cli.trainer.callback_metrics
    assert metrics["sr/psnr"] > 10 and metrics["sr/psnr_bicubic"] > 10  # inputs of 4x4 px, judged on 16x16
    run = tmp_path / "runs" / "sr_x4_sample" / "version_0"
    assert _only("events.out.tfevents.*", run).stat().st_size > 0
    assert _only("checkpoints/*.ckpt", run).stat().st_size > 0


def test_launcher_runs_as_a_module(tmp_path):
    # `python -m recipes...` in a fresh interpreter: finds its YAML, passes overrides on (the fit itself is tested
    # in-process above; --print_config keeps this one to the interpreter's start-up)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "recipes.super_resolution.sample_images_x4", "--trainer.max_steps=3", "--print_config"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = yaml.safe_load(proc.stdout)
    assert printed["trainer"]["max_steps"] == 3  # the override
    assert printed["model"]["init_args"]["loss"] == "pixel" and printed["data"]["init_args"]["image_size"] == 64
