"""``conv`` command line: explain, solve, trace and animate with the arithmetic of Dumoulin & Visin,
A guide to convolution arithmetic for deep learning, 2016 (arXiv 1603.07285).

``add_subparser(subparsers)`` registers ``conv`` on a parent argparse parser (``lightning-papers conv ...``) and
``run(args)`` executes it; ``main(argv)`` runs the sub-commands on their own. The arithmetic itself is
:mod:`lightning_papers.conv_arithmetic`, which knows nothing of this command::

    python -m lightning_papers.cli.conv explain --i 32 --k 3 --s 2 --p 1
    python -m lightning_papers.cli.conv solve --i 32 --o 16 --k 3
    python -m lightning_papers.cli.conv trace --model resnet56 --input-size 3 32 32
    python -m lightning_papers.cli.conv animate --kind transposed --i 5 --k 3 --s 2 --p 1 -o out.gif
    python -m lightning_papers.cli.conv animate --all docs/images/conv
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["add_subparser", "build_parser", "main", "run"]

ANIMATION_KINDS = ("conv", "transposed", "pool", "dilation")
# what `conv animate` has when an option is not given (--all refuses any other value: it would be ignored)
_ANIMATE_DEFAULTS = {"kind": "conv", "i": 5, "k": 3, "s": 1, "p": 0, "d": None, "output": None}


def _out(text: str) -> None:
    from lightning_papers.cli._tool import answer

    answer(text)


def _add_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="conv_command", metavar="{explain,solve,trace,animate}")
    commands.required = True

    explain = commands.add_parser("explain", help="which Relationship sizes a layer, worked out")
    explain.add_argument("--i", type=int, required=True, help="input size")
    explain.add_argument("--k", type=int, required=True, help="kernel size")
    explain.add_argument("--s", type=int, default=None, help="stride (default 1, or k for --pool)")
    explain.add_argument("--p", default=0, type=_padding, help="padding: an integer, 'same' or 'valid'")
    explain.add_argument("--d", type=int, default=1, help="dilation")
    explain.add_argument("--output-padding", "--a", dest="output_padding", type=int, default=0,
                         help="output padding a of a transposed convolution")
    kind = explain.add_mutually_exclusive_group()
    kind.add_argument("--transposed", action="store_true", help="a transposed convolution")
    kind.add_argument("--pool", action="store_true", help="pooling")
    explain.add_argument("--ceil-mode", action="store_true", help="pooling with ceil_mode")

    solve = commands.add_parser("solve", help="all (k, s, p, d) that map i to o, simplest first")
    solve.add_argument("--i", type=int, required=True, help="input size")
    solve.add_argument("--o", type=int, required=True, help="wanted output size")
    for flag, what in (("--k", "kernel"), ("--s", "stride"), ("--p", "padding"), ("--d", "dilation")):
        solve.add_argument(flag, type=int, default=None, help=f"fix the {what}")
    solve.add_argument("--transposed", action="store_true", help="search transposed convolutions")
    solve.add_argument("--max-kernel", type=int, default=7)
    solve.add_argument("--max-stride", type=int, default=4)
    solve.add_argument("--max-dilation", type=int, default=3)
    solve.add_argument("--limit", type=_positive, default=10, help="show at most this many answers (>= 1)")

    trace = commands.add_parser("trace", help="shapes and receptive fields of a registered model")
    trace.add_argument("--model", required=True, help="a name from lightning_papers.models.list_models()")
    trace.add_argument("--input-size", type=int, nargs="+", default=[3, 32, 32], help="C H W (no batch)")
    trace.add_argument("--json", action="store_true", help="print JSON instead of the table")

    animate = commands.add_parser("animate", help="GIF in the paper's style, or the whole set with --all")
    animate.add_argument("--all", dest="all_dir", metavar="OUTDIR", default=None, help="write every case here")
    animate.add_argument("--kind", choices=ANIMATION_KINDS, default="conv")
    animate.add_argument("--i", type=int, default=5, help="input size of the direct layer")
    animate.add_argument("--k", type=int, default=3)
    animate.add_argument("--s", type=int, default=1)
    animate.add_argument("--p", type=int, default=0)
    animate.add_argument("--d", type=int, default=None, help="dilation (default 2 for --kind dilation, else 1)")
    animate.add_argument("-o", "--output", default=None, help="GIF path (one animation; not with --all)")
    animate.add_argument("--overwrite", action="store_true", help="replace GIF files that already exist")
    animate.add_argument("--force", action="store_true",
                         help="draw an animation estimated to take over a minute (with a progress bar)")


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``conv`` command (with its sub-commands) on a parent parser's ``subparsers``."""
    parser = subparsers.add_parser("conv", help="convolution arithmetic (Dumoulin & Visin, arXiv 1603.07285)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_commands(parser)
    parser.set_defaults(conv_handler=run)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser whose sub-commands are ``explain``, ``solve``, ``trace`` and ``animate``."""
    parser = argparse.ArgumentParser(prog="python -m lightning_papers.cli.conv", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_commands(parser)
    return parser


def _padding(value: str) -> int | str:
    if value in ("same", "valid"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, 'same' or 'valid', got {value!r}") from None


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``conv`` command; returns the exit status (1: no answer; the package's user errors are
    raised, and turned into ``error:`` lines with status 2 by :func:`lightning_papers.cli.run_as_tool`)."""
    commands = {"explain": _explain, "solve": _solve, "trace": _trace, "animate": _animate}
    return commands.get(args.conv_command, _animate)(args)


def _explain(args: argparse.Namespace) -> int:
    """``conv explain``: every relationship of one layer, in words."""
    from lightning_papers.conv_arithmetic import explain

    if args.output_padding and not args.transposed:  # an option that cannot apply is refused, not dropped
        raise ValueError(f"Expected --output-padding/--a only with --transposed, got --a {args.output_padding}")
    if args.ceil_mode and not args.pool:
        raise ValueError("Expected --ceil-mode only with --pool, got it for a "
                         f"{'transposed ' if args.transposed else ''}convolution")
    result = explain(input_size=args.i, k=args.k, s=args.s, p=args.p, d=args.d,
                     output_padding=args.output_padding, transposed=args.transposed, pool=args.pool,
                     ceil_mode=args.ceil_mode)
    _out(str(result))
    return 0


def _solve(args: argparse.Namespace) -> int:
    """``conv solve``: the layers that map one size to another."""
    from lightning_papers.conv_arithmetic import solve

    found = solve(args.i, args.o, args.k, args.s, args.p, args.d, args.transposed,
                  max_kernel=args.max_kernel, max_stride=args.max_stride, max_dilation=args.max_dilation)
    if not found:
        _out(f"no {'transposed ' if args.transposed else ''}convolution within the bounds maps "
             f"{args.i} to {args.o}")
        return 1
    _out("k  s  p  d  a  rel  ignored")
    for x in found[: args.limit]:
        _out(f"{x.k:<2} {x.s:<2} {x.p:<2} {x.d:<2} {x.output_padding:<2} {x.relationship:<4} {x.ignored}")
    if len(found) > args.limit:
        _out(f"... {len(found) - args.limit} more (raise --limit)")
    return 0


def _trace(args: argparse.Namespace) -> int:
    """``conv trace``: a model's shapes and receptive fields, layer by layer."""
    from lightning_papers.conv_arithmetic import trace_shapes
    from lightning_papers.models import get_model

    if len(args.input_size) != 3 or any(n < 1 for n in args.input_size):
        raise ValueError(f"Expected --input-size to be C H W (three positive numbers, no batch), got "
                         f"{' '.join(map(str, args.input_size))}")
    model = get_model(args.model)
    first = next((m for m in model.modules() if hasattr(m, "in_channels")), None)
    if first is not None and first.in_channels != args.input_size[0]:
        raise ValueError(f"Expected --input-size to start with the {first.in_channels} channels {args.model} "
                         f"takes, got {' '.join(map(str, args.input_size))}")
    try:
        trace = trace_shapes(model, tuple(args.input_size))
    except RuntimeError as err:  # a size the model cannot take (too small for its strides, say)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"Expected --input-size that {args.model} accepts, got "
                         f"{' '.join(map(str, args.input_size))}: {first_line}") from None
    _out(trace.to_json(indent=1) if args.json else trace.table())
    return 0


