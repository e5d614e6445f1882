"""Image transformation networks of Johnson, Alahi and Fei-Fei, "Perceptual Losses for Real-Time Style Transfer
and Super-Resolution", 2016 (arXiv 1603.08155, supplementary material).

``TransformerNet`` (style transfer): a 9x9 conv with 32 filters, two stride-2 3x3 convs (64, 128), five
residual blocks of 128 filters, two x2 upsampling stages (64, 32) and a 9x9 conv back to RGB.
``SuperResolutionNet``: a 9x9 conv with 64 filters, four residual blocks of 64, ``log2(factor)`` x2
upsampling stages of 64 filters and a 9x9 conv back to RGB.

Both take and return images in [0, 1], shape (N, 3, H, W). Departures from the paper, each also noted at its
line: reflection padding everywhere (the paper pads the input by 40 px and uses unpadded convs in the residual
blocks); instance normalisation by default for style transfer (Ulyanov et al., arXiv 1607.08022); and
nearest-neighbour x2 resize + conv upsampling by default (Odena et al., "Deconvolution and Checkerboard
Artifacts", Distill 2016) instead of the paper's stride-1/2 transposed convs, which stay available as
``upsample="transposed"``.

Examples:
    >>> net = TransformerNet()
    >>> net(torch.rand(1, 3, 33, 47)).shape
    torch.Size([1, 3, 33, 47])
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_papers._validation import one_of

__all__ = [
    "ConvLayer",
    "ResidualBlock",
    "SuperResolutionNet",
    "TransformerNet",
    "UpsampleLayer",
]

Norm = Literal["instance", "batch", "none"]
Upsample = Literal["resize_conv", "transposed"]
Output = Literal["sigmoid", "scaled_tanh", "none"]
SUPPORTED_NORMS = ("instance", "batch", "none")
SUPPORTED_UPSAMPLING = ("resize_conv", "transposed")
SUPPORTED_OUTPUTS = ("sigmoid", "scaled_tanh", "none")
SUPPORTED_FACTORS = (4, 8)


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    return nn.Identity()


class ConvLayer(nn.Sequential):
    """Reflection padding, a ``kernel_size`` conv, then (optionally) normalisation and ReLU.

    The conv has no bias when a normalisation follows it: the norm's mean subtraction would cancel it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
                 norm: str = "instance", relu: bool = True) -> None:
        has_norm = relu and norm != "none"
        layers: list[nn.Module] = [
            # Reflection padding instead of zero padding: fewer border artefacts (not in the paper).
            nn.ReflectionPad2d(kernel_size // 2),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, bias=not has_norm),
        ]
        if relu:
            layers += [_norm_layer(norm, out_channels), nn.ReLU()]
        super().__init__(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm layers with a ReLU between them and an identity shortcut, no ReLU after the sum.

    The design of Gross and Wilber that the paper's supplementary material (Fig. 1) uses.
    """

    def __init__(self, channels: int, norm: str = "instance") -> None:
        super().__init__()
        bias = norm == "none"
        # The paper's residual convs are unpadded (and the shortcut centre-cropped); padding keeps the size.
        self.pad1 = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(channels, channels, 3, bias=bias)
        self.norm1 = _norm_layer(norm, channels)
        self.pad2 = nn.ReflectionPad2d(1)
        self.conv2 = nn.Conv2d(channels, channels, 3, bias=bias)
        self.norm2 = _norm_layer(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(self.pad1(x))))
        out = self.norm2(self.conv2(self.pad2(out)))
        return x + out


class UpsampleLayer(nn.Sequential):
    """Doubles the spatial size, then normalisation and ReLU.

    ``"resize_conv"``: nearest-neighbour x2 then a reflection-padded 3x3 conv (Odena et al. 2016: no
    checkerboard artefacts). ``"transposed"``: the paper's 3x3 conv with stride 1/2 (a transposed conv with
    stride 2, padding 1 and output padding 1, so the size exactly doubles).
    """

    def __init__(self, in_channels: int, out_channels: int, *, mode: str = "resize_conv",
                 norm: str = "instance") -> None:
        bias = norm == "none"
        layers: list[nn.Module]
        if mode == "resize_conv":
            layers = [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.ReflectionPad2d(1),
                nn.Conv2d(in_channels, out_channels, 3, bias=bias),
            ]
        else:
            layers = [nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1,
                                         bias=bias)]
        super().__init__(*layers, _norm_layer(norm, out_channels), nn.ReLU())


class _OutputActivation(nn.Module):
    """Maps the last conv's output to [0, 1] (or leaves it alone for ``"none"``)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "sigmoid":
            return torch.sigmoid(x)
        if self.kind == "scaled_tanh":
            # The paper's scaled tanh maps to [0, 255]; our images live in [0, 1].
            return (torch.tanh(x) + 1.0) / 2.0
        return x

    def extra_repr(self) -> str:
        return repr(self.kind)


def _init_without_norm(net: nn.Module) -> None:
    """Initialisation for ``norm="none"``, where nothing rescales the activations.

    PyTorch's default conv initialisation shrinks the signal by about 1/sqrt(3) per layer, so after the
    network's dozen or more convs the output barely depends on the input and training stalls (measured: a
    super-resolution network's residual output stayed ~1e-4 after 100 steps). He et al.'s fan-in
    initialisation (arXiv 1502.01852) keeps the variance through each ReLU layer, and a zero last conv in
    every residual branch starts each block as the identity (Goyal et al., arXiv 1706.02677), so the depth
    does not grow the variance either.
    """
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for module in net.modules():
        if isinstance(module, ResidualBlock):
            nn.init.zeros_(module.conv2.weight)


def _check_options(norm: Norm, upsample: Upsample, output: Output) -> tuple[Norm, Upsample, Output]:
    return (one_of("norm", norm, SUPPORTED_NORMS), one_of("upsample", upsample, SUPPORTED_UPSAMPLING),
            one_of("output", output, SUPPORTED_OUTPUTS))


def _padded_size(size: int, multiple: int, minimum: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``, and at least ``minimum``."""
    rounded = (size + multiple - 1) // multiple * multiple
    if torch.jit.is_tracing():
        # Traced sizes are tensors: ``max`` would freeze the example's branch, so sizes below ``minimum`` are
        # left to fail (the ONNX export documents H, W >= 5); the rounding itself stays in the graph.
        return rounded
    return max(minimum, rounded)


# ``_pad_input`` and ``_crop`` are written for the exporters too: no closures or generators (``torch.jit.script``
# then works at any size), and when traced (the ONNX export) the padding is always applied, so that the pad
# amounts stay computed from the input's size instead of frozen at the example's.
def _pad_input(x: torch.Tensor, multiple: int, minimum: int) -> tuple[torch.Tensor, list[int]]:
    """Pad H and W up to a multiple of ``multiple`` and at least ``minimum``; return the pad [l, r, t, b]."""
    if x.dim() != 4:
        shape = ", ".join([str(s) for s in x.shape])
        raise ValueError(f"Expected images of shape (N, C, H, W), got shape ({shape})")
    h, w = x.shape[-2], x.shape[-1]
    dh, dw = _padded_size(h, multiple, minimum) - h, _padded_size(w, multiple, minimum) - w
    pad = [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2]
    if torch.jit.is_tracing():
        return F.pad(x, pad, mode="reflect"), pad
    if dh == 0 and dw == 0:
        return x, pad
    # Reflection where the image is large enough for it; tiny images (a few pixels) are replicated instead.
    if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h:
        return F.pad(x, pad, mode="reflect"), pad
    return F.pad(x, pad, mode="replicate"), pad


def _crop(y: torch.Tensor, pad: list[int], scale: int) -> torch.Tensor:
    h, w = y.shape[-2], y.shape[-1]
    return y[..., pad[2] * scale:h - pad[3] * scale, pad[0] * scale:w - pad[1] * scale]


class TransformerNet(nn.Module):
    """The style-transfer image transformation network (paper supplementary, Table 1).

    Any input size works: H and W are reflection-padded internally up to a multiple of 4 (at least 8, so every
    padded conv has room) and the output is cropped back to exactly the input's H x W.

    Args:
        norm: ``"instance"`` (default; Ulyanov et al. 2016, what later fast style transfer uses), ``"batch"``
            (the paper) or ``"none"`` (convs get biases instead).
        upsample: ``"resize_conv"`` (default: nearest x2 then conv, no checkerboard artefacts) or
            ``"transposed"`` (the paper's stride-1/2 convs).
        output: ``"sigmoid"`` (default, output in (0, 1)), ``"scaled_tanh"`` (the paper's scaled tanh,
            ``(tanh(x) + 1) / 2``) or ``"none"`` (raw output, not bounded: clamp before saving).

    Raises:
        ValueError: for an unknown ``norm``, ``upsample`` or ``output``.

    Examples:
        >>> net = TransformerNet(norm="batch", upsample="transposed", output="scaled_tanh")
        >>> net(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """

    num_residual_blocks = 5

    def __init__(self, norm: Norm = "instance", upsample: Upsample = "resize_conv",
                 output: Output = "sigmoid") -> None:
        super().__init__()
        self.norm, self.upsample, self.output = _check_options(norm, upsample, output)
        self.down = nn.Sequential(
            ConvLayer(3, 32, 9, norm=norm),
            ConvLayer(32, 64, 3, stride=2, norm=norm),
            ConvLayer(64, 128, 3, stride=2, norm=norm),
        )
        self.residuals = nn.Sequential(*(ResidualBlock(128, norm) for _ in range(self.num_residual_blocks)))
        self.up = nn.Sequential(
            UpsampleLayer(128, 64, mode=upsample, norm=norm),
            UpsampleLayer(64, 32, mode=upsample, norm=norm),
        )
        self.head = ConvLayer(32, 3, 9, relu=False)
        self.activation = _OutputActivation(output)
        if norm == "none":
            _init_without_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad = _pad_input(x, multiple=4, minimum=8)
        y = self.activation(self.head(self.up(self.residuals(self.down(x)))))
        return _crop(y, pad, scale=1)


class SuperResolutionNet(nn.Module):
    """The super-resolution network (paper supplementary, Table 2): output size = ``factor`` x input size.

    Args:
        factor: upsampling factor, 4 or 8 (two or three x2 stages).
        norm: ``"batch"`` (default, the paper), ``"instance"`` or ``"none"``.
        upsample: ``"resize_conv"`` (default) or ``"transposed"`` (the paper).
        output: ``"sigmoid"`` (default), ``"scaled_tanh"`` (the paper) or ``"none"``.

    Raises:
        ValueError: for a ``factor`` other than 4 or 8, or an unknown ``norm``, ``upsample`` or ``output``.

    Examples:
        >>> SuperResolutionNet(factor=4)(torch.rand(1, 3, 18, 20)).shape
        torch.Size([1, 3, 72, 80])
    """

    num_residual_blocks = 4

    def __init__(self, factor: int = 4, norm: Norm = "batch", upsample: Upsample = "resize_conv",
                 output: Output = "sigmoid") -> None:
        super().__init__()
        self.factor = one_of("factor", factor, SUPPORTED_FACTORS)
        self.norm, self.upsample, self.output = _check_options(norm, upsample, output)
        self.stem = ConvLayer(3, 64, 9, norm=norm)
        self.residuals = nn.Sequential(*(ResidualBlock(64, norm) for _ in range(self.num_residual_blocks)))
        self.up = nn.Sequential(
            *(UpsampleLayer(64, 64, mode=upsample, norm=norm) for _ in range(int(math.log2(factor))))
        )
        self.head = ConvLayer(64, 3, 9, relu=False)
        self.activation = _OutputActivation(output)
        if norm == "none":
            _init_without_norm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Tiny inputs are padded to 5 px so the 9x9 reflection padding has room; the output is cropped back.
        x, pad = _pad_input(x, multiple=1, minimum=5)
        y = self.activation(self.head(self.up(self.residuals(self.stem(x)))))
        return _crop(y, pad, scale=self.factor)
