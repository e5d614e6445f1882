"""Regenerate every picture README.md shows, from real runs on the embedded data, offline, on a CPU.

    python -m recipes.make_figures [--out docs/images] [--fast] [--only NAME ...] [--threads N]

One function per picture (the registry :data:`FIGURES`, name -> function), each trains or probes what its
picture shows with the package's own parts, writes its file(s) into ``--out`` and returns a
:class:`Picture`: the paths and the numbers it plotted (the test compares the schedules against torch's own
schedulers through them). Data: scikit-learn's digits (``DigitsDataModule``) and scikit-image's photographs
(``sample_photos()``, ``ImageFolderDataModule(root=None)``); nothing downloads. Seeds are fixed.

* ``lr_range_test``: Smith, Cyclical Learning Rates (arXiv 1506.01186): ``LRRangeFinder`` on ResNet-20.
* ``schedules``: the lr (and momentum) that ``CyclicalLR`` (triangular, triangular2, exp_range) and
  ``SuperConvergence`` (1cycle; Smith & Topin, arXiv 1708.07120) set in a real Trainer, step by step.
* ``superconvergence``: 1cycle against a plateaued piecewise-constant baseline across budgets on digits, through
  ``benchmarks/fidelity_superconvergence.py`` (five seeds; most of the full set's time).
* ``landscapes``: Li et al., Visualizing the Loss Landscape (arXiv 1712.09913), ResNet-20 with and without
  shortcuts, through ``benchmarks/landscape_skip_connections.py``.
* ``curvature``: the top Hessian eigenvalue against (2 + 2 momentum) / lr over a 1cycle run (Cohen et al., arXiv
  2103.00065) and the eigenvalue density at its end, from the recipe ``superconvergence/
  resnet20_digits_1cycle_curvature`` (``lightning_papers/recipes/``).
* ``style_transfer``, ``super_resolution``: Johnson et al., Perceptual Losses (arXiv 1603.08155).
* ``conv_animations``: Dumoulin & Visin, convolution arithmetic (arXiv 1603.07285).

README's two TensorBoard screenshots (``tensorboard_mesh.png``, ``tensorboard_custom_scalars.png``) are not made
here: the browser test takes them (``python tests/test_tensorboard_browser.py RUN_FOLDER --readme docs/images``
over a ``lightning-papers demo`` run folder; it needs Chromium).

Then every PNG/GIF in ``--out`` is checked: each under 300 kB, all together under 3 MB, or the command exits
non-zero naming the file. ``--fast`` runs tiny versions of everything (the test: 22 s of figures). The full set took
621 s (5.2 min of CPU time) on a 2-core AMD EPYC shared with other jobs (load average 7-8), with one torch
thread (``--threads``; on that loaded machine one thread trained about 4x faster per step than two); the
landscapes take 60 % of it.
"""

from __future__ import annotations

import argparse
import importlib
import io
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FormatStrFormatter  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_FILE_BYTES = 300_000
MAX_TOTAL_BYTES = 3_000_000
SEED = 0

# The schedules' settings (the test builds torch's CyclicLR / OneCycleLR from the same dicts).
CLR = {"base_lr": 1e-3, "max_lr": 6e-3}  # Smith's CIFAR-10 bounds
CLR_GAMMA = {"full": 0.995, "fast": 0.95}  # exp_range's decay per optimizer step
ONE_CYCLE = {"max_lr": 3.0, "div_factor": 30.0, "final_div_factor": 1e4, "pct_start": 0.45, "anneal": "linear",
             "three_phase": True, "base_momentum": 0.85, "max_momentum": 0.95}  # the paper's 0.1 -> 3.0 -> 0.1


