"""Perceptual losses of Johnson, Alahi and Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution", 2016 (arXiv 1603.08155, §3): feature reconstruction, style reconstruction (Gram matrices,
after Gatys et al., arXiv 1508.06576), total variation and pixel losses, measured with a frozen VGG-16.

The loss functions are plain functions of tensors; :class:`VGGFeatures` is the frozen loss network and
:class:`PerceptualLoss` a small module that combines them for a training step.

Weights of the loss network only on request: ``weights="imagenet"`` reads torchvision's
``VGG16_Weights.IMAGENET1K_V1`` checkpoint from the torch hub cache (downloading it there only when
``download=True``; off by default), ``weights="path/to/file.pth"`` reads a local state dict, and
``weights="random"`` gives an untrained network for tests (with a warning).

Examples:
    >>> vgg = VGGFeatures(weights="random")  # warns: untrained, for tests only
    >>> feats = vgg(torch.rand(1, 3, 64, 64))
    >>> {k: tuple(v.shape) for k, v in feats.items()}
    {'relu1_2': (1, 64, 64, 64), 'relu2_2': (1, 128, 32, 32), 'relu3_3': (1, 256, 16, 16), 'relu4_3': (1, 512, 8, 8)}
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lightning_papers._validation import real

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG16_LAYERS",
    "PerceptualLoss",
    "VGGFeatures",
    "feature_loss",
    "fetch_vgg16_weights",
    "gram_matrix",
    "pixel_loss",
    "style_loss",
    "total_variation",
    "vgg16_checkpoint_path",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's VGG-16 ``features``: the number of 3x3 conv-ReLU pairs per block, each block but the last
# followed by a 2x2 max pool. Index of every module as in ``torchvision.models.vgg16().features``.
_VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def _vgg16_layout() -> list[tuple[str, str, int, int]]:
    """(name, kind, in_channels, out_channels) for every module of ``vgg16().features``, in order."""
    layout, in_ch = [], 3
    for block, (width, convs) in enumerate(_VGG16_BLOCKS, start=1):
        for i in range(1, convs + 1):
            layout.append((f"conv{block}_{i}", "conv", in_ch, width))
            layout.append((f"relu{block}_{i}", "relu", width, width))
            in_ch = width
        layout.append((f"pool{block}", "pool", width, width))
    return layout


_LAYOUT = _vgg16_layout()
VGG16_LAYERS: tuple[str, ...] = tuple(name for name, kind, _, _ in _LAYOUT if kind == "relu")
_INDEX = {name: i for i, (name, _, _, _) in enumerate(_LAYOUT)}
_CHANNELS = {name: out for name, _, _, out in _LAYOUT}

_WEIGHT_CHOICES = ('"imagenet"', '"random"', "a path to a .pth state dict")


# -- loss functions ----------------------------------------------------------------------------------------
def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram matrices ``G[n, c, c'] = sum_hw f[n, c, h, w] f[n, c', h, w] / (C H W)`` (paper eq. 3).

    Computed in float32 even under autocast (the sums overflow float16 on real feature maps).

    Args:
        features: (N, C, H, W) feature maps.

    Returns:
        (N, C, C) Gram matrices.
    """
    if features.dim() != 4:
        raise ValueError(f"Expected features of shape (N, C, H, W), got shape {tuple(features.shape)}")
    n, c, h, w = features.shape
    if features.dtype in (torch.float16, torch.bfloat16):
        features = features.float()
    flat = features.reshape(n, c, h * w)
    # outside autocast, which would run the bmm in half precision again and undo the cast
    with torch.autocast(flat.device.type, enabled=False):
        return torch.bmm(flat, flat.transpose(1, 2)) / (c * h * w)


def feature_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Feature reconstruction loss (paper eq. 2): the mean squared error between two feature maps.

    For (N, C, H, W) inputs this is ``||a_n - b_n||_2^2 / (C H W)`` per image, averaged over the batch.
    """
    if a.shape != b.shape:
        raise ValueError(f"Expected tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return F.mse_loss(a, b)


def pixel_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pixel loss (paper §3.3): ``||a_n - b_n||_2^2 / (C H W)`` per image, averaged over the batch (an MSE)."""
    return feature_loss(a, b)


