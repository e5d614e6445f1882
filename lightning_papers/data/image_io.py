"""Reading and writing images by their real range, for the perceptual-loss networks of Johnson, Alahi and Fei-Fei,
"Perceptual Losses for Real-Time Style Transfer and Super-Resolution", 2016 (arXiv 1603.08155).

One rule for every source (a file, a PIL image, a NumPy array, a torch tensor): the values are scaled by the range
their type stands for, or refused by name, never wrapped, clipped or guessed.

=================================  ============================================================================
source                             read as
=================================  ============================================================================
PIL ``1``                          0 / 1
PIL ``L``, ``RGB``, ``RGBX``,      value / 255
``CMYK``, ``YCbCr``, ``LAB``,      (``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` through PIL's conversion to RGB)
``HSV``
PIL ``P`` (palette), ``PA``        the palette's colours (and its transparency, as alpha)
PIL ``I;16``, ``I;16B``, ...       value / 65535 (16-bit PNG and TIFF)
16-bit colour PNG and TIFF        value / 65535, decoded here (Pillow reads 16-bit colour at 8 bits); an
(RGB, RGBA)                        interlaced PNG or a compressed TIFF at 8 bits, with a warning
float32 RGB(A) TIFF, uncompressed  kept when in [0, 1], decoded here (Pillow cannot open it)
PIL ``I`` (32-bit integers)        value / 65535 when every value lies in 0..65535 (how PIL holds a 16-bit
                                   file); other values are refused
PIL ``F`` (32-bit float)           kept when in [0, 1]; other values refused
animated (GIF, APNG, TIFF pages)   the first frame, with a warning
array ``bool`` / ``uint8`` /       0..1 / value / 255 / value / 65535
``uint16``
array ``float16/32/64``            kept when in [0, 1]; NaN, infinities or values outside refused (values up to
                                   255 are named as such: divide by 255)
any other dtype                    refused, naming the dtype and the cast to make
=================================  ============================================================================

Alpha (``LA``, ``RGBA``, ``PA``, a palette's transparency, 2- and 4-channel arrays) is composited over white
(what a viewer shows on a white page): a transparent pixel reads as white whatever colour it stores. Greyscale is
replicated to RGB. NumPy arrays are (H, W) or (H, W, C); torch tensors are (H, W) or (C, H, W); C is 1, 2, 3 or 4.

:func:`write_image` keeps the bit depth: a source of more than 8 bits (:attr:`ImageInfo.bits` 16) is written as a
16-bit PNG (PIL writes 16-bit greyscale only; the RGB file is written here), an 8-bit one as 8 bits. A format
without 16 bits (JPEG, ...) is written with 8 and says so in a warning. Writes go to a temporary file that is
renamed over the target (``lightning_papers._helpers.atomic_write``).
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from lightning_papers._validation import one_of

__all__ = ["ImageInfo", "ImageReadWarning", "read_image", "write_image"]

ImageSource = str | os.PathLike | np.ndarray | torch.Tensor | Image.Image

_EIGHT_BIT = ("L", "LA", "RGB", "RGBA", "RGBX")
_CONVERTED = ("CMYK", "YCbCr", "LAB", "HSV")
_PREMULTIPLIED = {"RGBa": "RGBA", "La": "LA"}


class ImageReadWarning(UserWarning):
    """Something about an image a user should know (its extra frames were ignored, bits were lost on writing)."""


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image` found: ``bits`` (8, or 16 for a source finer than 8 bits: 16-bit integers, float),
    ``mode`` (the PIL mode or the array dtype), ``frames`` (of an animated file; the first is read)."""

    bits: int
    mode: str
    frames: int = 1


def _name(source) -> str:
    return repr(str(source)) if isinstance(source, (str, os.PathLike)) else f"a {type(source).__name__}"