def _animate(args: argparse.Namespace) -> int:
    """``conv animate``: one GIF, or with ``--all`` every figure of the paper."""
    from pathlib import Path

    from lightning_papers._helpers import check_outputs, check_writable_folder
    from lightning_papers.budget import check_budget
    from lightning_papers.conv_arithmetic import animate, animate_all, animation_cost
    from lightning_papers.conv_arithmetic.animation import CASES

    if args.all_dir is not None:
        given = [f"--{name}" if name != "output" else "-o/--output" for name in
                 ("kind", "i", "k", "s", "p", "d", "output") if getattr(args, name) != _ANIMATE_DEFAULTS[name]]
        if given:
            raise ValueError(f"Expected --all OUTDIR alone (it writes each of the paper's figures under its own "
                             f"name), got {', '.join(given)} as well: drop them, or drop --all")
        if not args.all_dir.strip():
            raise ValueError("Expected --all to name a folder, got an empty string")
        check_writable_folder(args.all_dir, "--all")  # an existing file: one line, not FileExistsError
        check_outputs([Path(args.all_dir) / f"{name}.gif" for name in CASES], flag="--all",
                      overwrite=args.overwrite)
        for path in animate_all(args.all_dir):
            _out(str(path))
        return 0
    d = args.d if args.d is not None else (2 if args.kind == "dilation" else 1)
    if args.output is not None and (not args.output.strip() or not args.output.lower().endswith(".gif")):
        raise ValueError(f"Expected -o/--output to name a .gif file, got {args.output!r}")
    output = args.output or f"{args.kind}_i{args.i}_k{args.k}_s{args.s}_p{args.p}_d{d}.gif"
    transposed, pool = args.kind == "transposed", args.kind == "pool"
    n, seconds, nbytes = animation_cost(args.i, args.k, args.s, args.p, d, transposed=transposed, pool=pool)
    check_budget(f"conv animate --i {args.i} ({n} frames)", seconds, nbytes, force=args.force)
    check_outputs([output], flag="-o/--output", overwrite=args.overwrite)
    path = animate(output, args.i, args.k, args.s, args.p, d, transposed=transposed, pool=pool,
                   progress=args.force and seconds > 5)
    _out(str(path))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run it."""
    from lightning_papers.cli._tool import run_as_tool

    args = build_parser().parse_args(argv)
    return run_as_tool("python -m lightning_papers.cli.conv", lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