@dataclass
class Picture:
    """What one figure function made: its files and the numbers it plotted or printed in it."""

    paths: list[Path]
    data: dict[str, Any] = field(default_factory=dict)
    summary: str = ""  # the measured numbers in one line, printed with the figure's wall time


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
@contextmanager
def _quiet() -> Iterator[None]:
    """No warnings and only errors from Lightning and the package while figures are made; restored after."""
    loggers = [logging.getLogger(name) for name in ("lightning", "lightning.pytorch", "lightning.fabric",
                                                    "lightning_papers")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _trainer(**kwargs: Any) -> L.Trainer:
    """A CPU Trainer that writes nothing and prints nothing."""
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    return L.Trainer(**{**defaults, **kwargs})


def _save(fig: Figure, path: Path, dpi: int = 90, colors: int | None = 128) -> Path:
    """Render ``fig`` and write it as an optimised PNG; ``colors`` quantises to a palette (``None``: RGB)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    image = Image.open(buffer).convert("RGB")
    if colors is not None:
        image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    return path


def _benchmark(name: str) -> Any:
    """Import ``benchmarks/<name>.py`` (the scripts import their helpers as top-level ``_common``)."""
    folder = str(REPO / "benchmarks")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def _held_out_photo(dm: Any) -> tuple[str, np.ndarray]:
    """Name and array of the first photograph ``ImageFolderDataModule(root=None)`` holds out for validation."""
    from lightning_papers.data import sample_photos

    dm.setup("fit")
    held = dm.val_set.sources[0]
    for name, image in sample_photos():
        if image.shape == held.shape and np.array_equal(image, held):
            return name, image
    raise RuntimeError("the held-out photograph is not one of the sample photographs")


def _square(image: np.ndarray, size: int) -> torch.Tensor:
    """A photograph resized (shorter side) and centre-cropped to ``size`` x ``size``, (3, S, S) in [0, 1]."""
    from torchvision.transforms.v2 import functional as TF

    from lightning_papers.data import load_image

    return TF.center_crop(load_image(image, size=size), [size, size])


def _show(ax: Any, image: torch.Tensor, title: str) -> None:
    ax.imshow(image.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


# ---------------------------------------------------------------------------------------------------------
# 1. the LR range test
# ---------------------------------------------------------------------------------------------------------
def lr_range_test(out: Path, fast: bool = False) -> Picture:
    """``LRRangeFinder`` on ResNet-20 and the digits: the training loss (raw, smoothed) against lr, with the
    suggestion and the CLR bounds (Smith, arXiv 1506.01186), as ``LRRangeResult.plot`` draws them."""
    from lightning_papers.callbacks import LRRangeFinder
    from lightning_papers.data import DigitsDataModule
    from lightning_papers.modules import ImageClassifier

    steps, size, batch = (12, 16, 32) if fast else (80, 32, 64)
    L.seed_everything(SEED, verbose=False)
    # the loss-based test (the package's default): from scratch, the accuracy on a few batches is mostly noise
    finder = LRRangeFinder(min_lr=1e-4, max_lr=3.0, num_steps=steps, save_results=False)
    model = ImageClassifier("resnet20", lr=0.01, momentum=0.9, weight_decay=5e-4, image_size=(3, size, size))
    data = DigitsDataModule(batch_size=batch, seed=0, size=size)
    _trainer(max_steps=1, limit_val_batches=0, callbacks=[finder]).fit(model, datamodule=data)
    result = finder.result

    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    result.plot(ax=ax)
    bounds = result.clr_bounds
    text = "no CLR bounds" if bounds is None else f"CLR bounds {bounds[0]:.2g} .. {bounds[1]:.2g}"
    suggestion = "none" if result.suggestion is None else f"{result.suggestion:.2g}"
    ax.set_title(f"LR range test, ResNet-20 on digits ({steps} steps, batch {batch}, {size} px):\n"
                 f"suggested lr {suggestion}, {text}; stop: {result.stop_reason}", fontsize=9)
    ax.set_xlabel("learning rate (log scale)")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    path = _save(fig, out / "lr_range_test.png")
    return Picture([path], {"suggestion": result.suggestion, "clr_bounds": bounds, "points": len(result.lrs),
                            "stop_reason": result.stop_reason, "lrs": result.lrs,
                            "smoothed_losses": result.smoothed_losses},
                   f"suggestion {suggestion}, {text}, {len(result.lrs)} points ({result.stop_reason})")


# ---------------------------------------------------------------------------------------------------------
# 2. the schedules, as the callbacks set them in a Trainer
# ---------------------------------------------------------------------------------------------------------
class _OneParameter(L.LightningModule):
    """The smallest thing a Trainer can optimise: one linear unit, SGD with momentum."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class _Recorder(Callback):
    """The lr and momentum of the first param group as the optimizer is about to step."""

    def __init__(self) -> None:
        self.lr: list[float] = []
        self.momentum: list[float] = []

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        group = optimizer.param_groups[0]
        self.lr.append(float(group["lr"]))
        self.momentum.append(float(group["momentum"]))


def _record(schedule: Callback, steps: int) -> _Recorder:
    from torch.utils.data import DataLoader, TensorDataset

    recorder = _Recorder()
    loader = DataLoader(TensorDataset(torch.ones(steps, 1)), batch_size=1)
    _trainer(max_steps=steps, callbacks=[schedule, recorder]).fit(_OneParameter(), train_dataloaders=loader)
    return recorder


def schedule_curves(fast: bool = False) -> dict[str, Any]:
    """Run ``CyclicalLR`` (three modes) and ``SuperConvergence`` in real Trainers and record, per optimizer step,
    the lr (and the 1cycle's momentum) they set. Returns the settings and the arrays."""
    from lightning_papers.callbacks import CyclicalLR, SuperConvergence

    step_size, cycles = (5, 3) if fast else (50, 3)
    clr_steps = 2 * step_size * cycles
    one_cycle_steps = 30 if fast else 300
    gamma = CLR_GAMMA["fast" if fast else "full"]
    data: dict[str, Any] = {"clr": {**CLR, "step_size": step_size, "gamma": gamma, "steps": clr_steps},
                            "one_cycle": {**ONE_CYCLE, "steps": one_cycle_steps}}
    for policy in ("triangular", "triangular2", "exp_range"):
        callback = CyclicalLR(CLR["base_lr"], CLR["max_lr"], step_size=step_size, policy=policy,
                              gamma=gamma if policy == "exp_range" else 1.0)
        data[policy] = np.array(_record(callback, clr_steps).lr)
    settings = {k: v for k, v in ONE_CYCLE.items()}
    one = _record(SuperConvergence(settings.pop("max_lr"), cycle_momentum=True, **settings), one_cycle_steps)
    data["one_cycle_lr"], data["one_cycle_momentum"] = np.array(one.lr), np.array(one.momentum)
    return data


def schedules(out: Path, fast: bool = False) -> Picture:
    """CLR's three policies and 1cycle's lr and momentum, as the callbacks set them step by step."""
    data = schedule_curves(fast)
    fig = Figure(figsize=(9.0, 3.4))
    left, right = fig.subplots(1, 2)
    clr = data["clr"]
    styles = {"triangular": ("C0", "-"), "triangular2": ("C1", "--"), "exp_range": ("C2", ":")}
    for mode, (color, ls) in styles.items():
        label = mode if mode != "exp_range" else f"exp_range (gamma {clr['gamma']:g}/step)"
        left.plot(np.arange(len(data[mode])), data[mode], color=color, ls=ls, lw=1.8, label=label)
    left.set_title(f"CyclicalLR: {clr['base_lr']:g} .. {clr['max_lr']:g}, step_size {clr['step_size']}",
                   fontsize=10)
    left.set_xlabel("optimizer step")
    left.set_ylabel("learning rate")
    left.yaxis.set_major_formatter(FormatStrFormatter("%.3f"))
    left.set_ylim(0.0008, 0.0076)
    left.legend(fontsize=7.5, loc="upper center", ncol=2)
    left.grid(alpha=0.3)

    oc = data["one_cycle"]
    steps = np.arange(len(data["one_cycle_lr"]))
    right.plot(steps, data["one_cycle_lr"], color="C3", lw=1.8, label="learning rate")
    right.set_xlabel("optimizer step")
    right.set_ylabel("learning rate", color="C3")
    right.grid(alpha=0.3)
    twin = right.twinx()
    twin.plot(steps, data["one_cycle_momentum"], color="C4", lw=1.5, ls="--", label="momentum")
    twin.set_ylabel("momentum", color="C4")
    twin.set_ylim(oc["base_momentum"] - 0.01, oc["max_momentum"] + 0.02)  # headroom for the legend
    start = oc["max_lr"] / oc["div_factor"]
    right.set_title(f"SuperConvergence (1cycle): {start:g} -> {oc['max_lr']:g} -> {start:g},\n"
                    f"then annihilation to {start / oc['final_div_factor']:.0e}; momentum "
                    f"{oc['max_momentum']} -> {oc['base_momentum']} -> {oc['max_momentum']}", fontsize=9)
    lines = right.get_lines() + twin.get_lines()
    right.set_ylim(0, 1.2 * oc["max_lr"])  # headroom for the legend
    right.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="upper center", ncol=2)
    fig.tight_layout()
    path = _save(fig, out / "schedules.png")
    return Picture([path], data, f"CLR over {clr['steps']} steps, 1cycle over {oc['steps']} steps, read from the "
                                 "optimizer in a Trainer")


