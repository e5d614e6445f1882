"""Fidelity: skip connections smooth the loss landscape (Li et al., arXiv 1712.09913, Fig. 5 and 6).

Trains ResNet-20 and ResNet-20-noshort (same widths, no identity shortcuts) on the embedded digits with
the same optimizer, data and seed, then computes each one's filter-normalised 2-D surface (biases and
norm layers ignored, as in the paper) on the same validation images and compares:

  * the top Hessian eigenvalue at the minimum (power iteration on Hessian-vector products);
  * non-convexity on the plotted plane: the share of interior grid points whose 2x2 finite-difference
    Hessian has a negative eigenvalue, and the mean |lambda_min / lambda_max| there (Li et al. map this
    ratio; 0 is locally convex);
  * the loss rise within radius 0.5 of the centre.

The paper's observation: without shortcuts, deep nets' surfaces turn chaotic and non-convex; ResNet-20
vs its no-short twin is the shallow end of their Fig. 5, where the difference is mild. Writes the two
surface pictures, contours above and the 3-D surface below (``--out``, default ``docs/images``; also
``python -m recipes.make_figures --only landscapes``) and prints one JSON line.

Usage::

    python benchmarks/landscape_skip_connections.py                       # CPU, a few minutes on 2 cores
    python benchmarks/landscape_skip_connections.py --epochs 8 --grid 25 --device cuda
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from _common import device_name

from lightning_papers.data import DigitsDataModule
from lightning_papers.landscape import hessian_top_eigenvalue, loss_rise, prepare_batches, random_directions, surface
from lightning_papers.modules import ImageClassifier


def train(name: str, args) -> ImageClassifier:
    L.seed_everything(args.seed, verbose=False)
    module = ImageClassifier(name, lr=args.lr, momentum=0.9, weight_decay=5e-4, scheduler="multistep",
                             milestones=[int(args.epochs * 0.6), int(args.epochs * 0.85)])
    trainer = L.Trainer(accelerator=args.device, devices=1, max_epochs=args.epochs, logger=False,
                        limit_train_batches=args.limit_train_batches, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=64, seed=0))
    module.val_accuracy = float(trainer.callback_metrics["val/acc"])
    return module


def hessian_2d(z: np.ndarray, h: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (min, max) of the central-difference Hessian at every interior grid point."""
    hx, hy = h
    fxx = (z[2:, 1:-1] - 2 * z[1:-1, 1:-1] + z[:-2, 1:-1]) / hx**2
    fyy = (z[1:-1, 2:] - 2 * z[1:-1, 1:-1] + z[1:-1, :-2]) / hy**2
    fxy = (z[2:, 2:] - z[2:, :-2] - z[:-2, 2:] + z[:-2, :-2]) / (4 * hx * hy)
    mean, diff = (fxx + fyy) / 2, np.sqrt(((fxx - fyy) / 2) ** 2 + fxy**2)
    return mean - diff, mean + diff


