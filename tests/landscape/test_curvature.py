"""``landscape.curvature`` against the exact Hessian (``torch.autograd.functional.hessian``, numpy ``eigh``) of
small models, and the stability threshold against ``torch.optim.SGD`` itself on quadratics."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from landscape_helpers import assert_bit_identical, small_convnet, state_snapshot, trained
from torch import nn
from torch.func import functional_call

from lightning_papers.landscape import (
    CurvatureHistory,
    Direction,
    centre_curvature,
    hessian_eigenvalues,
    hessian_spectrum,
    hessian_trace,
    optimizer_stability_thresholds,
    stability_threshold,
    surface,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """The models here are tiny: with two intra-op threads on a busy 2-core machine every kernel waits for the other
    thread (measured: 10x slower Hessian-vector products), so these tests run on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def exact_hessian(model, batches, train_bn=False):
    """The Hessian of the sample-weighted mean cross-entropy over ``batches`` w.r.t. the flat parameters, on a copy
    (eval mode, or BatchNorm on each batch's statistics with ``train_bn``)."""
    net = copy.deepcopy(model).eval()
    if train_bn:
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.train()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).double()
    net.double()
    total = sum(len(y) for _, y in batches)

    def loss_of(flat):
        params = {n: c.view(s) for n, c, s in zip(names, flat.split([s.numel() for s in shapes]), shapes)}
        return sum(F.cross_entropy(functional_call(net, params, (x.double(),)), y) * len(y) / total
                   for x, y in batches)

    return torch.autograd.functional.hessian(loss_of, flat0, vectorize=True).numpy()


def flat(direction, model):
    return torch.cat([direction.tensors[n].reshape(-1) for n, _ in model.named_parameters()]).double().numpy()


