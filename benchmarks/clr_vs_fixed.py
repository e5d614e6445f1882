"""Fidelity: does ``triangular2`` with range-test bounds reach the best fixed lr's accuracy in fewer steps?

Smith, "Cyclical Learning Rates for Training Neural Networks" (arXiv 1506.01186), Section 4.1.1 / Table 1: on
CIFAR-10, ``triangular2`` reached in 25,000 iterations the 81.4% that the best fixed learning rate reached in
70,000. Here, in miniature, on the embedded digits (``DigitsDataModule``, 16x16 so that a CPU run takes
minutes; the digits are 8x8, nothing is lost) with the CIFAR ResNet-20 (``ImageClassifier``, SGD momentum
0.9, weight decay 5e-4, batch 64):

  * fixed: a small sweep of constant learning rates (``--fixed-lrs``) at the first seed; the one with the best
    final validation accuracy is the fixed policy, then run at every seed;
  * CLR: ``LRRangeFinder`` (``--finder-steps`` steps, 1e-3 -> 3, exponential) then
    ``CyclicalLR("finder", "finder", policy="triangular2", step_size=--step-size)`` - the recipe
    ``lightning_papers/recipes/clr/resnet20_digits_triangular2.yaml``.

Both train ``--max-steps`` optimizer steps (a whole number of cycles) and validate every ``--val-every`` steps
on the whole validation split (360 images). For each seed the target is the fixed policy's final validation
accuracy; the score of each policy is the first validated step at which it reaches that target (the fixed
policy may reach it before its last step). Reported: mean +- std over the seeds, CLR's range-test steps
separately (they are training-free but cost compute).

Usage::

    python benchmarks/clr_vs_fixed.py                       # defaults: 3 seeds, ~8 min on a 2-core CPU
    python benchmarks/clr_vs_fixed.py --seeds 0 1 --max-steps 144

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
import warnings

import lightning as L
import torch
from _common import cpu_name
from lightning.pytorch.callbacks import Callback

from lightning_papers.callbacks import CyclicalLR, LRRangeFinder
from lightning_papers.data import DigitsDataModule
from lightning_papers.modules import ImageClassifier


class AccuracyTrace(Callback):
    """(optimizer step, validation accuracy) after every validation run."""

    def __init__(self) -> None:
        self.trace: list[tuple[int, float]] = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.trace.append((trainer.global_step, float(trainer.callback_metrics["val/acc"])))


def train(args, seed: int, lr: float | None, root: str) -> dict:
    """One run: a fixed ``lr``, or (``lr=None``) the range test + triangular2."""
    L.seed_everything(seed, verbose=False)
    model = ImageClassifier("resnet20", num_classes=10, lr=lr or 0.01, momentum=0.9, weight_decay=5e-4,
                            image_size=(3, args.size, args.size))
    data = DigitsDataModule(batch_size=args.batch_size, seed=0, size=args.size)
    trace = AccuracyTrace()
    callbacks: list[Callback] = [trace]
    finder = None
    if lr is None:
        finder = LRRangeFinder(min_lr=1e-3, max_lr=3.0, num_steps=args.finder_steps, save_results=False)
        callbacks += [finder, CyclicalLR("finder", "finder", step_size=args.step_size, policy="triangular2")]
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, precision=args.precision,
        max_steps=args.max_steps, val_check_interval=args.val_every,
        check_val_every_n_epoch=None, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks, default_root_dir=root,
    )
    start = time.perf_counter()
    trainer.fit(model, data)
    out = {"seed": seed, "lr": lr, "trace": trace.trace, "final": trace.trace[-1][1],
           "seconds": time.perf_counter() - start}
    if finder is not None:
        out["clr_bounds"] = finder.result.clr_bounds
        out["finder_points"] = len(finder.result.lrs)
    return out


def steps_to(trace: list[tuple[int, float]], target: float) -> int | None:
    return next((step for step, acc in trace if acc >= target - 1e-12), None)


def mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} +- {std:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fixed-lrs", type=float, nargs="+", default=[0.02, 0.05, 0.1])
    parser.add_argument("--max-steps", type=int, default=48)
    parser.add_argument("--step-size", type=int, default=12)
    parser.add_argument("--finder-steps", type=int, default=24)
    parser.add_argument("--val-every", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=16)
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator: cpu, gpu, auto")
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed")
    args = parser.parse_args()
    if args.max_steps % (2 * args.step_size):
        parser.error("--max-steps must be a whole number of cycles (2 x --step-size)")

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_papers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    started = time.perf_counter()
    info = {"benchmark": "clr_vs_fixed", "cpu": cpu_name(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "lightning": L.__version__}
    print(f"CPU: {info['cpu']} ({info['threads']} threads), torch {info['torch']}, lightning {info['lightning']}")

    with tempfile.TemporaryDirectory() as root:
        first = args.seeds[0]
        sweep = {lr: train(args, first, lr, root) for lr in args.fixed_lrs}
        for lr, run in sweep.items():
            print(f"sweep seed {first}: fixed lr {lr:g} -> final val acc {run['final']:.4f} ({run['seconds']:.0f} s)")
        best_lr = max(args.fixed_lrs, key=lambda lr: sweep[lr]["final"])
        fixed = {first: sweep[best_lr]} | {s: train(args, s, best_lr, root) for s in args.seeds[1:]}
        clr = {s: train(args, s, None, root) for s in args.seeds}

    rows = []
    for s in args.seeds:
        target = fixed[s]["final"]
        rows.append({
            "seed": s, "target": target, "fixed_steps": steps_to(fixed[s]["trace"], target),
            "clr_steps": steps_to(clr[s]["trace"], target), "clr_final": clr[s]["final"],
            "clr_bounds": clr[s]["clr_bounds"], "finder_points": clr[s]["finder_points"],
        })
    print(f"\nbest fixed lr: {best_lr:g}; {args.max_steps} steps, triangular2 step size {args.step_size}, "
          f"val every {args.val_every} steps, batch {args.batch_size}, {args.size}x{args.size}")
    print(f"{'seed':>4} {'target acc':>10} {'fixed: steps':>12} {'CLR: steps':>10} {'CLR final':>9} "
          f"{'finder pts':>10}  CLR bounds")
    for r in rows:
        bounds = "None" if r["clr_bounds"] is None else f"{r['clr_bounds'][0]:.3g} .. {r['clr_bounds'][1]:.3g}"
        clr_steps = "not reached" if r["clr_steps"] is None else str(r["clr_steps"])
        print(f"{r['seed']:>4} {r['target']:>10.4f} {r['fixed_steps']:>12} {clr_steps:>10} {r['clr_final']:>9.4f} "
              f"{r['finder_points']:>10}  {bounds}")
    reached = [r["clr_steps"] for r in rows if r["clr_steps"] is not None]
    summary = {
        "best_fixed_lr": best_lr,
        "fixed_steps": mean_std([r["fixed_steps"] for r in rows]),
        "clr_steps_where_reached": mean_std(reached),
        "clr_reached": f"{len(reached)}/{len(rows)}",
        "fixed_final_acc": mean_std([100 * r["target"] for r in rows]),
        "clr_final_acc": mean_std([100 * r["clr_final"] for r in rows]),
        "wall_clock_s": round(time.perf_counter() - started, 1),
    }
    print(f"steps to the fixed policy's final accuracy: fixed {summary['fixed_steps']}, CLR "
          f"{summary['clr_steps_where_reached']} (reached in {summary['clr_reached']} seeds; plus "
          f"{args.finder_steps} range-test steps); final val acc % fixed {summary['fixed_final_acc']}, CLR "
          f"{summary['clr_final_acc']}; wall-clock {summary['wall_clock_s']} s")
    print(json.dumps({**info, **summary, "rows": rows, "args": vars(args),
                      "sweep": {str(lr): run["final"] for lr, run in sweep.items()}}, default=float))


if __name__ == "__main__":
    main()
