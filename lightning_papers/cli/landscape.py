"""``lightning-papers landscape``: the loss surface of a saved checkpoint (Li et al., Visualizing the Loss Landscape
of Neural Nets, 2018, arXiv 1712.09913).

The recipe YAML names the LightningModule and the data (as for ``lightning-papers fit --config``); the
checkpoint supplies the weights. What is evaluated is the module's own loss, as ``LossLandscapeProbe`` evaluates
it inside training (what ``training_step`` returns, else ``validation_step``; accuracy too for a classifier), on
the first ``--batches`` validation batches taken through the module's and the datamodule's own transfer hooks
under an evaluation stage (normalised as in training, never augmented). A ``Trainer`` runs ``validate`` and the
surface is computed as validation starts, so Lightning places the model on the device, sets the precision
(``--bf16``: bf16 autocast) and connects the data; the evaluation is the one ``LossLandscapeProbe`` builds
(:func:`lightning_papers.callbacks.evaluation.module_spec`). ``--fast`` folds BatchNorm,
runs channels_last and compiles a copy of the network, which has no training step: it evaluates cross-entropy
and accuracy, so it is for classifiers (``(inputs, class targets)`` batches, logits out, cross-entropy as the
module's own loss) and refuses anything else.

The surface is saved as ``.npz`` + JSON every few points and resumed when the command is run again with the same
settings (other settings are refused, not mixed in), then drawn as PNGs (contour, heatmap, 3-D: levels log-spaced
from the minimum up to 100 times the centre loss, the clip said in each picture and printed) and a ParaView
``.vtp``::

    lightning-papers landscape --ckpt runs/quickstart/version_0/checkpoints/epoch=5-step=138.ckpt \\
        --config lightning_papers/recipes/quickstart.yaml --grid -1:1:51 --out runs/landscape
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lightning_papers.landscape.result import SurfaceResult
from lightning_papers.landscape.storage import SurfaceStore

__all__ = ["add_subparser", "parse_grid", "run"]


def parse_grid(spec: str) -> np.ndarray:
    """``"START:STOP:POINTS"`` (e.g. ``"-1:1:51"``) as ``np.linspace(START, STOP, POINTS)``.

    Raises:
        ValueError: for anything else, naming the value.
    """
    return np.linspace(*_grid_spec(spec))


def _grid_spec(spec: str) -> tuple[float, float, int]:
    """(START, STOP, POINTS) of a grid, checked; nothing allocated (a size is sized before it is made)."""
    parts = str(spec).split(":")
    try:
        start, stop, points = float(parts[0]), float(parts[1]), int(parts[2])
        ok = len(parts) == 3 and points >= 1 and start < stop and np.isfinite([start, stop]).all()
    except (ValueError, IndexError):
        ok = False
    if not ok:
        raise ValueError(f"Expected a grid as START:STOP:POINTS with START < STOP and POINTS >= 1 (e.g. -1:1:51), "
                         f"got {spec!r}")
    return start, stop, points


# A lower bound of the time per batch evaluated at one grid point (a tiny model on a CPU); the real cost is higher.
_SECONDS_PER_BATCH = 1e-3
_BYTES_PER_POINT = 64  # the grid's coordinates, loss, accuracy, the done mask and the plots' copies
_PICTURES = ("contour.png", "heatmap.png", "surface3d.png", "curve.png", "surface.vtp")


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        "landscape",
        help="the loss surface of a saved checkpoint (Li et al.)",
        description="Compute, save (resumable) and plot the filter-normalised loss surface of a checkpoint: the "
        "module's own loss (and accuracy for a classifier) on fixed validation batches.",
    )
    p.add_argument("--ckpt", required=True, help="Lightning checkpoint (.ckpt) of the model in --config")
    p.add_argument("--config", required=True, help="recipe YAML naming the model and data (as for `fit`)")
    p.add_argument("--grid", default="-1:1:51", help="x axis START:STOP:POINTS (default -1:1:51)")
    p.add_argument("--ygrid", default=None, help="y axis START:STOP:POINTS (default: as --grid)")
    p.add_argument("--view", "--mode", dest="view", choices=("2d", "1d"), default="2d",
                   help="2-D surface or 1-D curve (default 2d), as LossLandscapeProbe(view=); --mode is its old name")
    p.add_argument("--frame", action="store_true",
                   help="choose each axis's range from 1-D scans out to where the loss reaches 100 x the centre "
                        "loss, so the basin fills the picture (POINTS from --grid; START:STOP ignored)")
    p.add_argument("--adaptive", type=_budget, default=None, metavar="BUDGET",
                   help="evaluate only BUDGET points (a count, or a fraction such as 0.2 of the grid), refining where "
                        "the surface bends; the rest of each picture is interpolated and the evaluated points marked")
    p.add_argument("--batches", type=int, default=4, help="validation batches to evaluate on (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions (default 0)")
    p.add_argument("--device", default="auto", help="auto (default: CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--bf16", action="store_true", help="evaluate under bf16 autocast (precision bf16-mixed)")
    p.add_argument("--fast", action="store_true",
                   help="classifiers only: cross-entropy on a copy of the network with BatchNorm folded into the "
                        "convolutions, channels_last and torch.compile (the same values up to float rounding; the "
                        "first point compiles)")
    p.add_argument("--out", default="runs/landscape",
                   help="output folder (default runs/landscape); a rerun resumes the surface saved there")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files in --out that no landscape run wrote (pictures without a surface.json)")
    p.add_argument("--force", action="store_true",
                   help="compute a grid estimated to take over a minute (a progress bar shows how far it is)")


def _budget(text: str) -> int | float:
    """``--adaptive``: a point count (``"500"``) or a fraction of the grid (``"0.2"``)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if value.is_integer() and value >= 1:
        return int(value)
    if 0 < value < 1:
        return value
    raise argparse.ArgumentTypeError(f"Expected --adaptive to be a point count >= 1 or a fraction in (0, 1), got "
                                     f"{text!r}; e.g. --adaptive 0.2")


