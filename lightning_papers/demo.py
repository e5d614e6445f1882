"""The main job on embedded data: what ``lightning-papers demo`` runs.

Offline and CPU-friendly: a CIFAR ResNet-20 (He et al., arXiv 1512.03385) on scikit-learn's real
handwritten digits, through the package's parts in one Trainer - convolution arithmetic (arXiv
1603.07285), the LR range test (arXiv 1506.01186), 1cycle training with the init -> final
interpolation (arXiv 1708.07120, 1702.04283) and a loss-landscape surface (arXiv 1712.09913) - with
every artefact under one run folder and logged to TensorBoard.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lightning_papers._validation import positive_int

if TYPE_CHECKING:
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightning_papers.callbacks import LRRangeFinder

__all__ = ["DemoResult", "run_demo"]


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.3g}"


@dataclass
class DemoResult:
    """What the demo produced and where."""

    run_dir: str
    val_acc: float
    val_loss: float
    epochs: int
    seconds: float
    device: str
    precision: str
    suggested_lr: float | None = None
    clr_bounds: list[float] | None = None
    artefacts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            "",
            f"lightning-papers demo finished in {self.seconds:.1f} s on {self.device} ({self.precision}).",
            f"  LR range test: suggested lr {_fmt(self.suggested_lr)}, CLR bounds "
            + ("none" if self.clr_bounds is None else f"{_fmt(self.clr_bounds[0])} .. {_fmt(self.clr_bounds[1])}"),
            f"  final validation accuracy: {self.val_acc:.2%} (loss {self.val_loss:.4f}) after {self.epochs} epoch(s)"
            " of 1cycle training",
            f"  run folder: {self.run_dir}",
        ]
        lines += [f"  {name}: {path}" for name, path in self.artefacts.items()]
        lines += ["", "Open the results in TensorBoard with:", f"  tensorboard --logdir {self.run_dir}", ""]
        return "\n".join(lines)


DEMO_DEVICES = ("auto", "cpu", "gpu", "cuda", "mps")
DemoPrecision = Literal["32-true", "32", "bf16-mixed", "16-mixed"]
DEMO_PRECISIONS: tuple[DemoPrecision, ...] = ("32-true", "32", "bf16-mixed", "16-mixed")


def check_demo_device(device: str, precision: str) -> None:
    """Refuse, before anything runs, a ``device`` the demo cannot use on this machine or a ``precision`` it
    cannot train in (the demo's data is float32: ``64``/``-true`` half precisions are not offered).

    Raises:
        ValueError: naming the value, what this machine offers and the fix.
    """
    import torch

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    here = ["auto", "cpu"] + (["gpu", "cuda"] if cuda else []) + (["mps"] if mps else [])
    if device not in here:
        why = "not a device the demo runs on" if device not in DEMO_DEVICES else "not available on this machine"
        raise ValueError(f"Expected --device to be one of {', '.join(here)} here, got {device!r} ({why})")
    on_cpu = device == "cpu" or (device == "auto" and not cuda and not mps)
    offered = [p for p in DEMO_PRECISIONS if not (on_cpu and p == "16-mixed")]
    if precision not in offered:
        raise ValueError(f"Expected --precision to be one of {', '.join(offered)} for the demo on {device}, got "
                         f"{precision!r}")


def run_demo(
    out_dir: str | Path = "runs/demo",
    device: str = "auto",
    precision: DemoPrecision = "32-true",
    fast: bool = False,
    epochs: int | None = None,
    seed: int = 0,
) -> DemoResult:
    """The main job on the embedded digits, every artefact under one run folder.

    1. conv-arithmetic summary of ResNet-20 (shapes, k/s/p/d, receptive fields);
    2. LR range test (Smith) -> suggestion and CLR bounds;
    3. 1cycle training (Smith & Topin) with the range test's upper bound, and the init -> final
       interpolation probe;
    4. a filter-normalised loss-landscape surface at every epoch (Li et al.) on a range framed to the basin at
       the first probe, and the surfaces over training on that one range and common levels as an image series
       and a GIF;
    5. a short fast-style-transfer run on scikit-image's photographs (Johnson et al.) and one stylised
       photograph written to ``<run>/style_transfer/`` (with ImageNet VGG-16 weights when they are in the
       torch hub cache, else with a random VGG: a smoke test of the path, not a picture to judge, which the
       picture's caption and the ``style/samples`` tag's description say).

    Args:
        out_dir: parent of the run folder (one timestamped folder per run).
        device: Lightning ``accelerator`` (``"auto"``, ``"cpu"``, ``"gpu"``, ...).
        precision: Lightning ``precision``.
        fast: a smoke-test version (a few batches, one epoch, tiny probes).
        epochs: training epochs (default 5, or 1 with ``fast``).
        seed: global seed.

    Raises:
        ValueError: for a non-positive ``epochs``, a ``device`` or ``precision`` the demo cannot run (checked
            against this machine), or an ``out_dir`` that cannot be made or written (an existing file, say).
        MissingExtraError: without scikit-learn / scikit-image (the ``data`` extra).
    """
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_papers._helpers import check_writable_folder
    from lightning_papers.data import DigitsDataModule
    from lightning_papers.data._extras import require_extra
    from lightning_papers.modules import ImageClassifier

    epochs = positive_int("epochs", (1 if fast else 5) if epochs is None else epochs)
    check_demo_device(device, precision)
    if not str(out_dir).strip():  # '' would be the current folder: a run folder among the user's files
        raise ValueError("Expected --out to name a folder, got an empty string")
    check_writable_folder(out_dir, "--out")  # an existing file, a read-only folder: refused before any training
    require_extra("sklearn.datasets", "lightning-papers demo")  # the digits
    require_extra("skimage.data", "lightning-papers demo")  # the photographs of the style-transfer part
    start = time.perf_counter()
    L.seed_everything(seed, workers=True, verbose=False)

    run_dir = Path(out_dir) / time.strftime("%Y%m%d-%H%M%S")
    for suffix in itertools.count(1):  # a second run within the same second gets its own folder
        if not run_dir.exists():
            break
        run_dir = Path(out_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
    data = DigitsDataModule(batch_size=64, seed=seed)
    module = ImageClassifier("resnet20", num_classes=10, weight_decay=5e-4)  # before the callbacks, as ever: same RNG
    finder, checkpoint, callbacks = _demo_callbacks(run_dir, fast)
    trainer = L.Trainer(
        accelerator=device,
        devices=1,
        precision=precision,
        max_epochs=epochs,
        logger=TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False),
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        log_every_n_steps=5,
        limit_train_batches=5 if fast else None,
        limit_val_batches=2 if fast else None,
    )
    trainer.fit(module, datamodule=data)
    stylised, style_note = _style_transfer_step(run_dir, device, precision, fast)
    return _record(run_dir, trainer, finder, checkpoint, time.perf_counter() - start, stylised, style_note)


def _record(run_dir: Path, trainer: Trainer, finder: LRRangeFinder, checkpoint: ModelCheckpoint, seconds: float,
            stylised: Path, style_note: str) -> DemoResult:
    """The demo's result, also written to ``<run>/demo_result.json``."""
    metrics, range_test = trainer.callback_metrics, finder.result
    result = DemoResult(
        run_dir=str(run_dir),
        val_acc=float(metrics.get("val/acc", float("nan"))),
        val_loss=float(metrics.get("val/loss", float("nan"))),
        epochs=trainer.current_epoch,
        seconds=seconds,
        device=str(trainer.strategy.root_device),
        precision=str(trainer.precision),
        suggested_lr=None if range_test is None else range_test.suggestion,
        clr_bounds=None if range_test is None or range_test.clr_bounds is None else list(range_test.clr_bounds),
        artefacts={
            "TensorBoard events": str(run_dir),
            "conv-arithmetic trace": str(run_dir / "conv_arithmetic"),
            "LR range test": str(run_dir / "lr_range"),
            "init -> final interpolation": str(next((run_dir / "landscape").glob("interpolate_epoch*.npz"), "")),
            "loss landscape": str(run_dir / "landscape"),
            **({"loss landscape over training": str(run_dir / "landscape" / "2d_over_training.gif")}
               if (run_dir / "landscape" / "2d_over_training.gif").is_file() else {}),
            "best checkpoint": str(checkpoint.best_model_path),
            f"stylised photograph ({style_note})": str(stylised),
        },
    )
    (run_dir / "demo_result.json").write_text(json.dumps(result.to_dict(), indent=2))
    result.artefacts["summary JSON"] = str(run_dir / "demo_result.json")
    return result


def _demo_callbacks(run_dir: Path, fast: bool) -> tuple[LRRangeFinder, ModelCheckpoint, list[Callback]]:
    """The demo's parts: the range test, 1cycle with the interpolation probe, the landscape probe, a checkpoint."""
    import torch.nn.functional as F
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightning_papers.callbacks import (
        ConvArithmeticSummary,
        LossLandscapeProbe,
        LRRangeFinder,
        SuperConvergence,
        TensorBoardLayout,
    )
    from lightning_papers.landscape import Framed

    finder = LRRangeFinder(min_lr=1e-4, max_lr=10.0, num_steps=12 if fast else 80)
    one_cycle = SuperConvergence(
        max_lr="finder",
        fallback_lr=0.1,  # the --fast 12-step sweep cannot be read (no descent): a range test never drives it then
        div_factor=10.0,
        interpolation_probe=True,
        interpolation_points=3 if fast else 11,
        num_batches=1 if fast else 3,
    )
    probe = LossLandscapeProbe(
        view="2d",
        every_n_epochs=1,  # the surface at every epoch: landscape/over_training and 2d_over_training.gif show the
        # basin form (one batch per point keeps the five surfaces near the cost of one 11 x 11 on two batches)
        # the range framed to the basin at the first probe (1-D scans out to the clip), kept for the later ones so the
        # surfaces over training share it. Adaptive refinement did not pay here: at the demo's ~80 points per
        # surface the refined contours came out boxier than a uniform 9 x 9 (docs/papers/landscape.md)
        grid=Framed(points=5 if fast else 9, min_radius=0.25, bisections=0 if fast else 1, diagonals=False),
        num_batches=1,
        hessian_iters=3 if fast else 10,
        fold_bn=True,  # BatchNorm folded into the convs, channels_last: the same surface, about 2x faster on a CPU
        channels_last=True,
        loss_fn=F.cross_entropy,  # the folded copy has no training step: say which loss ImageClassifier's is
    )
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor="val/acc", mode="max",
                                 filename="best", save_last=True)
    return finder, checkpoint, [TensorBoardLayout(), ConvArithmeticSummary(), finder, one_cycle, probe, checkpoint]


