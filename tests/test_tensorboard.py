"""TensorBoard, checked for real: a `tensorboard` server over the demo's log dir, and a short super-resolution
run beside it (the demo trains no SR model), serves every tag family of DESIGN.md's table, and the
custom-scalars layout."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from compat.helpers import served_layout  # the layout a run's event files serve (tests/ is on sys.path)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from lightning_papers.callbacks import TensorBoardLayout
from lightning_papers.tensorboard import (
    LAYOUT,
    add_image,
    add_layout,
    charts_for_tags,
    layout_for_tags,
    layout_with_data,
    metric_name,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.loads(resp.read().decode())


def _short_sr_run(root) -> str:
    """Two pixel-loss steps of ``SuperResolution`` and one validation, logged to TensorBoard under ``root``."""
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_papers.data import ImageFolderDataModule
    from lightning_papers.modules import SuperResolution

    L.seed_everything(0, verbose=False)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=TensorBoardLogger(root, "sr"),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        check_val_every_n_epoch=None, val_check_interval=2, num_sanity_val_steps=0,
                        limit_val_batches=1, log_every_n_steps=1)
    trainer.fit(SuperResolution(factor=4, loss="pixel"),
                datamodule=ImageFolderDataModule(image_size=32, batch_size=2, val_fraction=0.34))
    return str(root)


@pytest.fixture
def tensorboard_server(demo_fast_run, tmp_path):
    run_dir, _ = demo_fast_run
    sr_dir = _short_sr_run(tmp_path / "sr_run")
    port = _free_port()
    log = (tmp_path / "tensorboard.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir_spec", f"demo:{run_dir},sr:{sr_dir}",
         "--host", "127.0.0.1",
         "--port", str(port), "--load_fast", "false", "--reload_interval", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"tensorboard exited: {(tmp_path / 'tensorboard.log').read_text()[-2000:]}"
            try:
                # the server answers before it has read the events: wait for the scalars to be loaded
                if any(_get(port, "/data/plugin/scalars/tags").values()):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "tensorboard did not serve the run within 90 s"
            time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _all_tags(by_run: dict) -> set[str]:
    return {tag for tags in by_run.values() for tag in tags}


def test_server_serves_every_tag_family(tensorboard_server):
    port = tensorboard_server
    assert _get(port, "/data/runs")  # at least one run
    scalars = _all_tags(_get(port, "/data/plugin/scalars/tags"))
    images = _all_tags(_get(port, "/data/plugin/images/tags"))
    text = _all_tags(_get(port, "/data/plugin/text/tags"))
    mesh = _all_tags(_get(port, "/data/plugin/mesh/tags"))

    assert {"lr_range/loss", "lr_range/loss_smoothed", "lr_range/lr"} <= scalars
    assert {"schedule/lr", "schedule/momentum"} <= scalars
    assert {"landscape/sharpness/hessian_top_eig", "landscape/sharpness/loss_rise"} <= scalars
    assert any(t.startswith("landscape/interpolation/") for t in scalars)
    for family in ("train/loss", "train/acc", "val/loss", "val/acc"):
        assert any(t == family or t.startswith(family + "_") for t in scalars), (family, sorted(scalars))
    assert {"lr_range/curve", "landscape/contour", "landscape/heatmap", "landscape/surface3d",
            "landscape/interpolation"} <= images
    # SummaryWriter.add_text stores "<tag>/text_summary", and the server lists it so
    assert {"lr_range/suggestion/text_summary", "conv_arithmetic/table/text_summary"} <= text
    assert any(t.startswith("landscape/mesh") for t in mesh), sorted(mesh)
    assert {"style/loss", "style/content", "style/style", "style/tv"} <= scalars  # the demo's step 5
    assert "style/samples" in images
    assert {"sr/loss_step", "sr/psnr", "sr/psnr_bicubic", "sr/ssim", "sr/ssim_bicubic"} <= scalars  # the SR run
    assert "sr/samples" in images

    # the custom-scalars layout reached the server, and every chart's regexes are the package's own tags
    layout = _get(port, "/data/plugin/custom_scalars/layout")
    titles = {c["title"] for c in layout["category"]}
    assert {"Training", "Schedule", "LR range test", "Loss landscape", "Perceptual losses"} <= titles
    training = next(c for c in layout["category"] if c["title"] == "Training")
    loss_chart = next(ch for ch in training["chart"] if ch["title"].startswith("loss"))
    regexes = loss_chart["multiline"]["tag"]
    assert any(re.fullmatch(r, "train/loss_step") for r in regexes)
    assert any(re.fullmatch(r, "val/loss") for r in regexes)


def test_layout_regexes_match_the_tags_the_demo_wrote(demo_fast_run):
    run_dir, _ = demo_fast_run
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = acc.Tags()["scalars"]
    for category in ("Training", "Schedule", "LR range test", "Loss landscape"):
        for chart, (_, regexes) in LAYOUT[category].items():
            if chart == "validation accuracy":  # the range test's accuracy mode is off in the demo
                continue
            assert any(re.fullmatch(r, t) for r in regexes for t in scalars), (category, chart, scalars)


def test_add_layout_writes_custom_scalars_and_rejects_other_objects(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    add_layout(writer, {"A": {"b": ["Multiline", ["x/.*"]]}})
    writer.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert "custom_scalars__config__" in acc.Tags()["tensors"]
    with pytest.raises(TypeError, match="Expected a SummaryWriter or a TensorBoardLogger, got int"):
        add_layout(3)


@pytest.mark.parametrize(
    "layout",
    [{}, {"A": {}}, {"A": {"b": ["Lines", ["x"]]}}, {"A": {"b": ["Multiline", "x"]}}, ["Multiline"]],
)
def test_layout_errors(layout):
    with pytest.raises(ValueError, match="Expected `layout` as"):
        TensorBoardLayout(layout)


def test_layout_with_data_keeps_the_charts_that_have_a_tag():
    tags = ["train/loss_step", "val/loss", "lr_range/loss", "lr_range/lr"]
    kept = layout_with_data(LAYOUT, tags)
    assert kept == {
        "Training": {"loss (train, val)": LAYOUT["Training"]["loss (train, val)"]},
        "LR range test": {"loss (raw, smoothed)": LAYOUT["LR range test"]["loss (raw, smoothed)"],
                          "learning rate": LAYOUT["LR range test"]["learning rate"]},
    }
    assert layout_with_data(LAYOUT, []) == {}
    # TensorBoard searches a chart's regexes anywhere in a tag
    assert layout_with_data({"A": {"b": ["Multiline", ["loss"]]}}, ["val/loss_epoch"]) == {
        "A": {"b": ["Multiline", ["loss"]]}}


def _served_layout(log_dir):
    from tensorboard.plugins.custom_scalar import layout_pb2

    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    acc.Reload()
    events = acc.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout()
    layout.ParseFromString(events[-1].tensor_proto.string_val[0])  # TensorBoard shows a run's last layout
    return len(events), {c.title: [chart.title for chart in c.chart] for c in layout.category}


def _assert_no_empty_chart(charts, tags):
    for category, by_title in charts.items():
        for title, regexes in by_title.items():
            assert any(re.search(r, t) for r in regexes for t in tags), (category, title, regexes, sorted(tags))


def test_layout_callback_keeps_at_fit_end_only_the_charts_the_run_filled(tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch import nn

    from lightning_papers.data import DigitsDataModule
    from lightning_papers.modules import ImageClassifier

    L.seed_everything(0, verbose=False)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                        logger=TensorBoardLogger(tmp_path, name="tb", default_hp_metric=False),
                        callbacks=[TensorBoardLayout()], log_every_n_steps=1, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(ImageClassifier(net), datamodule=DigitsDataModule(batch_size=16))
    written, layout = _served_layout(trainer.log_dir)
    assert written == 1  # no layout of empty charts at fit start; the first one once validation logged
    assert layout == {"Training": ["loss (train, val)", "accuracy (train, val)"]}
    charts, tags = served_layout(trainer.log_dir)
    _assert_no_empty_chart(charts, tags)


class _DocsStyleModule:
    """A module as Lightning's docs write one: ``self.log("train_loss")``, ``"val_loss"``, ``"val_acc"``."""

    @staticmethod
    def make(log_names):
        import lightning as L
        import torch
        import torch.nn.functional as F
        from torch import nn
        from torch.utils.data import DataLoader, TensorDataset

        class Module(L.LightningModule):
            def __init__(self):
                super().__init__()
                self.net = nn.Linear(4, 3)

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = F.cross_entropy(self.net(x), y)
                if "train_loss" in log_names:
                    self.log("train_loss", loss, on_step=True, on_epoch=True)
                return loss

            def validation_step(self, batch, batch_idx):
                x, y = batch
                logits = self.net(x)
                if "val_loss" in log_names:
                    self.log("val_loss", F.cross_entropy(logits, y))
                    self.log("val_acc", (logits.argmax(1) == y).float().mean())

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

            def _loader(self):
                g = torch.Generator().manual_seed(0)
                return DataLoader(TensorDataset(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)),
                                  batch_size=4)

            train_dataloader = val_dataloader = _loader

        return Module()