@pytest.fixture(scope="module")
def mlp_case():
    """A tanh MLP (43 parameters) on 40 samples in batches of 24 and 16, and its exact Hessian."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    batches = list(zip(x.split(24), y.split(24)))
    hess = exact_hessian(model, batches)
    return model, (x, y), hess, np.linalg.eigh(hess)


@pytest.mark.parametrize(("algorithm", "which"), [("lanczos", "largest"), ("lanczos", "magnitude"),
                                                  ("power", "magnitude")])
def test_top_k_eigenpairs_match_the_exact_hessian(mlp_case, algorithm, which):
    model, data, hess, (values, vectors) = mlp_case
    order = np.argsort(-values) if which == "largest" else np.argsort(-np.abs(values))
    snap, rng = state_snapshot(model), torch.get_rng_state()
    res = hessian_eigenvalues(model, data, k=3, algorithm=algorithm, which=which, tol=1e-7, max_iter=2000,
                              batch_size=24)
    assert_bit_identical(model, snap)
    assert torch.equal(torch.get_rng_state(), rng) and all(p.grad is None for p in model.parameters())
    assert res.converged and res.algorithm == algorithm
    np.testing.assert_allclose(res.eigenvalues, values[order[:3]], rtol=1e-5, atol=1e-6)
    ys = np.stack([flat(d, model) for d in res.eigenvectors])
    np.testing.assert_allclose(ys @ ys.T, np.eye(3), atol=1e-5)  # orthonormal
    for y, lam, r in zip(ys, res.eigenvalues, res.residuals):
        assert np.linalg.norm(hess @ y - lam * y) <= max(3 * r, 1e-5)  # the residual it reports is the true one
    for i, y in enumerate(ys):  # the eigenvalues are distinct here: each vector is the exact one, up to sign
        assert abs(y @ vectors[:, order[i]]) == pytest.approx(1.0, abs=1e-4)
    assert res.eigenvectors[0].info["eigenvalue"] == res.eigenvalues[0] and res.to_dict()["products"] == res.products


def test_lanczos_needs_fewer_products_than_power_iteration(mlp_case):
    model, data, _, _ = mlp_case
    lanczos = hessian_eigenvalues(model, data, k=3, which="magnitude", tol=1e-6, eigenvectors=False, batch_size=24)
    power = hessian_eigenvalues(model, data, k=3, algorithm="power", which="magnitude", tol=1e-6, max_iter=5000,
                                eigenvectors=False, batch_size=24)
    np.testing.assert_allclose(lanczos.eigenvalues, power.eigenvalues, rtol=1e-5)
    assert lanczos.eigenvectors is None and 3 * lanczos.products < power.products, (lanczos.products, power.products)


def test_warm_start_from_the_top_eigenvector_converges_at_once(mlp_case):
    model, data, _, (values, _) = mlp_case
    first = hessian_eigenvalues(model, data, tol=1e-7)
    again = hessian_eigenvalues(model, data, tol=1e-5, start=first.eigenvectors[0])
    assert again.eigenvalues[0] == pytest.approx(values.max(), rel=1e-6) and again.products <= 2


def _tiny_bn_net():
    return nn.Sequential(nn.Conv2d(3, 2, 3, stride=2), nn.BatchNorm2d(2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(2, 10))


@pytest.mark.parametrize("batchnorm", ["running", "batch"])
def test_batchnorm_running_or_batch_statistics(digits64, batchnorm):
    torch.manual_seed(0)
    model = trained(_tiny_bn_net(), *digits64, steps=5)  # 71 parameters
    x, y = digits64[0][:48], digits64[1][:48]
    batches = list(zip(x.split(32), y.split(32)))  # 32 and 16: each batch normalised by its own statistics
    exact = np.linalg.eigvalsh(exact_hessian(model, batches, train_bn=batchnorm == "batch"))
    snap = state_snapshot(model)
    res = hessian_eigenvalues(model, batches, k=2, batchnorm=batchnorm, tol=1e-6, max_iter=200)
    assert_bit_identical(model, snap)  # running statistics untouched in "batch" mode
    assert all(m.track_running_stats and not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    np.testing.assert_allclose(res.eigenvalues, exact[::-1][:2], rtol=1e-4)


def test_surface_along_the_top_eigenvector_bends_by_its_eigenvalue(mlp_case):
    model, data, _, _ = mlp_case
    res = hessian_eigenvalues(model, data, k=2, tol=1e-7)
    h = 1e-2
    curve = surface(model, res.eigenvectors[:2], (np.array([-h, 0.0, h]),) * 2, data, metrics=("loss",))
    # the second derivative of the loss along a unit eigenvector is its eigenvalue (up to O(h^2) terms)
    np.testing.assert_allclose(centre_curvature(curve), res.eigenvalues[:2], rtol=2e-3)


def test_trace_is_unbiased_with_the_variance_hutchinson_predicts(mlp_case):
    model, data, hess, _ = mlp_case
    n = 150
    res = hessian_trace(model, data, max_samples=n, min_samples=n, tol=1e-9, batch_size=24)
    exact = np.trace(hess)
    off = hess - np.diag(np.diag(hess))
    sd = math.sqrt(2 * (off**2).sum())  # the standard deviation of z^T H z for Rademacher z
    assert len(res.samples) == n and not res.converged
    assert abs(res.trace - exact) < 4 * sd / math.sqrt(n)
    assert res.stderr == pytest.approx(sd / math.sqrt(n), rel=0.3)
    assert res.stderr == pytest.approx(np.std(res.samples, ddof=1) / math.sqrt(n), rel=1e-9)
    assert res.plot().lines


class _Diagonal(nn.Module):
    """loss = sum(c * w^2) / 2 through ``loss_fn``: a diagonal Hessian ``diag(c)``."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.w = nn.Parameter(torch.linspace(-1, 1, len(c)))

    def forward(self, x):
        return 0.5 * (self.c * self.w**2).sum() + 0 * x.sum()


def _own_output(output, target):
    return output


def test_trace_of_a_diagonal_hessian_is_exact_in_every_sample():
    c = torch.linspace(-2.0, 5.0, 30)
    model = _Diagonal(c)
    data = (torch.zeros(4, 1), torch.zeros(4))
    res = hessian_trace(model, data, _own_output, min_samples=3, tol=1e-3)
    # z^T diag(c) z = sum(c) for every z of +-1 entries: the samples are exact, the error zero
    np.testing.assert_allclose(res.samples, float(c.sum()), rtol=1e-6)
    assert res.converged and len(res.samples) == 3 and res.stderr == pytest.approx(0.0, abs=1e-5)


