"""``lightning-papers stylize``: apply a trained ``FastStyleTransfer`` checkpoint to photographs.

Any image size (the network pads internally and crops back: the output has the input's size), EXIF
orientation respected, a file or a whole folder (recursive; the folder's layout is kept, PNG files out)::

    lightning-papers stylize --ckpt style.ckpt --input photo.jpg --output photo_stylised.png
    lightning-papers stylize --ckpt style.ckpt --input photos/ --output stylised/ --device cuda --precision bf16

No VGG weights are needed: the checkpoint's transformation network is all that runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

__all__ = ["add_subparser", "run", "stylize_files"]

PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser("stylize", help="apply a FastStyleTransfer checkpoint to photographs",
                              description="Stylise a photograph or a folder of them with a trained checkpoint.")
    p.add_argument("--ckpt", required=True, help="FastStyleTransfer checkpoint (.ckpt)")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--output", required=True, help="the output file (for a file) or folder (for a folder)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--precision", default="32", choices=tuple(PRECISIONS), help="autocast precision (default 32)")


def stylize_files(ckpt: str | Path, inputs: list[Path], outputs: list[Path], device: str = "auto",
                  precision: str = "32") -> list[Path]:
    """Stylise ``inputs[i]`` into ``outputs[i]`` (folders are created); returns ``outputs``.

    Raises:
        FileNotFoundError: for a missing checkpoint or input.
        ValueError: for an unknown ``precision`` or a checkpoint that is not a ``FastStyleTransfer``'s.
    """
    from torchvision.utils import save_image

    from lightning_papers.data import load_image
    from lightning_papers.modules import FastStyleTransfer

    if precision not in PRECISIONS:
        raise ValueError(f"Expected `precision` to be one of {tuple(PRECISIONS)}, got {precision!r}")
    if not Path(ckpt).is_file():
        raise FileNotFoundError(f"Expected --ckpt to be a checkpoint file, got {str(ckpt)!r} (no such file)")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    try:
        module = FastStyleTransfer.load_from_checkpoint(str(ckpt), map_location="cpu")
    except Exception as err:
        raise ValueError(f"Could not load a FastStyleTransfer checkpoint from {str(ckpt)!r}: "
                         f"{type(err).__name__}: {err}") from err
    net = module.net.to(dev).eval()
    dtype = PRECISIONS[precision]
    for src, dst in zip(inputs, outputs):
        image = load_image(src)[None].to(dev)
        with torch.no_grad(), torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = net(image)
        dst.parent.mkdir(parents=True, exist_ok=True)
        save_image(out.float().clamp(0, 1).cpu(), dst)
    return outputs


def run(args: argparse.Namespace) -> int:
    from lightning_papers.data.images import find_images

    src, dst = Path(args.input), Path(args.output)
    if src.is_dir():
        if dst.suffix:
            raise ValueError(f"Expected --output to be a folder when --input is one, got {args.output!r}")
        inputs = find_images(src)
        if not inputs:
            raise ValueError(f"Expected images under {args.input!r}, found none")
        outputs = [(dst / p.relative_to(src)).with_suffix(".png") for p in inputs]
    elif src.is_file():
        inputs, outputs = [src], [dst if dst.suffix else dst / (src.stem + ".png")]
    else:
        raise FileNotFoundError(f"Expected --input to be an image file or a folder, got {args.input!r} (no such path)")
    stylize_files(args.ckpt, inputs, outputs, device=args.device, precision=args.precision)
    print(f"stylised {len(outputs)} image(s) into {dst}")  # noqa: T201
    return 0