# ---------------------------------------------------------------------------------------------------------
# 3. super-convergence: 1cycle against the piecewise-constant baseline
# ---------------------------------------------------------------------------------------------------------
def superconvergence(out: Path, fast: bool = False) -> Picture:
    """Validation accuracy against training budget, 1cycle at B/8 and B at several peaks against the
    piecewise-constant baseline at B/8, B and 2B (each at its best weight decay), mean ± std over five seeds:
    ``benchmarks/fidelity_superconvergence.py`` with its defaults (``--fast``: its smoke-test size)."""
    bench = _benchmark("fidelity_superconvergence")
    path = out / "superconvergence.png"
    argv = ["--plot", str(path), "--threads", str(torch.get_num_threads())] + (["--fast"] if fast else [])
    summary = bench.main(argv)
    _requantize(path)
    reach = summary["reaches_baseline_at"]
    text = (f"baseline at B = {summary['budget']}: {100 * summary['baseline_plateau']['acc_mean']:.1f} % (2B gains "
            f"{summary['baseline_plateau']['gain_points']:+.2f} points); 1cycle reaches it at "
            f"{'no budget tried' if reach is None else f'{reach} steps'}; verdict {summary['verdict']}")
    return Picture([path], summary, text)


# ---------------------------------------------------------------------------------------------------------
# 4. loss landscapes with and without skip connections
# ---------------------------------------------------------------------------------------------------------
def landscapes(out: Path, fast: bool = False) -> Picture:
    """ResNet-20 and ResNet-20-noshort surfaces (contours and 3-D), through
    ``benchmarks/landscape_skip_connections.py`` with its defaults (``--fast``: a toy size)."""
    bench = _benchmark("landscape_skip_connections")
    # the benchmark's training and 15 x 15 grid, on 128 instead of 256 images and without the Hessian
    # eigenvalue (20 power iterations cost more than the surface): about half its CPU time
    argv = ["--out", str(out), "--images", "128", "--hessian-iters", "0"]
    if fast:
        argv += ["--epochs", "1", "--limit-train-batches", "2", "--grid", "4", "--images", "16"]
    args = bench.build_parser().parse_args(argv)
    rows, results = bench.compare(args)
    paths = bench.save_figures(rows, results, out)
    for path in paths:  # the same pixels, as a palette PNG
        _requantize(path)
    summary = "; ".join(f"{name}: val acc {100 * r['val_acc']:.1f} %, non-convex points "
                        f"{100 * r['share_nonconvex_points']:.1f} %, centre loss {r['centre_loss']:.3f}"
                        for name, r in rows.items())
    return Picture(paths, rows, summary)


