"""``ImageModel``: the inference forward of a trained perceptual-loss checkpoint, as a plain ``nn.Module``.

Johnson, Alahi, Fei-Fei, Perceptual Losses for Real-Time Style Transfer and Super-Resolution, 2016
(arXiv 1603.08155). A :class:`~lightning_papers.modules.FastStyleTransfer` or
:class:`~lightning_papers.modules.SuperResolution` checkpoint holds a LightningModule with losses, metrics and
optimizer state around one image transformation network; applying or exporting it needs only the network and
(for super-resolution) the bicubic upsampling it corrects. :func:`load_image_model` reads either kind of
checkpoint (no VGG weights needed), tells which it is, and returns an :class:`ImageModel`: images in [0, 1] in,
images in [0, 1] out, scriptable with ``torch.jit.script`` and traceable for ONNX.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_papers._validation import one_of, positive_int
from lightning_papers.modules.super_resolution import bicubic_upsample

__all__ = ["KINDS", "ImageModel", "checkpoint_kind", "load_image_model", "read_checkpoint"]

# LightningModule class name -> the state_dict prefix only its network has, and the command that applies it.
KINDS = {"FastStyleTransfer": "net.down.", "SuperResolution": "net.stem."}
COMMANDS = {"FastStyleTransfer": "stylize", "SuperResolution": "super-resolve"}


class ImageModel(nn.Module):
    """An image transformation network with its inference post-processing: ``clamp(net(x))`` or, for residual
    super-resolution, ``clamp(clamp(bicubic(x)) + net(x))`` (exactly ``SuperResolution.forward`` in eval mode).

    Args:
        net: a :class:`~lightning_papers.models.TransformerNet`, a
            :class:`~lightning_papers.models.SuperResolutionNet` or any module mapping (N, 3, H, W) images to
            images ``factor`` times larger.
        factor: how much larger the output is than the input (1 for style transfer).
        residual: add the bicubic upsampling of the input to the network's output (``SuperResolution``'s
            default); needs ``factor`` > 1.
        kind: the LightningModule class the network came from, for messages and export metadata.

    Raises:
        ValueError: for a ``factor`` that is not a positive integer, or ``residual`` with ``factor`` 1.

    Examples:
        >>> from lightning_papers.models import SuperResolutionNet
        >>> model = ImageModel(SuperResolutionNet(factor=4, output="none"), factor=4, residual=True)
        >>> model(torch.rand(1, 3, 9, 11)).shape
        torch.Size([1, 3, 36, 44])
    """

    def __init__(self, net: nn.Module, *, factor: int = 1, residual: bool = False, kind: str = "") -> None:
        super().__init__()
        positive_int("factor", factor)
        if residual and factor == 1:
            raise ValueError("Expected `factor` > 1 with `residual=True` (a bicubic upsampling to add), got 1")
        self.net = net
        self.factor = factor
        self.residual = bool(residual)
        self.kind = kind

    @classmethod
    def from_module(cls, module: nn.Module) -> ImageModel:
        """The inference model of a ``FastStyleTransfer`` or ``SuperResolution`` (sharing its network).

        Raises:
            TypeError: for any other module.
        """
        from lightning_papers.modules.style_transfer import FastStyleTransfer
        from lightning_papers.modules.super_resolution import SuperResolution

        if isinstance(module, FastStyleTransfer):
            return cls(module.net, kind="FastStyleTransfer")
        if isinstance(module, SuperResolution):
            hp = module.hparams
            return cls(module.net, factor=int(hp.factor), residual=bool(hp.residual), kind="SuperResolution")
        raise TypeError(f"Expected a FastStyleTransfer or SuperResolution module, got {type(module).__name__}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if self.residual:
            out = bicubic_upsample(x, self.factor) + out  # SuperResolution's baseline plus the correction
        return out.clamp(0, 1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, factor={self.factor}, residual={self.residual}"


def checkpoint_kind(checkpoint: Mapping[str, Any]) -> str | None:
    """``"FastStyleTransfer"``, ``"SuperResolution"`` or ``None``: which network a loaded checkpoint holds.

    A ``_class_path`` hyper-parameter (checkpoints written under LightningCLI) decides when it names one of the
    two classes; otherwise the network's weights do (``net.down.*``: style transfer, ``net.stem.*``: SR).
    """
    hparams = checkpoint.get("hyper_parameters")
    class_path = hparams.get("_class_path") if isinstance(hparams, Mapping) else None
    if isinstance(class_path, str) and class_path.rsplit(".", 1)[-1] in KINDS:
        return class_path.rsplit(".", 1)[-1]
    state = checkpoint.get("state_dict")
    if isinstance(state, Mapping):
        for kind, prefix in KINDS.items():
            if any(isinstance(key, str) and key.startswith(prefix) for key in state):
                return kind
    return None


def load_image_model(ckpt: str | Path, expected: str | None = None) -> ImageModel:
    """The :class:`ImageModel` of a checkpoint, on the CPU in eval mode (no VGG weights are needed).

    Args:
        ckpt: a ``FastStyleTransfer`` or ``SuperResolution`` checkpoint (``.ckpt``).
        expected: ``"FastStyleTransfer"`` or ``"SuperResolution"`` to accept only that kind; ``None``: either.

    Raises:
        FileNotFoundError: for a missing checkpoint.
        ValueError: for an unknown ``expected``, a checkpoint of the other kind (naming the file, the class
            expected and the command for the one found) or a file that is not a checkpoint of either kind.
    """
    from lightning_papers.modules.style_transfer import FastStyleTransfer
    from lightning_papers.modules.super_resolution import SuperResolution

    classes = {"FastStyleTransfer": FastStyleTransfer, "SuperResolution": SuperResolution}
    if expected is not None:
        one_of("expected", expected, tuple(KINDS), fix="pass one of them, or None for either")
    path = Path(ckpt)
    wanted = expected or " or ".join(KINDS)
    checkpoint = read_checkpoint(path, "--ckpt")
    kind = checkpoint_kind(checkpoint)
    if kind is None:
        raise ValueError(f"Expected --ckpt to be a {wanted} checkpoint, but {str(path)!r} holds neither network "
                         f"(no {' or '.join(repr(p + '*') for p in KINDS.values())} weights)")
    if expected is not None and kind != expected:
        raise ValueError(f"Expected --ckpt to be a {expected} checkpoint, but {str(path)!r} is a {kind} checkpoint "
                         f"(apply it with `lightning-papers {COMMANDS[kind]}`)")
    # Lightning's load_from_checkpoint unpickles the file again with torch's default (unsafe on torch < 2.6 and
    # under TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1): build the module from the tensors and plain data read above
    hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not str(k).startswith("_")}
    try:
        module = classes[kind](**hparams)
        module.on_load_checkpoint(checkpoint)
        module.load_state_dict(checkpoint["state_dict"], strict=module.strict_loading)
    except Exception as err:
        raise ValueError(f"Expected --ckpt to be a {kind} checkpoint this version can load, but {str(path)!r} "
                         f"failed: {type(err).__name__}: {_first_line(err)}") from err
    return ImageModel.from_module(module).eval()


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else ""


def _weights_only_reason(err: BaseException) -> str:
    """The line of torch's weights-only error that says what it stopped at (the first is generic advice)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return next((line for line in lines if "GLOBAL" in line or "Unsupported" in line), lines[0] if lines else "")


