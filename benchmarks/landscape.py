"""Loss-surface throughput: ``lightning_papers.landscape.surface`` vs the original code's per-point cost model.

Li, Xu, Taylor, Studer, Goldstein, Visualizing the Loss Landscape of Neural Nets, 2018 (arXiv 1712.09913).
Their per-point loop rebuilds the perturbed weights from CPU copies, loads them into the model, and runs the
evaluation data loader (with its per-batch input transform) for every grid point, in fp32. We re-implement that
cost model here (our own code, same steps) as the ``naive`` reference, and compare it with ``surface`` on the
same model, directions, grid and data, in one process:

  * ``naive``: per point ``load_state_dict({k: centre_cpu + a d1_cpu + b d2_cpu})`` (moved to the device),
    then a ``DataLoader`` over the raw uint8 images with the normalisation applied per batch;
  * ``ours``: ``surface(...)`` (batches cached on the device, in-place ``_foreach`` weight updates), with the
    speed options asked for (``--fold-bn``, ``--channels-last``, ``--compile``, ``--bf16``; ``--fast`` = all
    three layout/kernel options, and bf16 on CUDA);
  * ``eval``: plain passes of the model over the same cached batches, one per grid point - the bar: a point
    cannot cost less than one pass.

Usage::

    python benchmarks/landscape.py                                   # CPU, ResNet-20, 128 digits, 3x3 grid
    python benchmarks/landscape.py --fold-bn --channels-last         # the same with the CPU's fast options
    python benchmarks/landscape.py --device cuda --model resnet56 --data synthetic --images 10000 \\
        --batch-size 1000 --grid 11 11 --fast

Prints a table, the ratio ours/naive (points per second) and our efficiency vs the eval bar, then a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from _common import cpu_name, device_name, sync
from torch.utils.data import DataLoader, TensorDataset

from lightning_papers.data import DigitsDataModule, SyntheticDataModule
from lightning_papers.landscape import prepare_batches, random_directions, surface
from lightning_papers.models import get_model


def naive_surface(model, directions, axes, images, labels, transform, batch_size, device):
    """The original cost model: rebuild weights from CPU copies and run a DataLoader for every point."""
    centre = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    dirs = [{k: t.detach().cpu() for k, t in d.tensors.items()} for d in directions]
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=False, num_workers=0)
    shape = tuple(len(a) for a in axes)
    loss = np.full(shape, np.nan)
    model.eval()
    for idx in np.ndindex(*shape):
        state = dict(centre)
        for j, d in enumerate(dirs):
            a = float(axes[j][idx[j]])
            for k, t in d.items():
                state[k] = state[k] + a * t
        model.load_state_dict({k: v.to(device) for k, v in state.items()})
        total, n = 0.0, 0
        with torch.no_grad():
            for x, y in loader:
                x, y = transform(x.to(device)), y.to(device)
                out = model(x)
                total += float(F.cross_entropy(out, y, reduction="sum"))
                n += len(y)
        loss[idx] = total / n
    model.load_state_dict({k: v.to(device) for k, v in centre.items()})
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", default="digits", choices=("digits", "synthetic"),
                        help="digits: the embedded real images (at most 359); synthetic: CIFAR-shaped noise")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--grid", type=int, nargs=2, default=(3, 3))
    parser.add_argument("--backend", default="inplace", choices=("inplace", "vmap"))
    parser.add_argument("--bf16", action="store_true", help="ours under bf16 autocast (the naive loop stays fp32)")
    parser.add_argument("--fold-bn", action="store_true", help="ours with BatchNorm folded into the convs")
    parser.add_argument("--channels-last", action="store_true", help="ours in channels_last memory format")
    parser.add_argument("--compile", action="store_true", help="ours through torch.compile (compiled before timing)")
    parser.add_argument("--fast", action="store_true",
                        help="--fold-bn --channels-last --compile, and --bf16 on CUDA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median time is reported")
    args = parser.parse_args()
    if args.fast:
        args.fold_bn = args.channels_last = args.compile = True
        args.bf16 = args.bf16 or args.device.startswith("cuda")

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if args.data == "digits":  # real images, but only 359 of them in the validation split
        dm = DigitsDataModule()
        dm.setup("fit")
        images, labels = dm.val_set.tensors
    else:  # CIFAR-shaped uint8 noise, as many images as asked for (the GPU goals are set for 10k and 50k)
        dm = SyntheticDataModule(num_samples=args.images, seed=args.seed)
        dm.setup("fit")
        images, labels = dm.train_set.tensors
    images, labels = images[: args.images], labels[: args.images]
    args.images = len(images)
    model = get_model(args.model).to(device)
    with torch.no_grad():  # sensible BatchNorm statistics for a fresh model
        model.train()(dm.transform(images.to(device)))
    model.eval()
    directions = random_directions(model, n=2, seed=args.seed)
    axes = (np.linspace(-1, 1, args.grid[0]), np.linspace(-1, 1, args.grid[1]))
    points = args.grid[0] * args.grid[1]
    batches = prepare_batches((images, labels), device, args.batch_size, transform=dm.transform)

    with torch.no_grad():  # warm-up
        model(batches[0][0])
    sync(device)

    def run_eval():  # as many plain eval passes as the grid has points: the same amount of model work
        # (under the same autocast as ours: the bar is the model's own throughput at that precision)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
        with torch.no_grad(), autocast:
            for _ in range(points):
                for x, _ in batches:
                    model(x)

    def run_naive():
        return naive_surface(model, directions, axes, images, labels, dm.transform, args.batch_size, device)

    options = dict(backend=args.backend, autocast_dtype=torch.bfloat16 if args.bf16 else None,
                   fold_bn=args.fold_bn, channels_last=args.channels_last, compile=args.compile)
    flags = [name for name, on in (("bf16", args.bf16), ("fold_bn", args.fold_bn),
                                   ("channels_last", args.channels_last), ("compile", args.compile)) if on]

    def run_ours():
        return surface(model, directions, axes, batches, metrics=("loss",), **options)["loss"]

    compile_s = 0.0
    if args.compile:  # compile once before timing (later surfaces reuse the compiled graph)
        t0 = time.perf_counter()
        surface(model, directions, ([0.5], [0.5]), batches, metrics=("loss",), **options)
        sync(device)
        compile_s = time.perf_counter() - t0

    # Alternate the contenders round by round (the machine may be shared): median time of each.
    times: dict[str, list[float]] = {"eval": [], "naive": [], "ours": []}
    outputs = {}
    for _ in range(args.rounds):
        for name, fn in (("eval", run_eval), ("naive", run_naive), ("ours", run_ours)):
            t0 = time.perf_counter()
            outputs[name] = fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    eval_s, naive_s, ours_s = (statistics.median(times[k]) for k in ("eval", "naive", "ours"))
    ref, ours = outputs["naive"], {"loss": outputs["ours"]}

    rows = [
        ("naive (rebuild + DataLoader per point)", points / naive_s, naive_s / points),
        (f"ours (surface, {', '.join([args.backend, *flags])})", points / ours_s, ours_s / points),
        (f"bar: eval passes over cached batches{', bf16' if args.bf16 else ''}", points / eval_s, eval_s / points),
    ]
    print(f"model {args.model}, {args.images} images, batch {args.batch_size}, grid {args.grid[0]}x{args.grid[1]}, "
          f"device {device} ({device_name(device)}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'contender':60s} {'points/s':>10s} {'s/point':>10s}")
    for name, pps, spp in rows:
        print(f"{name:60s} {pps:10.3f} {spp:10.3f}")
    if args.compile:
        print(f"compiling (one surface of one point, before timing): {compile_s:.1f} s")
    max_diff = float(np.nanmax(np.abs(ours["loss"] - ref)))
    max_rel = float(np.nanmax(np.abs(ours["loss"] - ref) / np.maximum(np.abs(ref), 1e-12)))
    print(f"ours/naive speed-up: {naive_s / ours_s:.2f}x; efficiency vs eval bar: {eval_s / ours_s:.2%}; "
          f"max |loss diff| {max_diff:.2e} (relative {max_rel:.2e}); "
          f"loss range {np.nanmin(ref):.3g}..{np.nanmax(ref):.3g}")
    print(json.dumps({
        "benchmark": "landscape", "model": args.model, "data": args.data, "images": args.images,
        "batch_size": args.batch_size,
        "grid": list(args.grid), "device": str(device), "device_name": device_name(device),
        "cpu": cpu_name(), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "backend": args.backend, "bf16": args.bf16, "fold_bn": args.fold_bn,
        "channels_last": args.channels_last, "compile": args.compile, "compile_s": compile_s, "rounds": args.rounds,
        "naive_points_per_s": points / naive_s, "ours_points_per_s": points / ours_s,
        "eval_passes_per_s": points / eval_s,
        "speedup": naive_s / ours_s, "efficiency_vs_eval": eval_s / ours_s, "max_abs_loss_diff": max_diff,
        "max_rel_loss_diff": max_rel,
    }))


if __name__ == "__main__":
    main()