def test_deflated_trace_is_exact_on_its_subspace_and_less_noisy(mlp_case):
    model, data, hess, _ = mlp_case
    dim = hess.shape[0]
    full = hessian_trace(model, data, deflate=dim, min_samples=2, max_samples=2)
    # the Krylov subspace is the whole space: the trace is computed exactly, the projected samples are zero
    assert full.deflated == dim and full.trace == pytest.approx(np.trace(hess), rel=1e-5)
    assert full.exact_part == pytest.approx(full.trace) and np.abs(full.samples).max() < 1e-6
    assert full.products == dim + 2
    plain = hessian_trace(model, data, min_samples=60, max_samples=60)
    deflated = hessian_trace(model, data, deflate=10, min_samples=60, max_samples=60)
    assert abs(deflated.trace - np.trace(hess)) < 4 * deflated.stderr  # unbiased
    assert deflated.stderr < 0.7 * plain.stderr and deflated.products == 70  # the same samples, less noise


def test_trace_stops_at_its_tolerance(mlp_case):
    model, data, _, _ = mlp_case
    res = hessian_trace(model, data, tol=0.1, min_samples=5, max_samples=500, batch_size=64)
    x = np.array(res.samples)
    n = len(x)
    assert res.converged and n >= 5 and res.stderr <= 0.1 * abs(res.trace)
    assert n == 5 or np.std(x[:-1], ddof=1) / math.sqrt(n - 1) > 0.1 * abs(x[:-1].mean())  # not a sample later


def test_spectrum_nodes_mass_and_moments_match_the_exact_eigenvalues(mlp_case):
    model, data, hess, (values, _) = mlp_case
    dim = len(values)
    runs = 10
    spec = hessian_spectrum(model, data, runs=runs, steps=dim, batch_size=64)  # one batch: the same Hessian
    assert spec.nodes.shape == (runs, dim) and spec.dimension == dim and spec.products == runs * dim
    np.testing.assert_allclose(spec.weights.sum(axis=1), 1.0, atol=1e-6)
    # with as many steps as parameters, every node that carries weight is an exact eigenvalue
    heavy = spec.nodes[spec.weights > 1e-6]
    assert np.abs(heavy[:, None] - values[None, :]).min(axis=1).max() < 1e-4 * np.abs(values).max()
    grid, density = spec.density(points=4000)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)  # mass one
    # moments: unbiased, with the spread of v^T H^p v over unit Rademacher v (4 standard errors)
    for p in (1, 2):
        hp = np.linalg.matrix_power(hess, p)
        off = hp - np.diag(np.diag(hp))
        sd = math.sqrt(2 * (off**2).sum()) / dim
        assert abs(spec.moment(p) - np.mean(values**p)) < 4 * sd / math.sqrt(runs), p
    assert spec.trace == pytest.approx(dim * spec.moment(1))
    assert spec.plot().lines and set(spec.to_dict()) >= {"nodes", "weights", "moments"}


def test_spectrum_with_fewer_steps_still_integrates_low_moments_exactly(mlp_case):
    model, data, hess, (values, _) = mlp_case
    # the same start vectors (same seed): a 6-step rule integrates degree <= 11 exactly, so moments 1 and 2 agree
    # with the full 43-step rule's to rounding, though the nodes differ
    short = hessian_spectrum(model, data, runs=2, steps=6, seed=3, batch_size=64)
    full = hessian_spectrum(model, data, runs=2, steps=len(values), seed=3, batch_size=64)
    for p in (1, 2, 3):
        assert short.moment(p) == pytest.approx(full.moment(p), rel=1e-5), p


