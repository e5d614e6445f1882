"""``lightning-papers landscape``: the loss surface of a saved checkpoint (Li et al., arXiv 1712.09913).

The recipe YAML names the LightningModule and the data (as for ``lightning-papers fit --config``); the
checkpoint supplies the weights. The surface is computed on the first ``--batches`` validation batches
(normalised as in training, never augmented), saved as ``.npz`` + JSON every few points and resumed when
the command is run again with the same settings (other settings are refused, not mixed in), then drawn
as PNGs and a ParaView ``.vtp``::

    lightning-papers landscape --ckpt runs/quickstart/version_0/checkpoints/epoch=5-step=138.ckpt \\
        --config recipes/quickstart.yaml --grid -1:1:51 --out runs/landscape

This module needs the CLI extra (jsonargparse, through LightningCLI) and is imported only by the command.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["add_subparser", "parse_grid", "run"]


def parse_grid(spec: str) -> np.ndarray:
    """``"START:STOP:POINTS"`` (e.g. ``"-1:1:51"``) as ``np.linspace(START, STOP, POINTS)``.

    Raises:
        ValueError: for anything else, naming the value.
    """
    parts = str(spec).split(":")
    try:
        start, stop, points = float(parts[0]), float(parts[1]), int(parts[2])
        ok = len(parts) == 3 and points >= 1 and start < stop and np.isfinite([start, stop]).all()
    except (ValueError, IndexError):
        ok = False
    if not ok:
        raise ValueError(f"Expected a grid as START:STOP:POINTS with START < STOP and POINTS >= 1 (e.g. -1:1:51), "
                         f"got {spec!r}")
    return np.linspace(start, stop, points)


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        "landscape",
        help="the loss surface of a saved checkpoint (Li et al.)",
        description="Compute, save (resumable) and plot the filter-normalised loss surface of a checkpoint.",
    )
    p.add_argument("--ckpt", required=True, help="Lightning checkpoint (.ckpt) of the model in --config")
    p.add_argument("--config", required=True, help="recipe YAML naming the model and data (as for `fit`)")
    p.add_argument("--grid", default="-1:1:51", help="x axis START:STOP:POINTS (default -1:1:51)")
    p.add_argument("--ygrid", default=None, help="y axis START:STOP:POINTS (default: as --grid)")
    p.add_argument("--mode", choices=("2d", "1d"), default="2d", help="2-D surface or 1-D curve (default 2d)")
    p.add_argument("--batches", type=int, default=4, help="validation batches to evaluate on (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--bf16", action="store_true", help="evaluate under bf16 autocast")
    p.add_argument("--fast", action="store_true",
                   help="fold BatchNorm into the convolutions, channels_last and torch.compile (the same values "
                        "up to float rounding; the first point compiles)")
    p.add_argument("--out", default="runs/landscape", help="output folder (default runs/landscape)")


def _load_module_and_data(config: str, ckpt: str):
    from lightning.pytorch.cli import LightningCLI

    cli = LightningCLI(model_class=None, datamodule_class=None, subclass_mode_model=True, subclass_mode_data=True,
                       run=False, save_config_callback=None,
                       args=["--config", config, "--trainer.logger=false", "--trainer.callbacks=null"])
    if cli.datamodule is None:
        raise ValueError(f"Expected the config {config!r} to name a data module under `data:`")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"Could not read the checkpoint {ckpt!r}: {type(err).__name__}: {err}") from err
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ValueError(f"Expected a Lightning checkpoint with a 'state_dict' in {ckpt!r}")
    cli.model.load_state_dict(state["state_dict"])
    return cli.model, cli.datamodule


def _batches(datamodule, n: int, device: torch.device) -> list:
    datamodule.prepare_data()
    datamodule.setup("validate")
    batches = []
    for batch in datamodule.val_dataloader():
        if len(batches) == n:
            break
        batch = [t.to(device) if isinstance(t, torch.Tensor) else t for t in batch]
        # the datamodule's own device-side step (normalisation; no trainer, so no augmentation)
        batches.append(datamodule.on_after_batch_transfer(batch, 0))
    if not batches:
        raise ValueError("The config's data module has an empty validation loader")
    return batches


def run(args: argparse.Namespace) -> int:
    from lightning_papers.landscape import random_directions, surface, write_vtp

    if not Path(args.ckpt).is_file():
        raise FileNotFoundError(f"Expected --ckpt to be a checkpoint file, got {args.ckpt!r} (no such file)")
    if not Path(args.config).is_file():
        raise FileNotFoundError(f"Expected --config to be a recipe YAML, got {args.config!r} (no such file)")
    if args.batches < 1:
        raise ValueError(f"Expected --batches >= 1, got {args.batches}")
    axes = [parse_grid(args.grid)]
    if args.mode == "2d":
        axes.append(parse_grid(args.ygrid or args.grid))
    from lightning_papers.devices import resolve_device

    device = resolve_device(args.device)  # the image commands' rule: "auto" is CUDA when available

    module, datamodule = _load_module_and_data(args.config, args.ckpt)
    module = module.to(device)
    batches = _batches(datamodule, args.batches, device)
    directions = random_directions(module, len(axes), seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = surface(module, directions, tuple(axes) if len(axes) == 2 else axes[0], batches,
                     autocast_dtype=torch.bfloat16 if args.bf16 else None, path=str(out / "surface"), resume=True,
                     progress=True, fold_bn=args.fast, channels_last=args.fast, compile=args.fast)
    seconds = time.perf_counter() - t0

    import matplotlib

    matplotlib.use("Agg")
    kinds = ("contour", "surface3d") if args.mode == "2d" else ("curve",)
    files = [str(out / "surface.npz"), str(out / "surface.json")]
    for kind in kinds:
        ax = result.plot(kind)
        path = out / f"{kind}.png"
        ax.figure.savefig(path, dpi=100, bbox_inches="tight")
        files.append(str(path))
    if args.mode == "2d":
        write_vtp(result, out / "surface.vtp")
        files.append(str(out / "surface.vtp"))
    new = result.metadata.get("timing", {}).get("points", 0)
    print(f"loss surface of {args.ckpt}: {'x'.join(str(len(a)) for a in axes)} points "
          f"({new} computed now, the rest resumed) in {seconds:.1f} s on {device}; centre loss "
          f"{result.centre_value():.4f}, lowest {np.nanmin(result['loss']):.4f}"
          + (f"; --fast: {result.metadata.get('fold_bn', 0)} BatchNorms folded, channels_last, torch.compile"
             if args.fast and new else ""))
    print("files: " + ", ".join(files))
    return 0
