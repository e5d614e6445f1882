"""`ImageRunner`: eager inference equal to the network's own output, autocast and channels_last close to it,
torch.compile falling back to eager (one warning) wherever compiling fails, and clear errors."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
from torch import nn

from lightning_papers.models import TransformerNet
from lightning_papers.modules import ImageRunner
from lightning_papers.modules.image_runner import fast_options, resolve_device


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1), nn.Sigmoid())


def test_eager_fp32_is_the_network_itself():
    net = TransformerNet().eval()
    x = torch.rand(2, 3, 13, 18)
    with torch.no_grad():
        expected = net(x)
    runner = ImageRunner(net, device="cpu")
    out = runner(x)
    assert out.dtype == torch.float32 and torch.equal(out, expected)
    assert not net.training and runner.describe() == "cpu, fp32"


@pytest.mark.parametrize(("precision", "channels_last", "atol"), [("bf16", False, 2e-2), ("32", True, 1e-5)])
def test_autocast_and_channels_last_stay_close(precision, channels_last, atol):
    net = _net()
    x = torch.rand(1, 3, 16, 20)
    with torch.no_grad():
        expected = net(x)
    runner = ImageRunner(net, device="cpu", precision=precision, channels_last=channels_last)
    out = runner(x)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=atol, rtol=0)
    assert net[0].weight.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_compile_failing_when_asked_falls_back_with_one_warning(monkeypatch):
    def raising_compile(*args, **kwargs):
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", raising_compile)
    net = _net()
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed \(RuntimeError: Dynamo is not supported on this "
                                            r"Python\); running the network eagerly instead"):
        runner = ImageRunner(net, device="cpu", compile=True)
    assert not runner.compiled and runner.describe() == "cpu, fp32, eager (torch.compile failed)"
    x = torch.rand(1, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        assert torch.equal(runner(x), net(x).detach())


def test_compile_failing_at_the_first_call_falls_back_once(monkeypatch):
    calls = []

    def lazy_broken_compile(model, **kwargs):
        calls.append(kwargs)

        def compiled(x):
            raise RuntimeError("InductorError: C++ compile error")
        return compiled

    monkeypatch.setattr(torch, "compile", lazy_broken_compile)
    net = _net()
    runner = ImageRunner(net, device="cpu", compile=True)
    assert runner.compiled and calls == [{"mode": None}]
    x = torch.rand(1, 3, 8, 8)
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed \(RuntimeError: InductorError: C\+\+ compile"):
        first = runner(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = runner(torch.rand(1, 3, 5, 7))
    assert torch.equal(first, net(x).detach()) and second.shape == (1, 3, 5, 7)
    assert not runner.compiled and runner.compile_error == "RuntimeError: InductorError: C++ compile error"


def test_an_input_error_is_not_taken_for_a_compile_failure(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)  # a "compiled" net that works
    runner = ImageRunner(TransformerNet(), device="cpu", compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"Expected images of shape \(N, C, H, W\), got shape \(3, 8, 8\)"):
            runner(torch.rand(3, 8, 8))
    assert runner.compiled


def test_errors_and_the_cpu_fast_path():
    with pytest.raises(ValueError, match=r"Expected `precision` to be one of \('32', 'bf16', '16'\), got 'fp8'"):
        ImageRunner(_net(), device="cpu", precision="fp8")
    with pytest.raises(ValueError, match=r"Expected --device to be auto, cpu, cuda or cuda:N, got 'tpu!'"):
        resolve_device("tpu!")
    assert fast_options("cpu") == {"precision": "32", "channels_last": False, "compile": False, "cuda_graphs": False}
    if torch.cuda.is_available():
        pytest.skip("the CPU-only errors need a machine without CUDA")
    with pytest.raises(ValueError, match=r"Expected a CUDA device with `cuda_graphs=True`, got device 'cpu'"):
        ImageRunner(_net(), device="cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match=r"Expected --device to be a device this machine has, got 'cuda' \(CUDA is"):
        resolve_device("cuda")
    runner = ImageRunner.fast(_net(), device="auto")
    assert runner.device.type == "cpu" and not runner.compiled and runner.precision == "32"


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile on the CPU needs a C++ "
                    "compiler; without one the runner falls back to eager (tested above with a failing compile)")
def test_a_real_compile_on_the_cpu_matches_eager():
    # 10-20 s, nearly all of it importing and starting inductor: one tiny network, one shape
    net = _net()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        expected = net(x)
    runner = ImageRunner(net, device="cpu", compile=True)
    out = runner(x)
    assert runner.compiled and runner.describe() == "cpu, fp32, torch.compile"  # no fallback
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
