import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from landscape_helpers import assert_bit_identical, reference_surface, state_snapshot

from lightning_papers.landscape import (
    merge_surfaces,
    prepare_batches,
    random_direction,
    random_directions,
    shard_indices,
    surface,
    target_direction,
)

AXES = (np.linspace(-0.6, 1.0, 5), np.linspace(-0.3, 0.5, 4))  # non-square, asymmetric, contains no exact 0


def _batches(digits64, bs=24):
    return prepare_batches(digits64, "cpu", batch_size=bs)  # 24 + 24 + 16: uneven batches


def test_centre_point_equals_the_models_own_evaluation(bn_net, digits64):
    x, y = digits64
    d = random_directions(bn_net, n=2, seed=0)
    axes = (np.array([-0.5, 0.0, 0.5]), np.array([0.0, 1.0]))
    r = surface(bn_net, d, axes, (x, y), batch_size=64)
    with torch.no_grad():
        out = bn_net(x)
    assert r["loss"][1, 0] == float(F.cross_entropy(out, y))
    assert r["accuracy"][1, 0] == float((out.argmax(-1) == y).float().mean())
    assert r.centre_value() == r["loss"][1, 0] and r.complete


@pytest.mark.parametrize("kind", ["weights", "states"])
def test_inplace_vmap_and_sharded_equal_reference(bn_net, digits64, kind):
    ignore = ("bias",) if kind == "states" else ("bias", "norm")
    d = random_directions(bn_net, n=2, seed=1, kind=kind, ignore=ignore)
    # perturbed running variances go negative (NaN losses) far out: stay closer in with kind="states"
    axes = AXES if kind == "weights" else tuple(0.2 * a for a in AXES)
    batches = _batches(digits64)
    ref_loss, ref_acc = reference_surface(bn_net, d, axes, batches)
    assert np.isfinite(ref_loss).all()
    snap = state_snapshot(bn_net)
    inplace = surface(bn_net, d, axes, batches)
    vmapped = surface(bn_net, d, axes, batches, backend="vmap", points_per_call=3)
    parts = [surface(bn_net, d, axes, batches, shard=(r, 3)) for r in range(3)]
    assert_bit_identical(bn_net, snap)
    merged = merge_surfaces(parts)
    for res in (inplace, vmapped, merged):
        np.testing.assert_allclose(res["loss"], ref_loss, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(res["accuracy"], ref_acc, atol=1e-6)
    assert parts[1].computed.sum() == len(shard_indices((5, 4), 1, 3)) == 7
    assert parts[1].computed.ravel()[[1, 4, 7]].all() and not parts[1].computed.ravel()[0]
    assert np.array_equal(merged["loss"], inplace["loss"])  # same op order: bit-identical
    assert merged.metadata["shard"] is None


def test_layernorm_model_without_bn(ln_net, digits64):
    d = random_directions(ln_net, n=2, seed=2)
    batches = _batches(digits64)
    ref_loss, _ = reference_surface(ln_net, d, AXES, batches)
    for backend in ("inplace", "vmap"):
        res = surface(ln_net, d, AXES, batches, backend=backend)
        np.testing.assert_allclose(res["loss"], ref_loss, rtol=1e-5, atol=1e-5)


def test_model_comes_back_bit_identical(bn_net, digits64):
    bn_net.train()
    bn_net[0].bias.requires_grad_(False)
    snap = state_snapshot(bn_net)
    params_before = [p for p in bn_net.parameters()]
    d = random_directions(bn_net, n=2, seed=0)
    surface(bn_net, d, AXES, digits64, recompute_bn=True, autocast_dtype=torch.bfloat16)
    surface(bn_net, d, AXES, digits64, backend="vmap")
    with pytest.raises(RuntimeError, match="stop"):
        surface(bn_net, d, AXES, digits64, progress=_Stopper(3))
    assert_bit_identical(bn_net, snap)
    assert all(m.training for m in bn_net.modules())
    assert [p.requires_grad for p in bn_net.parameters()] == [True, False] + [True] * (len(params_before) - 2)
    assert all(a is b for a, b in zip(params_before, bn_net.parameters()))
    assert bn_net[1].momentum == 0.1


class _Stopper:
    def __init__(self, k):
        self.k = k

    def __call__(self, done, total):
        if done >= self.k:
            raise RuntimeError("stop")


def test_recompute_bn_matches_reference(bn_net, digits64):
    d = random_directions(bn_net, n=1, seed=4)
    axis = np.linspace(-1, 1, 3)
    batches = _batches(digits64)
    res = surface(bn_net, d, axis, batches, recompute_bn=True)
    ref, _ = reference_surface(bn_net, d, [axis], batches, recompute_bn=True)
    np.testing.assert_allclose(res["loss"], ref, rtol=1e-5, atol=1e-5)
    assert not np.allclose(res["loss"], surface(bn_net, d, axis, batches)["loss"])


def test_interpolation_curve_lands_on_target(bn_net, digits64):
    other = copy.deepcopy(bn_net)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = target_direction(bn_net, other)
    res = surface(bn_net, d, np.linspace(-0.5, 1.5, 5), digits64, batch_size=64, metrics=("loss",))
    with torch.no_grad():
        expected = float(F.cross_entropy(other(digits64[0]), digits64[1]))
    assert res["loss"][3] == pytest.approx(expected, rel=1e-5)
    assert list(res.values) == ["loss"] and res.ndim == 1


def test_custom_metrics_loss_fn_autocast_and_progress(bn_net, digits64):
    d = random_direction(bn_net, seed=0)
    axis = np.linspace(-1, 1, 3)
    calls = []

    def top2(out, y):
        return (out.topk(2, dim=-1).indices == y[:, None]).any(-1).float().mean()

    res = surface(
        bn_net, d, axis, digits64,
        metrics={"loss": "loss", "top2": top2}, loss_fn=lambda o, t: F.cross_entropy(o, t, label_smoothing=0.1),
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert ((res["top2"] >= 0) & (res["top2"] <= 1)).all()
    plain = surface(bn_net, d, axis, digits64)
    assert (res["loss"] > plain["loss"] - 1e-6).all()  # smoothing only adds to the loss here
    bf16 = surface(bn_net, d, axis, digits64, autocast_dtype=torch.bfloat16, progress=True)
    np.testing.assert_allclose(bf16["loss"], plain["loss"], rtol=0.05)
    assert bf16.metadata["autocast_dtype"] == "torch.bfloat16"


def test_dataloader_input(bn_net, digits64):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*digits64), batch_size=24)
    d = random_direction(bn_net, seed=0)
    axis = np.linspace(-1, 1, 3)
    a = surface(bn_net, d, axis, loader)
    b = surface(bn_net, d, axis, digits64, batch_size=24)
    assert np.array_equal(a["loss"], b["loss"])
    t = surface(bn_net, d, axis, (digits64[0] * 2, digits64[1]), transform=lambda x: x / 2)
    np.testing.assert_allclose(t["loss"], surface(bn_net, d, axis, digits64)["loss"], rtol=1e-6)