def _check_config(config: str) -> None:
    """A recipe YAML with ``model:`` and ``data:`` sections, before LightningCLI reads it.

    Raises:
        ValueError: naming --config, for a file that is not YAML or lacks the sections.
    """
    import yaml

    try:
        content = yaml.safe_load(Path(config).read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"Expected --config to be a YAML recipe, got {config!r}, which is not YAML "
                         f"({first})") from None
    missing = [k for k in ("model", "data") if not isinstance(content, dict) or k not in content]
    if missing:
        raise ValueError(f"Expected --config to be a recipe with `model:` and `data:` sections, got {config!r} "
                         f"without {' and '.join(f'`{k}:`' for k in missing)}")


def _load_module_and_data(config: str, ckpt: str):
    from lightning_papers.cli._tool import lightning_cli
    from lightning_papers.modules.image_model import read_checkpoint

    _check_config(config)
    state = read_checkpoint(ckpt, "--ckpt")  # weights_only, explicitly: a checkpoint never runs code
    if not isinstance(state.get("state_dict"), dict):
        raise ValueError(f"Expected --ckpt to be a Lightning checkpoint with a 'state_dict', got {ckpt!r} without one")
    cli = lightning_cli(["--config", config, "--trainer.logger=false", "--trainer.callbacks=null"], run=False,
                        save_config_callback=None)
    if cli.datamodule is None:
        raise ValueError(f"Expected the config {config!r} to name a data module under `data:`")
    try:
        cli.model.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(f"Expected --ckpt to hold the weights of the config's model "
                         f"{type(cli.model).__name__}, got {ckpt!r}: {first}") from None
    return cli.model, cli.datamodule


def _trainer_device(name: str) -> tuple[str, int | list[int]]:
    """``--device`` as Lightning's ``(accelerator, devices)``; the name is checked first, before anything loads.

    Raises:
        ValueError: for a name torch does not know, CUDA where there is none, or a device Lightning cannot run.
    """
    from lightning_papers._helpers import resolve_device

    device = resolve_device(name)  # the image commands' rule and message
    if name == "auto":
        return "auto", 1
    if device.type == "cuda":
        return "gpu", 1 if device.index is None else [device.index]
    if device.type in ("cpu", "mps"):
        return device.type, 1
    raise ValueError(f"Expected --device to be auto, cpu, cuda or cuda:N, got {name!r}")


def _describe(batch) -> str:
    if isinstance(batch, torch.Tensor):
        return f"a tensor of shape {tuple(batch.shape)}"
    if isinstance(batch, (list, tuple)):
        return f"a {type(batch).__name__} of " + ", ".join(_describe(b) for b in batch)
    if isinstance(batch, dict):
        return f"a dict with keys {sorted(map(str, batch))}"
    return type(batch).__name__


