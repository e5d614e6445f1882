"""Curvature beyond the top eigenvalue: top-k Hessian eigenpairs, the trace, the spectral density, and the
learning rate's stability threshold.

All of it runs on Hessian-vector products of the sample-weighted mean loss over fixed batches that are put on the
model's device once (as :func:`~lightning_papers.landscape.surface` does), and leaves the model, its ``.grad``
and the global RNG exactly as they were.

* :func:`hessian_eigenvalues`: the ``k`` largest eigenvalues (and eigenvectors, as :class:`Direction` objects
  that :func:`~lightning_papers.landscape.surface` can plot along) by the Lanczos method with full
  reorthogonalisation (Lanczos, 1950; Golub & Van Loan, Matrix Computations, Section 10.1), stopped on the Ritz
  residual; ``algorithm="power"`` is deflated power iteration, the method PyHessian uses (Yao, Gholami, Keutzer,
  Mahoney, PyHessian: Neural Networks Through the Lens of the Hessian, 2020, arXiv 1912.07145).
* :func:`hessian_trace`: Hutchinson's estimator ``E[z^T H z]`` with Rademacher ``z`` (Hutchinson, 1989; Avron &
  Toledo, 2011), with its standard error and a stop when that is small enough.
* :func:`hessian_spectrum`: the eigenvalue density by stochastic Lanczos quadrature (Lin, Saad, Yang,
  Approximating Spectral Densities of Large Matrices, 2016, arXiv 1308.5467; Ghorbani, Krishnan, Xiao, An
  Investigation into Neural Net Optimization via Hessian Eigenvalue Density, 2019, arXiv 1901.10159): a few
  Lanczos runs from random unit vectors, each a quadrature rule (Ritz values, squared first components of the
  Ritz vectors), broadened by Gaussians.
* :func:`stability_threshold`: the largest curvature gradient descent with (heavy-ball or Nesterov) momentum can
  follow without diverging, ``(2 + 2 beta) / lr``; Cohen, Kaur, Li, Kolter, Talwalkar, Gradient Descent on Neural
  Networks Typically Occurs at the Edge of Stability, 2021 (arXiv 2103.00065), show the top eigenvalue of
  full-batch training rising to it and hovering there. :class:`CurvatureHistory` records both during training.

Hessian-vector products are double backward passes (``torch.autograd.grad`` of the gradient), and by default
each batch's gradient graph is built once and kept for every product of a call (``cache_graph=True``): measured
on a 2-core CPU, ResNet-20 on 64 digits at 16 px, one product took 468 ms from the kept graph, 804 ms rebuilding
it and 910 ms by ``torch.func`` (``jvp`` of ``grad``); batching four products (``is_grads_batched`` or
``vmap``) saved nothing there. The Lanczos iterate, the tridiagonal matrix and the dot products are kept in
float64 on the host where they are small, the basis in the parameters' dtype on the device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from lightning_papers import _validation as check
from lightning_papers.landscape.directions import Direction, check_materialised
from lightning_papers.landscape.double_backward import second_order
from lightning_papers.landscape.evaluation import SUPPORTED_BATCHNORM, AllReduce, Autocast, EvaluationSpec, samples_in
from lightning_papers.landscape.plot import _new_axes

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "SUPPORTED_ALGORITHMS", "SUPPORTED_BATCHNORM", "SUPPORTED_WHICH", "CurvatureHistory", "HessianEigenpairs",
    "HessianSpectrum", "HessianTrace", "hessian_eigenvalues", "hessian_spectrum", "hessian_trace",
    "optimizer_stability_thresholds", "stability_threshold",
]

SUPPORTED_ALGORITHMS = ("lanczos", "power")
SUPPORTED_WHICH = ("largest", "magnitude")


# ----------------------------------------------------------------------------------------------------------
# the Hessian as an operator on flat vectors
# ----------------------------------------------------------------------------------------------------------
class _Hessian:
    """``v -> H v`` for flat vectors over the trainable parameters, ``H`` the Hessian of the sample-weighted mean
    loss over ``batches`` (summed over processes by ``all_reduce``, when given)."""

    def __init__(self, params: list[torch.Tensor], batches: list[Any], batch_loss: Callable[[Any], torch.Tensor],
                 cache_graph: bool, autocast: Autocast, all_reduce: AllReduce | None) -> None:
        self.params, self.batches, self.batch_loss = params, batches, batch_loss
        self.cache_graph, self.autocast, self.all_reduce = cache_graph, autocast, all_reduce
        self.numels = [p.numel() for p in params]
        self.dim = sum(self.numels)
        self.device, self.dtype = params[0].device, params[0].dtype
        sizes = [samples_in(b) for b in batches]
        total = torch.tensor(float(sum(sizes)), dtype=torch.float64, device=self.device)
        if all_reduce is not None:
            total = all_reduce(total)
        self.samples = int(round(float(total)))
        self.weights = [s / float(total) for s in sizes]
        self.graphs: list[tuple[list[torch.Tensor], list[int]] | None] = [None] * len(batches)
        self.products = 0

    def _gradient(self, i: int) -> tuple[list[torch.Tensor], list[int]]:
        """The batch's loss gradient with its graph, and the indices of the parameters it depends on."""
        if (cached := self.graphs[i]) is not None:
            return cached
        with self.autocast():
            loss = self.batch_loss(self.batches[i])
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError(f"Expected the batch loss to be a scalar tensor, got {type(loss).__name__} "
                             f"{tuple(getattr(loss, 'shape', ()))}")
        grads = torch.autograd.grad(loss.float(), self.params, create_graph=True, allow_unused=True)
        used = [j for j, g in enumerate(grads) if g is not None and g.requires_grad]
        out = ([grads[j] for j in used], used)
        if self.cache_graph:
            self.graphs[i] = out
        return out

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        views = [t.view_as(p) for t, p in zip(v.split(self.numels), self.params)]
        out = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for i, weight in enumerate(self.weights):
            grads, used = self._gradient(i)
            if not used:
                continue
            hv = torch.autograd.grad(grads, self.params, grad_outputs=[views[j] for j in used],
                                     retain_graph=self.cache_graph, allow_unused=True, materialize_grads=True)
            out.add_(torch.cat([h.detach().reshape(-1) for h in hv]).to(self.dtype), alpha=weight)
        if self.all_reduce is not None:
            out = self.all_reduce(out)
        self.products += 1
        return out

    def release(self) -> None:
        self.graphs = [None] * len(self.batches)


