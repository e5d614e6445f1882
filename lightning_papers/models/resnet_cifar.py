"""CIFAR ResNets of He et al., "Deep Residual Learning for Image Recognition", 2016 (arXiv 1512.03385, §4.2).

The network is a 3x3 stem with 16 filters, three stages of ``n`` basic blocks with 16, 32 and 64 filters
(feature maps 32, 16 and 8 pixels), global average pooling and a linear classifier: ``6n + 2`` weighted
layers in all. Shortcuts that change shape use option A (parameter-free: subsample by 2 and pad the new
channels with zeros, the paper's CIFAR choice) or option B (1x1 projection + BN).

Also the variants that Li et al., "Visualizing the Loss Landscape of Neural Nets", 2018 (arXiv 1712.09913)
compare: ``*_noshort`` (no skip connections at all) and wide versions (``wide=k`` multiplies every width).

Examples:
    >>> from lightning_papers.models import get_model
    >>> model = get_model("resnet20", num_classes=10)
    >>> sum(p.numel() for p in model.parameters())
    269722
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from lightning_papers._validation import one_of, positive_int

__all__ = [
    "BasicBlock",
    "PadShortcut",
    "ResNetCIFAR",
    "get_model",
    "list_models",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet1202",
    "resnet20_noshort",
    "resnet56_noshort",
    "resnet110_noshort",
    "resnet56_w2",
    "resnet56_w4",
    "resnet56_w8",
]

Shortcut = Literal["A", "B", "none"]
SUPPORTED_SHORTCUTS = ("A", "B", "none")


class PadShortcut(nn.Module):
    """Option A shortcut: take every ``stride``-th pixel and zero-pad the channel dimension.

    A named module (not a lambda), so the network pickles, deep-copies and scripts.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"Expected `out_channels` >= `in_channels` for a zero-padding shortcut, "
                f"got {out_channels} < {in_channels}"
            )
        self.stride = stride
        self.pad_before = (out_channels - in_channels) // 2
        self.pad_after = out_channels - in_channels - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # Pad order is (W_left, W_right, H_top, H_bottom, C_front, C_back).
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, pad=({self.pad_before}, {self.pad_after})"


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a shortcut added before the last ReLU (He et al. Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: Shortcut = "A") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.use_shortcut = shortcut != "none"
        self.shortcut: nn.Module
        if shortcut == "none" or (stride == 1 and in_channels == out_channels):
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.use_shortcut:
            out = out + self.shortcut(x)
        return F.relu(out)


class ResNetCIFAR(nn.Module):
    """A CIFAR ResNet with ``6 * blocks_per_stage + 2`` weighted layers.

    Args:
        blocks_per_stage: ``n`` in the paper (3 for ResNet-20, 9 for ResNet-56, ...).
        num_classes: size of the classifier output.
        shortcut: ``"A"`` (zero-padding identity), ``"B"`` (1x1 projection where the shape changes)
            or ``"none"`` (no skip connections: the ``noshort`` nets of Li et al.).
        wide: width multiplier applied to the 16/32/64 filters of every stage.
        in_channels: channels of the input images.

    Raises:
        ValueError: for a non-positive ``blocks_per_stage``, ``num_classes`` or ``wide``, or an
            unknown ``shortcut``.

    Examples:
        >>> net = ResNetCIFAR(3, num_classes=10)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        blocks_per_stage: int,
        num_classes: int = 10,
        *,
        shortcut: Shortcut = "A",
        wide: int = 1,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.blocks_per_stage = positive_int("blocks_per_stage", blocks_per_stage)
        self.num_classes = positive_int("num_classes", num_classes)
        self.wide = positive_int("wide", wide)
        in_channels = positive_int("in_channels", in_channels)
        self.shortcut = one_of("shortcut", shortcut, SUPPORTED_SHORTCUTS)
        widths = [16 * wide, 32 * wide, 64 * wide]

        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.layer1 = self._make_stage(widths[0], widths[0], blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(widths[0], widths[1], blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(widths[1], widths[2], blocks_per_stage, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes)
        self._init_weights()

    def _make_stage(self, in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, out_channels, stride, self.shortcut)]
        layers += [BasicBlock(out_channels, out_channels, 1, self.shortcut) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # He et al. §3.4 use the initialisation of their arXiv 1502.01852 (Kaiming normal, fan_out).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def depth(self) -> int:
        return 6 * self.blocks_per_stage + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


_MODELS: dict[str, Callable[..., nn.Module]] = {}
Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


def _register_model(builder: Builder) -> Builder:
    """Make ``builder`` one of the names :func:`get_model` knows (its function name), torchvision-style."""
    _MODELS[builder.__name__] = builder
    return builder


def _resnet(depth: int, **kwargs: Any) -> ResNetCIFAR:
    """ResNet-``depth`` (``6n + 2``); ``kwargs`` go to :class:`ResNetCIFAR` (``num_classes``, ``shortcut``, ...)."""
    if (depth - 2) % 6 != 0 or depth < 8:
        raise ValueError(f"Expected a CIFAR ResNet depth of the form 6n + 2 (n >= 1), got {depth}")
    return ResNetCIFAR((depth - 2) // 6, **kwargs)


# Every builder takes ResNetCIFAR's keyword arguments: num_classes=10, shortcut="A", wide=1, in_channels=3.
@_register_model
def resnet20(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-20 (n=3): 269,722 parameters with option A and 10 classes."""
    return _resnet(20, **kwargs)


@_register_model
def resnet32(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-32 (n=5): 464,154 parameters."""
    return _resnet(32, **kwargs)


@_register_model
def resnet44(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-44 (n=7): 658,586 parameters."""
    return _resnet(44, **kwargs)


@_register_model
def resnet56(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-56 (n=9): 853,018 parameters."""
    return _resnet(56, **kwargs)


@_register_model
def resnet110(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-110 (n=18): 1,727,962 parameters."""
    return _resnet(110, **kwargs)


@_register_model
def resnet1202(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-1202 (n=200): 19,421,274 parameters."""
    return _resnet(1202, **kwargs)


@_register_model
def resnet20_noshort(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-20 without skip connections (Li et al.)."""
    return _resnet(20, shortcut="none", **kwargs)


@_register_model
def resnet56_noshort(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-56 without skip connections (Li et al.)."""
    return _resnet(56, shortcut="none", **kwargs)


@_register_model
def resnet110_noshort(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-110 without skip connections (Li et al.)."""
    return _resnet(110, shortcut="none", **kwargs)


@_register_model
def resnet56_w2(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-56 with twice the width (32/64/128 filters)."""
    return _resnet(56, wide=2, **kwargs)


@_register_model
def resnet56_w4(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-56 with four times the width (64/128/256 filters)."""
    return _resnet(56, wide=4, **kwargs)


@_register_model
def resnet56_w8(**kwargs: Any) -> ResNetCIFAR:
    """ResNet-56 with eight times the width (128/256/512 filters)."""
    return _resnet(56, wide=8, **kwargs)


def list_models() -> list[str]:
    """Names accepted by :func:`get_model`, sorted."""
    return sorted(_MODELS)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name; keyword arguments go to its builder.

    Raises:
        ValueError: if ``name`` is not registered (the message lists the valid names).
    """
    try:
        builder = _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown model {name!r}. Expected one of: {', '.join(list_models())}") from None
    return builder(**kwargs)