def _requantize(path: Path, colors: int = 128) -> None:
    image = Image.open(path).convert("RGB")
    image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


# ---------------------------------------------------------------------------------------------------------
# 4b. curvature along a 1cycle run, from its recipe
# ---------------------------------------------------------------------------------------------------------
CURVATURE_RECIPE = REPO / "lightning_papers" / "recipes" / "superconvergence" / "resnet20_digits_1cycle_curvature.yaml"


def curvature(out: Path, fast: bool = False) -> Picture:
    """The top Hessian eigenvalue against the stability threshold (2 + 2 momentum) / lr over the 1cycle run of
    the recipe ``superconvergence/resnet20_digits_1cycle_curvature`` (Cohen et al., arXiv 2103.00065), and the
    eigenvalue density at its end: the recipe through LightningCLI, the pictures drawn from the files its
    ``CurvatureMonitor`` wrote (``--fast``: a few steps at 8 px)."""
    import tempfile

    import yaml

    from lightning_papers.cli import run_lightning_cli
    from lightning_papers.landscape import CurvatureHistory, HessianSpectrum

    config = yaml.safe_load(CURVATURE_RECIPE.read_text())
    monitor = next(cb for cb in config["trainer"]["callbacks"] if cb["class_path"].endswith("CurvatureMonitor"))
    if fast:
        config["trainer"].update(max_steps=4, val_check_interval=2)
        config["data"]["init_args"].update(size=8, batch_size=16)
        monitor["init_args"].update(every_n_steps=2, max_iter=4, spectrum_runs=1, spectrum_steps=6)
    with tempfile.TemporaryDirectory() as tmp:
        config["trainer"]["logger"]["init_args"]["save_dir"] = tmp
        config["trainer"].update(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                                 enable_checkpointing=False)
        path = Path(tmp) / CURVATURE_RECIPE.name
        path.write_text(yaml.safe_dump(config))
        start = time.perf_counter()
        cli = run_lightning_cli(["fit", "--config", str(path)])
        seconds = time.perf_counter() - start
        folder = Path(cli.trainer.log_dir) / "curvature"
        history = CurvatureHistory.from_dict(_json(folder / "history.json"))
        saved = _json(folder / "spectrum.json")
        val_acc = float(cli.trainer.callback_metrics.get("val/acc", float("nan")))
    spectrum = HessianSpectrum(np.array(saved["nodes"], dtype=np.float64), np.array(saved["weights"], dtype=np.float64),
                               saved["dimension"])
    steps, batch = config["trainer"]["max_steps"], config["data"]["init_args"]["batch_size"]
    paths = draw_curvature(out, history, spectrum, steps, batch, val_acc)
    at_peak = history.top_eigenvalue[int(np.argmax(history.lr))]
    data = {"history": history.to_dict(), "spectrum": saved, "val_acc": val_acc, "seconds": seconds}
    summary = (f"{steps} steps in {seconds:.0f} s, val acc {100 * val_acc:.1f} %; top eigenvalue "
               f"{history.top_eigenvalue[0]:.1f} at step {history.steps[0]}, {at_peak:.1f} at the lr peak, "
               f"{history.top_eigenvalue[-1]:.1f} at the end; threshold low {np.nanmin(history.threshold):.1f}; "
               f"spectrum trace {spectrum.trace:.1f}, largest node {np.nanmax(spectrum.nodes):.2f}")
    return Picture(paths, data, summary)


