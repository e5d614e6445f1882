"""Fidelity: super-convergence done the paper's way - 1cycle against a *fully trained* piecewise-constant baseline.

Smith & Topin, Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates, 2017
(arXiv 1708.07120): ResNet-56 on CIFAR-10, 1cycle 0.1 -> 3.0 -> 0.1 then annihilation (cyclic momentum
0.95 -> 0.85) reaches 92.4 % in 10k iterations; the piecewise-constant baseline (0.35, x0.1 at 50k and 70k)
91.2 % in 80k, both at weight decay 1e-4. The claim has two halves: 1cycle needs *fewer iterations* for the
same accuracy, and reaches a *better final accuracy*. Their precondition is a long accuracy range test whose
accuracy stays high over a wide range of large rates (their Fig. 1); their Table 1 shows the gain growing as
the training set shrinks, and their Sec. 5 says larger batches help.

The same experiment in miniature, on the embedded digits (``_fidelity.digits_split``: 8x8 px, a 300-image
training subset, ``--val-size`` validation images and the rest a test set, stratified and *drawn per seed*),
ResNet-20, batch 64, SGD. Every choice is made on validation accuracy (mean over the seeds); the test set is
read once, for the chosen configurations, and only there do the verdicts look.

1. **accuracy range test** (the precondition, on ``--sweep-seeds`` seeds): ``--sweep-steps`` steps at a rate
   rising linearly ``--sweep-min-lr`` -> ``--sweep-max-lr`` (momentum 0.9, weight decay 1e-4), validation
   accuracy every ``--sweep-every`` steps. Its high-accuracy range ``[lo, hi]`` is where the seeds' mean
   accuracy (a centred 3-point moving mean: single evaluations at large rates are noisy) is within
   ``SWEEP_TOLERANCE`` (10 points) of its maximum (contiguous around the maximum); the
   precondition holds when ``hi / lo >= SWEEP_SPAN`` (3: high accuracy over a wide range of rates). The 1cycle
   peaks are ``--num-peaks`` rates spaced in log over the decade below ``hi`` (the paper's 1cycle peaks at the
   top of its range).
2. **baseline** ``PiecewiseConstant`` at ``--baseline-lr`` (x0.1 at 62.5 % and 87.5 % of its budget, the
   paper's 50k/70k of 80k), momentum 0.9, at ``B`` (``--budget``) and at ``B/8``, each with every weight decay
   of ``--weight-decays``; at ``2B`` with the decay chosen at ``B``: it counts as trained to its plateau when
   ``2B`` gains less than ``PLATEAU_POINTS`` (0.3) points of validation accuracy (said either way).
3. **1cycle** (``OneCycle``, three-phase, linear, start at peak / ``--div-factor``, annihilation to 1/100 of
   that, momentum 0.95 -> 0.85 -> 0.95) at ``B/8`` and at ``B``, every peak x the *same* weight-decay grid.
4. **arms**, at the configurations chosen above: a larger batch (``--large-batch``, at equal epochs: ``B' =
   B x batch / large-batch`` steps for the baseline, ``B'/8`` for 1cycle) and less data (``--small-train-size``
   images, resampled per seed, same steps).

The written rule (``RULE``, also in the JSON): per seed, the *test* accuracy of one arm minus the other's;
``_fidelity.verdict`` on the paired 95 % t-interval. *Fewer iterations* (1cycle at B/8 - baseline at B) is a
claim of equal accuracy, so it is read with a non-inferiority margin of ``--margin`` (0.5 points): **shown**
when the interval's lower end is above -margin, **contradicted** when its upper end is below -margin,
**inconclusive** otherwise (the rule applied to ``diffs + margin``; the JSON block carries ``margin``). *Better
final accuracy* (1cycle at B - baseline at B): **shown** when the interval excludes 0 upwards, **contradicted**
when it excludes 0 downwards, **inconclusive** otherwise. The claim (``paired_verdict``) is shown when both
halves are, contradicted when either is (``_fidelity.combined_verdict``). The arms and the same-budget
comparison are reported as blocks of their own under the same rule; they do not enter the claim's verdict.

Usage::

    python benchmarks/fidelity_superconvergence.py                  # 5 seeds, the defaults below (~15 min)
    python benchmarks/fidelity_superconvergence.py --plot docs/images/superconvergence.png
    python benchmarks/fidelity_superconvergence.py --fast           # a smoke test of the script (seconds)
    python benchmarks/fidelity_superconvergence.py --device cuda --depth 56 --size 32 --train-size 1000  # larger (GPU)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import cpu_name
from _fidelity import (
    PiecewiseConstant,
    combined_verdict,
    digits_split,
    fmt,
    load_average,
    load_averages,
    make_model,
    mean_std,
    paired_block,
    train,
    verdict,
)

from lightning_papers.schedules import OneCycle, Ramp

PLATEAU_POINTS = 0.3  # the baseline is trained to its plateau when 2B gains less than this (validation, points)
SWEEP_TOLERANCE = 0.10  # the range test's high-accuracy range: within 10 points of the (smoothed) maximum
SWEEP_SPAN = 3.0  # the precondition: that range spans at least 3x in learning rate
SHORT = 8  # the paper's ratio: 10k of 80k iterations

RULE = ("per seed, test accuracy of the first arm minus the second's; 95 % Student-t interval of the paired "
        "differences. A block with 'margin' m (non-inferiority: 'equal accuracy in fewer iterations'): shown when "
        "the interval's lower end > -m, contradicted when its upper end < -m, else inconclusive (the verdict rule "
        "on diffs + m, direction 'greater'). Without a margin: shown when the interval excludes 0 in 'direction', "
        "contradicted when it excludes 0 the other way, else inconclusive. The claim: shown when both halves "
        "(fewer iterations; better final accuracy) are shown, contradicted when either is contradicted, else "
        "inconclusive. Every choice (peak, weight decay) is made on validation accuracy, mean over the seeds.")


def margin_block(a: list, b: list, margin: float) -> dict:
    """A paired block for "equal accuracy": ``a_i - b_i`` with a non-inferiority ``margin`` (the verdict on
    ``diffs + margin``, direction ``"greater"``)."""
    block = paired_block(a, b, "greater")
    block["margin"] = margin
    block["verdict"] = verdict([d + margin for d in block["diffs"]], "greater")
    return block


def high_accuracy_range(lrs: list[float], accs: list[float], tolerance: float = SWEEP_TOLERANCE) -> tuple[int, int]:
    """Indices ``(lo, hi)`` of the contiguous run of points around the maximum of ``accs`` whose accuracy is within
    ``tolerance`` of it."""
    best = int(np.argmax(accs))
    floor = accs[best] - tolerance
    lo = hi = best
    while lo > 0 and accs[lo - 1] >= floor:
        lo -= 1
    while hi + 1 < len(accs) and accs[hi + 1] >= floor:
        hi += 1
    return lo, hi


def smoothed(values: list[float]) -> list[float]:
    """A centred 3-point moving mean (2 points at the ends): one evaluation mid-sweep, at a large rate, is noisy."""
    return [float(np.mean(values[max(0, i - 1) : i + 2])) for i in range(len(values))]


def accuracy_sweep(args, seeds: list[int]) -> dict:
    """The long accuracy range test on each of ``seeds`` (split drawn per seed), read off the seeds' mean curve."""
    ramp = Ramp(args.sweep_min_lr, args.sweep_max_lr, args.sweep_steps, spacing="linear")
    marks = list(range(args.sweep_every, args.sweep_steps + 1, args.sweep_every))
    curves = []
    for seed in seeds:
        task = digits_split(args.size, args.train_size, args.val_size, seed=seed)
        model = make_model(args.depth, seed=seed).to(args.device)
        out = train(model, task, args.sweep_steps, ramp, momentum=0.9, weight_decay=1e-4,
                    batch_size=args.batch_size, seed=seed, eval_at=marks)
        by_step = dict(out["curve"])
        # a run that diverges stops: its later points count at chance (0.1), which is what its weights give
        curves.append([by_step.get(s, 0.1) for s in marks])
    lrs = [ramp(s - 1) for s in marks]
    mean = [float(np.mean(col)) for col in zip(*curves)]
    smooth = smoothed(mean)
    lo, hi = high_accuracy_range(lrs, smooth)
    span = lrs[hi] / lrs[lo] if lrs[lo] > 0 else math.inf
    return {"kind": "accuracy", "steps": args.sweep_steps, "min_lr": args.sweep_min_lr, "max_lr": args.sweep_max_lr,
            "spacing": "linear", "weight_decay": 1e-4, "seeds": seeds, "lrs": lrs, "val_acc": curves,
            "mean_val_acc": mean, "smoothed_val_acc": smooth, "acc_max": max(smooth),
            "lr_at_max": lrs[int(np.argmax(smooth))],
            "high_range": [lrs[lo], lrs[hi]], "span": span, "tolerance": SWEEP_TOLERANCE, "min_span": SWEEP_SPAN,
            "precondition_holds": span >= SWEEP_SPAN,
            "rule": f"high-accuracy range: the contiguous rates around the maximum of the seeds' mean validation "
                    f"accuracy (a centred 3-point moving mean) within {100 * SWEEP_TOLERANCE:g} points of it; the "
                    f"precondition holds when its upper / lower rate >= {SWEEP_SPAN:g}"}


