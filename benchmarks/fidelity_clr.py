"""Fidelity: does ``triangular2`` with range-test bounds reach the best fixed rate's accuracy in fewer iterations?

Smith, Cyclical Learning Rates for Training Neural Networks, 2017 (arXiv 1506.01186), Table 1: on CIFAR-10
``triangular2`` reached in 25,000 iterations the 81.4 % that the fixed policy reached in 70,000 - 0.36 of them.
Its bounds come from the LR range test (Section 3.3).

The same comparison in miniature on the digits (``_fidelity.digits_split``: 8x8 px, a stratified split drawn per
seed of ``--train-size`` training and ``--val-size`` validation images, the rest the test set, so that no policy
saturates within a few steps), ResNet-20, SGD momentum 0.9, weight decay 5e-4, batch 64, a budget of ``--steps``
optimizer steps for every run:

* **fixed**: a sweep of constant rates (``--fixed-lrs``) on every seed; the fixed policy is the rate with the best
  mean (over the seeds) of its best smoothed *validation* accuracy (a tuned baseline, chosen on validation);
* **CLR**: per seed, a range test with our ``LRRangeFinder``'s parts (``_fidelity.range_test``: ``Ramp`` 1e-3 ->
  10 over ``--finder-steps``, ``SmoothedLoss``, ``LRRangeResult.schedule_bounds()``) on the seed's training images,
  then ``Cyclical`` in ``triangular2`` mode between those bounds, ``--cycles`` whole cycles over the budget.

Both arms are validated on the same steps (every ``--val-every``, mid-cycle included, not only at the bottom of a
cycle) and both curves are smoothed alike: a trailing mean over ``--smooth`` consecutive evaluations (full windows
only). The **target** of a seed is the fixed policy's best smoothed validation accuracy (not one noisy point); each
arm's *steps to target* is the first validated step whose smoothed accuracy reaches it (for the fixed policy, where
its smoothed curve peaks). **Every seed counts**: a CLR run that never reaches the target counts as the full budget
(the least it could have needed; favourable to CLR) and is reported as a miss. The written rule
(``_fidelity.verdict``): per-seed differences CLR minus fixed steps, 95 % t-interval; **shown** when it lies below 0
(the paper's direction), **contradicted** above, **inconclusive** otherwise. Reported beside it: CLR's steps as a
fraction of the fixed policy's (paper 0.36) and the paired difference of test accuracies at the end of the budget
(read once, not part of the verdict). A range test whose curve cannot be read (``LRRangeResult.problems``) is
reported with its reasons. Prints tables and one JSON line.

Usage::

    python benchmarks/fidelity_clr.py
    python benchmarks/fidelity_clr.py --steps 480 --cycles 4   # the check that the target is the fixed policy's best
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
from _fidelity import (
    digits_split,
    fmt,
    load_average,
    load_averages,
    make_model,
    mean_std,
    paired_block,
    range_test,
    train,
)

from lightning_papers.schedules import Cyclical


class Constant:
    """A constant learning rate (picklable, like every schedule of the package)."""

    def __init__(self, lr: float) -> None:
        self.lr = lr

    def __call__(self, step: int) -> float:
        return self.lr


def smoothed(curve: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    """The trailing mean of ``window`` consecutive evaluations, at the step of the last one (full windows only)."""
    return [(curve[i][0], sum(acc for _, acc in curve[i - window + 1 : i + 1]) / window)
            for i in range(window - 1, len(curve))]


def steps_to(curve: list[tuple[int, float]], target: float) -> int | None:
    """First validated step whose (smoothed) accuracy reaches ``target``; ``None`` when none does."""
    return next((step for step, acc in curve if acc >= target - 1e-12), None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=240, help="optimizer steps of every run")
    p.add_argument("--cycles", type=int, default=3, help="whole triangular2 cycles in the budget")
    p.add_argument("--fixed-lrs", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3])
    p.add_argument("--finder-steps", type=int, default=100)
    p.add_argument("--val-every", type=int, default=10, help="validate both arms every this many steps")
    p.add_argument("--smooth", type=int, default=3, help="consecutive evaluations in the trailing mean")
    p.add_argument("--size", type=int, default=8)
    p.add_argument("--train-size", type=int, default=300)
    p.add_argument("--val-size", type=int, default=300, help="validation images; the rest of the 1,797 is the test set")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fast", action="store_true", help="a smoke test of the script: tiny runs, two seeds")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.fast:
        args.seeds, args.steps, args.cycles, args.fixed_lrs = args.seeds[:2], 16, 1, args.fixed_lrs[:2]
        args.finder_steps, args.val_every, args.train_size, args.smooth = 12, 4, 200, 2
    if args.steps % (2 * args.cycles):
        raise SystemExit(f"error: Expected `--steps` to be a multiple of 2 x --cycles ({2 * args.cycles}), got "
                         f"{args.steps}")
    if args.steps // args.val_every < args.smooth:
        raise SystemExit(f"error: Expected at least --smooth ({args.smooth}) evaluations in the budget, got "
                         f"{args.steps // args.val_every} (--steps {args.steps}, --val-every {args.val_every}); "
                         "validate more often")
    torch.set_num_threads(args.threads)
    t0, load0, uptime0 = time.perf_counter(), load_average(), load_averages()
    task = digits_split(args.size, args.train_size, args.val_size, seed=args.seeds[0])
    print(f"{task.describe()} (split drawn per seed); ResNet-20, batch 64, {args.steps} steps per run; {cpu_name()}, "
          f"torch {torch.__version__}, {args.threads} threads; seeds {args.seeds}; load average {load0}", flush=True)

    fixed: dict[float, dict[int, dict]] = {lr: {} for lr in args.fixed_lrs}
    clr, finders = {}, {}
    for seed in args.seeds:
        task = digits_split(args.size, args.train_size, args.val_size, seed=seed)
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
        best_val = {lr: max(a for _, a in smoothed(fixed[lr][seed]["curve"], args.smooth)) for lr in args.fixed_lrs}
        print(f"seed {seed}: fixed " + ", ".join(f"{lr:g} -> best smoothed val {100 * v:.1f} %"
                                                 for lr, v in best_val.items())
              + f"; CLR {base:.3g} .. {peak:.3g} -> final val {100 * clr[seed]['final_acc']:.1f} %"
              + (" (range test NOT trustworthy)" if result.problems else "")
              + f" ({time.perf_counter() - t0:.0f} s, load {load_average()})", flush=True)

    def best_smoothed(run: dict) -> float:
        return max(acc for _, acc in smoothed(run["curve"], args.smooth))

    # the fixed policy: the rate with the best mean best-smoothed validation accuracy (a choice on validation)
    sweep = {lr: mean_std([best_smoothed(fixed[lr][s]) for s in args.seeds]) for lr in args.fixed_lrs}
    best = max(args.fixed_lrs, key=lambda lr: sweep[lr][0])
    rows = []
    for seed in args.seeds:
        fixed_curve = smoothed(fixed[best][seed]["curve"], args.smooth)
        clr_curve = smoothed(clr[seed]["curve"], args.smooth)
        target = max(acc for _, acc in fixed_curve)
        reached = steps_to(clr_curve, target)
        rows.append({"seed": seed, "target": target, "fixed_steps": steps_to(fixed_curve, target),
                     "clr_steps": reached, "clr_reached": reached is not None,
                     "clr_steps_counted": args.steps if reached is None else reached,
                     "clr_best_smoothed": max(acc for _, acc in clr_curve),
                     "fixed_test": fixed[best][seed]["test_acc"], "clr_test": clr[seed]["test_acc"],
                     "fixed_val_final": fixed[best][seed]["final_acc"], "clr_val_final": clr[seed]["final_acc"],
                     "bounds": finders[seed]["bounds"], "trusted": not finders[seed]["problems"]})
    print("\nfixed-rate sweep (best smoothed validation acc %, mean over seeds): "
          + "; ".join(f"{lr:g}: {fmt([best_smoothed(fixed[lr][s]) for s in args.seeds])}" for lr in args.fixed_lrs)
          + f" -> fixed policy {best:g}")
    print(f"{'seed':>4} {'target %':>9} {'fixed: steps':>13} {'CLR: steps':>11} {'test % fixed':>13} "
          f"{'test % CLR':>11}  CLR bounds")
    for r in rows:
        clr_steps = f"miss ({args.steps})" if r["clr_steps"] is None else str(r["clr_steps"])
        print(f"{r['seed']:>4} {100 * r['target']:>9.1f} {r['fixed_steps']:>13} {clr_steps:>11} "
              f"{100 * r['fixed_test']:>13.1f} {100 * r['clr_test']:>11.1f}  {r['bounds'][0]:.3g} .. "
              f"{r['bounds'][1]:.3g}" + ("" if r["trusted"] else "  (range test flagged)"))
    n = len(rows)
    hits = sum(r["clr_reached"] for r in rows)
    # the written rule: per-seed CLR steps (a miss counted as the full budget) minus fixed steps; the paper: < 0
    steps_block = paired_block([r["clr_steps_counted"] for r in rows], [r["fixed_steps"] for r in rows], "less")
    fraction = [r["clr_steps_counted"] / r["fixed_steps"] for r in rows]
    test_block = paired_block([r["clr_test"] for r in rows], [r["fixed_test"] for r in rows], "greater")
    verdict = steps_block["verdict"]
    seconds = time.perf_counter() - t0
    print(f"steps to the target: fixed {fmt([r['fixed_steps'] for r in rows], 1, 0)}, CLR "
          f"{fmt([r['clr_steps_counted'] for r in rows], 1, 0)} (reached in {hits}/{n}; a miss counts as {args.steps});"
          f" CLR - fixed {steps_block['mean']:+.0f} steps, 95 % CI [{steps_block['ci'][0]:+.0f}, "
          f"{steps_block['ci'][1]:+.0f}] -> {verdict}; CLR / fixed {fmt(fraction, 1, 2)} (paper 0.36); test acc CLR - "
          f"fixed {100 * test_block['mean']:+.1f} points [{100 * test_block['ci'][0]:+.1f}, "
          f"{100 * test_block['ci'][1]:+.1f}]; {seconds:.0f} s, load average {load0} at start, {load_average()} at end")
    summary = {
        "benchmark": "fidelity_clr", "claim": "triangular2 reaches the fixed policy's accuracy in 25k instead "
        "of 70k iterations (Smith, arXiv 1506.01186)", "task": task.describe() + " (split drawn per seed)",
        "model": "resnet20", "seeds": args.seeds, "n": n, "steps": args.steps, "best_fixed_lr": best,
        "target": f"the fixed policy's best trailing mean of {args.smooth} validation evaluations (every "
                  f"{args.val_every} steps), per seed",
        "miss_counts_as": args.steps,
        "fixed_sweep": {str(lr): dict(zip(("mean", "std", "n"), sweep[lr])) for lr in args.fixed_lrs},
        "rows": rows, "finders": {str(k): v for k, v in finders.items()},
        "clr_reached": f"{hits}/{n}", "clr_fraction_of_fixed_steps": dict(zip(("mean", "std", "n"),
                                                                              mean_std(fraction))),
        "fixed_test_acc": mean_std([r["fixed_test"] for r in rows]),
        "clr_test_acc": mean_std([r["clr_test"] for r in rows]),
        "paired": {"CLR steps - fixed steps": steps_block}, "paired_verdict": verdict,
        "test_acc_clr_minus_fixed": test_block,
        "curves": {"fixed": {str(s): fixed[best][s]["curve"] for s in args.seeds},
                   "clr": {str(s): clr[s]["curve"] for s in args.seeds}},
        "verdict": verdict, "seconds": seconds, "load_average": [load0, load_average()],
        "uptime": {"start": uptime0, "end": load_averages()}, "cpu": cpu_name(),
        "threads": args.threads, "torch": torch.__version__, "args": vars(args),
    }
    print(json.dumps(summary, default=float))
    return summary


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