def draw_curvature(out: Path, history: Any, spectrum: Any, steps: int, batch: int, val_acc: float) -> list[Path]:
    """The two curvature pictures from a ``CurvatureHistory`` and a ``HessianSpectrum``."""
    peak_step = int(np.argmax(history.lr))
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    history.plot(ax=ax)  # the recipe measures no trace: the second axis is free for the learning rate
    ax.set_ylim(top=30 * max(history.top_eigenvalue))  # the annihilation phase's threshold runs off the top
    twin = ax.twinx()
    twin.plot(history.steps, history.lr, color="0.6", lw=1, label="learning rate")
    twin.set_ylabel("learning rate", color="0.4")
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7.5, loc="upper left")
    ax.set_title(f"ResNet-20 on digits, 1cycle over {steps} steps (batch {batch}, {100 * val_acc:.1f} % val. acc.):\n"
                 f"top eigenvalue {history.top_eigenvalue[0]:.1f} at step {history.steps[0]}, "
                 f"{history.top_eigenvalue[peak_step]:.1f} at the lr peak (threshold "
                 f"{history.threshold[peak_step]:.1f}), {history.top_eigenvalue[-1]:.1f} at the end", fontsize=8.5)
    fig.tight_layout()
    curve = _save(fig, out / "curvature_1cycle.png")

    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    spectrum.plot(ax=ax)
    ax.axvline(history.top_eigenvalue[-1], color="C3", ls=":", lw=1, label="top eigenvalue (CurvatureMonitor)")
    ax.legend(fontsize=8, loc="upper right")
    runs, width = spectrum.nodes.shape
    ax.set_title(f"Hessian eigenvalue density after {steps} steps ({runs} SLQ runs x {width} Lanczos steps,\n"
                 f"{spectrum.dimension:,} parameters): trace estimate {spectrum.trace:.1f}, largest node "
                 f"{np.nanmax(spectrum.nodes):.2f}", fontsize=8.5)
    fig.tight_layout()
    density = _save(fig, out / "curvature_spectrum.png")
    return [curve, density]


def _json(path: Path) -> Any:
    import json

    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------------------
