"""Helpers of the landscape tests: tiny models, a model snapshot check and the slow reference loop."""

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def small_convnet(norm: str = "bn") -> nn.Module:
    def norm_layer(c: int, hw: int) -> nn.Module:
        return nn.BatchNorm2d(c) if norm == "bn" else nn.LayerNorm([c, hw, hw])

    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        norm_layer(4, 8),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding=1),
        norm_layer(6, 4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6, 10),
    )


def trained(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 15) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    return model


def state_snapshot(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_bit_identical(model: nn.Module, snapshot: dict) -> None:
    state = model.state_dict()
    assert set(state) == set(snapshot)
    for k, v in state.items():
        assert v.dtype == snapshot[k].dtype
        assert torch.equal(v, snapshot[k]), k


def reference_surface(model, directions, axes, batches, kind="weights", recompute_bn=False):
    """The slow, obvious loop: deepcopy, load centre + a d1 + b d2, evaluate every batch (fp32)."""
    centre = {k: v.detach().clone() for k, v in model.state_dict().items()}
    shape = tuple(len(a) for a in axes)
    loss, acc = np.full(shape, np.nan), np.full(shape, np.nan)
    for idx in np.ndindex(*shape):
        net = copy.deepcopy(model)
        state = dict(centre)
        for j, d in enumerate(directions):
            for k, t in d.tensors.items():
                state[k] = state[k] + float(axes[j][idx[j]]) * t
        net.load_state_dict(state)
        if recompute_bn:
            for m in net.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.reset_running_stats()
                    m.momentum = None
            net.train()
            with torch.no_grad():
                for x, _ in batches:
                    net(x)
        net.eval()
        total, n, correct = 0.0, 0, 0.0
        with torch.no_grad():
            for x, y in batches:
                out = net(x)
                total += float(F.cross_entropy(out, y)) * len(y)
                correct += float((out.argmax(-1) == y).float().sum())
                n += len(y)
        loss[idx], acc[idx] = total / n, correct / n
    return loss, acc
