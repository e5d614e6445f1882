"""Adaptive refinement vs the paper's full grid (Li et al., arXiv 1712.09913): how much of a 51 x 51 surface it
takes to draw the same picture.

Three briefly trained models: ResNet-20 and its no-shortcut twin (He et al., arXiv 1512.03385) on the embedded
digits, and an MLP on scikit-learn's breast-cancer table (a non-image model). For each: the range framed to the
basin (``landscape.frame_range``), the full 51 x 51 surface on it, and adaptive surfaces at budgets of 10, 20
and 30 % of its points (``surface(..., adaptive=...)``). Against the full surface, in the plotted scale (log10
loss clipped at 100 x the centre loss) over the basin (full loss below the clip):

  * max and mean absolute error of the adaptive picture (evaluated points exact, the rest interpolated);
  * the estimated max error the refinement reported;
  * contour agreement: per contour level of the full picture (20 log-spaced levels), the intersection over union
    of the lattice points below that level, full vs adaptive, averaged over the levels; and the basin's IoU;
  * the wall-time ratio adaptive / full (the scans that frame the range are timed apart).

Writes ``docs/images/landscape_adaptive.png`` (full vs adaptive side by side per model, evaluated points
marked), prints a table and one JSON line. ``--fast``: a smoke run (17 x 17, a few training steps).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/landscape_adaptive.py           # about 8 min on one CPU thread
    python benchmarks/landscape_adaptive.py --fast --out ''
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _common import device_name
from torch import nn

from lightning_papers import landscape as ls
from lightning_papers.models.resnet_cifar import resnet20, resnet20_noshort


def digits(n_val: int, seed: int):
    from lightning_papers.data.digits import load_digits_images

    x, y = load_digits_images(size=32)
    x = x.float() / 127.5 - 1.0
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


def tabular(seed: int):
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = torch.tensor(data.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(data.target)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=g)
    return (x[order[150:]], y[order[150:]]), (x[order[:150]], y[order[:150]])


def train(model: nn.Module, data, steps: int, lr: float, seed: int, batch: int = 64) -> nn.Module:
    torch.manual_seed(seed)
    x, y = data
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(x), (batch,))
        for group in opt.param_groups:  # a linear decay to zero: a settled minimum
            group["lr"] = lr * (1 - step / steps)
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


def compare(name: str, model: nn.Module, val, args) -> tuple[dict, ls.SurfaceResult, dict]:
    dirs = ls.random_directions(model, n=2, seed=args.seed)
    options = dict(metrics={"loss": F.cross_entropy}, batch_size=256)
    t0 = time.perf_counter()
    frame = ls.frame_range(model, dirs, val, **options)
    frame_s = time.perf_counter() - t0
    axes = frame.axes(args.grid)
    t0 = time.perf_counter()
    full = ls.surface(model, dirs, axes, val, **options)
    full_s = time.perf_counter() - t0
    full.metadata["range"] = frame.to_dict()
    centre = full.centre_value()
    g_full, _ = ls.plotted_values(full["loss"], "loss", centre)
    basin = full["loss"] < 100 * centre
    levels = np.log10(ls.surface_scale(full["loss"], centre=centre).levels)
    row = {"model": name, "centre_loss": centre, "range": frame.spans, "frame_evaluations": frame.evaluations,
           "frame_seconds": frame_s, "full_points": int(full.computed.size), "full_seconds": full_s,
           "basin_points": int(basin.sum()), "level_spacing_decades": float(np.mean(np.diff(levels))),
           "budgets": {}}
    adaptive = {}
    for budget in args.budgets:
        t0 = time.perf_counter()
        r = ls.surface(model, dirs, axes, val, adaptive=budget, **options)
        seconds = time.perf_counter() - t0
        r.metadata["range"] = frame.to_dict()
        values, _ = ls.filled_values(r)
        g, _ = ls.plotted_values(values, "loss", centre)
        err = np.abs(g - g_full)[basin]
        ious = []
        for level in levels[1:]:
            a, b = g_full < level, g < level
            if a.any() or b.any():
                ious.append((a & b).sum() / (a | b).sum())
        below = values < 100 * centre
        row["budgets"][f"{round(budget * 100)}%"] = {
            "points": int(r.computed.sum()), "rounds": len(r.metadata["adaptive"]["rounds"]),
            "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
            "estimated_max_error": r.metadata["adaptive"]["estimated_max_error"],
            "contour_iou": float(np.mean(ious)), "basin_iou": float((basin & below).sum() / (basin | below).sum()),
            "seconds": seconds, "time_ratio": seconds / full_s,
        }
        adaptive[budget] = r
    return row, full, adaptive


def save_figure(rows, fulls, adaptives, budget: float, path: Path, dpi: int = 80) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 4.0 * len(rows)))
    for i, (row, full) in enumerate(zip(rows, fulls)):
        r = adaptives[i][budget]
        stats = row["budgets"][f"{round(budget * 100)}%"]
        for j, (res, what) in enumerate(((full, f"full {full.computed.size} points"),
                                         (r, f"adaptive {int(r.computed.sum())} points ({round(budget * 100)} %)"))):
            ax = fig.add_subplot(len(rows), 2, 2 * i + j + 1)
            res.plot("contour", ax=ax, labels=False, mark_points=j == 1)
            ax.set_title(f"{row['model']}: {what}\n" + (
                f"range ±{row['range'][0]:.2g} x ±{row['range'][1]:.2g} (framed)" if j == 0 else
                f"basin error mean {stats['mean_abs_error']:.3f}, max {stats['max_abs_error']:.2f} decades"),
                fontsize=8)
            ax.set_aspect("equal")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    from PIL import Image  # a 64-colour palette: the README's pictures stay under 300 kB

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", type=int, default=51)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    p.add_argument("--steps", type=int, default=150, help="training steps of each ResNet (batch 64)")
    p.add_argument("--images", type=int, default=32, help="validation digits a ResNet surface is computed on")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true", help="a smoke run: 17 x 17 (or --grid), two steps, 8 images")
    p.add_argument("--out", default="docs/images", help="folder of landscape_adaptive.png ('' for none)")
    args = p.parse_args(argv)
    if args.fast:
        args.grid = 17 if args.grid == 51 else args.grid
        args.steps, args.images = 2, 8
    torch.manual_seed(args.seed)
    train_d, val_d = digits(args.images, args.seed)
    train_t, val_t = tabular(args.seed)
    models = {
        "resnet20": lambda: train(resnet20(), train_d, args.steps, 0.05, args.seed),
        "resnet20_noshort": lambda: train(resnet20_noshort(), train_d, args.steps, 0.05, args.seed),
        "mlp (breast cancer)": lambda: train(nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64),
                                                           nn.ReLU(), nn.Linear(64, 2)),
                                             train_t, 10 * args.steps, 0.02, args.seed),
    }
    rows, fulls, adaptives = [], [], []
    t_all = time.perf_counter()
    for name, make in models.items():
        model = make()
        row, full, adaptive = compare(name, model, val_t if "mlp" in name else val_d, args)
        rows.append(row)
        fulls.append(full)
        adaptives.append(adaptive)
    load = os.getloadavg()
    print(f"{'model':20} {'budget':>6} {'points':>6} {'mean err':>8} {'max err':>8} {'est max':>8} "
          f"{'level IoU':>9} {'basin IoU':>9} {'time':>6}")
    for row in rows:
        for b, s in row["budgets"].items():
            print(f"{row['model']:20} {b:>6} {s['points']:>6} {s['mean_abs_error']:8.4f} {s['max_abs_error']:8.3f} "
                  f"{s['estimated_max_error']:8.3f} {s['contour_iou']:9.3f} {s['basin_iou']:9.3f} "
                  f"{s['time_ratio']:6.2f}")
        print(f"{'':20} full 51x51 {row['full_seconds']:.1f} s, frame {row['frame_evaluations']} evaluations "
              f"{row['frame_seconds']:.1f} s, level spacing {row['level_spacing_decades']:.3f} decades")
    summary = {"benchmark": "landscape_adaptive", "grid": args.grid, "device": device_name("cpu"),
               "threads": torch.get_num_threads(), "load_avg": load, "seconds": time.perf_counter() - t_all,
               "rows": rows}
    if args.out:
        path = save_figure(rows, fulls, adaptives, 0.2 if 0.2 in args.budgets else args.budgets[0],
                           Path(args.out) / "landscape_adaptive.png")
        summary["figure"] = str(path)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