class Runs:
    """Every training run of the script, keyed by its configuration; ``--cache`` keeps them in a JSON-lines file so
    that an interrupted run resumes where it stopped."""

    def __init__(self, args):
        self.args = args
        self.done: dict[str, dict] = {}
        self.path = Path(args.cache) if args.cache else None
        if self.path is not None and self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    record = json.loads(line)
                    self.done[record["key"]] = record
        self.tasks: dict[tuple[int, int], object] = {}

    def task(self, seed: int, train_size: int):
        if (seed, train_size) not in self.tasks:
            self.tasks[(seed, train_size)] = digits_split(self.args.size, train_size, self.args.val_size, seed=seed)
        return self.tasks[(seed, train_size)]

    def run(self, kind: str, lr: float, steps: int, wd: float, seed: int, *, batch: int | None = None,
            train_size: int | None = None) -> dict:
        a = self.args
        batch, train_size = batch or a.batch_size, train_size or a.train_size
        key = (f"{kind}|lr={lr:.6g}|steps={steps}|wd={wd:g}|batch={batch}|train={train_size}|seed={seed}|"
               f"depth={a.depth}|size={a.size}|val={a.val_size}|div={a.div_factor:g}")
        if key not in self.done:
            task = self.task(seed, train_size)
            model = make_model(a.depth, seed=seed).to(a.device)
            if kind == "baseline":
                out = train(model, task, steps, PiecewiseConstant.for_budget(lr, steps), momentum=0.9,
                            weight_decay=wd, batch_size=batch, seed=seed)
            else:
                cycle = OneCycle(steps, lr, div_factor=a.div_factor, final_div_factor=100.0, anneal="linear",
                                 three_phase=True, base_momentum=0.85, max_momentum=0.95)
                out = train(model, task, steps, cycle, momentum_at=cycle.momentum, weight_decay=wd,
                            batch_size=batch, seed=seed)
            record = {"key": key, "val_acc": out["final_acc"], "test_acc": out["test_acc"],
                      "diverged": out["diverged"], "seconds": out["seconds"]}
            self.done[key] = record
            if self.path is not None:
                with self.path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
        return self.done[key]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--budget", type=int, default=640, help="B: optimizer steps of the plateaued baseline")
    p.add_argument("--size", type=int, default=8, help="image side (the digits are 8x8)")
    p.add_argument("--train-size", type=int, default=300, help="training images")
    p.add_argument("--small-train-size", type=int, default=150, help="training images of the limited-data arm")
    p.add_argument("--val-size", type=int, default=300, help="validation images (the rest of the 1,797: test)")
    p.add_argument("--depth", type=int, default=20, help="CIFAR ResNet depth (6n + 2)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--large-batch", type=int, default=128, help="the batch-size arm's batch (equal epochs)")
    p.add_argument("--baseline-lr", type=float, default=0.1)
    p.add_argument("--weight-decays", type=float, nargs="+", default=[1e-4, 5e-4],
                   help="the one weight-decay grid of both arms (each picks its best on validation)")
    p.add_argument("--num-peaks", type=int, default=3, help="1cycle peaks over the decade below the sweep's top")
    p.add_argument("--div-factor", type=float, default=10.0, help="1cycle starts at peak / div_factor")
    p.add_argument("--margin", type=float, default=0.005, help="non-inferiority margin of 'equal accuracy' "
                   "(accuracy, 0.005 = 0.5 points)")
    p.add_argument("--sweep-seeds", type=int, default=3, help="the accuracy range test runs on the first N seeds")
    p.add_argument("--sweep-steps", type=int, default=400)
    p.add_argument("--sweep-every", type=int, default=20, help="validation accuracy every N sweep steps")
    p.add_argument("--sweep-min-lr", type=float, default=0.0)
    p.add_argument("--sweep-max-lr", type=float, default=3.0, help="the paper sweeps 0 -> 3.0")
    p.add_argument("--threads", type=int, default=1, help="torch threads (on a shared CPU one is fastest)")
    p.add_argument("--device", default="cpu", help="where the models train (cpu, cuda); the data stays on the CPU")
    p.add_argument("--cache", default="", help="a JSON-lines file of finished runs, to resume an interrupted run")
    p.add_argument("--plot", default="", help="write the accuracy-vs-budget figure here ('' for none)")
    p.add_argument("--fast", action="store_true", help="a smoke test of the script: tiny budgets, two seeds")
    return p


