"""The main job on embedded data: what ``lightning-papers demo`` runs.

Offline and CPU-friendly: a CIFAR ResNet-20 (He et al., arXiv 1512.03385) trained on scikit-learn's
real handwritten digits, with every artefact under one run folder and logged to TensorBoard.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["DemoResult", "run_demo"]


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
    artefacts: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            "",
            f"lightning-papers demo finished in {self.seconds:.1f} s on {self.device} ({self.precision}).",
            f"  final validation accuracy: {self.val_acc:.2%} (loss {self.val_loss:.4f}) after {self.epochs} epoch(s)",
            f"  run folder: {self.run_dir}",
        ]
        lines += [f"  {name}: {path}" for name, path in self.artefacts.items()]
        lines += ["", "Open the results in TensorBoard with:", f"  tensorboard --logdir {self.run_dir}", ""]
        return "\n".join(lines)


def run_demo(
    out_dir: str | Path = "runs/demo",
    device: str = "auto",
    precision: str = "32-true",
    fast: bool = False,
    epochs: int | None = None,
    seed: int = 0,
) -> DemoResult:
    """Train ResNet-20 on the embedded digits and return where everything went.

    Args:
        out_dir: parent of the run folder (one timestamped folder per run).
        device: Lightning ``accelerator`` (``"auto"``, ``"cpu"``, ``"gpu"``, ...).
        precision: Lightning ``precision``.
        fast: a smoke-test version (a few batches, one epoch).
        epochs: training epochs (default 6, or 1 with ``fast``).
        seed: global seed.

    Raises:
        ValueError: for a non-positive ``epochs``.
    """
    import lightning as L
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
    from lightning.pytorch.loggers import TensorBoardLogger

    from lightning_papers.data import DigitsDataModule
    from lightning_papers.modules import ImageClassifier

    if epochs is None:
        epochs = 1 if fast else 6
    if epochs < 1:
        raise ValueError(f"Expected `epochs` >= 1, got {epochs}")
    start = time.perf_counter()
    L.seed_everything(seed, workers=True, verbose=False)

    run_dir = Path(out_dir) / time.strftime("%Y%m%d-%H%M%S")
    suffix = 1
    while run_dir.exists():
        run_dir = Path(out_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{suffix}"
        suffix += 1
    logger = TensorBoardLogger(save_dir=str(run_dir), name="", version="", default_hp_metric=False)

    data = DigitsDataModule(batch_size=64, seed=seed)
    module = ImageClassifier(
        "resnet20", num_classes=10, lr=0.05, weight_decay=5e-4,
        scheduler="multistep", milestones=[max(1, int(epochs * 0.6)), max(1, int(epochs * 0.85))],
    )
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor="val/acc", mode="max",
                                 filename="best", save_last=True)
    limits = {"limit_train_batches": 5, "limit_val_batches": 2} if fast else {}
    trainer = L.Trainer(
        accelerator=device,
        devices=1,
        precision=precision,
        max_epochs=epochs,
        logger=logger,
        callbacks=[checkpoint, LearningRateMonitor("step")],
        default_root_dir=str(run_dir),
        log_every_n_steps=5,
        **limits,
    )
    trainer.fit(module, datamodule=data)
    metrics = trainer.callback_metrics
    result = DemoResult(
        run_dir=str(run_dir),
        val_acc=float(metrics.get("val/acc", float("nan"))),
        val_loss=float(metrics.get("val/loss", float("nan"))),
        epochs=trainer.current_epoch,
        seconds=time.perf_counter() - start,
        device=str(trainer.strategy.root_device),
        precision=str(trainer.precision),
        artefacts={
            "TensorBoard events": str(run_dir),
            "best checkpoint": str(checkpoint.best_model_path),
        },
    )
    (run_dir / "demo_result.json").write_text(json.dumps(result.to_dict(), indent=2))
    result.artefacts["summary JSON"] = str(run_dir / "demo_result.json")
    return result