def _trainable(model: nn.Module, seed: int) -> list[tuple[str, torch.Tensor]]:
    check.integer("seed", seed)
    check_materialised(model)
    named: list[tuple[str, torch.Tensor]] = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("Expected a model with trainable parameters (requires_grad=True), got none")
    return named


def _spec(spec: Any, loss_fn: Callable | None, options: dict[str, Any]) -> EvaluationSpec:
    """The spec of a ``hessian_*`` call: ``spec`` (or data, with the spec's fields as ``options``) and the
    positional ``loss_fn`` of the keyword style."""
    return EvaluationSpec.of(spec, **options, **({} if loss_fn is None else {"loss_fn": loss_fn}))


@contextmanager
def _hessian(model: nn.Module, spec: EvaluationSpec, named: list[tuple[str, torch.Tensor]]) -> Iterator[_Hessian]:
    """The Hessian operator, with the model in the spec's evaluation mode; on exit the model's state, flags and
    ``.grad`` are as they were."""
    params = [p for _, p in named]
    batches, autocast = spec.prepared(params[0].device)
    grads_before = [p.grad for p in model.parameters()]
    op = None
    with spec.evaluation_mode(model), second_order():  # fused attention has no double backward: the math kernel
        try:
            op = _Hessian(params, batches, spec.batch_loss(model), spec.cache_graph, autocast, spec.all_reduce)
            yield op
        finally:
            if op is not None:
                op.release()
            for p, grad in zip(model.parameters(), grads_before):  # as found (a loss_fn may call backward)
                p.grad = grad


def _flat(direction: Direction, named: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
    missing = [n for n, _ in named if n not in direction.tensors]
    if missing or any(tuple(direction.tensors[n].shape) != tuple(p.shape) for n, p in named):
        raise ValueError(f"Expected `start` to hold a tensor of the parameter's shape for every trainable parameter, "
                         f"got missing or mismatched entries (e.g. {missing[:3]})")
    p0 = named[0][1]
    return torch.cat([direction.tensors[n].detach().to(device=p0.device, dtype=p0.dtype).reshape(-1)
                      for n, _ in named])


def _direction(vec: torch.Tensor, named: list[tuple[str, torch.Tensor]], info: dict[str, Any]) -> Direction:
    chunks = vec.detach().split([p.numel() for _, p in named])
    return Direction({n: c.view_as(p).clone() for (n, p), c in zip(named, chunks)}, "weights", info)


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a.double(), b.double()))


def _rademacher(gen: torch.Generator, dim: int, like: torch.Tensor) -> torch.Tensor:
    """A seeded vector of +-1 entries, drawn on the CPU (the same on every device and process)."""
    return torch.randint(0, 2, (dim,), generator=gen).mul_(2).sub_(1).to(device=like.device, dtype=like.dtype)


def _random_unit(gen: torch.Generator, dim: int, like: torch.Tensor, rademacher: bool = False) -> torch.Tensor:
    """A seeded random unit vector (Gaussian, or Rademacher scaled to unit length), drawn on the CPU."""
    v = _rademacher(gen, dim, like).double() if rademacher else torch.randn(dim, generator=gen, dtype=torch.float64)
    v /= v.norm()
    return v.to(device=like.device, dtype=like.dtype)


# ----------------------------------------------------------------------------------------------------------
# Lanczos and deflated power iteration
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _Krylov:
    alphas: list[float]
    betas: list[float]  # betas[j] couples basis vectors j and j + 1 (0 where a new random vector was started)
    basis: torch.Tensor  # (steps, dim)
    last_beta: float


def _select(theta: np.ndarray, which: str, k: int) -> np.ndarray:
    order = np.argsort(-theta, kind="stable") if which == "largest" else np.argsort(-np.abs(theta), kind="stable")
    return order[:k]