def style_loss(
    features: Mapping[str, torch.Tensor],
    target_grams: Mapping[str, torch.Tensor],
    weights: Mapping[str, float] | None = None,
) -> torch.Tensor:
    """Style reconstruction loss (paper eq. 4), summed over layers.

    ``sum_l w_l * mean_n ||G(features[l])_n - target_grams[l]||_F^2``: the squared Frobenius distance of the
    Gram matrices, averaged over the batch, weighted per layer (weight 1 where ``weights`` does not say).

    Args:
        features: layer name -> (N, C, H, W) feature maps of the generated images.
        target_grams: layer name -> Gram matrices of the style target, (C, C), (1, C, C) or (N, C, C);
            the layers summed over are the keys of this mapping.
        weights: optional layer name -> weight.

    Raises:
        KeyError: if a layer of ``target_grams`` (or of ``weights``) is missing from ``features``.
    """
    weights = dict(weights or {})
    unknown = set(weights) - set(target_grams)
    if unknown:
        raise KeyError(f"Expected `weights` for layers of `target_grams` {sorted(target_grams)}, got {sorted(unknown)}")
    total: torch.Tensor | None = None
    for name, target in target_grams.items():
        if name not in features:
            raise KeyError(f"Expected a feature map for style layer {name!r}, got layers {sorted(features)}")
        g = gram_matrix(features[name])
        term = (g - target.to(g.dtype)).pow(2).sum(dim=(-2, -1)).mean() * weights.get(name, 1.0)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("Expected at least one style layer in `target_grams`, got none")
    return total


