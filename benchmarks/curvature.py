"""Hessian curvature: ``lightning_papers.landscape`` (top-k eigenvalues, trace, spectral density) vs PyHessian.

Yao, Gholami, Keutzer, Mahoney, PyHessian: Neural Networks Through the Lens of the Hessian, 2020 (arXiv
1912.07145); the reference is their pip package ``pyhessian`` (not a dependency of ours: install it yourself,
``python -m pip install --no-deps --target .pyhessian pyhessian`` and pass ``--pyhessian-path
.pyhessian``, or install it into the environment). Both run in one process, on the same model (a ResNet-20
trained a little on the embedded digits, BatchNorm in eval mode for both) and the same batches, already on the
device (PyHessian gets them as its "dataloader" when there are several, as its single batch otherwise):

  * top-k eigenvalues: PyHessian's deflated power iteration (``eigenvalues(maxIter, tol, top_n)``, stopping on
    the relative change of each estimate) vs ours (Lanczos, stopping on the Ritz residual), and ours with
    ``algorithm="power"`` (PyHessian's algorithm on our Hessian-vector products), each compared with a tightly
    converged reference (Lanczos, 1e-6 residual);
  * trace: the same number of Rademacher samples for both (``trace(maxIter=n, tol=0)`` never stops early): with
    the same seed the two draw the same vectors, so the estimates agree to rounding and the times compare the
    machinery; then ours with ``deflate=m`` (the trace over an m-step Krylov subspace exactly, Hutchinson on the
    rest), stopped at the standard error the n plain samples reached (equal accuracy);
  * density: the same stochastic Lanczos quadrature size (``density(iter=m, n_v=r)`` vs
    ``hessian_spectrum(steps=m, runs=r)``): moments, top node and the broadened densities on one grid.
    PyHessian 0.1 calls ``torch.eig``, removed in torch 1.9: during that call the script stands in for it with
    ``torch.linalg.eigh`` (see :func:`torch_eig_shim`).

Every contender's Hessian-vector products are counted (ours report them; PyHessian's are counted by wrapping its
product functions, see :class:`PyHessianProducts`: one product = one product with the Hessian of the loss over all
the batches). For the eigenvalues two ratios are kept apart: **algorithm** = ours (power) / ours (Lanczos), the same
implementation with two algorithms, and **implementation** = PyHessian / ours (power), the same algorithm in two
implementations, as a time ratio and per product (the two stop on different rules, so their product counts differ).
On several batches PyHessian rebuilds every batch's forward and gradient graph for every product (its
``dataloader`` mode) where we build each batch's graph once per call: that, not the algorithm, is the gain there.

Contenders alternate round by round (the machine may be shared) and the median time of each is reported, with
the ratio PyHessian / ours per task, then one JSON line.

Usage::

    python benchmarks/curvature.py --pyhessian-path .pyhessian                 # CPU, 1 batch of 64
    python benchmarks/curvature.py --pyhessian-path .pyhessian --batch-size 32  # 2 batches
    python benchmarks/curvature.py --device cuda --images 1024 --batch-size 256 --size 32
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
import torch.nn.functional as F
from _common import cpu_name, device_name, sync

from lightning_papers.data import DigitsDataModule
from lightning_papers.landscape import (
    HessianSpectrum,
    hessian_eigenvalues,
    hessian_spectrum,
    hessian_trace,
    prepare_batches,
)
from lightning_papers.models import get_model

PIP_COMMAND = "python -m pip install --no-deps --target .pyhessian pyhessian"


def load_pyhessian(path: str | None):
    """The ``pyhessian.hessian`` class, from ``path`` (prepended to ``sys.path``) or the environment; exits with the
    command that installs it when it is missing."""
    if path:
        sys.path.insert(0, path)
    try:
        return importlib.import_module("pyhessian").hessian
    except ImportError:
        where = f" (looked in {path!r} and the environment)" if path else ""
        sys.exit(f"error: this benchmark compares with PyHessian, which is not installed{where}. Install it with\n"
                 f"    {PIP_COMMAND}\nand pass --pyhessian-path .pyhessian (it is not a dependency of "
                 "lightning-papers).")


class PyHessianProducts:
    """Counts PyHessian's Hessian-vector products: wraps ``pyhessian.hessian.hessian_vector_product`` (its
    single-batch product, through the kept graph) and ``hessian.dataloader_hv_product`` (its several-batch product,
    which rebuilds every batch's forward and gradient graph); each call is one product with the full Hessian."""

    def __init__(self, hessian_cls) -> None:
        self.count = 0
        module = sys.modules[hessian_cls.__module__]
        single, several = module.hessian_vector_product, hessian_cls.dataloader_hv_product

        def counted_single(*args, **kwargs):
            self.count += 1
            return single(*args, **kwargs)

        def counted_several(obj, v):
            self.count += 1
            return several(obj, v)

        module.hessian_vector_product = counted_single
        hessian_cls.dataloader_hv_product = counted_several


@contextmanager
def torch_eig_shim():
    """PyHessian 0.1's ``density`` calls ``torch.eig(T, eigenvectors=True)``, removed in torch 1.9. For the duration
    of that call, stand in with ``torch.linalg.eigh`` (T is symmetric tridiagonal) in the old return format:
    eigenvalues as (n, 2) real/imaginary columns, eigenvectors as columns."""
    had = hasattr(torch, "eig")
    saved = getattr(torch, "eig", None)

    def eig(matrix: torch.Tensor, eigenvectors: bool = False):
        values, vectors = torch.linalg.eigh(matrix)
        return torch.stack([values, torch.zeros_like(values)], dim=1), vectors

    torch.eig = eig
    try:
        yield
    finally:
        if had:
            torch.eig = saved
        else:
            del torch.eig


def trained_model(args: argparse.Namespace, device: torch.device):
    """ResNet-20 after ``--train-steps`` SGD steps on the digits (seeded), in eval mode, and the evaluation batches
    (``--images`` validation digits in ``--batch-size`` chunks, on the device)."""
    torch.manual_seed(args.seed)
    dm = DigitsDataModule(batch_size=64, size=args.size, seed=args.seed)
    dm.setup("fit")
    model = get_model(args.model).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    model.train()
    loader = torch.utils.data.DataLoader(dm.train_set, batch_size=64, shuffle=True)
    step = 0
    while step < args.train_steps:
        for x, y in loader:
            x, y = dm.transform(x.to(device)), y.to(device)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            step += 1
            if step == args.train_steps:
                break
    model.eval()
    model.zero_grad(set_to_none=True)
    images, labels = dm.val_set.tensors
    batches = prepare_batches((images[: args.images], labels[: args.images]), device, args.batch_size,
                              transform=dm.transform)
    return model, batches


def relative_errors(values, reference) -> float:
    return float(max(abs(a - b) / abs(b) for a, b in zip(sorted(values, reverse=True), reference)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pyhessian-path", default=None, help="a folder holding the pyhessian package")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=64, help="validation digits (at most 359)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=16, help="digit images resized to size x size")
    parser.add_argument("--train-steps", type=int, default=30, help="SGD steps before measuring")
    parser.add_argument("--k", type=int, default=3, help="top eigenvalues")
    parser.add_argument("--tol", type=float, default=1e-3, help="PyHessian's eigenvalue tolerance (relative change)")
    parser.add_argument("--our-tol", type=float, default=1e-2, help="our eigenvalue tolerance (relative residual)")
    parser.add_argument("--max-iter", type=int, default=100, help="PyHessian's maxIter per eigenvalue")
    parser.add_argument("--trace-samples", type=int, default=60)
    parser.add_argument("--deflate", type=int, default=10, help="Krylov dimension of the deflated trace")
    parser.add_argument("--deflated-min-samples", type=int, default=10,
                        help="samples the deflated trace draws at least (a standard error of fewer is unreliable)")
    parser.add_argument("--slq-steps", type=int, default=30)
    parser.add_argument("--slq-runs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median time is reported")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: as set)")
    parser.add_argument("--tasks", nargs="+", default=["eigenvalues", "trace", "density"],
                        choices=["eigenvalues", "trace", "density"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    hessian = load_pyhessian(args.pyhessian_path)
    counter = PyHessianProducts(hessian)
    pyh_products: dict[str, int] = {}
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    model, batches = trained_model(args, device)
    pyh_data = {"data": batches[0]} if len(batches) == 1 else {"dataloader": batches}
    n_params = sum(p.numel() for p in model.parameters())

    def pyhessian(method: str, **kwargs):
        torch.manual_seed(args.seed)
        before = counter.count
        try:
            h = hessian(model, F.cross_entropy, cuda=cuda, **pyh_data)
            with torch_eig_shim() if method == "density" else nullcontext():
                return getattr(h, method)(**kwargs)
        finally:  # PyHessian leaves the gradient (and its graph) in .grad
            pyh_products[method] = counter.count - before
            model.zero_grad(set_to_none=True)

    reference = None
    if "eigenvalues" in args.tasks:
        t0 = time.perf_counter()
        reference = hessian_eigenvalues(model, batches, k=args.k, tol=1e-6, max_iter=300, eigenvectors=False)
        print(f"reference: Lanczos to a 1e-6 relative residual: {reference.eigenvalues} "
              f"({reference.products} products, {time.perf_counter() - t0:.1f} s, converged {reference.converged})")

    target: dict[str, float] = {}

    def ours_plain_trace():
        res = hessian_trace(model, batches, min_samples=args.trace_samples, max_samples=args.trace_samples)
        # the relative standard error of n plain samples (PyHessian's too: the same vectors) is the deflated run's
        # target; round 1 runs the plain one first
        target.setdefault("tol", res.stderr / abs(res.trace))
        return res

    contenders = {
        "eigenvalues": {
            "pyhessian": lambda: pyhessian("eigenvalues", maxIter=args.max_iter, tol=args.tol, top_n=args.k)[0],
            "ours (lanczos)": lambda: hessian_eigenvalues(model, batches, k=args.k, tol=args.our_tol,
                                                          eigenvectors=False),
            "ours (power)": lambda: hessian_eigenvalues(model, batches, k=args.k, tol=args.our_tol,
                                                        algorithm="power", which="magnitude",
                                                        max_iter=args.max_iter, eigenvectors=False),
        },
        "trace": {
            "pyhessian": lambda: pyhessian("trace", maxIter=args.trace_samples, tol=0.0),
            "ours": ours_plain_trace,
            "ours (deflated)": lambda: hessian_trace(model, batches, deflate=args.deflate,
                                                     min_samples=args.deflated_min_samples,
                                                     max_samples=10 * args.trace_samples, tol=target["tol"]),
        },
        "density": {
            "pyhessian": lambda: pyhessian("density", iter=args.slq_steps, n_v=args.slq_runs),
            "ours": lambda: hessian_spectrum(model, batches, runs=args.slq_runs, steps=args.slq_steps),
        },
    }
    times: dict[str, dict[str, list[float]]] = {task: {name: [] for name in contenders[task]} for task in args.tasks}
    outputs: dict[str, dict[str, object]] = {task: {} for task in args.tasks}
    for r in range(args.rounds):
        for task in args.tasks:
            names = list(contenders[task])
            for name in names if r % 2 == 0 else names[::-1]:
                sync(device)
                t0 = time.perf_counter()
                outputs[task][name] = contenders[task][name]()
                sync(device)
                times[task][name].append(time.perf_counter() - t0)
                print(f"  round {r + 1} {task:11s} {name:16s} {times[task][name][-1]:7.2f} s", flush=True)

    med = {task: {name: statistics.median(t) for name, t in by.items()} for task, by in times.items()}
    print(f"model {args.model} ({n_params:,} parameters), {args.images} digits at {args.size} px in "
          f"{len(batches)} batch(es) of {args.batch_size}, device {device} ({device_name(device)}), torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds")
    result: dict[str, object] = {
        "benchmark": "curvature", "model": args.model, "parameters": n_params, "images": args.images,
        "batches": len(batches), "batch_size": args.batch_size, "size": args.size, "device": str(device),
        "device_name": device_name(device), "cpu": cpu_name(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "rounds": args.rounds, "pyhessian_mode": next(iter(pyh_data)),
    }
    if "eigenvalues" in args.tasks:
        out = outputs["eigenvalues"]
        ref = reference.eigenvalues
        pyh_vals = sorted(out["pyhessian"], reverse=True)
        rows = {"pyhessian": pyh_vals, "ours (lanczos)": out["ours (lanczos)"].eigenvalues,
                "ours (power)": out["ours (power)"].eigenvalues}
        products = {"pyhessian": pyh_products["eigenvalues"], "ours (lanczos)": out["ours (lanczos)"].products,
                    "ours (power)": out["ours (power)"].products}
        errors = {name: relative_errors(vals, ref) for name, vals in rows.items()}
        secs = med["eigenvalues"]
        print(f"top-{args.k} eigenvalues (reference {[round(v, 4) for v in ref]}, {reference.products} products):")
        for name, vals in rows.items():
            print(f"  {name:16s} {secs[name]:7.2f} s  {products[name]:4d} products  max rel. error "
                  f"{errors[name]:.1e}  {[round(v, 4) for v in vals]}")
        per = {name: secs[name] / products[name] for name in rows}
        ratios = {
            # same implementation (ours), two algorithms
            "algorithm": secs["ours (power)"] / secs["ours (lanczos)"],
            "algorithm_products": products["ours (power)"] / products["ours (lanczos)"],
            # same algorithm (deflated power iteration), two implementations
            "implementation": secs["pyhessian"] / secs["ours (power)"],
            "implementation_per_product": per["pyhessian"] / per["ours (power)"],
            "implementation_products": products["pyhessian"] / products["ours (power)"],
            "total": secs["pyhessian"] / secs["ours (lanczos)"],
        }
        print(f"  algorithm (ours power / ours Lanczos, same implementation): {ratios['algorithm']:.2f}x time, "
              f"{ratios['algorithm_products']:.2f}x products")
        print(f"  implementation (PyHessian power / ours power, same algorithm): {ratios['implementation']:.2f}x "
              f"time, {ratios['implementation_per_product']:.2f}x per product, "
              f"{ratios['implementation_products']:.2f}x products (different stopping rules)")
        print(f"  total (PyHessian / ours Lanczos): {ratios['total']:.2f}x")
        result["eigenvalues"] = {
            "k": args.k, "reference": ref, "reference_products": reference.products,
            "reference_converged": reference.converged, "pyhessian": pyh_vals, "ours": rows["ours (lanczos)"],
            "ours_power": rows["ours (power)"], "rel_error": errors, "seconds": secs, "products": products,
            "seconds_per_product": per, "ratios": ratios, "speedup": ratios["total"],
            "pyhessian_tol": args.tol, "our_tol": args.our_tol,
        }
    if "trace" in args.tasks:
        out = outputs["trace"]
        pyh = np.asarray(out["pyhessian"], dtype=np.float64)
        pyh_mean, pyh_err = float(pyh.mean()), float(pyh.std(ddof=1) / np.sqrt(len(pyh)))
        ours, deflated = out["ours"], out["ours (deflated)"]
        gap = abs(ours.trace - pyh_mean) / np.hypot(ours.stderr, pyh_err)
        gap_deflated = abs(deflated.trace - pyh_mean) / np.hypot(deflated.stderr, pyh_err)
        speedup = med["trace"]["pyhessian"] / med["trace"]["ours"]
        speedup_deflated = med["trace"]["pyhessian"] / med["trace"]["ours (deflated)"]
        print(f"trace, {args.trace_samples} Rademacher samples (plain), or to the same relative standard error "
              f"{target['tol']:.3f} (deflated):")
        print(f"  pyhessian        {med['trace']['pyhessian']:7.2f} s  {pyh_mean:.2f} +- {pyh_err:.2f}")
        print(f"  ours             {med['trace']['ours']:7.2f} s  {ours.trace:.2f} +- {ours.stderr:.2f}"
              f"  ({gap:.2f} combined standard errors from pyhessian)")
        print(f"  ours (deflated)  {med['trace']['ours (deflated)']:7.2f} s  {deflated.trace:.2f} +- "
              f"{deflated.stderr:.2f}  ({gap_deflated:.2f} combined standard errors; {deflated.deflated} + "
              f"{len(deflated.samples)} products)")
        print(f"  pyhessian / ours: {speedup:.2f}x plain, {speedup_deflated:.2f}x deflated at equal standard error; "
              f"products: pyhessian {pyh_products['trace']}, ours {ours.products}, deflated {deflated.products}")
        result["trace"] = {"samples": args.trace_samples, "pyhessian": [pyh_mean, pyh_err],
                           "products": {"pyhessian": pyh_products["trace"], "ours": ours.products,
                                        "ours (deflated)": deflated.products},
                           "ours": [ours.trace, ours.stderr], "ours_deflated": [deflated.trace, deflated.stderr],
                           "deflated_products": deflated.products, "difference_in_stderr": float(gap),
                           "difference_in_stderr_deflated": float(gap_deflated), "seconds": med["trace"],
                           "speedup": speedup, "speedup_deflated": speedup_deflated}
    if "density" in args.tasks:
        out = outputs["density"]
        eig_lists, weight_lists = out["pyhessian"]
        pyh = HessianSpectrum(np.array(eig_lists, dtype=np.float64), np.array(weight_lists, dtype=np.float64),
                              n_params)
        ours = out["ours"]
        lo = min(np.nanmin(pyh.nodes), np.nanmin(ours.nodes))
        hi = max(np.nanmax(pyh.nodes), np.nanmax(ours.nodes))
        sigma = 0.01 * (hi - lo)
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, 2000)
        a, b = pyh.density(grid, sigma)[1], ours.density(grid, sigma)[1]
        l1 = float(np.trapezoid(np.abs(a - b), grid))
        speedup = med["density"]["pyhessian"] / med["density"]["ours"]
        print(f"density, {args.slq_runs} run(s) x {args.slq_steps} Lanczos steps:")
        for name, spec in (("pyhessian", pyh), ("ours", ours)):
            print(f"  {name:16s} {med['density'][name]:7.2f} s  mean eigenvalue {spec.moment(1):.3e}, mean square "
                  f"{spec.moment(2):.3e}, top node {np.nanmax(spec.nodes):.4f}, mass "
                  f"{np.trapezoid(spec.density(grid, sigma)[1], grid):.4f}")
        print(f"  L1 distance of the densities (sigma {sigma:.3g}): {l1:.3f} (0 = equal, 2 = disjoint); "
              f"pyhessian / ours: {speedup:.2f}x")
        result["density"] = {"runs": args.slq_runs, "steps": args.slq_steps, "sigma": sigma, "l1": l1,
                             "products": {"pyhessian": pyh_products["density"], "ours": ours.products},
                             "moments": {"pyhessian": [pyh.moment(1), pyh.moment(2)],
                                         "ours": [ours.moment(1), ours.moment(2)]},
                             "top_node": {"pyhessian": float(np.nanmax(pyh.nodes)),
                                          "ours": float(np.nanmax(ours.nodes))},
                             "seconds": med["density"], "speedup": speedup}
    if len(batches) > 1:
        result["pyhessian_graph_builds_per_product"] = len(batches)
        print(f"on {len(batches)} batches PyHessian rebuilds every batch's forward and gradient graph for every "
              "product (its dataloader mode), ours builds each once per call: at equal products, the PyHessian / "
              "ours ratios of the trace and the density are that implementation gain, not an algorithm")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
