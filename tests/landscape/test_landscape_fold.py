"""BatchNorm folding, channels_last and torch.compile for surfaces: same values as the slow reference loop."""

from contextlib import nullcontext

import numpy as np
import pytest
import torch
from landscape_helpers import assert_bit_identical, reference_surface, small_convnet, state_snapshot, trained
from torch import nn

from lightning_papers.landscape import random_directions, surface
from lightning_papers.landscape.fold import fold_batchnorm
from lightning_papers.models import get_model

AXES = (np.linspace(-0.6, 1.0, 4), np.linspace(-0.3, 0.5, 3))


def _batches(digits64):
    return [(x, y) for x, y in zip(digits64[0].split(24), digits64[1].split(24))]


class _SharedConvOutput(nn.Module):
    """conv -> bn, but the conv output is also added after the BatchNorm: folding would change the sum."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))

    def forward(self, x):
        y = self.conv(x)
        return self.head(self.bn(y) + y)


class _DataDependent(nn.Module):
    """Control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.body = small_convnet("bn")

    def forward(self, x):
        return self.body(x) if float(x.sum()) > -1e9 else self.body(-x)


def _with_stats(model, x):
    with torch.no_grad():  # non-trivial running statistics
        model.train()(x)
    return model.eval()


def test_folded_resnet_computes_the_same_function_and_leaves_the_model_alone():
    torch.manual_seed(0)
    net = get_model("resnet20", num_classes=10)
    x = torch.randn(6, 3, 16, 16)
    _with_stats(net, 3 * x + 1)
    snap = state_snapshot(net)
    folded = fold_batchnorm(net)
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    bns = [n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(folded.pairs) == len(bns) == 19 and set(folded.pairs) <= set(convs) and folded.reason == ""
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.model.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded.model(x), net(x), rtol=1e-5, atol=1e-5)
    assert_bit_identical(net, snap)
    assert all(isinstance(m, nn.BatchNorm2d) for n, m in net.named_modules() if n in bns)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_a_torchvision_model_folds_every_batchnorm(name):
    import torchvision

    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None)  # random weights: no download
    x = torch.randn(2, 3, 32, 32)
    _with_stats(net, 2 * x + 0.5)
    folded = fold_batchnorm(net)
    assert len(folded.pairs) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    with torch.no_grad():
        torch.testing.assert_close(folded.model(x), net(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ignore", [("bias", "norm"), ("norm",), ("bias",)])
def test_folded_surface_equals_the_reference(bn_net, digits64, ignore):
    # ("norm",): conv biases move, so the folded biases get scaled directions;
    # ("bias",): BatchNorm weights move, so those pairs must stay unfolded
    d = random_directions(bn_net, n=2, seed=3, ignore=ignore)
    batches = _batches(digits64)
    ref_loss, ref_acc = reference_surface(bn_net, d, AXES, batches)
    snap = state_snapshot(bn_net)
    if "norm" in ignore:
        res = surface(bn_net, d, AXES, batches, fold_bn=True)
    else:
        with pytest.warns(RuntimeWarning, match=r"fold_bn=True: none of the 2 conv-BatchNorm pairs can be folded "
                                                r"exactly \(a direction moves the BatchNorm"):
            res = surface(bn_net, d, AXES, batches, fold_bn=True)
    assert_bit_identical(bn_net, snap)
    np.testing.assert_allclose(res["loss"], ref_loss, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res["accuracy"], ref_acc, atol=1e-6)
    assert res.metadata["fold_bn"] == (0 if "norm" not in ignore else 2)


def test_states_directions_fold_when_the_running_statistics_stay(bn_net, digits64):
    d = random_directions(bn_net, n=2, seed=7, kind="states")  # ignore=("bias", "norm"): statistics stay
    batches = _batches(digits64)
    ref_loss, _ = reference_surface(bn_net, d, AXES, batches, kind="states")
    res = surface(bn_net, d, AXES, batches, fold_bn=True, metrics=("loss",))
    np.testing.assert_allclose(res["loss"], ref_loss, rtol=1e-5, atol=1e-5)
    assert res.metadata["fold_bn"] == 2


def test_channels_last_and_vmap_with_folding_equal_the_reference(bn_net, digits64):
    d = random_directions(bn_net, n=2, seed=5)
    batches = _batches(digits64)
    ref_loss, _ = reference_surface(bn_net, d, AXES, batches)
    snap = state_snapshot(bn_net)
    for kwargs in (dict(channels_last=True), dict(fold_bn=True, channels_last=True),
                   dict(fold_bn=True, backend="vmap", points_per_call=5)):
        res = surface(bn_net, d, AXES, batches, **kwargs)
        np.testing.assert_allclose(res["loss"], ref_loss, rtol=1e-5, atol=1e-5, err_msg=str(kwargs))
        assert res.metadata["channels_last"] == kwargs.get("channels_last", False)
    assert_bit_identical(bn_net, snap)
    assert bn_net[0].weight.is_contiguous()  # the user's model keeps its memory format


def test_compiled_surface_sees_every_points_weights(bn_net, digits64):
    # aot_eager: a real dynamo + AOTAutograd graph (parameters lifted to graph inputs) without a C compiler;
    # a graph that had baked in the first point's weights would give one value everywhere
    d = random_directions(bn_net, n=2, seed=6)
    batches = _batches(digits64)
    ref_loss, _ = reference_surface(bn_net, d, AXES, batches)
    torch._dynamo.reset()
    res = surface(bn_net, d, AXES, batches, fold_bn=True, compile={"backend": "aot_eager"})
    np.testing.assert_allclose(res["loss"], ref_loss, rtol=1e-5, atol=1e-5)
    assert np.ptp(res["loss"]) > 0.1


def test_compile_failure_falls_back_to_eager_with_a_warning(bn_net, digits64, monkeypatch):
    def broken_compile(model, **kwargs):
        def compiled(*args):
            raise RuntimeError("InductorError: no C compiler")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    d = random_directions(bn_net, n=2, seed=6)
    batches = _batches(digits64)
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed \(RuntimeError: InductorError: no C compiler\)"):
        res = surface(bn_net, d, AXES, batches, compile=True)
    np.testing.assert_allclose(res["loss"], reference_surface(bn_net, d, AXES, batches)[0], rtol=1e-5, atol=1e-5)


def test_unfoldable_pairs_stay_unfolded(digits64):
    x, y = digits64
    torch.manual_seed(0)
    shared = trained(_SharedConvOutput(), x, y, steps=5)
    no_stats = small_convnet("bn")
    no_stats[1] = nn.BatchNorm2d(4, track_running_stats=False)
    no_stats = trained(no_stats, x, y, steps=5)
    for net, why in ((shared, "the conv output is used twice"), (no_stats, "no running statistics")):
        assert list(fold_batchnorm(net).pairs) == ([] if net is shared else ["3"]), why
        d = random_directions(net, n=2, seed=0)
        ref_loss, _ = reference_surface(net, d, AXES, _batches(digits64))
        with pytest.warns(RuntimeWarning) if net is shared else nullcontext():
            res = surface(net, d, AXES, _batches(digits64), fold_bn=True, metrics=("loss",))
        np.testing.assert_allclose(res["loss"], ref_loss, rtol=1e-5, atol=1e-5, err_msg=why)


def test_untraceable_model_is_evaluated_unfolded_with_a_warning(digits64):
    x, y = digits64
    torch.manual_seed(0)
    net = trained(_DataDependent(), x, y, steps=5)
    folded = fold_batchnorm(net)
    assert folded.pairs == {} and folded.reason.startswith("torch.fx could not trace the model (")
    d = random_directions(net, n=1, seed=0)
    axis = np.linspace(-1, 1, 3)
    with pytest.warns(RuntimeWarning, match=r"fold_bn=True: torch.fx could not trace the model \(.*\); the "
                                            r"BatchNorms are evaluated unfolded"):
        res = surface(net, d, axis, _batches(digits64), fold_bn=True, metrics=("loss",))
    ref_loss, _ = reference_surface(net, d, [axis], _batches(digits64))
    np.testing.assert_allclose(res["loss"], ref_loss, rtol=1e-5, atol=1e-5)


def test_option_errors(bn_net, digits64):
    d = random_directions(bn_net, n=2, seed=0)
    with pytest.raises(ValueError, match=r"Expected backend='inplace' with `compile`, got backend 'vmap'"):
        surface(bn_net, d, AXES, digits64, backend="vmap", compile=True)
    with pytest.raises(ValueError, match=r"Expected `compile` to be a bool or a dict of torch.compile arguments, "
                                         r"got 'max-autotune'"):
        surface(bn_net, d, AXES, digits64, compile="max-autotune")
    with pytest.raises(ValueError, match=r"Expected at most one of `fold_bn` and `recompute_bn`, got both True"):
        surface(bn_net, d, AXES, digits64, fold_bn=True, recompute_bn=True)
