"""``surface(evaluate=...)`` on batches of any structure, ``interpolate``, and the Hessian on the same terms."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from landscape_helpers import assert_bit_identical, state_snapshot
from torch import nn

from lightning_papers.landscape import (
    hessian_top_eigenvalue,
    interpolate,
    random_directions,
    samples_in,
    surface,
    to_device,
)


def _dict_batches(x, y, size=16):
    return [{"image": xb, "label": yb} for xb, yb in zip(x.split(size), y.split(size))]


def test_evaluate_on_dict_batches_equals_the_tuple_path(bn_net, digits64):
    x, y = digits64
    grid = (np.linspace(-0.5, 0.5, 3), np.linspace(-0.5, 0.5, 2))
    dirs = random_directions(bn_net, 2, seed=3)
    expected = surface(bn_net, dirs, grid, (x[:40], y[:40]), batch_size=16)  # batch sizes 16, 16, 8

    def evaluate(batch):
        out = bn_net(batch["image"])
        correct = (out.argmax(-1) == batch["label"]).float().mean()
        return {"loss": F.cross_entropy(out, batch["label"]), "accuracy": correct}

    snap = state_snapshot(bn_net)
    ours = surface(bn_net, dirs, grid, _dict_batches(x[:40], y[:40]), evaluate=evaluate)
    assert_bit_identical(bn_net, snap)
    np.testing.assert_allclose(ours["loss"], expected["loss"], rtol=1e-6)  # weighted by samples, not batches
    np.testing.assert_allclose(ours["accuracy"], expected["accuracy"], rtol=1e-6)
    assert ours.metadata["metrics"] == ["loss", "accuracy"] and ours.metadata["data"]["samples"] == 40


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metrics": ("loss",)}, "Expected either `evaluate` or `metrics`/`loss_fn`, got both"),
        ({"fold_bn": True}, r"Expected `evaluate` without \['fold_bn'\]"),
        ({"channels_last": True, "compile": True}, r"without \['channels_last', 'compile'\]"),
        ({"backend": "vmap"}, r"without \[\"backend='vmap'\"\]"),
    ],
)
def test_evaluate_refuses_what_evaluates_a_copy(bn_net, digits64, kwargs, match):
    x, y = digits64
    with pytest.raises(ValueError, match=match):
        surface(bn_net, random_directions(bn_net, 1), np.zeros(1), _dict_batches(x, y),
                evaluate=lambda b: {"loss": torch.zeros(())}, **kwargs)


def test_samples_and_device_of_any_batch():
    batch = {"a": [torch.zeros(()), (torch.zeros(7, 2), "name")]}
    assert samples_in(batch) == 7
    moved = to_device(batch, "cpu")
    assert moved["a"][1][1] == "name" and moved["a"][1][0].shape == (7, 2)
    with pytest.raises(ValueError, match="Expected a batch holding a tensor with a batch dimension"):
        samples_in(("text",))


def test_interpolate_endpoints_are_the_start_and_the_current_model(bn_net, digits64):
    x, y = digits64
    start = {k: v.clone() for k, v in bn_net.state_dict().items()}
    torch.manual_seed(1)
    with torch.no_grad():  # "train": move the weights and the BatchNorm statistics
        for v in bn_net.state_dict().values():
            if v.is_floating_point():
                v.add_(0.1 * torch.randn_like(v)).abs_()
    snap = state_snapshot(bn_net)

    def loss_of(state):  # the reference: a copy of the model loaded with the state, evaluated
        other = copy.deepcopy(bn_net)
        other.load_state_dict(state)
        other.eval()
        with torch.no_grad():
            return float(F.cross_entropy(other(x), y))

    result = interpolate(bn_net, start, [0.0, 0.5, 1.0], (x, y), metrics=("loss",), batch_size=64)
    assert_bit_identical(bn_net, snap)
    assert result["loss"][0] == pytest.approx(loss_of(start), rel=1e-5)
    assert result["loss"][2] == pytest.approx(loss_of(bn_net.state_dict()), rel=1e-5)
    midway = {k: (v + bn_net.state_dict()[k]) / 2 if v.is_floating_point() else v for k, v in start.items()}
    assert result["loss"][1] == pytest.approx(loss_of(midway), rel=1e-5)
    assert result.metadata["interpolation"] == {"alpha=0": "start", "alpha=1": "current weights", "kind": "states"}
    with pytest.raises(ValueError, match="Expected `start` to have an entry"):
        interpolate(bn_net, {}, [0.0], (x, y))


def test_hessian_with_evaluate_equals_loss_fn_and_leaves_grads_as_found(digits64):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8 * 8 * 3, 5), nn.Tanh(), nn.Linear(5, 10))
    x, y = digits64
    model(x).sum().backward()  # the user's own gradients, which the estimate must not clear
    grads = [p.grad.clone() for p in model.parameters()]
    classic = hessian_top_eigenvalue(model, (x, y), max_iter=20, batch_size=64)
    ours = hessian_top_eigenvalue(model, _dict_batches(x, y, 64), max_iter=20,
                                  evaluate=lambda b: {"loss": F.cross_entropy(model(b["image"]), b["label"])})
    assert ours.eigenvalue == pytest.approx(classic.eigenvalue, rel=1e-5)
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