def test_errors(bn_net, digits64):
    d1, d2 = random_directions(bn_net, n=2)
    grid = (np.linspace(-1, 1, 3), np.linspace(-1, 1, 2))
    cases = [
        (dict(directions=[d1, d2, d1]), "Expected one or two `Direction`s"),
        (dict(directions=[d1, random_direction(bn_net, kind="states")]), "Expected directions of one kind"),
        (dict(backend="jit"), "Expected `backend`"),
        (dict(points_per_call=0), "Expected `points_per_call`"),
        (dict(save_every=0), "Expected `save_every`"),
        (dict(backend="vmap", recompute_bn=True), "Expected `recompute_bn=True`"),
        (dict(resume=True), "Expected a `path` to resume from"),
        (dict(autocast_dtype="bf16"), "Expected `autocast_dtype`"),
        (dict(shard=(2, 2)), r"Expected `rank` to be an integer in \[0, 1\], got 2: `shard` is \(rank, world_size\)"),
        (dict(grid=np.linspace(-1, 1, 3)), "Expected `grid` to be 2"),
        (dict(grid=(np.array([0.0, np.nan]), np.zeros(2))), "Expected each `grid` axis"),
        (dict(metrics=("loss", 3)), "Expected `metrics` entries"),
        (dict(data=(digits64[0], digits64[1][:5])), "Expected inputs and targets of the same length"),
        (dict(data=[]), "Expected `data` to hold at least one sample"),
        (dict(data=[digits64[0]]), "Expected each batch"),
        (dict(data=3), "Expected `data`"),
        (dict(batch_size=0), "Expected `batch_size`"),
        (dict(progress="yes"), "Expected `progress`"),
    ]
    for override, match in cases:
        kwargs = dict(directions=[d1, d2], grid=grid, data=digits64)
        kwargs.update(override)
        with pytest.raises(ValueError, match=match):
            surface(bn_net, kwargs.pop("directions"), kwargs.pop("grid"), kwargs.pop("data"), **kwargs)
    zero = random_direction(bn_net, ignore=("bias", "norm"))
    for t in zero.tensors.values():
        t.zero_()
    with pytest.raises(ValueError, match="Expected at least one non-zero direction"):
        surface(bn_net, zero, np.zeros(1), digits64)
