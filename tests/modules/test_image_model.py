"""`ImageModel` and `load_image_model`: the module's inference forward exactly, either kind of checkpoint told
apart (from the class path or the weights), loaded without any VGG weights, clear errors."""

from __future__ import annotations

import pytest
import torch

from lightning_papers.models import SuperResolutionNet, TransformerNet
from lightning_papers.modules import ImageClassifier, ImageModel, load_image_model
from lightning_papers.modules.image_model import checkpoint_kind


def test_the_inference_forward_of_both_modules(style_checkpoint, sr_checkpoint):
    x = torch.rand(2, 3, 11, 9)
    for (path, module), kind, factor in ((style_checkpoint, "FastStyleTransfer", 1),
                                         (sr_checkpoint, "SuperResolution", 4)):
        model = load_image_model(path)
        assert (model.kind, model.factor, model.residual) == (kind, factor, factor > 1) and not model.training
        with torch.no_grad():
            assert torch.equal(model(x), module(x).clamp(0, 1))  # module in eval mode: SR clamps itself
        assert model(x).shape == (2, 3, 11 * factor, 9 * factor)


def test_non_residual_super_resolution_is_the_network_clamped():
    net = SuperResolutionNet(factor=8, output="none").eval()
    model = ImageModel(net, factor=8)
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        assert torch.equal(model(x), net(x).clamp(0, 1))


def test_sr_checkpoints_load_without_vgg_weights(sr_checkpoint, tmp_path):
    # A feature-loss checkpoint names VGG weights that are not there: inference never builds the VGG.
    checkpoint = torch.load(sr_checkpoint[0], map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"].update(loss="feature", vgg_weights=str(tmp_path / "missing_vgg16.pth"))
    torch.save(checkpoint, tmp_path / "feature.ckpt")
    model = load_image_model(tmp_path / "feature.ckpt", expected="SuperResolution")
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        assert torch.equal(model(x), sr_checkpoint[1](x))


def test_checkpoint_kind():
    assert checkpoint_kind({"state_dict": {"net.down.0.1.weight": 0}}) == "FastStyleTransfer"
    assert checkpoint_kind({"state_dict": {"net.stem.1.weight": 0}}) == "SuperResolution"
    # LightningCLI's class path decides over the weights
    hparams = {"_class_path": "lightning_papers.modules.SuperResolution"}
    assert checkpoint_kind({"hyper_parameters": hparams, "state_dict": {"net.down.0": 0}}) == "SuperResolution"
    assert checkpoint_kind({"state_dict": {"model.fc.weight": 0}}) is None
    assert checkpoint_kind({}) is None


def test_errors(style_checkpoint, tmp_path):
    with pytest.raises(ValueError, match=r"Expected `factor` to be a positive integer, got 0"):
        ImageModel(TransformerNet(), factor=0)
    with pytest.raises(ValueError, match=r"Expected `factor` > 1 with `residual=True`"):
        ImageModel(TransformerNet(), residual=True)
    with pytest.raises(TypeError, match=r"Expected a FastStyleTransfer or SuperResolution module, got ImageClassif"):
        ImageModel.from_module(ImageClassifier())
    with pytest.raises(ValueError, match=r"Expected `expected` to be one of \('FastStyleTransfer', 'SuperResolution'"
                                         r"\), got 'Style': pass one of them, or None for either"):
        load_image_model(style_checkpoint[0], expected="Style")
    torch.save({"state_dict": {"model.fc.weight": torch.zeros(2)}, "hyper_parameters": {}}, tmp_path / "cls.ckpt")
    with pytest.raises(ValueError, match=r"Expected --ckpt to be a FastStyleTransfer or SuperResolution checkpoint, "
                                         r"but '.*cls\.ckpt' holds neither network"):
        load_image_model(tmp_path / "cls.ckpt")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    for expected in (None, "FastStyleTransfer"):
        with pytest.raises(ValueError, match=r"Expected --ckpt to be a checkpoint written by torch\.save or Lightning, "
                                             r"but '.*notes\.ckpt' is neither a zip archive nor a pickle"):
            load_image_model(tmp_path / "notes.ckpt", expected=expected)
    (tmp_path / "cut.ckpt").write_bytes(b"\x80\x02" + b"n" * 20)  # a pickle header, then nothing torch.save writes
    with pytest.raises(ValueError, match=r"'.*cut\.ckpt' could not be read as one \(Unsupported operand"):
        load_image_model(tmp_path / "cut.ckpt")
