"""FastStyleTransfer: learns the style (random VGG, asked for explicitly), logs style/ scalars and samples,
checkpoints without the frozen VGG and resumes with the style targets, clear errors."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator as PluginAccumulator

from lightning_papers.data import ImageFolderDataModule
from lightning_papers.modules import FastStyleTransfer
from lightning_papers.modules.style_transfer import RANDOM_VGG_NOTE

pytestmark = pytest.mark.filterwarnings("ignore:.*random.*:UserWarning")


def _module(**kwargs):
    kwargs.setdefault("style_image", "immunohistochemistry")
    return FastStyleTransfer(style_size=64, vgg_weights="random", sample_every_n_steps=5, **kwargs)


def _trainer(tmp_path, max_steps, **kwargs):
    return L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, logger=TensorBoardLogger(tmp_path, "tb"),
                     enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                     num_sanity_val_steps=0, default_root_dir=tmp_path, log_every_n_steps=5, **kwargs)


def _data():
    return ImageFolderDataModule(image_size=64, batch_size=2, seed=0)


def _style_loss(module, images):
    module.eval()
    with torch.no_grad():
        terms = module.loss_fn(module(images), images)
    module.train()
    return float(terms["style"])


def test_training_lowers_the_style_loss_and_logs_samples(tmp_path):
    torch.manual_seed(0)
    module = _module(lr=1e-2)
    dm = _data()
    dm.setup("fit")
    fixed = next(iter(dm.val_dataloader()))
    module.build_loss()
    before = _style_loss(module, fixed)
    trainer = _trainer(tmp_path, 40, enable_checkpointing=False)
    trainer.fit(module, datamodule=dm)
    after = _style_loss(module, fixed)
    assert after < 0.5 * before, (before, after)

    events = EventAccumulator(trainer.log_dir, size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"style/loss", "style/content", "style/style", "style/tv", "style/val_loss"} <= set(
        events.Tags()["scalars"])
    samples = events.Images("style/samples")
    assert [s.step for s in samples] == list(range(0, 40, 5))
    assert samples[0].width == 2 * 64 + 3 * 2  # content | stylised, 2 px padding
    # random VGG weights: the samples' tag says (on its TensorBoard card) they only check the pipeline
    served = PluginAccumulator(trainer.log_dir)
    served.Reload()
    assert served.SummaryMetadata("style/samples").summary_description == RANDOM_VGG_NOTE


def test_checkpoint_leaves_out_the_vgg_and_resumes_with_the_style_targets(tmp_path):
    torch.manual_seed(0)
    module = _module()
    trainer = _trainer(tmp_path, 3)
    trainer.fit(module, datamodule=_data())
    ckpt = trainer.checkpoint_callback.best_model_path or trainer.checkpoint_callback.last_model_path
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert not any(k.startswith("loss_fn.vgg.") for k in state)
    assert "loss_fn.target_gram_relu4_3" in state and any(k.startswith("net.") for k in state)

    resumed = _module()
    trainer2 = _trainer(tmp_path, 5)
    trainer2.fit(resumed, datamodule=_data(), ckpt_path=ckpt)
    assert trainer2.global_step == 5
    torch.testing.assert_close(resumed.loss_fn.target_gram_relu4_3, module.loss_fn.target_gram_relu4_3)

    # for inference: the network's weights only, no loss network built
    loaded = FastStyleTransfer.load_from_checkpoint(ckpt, map_location="cpu")
    assert loaded.loss_fn is None
    for key, value in module.net.state_dict().items():
        torch.testing.assert_close(loaded.net.state_dict()[key], value)
    x = torch.rand(1, 3, 37, 41)
    assert loaded(x).shape == x.shape


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(lr=0.0), "Expected `lr` to be a positive finite number, got 0.0"),
        (dict(style_size=0), "Expected `style_size` to be a positive integer, got 0"),
        (dict(sample_every_n_steps=-1), "Expected `sample_every_n_steps` to be an integer >= 0, got -1"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FastStyleTransfer(vgg_weights="random", **kwargs)


def test_unknown_sample_photo_is_named():
    module = _module(style_image="mona_lisa")
    with pytest.raises(ValueError, match=r"one of the sample photographs .* got 'mona_lisa'"):
        module.build_loss()


def test_missing_style_file_is_named(tmp_path):
    module = _module(style_image=str(tmp_path / "style.jpg"))
    with pytest.raises(FileNotFoundError, match=r"style\.jpg"):
        module.build_loss()


def test_prepare_data_is_where_imagenet_weights_are_fetched_and_fails_clearly_offline(tmp_path, monkeypatch):
    import urllib.error


    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "urlopen", offline)  # the download goes through torch.hub.download_url_to_file
    module = FastStyleTransfer(vgg_weights="imagenet")  # the constructor touches neither cache nor network
    with pytest.raises(RuntimeError, match=r"download failed: URLError.*vgg16-397923af\.pth"):
        module.prepare_data()
