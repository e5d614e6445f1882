"""Fidelity: does ``triangular2`` with range-test bounds reach the best fixed rate's accuracy in fewer iterations?

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186), Table 1: on CIFAR-10
``triangular2`` reached in 25,000 iterations the 81.4 % that the fixed policy reached in 70,000 - 0.36 of them.
Its bounds come from the LR range test (Section 3.3).

The same comparison in miniature, on the digits task of the super-convergence script (``_fidelity.digits_task``:
8x8 px, 300 training images, 1,497 held out, so that no policy saturates within a few steps), ResNet-20, SGD
momentum 0.9, weight decay 5e-4, batch 64, a budget of ``--steps`` optimizer steps for every run:

* **fixed**: a small sweep of constant rates (``--fixed-lrs``) on every seed; the fixed policy is the rate with
  the best mean final accuracy (the sweep's choice favours the fixed policy, as a tuned baseline should);
* **CLR**: per seed, a range test with our ``LRRangeFinder``'s parts (``_fidelity.range_test``: ``Ramp`` 1e-3 ->
  10 over ``--finder-steps``, ``SmoothedLoss``, ``LRRangeResult.schedule_bounds()``) then ``Cyclical`` in
  ``triangular2`` mode between those bounds, ``--cycles`` whole cycles over the budget (Smith: end on a cycle).

Both are validated every ``--val-every`` steps. The target of each seed is the fixed policy's final held-out
accuracy; reported: the first validated step at which each policy reaches it (mean +- std over the seeds where
it does), the fraction of the fixed policy's budget CLR needed (paper: 25k / 70k = 0.36), and the final
accuracies. A range test whose curve cannot be read (``LRRangeResult.problems``) is reported with its reasons.
Prints tables and one JSON line.

Usage::

    python benchmarks/fidelity_clr.py
    python benchmarks/fidelity_clr.py --seeds 0 1 2 3 --steps 480 --cycles 4
    python benchmarks/fidelity_clr.py --fast       # a smoke test of the script (seconds)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import torch
from _common import cpu_name
from _fidelity import digits_task, fmt, load_average, make_model, mean_std, range_test, train

from lightning_papers.schedules import Cyclical


class Constant:
    """A constant learning rate (picklable, like every schedule of the package)."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def __call__(self, step: int) -> float:
        return self.lr


