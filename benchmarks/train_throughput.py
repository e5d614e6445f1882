"""Training throughput: ``ImageClassifier`` with and without every callback vs a bare LightningModule vs a loop.

All three train the same CIFAR ResNet on the same synthetic CIFAR-shaped batches (``SyntheticDataModule``,
with the same device-side augmentation and normalisation) with the same SGD settings, precision and memory
format, in one process, alternating round by round so that drift in machine speed hits all of them alike.
Each contender is timed from the end of its warm-up steps to the end of its last step (device
synchronised), so Trainer start-up is not counted but every per-step cost (hooks, logging, metrics) is.

References, named honestly:
  * ``plain``: a hand-written PyTorch loop (zero_grad / forward / cross_entropy / backward / step);
  * ``bare``: the smallest LightningModule that does the same under ``Trainer`` (no logging, no metrics);
  * ``ours``: ``lightning_papers.modules.ImageClassifier`` (logs loss, updates accuracy) under ``Trainer``;
  * ``callbacks``: the same with every callback of the package attached: ``TensorBoardLayout``,
    ``ConvArithmeticSummary``, an ``LRRangeFinder`` (done before the timed steps), ``CyclicalLR`` with the
    finder's bounds (setting the lr and momentum every step) and a ``LossLandscapeProbe`` that fires only after
    the timed steps. ``callbacks/bare`` is what a user pays per step for the package; ``callbacks/ours`` the
    callbacks' share of it.

The Trainers run without a logger (so no contender pays for writing events).

Usage::

    python benchmarks/train_throughput.py                      # CPU, ResNet-20, batch 128
    python benchmarks/train_throughput.py --device cuda --model resnet56 --batch-size 512 \\
        --precision bf16-mixed --channels-last --steps 100 --warmup 20

Prints a table, the ratios ours/plain and ours/bare (time per step; 1.00 = no overhead), then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from contextlib import nullcontext

import lightning as L
import torch
import torch.nn.functional as F
from _common import backward_step, device_name, sync
from lightning.pytorch.callbacks import Callback

from lightning_papers.callbacks import (
    ConvArithmeticSummary,
    CyclicalLR,
    LossLandscapeProbe,
    LRRangeFinder,
    TensorBoardLayout,
)
from lightning_papers.data import SyntheticDataModule
from lightning_papers.models import get_model
from lightning_papers.modules import ImageClassifier

LR, MOMENTUM, WD = 0.1, 0.9, 1e-4


def every_callback() -> list[Callback]:
    """Every callback of the package, the probe and the range test outside the timed steps."""
    return [
        TensorBoardLayout(),
        ConvArithmeticSummary(),
        LRRangeFinder(1e-3, 1.0, num_steps=5, save_results=False),
        CyclicalLR("finder", "finder", step_size=10, cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                   fallback_lr=(0.01, 0.1)),  # a 5-step sweep cannot be read: its bounds are refused
        LossLandscapeProbe("1d", grid=[0.0, 0.5], num_batches=1, split="train", sharpness=False,
                           save_results=False),
    ]


class BareModule(L.LightningModule):
    def __init__(self, model_name: str, channels_last: bool) -> None:
        super().__init__()
        self.model = get_model(model_name, num_classes=10)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return F.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)


class StepTimer(Callback):
    """Wall time from the start of step ``warmup`` to the end of training, device synchronised."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start = self.end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup and self.start is None:
            sync(pl_module.device)
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        sync(pl_module.device)
        self.end = time.perf_counter()


def hook_seconds(trainer: L.Trainer, module: L.LightningModule, callbacks, calls: int = 2000) -> float:
    """Seconds per step that the callbacks' per-step hooks take, called ``calls`` times on the finished run's
    Trainer: a floor under the per-step overhead that round-to-round noise cannot hide."""
    hooks = [getattr(cb, name) for cb in callbacks for name in ("on_train_batch_start", "on_before_optimizer_step",
                                                                 "on_train_batch_end")
             if getattr(type(cb), name) is not getattr(Callback, name)]
    optimizer = trainer.optimizers[0]
    start = time.perf_counter()
    for _ in range(calls):
        for hook in hooks:
            if hook.__name__ == "on_before_optimizer_step":
                hook(trainer, module, optimizer)
            elif hook.__name__ == "on_train_batch_end":
                hook(trainer, module, None, None, 0)
            else:
                hook(trainer, module, None, 0)
    return (time.perf_counter() - start) / calls


def run_lightning(module: L.LightningModule, dm: SyntheticDataModule, args, extra=(), hooks=None) -> float:
    timer = StepTimer(args.warmup)
    trainer = L.Trainer(
        accelerator=args.device,
        devices=1,
        precision=args.precision,
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer, *extra],  # the timer first: it stops the clock before a probe at train end
        default_root_dir=tempfile.mkdtemp(prefix="train_throughput_"),  # where the callbacks' files go
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    if hooks is not None:
        hooks.append(hook_seconds(trainer, module, extra))
    return (timer.end - timer.start) / args.steps