def _scale(array: np.ndarray, what: str) -> np.ndarray:
    """``array`` as float32 in [0, 1] by the range of its dtype, or a ValueError naming the dtype and the fix."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not np.isfinite(array).all():
            raise ValueError(f"Expected finite image values in [0, 1], got NaN or infinite values in {what}")
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        if low >= -1e-4 and high <= 1.0 + 1e-4:
            return np.clip(array.astype(np.float32), 0.0, 1.0)
        hint = "divide by 255 for 8-bit values" if low >= 0 and high <= 255 else "rescale them to [0, 1]"
        raise ValueError(f"Expected float image values in [0, 1], got {low:g}..{high:g} in {what} ({array.dtype}): "
                         f"{hint}")
    if np.issubdtype(array.dtype, np.integer):
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        cast = "uint8" if 0 <= low and high <= 255 else "uint16" if 0 <= low and high <= 65535 else None
        fix = f"cast to {cast} if these are {cast[4:]}-bit values" if cast else "rescale them to floats in [0, 1]"
        raise ValueError(f"Expected image values as uint8 (0..255), uint16 (0..65535), bool or float in [0, 1], got "
                         f"{array.dtype} values {low}..{high} in {what}: {fix}")
    raise ValueError(f"Expected image values as uint8, uint16, bool or float in [0, 1], got dtype {array.dtype} in "
                     f"{what}")


def _compose(array: np.ndarray, what: str) -> torch.Tensor:
    """(H, W) or (H, W, C) floats in [0, 1] -> (3, H, W): greyscale replicated, alpha composited over white."""
    if array.ndim == 2:
        array = array[:, :, None]
    channels = array.shape[2]
    if channels in (2, 4):
        colour, alpha = array[:, :, :-1], array[:, :, -1:]
        array = colour * alpha + (1.0 - alpha)  # over white
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))


def _from_pil(image: Image.Image, what: str, bits: int | None = None) -> tuple[torch.Tensor, ImageInfo]:
    mode = image.mode
    frames = int(getattr(image, "n_frames", 1) or 1)
    if frames > 1:
        warnings.warn(f"{what} has {frames} frames; only the first is read", ImageReadWarning, stacklevel=3)
        image.seek(0)
    image = ImageOps.exif_transpose(image)
    if mode in _PREMULTIPLIED:
        image, mode = image.convert(_PREMULTIPLIED[mode]), _PREMULTIPLIED[mode]
    if mode == "1":
        array, depth = np.asarray(image, dtype=np.bool_), 8
    elif mode in ("P", "PA"):
        keep_alpha = mode == "PA" or "transparency" in image.info
        array, depth = np.asarray(image.convert("RGBA" if keep_alpha else "RGB")), 8
    elif mode in _EIGHT_BIT:
        array, depth = np.asarray(image), 8
    elif mode in _CONVERTED:
        array, depth = np.asarray(image.convert("RGB")), 8
    elif mode.startswith("I;16"):
        array, depth = np.asarray(image).astype(np.uint16), 16
    elif mode == "I":
        array = np.asarray(image)
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 65535:
            raise ValueError(f"Expected a 32-bit integer image (PIL mode 'I') to hold 16-bit values 0..65535, got "
                             f"{low}..{high} in {what}: save it as 8- or 16-bit, or as floats in [0, 1]")
        array, depth = array.astype(np.uint16), 16
    elif mode == "F":
        array, depth = np.asarray(image), 16
    else:
        raise ValueError(f"Expected an image in a PIL mode this package reads (1, L, LA, P, PA, RGB, RGBA, CMYK, "
                         f"YCbCr, LAB, HSV, I;16, I, F), got mode {mode!r} in {what}")
    tensor = _compose(_scale(array, what), what)
    return tensor, ImageInfo(bits=bits or depth, mode=mode, frames=frames)


def _stored_bits(image: Image.Image) -> int | None:
    """16 for a file PIL decodes from 16 bits per channel into 8 (a 16-bit RGB(A) PNG: rawmode ``RGB;16B``)."""
    tile = getattr(image, "tile", None) or []
    args = tile[0].args if tile else None  # the raw mode, alone or first in a tuple (PIL versions differ)
    rawmode = args[0] if isinstance(args, tuple) and args else args
    return 16 if isinstance(rawmode, str) and ";16" in rawmode else None


def read_image(source: ImageSource) -> tuple[torch.Tensor, ImageInfo]:
    """One image as a float tensor (3, H, W) in [0, 1] and what it was (:class:`ImageInfo`), by the rules above.

    Raises:
        FileNotFoundError: for a path that does not exist.
        ValueError: for a file PIL cannot read (or one larger than PIL's decompression-bomb limit), a mode or
            dtype that has no known range, values outside it, or a shape that is not an image; naming which.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"Expected an image file, but {str(source)!r} does not exist")
        what = repr(str(source))
        try:
            with Image.open(path) as opened:
                if _stored_bits(opened) == 16 and opened.mode in ("RGB", "RGBA"):
                    exact = {"PNG": _png16_rgb, "TIFF": _tiff16_rgb}.get(opened.format, lambda _: None)(path)
                    if exact is not None:  # Pillow decodes 16-bit colour at 8 bits: read every bit here
                        info = ImageInfo(bits=16, mode=opened.mode + ";16", frames=1)
                        return _compose(_scale(exact, what), what), info
                    warnings.warn(f"{what} stores 16 bits per colour channel, which Pillow reads at 8: values are "
                                  "scaled right, to 1/255", ImageReadWarning, stacklevel=2)
                return _from_pil(opened, what, _stored_bits(opened))
        except Image.DecompressionBombError as err:
            raise ValueError(f"Could not read an image from {what}: {err}") from None
        except (OSError, SyntaxError, EOFError) as err:
            exact = _tiff16_rgb(path) if path.suffix.lower() in (".tif", ".tiff") else None
            if exact is not None:  # a float RGB(A) TIFF, which Pillow cannot open
                return _compose(_scale(exact, what), what), ImageInfo(bits=16, mode="RGB;F", frames=1)
            raise ValueError(f"Could not read an image from {what}: {err}") from err
    if isinstance(source, Image.Image):
        return _from_pil(source, "a PIL image")
    if isinstance(source, torch.Tensor):
        tensor = source.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        if tensor.ndim == 3:
            tensor = tensor.permute(1, 2, 0)
        array, what = tensor.numpy(), f"a {tuple(source.shape)} {source.dtype} tensor"
    elif isinstance(source, np.ndarray):
        array, what = source, f"a {source.shape} {source.dtype} array"
    else:
        raise ValueError(f"Expected an image path, PIL image, NumPy array or torch tensor, got {type(source).__name__}")
    if array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4) or array.ndim not in (2, 3) or 0 in array.shape:
        raise ValueError(f"Expected an image of shape (H, W) or (H, W, C) with C in 1..4 (a tensor: (C, H, W)), got "
                         f"{tuple(source.shape)} in {what}")
    bits = 16 if array.dtype in (np.uint16, np.float32, np.float64) else 8
    return _compose(_scale(array, what), what), ImageInfo(bits=bits, mode=str(array.dtype))