def steps_to(curve: list[tuple[int, float]], target: float) -> int | None:
    """First validated step whose accuracy reaches ``target``."""
    return next((step for step, acc in curve if acc >= target - 1e-12), None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=240, help="optimizer steps of every run")
    p.add_argument("--cycles", type=int, default=3, help="whole triangular2 cycles in the budget")
    p.add_argument("--fixed-lrs", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    p.add_argument("--finder-steps", type=int, default=100)
    p.add_argument("--val-every", type=int, default=20)
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--train-size", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fast", action="store_true", help="a smoke test of the script: tiny runs, one seed")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.fast:
        args.seeds, args.steps, args.cycles, args.fixed_lrs = args.seeds[:1], 16, 1, args.fixed_lrs[:2]
        args.finder_steps, args.val_every, args.train_size = 12, 4, 200
    if args.steps % (2 * args.cycles):
        raise SystemExit(f"error: Expected `--steps` to be a multiple of 2 x --cycles ({2 * args.cycles}), got "
                         f"{args.steps}")
    torch.set_num_threads(args.threads)
    t0, load0 = time.perf_counter(), load_average()
    task = digits_task(args.size, args.train_size)
    print(f"{task.describe()}; ResNet-20, batch 64, {args.steps} steps per run; {cpu_name()}, torch "
          f"{torch.__version__}, {args.threads} threads; seeds {args.seeds}; load average {load0}", flush=True)

    fixed = {lr: {} for lr in args.fixed_lrs}
    clr, finders = {}, {}
    for seed in args.seeds:
        for lr in args.fixed_lrs:
            fixed[lr][seed] = train(make_model(20, seed=seed), task, args.steps, Constant(lr), weight_decay=5e-4,
                                    seed=seed, eval_every=args.val_every)
        result = range_test(task, make_model(20, seed=seed), 1e-3, 10.0, args.finder_steps, seed=seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            base, peak = result.schedule_bounds()  # warns when the curve cannot be trusted
        finders[seed] = {"suggestion": result.suggestion, "bounds": [base, peak], "problems": result.problems,
                         "warnings": [str(w.message) for w in caught]}
        half = args.steps // (2 * args.cycles)
        schedule = Cyclical(base, peak, half, policy="triangular2")
        clr[seed] = train(make_model(20, seed=seed), task, args.steps, schedule, weight_decay=5e-4, seed=seed,
                          eval_every=args.val_every)
        print(f"seed {seed}: fixed " + ", ".join(f"{lr:g} -> {100 * fixed[lr][seed]['final_acc']:.1f} %"
                                                 for lr in args.fixed_lrs)
              + f"; CLR {base:.3g} .. {peak:.3g} -> {100 * clr[seed]['final_acc']:.1f} %"
              + (" (range test NOT trustworthy)" if result.problems else "")
              + f" ({time.perf_counter() - t0:.0f} s, load {load_average()})", flush=True)

    best = max(args.fixed_lrs, key=lambda lr: mean_std([fixed[lr][s]["final_acc"] for s in args.seeds])[0])
    rows = []
    for seed in args.seeds:
        target = fixed[best][seed]["final_acc"]
        rows.append({"seed": seed, "target": target, "fixed_steps": steps_to(fixed[best][seed]["curve"], target),
                     "clr_steps": steps_to(clr[seed]["curve"], target), "clr_final": clr[seed]["final_acc"],
                     "bounds": finders[seed]["bounds"], "trusted": not finders[seed]["problems"]})
    print("\nfixed-rate sweep (final held-out acc %): "
          + "; ".join(f"{lr:g}: {fmt([fixed[lr][s]['final_acc'] for s in args.seeds])}" for lr in args.fixed_lrs)
          + f" -> fixed policy {best:g}")
    print(f"{'seed':>4} {'target %':>9} {'fixed: steps':>13} {'CLR: steps':>11} {'CLR final %':>12}  CLR bounds")
    for r in rows:
        clr_steps = "not reached" if r["clr_steps"] is None else str(r["clr_steps"])
        print(f"{r['seed']:>4} {100 * r['target']:>9.1f} {r['fixed_steps']:>13} {clr_steps:>11} "
              f"{100 * r['clr_final']:>12.1f}  {r['bounds'][0]:.3g} .. {r['bounds'][1]:.3g}"
              + ("" if r["trusted"] else "  (range test flagged)"))
    reached = [r["clr_steps"] for r in rows if r["clr_steps"] is not None]
    fraction = [r["clr_steps"] / args.steps for r in rows if r["clr_steps"] is not None]
    fm, fs, fn = mean_std(fraction)
    n = len(rows)
    if len(reached) == n and fm <= 0.5:
        verdict = "shown"
    elif reached:
        verdict = "partly"
    else:
        verdict = "not shown"
    seconds = time.perf_counter() - t0
    print(f"steps to the fixed policy's final accuracy: fixed {fmt([r['fixed_steps'] for r in rows], 1, 0)}, CLR "
          f"{fmt(reached, 1, 0)} (reached in {len(reached)}/{n} seeds) = {fm:.2f} ± {fs:.2f} of the budget "
          f"(paper 0.36); final acc % fixed {fmt([r['target'] for r in rows])}, CLR "
          f"{fmt([r['clr_final'] for r in rows])}; verdict: {verdict}; {seconds:.0f} s, load average {load0} at "
          f"start, {load_average()} at end")
    summary = {
        "benchmark": "fidelity_clr", "claim": "triangular2 reaches the fixed policy's final accuracy in 25k instead "
        "of 70k iterations (Smith, arXiv 1506.01186)", "task": task.describe(), "model": "resnet20",
        "seeds": args.seeds, "n": n, "steps": args.steps, "best_fixed_lr": best,
        "fixed_sweep": {str(lr): dict(zip(("mean", "std", "n"), mean_std([fixed[lr][s]["final_acc"]
                                                                         for s in args.seeds])))
                        for lr in args.fixed_lrs},
        "rows": rows, "finders": {str(k): v for k, v in finders.items()},
        "clr_reached": f"{len(reached)}/{n}", "clr_fraction_of_budget": [fm, fs, fn],
        "fixed_final_acc": mean_std([r["target"] for r in rows]),
        "clr_final_acc": mean_std([r["clr_final"] for r in rows]),
        "curves": {"fixed": {str(s): fixed[best][s]["curve"] for s in args.seeds},
                   "clr": {str(s): clr[s]["curve"] for s in args.seeds}},
        "verdict": verdict, "seconds": seconds, "load_average": [load0, load_average()], "cpu": cpu_name(),
        "threads": args.threads, "torch": torch.__version__, "args": vars(args),
    }
    print(json.dumps(summary, default=float))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