# 5. fast style transfer
# ---------------------------------------------------------------------------------------------------------
def style_transfer(out: Path, fast: bool = False) -> Picture:
    """``FastStyleTransfer`` trained briefly on the sample photographs; the held-out photograph, the style image
    and the stylised photograph side by side. ImageNet VGG-16 weights when the torch hub cache has them,
    otherwise a random VGG and a title that says the picture only checks the pipeline."""
    from lightning_papers.data import ImageFolderDataModule, sample_photos
    from lightning_papers.losses import vgg16_checkpoint_path
    from lightning_papers.modules import FastStyleTransfer

    imagenet = vgg16_checkpoint_path().is_file()
    size, steps, show = (32, 3, 64) if fast else (64, 60, 128)
    style_name = "immunohistochemistry"
    L.seed_everything(SEED, verbose=False)
    data = ImageFolderDataModule(image_size=size, batch_size=2, seed=0)
    content_name, content_array = _held_out_photo(data)
    module = FastStyleTransfer(style_image=style_name, style_size=size, vgg_weights="imagenet" if imagenet else
                               "random", lr=1e-2, sample_every_n_steps=0)
    start = time.perf_counter()
    _trainer(max_steps=steps, limit_val_batches=0).fit(module, datamodule=data)
    seconds = time.perf_counter() - start
    content = _square(content_array, show)
    style = _square(dict(sample_photos())[style_name], show)
    module.eval()
    with torch.no_grad():
        stylised = module(content[None]).float()[0]

    fig = Figure(figsize=(6.6, 2.75))
    axes = fig.subplots(1, 3)
    _show(axes[0], content, f"content: {content_name} (held out)")
    _show(axes[1], style, f"style: {style_name}")
    _show(axes[2], stylised, f"stylised ({steps} steps at {size} px)")
    weights = "ImageNet VGG-16 weights" if imagenet else \
        "random VGG weights: pipeline check, not a real stylisation"
    title = f"Fast style transfer (Johnson et al.), {weights}"
    fig.suptitle(title, fontsize=9, color="black" if imagenet else "darkred")
    fig.tight_layout()
    path = _save(fig, out / "style_transfer.png", colors=None)
    return Picture([path], {"vgg_weights": "imagenet" if imagenet else "random", "steps": steps, "size": size,
                            "content": content_name, "style": style_name, "title": title,
                            "train_seconds": seconds},
                   f"{'ImageNet' if imagenet else 'random'} VGG-16, {steps} steps at {size} px in {seconds:.0f} s")


# ---------------------------------------------------------------------------------------------------------
# 6. super-resolution
# ---------------------------------------------------------------------------------------------------------
def super_resolution(out: Path, fast: bool = False) -> Picture:
    """``SuperResolution(loss="pixel")`` x4, trained briefly on crops of the sample photographs; bicubic | ours |
    ground truth on the held-out photograph, with their Y-channel PSNR."""
    from torchmetrics.functional import peak_signal_noise_ratio
    from torchvision.transforms.v2 import functional as TF

    from lightning_papers.data import ImageFolderDataModule, load_image
    from lightning_papers.modules import SuperResolution
    from lightning_papers.modules.super_resolution import degrade, luma

    size, steps, show = (32, 3, 64) if fast else (64, 300, 192)
    factor = 4
    L.seed_everything(SEED, verbose=False)
    # near-native crops (3-6 % of a photograph's area), as the SR test trains
    data = ImageFolderDataModule(image_size=size, batch_size=4, seed=0, scale=(0.03, 0.06), val_resize=False)
    name, array = _held_out_photo(data)
    module = SuperResolution(factor=factor, loss="pixel", sample_every_n_epochs=0)  # norm "none", Adam 1e-4
    lr = module.hparams.lr
    start = time.perf_counter()
    _trainer(max_steps=steps, limit_val_batches=0).fit(module, datamodule=data)
    seconds = time.perf_counter() - start
    # at the photograph's own resolution (the centre), as the module validates with val_resize=False
    hr = TF.center_crop(load_image(array), [show, show])[None]
    low = degrade(hr, factor)
    module.eval()
    with torch.no_grad():
        ours, bicubic = module(low).float(), module.bicubic(low)
    psnr = {key: float(peak_signal_noise_ratio(luma(img), luma(hr), data_range=1.0))
            for key, img in (("bicubic", bicubic), ("ours", ours))}

    fig = Figure(figsize=(7.2, 3.1))
    axes = fig.subplots(1, 3)
    _show(axes[0], bicubic[0], f"bicubic: {psnr['bicubic']:.2f} dB")
    _show(axes[1], ours[0], f"ours: {psnr['ours']:.2f} dB")
    _show(axes[2], hr[0], f"ground truth ({show} px crop)")
    gain = psnr["ours"] - psnr["bicubic"]
    verdict = f"{gain:+.2f} dB over bicubic" if gain > 0 else f"not better than bicubic yet ({gain:+.2f} dB)"
    fig.suptitle(f"x{factor} super-resolution, pixel loss, {steps} Adam steps (lr {lr:.0e}) on {size} px crops of "
                 f"{len(data.train_set)} photographs;\n{name} held out. PSNR on the Y channel: {verdict}", fontsize=9)
    fig.tight_layout()
    path = _save(fig, out / "super_resolution.png", colors=None)
    return Picture([path], {"psnr_bicubic": psnr["bicubic"], "psnr_ours": psnr["ours"], "steps": steps,
                            "crop": size, "image": name, "train_seconds": seconds},
                   f"Y-PSNR on {name}: bicubic {psnr['bicubic']:.2f} dB, ours {psnr['ours']:.2f} dB "
                   f"({steps} steps at {size} px in {seconds:.0f} s)")