def _tridiagonal(alphas: Sequence[float], betas: Sequence[float]) -> np.ndarray:
    m = len(alphas)
    return np.diag(alphas) + np.diag(betas[: m - 1], 1) + np.diag(betas[: m - 1], -1)


def _lanczos(op: Callable[[torch.Tensor], torch.Tensor], q: torch.Tensor, steps: int, gen: torch.Generator,
             stop: Callable[[np.ndarray, np.ndarray, float], bool] | None = None) -> _Krylov:
    """At most ``steps`` Lanczos steps from the unit vector ``q``, fully reorthogonalised (twice, against the whole
    basis). ``stop(theta, s, beta)`` (Ritz values, eigenvectors of T, the next beta) ends it early."""
    dim = q.numel()
    steps = min(steps, dim)
    basis = torch.empty(steps, dim, dtype=q.dtype, device=q.device)
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    scale = 0.0
    for j in range(steps):
        basis[j] = q
        w = op(q)
        alpha = _dot(q, w)
        alphas.append(alpha)
        w = w - alpha * q
        if j > 0 and betas[-1] != 0.0:
            w -= betas[-1] * basis[j - 1]
        for _ in range(2):  # "twice is enough" (Kahan, Parlett)
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = math.sqrt(max(_dot(w, w), 0.0))
        scale = max(scale, abs(alpha), beta)
        if stop is not None:
            theta, s = np.linalg.eigh(_tridiagonal(alphas, betas))
            if stop(theta, s, beta):
                break
        if j + 1 == steps:
            break
        if beta <= 1e-10 * max(scale, 1e-300):  # an invariant subspace: carry on from a new orthogonal vector
            w = _random_unit(gen, dim, q)
            for _ in range(2):
                w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
            q = w / w.norm()
            betas.append(0.0)
        else:
            q = w / beta
            betas.append(beta)
    n = len(alphas)
    return _Krylov(alphas, betas[: n - 1], basis[:n], beta)


def _lanczos_eigenpairs(op: _Hessian, start: torch.Tensor, k: int, which: str, max_iter: int, tol: float,
                        gen: torch.Generator) -> tuple[np.ndarray, torch.Tensor, np.ndarray, bool]:
    state: dict[str, Any] = {"converged": False}

    def stop(theta: np.ndarray, s: np.ndarray, beta: float) -> bool:
        if len(theta) < min(k, op.dim):
            return False
        idx = _select(theta, which, k)
        residual = beta * np.abs(s[-1, idx])  # |H y - theta y| of each Ritz pair (exact arithmetic)
        state["converged"] = bool(np.all(residual <= tol * np.maximum(np.abs(theta[idx]), 1e-30)))
        return state["converged"]

    krylov = _lanczos(op, start, max_iter, gen, stop)
    theta, s = np.linalg.eigh(_tridiagonal(krylov.alphas, krylov.betas))
    idx = _select(theta, which, k)
    vectors = torch.as_tensor(s[:, idx].T, dtype=krylov.basis.dtype, device=krylov.basis.device) @ krylov.basis
    residual = krylov.last_beta * np.abs(s[-1, idx])
    converged = state["converged"] or len(krylov.alphas) == op.dim
    return theta[idx], vectors, residual, converged


def _power_eigenpairs(op: _Hessian, start: torch.Tensor, k: int, max_iter: int, tol: float, gen: torch.Generator,
                      history: list[float], settle: bool = False) -> tuple[np.ndarray, torch.Tensor, np.ndarray, bool]:
    """Deflated power iteration; ``history`` gets the first pair's estimate per iteration. A pair converges when its
    residual is at most ``tol |theta|`` (``settle``: when the estimate changes by at most that)."""
    found: list[torch.Tensor] = []
    values, residuals = [], []
    converged_all = True
    for i in range(min(k, op.dim)):
        v = start if i == 0 else _random_unit(gen, op.dim, start)
        for _ in range(2):
            for u in found:
                v = v - _dot(u, v) * u
        v = v / v.norm()
        theta, residual, converged = 0.0, math.inf, False
        for _ in range(max_iter):
            w = op(v)
            for u in found:  # deflation: iterate on the complement of the eigenvectors found so far
                w = w - _dot(u, w) * u
            theta, before = _dot(v, w), theta
            residual = math.sqrt(max(_dot(w - theta * v, w - theta * v), 0.0))
            if i == 0:
                history.append(theta)
            change = abs(theta - before) if settle and len(history) > 1 else residual
            if change <= tol * max(abs(theta), 1e-30):
                converged = True
                break
            norm = w.norm()
            if float(norm) == 0.0:
                converged = True
                break
            v = w / norm
        found.append(v)
        values.append(theta)
        residuals.append(residual)
        converged_all = converged_all and converged
    return np.array(values), torch.stack(found), np.array(residuals), converged_all


def _sign_fixed(vectors: torch.Tensor) -> torch.Tensor:
    """Each vector with its largest-magnitude entry positive (eigenvectors are defined up to sign)."""
    idx = vectors.abs().argmax(dim=1)
    signs = torch.sign(vectors.gather(1, idx[:, None]))
    return vectors * torch.where(signs == 0, torch.ones_like(signs), signs)


