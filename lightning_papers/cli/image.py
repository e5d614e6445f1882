"""``lightning-papers stylize`` and ``lightning-papers super-resolve``: a trained checkpoint applied to photographs.

Johnson, Alahi, Fei-Fei, Perceptual Losses for Real-Time Style Transfer and Super-Resolution, 2016
(arXiv 1603.08155). One implementation for both commands; they differ only in the checkpoint they accept
(``FastStyleTransfer`` or ``SuperResolution``, checked: the other kind is a clear error) and so in the
output's size (the input's, or ``factor`` times it). Any image size, EXIF orientation respected, a file or a
whole folder (recursive; the folder's layout is kept, PNG files out)::

    lightning-papers stylize --ckpt style.ckpt --input photo.jpg --output photo_stylised.png
    lightning-papers stylize --ckpt style.ckpt --input photos/ --output stylised/ --device cuda --fast
    lightning-papers super-resolve --ckpt sr.ckpt --input small.png --output large.png

No VGG weights are needed: the checkpoint's network (and, for super-resolution, the bicubic upsampling it
corrects) is all that runs, through :class:`~lightning_papers.modules.ImageRunner` (``--fast``,
``--compile``, ``--cuda-graphs``, ``--channels-last``, ``--precision``).
"""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_papers._helpers import PRECISIONS, check_outputs, check_writable_folder, resolve_device, same_file
from lightning_papers._validation import one_of

__all__ = ["COMMANDS", "add_export_parser", "add_stylize_parser", "add_super_resolve_parser", "apply_to_files",
           "check_writable", "run", "run_export", "stylize_files", "super_resolve_files"]

log = logging.getLogger(__name__)

# command -> (the LightningModule class its checkpoints come from, the past participle for its summary line)
COMMANDS = {"stylize": ("FastStyleTransfer", "stylised"), "super-resolve": ("SuperResolution", "upscaled")}
_HELP = {
    "stylize": ("apply a FastStyleTransfer checkpoint to photographs",
                "Stylise a photograph or a folder of them with a trained FastStyleTransfer checkpoint; "
                "the output has the input's size."),
    "super-resolve": ("apply a SuperResolution checkpoint to photographs",
                      "Upscale a photograph or a folder of them with a trained SuperResolution checkpoint; "
                      "the output is the checkpoint's factor (4 or 8) times the input's size."),
}


def _add_parser(subparsers: argparse._SubParsersAction, command: str) -> None:
    kind, _ = COMMANDS[command]
    short, description = _HELP[command]
    p = subparsers.add_parser(command, help=short, description=description)
    p.add_argument("--ckpt", required=True, help=f"{kind} checkpoint (.ckpt)")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True,
                   help="the output file (for a file) or folder (for a folder); a 16-bit or float input gives a "
                        "16-bit PNG")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: CUDA when available)")
    p.add_argument("--precision", default=None, choices=tuple(PRECISIONS),
                   help="autocast precision (default 32; 16 with --fast on CUDA)")
    p.add_argument("--fast", action="store_true",
                   help="the fastest settings for the device: on CUDA fp16 autocast + torch.compile + CUDA graphs "
                        "(about 3x faster than fp32 eager for 1080p style transfer on an H100); on a CPU plain "
                        "fp32 eager (compiling costs more than it saves there)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the network (the first image of each size is slow); if compiling fails, "
                        "warn and run eagerly")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="CUDA only, implies --compile: CUDA graphs through torch.compile(mode='reduce-overhead')")
    p.add_argument("--channels-last", action="store_true",
                   help="NHWC memory format (measured slower than the default for TransformerNet on an H100)")


def add_stylize_parser(subparsers: argparse._SubParsersAction) -> None:
    _add_parser(subparsers, "stylize")


def add_super_resolve_parser(subparsers: argparse._SubParsersAction) -> None:
    _add_parser(subparsers, "super-resolve")


def check_writable(paths: Sequence[Path], flag: str = "--output") -> None:
    """Make each output's folder and try a file there, before anything is loaded or computed.

    Raises:
        ValueError: naming ``flag`` and the path, for a folder that cannot be made or written into, or an
            output that is an existing folder.
    """

    for folder in sorted({p.parent for p in paths}):
        check_writable_folder(folder, flag)
    for path in paths:
        if path.is_dir():
            raise ValueError(f"Expected {flag} to name a file, got the folder {str(path)!r}")


