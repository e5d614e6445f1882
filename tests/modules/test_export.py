"""`lightning-papers export`: both checkpoint kinds to ONNX and TorchScript; the exported files, run by
ONNX Runtime / torch.jit.load at sizes other than the export's example, give the module's own output."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from lightning_papers.cli import main
from lightning_papers.modules.export import ONNX_MIN_SIZE, export_model

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")

# (N, H, W): odd sizes, not multiples of 4, unlike the export's 32 x 32 example; the smallest ONNX size too
SIZES = [(2, 21, 27), (1, ONNX_MIN_SIZE, 7)]


def _expected(module, x):
    with torch.no_grad():
        return module(x).clamp(0, 1).numpy()


@pytest.mark.parametrize("kind", ["style", "sr"])
def test_onnx_runs_at_any_size(kind, style_checkpoint, sr_checkpoint, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    ckpt, module = style_checkpoint if kind == "style" else sr_checkpoint
    out = tmp_path / "model.onnx"
    assert main(["export", "--ckpt", str(ckpt), "--format", "onnx", "--output", str(out), "--opset", "17"]) == 0
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["kind"] == ("FastStyleTransfer" if kind == "style" else "SuperResolution")
    assert meta["factor"] == ("1" if kind == "style" else "4") and meta["min_size"] == str(ONNX_MIN_SIZE)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for n, h, w in SIZES:
        x = torch.rand(n, 3, h, w)
        got = session.run(None, {"image": x.numpy()})[0]
        expected = _expected(module, x)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["style", "sr"])
def test_torchscript_runs_at_any_size(kind, style_checkpoint, sr_checkpoint, tmp_path):
    ckpt, module = style_checkpoint if kind == "style" else sr_checkpoint
    out = tmp_path / "sub" / "model.pt"
    assert main(["--debug", "export", "--ckpt", str(ckpt), "--format", "torchscript", "--output", str(out)]) == 0
    loaded = torch.jit.load(str(out))
    for n, h, w in [*SIZES, (1, 2, 3)]:  # TorchScript keeps the networks' padding logic: tiny sizes too
        x = torch.rand(n, 3, h, w)
        with torch.no_grad():
            got = loaded(x).numpy()
        np.testing.assert_allclose(got, _expected(module, x), atol=1e-5, rtol=0)


def test_errors(style_checkpoint, tmp_path, monkeypatch):
    ckpt = str(style_checkpoint[0])
    with pytest.raises(ValueError, match=r"Expected `--format` to be one of \('onnx', 'torchscript'\), got 'tflite'"):
        main(["--debug", "export", "--ckpt", ckpt, "--format", "tflite", "--output", str(tmp_path / "m")])
    with pytest.raises(FileNotFoundError, match=r"Expected --ckpt to be a checkpoint file, got '.*nope\.ckpt'"):
        main(["--debug", "export", "--ckpt", str(tmp_path / "nope.ckpt"), "--format", "onnx",
              "--output", str(tmp_path / "m")])
    torch.save({"state_dict": {"model.fc.weight": torch.zeros(2)}}, tmp_path / "classifier.ckpt")
    with pytest.raises(ValueError, match=r"Expected --ckpt to be a FastStyleTransfer or SuperResolution checkpoint, "
                                         r"but '.*classifier\.ckpt' holds neither network"):
        main(["--debug", "export", "--ckpt", str(tmp_path / "classifier.ckpt"), "--format", "torchscript", "--output",
              str(tmp_path / "m.pt")])
    with pytest.raises(ValueError, match=r"Expected `--opset` to be an integer in \[11, \d+\], got 9: pass an ONNX"):
        main(["--debug", "export", "--ckpt", ckpt, "--format", "onnx", "--output", str(tmp_path / "m.onnx"),
              "--opset", "9"])
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if the export extra were not installed
    with pytest.raises(ImportError, match=r"ONNX export needs 'onnx' \(the export extra\): install it with "
                                          r"`pip install \"lightning-papers\[export\]\"`"):
        main(["--debug", "export", "--ckpt", ckpt, "--format", "onnx", "--output", str(tmp_path / "m.onnx")])
    assert not list(tmp_path.glob("m*"))


@pytest.mark.filterwarnings("ignore:Exporting to ONNX opset version 99")
def test_an_opset_this_torch_cannot_export_is_named(tmp_path):
    pytest.importorskip("onnx")
    model = torch.nn.Conv2d(3, 3, 3, padding=1)
    with pytest.raises(ValueError, match=r"Expected `--opset` to be an integer in \[11, \d+\], got 99: pass an "
                                         r"ONNX opset torch .* exports"):
        export_model(model, tmp_path / "m.onnx", "onnx", opset=99)