# ----------------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------------
@dataclass
class HessianEigenpairs:
    """Result of :func:`hessian_eigenvalues`.

    Attributes:
        eigenvalues: the ``k`` eigenvalues found, largest first (``which="largest"``) or by magnitude.
        eigenvectors: unit eigenvectors as weight-space :class:`Direction` objects keyed by parameter name (plot a
            surface along them with :func:`~lightning_papers.landscape.surface`); ``None`` when not asked for.
        residuals: ``||H y - lambda y||`` of each pair: an eigenvalue of ``H`` lies within it of ``lambda``.
        products: Hessian-vector products computed.
        converged: every residual below ``tol * |lambda|`` before ``max_iter``.
        algorithm: ``"lanczos"`` or ``"power"``.
        seconds: wall time of the call.
        history: power iteration: the first pair's estimate after each iteration.
    """

    eigenvalues: list[float]
    eigenvectors: list[Direction] | None
    residuals: list[float]
    products: int
    converged: bool
    algorithm: str
    seconds: float = math.nan
    history: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: everything but the eigenvectors."""
        return {"eigenvalues": list(self.eigenvalues), "residuals": list(self.residuals),
                "products": self.products, "converged": self.converged, "algorithm": self.algorithm,
                "seconds": self.seconds}


@dataclass
class HessianTrace:
    """Result of :func:`hessian_trace`.

    Attributes:
        trace: the estimate: ``exact_part`` plus the mean of the samples.
        stderr: its standard error (sample standard deviation / sqrt(samples)).
        samples: the samples ``z^T H z`` (``z`` projected off the deflated subspace), in order.
        converged: ``stderr <= tol * |trace|`` before ``max_samples``.
        exact_part: the trace over the deflated Krylov subspace (0 without deflation).
        deflated: the dimension of that subspace.
        products: Hessian-vector products computed.
        seconds: wall time of the call.
    """

    trace: float
    stderr: float
    samples: list[float]
    converged: bool
    exact_part: float = 0.0
    deflated: int = 0
    products: int = 0
    seconds: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"trace": self.trace, "stderr": self.stderr, "samples": list(self.samples),
                "converged": self.converged, "exact_part": self.exact_part, "deflated": self.deflated,
                "products": self.products, "seconds": self.seconds}

    def plot(self, ax: Axes | None = None) -> Axes:
        """The running mean against the number of samples, with a band of one standard error."""
        ax = _new_axes(ax, figsize=(5, 3.5))
        x = np.asarray(self.samples, dtype=np.float64)
        n = np.arange(1, len(x) + 1)
        mean = self.exact_part + np.cumsum(x) / n
        var = np.array([x[:i].var(ddof=1) if i > 1 else np.nan for i in n])
        err = np.sqrt(var / n)
        ax.plot(n, mean, marker=".", label="running mean")
        ax.fill_between(n, mean - err, mean + err, alpha=0.3, label="one standard error")
        ax.set_xlabel("Rademacher samples")
        ax.set_ylabel("Hessian trace estimate")
        ax.legend(fontsize=8)
        return ax


@dataclass
class HessianSpectrum:
    """Result of :func:`hessian_spectrum`: one Gauss quadrature rule per Lanczos run.

    Attributes:
        nodes: Ritz values of each run, ``(runs, steps)`` (NaN-padded where a run stopped early).
        weights: their quadrature weights (each run's sum to 1).
        dimension: the number of parameters (the matrix size).
        products: Hessian-vector products computed.
        seconds: wall time of the call.
    """

    nodes: np.ndarray
    weights: np.ndarray
    dimension: int
    products: int = 0
    seconds: float = math.nan

    def moment(self, p: int) -> float:
        """Estimate of ``mean(lambda_i ** p)`` over all eigenvalues (``p = 1``: trace / dimension)."""
        ok = np.isfinite(self.nodes)
        return float(np.mean(np.sum(np.where(ok, self.weights * np.where(ok, self.nodes, 0.0) ** p, 0.0), axis=1)))

    @property
    def trace(self) -> float:
        """Estimate of the trace (``dimension * moment(1)``)."""
        return self.dimension * self.moment(1)

    def default_sigma(self) -> float:
        """Gaussian width used by :meth:`density` when none is given: 1 % of the range of the nodes."""
        finite = self.nodes[np.isfinite(self.nodes)]
        width = float(finite.max() - finite.min()) if finite.size else 0.0
        return max(0.01 * width, 1e-6 * max(float(np.abs(finite).max()) if finite.size else 1.0, 1e-12))

    def density(self, grid: np.ndarray | None = None, sigma: float | None = None,
                points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """The density ``sum_i w_i N(t; theta_i, sigma^2)`` averaged over runs, on ``grid`` (default: ``points``
        from 5 sigma below the smallest node to 5 sigma above the largest). It integrates to 1 over the real line.

        Raises:
            ValueError: for a non-positive ``sigma`` or ``points``.
        """
        sigma = self.default_sigma() if sigma is None else sigma
        if not sigma > 0:
            raise ValueError(f"Expected `sigma` > 0, got {sigma!r}")
        if grid is None:
            check.positive_int("points", points)
            finite = self.nodes[np.isfinite(self.nodes)]
            grid = np.linspace(finite.min() - 5 * sigma, finite.max() + 5 * sigma, points)
        grid = np.asarray(grid, dtype=np.float64)
        ok = np.isfinite(self.nodes)
        nodes, weights = self.nodes[ok], self.weights[ok] / self.nodes.shape[0]
        z = (grid[:, None] - nodes[None, :]) / sigma
        values = (np.exp(-0.5 * z**2) * weights[None, :]).sum(axis=1) / (sigma * math.sqrt(2 * math.pi))
        return grid, values

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": self.nodes.tolist(), "weights": self.weights.tolist(), "dimension": self.dimension,
                "products": self.products, "seconds": self.seconds, "trace": self.trace,
                "moments": [self.moment(1), self.moment(2)]}

    def plot(self, ax: Axes | None = None, sigma: float | None = None, log: bool = True) -> Axes:
        """The density against the eigenvalue (log scale by default: the bulk near 0 and the outliers both show)."""
        ax = _new_axes(ax, figsize=(5, 3.5))
        grid, values = self.density(sigma=sigma)
        floor = 1e-12 * values.max() if values.max() > 0 else 1e-300
        ax.plot(grid, np.maximum(values, floor) if log else values, lw=1.5)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(max(floor, values.max() * 1e-9), values.max() * 3)
        ax.set_xlabel("eigenvalue")
        ax.set_ylabel("density")
        return ax


# ----------------------------------------------------------------------------------------------------------
# the three estimates
# ----------------------------------------------------------------------------------------------------------
def hessian_eigenvalues(
    model: nn.Module,
    spec: EvaluationSpec | Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    k: int = 1,
    algorithm: str = "lanczos",
    which: str = "largest",
    max_iter: int = 100,
    tol: float = 1e-3,
    start: Direction | None = None,
    eigenvectors: bool = True,
    seed: int = 0,
    **options: Any,
) -> HessianEigenpairs:
    """The ``k`` largest eigenvalues of the Hessian of the mean loss over ``data``, with their eigenvectors.

    Args:
        model: the model; it comes back bit-identical (weights, buffers, flags, ``.grad``), the global RNG too.
        spec: an :class:`~lightning_papers.landscape.EvaluationSpec`: the batches (put on the model's device once),
            the loss (``loss_fn(output, target)``, default ``F.cross_entropy``, or ``evaluate(batch)["loss"]``; batches
            weighted by size), ``autocast_dtype``, ``batchnorm``, ``cache_graph`` and ``all_reduce``; or the data
            alone, with those fields as keyword ``options``. On the tests' small BatchNorm convnet (CPU) bf16
            autocast kept the top eigenvalues and the trace within 2 % of float32 (measured: at most 0.9 %).
        loss_fn: the spec's ``loss_fn`` (the keyword style's third argument).
        k: how many eigenvalues.
        algorithm: ``"lanczos"`` (default: on ResNet-20 it needed several times fewer Hessian-vector products
            than deflated power iteration for the same residual; see ``benchmarks/curvature.py``) or ``"power"``.
        which: ``"largest"`` (algebraic: the ones that bound a stable learning rate) or ``"magnitude"``; power
            iteration can only find the largest magnitude.
        max_iter: Lanczos steps at most (``"lanczos"``), or iterations per eigenvalue (``"power"``).
        tol: stop when every pair's residual ``||H y - lambda y||`` is at most ``tol * |lambda|``.
        start: the first start vector (e.g. the previous call's ``eigenvectors[0]``: a warm start); default a
            seeded Gaussian.
        eigenvectors: return the eigenvectors (``False`` saves the memory of ``k`` copies of the parameters).
        seed: seed of the random start vectors (drawn on the CPU: the same on every device and process).
        **options: the spec's fields when ``spec`` is data.

    Returns:
        a :class:`HessianEigenpairs`.

    Raises:
        ValueError: for a non-positive ``k``, ``max_iter`` or ``tol``, an unknown ``algorithm``, ``which`` or
            ``batchnorm``, ``algorithm="power"`` with ``which="largest"``, both ``loss_fn`` and ``evaluate``, a
            model without trainable parameters, a ``start`` that does not fit the model, or bad ``data``.

    Examples:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> res = hessian_eigenvalues(net, (torch.randn(32, 3), torch.randint(0, 2, (32,))), k=2)
        >>> len(res.eigenvalues), res.eigenvalues[0] >= res.eigenvalues[1]
        (2, True)
    """
    check.positive_int("k", k)
    check.positive_int("max_iter", max_iter)
    check.one_of("algorithm", algorithm, SUPPORTED_ALGORITHMS)
    check.one_of("which", which, SUPPORTED_WHICH)
    if algorithm == "power" and which != "magnitude":
        raise ValueError(f"Expected which='magnitude' with algorithm='power' (power iteration converges to the "
                         f"largest magnitude), got {which!r}")
    check.positive_real("tol", tol)
    if start is not None and not isinstance(start, Direction):
        raise ValueError(f"Expected `start` to be a Direction or None, got {type(start).__name__}")
    return _eigenpairs(model, _spec(spec, loss_fn, options), k, algorithm, which, max_iter, tol, start, eigenvectors,
                       seed)


def _eigenpairs(model: nn.Module, spec: EvaluationSpec, k: int, algorithm: str, which: str, max_iter: int,
                tol: float, start: Direction | None, eigenvectors: bool, seed: int,
                settle: bool = False) -> HessianEigenpairs:
    """:func:`hessian_eigenvalues` on checked arguments; ``settle``: power iteration stops when the estimate's
    relative change is below ``tol`` (:func:`~lightning_papers.landscape.hessian_top_eigenvalue`'s rule)."""
    named = _trainable(model, seed)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    with _hessian(model, spec, named) as op:
        if start is None:
            v0 = _random_unit(gen, op.dim, named[0][1])
        else:
            v0 = _flat(start, named)
            norm = float(v0.norm())
            if not (math.isfinite(norm) and norm > 0):
                raise ValueError(f"Expected `start` to be a non-zero finite vector, got norm {norm!r}")
            v0 = v0 / norm
        if algorithm == "lanczos":
            values, vectors, residuals, converged = _lanczos_eigenpairs(op, v0, k, which, max_iter, tol, gen)
        else:
            values, vectors, residuals, converged = _power_eigenpairs(op, v0, k, max_iter, tol, gen, history, settle)
        products = op.products
    vectors = _sign_fixed(vectors)
    dirs = None
    if eigenvectors:
        dirs = [_direction(vec, named, {"type": "hessian_eigenvector", "index": i, "eigenvalue": float(val)})
                for i, (vec, val) in enumerate(zip(vectors, values))]
    return HessianEigenpairs([float(v) for v in values], dirs, [float(r) for r in residuals], products,
                             bool(converged), algorithm, time.perf_counter() - t0, history)


def hessian_trace(
    model: nn.Module,
    spec: EvaluationSpec | Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    max_samples: int = 100,
    min_samples: int | None = None,
    tol: float = 0.01,
    deflate: int = 0,
    seed: int = 0,
    **options: Any,
) -> HessianTrace:
    """Hutchinson's estimate of the Hessian's trace: the mean of ``z^T H z`` over Rademacher vectors ``z``.

    Sampling stops once ``min_samples`` (default 10, or ``max_samples`` when that is smaller) are drawn and the
    standard error is at most ``tol`` times the estimate's
    magnitude, or after ``max_samples``.

    With ``deflate=m`` the first ``m`` products build a Krylov subspace (Lanczos from a random vector), whose part of
    the trace is computed exactly (the sum of the tridiagonal's diagonal, ``tr(Q^T H Q)``), and the samples
    estimate the rest, ``tr((I - QQ^T) H (I - QQ^T))``, from Rademacher vectors projected off it (a deflated
    Hutchinson estimator, in the spirit of Hutch++: Meyer, Musco, Musco, Woodruff, 2021, arXiv 2010.09649). The
    variance of a sample is about twice the squared Frobenius norm of what is sampled, and in a trained network's
    Hessian a few outlying eigenvalues carry most of it (ResNet-20 on digits: the top three, 92 %), so for the same
    standard error far fewer products are needed (``benchmarks/curvature.py``); for a Hessian without outliers
    the ``m`` products are spent for little. The estimate stays unbiased.

    The other arguments are those of :func:`hessian_eigenvalues`.

    Raises:
        ValueError: for ``max_samples`` < 2 or a non-positive ``tol``, ``min_samples`` outside ``[2, max_samples]``
            (one sample has no standard error), a negative ``deflate``, or as :func:`hessian_eigenvalues` does.

    Examples:
        >>> net = nn.Linear(3, 2)
        >>> res = hessian_trace(net, (torch.randn(32, 3), torch.randint(0, 2, (32,))), max_samples=20)
        >>> res.trace > 0 and res.stderr >= 0
        True
    """
    check.positive_int("max_samples", max_samples)
    if max_samples < 2:
        raise ValueError(f"Expected `max_samples` >= 2 (one sample has no standard error), got {max_samples}")
    if min_samples is None:
        min_samples = min(10, max_samples)
    if not 2 <= check.integer("min_samples", min_samples) <= max_samples:
        raise ValueError(f"Expected `min_samples` to be an integer in [2, max_samples={max_samples}], "
                         f"got {min_samples!r}")
    check.positive_real("tol", tol)
    if check.integer("deflate", deflate) < 0:
        raise ValueError(f"Expected `deflate` to be a non-negative integer, got {deflate!r}")
    spec = _spec(spec, loss_fn, options)
    named = _trainable(model, seed)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    samples: list[float] = []
    converged = False
    estimate, stderr, exact, basis = math.nan, math.nan, 0.0, None
    with _hessian(model, spec, named) as op:
        if deflate:
            krylov = _lanczos(op, _random_unit(gen, op.dim, named[0][1]), deflate, gen)
            exact, basis = float(sum(krylov.alphas)), krylov.basis  # tr(Q^T H Q) = tr(T)
        for _ in range(max_samples):
            z = _rademacher(gen, op.dim, named[0][1])
            if basis is not None:
                z = z - basis.T @ (basis @ z)
            samples.append(_dot(z, op(z)))
            n = len(samples)
            estimate = exact + float(np.mean(samples))
            stderr = float(np.std(samples, ddof=1) / math.sqrt(n)) if n > 1 else math.nan
            if n >= min_samples and stderr <= tol * abs(estimate):
                converged = True
                break
        products = op.products
    return HessianTrace(estimate, stderr, samples, converged, exact, 0 if basis is None else len(basis), products,
                        time.perf_counter() - t0)


def hessian_spectrum(
    model: nn.Module,
    spec: EvaluationSpec | Any,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    runs: int = 3,
    steps: int = 80,
    seed: int = 0,
    **options: Any,
) -> HessianSpectrum:
    """The Hessian's eigenvalue density by stochastic Lanczos quadrature: ``runs`` Lanczos runs of ``steps`` steps
    from random unit vectors (Rademacher entries); see :class:`HessianSpectrum` for the density and its moments.
    The other arguments are those of :func:`hessian_eigenvalues`.

    Each run's rule integrates polynomials of degree below ``2 * steps`` exactly against the spectral measure of
    its start vector, so ``moment(1)`` and ``moment(2)`` are unbiased estimates of ``mean(lambda)`` and
    ``mean(lambda ** 2)``; more runs shrink their variance, more steps resolve the density's shape.

    Raises:
        ValueError: for a non-positive ``runs`` or ``steps``, or as :func:`hessian_eigenvalues` does.

    Examples:
        >>> net = nn.Linear(3, 2)
        >>> spec = hessian_spectrum(net, (torch.randn(32, 3), torch.randint(0, 2, (32,))), runs=2, steps=8)
        >>> spec.nodes.shape
        (2, 8)
    """
    check.positive_int("runs", runs)
    check.positive_int("steps", steps)
    spec = _spec(spec, loss_fn, options)
    named = _trainable(model, seed)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    with _hessian(model, spec, named) as op:
        width = min(steps, op.dim)
        nodes = np.full((runs, width), np.nan)
        weights = np.zeros((runs, width))
        for r in range(runs):
            krylov = _lanczos(op, _random_unit(gen, op.dim, named[0][1], rademacher=True), width, gen)
            theta, s = np.linalg.eigh(_tridiagonal(krylov.alphas, krylov.betas))
            # Ritz values in a restarted block (beta 0) are eigenvalues too, but carry no weight from this start
            nodes[r, : len(theta)] = theta
            weights[r, : len(theta)] = s[0, :] ** 2
        products = op.products
    return HessianSpectrum(nodes, weights, op.dim, products, time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------------------------
# the learning rate's stability threshold, and a record of both during training
# ----------------------------------------------------------------------------------------------------------
def stability_threshold(lr: float, momentum: float = 0.0, *, dampening: float = 0.0, nesterov: bool = False,
                        weight_decay: float = 0.0) -> float:
    """The largest loss curvature ``lambda`` along which ``torch.optim.SGD`` with these settings does not diverge
    on a quadratic: ``(2 + 2 beta) / (lr (1 - dampening)) - weight_decay``, and for Nesterov momentum
    ``(2 + 2 beta) / (lr (1 + 2 beta)) - weight_decay`` (Cohen et al., arXiv 2103.00065, Section 2 and
    Appendix; ``beta = 0`` gives ``2 / lr``). Weight decay adds ``weight_decay`` to every curvature the
    optimizer sees, so the loss's own may be that much smaller.

    Derivation (heavy ball, torch's form ``b_t = beta b_{t-1} + (1 - d) g_t``, ``x_{t+1} = x_t - lr b_t``): on
    ``g = c x`` the iterates obey ``x_{t+1} = (1 + beta - lr (1 - d) c) x_t - beta x_{t-1}``, whose roots stay in the
    unit disc exactly while ``0 < lr (1 - d) c < 2 + 2 beta``.

    Raises:
        ValueError: for a non-positive ``lr``, ``momentum`` outside ``[0, 1)``, ``dampening`` outside ``[0, 1]``,
            a negative ``weight_decay``, or Nesterov with dampening.

    Examples:
        >>> stability_threshold(0.1), round(stability_threshold(0.1, 0.9), 6)
        (20.0, 38.0)
    """
    check.positive_real("lr", lr)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"Expected `momentum` in [0, 1), got {momentum!r}")
    if not 0.0 <= dampening <= 1.0:
        raise ValueError(f"Expected `dampening` in [0, 1], got {dampening!r}")
    if not weight_decay >= 0.0:
        raise ValueError(f"Expected `weight_decay` >= 0, got {weight_decay!r}")
    if nesterov and dampening != 0.0:
        raise ValueError(f"Expected dampening 0 with Nesterov momentum (as torch.optim.SGD requires), got "
                         f"{dampening!r}")
    if nesterov:
        return (2 + 2 * momentum) / (lr * (1 + 2 * momentum)) - weight_decay
    if dampening == 1.0:
        return math.inf
    return (2 + 2 * momentum) / (lr * (1 - dampening)) - weight_decay


def optimizer_stability_thresholds(optimizer: torch.optim.Optimizer) -> list[float | None]:
    """:func:`stability_threshold` of each param group of ``optimizer`` from its current lr, momentum, dampening,
    Nesterov flag and weight decay; ``None`` for groups of optimizers other than ``torch.optim.SGD`` (an adaptive
    optimizer's threshold bounds its preconditioned Hessian, not the Hessian computed here) and groups with a
    zero learning rate.

    Examples:
        >>> opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9)
        >>> [round(t, 6) for t in optimizer_stability_thresholds(opt)]
        [38.0]
    """
    out: list[float | None] = []
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        if not isinstance(optimizer, torch.optim.SGD) or not lr > 0:
            out.append(None)
            continue
        out.append(stability_threshold(lr, float(group.get("momentum", 0.0)),
                                       dampening=float(group.get("dampening", 0.0)),
                                       nesterov=bool(group.get("nesterov", False)),
                                       weight_decay=float(group.get("weight_decay", 0.0))))
    return out


@dataclass
class CurvatureHistory:
    """The top Hessian eigenvalue and the optimizer's stability threshold, step by step (what
    :class:`~lightning_papers.callbacks.CurvatureMonitor` records; NaN where a value was not measured).

    Attributes:
        steps: optimizer steps.
        top_eigenvalue: the largest Hessian eigenvalue at each step.
        threshold: :func:`stability_threshold` of the first param group at each step.
        lr: the first param group's learning rate.
        momentum: its momentum (SGD) or beta1 (Adam-like); NaN when it has neither.
        trace: the Hessian trace estimate.
    """

    steps: list[int] = field(default_factory=list)
    top_eigenvalue: list[float] = field(default_factory=list)
    threshold: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    momentum: list[float] = field(default_factory=list)
    trace: list[float] = field(default_factory=list)

    FIELDS = ("steps", "top_eigenvalue", "threshold", "lr", "momentum", "trace")

    def record(self, step: int, top_eigenvalue: float, threshold: float | None = None, lr: float = math.nan,
               momentum: float = math.nan, trace: float | None = None) -> None:
        """Append one measurement."""
        self.steps.append(int(step))
        self.top_eigenvalue.append(float(top_eigenvalue))
        self.threshold.append(math.nan if threshold is None else float(threshold))
        self.lr.append(float(lr))
        self.momentum.append(float(momentum))
        self.trace.append(math.nan if trace is None else float(trace))

    def __len__(self) -> int:
        return len(self.steps)

    def to_dict(self) -> dict[str, list]:
        return {name: list(getattr(self, name)) for name in self.FIELDS}

    @classmethod
    def from_dict(cls, state: Mapping[str, Sequence[Any]]) -> CurvatureHistory:
        """The inverse of :meth:`to_dict` (``None`` entries, as JSON writes NaN, become NaN).

        Raises:
            ValueError: when a field is missing or the fields differ in length.
        """
        missing = [name for name in cls.FIELDS if name not in state]
        lengths = {len(state[name]) for name in cls.FIELDS if name in state}
        if missing or len(lengths) > 1:
            raise ValueError(f"Expected a curvature history with equally long fields {cls.FIELDS}, got missing "
                             f"{missing} and lengths {sorted(lengths)}")
        values = {name: [math.nan if v is None else float(v) for v in state[name]] for name in cls.FIELDS[1:]}
        return cls([int(s) for s in state["steps"]], **values)

    def plot(self, ax: Axes | None = None, title: str | None = None) -> Axes:
        """The top eigenvalue and the stability threshold against the optimizer step (log scale), and the trace
        on a second axis when it was measured."""
        ax = _new_axes(ax, figsize=(6.4, 4.0))
        steps = np.asarray(self.steps)
        ax.plot(steps, self.top_eigenvalue, marker=".", color="C0", label="top Hessian eigenvalue")
        threshold = np.asarray(self.threshold, dtype=np.float64)
        if np.isfinite(threshold).any():
            ax.plot(steps, threshold, color="C3", ls="--", label="stability threshold (2 + 2 momentum) / lr")
        values = np.concatenate([np.asarray(self.top_eigenvalue, dtype=np.float64), threshold])
        if (values[np.isfinite(values)] > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("curvature")
        ax.grid(alpha=0.3, which="both")
        lines = ax.get_lines()
        trace = np.asarray(self.trace, dtype=np.float64)
        if np.isfinite(trace).any():
            twin = ax.twinx()
            twin.plot(steps, trace, color="C2", ls=":", marker="x", ms=3, label="Hessian trace")
            twin.set_ylabel("trace", color="C2")
            lines = lines + twin.get_lines()
        ax.legend(lines, [str(line.get_label()) for line in lines], fontsize=8)
        if title:
            ax.set_title(title, fontsize=9)
        return ax
