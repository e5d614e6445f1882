"""`ImageRunner` on CUDA: the `--fast` path (fp16 autocast + torch.compile + CUDA graphs) against fp32 eager.

Runs under ``benchmarks/gpu_check.sh`` (``pytest tests/gpu -m gpu``); skipped without CUDA (the CPU paths and the
compile fallback are tested in ``tests/modules/test_image_runner.py``). A small network keeps compiling short.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_papers.modules import ImageRunner

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, 16, 3), nn.InstanceNorm2d(16, affine=True), nn.ReLU(),
                         nn.ReflectionPad2d(1), nn.Conv2d(16, 3, 3), nn.Sigmoid())


def test_fast_path_matches_fp32_eager_and_keeps_each_output():
    reference = ImageRunner(_net(), device="cuda")
    runner = ImageRunner.fast(_net(), device="cuda")
    assert runner.precision == "16" and runner.cuda_graphs
    inputs = [torch.rand(1, 3, 64, 96) for _ in range(3)] + [torch.rand(2, 3, 40, 36)]  # a new shape last
    outputs = [runner(x) for x in inputs]  # held together: a replay must not overwrite an earlier output
    assert runner.compiled, runner.compile_error  # no fallback to eager on a GPU machine with Triton
    for x, out in zip(inputs, outputs):
        assert out.dtype == torch.float32 and out.device.type == "cuda"
        torch.testing.assert_close(out, reference(x), atol=5e-3, rtol=0)
    assert not torch.equal(outputs[0], outputs[1])


def test_channels_last_and_bf16_on_cuda():
    x = torch.rand(1, 3, 48, 64)
    expected = ImageRunner(_net(), device="cuda")(x)
    out = ImageRunner(_net(), device="cuda", precision="bf16", channels_last=True)(x)
    torch.testing.assert_close(out, expected, atol=3e-2, rtol=0)
