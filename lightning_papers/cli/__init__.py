"""The ``lightning-papers`` command: every subcommand lives in this package, above the library.

``lightning-papers fit|validate|test|predict --config <recipe>.yaml`` is Lightning's own
``LightningCLI`` (any LightningModule / LightningDataModule, picked by class path in the YAML).
``lightning-papers demo`` runs the main job on embedded data; ``lightning-papers conv ...`` is the
convolution-arithmetic toolkit (Dumoulin & Visin, arXiv 1603.07285; :mod:`.conv`);
``lightning-papers landscape --ckpt ... --config ...`` draws the loss surface of a saved checkpoint (Li et al.,
arXiv 1712.09913; :mod:`.landscape`); ``lightning-papers stylize --ckpt ... --input ... --output ...`` and
``lightning-papers super-resolve`` (same options) apply a trained style-transfer or super-resolution checkpoint
(Johnson et al., arXiv 1603.08155; :mod:`.image`) to a photograph or a folder (``--fast``: fp16 + torch.compile +
CUDA graphs on CUDA); ``lightning-papers export --ckpt ... --format onnx|torchscript --output ...`` writes either
kind's inference model to a file that runs without this package; ``lightning-papers recipes list|show|copy``
lists, prints and copies the recipes that ship in the package (:mod:`.recipes`). ``python -m lightning_papers.cli
...`` is the same command (for ``torchrun``).

Every subcommand reads like a tool: the package's own user errors (a bad value, a missing or unsafe file, a
refused checkpoint) print ``lightning-papers <command>: error: <message>`` and exit with status 2; ``--debug``
(anywhere on the line) or ``LIGHTNING_PAPERS_DEBUG=1`` shows the full traceback instead. Errors that do not come
from the package's own checks keep their traceback: they are bugs to report, not input to fix.

This package imports jsonargparse (through LightningCLI) and, for ``export``, onnx, each only when the command
needs it; ``import lightning_papers`` never imports them, and no library package imports this one.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from lightning_papers.cli._tool import (
    DEBUG_ENV,
    LIGHTNING_SUBCOMMANDS,
    USER_ERRORS,
    answer,
    condense_parser_error,
    lightning_cli,
    quiet_framework_noise,
    run_as_tool,
    run_lightning_cli,
)

__all__ = ["DEBUG_ENV", "USER_ERRORS", "answer", "condense_parser_error", "lightning_cli", "main",
           "quiet_framework_noise", "run_as_tool", "run_lightning_cli"]


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
    from lightning_papers.cli import conv, image, landscape, recipes

    return {
        "demo": (_add_demo_parser, _run_demo),
        "conv": (conv.add_subparser, conv.run),
        "landscape": (landscape.add_subparser, landscape.run),
        "stylize": (image.add_stylize_parser, image.run),
        "super-resolve": (image.add_super_resolve_parser, image.run),
        "export": (image.add_export_parser, image.run_export),
        "recipes": (recipes.add_subparser, recipes.run),
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
    from lightning_papers.data._extras import require_extra
    from lightning_papers.demo import run_demo

    for module in ("sklearn.datasets", "skimage.data"):  # the digits and the photographs: say so before any work
        require_extra(module, "The demo")

    result = run_demo(
        out_dir=args.out,
        device=args.device,
        precision=args.precision,
        fast=args.fast,
        epochs=args.epochs,
        seed=args.seed,
    )
    answer(result.summary())
    return 0


def _parser(commands: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightning-papers",
        description="Five deep-learning papers as parts for a PyTorch Lightning Trainer.",
        epilog="Lightning subcommands: "
        + ", ".join(LIGHTNING_SUBCOMMANDS)
        + " (e.g. `lightning-papers recipes copy quickstart .` then `lightning-papers fit --config quickstart.yaml`; "
        "`lightning-papers fit --help`). "
        f"Errors print one line; --debug (anywhere) or {DEBUG_ENV}=1 shows the traceback.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join((*LIGHTNING_SUBCOMMANDS, *commands)) + "}")
    for add_parser, _ in commands.values():
        add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # the reader went away (`lightning-papers conv solve ... | head -3`): stop quietly, as `cat` does; stdout is
        # pointed at /dev/null so that the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by it


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    prog = f"lightning-papers {argv[0]}" if argv else "lightning-papers"
    if argv and argv[0] not in ("-h", "--help"):
        import lightning.pytorch  # noqa: F401 - its log handlers exist once it is imported

        quiet_framework_noise()
    if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
        def fit() -> int:
            run_lightning_cli(argv)
            _destroy_process_group()
            return 0

        return run_as_tool(prog, fit, debug)
    commands = _extra_commands()
    parser = _parser(commands)
    if not argv:
        parser.print_help()
        return 2
    args = parser.parse_args(_join_negative_values(argv))
    return run_as_tool(prog, lambda: commands[args.command][1](args), debug)


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
