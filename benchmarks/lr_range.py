"""LR range test: ``LRRangeFinder`` (ours) vs Lightning's own ``LearningRateFinder``, side by side.

Smith, "Cyclical Learning Rates for Training Neural Networks" (arXiv 1506.01186), Section 3.3. Both finders
sweep the same exponential lr range over the same number of optimizer steps, on the same model (CIFAR
ResNet-20 through ``ImageClassifier``, which has an ``lr`` attribute) and the same data (the embedded digits,
``DigitsDataModule``), each inside a one-step ``Trainer.fit`` with identical settings, in one process,
alternating round by round so that drift in machine speed hits both alike. Neither applies its suggestion
(``update_attr=False`` / ``apply=None``), both stop at 4x the best smoothed loss.

Timed: the finder's hook (the sweep plus its save/restore; Lightning writes and reads a checkpoint file,
ours keeps a copy in memory) and the whole ``fit`` (Trainer start-up, the sweep, one training step).

Two problems:
  * ``standard``: batch 64 from the initial weights;
  * ``noisy``: batch 4 (high-variance loss), from weights warmed up by ``--warm-steps`` steps of SGD, where
    a range test is typically re-run mid-training. Lightning's EMA bias correction divides by
    ``1 - beta**(step + 2)`` at its first point, so its first smoothed loss is about half the real one and its
    4x divergence test compares against that: it can stop far earlier than the loss really diverges.

Usage::

    python benchmarks/lr_range.py                 # defaults below, CPU
    python benchmarks/lr_range.py --rounds 3 --steps 100

Prints a table per problem, the ratio ours/Lightning of the sweep time (goal <= 1.0), both suggestions, at
which step each stopped, then one JSON line.
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
from lightning.pytorch.callbacks import LearningRateFinder

from lightning_papers.callbacks import LRRangeFinder
from lightning_papers.data import DigitsDataModule
from lightning_papers.modules import ImageClassifier


class TimedLightning(LearningRateFinder):
    """Lightning's finder, its ``on_fit_start`` (where it runs the sweep) timed."""

    def on_fit_start(self, trainer, pl_module):
        start = time.perf_counter()
        super().on_fit_start(trainer, pl_module)
        self.seconds = time.perf_counter() - start


class TimedOurs(LRRangeFinder):
    """Our finder, its ``on_train_start`` (where it runs the sweep) timed."""

    def on_train_start(self, trainer, pl_module):
        start = time.perf_counter()
        super().on_train_start(trainer, pl_module)
        self.seconds = time.perf_counter() - start


def make_model(seed: int, warm_state: dict | None) -> ImageClassifier:
    L.seed_everything(seed, verbose=False)
    model = ImageClassifier("resnet20", num_classes=10, lr=0.01, momentum=0.9, weight_decay=5e-4)
    if warm_state is not None:
        model.load_state_dict(warm_state)
    return model


# set from --accelerator / --precision in main(): every Trainer of the comparison runs alike
TRAINER_KW = {"accelerator": "cpu", "precision": "32-true"}


def trainer(root: str, callbacks: list, max_steps: int = 1) -> L.Trainer:
    return L.Trainer(
        **TRAINER_KW,
        devices=1,
        max_steps=max_steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=root,
    )


def warm_up(steps: int, seed: int, root: str) -> dict | None:
    if steps <= 0:
        return None
    model = make_model(seed, None)
    model.lr = 0.05
    trainer(root, [], max_steps=steps).fit(model, DigitsDataModule(batch_size=64, seed=0))
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def run_one(kind: str, args, batch_size: int, steps: int, warm_state, root: str) -> dict:
    common = dict(min_lr=args.min_lr, max_lr=args.max_lr)
    if kind == "lightning":
        finder = TimedLightning(num_training_steps=steps, mode="exponential", early_stop_threshold=4.0,
                                update_attr=False, **common)
    else:
        finder = TimedOurs(num_steps=steps, spacing="exponential", divergence_factor=4.0, save_results=False, **common)
    model = make_model(args.seed, warm_state)
    data = DigitsDataModule(batch_size=batch_size, seed=0)
    start = time.perf_counter()
    trainer(root, [finder]).fit(model, data)
    fit_seconds = time.perf_counter() - start
    if kind == "lightning":
        res = finder.optimal_lr
        points = len(res.results["lr"])
        suggestion = res.suggestion()
        stop = "completed" if points >= steps else "diverged"
    else:
        res = finder.result
        points = len(res.lrs)
        suggestion = res.suggestion
        stop = res.stop_reason
    return {"sweep_s": finder.seconds, "fit_s": fit_seconds, "points": points, "stop": stop,
            "suggestion": suggestion}


