"""Fidelity: does 1cycle reach the piecewise-constant baseline's accuracy in a fraction of its steps?

Superseded as a test of the claim by ``fidelity_superconvergence.py``, which trains the baseline to its plateau
and compares across budgets (this script's 160-step baseline is itself still climbing); kept because it drives
the real ``SuperConvergence`` callback under ``Trainer`` (``gpu_check.sh`` runs it in bf16).

Smith & Topin, Super-Convergence: Very Fast Training of Neural Networks Using Large Learning Rates, 2017
(arXiv 1708.07120): on CIFAR-10, ResNet-56 with 1cycle (0.1 -> 3.0 -> 0.1, then annihilation) reached 92.4% in
10k iterations, the piecewise-constant baseline (0.35, x0.1 at 50k and 70k) 91.2% in 80k - 1/8 of the steps.
Smith & Topin, Exploring loss function topology with cyclical learning rates, 2017 (arXiv 1702.04283) is the
companion paper on the loss topology behind it.

Here the same comparison runs on scikit-learn's embedded digits (offline, a CPU in minutes):

* ``baseline``: ``ImageClassifier(scheduler="multistep", scheduler_interval="step")``, ``--baseline-steps``
  optimizer steps, x0.1 at 62.5% and 87.5% of them (the paper's 50k/70k of 80k);
* ``1cycle``: ``SuperConvergence`` over ``--ratio`` x the baseline's steps (default 1/4; paper 1/8).

Both validate every ``--val-every`` optimizer steps. For each seed we report the optimizer steps each run needs
to first reach the baseline's *final* validation accuracy (same seed), and the final accuracies; then mean and
standard deviation over seeds. The goal is 1cycle steps <= 0.25x the baseline's total steps.

Usage::

    python benchmarks/superconvergence.py                    # 3 seeds, ResNet-20, batch 64, 16px
    python benchmarks/superconvergence.py --seeds 0 1 2 3 4 --baseline-steps 400 --max-lr 1.0

Prints a table and one JSON line.

Measured (2-core AMD EPYC, shared with other jobs, load ~6; torch 2.14.1, 2 threads), seed 0 only, defaults:
baseline 160 steps -> 97.2% (first reached at step 136), 330 s; 1cycle 40 steps (0.05 -> 0.4 -> annihilation)
-> 75.6%, never reaching 97.2%: the effect did NOT appear at this scale and setting (one seed; not tuned).
About 6 min per seed on that machine, so the 3-seed default takes ~20 min there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import lightning as L
import torch
from _common import cpu_name
from lightning.pytorch.callbacks import Callback

from lightning_papers.callbacks import SuperConvergence
from lightning_papers.data import DigitsDataModule
from lightning_papers.modules import ImageClassifier


class ValCurve(Callback):
    """(optimizer step, validation accuracy) after every validation run."""

    def __init__(self) -> None:
        self.points: list[tuple[int, float]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.points.append((trainer.global_step, float(trainer.callback_metrics["val/acc"])))


def run(method: str, seed: int, args: argparse.Namespace) -> dict:
    L.seed_everything(seed, verbose=False)
    steps = args.baseline_steps
    if method != "baseline":
        steps = max(args.val_every, round(args.baseline_steps * args.ratio))
    steps -= steps % args.val_every  # the last step is validated
    if method == "baseline":
        milestones = [round(0.625 * steps), round(0.875 * steps)]
        model = ImageClassifier("resnet20", lr=args.baseline_lr, momentum=0.9, weight_decay=args.weight_decay,
                                scheduler="multistep", milestones=milestones, scheduler_interval="step")
        callbacks: list[Callback] = []
    else:
        model = ImageClassifier("resnet20", lr=args.max_lr, momentum=0.9, weight_decay=args.weight_decay)
        callbacks = [SuperConvergence(args.max_lr, div_factor=args.div_factor, anneal="linear",
                                      cycle_momentum=args.cycle_momentum, pct_start=args.pct_start)]
    curve = ValCurve()
    data = DigitsDataModule(batch_size=args.batch_size, val_fraction=0.2, seed=0, size=args.size)
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, precision=args.precision,
        max_steps=steps, val_check_interval=args.val_every,
        check_val_every_n_epoch=None, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[*callbacks, curve],
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return {"method": method, "seed": seed, "steps": steps, "curve": curve.points, "final_acc": curve.points[-1][1],
            "seconds": time.perf_counter() - t0}


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((step for step, acc in curve if acc >= target - 1e-9), None)


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--baseline-steps", type=int, default=160, help="optimizer steps of the baseline")
    p.add_argument("--ratio", type=float, default=0.25, help="1cycle steps as a fraction of the baseline's")
    p.add_argument("--val-every", type=int, default=8, help="validate every this many optimizer steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, default=16, help="image side (digits are 8x8 upsampled)")
    p.add_argument("--baseline-lr", type=float, default=0.1)
    p.add_argument("--max-lr", type=float, default=0.4, help="1cycle peak (starts at max_lr / div_factor)")
    p.add_argument("--div-factor", type=float, default=8.0)
    p.add_argument("--pct-start", type=float, default=0.45)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--cycle-momentum", action="store_true", help="0.95 -> 0.85 -> 0.95 instead of constant 0.9")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--accelerator", default="cpu", help="Lightning accelerator: cpu, gpu, auto")
    p.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        base = run("baseline", seed, args)
        one = run("1cycle", seed, args)
        target = base["final_acc"]
        for r in (base, one):
            r["steps_to_target"] = steps_to_reach(r["curve"], target)
            r["target"] = target
        rows += [base, one]

    print(f"digits, ResNet-20, batch {args.batch_size}, {args.size}px; {cpu_name()}, torch {torch.__version__}, "
          f"{args.threads} threads; seeds {args.seeds}")
    print(f"{'seed':>4} {'method':>8} {'steps':>6} {'final acc':>9} {'target':>7} {'steps to target':>15} {'s':>6}")
    for r in rows:
        reach = "never" if r["steps_to_target"] is None else str(r["steps_to_target"])
        print(f"{r['seed']:>4} {r['method']:>8} {r['steps']:>6} {r['final_acc']:>9.4f} {r['target']:>7.4f} "
              f"{reach:>15} {r['seconds']:>6.1f}")
    summary: dict = {"benchmark": "superconvergence", "data": "digits", "model": "resnet20",
                     "batch_size": args.batch_size, "size": args.size, "seeds": args.seeds,
                     "cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
                     "config": {k: v for k, v in vars(args).items() if k not in ("seeds",)}}
    for method in ("baseline", "1cycle"):
        sel = [r for r in rows if r["method"] == method]
        acc_m, acc_s = mean_std([r["final_acc"] for r in sel])
        reach = [r["steps_to_target"] for r in sel]
        st_m, st_s = mean_std(reach)
        summary[method] = {"steps": sel[0]["steps"], "final_acc_mean": acc_m, "final_acc_std": acc_s,
                           "steps_to_target_mean": st_m, "steps_to_target_std": st_s,
                           "reached": sum(v is not None for v in reach), "runs": len(sel)}
        print(f"{method:>8}: final acc {acc_m:.4f} +- {acc_s:.4f}; steps to the baseline's final acc "
              f"{st_m:.1f} +- {st_s:.1f} (reached in {summary[method]['reached']}/{len(sel)})")
    ratios = [o["steps_to_target"] / b["steps"] for b, o in zip(rows[0::2], rows[1::2])
              if o["steps_to_target"] is not None]
    summary["ratio_to_baseline_steps"] = mean_std(ratios) if len(ratios) == len(args.seeds) else None
    summary["seconds"] = time.perf_counter() - t0
    if summary["ratio_to_baseline_steps"] is not None:
        m, s = summary["ratio_to_baseline_steps"]
        print(f"1cycle needs {m:.3f} +- {s:.3f} x the baseline's steps (goal <= 0.25; paper 10k/80k = 0.125)")
    else:
        print("1cycle did not reach the baseline's final accuracy in every seed (goal: <= 0.25x the steps)")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