def apply_to_files(kind: str, ckpt: str | Path, inputs: Sequence[Path], outputs: Sequence[Path], *,
                   device: str = "auto", precision: str | None = None, fast: bool = False,
                   channels_last: bool = False, compile: bool = False, cuda_graphs: bool = False,
                   overwrite: bool = False) -> list[Path]:
    """Apply a ``kind`` checkpoint (``"FastStyleTransfer"`` or ``"SuperResolution"``) to ``inputs[i]``, writing
    ``outputs[i]`` (folders are created); returns the outputs written.

    ``fast`` starts from :func:`~lightning_papers.modules.image_runner.fast_options` for the device; a
    ``precision`` given and the flags set add to it. The outputs are checked before anything is loaded: none may
    be an input or the checkpoint (compared as files: links and ``..`` do not hide one), two may not be one file,
    none may exist unless ``overwrite``, and their folders must be writable. Each output keeps its input's bit depth
    (a 16-bit or float source gives a 16-bit PNG: :func:`~lightning_papers.data.write_image`) and is written under
    a temporary name, then renamed. An input that cannot be read as an image (unreadable, truncated, a
    decompression bomb, a mode without a known range) is skipped with a warning (the rest still run).

    Raises:
        FileNotFoundError: for a missing checkpoint or input.
        ValueError: for an unknown ``precision`` or device, ``cuda_graphs`` off CUDA, a checkpoint of the other
            kind or a file that is not a checkpoint, an output that is an input or another output, an existing
            output without ``overwrite``, or an output folder that cannot be written.
    """
    from tqdm.auto import tqdm

    from lightning_papers.data.image_io import read_image, write_image
    from lightning_papers.modules.image_model import load_image_model
    from lightning_papers.modules.image_runner import ImageRunner, fast_options

    if len(inputs) != len(outputs):
        raise ValueError(f"Expected as many outputs as inputs, got {len(outputs)} for {len(inputs)}")
    check_outputs(outputs, [ckpt], flag="--output", input_flag="--ckpt", overwrite=True)
    check_outputs(outputs, inputs, flag="--output", input_flag="an input", overwrite=overwrite)
    if precision is not None:
        one_of("precision", precision, tuple(PRECISIONS))
    dev = resolve_device(device)  # a bad device name fails before the checkpoint is read
    check_writable([Path(p) for p in outputs])
    options: dict[str, Any] = fast_options(dev) if fast else {"precision": "32"}
    if precision is not None:
        options["precision"] = precision
    options["channels_last"] = channels_last or options.get("channels_last", False)
    options["compile"] = compile or options.get("compile", False)
    options["cuda_graphs"] = cuda_graphs or options.get("cuda_graphs", False)
    model = load_image_model(ckpt, expected=kind)
    runner = ImageRunner(model, dev, **options)
    log.info("%s: %d image(s) on %s", kind, len(inputs), runner.describe())
    written: list[Path] = []
    # a progress bar for folders (tqdm comes with Lightning); none for a single photograph
    for src, dst in tqdm(list(zip(inputs, outputs)), desc=kind, unit="image", disable=len(inputs) < 2):
        try:
            image, info = read_image(src)
        except (ValueError, OSError, MemoryError) as err:  # one unreadable file does not cost the rest of a folder
            warnings.warn(f"skipped {str(src)!r}: {err}", UserWarning, stacklevel=2)
            continue
        out = runner(image[None])
        try:
            write_image(out[0].cpu(), dst, bits=info.bits)
        except ValueError as err:  # a non-finite result (fp16 overflow, say): this image only
            warnings.warn(f"skipped {str(src)!r}: {err}", UserWarning, stacklevel=2)
            continue
        written.append(Path(dst))
    return written


def stylize_files(ckpt: str | Path, inputs: Sequence[Path], outputs: Sequence[Path], device: str = "auto",
                  precision: str | None = None, **options: Any) -> list[Path]:
    """:func:`apply_to_files` for a ``FastStyleTransfer`` checkpoint (``options``: its keyword arguments)."""
    return apply_to_files("FastStyleTransfer", ckpt, inputs, outputs, device=device, precision=precision, **options)


def super_resolve_files(ckpt: str | Path, inputs: Sequence[Path], outputs: Sequence[Path], device: str = "auto",
                        precision: str | None = None, **options: Any) -> list[Path]:
    """:func:`apply_to_files` for a ``SuperResolution`` checkpoint (``options``: its keyword arguments)."""
    return apply_to_files("SuperResolution", ckpt, inputs, outputs, device=device, precision=precision, **options)


