import numpy as np
import pytest
import torch
import torch.nn.functional as F
from landscape_helpers import assert_bit_identical, state_snapshot
from torch import nn
from torch.func import functional_call

from lightning_papers.landscape import SurfaceResult, centre_curvature, hessian_top_eigenvalue, loss_rise


def test_top_eigenvalue_matches_explicit_hessian():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().ravel() for p in model.parameters()])

    def loss_of(flat):
        chunks = flat.split([s.numel() for s in shapes])
        params = {n: c.view(s) for n, c, s in zip(names, chunks, shapes)}
        return F.cross_entropy(functional_call(model, params, (x,)), y)

    hess = torch.autograd.functional.hessian(loss_of, flat0)
    eig = torch.linalg.eigvalsh(hess)
    expected = float(eig[eig.abs().argmax()])
    snap = state_snapshot(model)
    res = hessian_top_eigenvalue(model, (x, y), batch_size=16, max_iter=500, tol=1e-9)
    assert res.converged and res.eigenvalue == pytest.approx(expected, rel=1e-3)
    assert_bit_identical(model, snap)
    assert all(p.grad is None for p in model.parameters())
    assert res.to_dict()["iterations"] == len(res.history) and res.plot().lines


def test_grid_summaries_on_a_known_bowl():
    xs, ys = np.linspace(-1, 1, 5), np.array([-0.4, 0.0, 0.2, 0.6])  # non-uniform y spacing
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    res = SurfaceResult([xs, ys], {"loss": 1 + gx**2 + 3 * gy**2}, np.ones((5, 4), bool))
    np.testing.assert_allclose(centre_curvature(res), [2.0, 6.0])
    assert loss_rise(res, radius=0.5) == pytest.approx(max(0.25, 3 * 0.04 + 0, 3 * 0.16))
    assert loss_rise(res, radius=0.0) == 0.0
    with pytest.raises(ValueError, match="Expected `radius` >= 0"):
        loss_rise(res, -1.0)
    with pytest.raises(ValueError, match="Expected `metric`"):
        loss_rise(res, 1.0, metric="acc")
    edge = SurfaceResult([np.array([0.0, 1.0])], {"loss": np.zeros(2)}, np.ones(2, bool))
    with pytest.raises(ValueError, match="Expected the centre inside axis 0"):
        centre_curvature(edge)
    nan = SurfaceResult([np.array([-1.0, 0.0, 1.0])], {"loss": np.array([1.0, np.nan, 1.0])}, np.ones(3, bool))
    with pytest.raises(ValueError, match="Expected a finite `loss` at the centre"):
        loss_rise(nan, 1.0)


def test_hessian_errors():
    model = nn.Linear(2, 2)
    data = (torch.randn(4, 2), torch.randint(0, 2, (4,)))
    with pytest.raises(ValueError, match="Expected `max_iter`"):
        hessian_top_eigenvalue(model, data, max_iter=0)
    with pytest.raises(ValueError, match="Expected `tol` to be a positive finite number"):
        hessian_top_eigenvalue(model, data, tol=0)
    with pytest.raises(ValueError, match="Expected a model with parameters"):
        hessian_top_eigenvalue(nn.ReLU(), data)