def _check(args) -> None:
    if args.budget < 2 * SHORT:
        raise SystemExit(f"error: Expected `--budget` >= 16 (its 1/{SHORT} trains at least 2 steps), got "
                         f"{args.budget}; raise it")
    if args.large_batch <= args.batch_size or (args.budget * args.batch_size) % (args.large_batch * SHORT):
        raise SystemExit(f"error: Expected `--large-batch` above --batch-size ({args.batch_size}) with "
                         f"budget x batch ({args.budget * args.batch_size}) divisible by large-batch x {SHORT}, got "
                         f"{args.large_batch}; use a power of two")
    if len(args.seeds) < 2:
        raise SystemExit(f"error: Expected at least 2 seeds (a paired interval needs two), got {args.seeds}")


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.fast:
        args.seeds, args.budget, args.depth, args.sweep_seeds = args.seeds[:2], 32, 8, 2
        args.sweep_steps, args.sweep_every, args.num_peaks, args.train_size, args.small_train_size = 24, 6, 2, 150, 100
    _check(args)
    torch.set_num_threads(args.threads)
    t0, load0, up0 = time.perf_counter(), load_average(), load_averages()
    seeds, wds, n = args.seeds, args.weight_decays, len(args.seeds)
    B, short = args.budget, args.budget // SHORT
    where = cpu_name() if args.device == "cpu" else torch.cuda.get_device_name(args.device)
    task = digits_split(args.size, args.train_size, args.val_size, seed=seeds[0])
    print(f"{task.describe()} (resampled per seed); ResNet-{args.depth}, batch {args.batch_size}; {where}, torch "
          f"{torch.__version__}, {args.threads} threads; seeds {seeds}; load average {up0}", flush=True)

    # 1. the precondition: the long accuracy range test; the 1cycle peaks come from its high-accuracy range
    sweep = accuracy_sweep(args, seeds[: args.sweep_seeds])
    top = sweep["high_range"][1]
    peaks = [float(v) for v in np.geomspace(top / 10, top, args.num_peaks)] if args.num_peaks > 1 else [top]
    print(f"accuracy range test ({args.sweep_steps} steps, {sweep['min_lr']:g} -> {sweep['max_lr']:g} linear, seeds "
          f"{sweep['seeds']}): max {100 * sweep['acc_max']:.1f} % at lr {sweep['lr_at_max']:.3g}; within "
          f"{100 * SWEEP_TOLERANCE:g} points over lr {sweep['high_range'][0]:.3g} .. {top:.3g} ({sweep['span']:.1f}x): "
          f"precondition {'holds' if sweep['precondition_holds'] else 'does NOT hold'}; peaks "
          f"{', '.join(f'{p:.3g}' for p in peaks)} ({time.perf_counter() - t0:.0f} s)", flush=True)

    # 2-3. the grids: baseline at B/8 and B, 1cycle at B/8 and B, every peak x the same weight decays
    runs = Runs(args)
    configs = {("baseline", args.baseline_lr, steps, wd) for steps in (short, B) for wd in wds}
    configs |= {("1cycle", peak, steps, wd) for peak in peaks for steps in (short, B) for wd in wds}
    for seed in seeds:
        for kind, lr, steps, wd in sorted(configs):
            runs.run(kind, lr, steps, wd, seed)
        print(f"seed {seed}: grids done ({time.perf_counter() - t0:.0f} s, load {load_average()})", flush=True)

    def values(kind, lr, steps, wd, field="val_acc", **kw) -> list[float]:
        return [runs.run(kind, lr, steps, wd, s, **kw)[field] for s in seeds]

    def choose(kind: str, steps: int) -> dict:
        """The (lr, wd) of ``kind`` at ``steps`` with the best mean validation accuracy over the seeds."""
        lrs = [args.baseline_lr] if kind == "baseline" else peaks
        grid = {(lr, wd): float(np.mean(values(kind, lr, steps, wd))) for lr in lrs for wd in wds}
        lr, wd = max(grid, key=grid.__getitem__)
        return {"lr": lr, "weight_decay": wd, "val_mean": grid[(lr, wd)],
                "grid": [{"lr": k[0], "weight_decay": k[1], "val_mean": v} for k, v in grid.items()]}

    chosen = {f"{kind} {label}": choose(kind, steps) for kind in ("baseline", "1cycle")
              for label, steps in ((f"B/{SHORT}", short), ("B", B))}
    for name, c in chosen.items():
        print(f"chosen on validation, {name}: lr {c['lr']:.3g}, weight decay {c['weight_decay']:g} "
              f"({100 * c['val_mean']:.1f} %)")
    cb = chosen["baseline B"]

    # the plateau check on validation: the chosen baseline at 2B
    for seed in seeds:
        runs.run("baseline", cb["lr"], 2 * B, cb["weight_decay"], seed)
    base_vals = values("baseline", cb["lr"], B, cb["weight_decay"])
    double_vals = values("baseline", cb["lr"], 2 * B, cb["weight_decay"])
    base_m, base_s, _ = mean_std(base_vals)
    double_m, _, _ = mean_std(double_vals)
    gain = 100 * (double_m - base_m)
    plateau = gain < PLATEAU_POINTS
    print(f"baseline (validation): B = {B} steps -> {fmt(base_vals)} %; 2B -> {fmt(double_vals)} %: doubling gains "
          f"{gain:+.2f} points ({'plateaued' if plateau else 'NOT plateaued: raise --budget'})", flush=True)

    # 4. the arms, at the configurations chosen on validation
    big_steps = B * args.batch_size // args.large_batch
    c_short, c_full = chosen[f"1cycle B/{SHORT}"], chosen["1cycle B"]
    arm_runs = [("baseline", cb, big_steps, {"batch": args.large_batch}),
                ("1cycle", c_short, big_steps // SHORT, {"batch": args.large_batch}),
                ("baseline", cb, B, {"train_size": args.small_train_size}),
                ("1cycle", c_short, short, {"train_size": args.small_train_size})]
    for seed in seeds:
        for kind, c, steps, kw in arm_runs:
            runs.run(kind, c["lr"], steps, c["weight_decay"], seed, **kw)
    print(f"arms done ({time.perf_counter() - t0:.0f} s, load {load_average()})", flush=True)

    def test(kind, c, steps, **kw) -> list[float]:
        return values(kind, c["lr"], steps, c["weight_decay"], "test_acc", **kw)

    base_test = test("baseline", cb, B)
    paired = {
        f"fewer iterations: 1cycle at B/{SHORT} - baseline at B": margin_block(test("1cycle", c_short, short),
                                                                               base_test, args.margin),
        "better final accuracy: 1cycle at B - baseline at B": paired_block(test("1cycle", c_full, B), base_test,
                                                                           "greater"),
    }
    halves = dict(zip(("fewer iterations", "better final accuracy"), (b["verdict"] for b in paired.values())))
    claim_verdict = combined_verdict(list(halves.values()))
    big = {"batch": args.large_batch}
    small = {"train_size": args.small_train_size}
    arms = {
        f"same budget: 1cycle at B/{SHORT} - baseline at B/{SHORT}": paired_block(
            test("1cycle", c_short, short), test("baseline", chosen[f"baseline B/{SHORT}"], short), "greater"),
        f"batch {args.large_batch}: 1cycle at B'/{SHORT} - baseline at B' (B' = {big_steps}, equal epochs)":
            margin_block(test("1cycle", c_short, big_steps // SHORT, **big), test("baseline", cb, big_steps, **big),
                         args.margin),
        f"larger batch helps: 1cycle at batch {args.large_batch} - at batch {args.batch_size} (B/{SHORT} epochs)":
            paired_block(test("1cycle", c_short, big_steps // SHORT, **big), test("1cycle", c_short, short),
                         "greater"),
        f"{args.small_train_size} images: 1cycle at B/{SHORT} - baseline at B": margin_block(
            test("1cycle", c_short, short, **small), test("baseline", cb, B, **small), args.margin),
    }
    test_acc = {name: {**dict(zip(("mean", "std", "n"), mean_std(v))), "per_seed": v} for name, v in {
        "baseline B": base_test, f"baseline B/{SHORT}": test("baseline", chosen[f"baseline B/{SHORT}"], short),
        f"1cycle B/{SHORT}": test("1cycle", c_short, short), "1cycle B": test("1cycle", c_full, B),
        f"baseline B' batch {args.large_batch}": test("baseline", cb, big_steps, **big),
        f"1cycle B'/{SHORT} batch {args.large_batch}": test("1cycle", c_short, big_steps // SHORT, **big),
        f"baseline B, {args.small_train_size} images": test("baseline", cb, B, **small),
        f"1cycle B/{SHORT}, {args.small_train_size} images": test("1cycle", c_short, short, **small),
    }.items()}
    # validation accuracy per schedule and budget, each at the weight decay chosen for it (for the figure)
    accuracy: dict[str, dict[str, dict]] = {"baseline": {}}
    for steps in (short, B):
        wd = choose("baseline", steps)["weight_decay"]
        accuracy["baseline"][str(steps)] = dict(zip(("mean", "std", "n"),
                                                    mean_std(values("baseline", args.baseline_lr, steps, wd))))
    accuracy["baseline"][str(2 * B)] = dict(zip(("mean", "std", "n"), mean_std(double_vals)))
    for peak in peaks:
        accuracy[f"1cycle {peak:.3g}"] = {}
        for steps in (short, B):
            wd = max(wds, key=lambda w: float(np.mean(values("1cycle", peak, steps, w))))
            accuracy[f"1cycle {peak:.3g}"][str(steps)] = dict(zip(("mean", "std", "n"),
                                                                  mean_std(values("1cycle", peak, steps, wd))))
    # the first 1cycle budget whose chosen configuration reaches the baseline at B on validation (for the figure)
    reaches = next((steps for steps, name in ((short, f"1cycle B/{SHORT}"), (B, "1cycle B"))
                    if chosen[name]["val_mean"] >= cb["val_mean"]), None)
    diverged = sum(r["diverged"] for r in runs.done.values())
    seconds = time.perf_counter() - t0
    up1 = load_averages()

    print(f"\ntest accuracy, % (n = {n}; configurations chosen on validation):")
    for name, s in test_acc.items():
        print(f"  {name:<34} {100 * s['mean']:.1f} ± {100 * s['std']:.1f}")
    for name, block in {**paired, **arms}.items():
        margin = f", margin {100 * block['margin']:.1f}" if "margin" in block else ""
        print(f"{name}: {100 * block['mean']:+.2f} points, 95 % CI [{100 * block['ci'][0]:+.2f}, "
              f"{100 * block['ci'][1]:+.2f}] (n={block['n']}{margin}) -> {block['verdict']}")
    print(f"claim: fewer iterations {halves['fewer iterations']}, better final accuracy "
          f"{halves['better final accuracy']} -> {claim_verdict}; precondition "
          f"{'holds' if sweep['precondition_holds'] else 'does not hold'}; {diverged} runs diverged; {seconds:.0f} s, "
          f"load average {up0} at start, {up1} at end")

    summary = {
        "benchmark": "fidelity_superconvergence",
        "claim": f"1cycle reaches a plateaued piecewise-constant baseline's accuracy in 1/{SHORT} of its iterations "
                 "and a better final accuracy at its budget (Smith & Topin, arXiv 1708.07120)",
        "task": task.describe() + " (split resampled per seed)", "model": f"resnet{args.depth}",
        "seeds": seeds, "n": n, "budget": B, "budgets": [short, B], "peaks": peaks, "weight_decays": wds,
        "baseline_lr": args.baseline_lr, "batch_size": args.batch_size, "large_batch": args.large_batch,
        "small_train_size": args.small_train_size, "margin": args.margin,
        "range_test": sweep, "chosen": chosen,
        "baseline_plateau": {"acc_mean": base_m, "acc_std": base_s, "double_budget_acc_mean": double_m,
                             "gain_points": gain, "plateaued": plateau, "on": "validation"},
        "accuracy": accuracy, "test_accuracy": test_acc, "reaches_baseline_at": reaches,
        "rule": RULE, "paired": paired, "halves": halves, "paired_verdict": claim_verdict, "verdict": claim_verdict,
        "arms": arms, "diverged_runs": diverged, "runs": len(runs.done), "seconds": seconds,
        "train_seconds": sum(r["seconds"] for r in runs.done.values()),
        "load_average": [load0, load_average()], "uptime_load": {"start": up0, "end": up1},
        "cpu": cpu_name(), "threads": args.threads, "device": args.device, "torch": torch.__version__,
        "args": {**vars(args), "cache": Path(args.cache).name if args.cache else ""},  # no machine path
    }
    if args.plot:
        plot(summary, args.plot)
        print(f"figure: {args.plot}")
    print(json.dumps(summary, default=float))
    return summary


def plot(summary: dict, path: str | Path) -> Path:
    """Validation error (log scale) against budget: the baseline at B/8, B and 2B and 1cycle at each peak at B/8
    and B, mean ± std over the seeds (each at its best weight decay); the baseline at B as a band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.6, 5.0))
    ax = fig.subplots()
    budget = summary["budget"]
    base = summary["baseline_plateau"]
    err, err_sd = 100 * (1 - base["acc_mean"]), 100 * base["acc_std"]
    ax.axhspan(max(err - err_sd, 1e-2), err + err_sd, color="0.88")
    ax.axhline(err, color="k", ls=":", lw=1, label=f"baseline at B = {budget} steps: {100 - err:.1f} % correct "
                                                    f"(2B: {base['gain_points']:+.2f} points)")
    for i, (name, by_budget) in enumerate(summary["accuracy"].items()):
        steps = sorted(int(s) for s in by_budget)
        means = np.array([100 * (1 - by_budget[str(s)]["mean"]) for s in steps])
        stds = np.array([100 * by_budget[str(s)]["std"] for s in steps])
        style = dict(color="k", marker="o") if name == "baseline" else dict(color=f"C{i - 1}", marker="s")
        label = "piecewise-constant, same budget" if name == "baseline" else f"1cycle, peak {name.split()[1]}"
        ax.errorbar(steps, np.maximum(means, 1e-2), yerr=[np.minimum(stds, means * 0.9), stds], capsize=3, ms=4,
                    lw=1.3, label=label, **style)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    short = summary["budgets"][0]
    ax.set_xticks([short, budget, 2 * budget], [f"B/{budget // short}\n{short}", f"B\n{budget}", f"2B\n{2 * budget}"])
    ax.set_yticks([1, 2, 3, 5, 10, 20, 50, 90], ["1", "2", "3", "5", "10", "20", "50", "90"])
    ax.set_xlabel(f"training budget (optimizer steps, batch {summary['batch_size']})")
    ax.set_ylabel("validation error (%), log scale")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    halves = summary["halves"]
    plateau = "" if base["plateaued"] else " (baseline NOT plateaued)"
    ax.set_title(f"Super-convergence: {summary['model']}, n = {summary['n']} seeds, mean ± std\n{summary['task']}\n"
                 f"test verdicts: fewer iterations {halves['fewer iterations']}, better final accuracy "
                 f"{halves['better final accuracy']}\n{plateau.strip(' ()')}", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, facecolor="white")
    return path


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