def _style_transfer_step(run_dir: Path, device: str, precision: DemoPrecision, fast: bool) -> tuple[Path, str]:
    """Train ``FastStyleTransfer`` briefly on the sample photographs; write content | style | stylised."""
    import warnings

    import lightning as L
    import torch
    from lightning.pytorch.loggers import TensorBoardLogger
    from torchvision.utils import save_image

    from lightning_papers.callbacks import TensorBoardLayout
    from lightning_papers.data import ImageFolderDataModule, load_image, sample_photos
    from lightning_papers.losses import vgg16_checkpoint_path
    from lightning_papers.modules import FastStyleTransfer
    from lightning_papers.modules.style_transfer import RANDOM_VGG_NOTE

    cached = vgg16_checkpoint_path().is_file()
    note = "ImageNet VGG-16" if cached else f"random VGG-16, smoke test only: no weights at {vgg16_checkpoint_path()}"
    size = 64 if fast else 96
    style_name, content_name = "immunohistochemistry", "chelsea"
    from lightning_papers._helpers import lightning_info_off

    with warnings.catch_warnings(), lightning_info_off():
        warnings.filterwarnings("ignore", message=".*random.*")  # said once, in the summary, instead
        # this Trainer's own settings, not the user's: the frozen VGG in eval mode, the few steps of --fast
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
        warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
        module = FastStyleTransfer(style_image=style_name, style_size=size, vgg_weights="imagenet" if cached else
                                   "random", lr=1e-2, sample_every_n_steps=4 if fast else 10)
        trainer = L.Trainer(
            accelerator=device, devices=1, precision=precision, max_steps=8 if fast else 40,
            # no hp_metric placeholder (-1) in the charts; the layout's "style transfer losses" chart, the only one
            # this run fills
            logger=TensorBoardLogger(save_dir=str(run_dir), name="", version="style_transfer",
                                     default_hp_metric=False),
            callbacks=[TensorBoardLayout()],
            enable_checkpointing=False, limit_val_batches=1, num_sanity_val_steps=0, log_every_n_steps=4,
            enable_model_summary=False,
        )
        trainer.fit(module, datamodule=ImageFolderDataModule(image_size=size, batch_size=2))
    photos = dict(sample_photos())
    content = load_image(photos[content_name], size=(2 * size, 2 * size))
    style = load_image(photos[style_name], size=(2 * size, 2 * size))
    module.eval()
    with torch.no_grad():
        out = module(content[None].to(module.device)).float().cpu()[0]
    path = run_dir / "style_transfer" / f"stylised_{content_name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image([content, style, out.clamp(0, 1)], path, nrow=3, padding=2)
    if not cached:  # the limitation goes where the picture is, not only in the console summary
        _caption(path, RANDOM_VGG_NOTE)
    return path, note


def _caption(path: Path, text: str) -> None:
    """Add ``text`` under the picture at ``path``, wrapped to its width, in dark red on white."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    image = Image.open(path).convert("RGB")
    try:
        font = ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    chars = max(20, int(image.width / (0.6 * 12)))
    lines = textwrap.wrap(text, width=chars)
    line_height = 16
    out = Image.new("RGB", (image.width, image.height + 8 + line_height * len(lines)), "white")
    out.paste(image, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((4, image.height + 4 + i * line_height), line, fill=(150, 0, 0), font=font)
    out.save(path)