# ---------------------------------------------------------------------------------------------------------
# 7. convolution arithmetic animations
# ---------------------------------------------------------------------------------------------------------
CONV_CASES = ("no_padding_no_strides", "padding_strides_transposed", "dilation")


def conv_animations(out: Path, fast: bool = False) -> Picture:
    """``conv_<case>.gif`` for the cases the README shows, drawn by ``conv_arithmetic.animation``."""
    from lightning_papers.conv_arithmetic.animation import CASES, animate

    paths = []
    for name in CONV_CASES:
        c = CASES[name]
        paths.append(animate(out / f"conv_{name}.gif", c.i, c.k, c.s, c.p, c.d, transposed=c.transposed,
                             pool=c.pool))
    return Picture(paths, {"cases": list(CONV_CASES)}, f"{len(paths)} GIFs")


FIGURES: dict[str, Callable[[Path, bool], Picture]] = {
    "lr_range_test": lr_range_test,
    "schedules": schedules,
    "superconvergence": superconvergence,
    "landscapes": landscapes,
    "curvature": curvature,
    "style_transfer": style_transfer,
    "super_resolution": super_resolution,
    "conv_animations": conv_animations,
}


# ---------------------------------------------------------------------------------------------------------
# the size check and the command
# ---------------------------------------------------------------------------------------------------------
def check_sizes(folder: Path) -> list[str]:
    """Print every picture's size in ``folder``; return the problems (a file >= 300 kB, a total >= 3 MB)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".gif"))
    problems, total = [], 0
    for path in files:
        size = path.stat().st_size
        total += size
        print(f"  {size / 1000:7.1f} kB  {path}")
        if size >= MAX_FILE_BYTES:
            problems.append(f"{path} is {size / 1000:.1f} kB (limit {MAX_FILE_BYTES / 1000:.0f} kB)")
    print(f"  {total / 1000:7.1f} kB  in all ({len(files)} files)")
    if total >= MAX_TOTAL_BYTES:
        problems.append(f"{folder} holds {total / 1e6:.2f} MB of pictures (limit {MAX_TOTAL_BYTES / 1e6:.0f} MB)")
    return problems


def make(names: list[str] | None, out: Path, fast: bool = False, threads: int | None = 1) -> dict[str, Picture]:
    """Run the figure functions ``names`` (all when ``None``) into ``out``, printing each one's wall time, with
    ``threads`` torch threads (``None``: as set); returns name -> :class:`Picture`."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, Picture] = {}
    try:
        with _quiet():
            for name in names or FIGURES:
                start = time.perf_counter()
                made[name] = FIGURES[name](out, fast)
                files = ", ".join(p.name for p in made[name].paths)
                print(f"{name:<18} {time.perf_counter() - start:6.1f} s  {files}", flush=True)
                if made[name].summary:
                    print(f"{'':<27}{made[name].summary}", flush=True)
    finally:
        torch.set_num_threads(before)
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images", help="folder for the pictures")
    parser.add_argument("--fast", action="store_true", help="tiny runs (a smoke test of every figure)")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), metavar="NAME",
                        help=f"just these figures, of: {', '.join(FIGURES)}")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    made = make(args.only, args.out, args.fast, args.threads)
    print(f"{len(made)} figure(s) in {time.perf_counter() - start:.1f} s; sizes in {args.out}:")
    problems = check_sizes(args.out)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