def _fit_logged(tmp_path, log_names):
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    trainer = L.Trainer(accelerator="cpu", max_epochs=2, logger=TensorBoardLogger(tmp_path, name="tb"),
                        callbacks=[TensorBoardLayout()], log_every_n_steps=1, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(_DocsStyleModule.make(log_names))
    return served_layout(trainer.log_dir)


def test_layout_charts_the_names_lightnings_docs_use(tmp_path):
    charts, tags = _fit_logged(tmp_path, ("train_loss", "val_loss"))
    assert {"train_loss_step", "train_loss_epoch", "val_loss", "val_acc"} <= tags
    # train and validation loss on one chart, accuracy on its own; Lightning's `epoch` and `hp_metric` not charted
    assert charts == {"Training": {
        "acc (val)": ["^val_acc$"],
        "loss (train, val)": ["^train_loss_epoch$", "^train_loss_step$", "^val_loss$"],
    }}
    _assert_no_empty_chart(charts, tags)


def test_layout_of_a_run_that_logged_nothing_is_no_layout(tmp_path):
    # the layout of every possible chart, written at fit start, stayed when nothing matched: 12 empty frames
    charts, tags = _fit_logged(tmp_path, ())
    assert charts is None, charts


@pytest.mark.parametrize(("tag", "expected"), [
    ("train_loss", ("loss", "train")), ("val_loss_epoch", ("loss", "val")), ("train_loss_step", ("loss", "train")),
    ("train/acc_epoch", ("acc", "train")), ("validation/loss", ("loss", "val")), ("Loss/train", ("Loss", "train")),
    ("loss", ("loss", None)), ("test_acc", ("acc", "test")), ("valid-f1", ("f1", "val")), ("lr-SGD", ("lr-SGD", None)),
    ("trainer_time", ("trainer_time", None)),
])
def test_metric_name(tag, expected):
    assert metric_name(tag) == expected


def test_layout_for_tags_groups_every_spelling_and_keeps_our_charts():
    tags = ["train_loss_step", "train_loss_epoch", "val_loss", "loss", "Loss/train", "schedule/lr", "epoch",
            "hp_metric", "curvature/lr"]
    layout = layout_for_tags(tags)
    assert layout == {
        "Training": {
            "loss (train, val)": ["Multiline", ["^Loss/train$", "^loss$", "^train_loss_epoch$", "^train_loss_step$",
                                               "^val_loss$"]],
            "curvature/lr": ["Multiline", ["^curvature/lr$"]],
        },
        "Schedule": {"learning rate": LAYOUT["Schedule"]["learning rate"]},
    }
    assert layout_for_tags([]) == {} and layout_for_tags(["epoch", "hp_metric"]) == {}
    # our own names stay on LAYOUT's charts; without `auto` nothing else is added
    assert layout_for_tags(["train/loss_step", "val/loss", "val_acc"], auto=False) == {
        "Training": {"loss (train, val)": LAYOUT["Training"]["loss (train, val)"]}}
    assert charts_for_tags(["a", "b"]) == {"a": ["Multiline", ["^a$"]], "b": ["Multiline", ["^b$"]]}


def test_add_image_carries_a_description(tmp_path):
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator as PluginAccumulator

    writer = SummaryWriter(str(tmp_path))
    image = np.zeros((3, 8, 12), dtype=np.uint8)
    image[0, :, :6] = 255
    add_image(writer, "style/samples", image, step=3, description="Random VGG-16 weights", dataformats="CHW")
    writer.close()
    legacy = EventAccumulator(str(tmp_path), size_guidance={"images": 0})  # what add_image's readers see
    legacy.Reload()
    (event,) = legacy.Images("style/samples")
    assert (event.step, event.width, event.height) == (3, 12, 8)
    served = PluginAccumulator(str(tmp_path))  # what the TensorBoard server reads
    served.Reload()
    metadata = served.SummaryMetadata("style/samples")
    assert metadata.plugin_data.plugin_name == "images" and metadata.summary_description == "Random VGG-16 weights"