def read_checkpoint(path: str | Path, flag: str = "--ckpt") -> dict[str, Any]:
    """A checkpoint or state dict read with ``torch.load(weights_only=True)``: tensors and plain data only, never
    code (explicitly, so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` and torch < 2.6's unsafe default do not apply).

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for a file that is not a ``torch.save`` file, one that needs arbitrary objects unpickled
            (refused: that could run code), or one that is not a dict; each naming ``flag`` and the path.
    """
    import pickle
    import zipfile

    path = Path(path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "no such file"
        raise FileNotFoundError(f"Expected {flag} to be a checkpoint file, got {str(path)!r} ({what})")
    not_one = f"Expected {flag} to be a checkpoint written by torch.save or Lightning, but {str(path)!r}"
    with open(path, "rb") as f:
        pickled = f.read(1) == b"\x80"  # a pickle's PROTO opcode: torch.save's legacy format starts with one
    if not (pickled or zipfile.is_zipfile(path)):
        raise ValueError(f"{not_one} is neither a zip archive nor a pickle")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _weights_only_reason(err)
        if "GLOBAL" not in reason:  # the weights-only unpickler stopped at something other than an object
            raise ValueError(f"{not_one} could not be read as one ({reason})") from None
        raise ValueError(f"Expected {flag} to hold only tensors and plain data, got {str(path)!r}, whose objects "
                         f"could run code; refused: re-save its state_dict with a trusted torch ({reason})") from None
    except Exception as err:  # a truncated download, a damaged archive, ...
        raise ValueError(f"{not_one} could not be read as one ({type(err).__name__}: {_first_line(err)})") from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"Expected {flag} to be a checkpoint (a dict), got a {type(checkpoint).__name__} in "
                         f"{str(path)!r}")
    return checkpoint