def analyse(module: ImageClassifier, batches, axes, args) -> tuple[dict, object]:
    net = module.model.eval()
    directions = random_directions(net, n=2, seed=args.seed)
    result = surface(net, directions, axes, batches, metrics=("loss",))
    z = result["loss"]
    lo, hi = hessian_2d(z, (axes[0][1] - axes[0][0], axes[1][1] - axes[1][0]))
    ratio = np.abs(lo) / np.maximum(np.abs(hi), 1e-12)
    eig = hessian_top_eigenvalue(net, batches, max_iter=args.hessian_iters) if args.hessian_iters > 0 else None
    return {
        "val_acc": module.val_accuracy,
        "centre_loss": float(z[len(axes[0]) // 2, len(axes[1]) // 2]),
        "top_hessian_eigenvalue": float(eig.eigenvalue) if eig is not None else float("nan"),
        "share_nonconvex_points": float(np.mean(lo < 0)),
        "mean_abs_eig_ratio": float(np.mean(ratio)),
        "loss_rise_r0.5": float(loss_rise(result, 0.5)),
        "max_loss_on_grid": float(np.nanmax(z)),
        "surface_seconds": result.metadata["timing"]["seconds"],
    }, result


def _batches(value: str) -> int | float:
    """Lightning's ``limit_train_batches``: ``"4"`` is four batches, ``"0.5"`` half of them."""
    return int(value) if value.isdigit() else float(value)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--limit-train-batches", type=_batches, default=1.0,
                   help="batches per epoch (an int) or a fraction of them (smoke tests)")
    p.add_argument("--grid", type=int, default=15, help="points per axis over [-1, 1]")
    p.add_argument("--images", type=int, default=256, help="validation images the surface is computed on")
    p.add_argument("--hessian-iters", type=int, default=20, help="power iterations (0: skip the eigenvalue)")
    p.add_argument("--device", default="cpu", help="Lightning accelerator (cpu, gpu)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/images", help="folder for the two surface PNGs ('' for none)")
    return p


def compare(args: argparse.Namespace) -> tuple[dict, dict]:
    """Train both networks and analyse their surfaces: ``(rows, results)``, each keyed by model name."""
    dm = DigitsDataModule()
    dm.setup("fit")
    images, labels = (t[: args.images] for t in dm.val_set.tensors)
    device = torch.device("cuda" if args.device in ("gpu", "cuda") else "cpu")
    axes = (np.linspace(-1, 1, args.grid), np.linspace(-1, 1, args.grid))
    rows, results = {}, {}
    for name in ("resnet20", "resnet20_noshort"):
        module = train(name, args).to(device)
        batches = prepare_batches((images, labels), device, 128, transform=dm.transform)
        rows[name], results[name] = analyse(module, batches, axes, args)
    return rows, results


def save_figures(rows: dict, results: dict, out: str | Path, zmax: float = 10.0, dpi: int = 80) -> list[Path]:
    """``out/landscape_<name>.png`` per model: contour lines up to ``zmax`` above, the 3-D surface of log10 loss
    below (the whole grid, no clipping)."""
    from matplotlib.figure import Figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, result in results.items():
        row = rows[name]
        fig = Figure(figsize=(4.2, 6.6))
        ax = fig.add_subplot(2, 1, 1)
        result.plot("contour", ax=ax, levels=np.linspace(0, zmax, 21))
        details = f"loss at the minimum {row['centre_loss']:.3f}"
        if np.isfinite(row["top_hessian_eigenvalue"]):
            details += f", top Hessian eigenvalue {row['top_hessian_eigenvalue']:.0f}"
        ax.set_title(f"{name} on digits, val acc {100 * row['val_acc']:.1f} %\n{details}\n"
                     f"filter-normalised loss, contours 0 .. {zmax:g}", fontsize=8.5)
        ax.set_aspect("equal")
        ax3d = fig.add_subplot(2, 1, 2, projection="3d")
        # the whole grid: the plots' default clip (100 x the centre loss) would cut the no-shortcut walls
        result.plot("surface3d", ax=ax3d, log=True, vmax=float(np.nanmax(result["loss"])))
        ax3d.set_zlabel("log10 loss")
        ax3d.view_init(elev=35, azim=-60)
        fig.tight_layout()
        path = out / f"landscape_{name}.png"
        fig.savefig(path, dpi=dpi)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    t0 = time.perf_counter()
    rows, results = compare(args)
    device = torch.device("cuda" if args.device in ("gpu", "cuda") else "cpu")
    print(f"digits, {args.epochs} epochs, {args.grid}x{args.grid} grid on {args.images} validation images, "
          f"{device_name(device)}, torch {torch.__version__}")
    keys = list(rows["resnet20"])
    print(f"{'':28s}{'resnet20':>14s}{'resnet20_noshort':>18s}")
    for k in keys:
        print(f"{k:28s}{rows['resnet20'][k]:>14.4g}{rows['resnet20_noshort'][k]:>18.4g}")
    if args.out:
        paths = save_figures(rows, results, args.out)
        print("surfaces: " + ", ".join(str(p) for p in paths))
    print(json.dumps({"benchmark": "landscape_skip_connections", "device": device_name(device),
                      "torch": torch.__version__, "args": vars(args), "rows": rows,
                      "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