@pytest.mark.gpu
def test_bf16_autocast_stays_within_its_stated_tolerance(digits64):
    torch.manual_seed(0)
    model = trained(small_convnet("bn"), *digits64, steps=10)
    fp32 = hessian_eigenvalues(model, digits64, k=1, tol=1e-4)
    bf16 = hessian_eigenvalues(model, digits64, k=1, tol=1e-4, autocast_dtype=torch.bfloat16)
    trace32 = hessian_trace(model, digits64, min_samples=20, max_samples=20)
    trace16 = hessian_trace(model, digits64, min_samples=20, max_samples=20, autocast_dtype=torch.bfloat16)
    # the tolerance the docs state: 2 % on the top eigenvalue and on the trace (same Rademacher vectors); measured
    # at most 0.9 % on the top three eigenvalues and 0.4 % on the trace over three seeds (CPU autocast)
    assert bf16.eigenvalues[0] == pytest.approx(fp32.eigenvalues[0], rel=0.02)
    assert trace16.trace == pytest.approx(trace32.trace, rel=0.02)


def test_all_reduce_sums_the_shares_of_several_processes(mlp_case):
    model, (x, y), _, (values, _) = mlp_case
    calls = []

    def two_identical_ranks(t):  # what a sum over two processes holding the same batches returns
        calls.append(t.numel())
        return t * 2

    res = hessian_eigenvalues(model, (x, y), tol=1e-7, all_reduce=two_identical_ranks)
    assert res.eigenvalues[0] == pytest.approx(values.max(), rel=1e-5)  # the mean over 2 x 40 samples
    assert calls[0] == 1 and all(n == 43 for n in calls[1:]) and len(calls) == res.products + 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "Expected `k` to be a positive integer, got 0"),
        ({"max_iter": 1.5}, "Expected `max_iter` to be a positive integer, got 1.5"),
        ({"tol": 0}, "Expected `tol` to be a positive finite number, got 0"),
        ({"algorithm": "arnoldi"}, r"Expected `algorithm` to be one of \('lanczos', 'power'\), got 'arnoldi'"),
        ({"which": "smallest"}, r"Expected `which` to be one of \('largest', 'magnitude'\), got 'smallest'"),
        ({"algorithm": "power"}, "Expected which='magnitude' with algorithm='power'"),
        ({"batchnorm": "train"}, r"Expected `batchnorm` to be one of \('running', 'batch'\), got 'train'"),
        ({"autocast_dtype": "bf16"}, "Expected `autocast_dtype` to be a torch.dtype or None, got 'bf16'"),
        ({"seed": None}, "Expected `seed` to be an integer, got None"),
        ({"loss_fn": F.cross_entropy, "evaluate": lambda b: {}}, "Expected either `evaluate` or `loss_fn`, got both"),
        ({"evaluate": 3}, "Expected `evaluate` to be a callable"),
        ({"start": {"weight": torch.zeros(2, 2)}}, "Expected `start` to be a Direction or None, got dict"),
        ({"start": Direction({"weight": torch.zeros(2, 2)})}, "Expected `start` to hold a tensor of the parameter's"),
        ({"start": Direction({"weight": torch.zeros(2, 2), "bias": torch.zeros(2)})},
         "Expected `start` to be a non-zero finite vector, got norm 0.0"),
    ],
)
def test_eigenvalue_errors(kwargs, match):
    data = (torch.randn(4, 2), torch.randint(0, 2, (4,)))
    with pytest.raises(ValueError, match=match):
        hessian_eigenvalues(nn.Linear(2, 2), data, **kwargs)


def test_trace_spectrum_and_model_errors():
    data = (torch.randn(4, 2), torch.randint(0, 2, (4,)))
    net = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="Expected `max_samples` to be a positive integer, got 0"):
        hessian_trace(net, data, max_samples=0)
    with pytest.raises(ValueError, match=r"Expected `min_samples` to be an integer in \[2, max_samples=10\], got 1"):
        hessian_trace(net, data, max_samples=10, min_samples=1)
    with pytest.raises(ValueError, match="Expected `tol` to be a positive finite number, got -1"):
        hessian_trace(net, data, tol=-1)
    with pytest.raises(ValueError, match="Expected `deflate` to be a non-negative integer, got -3"):
        hessian_trace(net, data, deflate=-3)
    with pytest.raises(ValueError, match="Expected `runs` to be a positive integer, got 0"):
        hessian_spectrum(net, data, runs=0)
    with pytest.raises(ValueError, match="Expected `steps` to be a positive integer, got -2"):
        hessian_spectrum(net, data, steps=-2)
    with pytest.raises(ValueError, match=r"Expected a model with trainable parameters \(requires_grad=True\)"):
        hessian_eigenvalues(nn.Linear(2, 2).requires_grad_(False), data)
    with pytest.raises(ValueError, match="Expected the batch loss to be a scalar tensor, got Tensor"):
        hessian_eigenvalues(net, data, loss_fn=lambda out, y: out)
    with pytest.raises(ValueError, match="Expected `sigma` > 0, got 0"):
        hessian_spectrum(net, data, runs=1, steps=3).density(sigma=0)


