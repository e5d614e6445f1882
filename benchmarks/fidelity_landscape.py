"""Fidelity: skip connections, width and small batches give flatter minima (Li et al., arXiv 1712.09913).

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913):
with filter-normalised directions, (i) nets without skip connections have sharper, more chaotic minima (Fig. 5),
(ii) wider nets have flatter ones (Fig. 6, Wide-ResNet-56 with k = 2, 4, 8), and (iii) small-batch minima are
flatter than large-batch ones and generalise better (Sec. 5, Fig. 4-5: batch 128 against 8192 on CIFAR-10).

Networks per seed, trained alike on the embedded digits (``_fidelity.digits_split``: 8x8 px, a stratified split
drawn per seed of ``--train-size`` training and ``--val-size`` validation images, the rest the test set; no choice
is made here, so the test accuracy is reported beside the validation one) for ``--epochs`` epochs of SGD (momentum
0.9, weight decay 5e-4, x0.1 at 62.5 % and 87.5 % of the steps):

* ``resnet20``: ResNet-20, batch ``--small-batch``, lr ``--lr`` - the reference of all three comparisons;
* ``resnet20_noshort``: the same without any shortcut (skip connections);
* ``resnet20_wide2``: every width doubled (32/64/128 filters; width);
* ``resnet20_large_batch``: batch ``--large-batch``, the learning rate scaled linearly with the batch size and
  warmed up linearly over the first 10 % of steps (the linear rule is the common one for such comparisons, Goyal
  et al. 2017; we have not checked it against the paper's appendix), **trained to the reference's training loss**:
  the same schedule stretched to ``--epochs`` times each factor of ``--match-factors`` (a fresh run each) until
  its training loss is at most the reference's (the last factor is kept, and the row says so, when none gets
  there); ``resnet20_large_batch_equal_epochs`` is the first rung, at the reference's epochs (fewer steps), kept
  to report both levels of convergence.

The training loss is the mean cross-entropy over all the seed's training images in eval mode. Sharpness on the
first ``--hessian-images`` training images (BatchNorm on its running statistics): the top Hessian eigenvalue of
the training loss from ``landscape.hessian_eigenvalues`` (Lanczos to a relative residual ``--hessian-tol``; its
residual, product count and converged flag are recorded), and the rise of the training loss within distance 0.5
along ``--directions`` filter-normalised random directions (``landscape.surface`` on ``--points`` over [-1, 1],
``landscape.loss_rise``), averaged over the directions. The eigenvalue is not scale-invariant (BatchNorm nets can
be rescaled), the filter-normalised rise is - that is the paper's point.

The written rule (``_fidelity.verdict``), for each claim: per-seed differences sharper minus flatter of the
eigenvalue and of the rise, 95 % t-intervals, direction "greater"; the claim is **shown** when both are shown,
**contradicted** when either is contradicted, **inconclusive** otherwise. The paired test-accuracy difference
(flatter minus sharper) is reported beside it. Prints a table and one JSON line.

Usage::

    python benchmarks/fidelity_landscape.py
    python benchmarks/fidelity_landscape.py --seeds 0 1 2 3 4 5 6 7 --epochs 40 --plot li.png
    python benchmarks/fidelity_landscape.py --fast       # a smoke test of the script (seconds)
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import cpu_name
from _fidelity import (
    PiecewiseConstant,
    combined_verdict,
    digits_split,
    evaluate,
    fmt,
    load_average,
    load_averages,
    make_model,
    mean_std,
    paired_block,
    train,
)

from lightning_papers.landscape import hessian_eigenvalues, loss_rise, random_directions, surface

VARIANTS = ("resnet20", "resnet20_noshort", "resnet20_wide2", "resnet20_large_batch",
            "resnet20_large_batch_equal_epochs")
# (claim, the reference, the variant expected to be sharper)
COMPARISONS = (("skip connections flatten", "resnet20", "resnet20_noshort"),
               ("width flattens", "resnet20_wide2", "resnet20"),
               ("small batches flatten", "resnet20", "resnet20_large_batch"),
               ("small batches flatten (equal epochs)", "resnet20", "resnet20_large_batch_equal_epochs"))
CURVATURE = ("hessian_top_eigenvalue", "loss_rise_r0.5")


@dataclass(frozen=True)
class WarmedUp:
    """A linear warm-up from ``lr / warmup`` over ``warmup`` steps, then ``schedule``."""

    schedule: PiecewiseConstant
    warmup: int

    def __call__(self, step: int) -> float:
        lr = self.schedule(step)
        return lr * (step + 1) / self.warmup if step < self.warmup else lr


def train_variant(name: str, task, args, seed: int, epochs: int):
    wide = 2 if name == "resnet20_wide2" else 1
    shortcut = "none" if name == "resnet20_noshort" else "A"
    model = make_model(20, wide=wide, shortcut=shortcut, seed=seed)
    batch = args.large_batch if name.startswith("resnet20_large_batch") else args.small_batch
    steps = max(1, epochs * len(task.train_y) // batch)
    lr = args.lr * batch / args.small_batch  # linear scaling (1x for every net but the large-batch one)
    schedule = PiecewiseConstant.for_budget(lr, steps)
    lr_at = WarmedUp(schedule, max(1, steps // 10)) if batch != args.small_batch else schedule
    run = train(model, task, steps, lr_at, weight_decay=5e-4, batch_size=batch, seed=seed)
    return model, {"batch": batch, "lr": lr, "epochs": epochs, "steps": steps, "val_acc": run["final_acc"],
                   "test_acc": run["test_acc"], "diverged": run["diverged"],
                   "train_loss": evaluate(model, task.train_x, task.train_y)[1]}


def sharpness(model, task, args, seed: int) -> dict:
    x, y = task.train_x[: args.hessian_images], task.train_y[: args.hessian_images]
    eig = hessian_eigenvalues(model, (x, y), k=1, tol=args.hessian_tol, max_iter=args.hessian_iters,
                              eigenvectors=False, batch_size=256, seed=seed)
    grid = (np.linspace(-1.0, 1.0, args.points),)
    rises = []
    for direction in random_directions(model, n=args.directions, seed=1000 * seed):  # filter-normalised
        line = surface(model, [direction], grid, (x, y), metrics=("loss",))
        rises.append(float(loss_rise(line, 0.5)))
    return {"hessian_top_eigenvalue": float(eig.eigenvalues[0]), "hessian_residual": float(eig.residuals[0]),
            "hessian_converged": bool(eig.converged), "hessian_products": int(eig.products),
            "loss_rise_r0.5": float(np.mean(rises)), "loss_rises_r0.5": rises}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--train-size", type=int, default=500)
    p.add_argument("--val-size", type=int, default=300, help="validation images; the rest of the 1,797 is the test set")
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--small-batch", type=int, default=32)
    p.add_argument("--large-batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=0.05, help="the small batch's (scaled linearly for the large)")
    p.add_argument("--match-factors", type=int, nargs="+", default=[1, 2, 4, 8],
                   help="the large batch's epochs as multiples of --epochs, tried in turn until its training loss "
                        "is at most the reference's")
    p.add_argument("--hessian-images", type=int, default=256)
    p.add_argument("--hessian-iters", type=int, default=100, help="Lanczos steps at most")
    p.add_argument("--hessian-tol", type=float, default=1e-3, help="relative residual that counts as converged")
    p.add_argument("--directions", type=int, default=5, help="random directions per network for the loss rise")
    p.add_argument("--points", type=int, default=11, help="points of each 1-D line over [-1, 1]")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--plot", default="", help="write the three measures per network here ('' for none)")
    p.add_argument("--fast", action="store_true", help="a smoke test of the script: two seeds, one epoch")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.fast:
        args.seeds, args.epochs, args.train_size, args.hessian_images = args.seeds[:2], 1, 128, 32
        args.hessian_iters, args.points, args.large_batch, args.directions = 8, 5, 64, 2
        args.match_factors = [1, 2]
    if args.match_factors[0] != 1 or sorted(set(args.match_factors)) != args.match_factors:
        raise SystemExit(f"error: Expected `--match-factors` to start at 1 and increase, got {args.match_factors}; "
                         "the first rung is the equal-epochs run")
    torch.set_num_threads(args.threads)
    t0, load0, uptime0 = time.perf_counter(), load_average(), load_averages()
    task = digits_split(args.size, args.train_size, args.val_size, seed=args.seeds[0])
    print(f"{task.describe()} (split resampled per seed); {args.epochs} epochs; {cpu_name()}, torch "
          f"{torch.__version__}, {args.threads} threads; seeds {args.seeds}; load average {load0}", flush=True)
    rows: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for seed in args.seeds:
        task = digits_split(args.size, args.train_size, args.val_size, seed=seed)
        for name in VARIANTS[:3]:
            model, info = train_variant(name, task, args, seed, args.epochs)
            rows[name].append({**info, **sharpness(model, task, args, seed)})
        target = rows["resnet20"][-1]["train_loss"]
        ladder = []
        for factor in args.match_factors:  # the large batch, stretched until it is as converged as the reference
            model, info = train_variant("resnet20_large_batch", task, args, seed, factor * args.epochs)
            ladder.append({"factor": factor, "train_loss": info["train_loss"], "steps": info["steps"]})
            if factor == 1:
                rows["resnet20_large_batch_equal_epochs"].append({**info, **sharpness(model, task, args, seed)})
                if info["train_loss"] <= target:
                    break
            elif info["train_loss"] <= target or factor == args.match_factors[-1]:
                break
        matched = ladder[-1]["train_loss"] <= target
        if len(ladder) == 1:  # matched at equal epochs already: the same network
            rows["resnet20_large_batch"].append(dict(rows["resnet20_large_batch_equal_epochs"][-1]))
        else:
            rows["resnet20_large_batch"].append({**info, **sharpness(model, task, args, seed)})
        rows["resnet20_large_batch"][-1].update({"matched": matched, "ladder": ladder, "target_loss": target})
        print(f"seed {seed}: " + "; ".join(f"{n} test {100 * rows[n][-1]['test_acc']:.1f} %, train loss "
                                           f"{rows[n][-1]['train_loss']:.2g}, eig "
                                           f"{rows[n][-1]['hessian_top_eigenvalue']:.3g}"
                                           f"{'' if rows[n][-1]['hessian_converged'] else ' (not converged)'}, rise "
                                           f"{rows[n][-1]['loss_rise_r0.5']:.3g}" for n in VARIANTS)
              + f"; large batch at {ladder[-1]['factor']}x epochs{'' if matched else ' (NOT matched)'}"
              + f" ({time.perf_counter() - t0:.0f} s, load {load_average()})", flush=True)

    keys = ("val_acc", "test_acc", "hessian_top_eigenvalue", "loss_rise_r0.5", "train_loss")
    stats = {n: {k: dict(zip(("mean", "std", "n"), mean_std([r[k] for r in rows[n]]))) for k in keys} for n in VARIANTS}
    print(f"\n{'':<34} {'test acc %':>18} {'top Hessian eig.':>18} {'loss rise r=0.5':>20} {'train loss':>20}")
    for n in VARIANTS:
        print(f"{n:<34} {fmt([r['test_acc'] for r in rows[n]]):>18} "
              f"{fmt([r['hessian_top_eigenvalue'] for r in rows[n]], 1, 1):>18} "
              f"{fmt([r['loss_rise_r0.5'] for r in rows[n]], 1, 3):>20} "
              f"{fmt([r['train_loss'] for r in rows[n]], 1, 4):>20}")
    runs = [r for n in VARIANTS for r in rows[n]]
    converged = f"{sum(r['hessian_converged'] for r in runs)}/{len(runs)}"
    matched = f"{sum(r['matched'] for r in rows['resnet20_large_batch'])}/{len(args.seeds)}"
    print(f"top eigenvalue converged (relative residual <= {args.hessian_tol:g}) in {converged} networks; the large "
          f"batch matched the reference's training loss in {matched} seeds")
    verdicts = {}
    for claim, flat, sharp in COMPARISONS:
        # the written rule (issue 25): paired per-seed differences sharper - flatter, 95 % t-interval, direction
        # "greater"; the claim is shown when both curvature measures are; test accuracy (flatter - sharper) beside
        paired = {k: paired_block([r[k] for r in rows[sharp]], [r[k] for r in rows[flat]], "greater")
                  for k in CURVATURE}
        paired["test_acc"] = paired_block([r["test_acc"] for r in rows[flat]], [r["test_acc"] for r in rows[sharp]],
                                          "greater")
        per_seed = sum(s["loss_rise_r0.5"] > f["loss_rise_r0.5"] for f, s in zip(rows[flat], rows[sharp]))
        verdict = combined_verdict([paired[k]["verdict"] for k in CURVATURE])
        verdicts[claim] = {"flatter": flat, "sharper": sharp, "seeds_rise_ordered": f"{per_seed}/{len(args.seeds)}",
                           "paired": paired, "paired_verdict": verdict, "verdict": verdict}
        print(f"{claim}: {sharp} - {flat}: " + "; ".join(
            f"{k} {p['mean']:+.3g} [{p['ci'][0]:+.3g}, {p['ci'][1]:+.3g}] {p['verdict']}" for k, p in paired.items())
              + f" -> {verdict}")
    seconds = time.perf_counter() - t0
    print(f"{seconds:.0f} s, load average {load0} at start, {load_average()} at end")
    summary = {
        "benchmark": "fidelity_landscape", "claim": "skip connections, width and small batches give flatter minima "
        "(Li et al., arXiv 1712.09913)", "task": task.describe() + " (split resampled per seed)",
        "seeds": args.seeds, "n": len(args.seeds), "hessian_converged": converged, "large_batch_matched": matched,
        "stats": stats, "rows": rows, "verdicts": verdicts, "seconds": seconds,
        "load_average": [load0, load_average()], "uptime": {"start": uptime0, "end": load_averages()},
        "cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__, "args": vars(args),
    }
    if args.plot:
        plot(summary, args.plot)
        print(f"figure: {args.plot}")
    print(json.dumps(summary, default=float))
    return summary


def plot(summary: dict, path: str | Path) -> Path:
    """Test accuracy, top Hessian eigenvalue and filter-normalised loss rise of each network, mean ± std,
    every seed as a dot."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, 3.8))
    axes = fig.subplots(1, 3)
    labels = {"resnet20": "ResNet-20", "resnet20_noshort": "no\nshortcuts", "resnet20_wide2": "2x\nwider",
              "resnet20_large_batch": f"batch {summary['args']['large_batch']}\nsame\nloss",
              "resnet20_large_batch_equal_epochs": f"batch {summary['args']['large_batch']}\nsame\nepochs"}
    colors = {"resnet20": "k", "resnet20_noshort": "C3", "resnet20_wide2": "C2", "resnet20_large_batch": "C1",
              "resnet20_large_batch_equal_epochs": "C5"}
    measures = (("test_acc", "test accuracy (%)", 100.0, False), ("hessian_top_eigenvalue",
                "top Hessian eigenvalue (log)", 1.0, True), ("loss_rise_r0.5", "loss rise within 0.5 (log)", 1.0, True))
    for ax, (key, title, scale, log) in zip(axes, measures):
        for i, name in enumerate(VARIANTS):
            stats = summary["stats"][name][key]
            values = [scale * r[key] for r in summary["rows"][name]]
            ax.bar(i, scale * stats["mean"], yerr=scale * stats["std"], color=colors[name], alpha=0.35, capsize=3)
            ax.plot([i] * len(values), values, "o", color=colors[name], ms=3)
        ax.set_xticks(range(len(VARIANTS)), [labels[n] for n in VARIANTS], fontsize=6.5)
        ax.set_title(title, fontsize=8.5)
        if log:
            ax.set_yscale("log")
        else:  # accuracies sit near the top: show the top
            low = min(scale * r[key] for n in VARIANTS for r in summary["rows"][n])
            ax.set_ylim(max(0.0, low - 2.0), 100.0)
        ax.grid(alpha=0.3, axis="y")
    verdicts = "; ".join(f"{claim}: {v['verdict']}" for claim, v in summary["verdicts"].items())
    verdicts += f" (paired rule; large batch at matched training loss in {summary['large_batch_matched']} seeds)"
    fig.suptitle(f"Li et al. on {summary['task']}, {summary['args']['epochs']} epochs, n = {summary['n']} seeds "
                 f"(bars: mean ± std, dots: seeds)\n" + textwrap.fill(verdicts, 150), fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, facecolor="white")
    return path


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