def run_plain(dm: SyntheticDataModule, args) -> float:
    device = torch.device("cuda" if args.device in ("cuda", "gpu") else args.device)
    model = get_model(args.model, num_classes=10).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
    transform = dm.transform
    dm.normalize.to(device)
    model.train()
    step, start = 0, None
    while step < args.warmup + args.steps:
        for x, y in dm.train_dataloader():
            if step == args.warmup:
                sync(device)
                start = time.perf_counter()
            if step == args.warmup + args.steps:
                break
            x = transform(x.to(device, non_blocking=True), train=True)
            y = y.to(device, non_blocking=True)
            if args.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
            opt.zero_grad(set_to_none=True)
            with ctx:
                loss = F.cross_entropy(model(x), y)
            backward_step(loss, opt, scaler)
            step += 1
    sync(device)
    return (time.perf_counter() - start) / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per contender per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="32-true", help="32-true, bf16-mixed or 16-mixed")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args()
    # what the callbacks rightly say about this synthetic run, once per round: not what is measured
    warnings.filterwarnings("ignore", message=".*(cycle boundary|never reads)")
    if args.device == "gpu":
        args.device = "cuda"

    torch.backends.cudnn.benchmark = True
    load_before = os.getloadavg()[0]
    n_samples = args.batch_size * (args.warmup + args.steps + 1)
    times: dict[str, list[float]] = {"plain": [], "bare": [], "ours": [], "callbacks": []}
    hooks: list[float] = []
    for r in range(args.rounds):
        for name in times:
            torch.manual_seed(r)
            dm = SyntheticDataModule(num_samples=n_samples, batch_size=args.batch_size, seed=r)
            dm.setup("fit")
            if name == "plain":
                t = run_plain(dm, args)
            elif name == "bare":
                t = run_lightning(BareModule(args.model, args.channels_last), dm, args)
            else:
                module = ImageClassifier(args.model, lr=LR, momentum=MOMENTUM, weight_decay=WD,
                                         channels_last=args.channels_last)
                extra = every_callback() if name == "callbacks" else ()
                t = run_lightning(module, dm, args, extra, hooks if name == "callbacks" else None)
            times[name].append(t)

    med = {k: statistics.median(v) for k, v in times.items()}
    # on a shared machine other processes slow some rounds by tens of per cent; each contender's fastest round is
    # the one least disturbed, so its ratio is the steadier figure there (both are printed)
    fastest = {k: min(v) for k, v in times.items()}
    load = (load_before, os.getloadavg()[0])
    name = device_name("cuda" if args.device == "cuda" else "cpu")
    print(f"\n{args.model}, batch {args.batch_size}, {args.precision}, channels_last={args.channels_last}, "
          f"{args.device} ({name}), torch {torch.__version__}, lightning {L.__version__}, "
          f"median of {args.rounds} rounds x {args.steps} steps")
    print(f"{'contender':<34}{'ms/step':>10}{'img/s':>10}")
    labels = {"plain": "plain PyTorch loop", "bare": "bare LightningModule + Trainer",
              "ours": "ImageClassifier + Trainer", "callbacks": "  + every callback"}
    for k, t in med.items():
        print(f"{labels[k]:<34}{t * 1e3:>10.1f}{args.batch_size / t:>10.0f}")
    ratio_plain, ratio_bare = med["ours"] / med["plain"], med["ours"] / med["bare"]
    cb_bare, cb_ours = med["callbacks"] / med["bare"], med["callbacks"] / med["ours"]
    print(f"time per step: ours/plain = {ratio_plain:.3f}x, ours/bare = {ratio_bare:.3f}x, "
          f"bare/plain = {med['bare'] / med['plain']:.3f}x")
    per_round = [c / o for c, o in zip(times["callbacks"], times["ours"])]
    print(f"with every callback: callbacks/bare = {cb_bare:.3f}x, callbacks/ours = {cb_ours:.3f}x "
          f"(per round {', '.join(f'{r:.3f}' for r in per_round)})")
    hook = statistics.median(hooks)
    print(f"fastest round of each: callbacks/bare = {fastest['callbacks'] / fastest['bare']:.3f}x, callbacks/ours = "
          f"{fastest['callbacks'] / fastest['ours']:.3f}x; 1-min load average {load[0]:.1f} -> {load[1]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"the callbacks' per-step hooks alone: {hook * 1e6:.1f} us per step = {hook / med['ours']:.5f}x of a step "
          f"(each hook called 2000 times on the finished run's Trainer)")
    print(json.dumps({
        "benchmark": "train_throughput", "model": args.model, "batch_size": args.batch_size,
        "precision": args.precision, "channels_last": args.channels_last, "device": args.device,
        "device_name": name, "torch": torch.__version__, "lightning": L.__version__,
        "ms_per_step": {k: round(v * 1e3, 3) for k, v in med.items()},
        "img_per_s": {k: round(args.batch_size / v, 1) for k, v in med.items()},
        "ratio_ours_plain": round(ratio_plain, 4), "ratio_ours_bare": round(ratio_bare, 4),
        "ratio_callbacks_bare": round(cb_bare, 4), "ratio_callbacks_ours": round(cb_ours, 4),
        "ratio_callbacks_bare_fastest": round(fastest["callbacks"] / fastest["bare"], 4),
        "ratio_callbacks_ours_fastest": round(fastest["callbacks"] / fastest["ours"], 4),
        "load_average": [round(x, 2) for x in load], "cpus": os.cpu_count(),
        "hook_us_per_step": round(hook * 1e6, 2), "hook_share_of_step": hook / med["ours"],
        "all_ms": {k: [round(x * 1e3, 3) for x in v] for k, v in times.items()},
    }))


if __name__ == "__main__":
    main()