def total_variation(x: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """Total variation regulariser (paper §3.3, after Mahendran and Vedaldi, arXiv 1412.0035).

    ``(sum |x[h+1, w] - x[h, w]| + sum |x[h, w+1] - x[h, w]|) / (C H W)`` per image, averaged over the batch
    (squared differences when ``squared``). Normalised by the pixel count so a weight works at any size.
    """
    if x.dim() != 4:
        raise ValueError(f"Expected images of shape (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]
    if squared:
        dh, dw = dh.pow(2), dw.pow(2)
    else:
        dh, dw = dh.abs(), dw.abs()
    return (dh.sum() + dw.sum()) / (n * c * h * w)


# -- VGG-16 weights ----------------------------------------------------------------------------------------
def _imagenet_url() -> str:
    from torchvision.models import VGG16_Weights

    return VGG16_Weights.IMAGENET1K_V1.url


def vgg16_checkpoint_path() -> Path:
    """Where the ImageNet VGG-16 checkpoint lives in the torch hub cache (``torch.hub.get_dir()/checkpoints``).

    This is the file torchvision's ``vgg16(weights="IMAGENET1K_V1")`` reads and writes.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(_imagenet_url())


def _download(url: str, dst: Path, timeout: float) -> None:
    """torch.hub's own downloader (``download_url_to_file``: a temporary file, renamed when complete, and the
    sha256 prefix that torchvision puts in the file name checked, as ``load_state_dict_from_url(check_hash=True)``
    does) with a socket timeout, so that it never hangs. The file is not loaded here: ``VGGFeatures`` memory-maps
    it later and reads only the conv weights."""
    match = torch.hub.HASH_REGEX.search(os.path.basename(url))
    dst.parent.mkdir(parents=True, exist_ok=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # urlopen inside torch.hub takes no timeout of its own
    try:
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=match.group(1) if match else None, progress=False)
    finally:
        socket.setdefaulttimeout(previous)


def _missing_weights_error(path: Path, reason: str) -> RuntimeError:
    return RuntimeError(f"VGG-16 ImageNet weights are not available ({reason}): put {_imagenet_url()} at {path}, or "
                        'pass `weights="path/to/file.pth"` (`weights="random"` is for tests only)')


def fetch_vgg16_weights(download: bool = True, timeout: float = 60.0) -> Path:
    """Path of the ImageNet VGG-16 checkpoint in the hub cache, downloading it first if missing and allowed.

    Call it from a ``prepare_data()`` hook (one process, before the modules are built) so that constructing
    ``VGGFeatures(weights="imagenet", download=False)`` later never touches the network.

    Raises:
        RuntimeError: if the file is not cached and cannot be downloaded; the message says where to put it.
    """
    path = vgg16_checkpoint_path()
    if path.is_file():
        return path
    if not download:
        raise _missing_weights_error(path, "not in the cache and `download=False`")
    try:
        _download(_imagenet_url(), path, timeout)
    except Exception as err:  # any network or disk failure: say where the file should go instead
        raise _missing_weights_error(path, f"the download failed: {type(err).__name__}: {err}") from err
    return path


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected `weights` to be a VGG-16 state dict file, but {str(path)!r} does not exist")
    try:
        try:
            # Memory-mapped: of a 528 MB full VGG-16 checkpoint only the 59 MB of conv weights are read.
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # files in torch's legacy (pre-zip) format cannot be memory-mapped
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise RuntimeError(f"Could not read a state dict from {str(path)!r}: {type(err).__name__}: {err}") from err
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RuntimeError(
            f"Expected {str(path)!r} to hold a state dict (names -> tensors), got {type(state).__name__}"
        )
    return dict(state)


def _features_state_dict(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Size],
                         source: str) -> dict[str, torch.Tensor]:
    """Keep the ``features`` entries of a full or features-only VGG-16 state dict, keyed ``N.weight``."""
    if any(key.startswith("features.") for key in state):
        state = {key[len("features."):]: value for key, value in state.items() if key.startswith("features.")}
    missing = [key for key in expected if key not in state]
    if missing:
        raise RuntimeError(f"Expected a VGG-16 state dict in {source}, but it lacks {missing[:2]}"
                           f"{' ...' if len(missing) > 2 else ''}: pass torchvision's VGG-16 state dict")
    wrong = [f"{key}: {tuple(state[key].shape)} instead of {tuple(shape)}"
             for key, shape in expected.items() if state[key].shape != shape]
    if wrong:
        raise RuntimeError(f"Expected VGG-16 shapes in {source}, got {'; '.join(wrong[:4])}")
    return {key: state[key] for key in expected}


class VGGFeatures(nn.Module):
    """A frozen VGG-16 ``features`` stack that returns the activations of named ReLU layers.

    Inputs are images in [0, 1]; ImageNet mean/std normalisation is applied inside (out of place). The network
    is truncated after the deepest requested layer, its parameters never require gradients and it stays in
    eval mode even when a parent module calls ``.train()``. Gradients still flow to the *input*.

    Args:
        weights: ``"imagenet"`` (torchvision's ``VGG16_Weights.IMAGENET1K_V1`` from the torch hub cache),
            a path to a local ``.pth`` state dict (full VGG-16 with ``features.N.*``/``classifier.*`` keys, or
            features only, ``N.*`` or ``features.N.*``), or ``"random"`` (untrained: tests only, warns).
        layers: names of the taps, from :data:`VGG16_LAYERS` (``relu1_1`` ... ``relu5_3``).
        download: with ``weights="imagenet"``, download the checkpoint into the hub cache when it is missing.
            Off by default: a constructor never touches the network (STYLE rule 13); call
            :func:`fetch_vgg16_weights` from ``prepare_data()`` instead, or pass ``download=True`` knowingly.
        timeout: socket timeout in seconds for that download.

    Raises:
        ValueError: for an unknown ``weights`` value, an empty ``layers`` or an unknown layer name.
        FileNotFoundError: if a ``weights`` path does not exist.
        RuntimeError: if the ImageNet weights are neither cached nor downloadable (the message says where to put
            the file), or if a file does not hold a VGG-16 state dict.

    Examples:
        >>> vgg = VGGFeatures(weights="my_vgg16.pth", layers=("relu2_2",))  # doctest: +SKIP
        >>> vgg(torch.rand(1, 3, 64, 64))["relu2_2"].shape  # doctest: +SKIP
        torch.Size([1, 128, 32, 32])
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        weights: str | os.PathLike = "imagenet",
        layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        *,
        download: bool = False,
        timeout: float = 60.0,
    ) -> None:
        super().__init__()
        if isinstance(layers, str):
            layers = (layers,)
        layers = tuple(layers)
        if not layers:
            raise ValueError(f"Expected at least one layer name from {VGG16_LAYERS}, got {layers!r}")
        unknown = [name for name in layers if name not in VGG16_LAYERS]
        if unknown:
            raise ValueError(f"Expected `layers` from {VGG16_LAYERS}, got unknown {unknown!r}")
        is_path = isinstance(weights, os.PathLike) or (
            isinstance(weights, str) and weights not in ("imagenet", "random")
            and (weights.endswith((".pth", ".pt")) or "/" in weights or os.sep in weights)
        )
        if not is_path and weights not in ("imagenet", "random"):
            raise ValueError(f"Expected `weights` to be one of {', '.join(_WEIGHT_CHOICES)}, got {weights!r}")

        self.layers = layers
        last = max(_INDEX[name] for name in layers)
        modules: list[nn.Module] = []
        for _, kind, in_ch, out_ch in _LAYOUT[: last + 1]:
            if kind == "conv":
                modules.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
            elif kind == "relu":
                modules.append(nn.ReLU())  # not in place (torchvision's is): the taps keep their values
            else:
                modules.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*modules)
        self._taps = {_INDEX[name]: name for name in layers}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        expected = {key: value.shape for key, value in self.features.state_dict().items()}
        if weights == "random":
            warnings.warn(
                'VGGFeatures(weights="random"): an untrained loss network; perceptual losses and stylised images '
                "from it are for testing only.",
                UserWarning,
                stacklevel=2,
            )
            self._init_random()
        else:
            if weights == "imagenet":
                path = fetch_vgg16_weights(download, timeout)
                state, source = _read_state_dict(path), repr(str(path))
            else:
                state, source = _read_state_dict(weights), repr(str(weights))
            self.features.load_state_dict(_features_state_dict(state, expected, source))
        self.weights = "random" if weights == "random" else str(weights)
        self.requires_grad_(False)
        self.eval()

    def _init_random(self) -> None:
        # torchvision's VGG initialisation (Kaiming normal, fan_out), so random features keep a sane scale.
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> VGGFeatures:
        """Always eval: the loss network is fixed, whatever the parent module's mode."""
        return super().train(False)

    def channels(self, name: str) -> int:
        """Channels of the tap ``name``."""
        return _CHANNELS[name]

    def forward(self, x: torch.Tensor, layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """The activations of ``layers`` (default: all the taps) for images ``x`` in [0, 1]; the stack stops at the
        deepest of them (e.g. a content target at ``relu2_2`` costs a third of a pass to ``relu4_3``).

        Raises:
            ValueError: for inputs that are not (N, 3, H, W), or a layer that is not one of the taps.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"Expected RGB images of shape (N, 3, H, W) in [0, 1], got shape {tuple(x.shape)}")
        taps = self._taps
        if layers is not None:
            unknown = [name for name in layers if name not in self.layers]
            if unknown or not layers:
                raise ValueError(f"Expected `layers` to be a non-empty subset of the taps {self.layers}, got "
                                 f"{tuple(layers)!r}")
            taps = {i: name for i, name in self._taps.items() if name in layers}
        last = max(taps)
        out: dict[str, torch.Tensor] = {}
        h = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        for i, module in enumerate(self.features):
            if i > last:
                break
            h = module(h)
            if i in taps:
                out[taps[i]] = h
        return out

    def extra_repr(self) -> str:
        return f"weights={self.weights!r}, layers={self.layers}"


class PerceptualLoss(nn.Module):
    """Content + style + total-variation loss for fast style transfer (paper §3-4).

    ``content_weight * feature_loss(vgg(output)[content_layer], vgg(content)[content_layer])
    + style_weight * style_loss(vgg(output), grams(style), layer_weights) + tv_weight * total_variation(output)``.

    Style targets are set once with :meth:`set_style` and kept as buffers (they travel with checkpoints).
    Per-layer style weights default to ``1 / C_l^2``: the squared Frobenius distance then becomes a mean over
    the Gram entries, which keeps the four layers (64 ... 512 channels) on a comparable scale, as in Johnson's
    reference code and pytorch/examples. With that, ``style_weight=1e5`` matches the content/style balance of
    pytorch/examples' fast-neural-style (1e5 : 1e10 on mean-normalised terms) for torchvision's VGG-16.

    Args:
        vgg: the loss network; it must tap ``content_layer`` and every style layer.
        content_layer: ``"relu2_2"`` (default, the paper's choice for style transfer) or e.g. ``"relu3_3"``.
        style_layers: layers whose Gram matrices are matched.
        content_weight: weight of the feature (content) term.
        style_weight: weight of the style term.
        tv_weight: weight of the total-variation term.
        style_layer_weights: optional layer -> weight (defaults to ``1 / C_l^2``).

    Raises:
        ValueError: if ``vgg`` does not tap a requested layer, a weight is negative or ``style_layer_weights``
            names a layer that is not a style layer.

    Examples:
        >>> from lightning_papers.models import TransformerNet
        >>> net, content, style_image = TransformerNet(), torch.rand(2, 3, 32, 32), torch.rand(1, 3, 32, 32)
        >>> loss_fn = PerceptualLoss(VGGFeatures(weights="random"))
        >>> loss_fn.set_style(style_image)
        >>> terms = loss_fn(net(content), content)
        >>> terms["loss"].backward()
    """

    has_style: torch.Tensor

    def __init__(
        self,
        vgg: VGGFeatures,
        content_layer: str = "relu2_2",
        style_layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3"),
        content_weight: float = 1.0,
        style_weight: float = 1e5,
        tv_weight: float = 0.0,
        style_layer_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        style_layers = tuple(style_layers)
        missing = [name for name in (content_layer, *style_layers) if name not in vgg.layers]
        if missing:
            raise ValueError(f"Expected `vgg` to tap {missing!r}, but it taps {vgg.layers}")
        self.content_weight = real("content_weight", content_weight, 0)
        self.style_weight = real("style_weight", style_weight, 0)
        self.tv_weight = real("tv_weight", tv_weight, 0)
        self.vgg = vgg
        self.content_layer = content_layer
        self.style_layers = style_layers
        if style_layer_weights is None:
            style_layer_weights = {name: 1.0 / _CHANNELS[name] ** 2 for name in style_layers}
        unknown = sorted(set(style_layer_weights) - set(style_layers))
        if unknown:
            raise ValueError(f"Expected `style_layer_weights` for layers of {style_layers}, got {unknown}")
        self.style_layer_weights = dict(style_layer_weights)
        # Fixed-shape buffers (not None), so a checkpoint with the style targets loads into a fresh module.
        for name in style_layers:
            channels = _CHANNELS[name]
            self.register_buffer(f"target_gram_{name}", torch.zeros(1, channels, channels))
        self.register_buffer("has_style", torch.tensor(False))

    @torch.no_grad()
    def set_style(self, style: torch.Tensor) -> None:
        """Compute and keep the Gram matrices of a style image (3, H, W) or batch (1, 3, H, W)."""
        if style.dim() == 3:
            style = style.unsqueeze(0)
        if style.dim() != 4 or style.shape[0] != 1:
            raise ValueError(f"Expected one style image, (3, H, W) or (1, 3, H, W), got shape {tuple(style.shape)}")
        feats = self.vgg(style)
        for name in self.style_layers:
            getattr(self, f"target_gram_{name}").copy_(gram_matrix(feats[name])[:1])
        self.has_style.fill_(True)

    @property
    def target_grams(self) -> dict[str, torch.Tensor]:
        if not bool(self.has_style):
            raise RuntimeError("PerceptualLoss has no style target: call `set_style(style_image)` first")
        return {name: getattr(self, f"target_gram_{name}") for name in self.style_layers}

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms for generated images ``output`` and their inputs ``content``: keys ``content``, ``style``,
        ``tv`` (weighted) and ``loss`` (their sum)."""
        out_feats = self.vgg(output)
        with torch.no_grad():
            # the content target needs the stack only up to its own layer (relu2_2 by default)
            content_feats = self.vgg(content, layers=(self.content_layer,))[self.content_layer]
        terms = {
            "content": self.content_weight * feature_loss(out_feats[self.content_layer], content_feats),
            "style": self.style_weight * style_loss(out_feats, self.target_grams, self.style_layer_weights),
            "tv": self.tv_weight * total_variation(output),
        }
        terms["loss"] = terms["content"] + terms["style"] + terms["tv"]
        return terms