# ---------------------------------------------------------------------------------------------------------
# the stability threshold, against torch.optim.SGD on a quadratic
# ---------------------------------------------------------------------------------------------------------
def _sgd_on_quadratic(curvatures, steps=600, **options):
    """Run torch.optim.SGD on loss = sum(c_i x_i^2) / 2 from x = 1; return |x| after ``steps``."""
    x = nn.Parameter(torch.ones(len(curvatures), dtype=torch.float64))
    c = torch.tensor(curvatures, dtype=torch.float64)
    opt = torch.optim.SGD([x], **options)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * c * x**2).sum().backward()
        opt.step()
    return x.detach().abs().numpy()


@pytest.mark.parametrize(
    "options",
    [
        {"lr": 0.1},
        {"lr": 0.05, "momentum": 0.9},
        {"lr": 0.3, "momentum": 0.5, "dampening": 0.5},
        {"lr": 0.02, "momentum": 0.9, "nesterov": True},
        {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.5},
    ],
)
def test_stability_threshold_is_where_sgd_starts_to_diverge(options):
    threshold = stability_threshold(options["lr"], options.get("momentum", 0.0),
                                    dampening=options.get("dampening", 0.0), nesterov=options.get("nesterov", False),
                                    weight_decay=options.get("weight_decay", 0.0))
    below, above = _sgd_on_quadratic([threshold * 0.98, threshold * 1.02], **options)
    assert below < 1e-3 and not above < 1e3  # decays just below the threshold, diverges just above
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], **options)
    assert optimizer_stability_thresholds(opt) == [pytest.approx(threshold)]


def test_thresholds_of_param_groups_and_other_optimizers():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    sgd = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.0}], lr=0.1, momentum=0.9)
    assert optimizer_stability_thresholds(sgd) == [pytest.approx(38.0), None]
    assert optimizer_stability_thresholds(torch.optim.Adam([a], lr=0.1)) == [None]
    assert stability_threshold(2.0) == 1.0 and stability_threshold(0.1, dampening=1.0) == math.inf


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((0.0,), {}, "Expected `lr` to be a positive finite number, got 0.0"),
        ((0.1, 1.0), {}, r"Expected `momentum` in \[0, 1\), got 1.0"),
        ((0.1, 0.9), {"dampening": 2.0}, r"Expected `dampening` in \[0, 1\], got 2.0"),
        ((0.1,), {"weight_decay": -1.0}, "Expected `weight_decay` >= 0, got -1.0"),
        ((0.1, 0.9), {"nesterov": True, "dampening": 0.1}, "Expected dampening 0 with Nesterov momentum"),
    ],
)
def test_stability_threshold_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        stability_threshold(*args, **kwargs)


def test_curvature_history_round_trips_and_plots():
    history = CurvatureHistory()
    history.record(10, 5.0, 38.0, lr=0.1, momentum=0.9)
    history.record(20, 7.5, None, lr=0.2, trace=100.0)
    state = history.to_dict()
    again = CurvatureHistory.from_dict({k: [None if isinstance(v, float) and math.isnan(v) else v for v in vals]
                                        for k, vals in state.items()})  # JSON writes NaN as null
    assert len(again) == 2 and again.steps == [10, 20] and again.top_eigenvalue == [5.0, 7.5]
    assert again.threshold[0] == 38.0 and math.isnan(again.threshold[1]) and again.trace[1] == 100.0
    ax = again.plot(title="t")
    assert len(ax.get_lines()) == 2 and ax.get_yscale() == "log" and ax.figure.axes[1].get_lines()
    with pytest.raises(ValueError, match="Expected a curvature history with equally long fields"):
        CurvatureHistory.from_dict({**state, "lr": [0.1]})
