"""The ``lightning-papers`` command: every subcommand lives in this package, above the library.

``lightning-papers fit|validate|test|predict --config recipes/....yaml`` is Lightning's own
``LightningCLI`` (any LightningModule / LightningDataModule, picked by class path in the YAML).
``lightning-papers demo`` runs the main job on embedded data; ``lightning-papers conv ...`` is the
convolution-arithmetic toolkit (Dumoulin & Visin, arXiv 1603.07285; :mod:`.conv`);
``lightning-papers landscape --ckpt ... --config ...`` draws the loss surface of a saved checkpoint (Li et al.,
arXiv 1712.09913; :mod:`.landscape`); ``lightning-papers stylize --ckpt ... --input ... --output ...`` and
``lightning-papers super-resolve`` (same options) apply a trained style-transfer or super-resolution checkpoint
(Johnson et al., arXiv 1603.08155; :mod:`.image`) to a photograph or a folder (``--fast``: fp16 + torch.compile +
CUDA graphs on CUDA); ``lightning-papers export --ckpt ... --format onnx|torchscript --output ...`` writes either
kind's inference model to a file that runs without this package. ``python -m lightning_papers.cli ...`` is the
same command (for ``torchrun``).

This package imports jsonargparse (through LightningCLI) and, for ``export``, onnx, each only when the command
needs it; ``import lightning_papers`` never imports them, and no library package imports this one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "run_lightning_cli"]

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")


def run_lightning_cli(args: Sequence[str]):
    """Run LightningCLI on ``args`` (e.g. ``["fit", "--config", "recipes/quickstart.yaml"]``)."""
    from lightning.pytorch.cli import LightningCLI

    return LightningCLI(
        model_class=None,
        datamodule_class=None,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=list(args),
    )


def _destroy_process_group() -> None:
    """Destroy torch.distributed's default group, if a DDP run left one, while the interpreter is whole.

    Lightning does it at exit only for NCCL; a gloo group left alive lets a worker thread free its last
    collective during interpreter finalization, which aborts the process (SIGABRT, "terminate called
    without an active exception"). Every rank runs ``main``: Lightning's launcher re-runs this command.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _extra_commands() -> dict:
    """Name -> (add_parser(subparsers), run(args) -> int) for the subcommands beside LightningCLI's."""
    from lightning_papers.cli import conv, image, landscape

    return {
        "demo": (_add_demo_parser, _run_demo),
        "conv": (conv.add_subparser, conv.run),
        "landscape": (landscape.add_subparser, landscape.run),
        "stylize": (image.add_stylize_parser, image.run),
        "super-resolve": (image.add_super_resolve_parser, image.run),
        "export": (image.add_export_parser, image.run_export),
    }


def _add_demo_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the main job on embedded data (offline, CPU-friendly)",
        description="Train a CIFAR ResNet on scikit-learn's real digits with the package's callbacks, "
        "log everything to TensorBoard and print where the results are.",
    )
    p.add_argument("--out", default="runs/demo", help="parent folder of the run folder (default: runs/demo)")
    p.add_argument("--device", default="auto", help="Lightning accelerator: auto, cpu, gpu, cuda, mps")
    p.add_argument("--precision", default="32-true", help="Lightning precision, e.g. 32-true, bf16-mixed, 16-mixed")
    p.add_argument("--fast", action="store_true", help="a smoke-test version that takes well under a minute")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: 5, or 1 with --fast)")
    p.add_argument("--seed", type=int, default=0, help="global seed (default: 0)")


def _run_demo(args: argparse.Namespace) -> int:
    from lightning_papers.demo import run_demo

    result = run_demo(
        out_dir=args.out,
        device=args.device,
        precision=args.precision,
        fast=args.fast,
        epochs=args.epochs,
        seed=args.seed,
    )
    print(result.summary())
    return 0


def _parser(commands: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning-papers",
        description="Five deep-learning papers as parts for a PyTorch Lightning Trainer.",
        epilog="Lightning subcommands: "
        + ", ".join(LIGHTNING_SUBCOMMANDS)
        + " (e.g. `lightning-papers fit --config recipes/quickstart.yaml`; `lightning-papers fit --help`).",
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join((*LIGHTNING_SUBCOMMANDS, *commands)) + "}")
    for add_parser, _ in commands.values():
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        run_lightning_cli(argv)
        _destroy_process_group()
        return 0
    commands = _extra_commands()
    parser = _parser(commands)
    if not argv:
        parser.print_help()
        return 2
    args = parser.parse_args(_join_negative_values(argv))
    return int(commands[args.command][1](args) or 0)


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--grid -1:1:51`` -> ``--grid=-1:1:51``: argparse takes a value that starts with '-' for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in ("--grid", "--ygrid") and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out