def run_problem(name: str, args, batch_size: int, steps: int, warm_state, root: str) -> dict:
    runs: dict[str, list[dict]] = {"lightning": [], "ours": []}
    for r in range(args.rounds):
        order = ("lightning", "ours") if r % 2 == 0 else ("ours", "lightning")
        for kind in order:
            runs[kind].append(run_one(kind, args, batch_size, steps, warm_state, root))
    summary = {}
    for kind, rs in runs.items():
        summary[kind] = {
            "sweep_s_median": statistics.median(r["sweep_s"] for r in rs),
            "fit_s_median": statistics.median(r["fit_s"] for r in rs),
            "points": [r["points"] for r in rs],
            "stop": [r["stop"] for r in rs],
            "suggestion": [r["suggestion"] for r in rs],
        }
    summary["ratio_sweep"] = summary["ours"]["sweep_s_median"] / summary["lightning"]["sweep_s_median"]
    summary["ratio_fit"] = summary["ours"]["fit_s_median"] / summary["lightning"]["fit_s_median"]
    print(f"\n== {name}: batch {batch_size}, {steps} steps, lr {args.min_lr:g} -> {args.max_lr:g}, "
          f"{args.rounds} rounds ==")
    print(f"{'finder':<10} {'sweep s (median)':>17} {'fit s (median)':>15} {'points':>12} {'stop':>22}  suggestion")
    for kind in ("lightning", "ours"):
        s = summary[kind]
        sugg = ", ".join("None" if v is None else f"{v:.3g}" for v in s["suggestion"])
        print(f"{kind:<10} {s['sweep_s_median']:>17.2f} {s['fit_s_median']:>15.2f} "
              f"{'/'.join(map(str, s['points'])):>12} {'/'.join(s['stop']):>22}  {sugg}")
    print(f"ratio ours/lightning: sweep {summary['ratio_sweep']:.2f}, whole fit {summary['ratio_fit']:.2f}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="sweep steps, standard problem")
    parser.add_argument("--noisy-steps", type=int, default=100, help="sweep steps, noisy problem")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--noisy-batch-size", type=int, default=4)
    parser.add_argument("--warm-steps", type=int, default=46, help="SGD steps before the noisy test (0: cold)")
    parser.add_argument("--min-lr", type=float, default=1e-4)
    parser.add_argument("--max-lr", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-standard", action="store_true")
    parser.add_argument("--accelerator", default="cpu", help="Lightning accelerator: cpu, gpu, auto")
    parser.add_argument("--precision", default="32-true", help="Lightning precision, e.g. bf16-mixed")
    args = parser.parse_args()
    TRAINER_KW.update(accelerator=args.accelerator, precision=args.precision)

    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_papers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    out = {
        "benchmark": "lr_range", "cpu": cpu_name(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "lightning": L.__version__, "seed": args.seed,
    }
    print(f"CPU: {out['cpu']} ({out['threads']} threads), torch {out['torch']}, lightning {out['lightning']}")
    with tempfile.TemporaryDirectory() as root:
        if not args.skip_standard:
            out["standard"] = run_problem("standard", args, args.batch_size, args.steps, None, root)
        warm = warm_up(args.warm_steps, args.seed, root)
        out["noisy"] = run_problem(f"noisy (warm-up {args.warm_steps} steps)", args, args.noisy_batch_size,
                                   args.noisy_steps, warm, root)
    out["args"] = vars(args)
    print(json.dumps(out, default=float))


if __name__ == "__main__":
    main()
