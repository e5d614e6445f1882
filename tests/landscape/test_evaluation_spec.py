"""``EvaluationSpec``: one validated description of an evaluation, taken alike by surfaces and Hessians."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_papers.landscape import (
    EvaluationSpec,
    SurfaceStore,
    hessian_eigenvalues,
    hessian_top_eigenvalue,
    interpolate,
    random_directions,
    surface,
)


def _data(n=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
    net(torch.randn(16, 4))  # running statistics that differ from any one batch's
    return net.eval()


def test_a_spec_and_the_keyword_style_give_the_same_surface_and_hessian():
    net, data = _bn_net(), _data()
    dirs = random_directions(net, n=2, seed=0)
    grid = (np.linspace(-1, 1, 3), np.linspace(-0.5, 0.5, 2))
    spec = EvaluationSpec(data, metrics=("loss",), batch_size=8)
    assert np.array_equal(surface(net, dirs, grid, spec)["loss"],
                          surface(net, dirs, grid, data, metrics=("loss",), batch_size=8)["loss"])
    assert hessian_eigenvalues(net, spec, tol=1e-6).eigenvalues == \
        hessian_eigenvalues(net, data, batch_size=8, tol=1e-6).eigenvalues
    start = {k: v + 0.1 if v.is_floating_point() else v for k, v in net.state_dict().items()}
    line = interpolate(net, start, [1.0], spec)  # alpha 1: the model as it is
    with torch.no_grad():
        assert line["loss"][0] == pytest.approx(float(F.cross_entropy(net(data[0]), data[1])), rel=1e-5)


def test_batch_statistics_are_used_alike_by_a_surface_and_kept_out_of_the_model():
    net, (x, y) = _bn_net(), _data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    spec = EvaluationSpec((x, y), metrics=("loss",), batch_size=24, batchnorm="batch")
    res = surface(net, random_directions(net, 1, seed=0), np.zeros(1), spec)
    net.train()
    with torch.no_grad():  # the reference: training-mode BatchNorm on the one batch
        expected = float(F.cross_entropy(nn.Sequential(*net)(x), y))
    net.load_state_dict(before)
    assert res["loss"][0] == pytest.approx(expected, rel=1e-6)
    net.eval()
    with torch.no_grad():
        assert float(F.cross_entropy(net(x), y)) != pytest.approx(expected, rel=1e-3)  # running statistics differ


def test_the_top_eigenvalue_is_the_power_iteration_of_hessian_eigenvalues():
    torch.manual_seed(0)
    net, data = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)), _data(40)
    top = hessian_top_eigenvalue(net, data, max_iter=300, tol=1e-8)
    power = hessian_eigenvalues(net, data, algorithm="power", which="magnitude", max_iter=300, tol=1e-5)
    assert top.converged and top.eigenvalue == pytest.approx(power.eigenvalues[0], rel=1e-4)
    assert top.iterations == len(top.history) > 1 and top.history[-1] == top.eigenvalue


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batchnorm": "batch", "fold_bn": True}, r"Expected batchnorm='running' with `fold_bn`, got 'batch'"),
        ({"gather": 3}, r"Expected `gather` to be a callable or None, got 3"),
        ({"all_reduce": "sum"}, r"Expected `all_reduce` to be a callable or None, got 'sum'"),
        ({"points_per_call": True}, r"Expected `points_per_call` to be a positive integer, got True"),
        ({"evaluate": lambda b: {}, "loss_fn": F.cross_entropy}, r"Expected either `evaluate` or `loss_fn`, got both"),
    ],
)
def test_spec_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EvaluationSpec(_data(), **kwargs)


def test_a_spec_is_frozen_and_replaced_not_changed():
    spec = EvaluationSpec(_data())
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.batch_size = 3  # type: ignore[misc]
    assert EvaluationSpec.of(spec) is spec and EvaluationSpec.of(spec, batch_size=3).batch_size == 3


def test_store_errors_and_the_keyword_style():
    with pytest.raises(ValueError, match="Expected `save_every` to be a positive integer, got 0"):
        SurfaceStore("x", save_every=0)
    with pytest.raises(ValueError, match="Expected a `path` to resume from, got `resume=True` with `path=None`"):
        SurfaceStore(resume=True)
    with pytest.raises(ValueError, match="Expected a model with parameters that require grad, got none"):
        hessian_top_eigenvalue(nn.Linear(2, 2).requires_grad_(False), _data())


def test_store_saves_where_a_path_would(tmp_path):
    net, data = _bn_net(), _data()
    d = random_directions(net, 1, seed=0)
    a = surface(net, d, np.linspace(-1, 1, 3), data, store=SurfaceStore(tmp_path / "a", save_every=1))
    b = surface(net, d, np.linspace(-1, 1, 3), data, path=tmp_path / "b", save_every=1)
    assert (tmp_path / "a.npz").exists() and (tmp_path / "b.npz").exists()
    assert np.array_equal(a["loss"], b["loss"])