def _unfilter(raw: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """PNG's per-row filters undone (ISO 15948 section 9): (height, stride) bytes."""
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    previous = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = int(rows[y, 0]), rows[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # Sub: a running sum along each byte lane
            cur = np.cumsum(line.reshape(-1, bpp).astype(np.int64), axis=0).astype(np.uint8).reshape(-1)
        elif kind == 2:  # Up
            cur = line + previous
        elif kind in (3, 4):  # Average, Paeth: each byte depends on the one bpp before it
            cur, up = bytearray(line.tobytes()), previous.tobytes()
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = up[i]
                if kind == 3:
                    cur[i] = (cur[i] + ((a + b) >> 1)) & 0xFF
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
            cur = np.frombuffer(bytes(cur), np.uint8)
        else:
            raise ValueError(f"Expected PNG row filters 0..4, got {kind}")
        out[y] = previous = cur
    return out


def _png16_rgb(path: Path) -> np.ndarray | None:
    """A non-interlaced 16-bit RGB or RGBA PNG as (H, W, C) uint16, read here (Pillow reads it at 8 bits); ``None``
    for any other PNG (interlaced, say), which Pillow then reads."""
    data = path.read_bytes()
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        return None
    width, height, depth, colour, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(colour)
    if depth != 16 or channels is None or interlace:
        return None
    raw = zlib.decompress(b"".join(idat))
    stride = width * channels * 2
    if len(raw) < height * (stride + 1):
        raise ValueError(f"Expected {height} rows of {stride + 1} bytes in {str(path)!r}, got a truncated file")
    rows = _unfilter(raw[:height * (stride + 1)], height, stride, channels * 2)
    return rows.view(">u2").reshape(height, width, channels).astype(np.uint16)


def _tiff16_rgb(path: Path) -> np.ndarray | None:
    """An uncompressed, interleaved 16-bit or float32 RGB(A) TIFF (its first page) as (H, W, C) uint16 / float32,
    read here (Pillow reads the first at 8 bits and cannot open the second); ``None`` for any other (compressed,
    planar, tiled), which Pillow then reads."""
    data = path.read_bytes()
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 8:
        return None
    (offset,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[offset:offset + 2])
    sizes = {3: ("H", 2), 4: ("I", 4)}
    tags: dict[int, list[int]] = {}
    for k in range(count):
        tag, kind, n, raw = struct.unpack(order + "HHI4s", data[offset + 2 + 12 * k:offset + 14 + 12 * k])
        if kind not in sizes:
            continue
        fmt, size = sizes[kind]
        where = raw if n * size <= 4 else data[struct.unpack(order + "I", raw)[0]:][:n * size]
        tags[tag] = list(struct.unpack(order + fmt * n, where[:n * size]))
    width, height = tags.get(256, [0])[0], tags.get(257, [0])[0]
    channels = tags.get(277, [1])[0]
    bits, sample = set(tags.get(258, [0])), tags.get(339, [1])[0]  # SampleFormat: 1 unsigned, 3 float
    dtype = {(16, 1): "u2", (32, 3): "f4"}.get((bits.pop() if len(bits) == 1 else 0, sample))
    if (tags.get(259, [1])[0] != 1 or tags.get(284, [1])[0] != 1 or dtype is None
            or channels not in (3, 4) or 273 not in tags or 279 not in tags or not width or not height):
        return None
    size = width * height * channels * int(dtype[1])
    pixels = b"".join(data[o:o + n] for o, n in zip(tags[273], tags[279]))
    if len(pixels) < size:
        raise ValueError(f"Expected {width}x{height} pixels of {channels} channels in {str(path)!r}, got a truncated "
                         "file")
    array = np.frombuffer(pixels[:size], order + dtype).reshape(height, width, channels)
    return array.astype(np.uint16 if dtype == "u2" else np.float32)


def _png16(array: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (colour type 2, no interlace, filter 0 on every row) of an (H, W, 3) uint16 array."""
    height, width, _ = array.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = np.ascontiguousarray(array, dtype=">u2").view(np.uint8).reshape(height, width * 6)
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def write_image(image: torch.Tensor, path: str | os.PathLike, bits: int = 8) -> Path:
    """Write a (3, H, W) or (1, 3, H, W) float image in [0, 1] (clamped) to ``path``, format by its extension.

    ``bits=16`` writes a 16-bit PNG (any other format is written with 8 bits, with an :class:`ImageReadWarning`).
    The file is written under a temporary name in the same folder and renamed over ``path``.

    Raises:
        ValueError: for a tensor of another shape, ``bits`` other than 8 or 16, or an extension PIL cannot write.
    """
    from lightning_papers._helpers import atomic_write

    if not isinstance(image, torch.Tensor):
        raise ValueError(f"Expected an image tensor (3, H, W), got {type(image).__name__}: convert it with "
                         "torch.as_tensor (and move channels first)")
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"Expected an image tensor (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
    one_of("bits", bits, (8, 16))
    if image.is_floating_point() and not bool(torch.isfinite(image).all()):  # NaN would be written as black
        raise ValueError(f"Expected finite image values, got NaN or infinite values for {str(path)!r}")
    path = Path(path)
    array = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    suffix = path.suffix.lower()
    if bits == 16 and suffix != ".png":
        warnings.warn(f"{str(path)!r} is written with 8 bits per channel from a 16-bit source: only a .png output "
                      "keeps 16 bits", ImageReadWarning, stacklevel=2)
        bits = 8
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"Expected an output file name with an image extension PIL can write (.png, .jpg, .tif, ...), "
                         f"got {str(path)!r}")
    with atomic_write(path) as tmp:
        if bits == 16:
            tmp.write_bytes(_png16(np.round(array * 65535.0).astype(np.uint16)))
        else:
            Image.fromarray(np.round(array * 255.0).astype(np.uint8)).save(tmp, format=fmt)
    return path