def _paths(input_arg: str, output_arg: str) -> tuple[list[Path], list[Path]]:
    """(inputs, outputs) for ``--input``/``--output``: a file to a file (or into a folder), a folder to a folder.

    A folder keeps its layout, PNG files out; an output folder inside the input folder is not read as input; two
    inputs that would share a name (``a.jpg`` and ``a.png``) keep their extensions in the stem (``a_jpg.png``).
    """
    from lightning_papers.data.images import find_images

    if not input_arg.strip():
        raise ValueError("Expected --input to name an image file or a folder, got an empty string")
    if not output_arg.strip():
        raise ValueError("Expected --output to name a file or a folder, got an empty string")
    src, dst = Path(input_arg), Path(output_arg)
    if same_file(src, dst):
        raise ValueError(f"Expected --output to differ from --input, got {output_arg!r} for both: the originals "
                         "would be overwritten")
    if src.is_dir():
        if dst.is_file() or dst.suffix:
            raise ValueError(f"Expected --output to be a folder when --input is one, got {output_arg!r}")
        inside = dst.resolve()
        # listed before anything is written; files under an output folder inside the input are outputs, not inputs
        inputs = [p for p in find_images(src) if inside not in p.resolve().parents]
        if not inputs:
            raise ValueError(f"Expected images under {input_arg!r}, found none")
        names = [p.relative_to(src).with_suffix(".png") for p in inputs]
        clashes = {n for n in names if names.count(n) > 1}
        outputs = [dst / (n.with_name(f"{p.stem}_{p.suffix.lstrip('.').lower()}.png") if n in clashes else n)
                   for p, n in zip(inputs, names)]
        return inputs, outputs
    if src.is_file():
        return [src], [dst if dst.suffix else dst / (src.stem + ".png")]
    raise FileNotFoundError(f"Expected --input to be an image file or a folder, got {input_arg!r} (no such path)")


def run(args: argparse.Namespace) -> int:
    from lightning_papers.cli._tool import answer

    kind, done = COMMANDS[args.command]
    inputs, outputs = _paths(args.input, args.output)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        written = apply_to_files(kind, args.ckpt, inputs, outputs, device=args.device, precision=args.precision,
                                 fast=args.fast, channels_last=args.channels_last, compile=args.compile,
                                 cuda_graphs=args.cuda_graphs, overwrite=args.overwrite)
    from lightning_papers.data.image_io import ImageReadWarning

    for w in caught:  # a skipped file or an image warning is one line on stderr; others go on as they were raised
        if str(w.message).startswith("skipped ") or issubclass(w.category, ImageReadWarning):
            log.warning("warning: %s", w.message)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    skipped = len(outputs) - len(written)
    answer(f"{done} {len(written)} image(s) into {args.output}: {len(written)} written, {skipped} skipped")
    return 1 if skipped and not written else 0  # status 1 only when no image at all could be read


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    from lightning_papers.modules import export

    p = subparsers.add_parser(
        "export", help="export a FastStyleTransfer or SuperResolution checkpoint to ONNX or TorchScript",
        description="Export a trained checkpoint's inference model (images in [0, 1], any batch, height and width: "
                    f"TorchScript any size, ONNX H, W >= {export.ONNX_MIN_SIZE}) to ONNX or TorchScript.")
    p.add_argument("--ckpt", required=True, help="FastStyleTransfer or SuperResolution checkpoint (.ckpt)")
    p.add_argument("--format", required=True, help=f"one of {', '.join(export.FORMATS)}")
    p.add_argument("--output", required=True, help="the file to write (e.g. model.onnx, model.pt)")
    p.add_argument("--opset", type=int, default=export.DEFAULT_OPSET,
                   help=f"ONNX opset version (default {export.DEFAULT_OPSET}, {export.MIN_OPSET} to "
                        f"{export.max_opset()})")
    p.add_argument("--overwrite", action="store_true", help="replace --output if it already exists")


def run_export(args: argparse.Namespace) -> int:
    from lightning_papers.cli._tool import answer
    from lightning_papers.modules.export import export_checkpoint

    if not args.output.strip():
        raise ValueError("Expected --output to name the file to write, got an empty string")
    # before the checkpoint is read or anything traced: never onto the checkpoint, never over a file unasked
    check_outputs([args.output], [args.ckpt], flag="--output", input_flag="--ckpt", overwrite=args.overwrite)
    check_writable([Path(args.output)])
    path = export_checkpoint(args.ckpt, args.output, args.format, opset=args.opset)
    answer(f"exported {args.ckpt} as {args.format} to {path}")
    return 0