def _check_classifier(module, batch) -> None:
    """``--fast`` evaluates cross-entropy on a copy of the network: refuse batches that are not
    ``(inputs, class targets)`` with logits out, and a module whose own loss is not that cross-entropy.

    Raises:
        ValueError: saying ``--fast`` is for classifiers, and what was found instead.
    """
    import torch.nn.functional as F

    from lightning_papers.callbacks.evaluation import ModuleEvaluation, classification_target
    from lightning_papers.landscape import preserved_model

    what = "(inputs, integer class targets) batches and logits out with --fast (it evaluates cross-entropy on a " \
           "folded copy of the network, which has no training step: --fast is for classifiers)"
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2 and isinstance(batch[0], torch.Tensor)):
        raise ValueError(f"Expected {what}, got batches of {_describe(batch)}")
    evaluation = ModuleEvaluation(module)
    with preserved_model(module), torch.no_grad(), evaluation.active():
        module.eval()
        logits = module(batch[0])
        target = classification_target(batch, logits)
        if target is None:
            raise ValueError(f"Expected {what}, got batches of {_describe(batch)} and outputs of "
                             f"{_describe(logits)}")
        own = float(evaluation(batch)["loss"])
    cross_entropy = float(F.cross_entropy(logits.float(), target))
    if not np.isclose(own, cross_entropy, rtol=1e-4, atol=1e-6):
        raise ValueError(f"Expected the module's loss to be cross-entropy with --fast, got {own:.6g} from "
                         f"{type(module).__name__}'s step vs {cross_entropy:.6g}; run without --fast")


class _SurfaceAtValidationStart(Callback):
    """Computes the whole surface as ``Trainer.validate`` starts: the module is on its device, in eval mode, its
    data connected and the precision set; nothing of the validation itself is used."""

    def __init__(self, args: argparse.Namespace, axes: list[np.ndarray], out: Path) -> None:
        self.args, self.axes, self.out = args, axes, out
        self.result: SurfaceResult | None = None
        self.seconds = 0.0
        self.device = ""

    @override
    def on_validation_start(self, trainer, pl_module) -> None:
        from torch.nn import functional as F

        from lightning_papers.callbacks.evaluation import ModuleEvaluation, module_spec
        from lightning_papers.landscape import Framed, random_directions, save_surface, surface

        args = self.args
        directions = random_directions(pl_module, len(self.axes), seed=args.seed)
        grid = Framed(points=len(self.axes[0])) if args.frame else tuple(self.axes) if len(self.axes) == 2 else \
            self.axes[0]
        fast: dict[str, Any] = {}
        if args.fast:  # cross-entropy on a folded, channels_last, compiled copy of the network
            fast = dict(loss_fn=F.cross_entropy, fold_bn=True, channels_last=True, compile=True)
        path = str(self.out / "surface")
        with module_spec(trainer, pl_module, "val", args.batches, **fast) as spec:
            if len(spec.data) < args.batches:
                logging.getLogger(__name__).warning(
                    "warning: --batches %d asks for more validation batches than the loader has: the surface is "
                    "evaluated on all %d", args.batches, len(spec.data))
            if args.fast:
                _check_classifier(pl_module, spec.data[0])
            t0 = time.perf_counter()
            result = surface(pl_module, directions, grid, spec, points=args.adaptive, progress=True,
                             store=SurfaceStore(path, resume=True))
        self.seconds = time.perf_counter() - t0
        result.metadata["evaluated"] = "cross_entropy + ['accuracy'] on a copy of the network (--fast)" if args.fast \
            else ModuleEvaluation(pl_module).describe()
        save_surface(result, path)
        self.result, self.device = result, str(pl_module.device)


def _surface(args: argparse.Namespace, axes: list[np.ndarray], out: Path, accelerator: str,
             devices: int | list[int]):
    """(surface, seconds, device): the surface computed inside ``Trainer.validate``."""
    import lightning as L
    from lightning.pytorch.utilities.model_helpers import is_overridden

    from lightning_papers._helpers import lightning_info_off

    with lightning_info_off():  # the seed, "GPU available": about this command's own Trainers
        module, datamodule = _load_module_and_data(args.config, args.ckpt)
        if not is_overridden("validation_step", module):
            raise ValueError(f"Expected the config's model to define validation_step (the surface is computed "
                             f"inside Trainer.validate), got {type(module).__name__} without one")
        probe = _SurfaceAtValidationStart(args, axes, out)
        trainer = L.Trainer(accelerator=accelerator, devices=devices, logger=False, callbacks=[probe],
                            precision="bf16-mixed" if args.bf16 else "32-true", enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False, limit_val_batches=1,
                            num_sanity_val_steps=0, inference_mode=False, default_root_dir=str(out))
        trainer.validate(module, datamodule=datamodule, verbose=False)
    if probe.result is None:  # the loop skipped validation: no batch to start it with
        raise ValueError(f"Expected the config's data module to have a non-empty validation loader, got "
                         f"{type(datamodule).__name__} with none")
    return probe.result, probe.seconds, probe.device


