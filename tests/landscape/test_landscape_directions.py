import pytest
import torch
from landscape_helpers import small_convnet
from torch import nn

from lightning_papers.landscape import (
    Direction,
    ignored_keys,
    orthogonalize,
    random_direction,
    random_directions,
    target_direction,
)


def _per_filter_norms(t: torch.Tensor, dim: int) -> torch.Tensor:
    return t.transpose(0, dim).reshape(t.shape[dim], -1).norm(dim=1)


@pytest.mark.parametrize(
    ("layer", "dim"),
    [
        (nn.Conv2d(3, 5, 3), 0),
        (nn.Linear(7, 4), 0),
        (nn.ConvTranspose2d(3, 6, 3), 1),  # weight (in, out, k, k): filters along dim 1
        (nn.Conv1d(2, 3, 5), 0),
    ],
)
def test_filter_normalised_norms_match_weights(layer, dim):
    model = nn.Sequential(layer)
    d = random_direction(model, seed=3, normalization="filter", ignore=())
    w, dw = model[0].weight.detach(), d.tensors["0.weight"]
    torch.testing.assert_close(_per_filter_norms(dw, dim), _per_filter_norms(w, dim), rtol=1e-5, atol=1e-6)
    # a 1-D entry that is not ignored counts as one filter
    torch.testing.assert_close(d.tensors["0.bias"].norm(), model[0].bias.detach().norm(), rtol=1e-5, atol=1e-6)


def test_convtranspose_filters_are_not_dim0():
    model = nn.Sequential(nn.ConvTranspose2d(3, 6, 3))
    d = random_direction(model, seed=0, ignore=())
    w, dw = model[0].weight.detach(), d.tensors["0.weight"]
    assert not torch.allclose(_per_filter_norms(dw, 0), _per_filter_norms(w, 0), rtol=1e-3)


def test_layer_and_none_normalisation():
    model = small_convnet()
    d = random_direction(model, seed=0, normalization="layer", ignore=())
    for k, p in model.named_parameters():
        torch.testing.assert_close(d.tensors[k].norm(), p.detach().norm(), rtol=1e-5, atol=1e-6)
    raw = random_direction(model, seed=0, normalization="none", ignore=())
    gen = torch.Generator().manual_seed(0)
    first = next(iter(model.parameters()))
    torch.testing.assert_close(raw.tensors["0.weight"], torch.randn(first.shape, generator=gen))


def test_ignored_parameters_get_zero_directions():
    model = small_convnet("bn")
    d = random_direction(model, seed=1)  # default ignore=("bias", "norm")
    expected_zero = {"0.bias", "1.weight", "1.bias", "3.bias", "4.weight", "4.bias", "8.bias"}
    assert ignored_keys(model) == expected_zero
    for k, t in d.tensors.items():
        assert bool(t.any()) == (k not in expected_zero), k
    # LayerNorm parameters count as normalisation too
    ln = small_convnet("ln")
    assert {"1.weight", "1.bias", "4.weight", "4.bias"} <= ignored_keys(ln, ignore=("norm",))
    assert "0.bias" not in ignored_keys(ln, ignore=("norm",))


def test_states_kind_covers_running_stats():
    model = small_convnet("bn")
    with torch.no_grad():
        model.train()(torch.randn(8, 3, 8, 8))
    d = random_direction(model, seed=0, kind="states", ignore=("bias",))
    assert "1.running_mean" in d.tensors and "1.num_batches_tracked" not in d.tensors
    torch.testing.assert_close(d.tensors["1.running_var"].norm(), model[1].running_var.norm(), rtol=1e-5, atol=1e-6)
    d0 = random_direction(model, seed=0, kind="states")
    assert not d0.tensors["1.running_mean"].any()  # normalisation state ignored: stays the centre's
    assert "1.running_mean" not in random_direction(model, seed=0).tensors


def test_seeded_and_orthogonal():
    model = small_convnet()
    a, b = random_direction(model, seed=5), random_direction(model, seed=5)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert not torch.equal(a.tensors["0.weight"], random_direction(model, seed=6).tensors["0.weight"])
    d1, d2 = random_directions(model, n=2, seed=0, orthogonal=True)
    assert abs(d1.dot(d2)) < 1e-5 * d1.norm() * d2.norm()
    assert d2.info["orthogonalized"] and d1.to_dict()["seed"] == 0 and d2.to_dict()["seed"] == 1


def test_target_direction_reaches_target():
    a, b = small_convnet(), small_convnet()
    d = target_direction(a, b)
    for k, p in a.named_parameters():
        torch.testing.assert_close(p + d.tensors[k], dict(b.named_parameters())[k])
    assert d.info["type"] == "target"


def test_errors():
    model = small_convnet()
    with pytest.raises(ValueError, match="Expected `normalization`"):
        random_direction(model, normalization="unit")
    with pytest.raises(ValueError, match="Expected `kind`"):
        random_direction(model, kind="grads")
    with pytest.raises(ValueError, match="Expected `ignore` entries"):
        random_direction(model, ignore=("biasbn",))
    with pytest.raises(ValueError, match="Expected `seed`"):
        random_direction(model, seed=1.5)
    with pytest.raises(ValueError, match="Expected `n`"):
        random_directions(model, n=0)
    with pytest.raises(ValueError, match="Expected `target` to have an entry"):
        target_direction(model, {})
    with pytest.raises(ValueError, match="to have shape"):
        target_direction(nn.Linear(2, 3), nn.Linear(3, 3))
    zero = Direction({k: torch.zeros_like(v) for k, v in model.named_parameters()})
    with pytest.raises(ValueError, match="Expected a non-zero direction"):
        orthogonalize(random_direction(model), zero)
    with pytest.raises(ValueError, match="Expected directions of the same kind"):
        orthogonalize(random_direction(model), random_direction(model, kind="states"))
    with pytest.raises(ValueError, match="Expected `tensors`"):
        Direction({})