def run(args: argparse.Namespace) -> int:
    import matplotlib

    from lightning_papers._helpers import atomic_write, check_outputs
    from lightning_papers.budget import check_budget
    from lightning_papers.cli._tool import answer
    from lightning_papers.cli.image import check_writable
    from lightning_papers.landscape import describe_sampling, surface_scale, write_vtp

    if not Path(args.ckpt).is_file():
        raise FileNotFoundError(f"Expected --ckpt to be a checkpoint file, got {args.ckpt!r} (no such file)")
    if not Path(args.config).is_file():
        raise FileNotFoundError(f"Expected --config to be a recipe YAML, got {args.config!r} (no such file)")
    if args.batches < 1:
        raise ValueError(f"Expected --batches >= 1, got {args.batches}")
    if args.ygrid is not None and args.view == "1d":
        raise ValueError(f"Expected --ygrid only with --view 2d, got --ygrid {args.ygrid} with --view 1d (a curve "
                         "has one axis): drop --ygrid or use --view 2d")
    if not str(args.out).strip():
        raise ValueError("Expected --out to name a folder, got an empty string")
    specs = [_grid_spec(args.grid)] + ([_grid_spec(args.ygrid or args.grid)] if args.view == "2d" else [])
    points = int(np.prod([n for _, _, n in specs], dtype=object))
    flags = f"--grid {args.grid}" + (f" --ygrid {args.ygrid}" if args.ygrid else "")
    count = str(points) if points < 10**9 else f"{float(points):.3g}"
    check_budget(f"{flags} ({count} points x {args.batches} batches, at least)",
                 points * args.batches * _SECONDS_PER_BATCH, points * _BYTES_PER_POINT, force=args.force)
    axes = [np.linspace(*spec) for spec in specs]
    accelerator, devices = _trainer_device(args.device)  # a bad name fails before the config and checkpoint load
    out = Path(args.out)
    ours = [out / "surface.npz", out / "surface.json", *(out / name for name in _PICTURES)]
    check_outputs(ours, [args.ckpt, args.config], flag="--out", input_flag="--ckpt or --config", overwrite=True)
    if not (out / "surface.json").is_file():  # no landscape run wrote here: files are the user's
        check_outputs([out / name for name in _PICTURES], flag="--out", overwrite=args.overwrite)
    check_writable([out / "surface.npz"], "--out")  # before anything loads or a single point is computed
    result, seconds, device = _surface(args, axes, out, accelerator, devices)

    if not np.isfinite(result["loss"]).any():
        logging.getLogger(__name__).warning(
            "warning: every point of the surface has a non-finite loss (NaN or inf): the model's loss is not finite "
            "at these weights; the plots are empty")
    matplotlib.use("Agg")
    kinds = ("contour", "heatmap", "surface3d") if args.view == "2d" else ("curve",)
    files = [str(out / "surface.npz"), str(out / "surface.json")]
    for kind in kinds:
        ax = result.plot(kind)
        path = out / f"{kind}.png"
        with atomic_write(path) as tmp:
            ax.figure.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
        files.append(str(path))
    if args.view == "2d":
        with atomic_write(out / "surface.vtp") as tmp:
            write_vtp(result, tmp)
        files.append(str(out / "surface.vtp"))
    new = result.metadata.get("timing", {}).get("points", 0)
    answer(f"loss surface of {args.ckpt}: {'x'.join(str(len(a)) for a in axes)} points "
          f"({new} computed now, the rest resumed) in {seconds:.1f} s on {device}; {_centre(result)}, "
          f"lowest {np.nanmin(result['loss']):.4f}"
          + (f"; --fast: {result.metadata.get('fold_bn', 0)} BatchNorms folded, channels_last, torch.compile"
             if args.fast and new else ""))
    if args.view == "2d":  # the levels and clip the pictures share (landscape.surface_scale)
        answer(f"pictures: {surface_scale(result['loss'], centre=result.centre_value()).describe()}")
    if describe_sampling(result):
        answer(describe_sampling(result))
    answer("files: " + ", ".join(files))
    return 0


def _centre(result) -> str:
    """The loss at the model's own weights, or, when the grid has no point there, at the nearest point named with
    its coordinates (never a corner passed off as the centre)."""
    index = result.centre_index()
    coords = [float(a[i]) for a, i in zip(result.axes, index)]
    value = float(result["loss"][index])
    if all(c == 0.0 for c in coords):
        return f"centre loss {value:.4f}"
    where = ", ".join(f"{c:g}" for c in coords)
    return f"loss {value:.4f} at ({where}), the grid point nearest the centre (the grid has no 0; the model itself " \
           "is not evaluated)"
