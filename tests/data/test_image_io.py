"""Images are read by their real range: every PIL mode and array dtype, each checked against a known ramp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_papers.data import ImageReadWarning, load_image, read_image, write_image

RAMP8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
RAMP16 = (np.arange(256 * 16, dtype=np.uint32) * 16).clip(0, 65535).astype(np.uint16).reshape(16, 256)


def _rawmode(image: Image.Image) -> str:
    args = image.tile[0].args
    return args[0] if isinstance(args, tuple) else args


def _grey(t: torch.Tensor) -> np.ndarray:
    """Channel 0 of a (3, H, W) tensor, after checking the three channels are equal (greyscale replicated)."""
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])
    return t[0].numpy()


def test_8_bit_greyscale_and_bilevel(tmp_path):
    Image.fromarray(RAMP8).save(tmp_path / "l.png")
    t, info = read_image(tmp_path / "l.png")
    np.testing.assert_allclose(_grey(t), RAMP8 / 255.0, atol=1e-7)
    assert (info.bits, info.mode) == (8, "L")
    checker = (np.indices((4, 6)).sum(0) % 2).astype(bool)
    Image.fromarray(checker).convert("1").save(tmp_path / "b.png")
    np.testing.assert_array_equal(_grey(load_image(tmp_path / "b.png")), checker.astype(np.float32))


def test_16_bit_png_is_not_read_as_white(tmp_path):
    # the case: a 0..65535 ramp read as 8 bits was 99.6 % exactly 1.0
    Image.fromarray(RAMP16).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as check:
        assert check.mode == "I;16"  # PIL's own reading: a real 16-bit file
    t, info = read_image(tmp_path / "g16.png")
    np.testing.assert_allclose(_grey(t), RAMP16 / 65535.0, atol=1e-6)
    assert info.bits == 16 and abs(float(t.mean()) - RAMP16.mean() / 65535) < 1e-6


def test_big_endian_16_bit_and_32_bit_integer_modes(tmp_path):
    big = Image.new("I;16B", (3, 1))
    for x, v in enumerate((0, 1000, 65535)):
        big.putpixel((x, 0), v)
    np.testing.assert_allclose(_grey(load_image(big))[0], [0, 1000 / 65535, 1.0], atol=1e-7)
    Image.fromarray(np.array([[0, 32768, 65535]], np.int32)).save(tmp_path / "i.tif")
    with Image.open(tmp_path / "i.tif") as check:
        assert check.mode == "I"
    np.testing.assert_allclose(_grey(load_image(tmp_path / "i.tif"))[0], [0, 32768 / 65535, 1.0], atol=1e-7)
    Image.fromarray(np.array([[-1, 70000]], np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match=r"mode 'I'\) to hold 16-bit values 0\.\.65535, got -1\.\.70000"):
        load_image(tmp_path / "wide.tif")


def test_float_tiff_in_0_1_is_kept_and_0_255_refused(tmp_path):
    ramp = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    t, info = read_image(tmp_path / "f.tif")
    np.testing.assert_array_equal(_grey(t), ramp)  # not black: the float TIFF
    assert (info.bits, info.mode) == (16, "F")
    Image.fromarray(ramp * 255).save(tmp_path / "f255.tif")
    with pytest.raises(ValueError, match=r"float image values in \[0, 1\], got 0\.\.255 .*divide by 255"):
        load_image(tmp_path / "f255.tif")


def test_alpha_is_composited_over_white():
    rgba = np.zeros((1, 3, 4), np.uint8)
    rgba[0, :, 0] = 200  # red 200 everywhere
    rgba[0, :, 3] = (0, 51, 255)  # transparent, 20 % and opaque
    t = load_image(Image.fromarray(rgba, "RGBA"))
    alpha = np.array([0, 51, 255]) / 255
    np.testing.assert_allclose(t[0, 0].numpy(), 200 / 255 * alpha + (1 - alpha), atol=1e-6)
    np.testing.assert_allclose(t[1, 0].numpy(), 1 - alpha, atol=1e-6)
    la = Image.fromarray(np.array([[[100, 255], [100, 0]]], np.uint8), "LA")
    np.testing.assert_allclose(_grey(load_image(la))[0], [100 / 255, 1.0], atol=1e-6)


def test_palette_colours_and_transparency():
    image = Image.new("P", (3, 1))
    image.putpalette([10, 20, 30, 200, 100, 0, 0, 0, 0] + [0] * 759)
    for x, index in enumerate((0, 1, 2)):
        image.putpixel((x, 0), index)
    np.testing.assert_allclose(load_image(image)[:, 0, 0].numpy(), np.array([10, 20, 30]) / 255, atol=1e-7)
    np.testing.assert_allclose(load_image(image)[:, 0, 1].numpy(), np.array([200, 100, 0]) / 255, atol=1e-7)
    image.info["transparency"] = 2  # index 2 (black) is transparent: white over the page
    np.testing.assert_allclose(load_image(image)[:, 0, 2].numpy(), [1.0, 1.0, 1.0], atol=1e-7)


def test_cmyk_and_ycbcr_through_their_conversions():
    cmyk = Image.new("CMYK", (1, 1), (100, 50, 0, 40))
    expected = np.round(np.array([155, 205, 255]) * 215 / 255) / 255  # (255 - c) (255 - k) / 255
    np.testing.assert_allclose(load_image(cmyk)[:, 0, 0].numpy(), expected, atol=1e-7)
    ycc = Image.new("YCbCr", (1, 1), (100, 128, 128))  # neutral chroma: grey of the luma
    np.testing.assert_allclose(load_image(ycc)[:, 0, 0].numpy(), [100 / 255] * 3, atol=1e-7)


def test_an_animation_reads_its_first_frame_with_a_warning(tmp_path):
    frames = [Image.new("L", (4, 4), v) for v in (10, 200, 90)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(ImageReadWarning, match=r"a\.gif' has 3 frames; only the first is read"):
        t, info = read_image(tmp_path / "a.gif")
    assert info.frames == 3
    np.testing.assert_allclose(_grey(t), np.full((4, 4), 10 / 255), atol=1e-7)


def test_16_bit_colour_png_is_written_and_read_as_16_bit(tmp_path):
    ramp = torch.linspace(0, 1, 3 * 4 * 5).reshape(3, 4, 5)
    write_image(ramp, tmp_path / "c16.png", bits=16)
    with Image.open(tmp_path / "c16.png") as check:  # PIL's own decoder: a valid 16-bit RGB PNG
        assert check.mode == "RGB" and _rawmode(check) == "RGB;16B" and check.size == (5, 4)
        high = np.asarray(check)  # PIL keeps the high byte of each 16-bit value
    np.testing.assert_array_equal(high, (np.round(ramp.permute(1, 2, 0).numpy() * 65535).astype(np.uint16) >> 8))
    t, info = read_image(tmp_path / "c16.png")
    assert info.bits == 16  # so an output made from it is written with 16 bits again
    exact = np.round(ramp.numpy() * 65535) / 65535  # every one of the 16 bits read back, not only PIL's high byte
    np.testing.assert_allclose(t.numpy(), exact, rtol=0, atol=1e-6)
    write_image(ramp, tmp_path / "c8.png")
    with Image.open(tmp_path / "c8.png") as check:
        assert check.mode == "RGB" and _rawmode(check) == "RGB"
    with pytest.warns(ImageReadWarning, match=r"c\.jpg' is written with 8 bits .*only a \.png output keeps 16"):
        write_image(ramp, tmp_path / "c.jpg", bits=16)


# arrays and tensors: (source, expected channel-0 values) or (source, the error's key words)
ARRAYS_OK = [
    ("uint16 ramp, no wrap", np.array([[0, 256, 65535]], np.uint16), [0, 256 / 65535, 1.0]),
    ("uint8", np.array([[0, 128, 255]], np.uint8), [0, 128 / 255, 1.0]),
    ("bool", np.array([[True, False]]), [1.0, 0.0]),
    ("float32 kept", np.array([[0.0, 0.25, 1.0]], np.float32), [0.0, 0.25, 1.0]),
    ("float16", np.array([[0.5, 1.0]], np.float16), [0.5, 1.0]),
    ("float64 rgb", np.full((1, 2, 3), 0.75), [0.75, 0.75]),
    ("tensor CHW", torch.full((3, 1, 2), 0.3), [0.3, 0.3]),
    ("tensor uint8", torch.tensor([[0, 51]], dtype=torch.uint8), [0.0, 0.2]),
    ("tensor bf16", torch.full((1, 1, 2), 0.5, dtype=torch.bfloat16), [0.5, 0.5]),
    ("1 channel", np.full((1, 2, 1), 255, np.uint8), [1.0, 1.0]),
]

ARRAYS_REFUSED = [
    ("float 0..255", np.array([[0.0, 254.8]], np.float32), r"got 0\.\.254\.8 .*divide by 255"),
    ("float above 255", np.array([[0.0, 1000.0]]), r"got 0\.\.1000 .*rescale them to \[0, 1\]"),
    ("negative floats", np.array([[-0.5, 0.5]]), r"got -0\.5\.\.0\.5"),
    ("nan", np.array([[np.nan, 0.5]]), r"finite image values .*NaN or infinite"),
    ("int64 8-bit", np.array([[0, 255]]), r"got int64 values 0\.\.255 .*cast to uint8"),
    ("int32 16-bit", np.array([[0, 4000]], np.int32), r"int32 values 0\.\.4000 .*cast to uint16"),
    ("int16 negative", np.array([[-3, 4]], np.int16), r"int16 values -3\.\.4 .*rescale"),
    ("uint32", np.array([[0, 70000]], np.uint32), r"uint32 values 0\.\.70000"),
    ("complex", np.zeros((2, 2), np.complex64), r"got dtype complex64"),
    ("5 channels", np.zeros((2, 2, 5), np.uint8), r"C in 1\.\.4 .*got \(2, 2, 5\)"),
    ("1-D", np.zeros(4, np.uint8), r"got \(4,\)"),
    ("tensor 4-D", torch.zeros(1, 3, 2, 2), r"got \(1, 3, 2, 2\)"),
    ("empty", np.zeros((0, 3), np.uint8), r"got \(0, 3\)"),
    ("a list", [[0, 1]], r"image path, PIL image, NumPy array or torch tensor, got list"),
]


@pytest.mark.parametrize(("source", "expected"), [r[1:] for r in ARRAYS_OK], ids=[r[0] for r in ARRAYS_OK])
def test_arrays_are_scaled_by_their_dtype(source, expected):
    t = load_image(source)
    assert t.dtype == torch.float32 and t.shape[0] == 3
    np.testing.assert_allclose(t[0, 0].numpy(), expected, atol=1e-3 if "16" in str(source.dtype) else 1e-6)


@pytest.mark.parametrize(("source", "match"), [r[1:] for r in ARRAYS_REFUSED], ids=[r[0] for r in ARRAYS_REFUSED])
def test_arrays_without_a_known_range_are_refused_by_name(source, match):
    with pytest.raises(ValueError, match=match):
        load_image(source)


def test_modes_without_a_known_range_are_refused_by_name(monkeypatch):
    from lightning_papers.data import image_io

    class Opened:  # what Image.open returns for a mode PIL decodes but this package has no range for
        mode, info = "BGR;15", {}

    monkeypatch.setattr(image_io.ImageOps, "exif_transpose", lambda image: image)
    with pytest.raises(ValueError, match=r"PIL mode this package reads .*got mode 'BGR;15' in a PIL image"):
        image_io._from_pil(Opened(), "a PIL image")


def _png_rows_filtered(array: np.ndarray) -> bytes:
    """A 16-bit RGB(A) PNG whose rows use filter y % 5 (None, Sub, Up, Average, Paeth), encoded by the formulas of
    ISO 15948 section 9 straight from the unfiltered bytes (independent of the decoder's sequential undoing)."""
    import struct
    import zlib

    height, width, channels = array.shape
    bpp = 2 * channels
    raw = np.ascontiguousarray(array, dtype=">u2").view(np.uint8).reshape(height, width * bpp).astype(np.int64)
    zero = np.zeros_like(raw[0])
    lines = []
    for y in range(height):
        x, up = raw[y], raw[y - 1] if y else zero
        left = np.concatenate([np.zeros(bpp, np.int64), x[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), up[:-bpp]])
        kind = y % 5
        if kind == 0:
            pred = np.zeros_like(x)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = up
        elif kind == 3:
            pred = (left + up) // 2
        else:
            p = left + up - upleft
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        lines.append(bytes([kind]) + ((x - pred) % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, {3: 2, 4: 6}[channels], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(lines)))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_png_with_every_row_filter_is_read_to_the_last_bit(tmp_path, channels):
    rng = np.random.default_rng(channels)
    array = rng.integers(0, 65536, size=(11, 9, channels), dtype=np.uint16)
    array[..., -1] = 65535 if channels == 4 else array[..., -1]  # opaque alpha: the colour reads as stored
    (tmp_path / "f.png").write_bytes(_png_rows_filtered(array))
    with Image.open(tmp_path / "f.png") as check:  # a file PIL accepts (and reads at 8 bits)
        assert check.size == (9, 11)
        np.testing.assert_array_equal(np.asarray(check)[..., :3], (array[..., :3] >> 8).astype(np.uint8))
    t, info = read_image(tmp_path / "f.png")
    assert info.bits == 16
    np.testing.assert_allclose(t.numpy(), array[..., :3].transpose(2, 0, 1) / 65535, rtol=0, atol=1e-6)


def _tiff16_rgb(array: np.ndarray) -> bytes:
    """A baseline little-endian TIFF, uncompressed 16-bit unsigned or 32-bit float RGB, one strip (TIFF 6.0: the tags
    a reader needs)."""
    import struct

    height, width, _ = array.shape
    is_float = array.dtype == np.float32
    pixels = np.ascontiguousarray(array, dtype="<f4" if is_float else "<u2").tobytes()
    n = 11
    bits_at, data_at = 8 + 2 + n * 12 + 4, 8 + 2 + n * 12 + 4 + 6
    bits = 32 if is_float else 16
    tags = [(256, 3, 1, width), (257, 3, 1, height), (258, 3, 3, bits_at), (259, 3, 1, 1), (262, 3, 1, 2),
            (273, 4, 1, data_at), (277, 3, 1, 3), (278, 3, 1, height), (279, 4, 1, len(pixels)), (284, 3, 1, 1),
            (339, 3, 1, 3 if is_float else 1)]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 and count == 1
                                                 else struct.pack("<I", value)) for tag, kind, count, value in tags)
    return (b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + struct.pack("<3H", bits, bits, bits)
            + pixels)


def test_float_rgb_tiff_that_pillow_cannot_open_is_read(tmp_path):
    array = np.linspace(0, 1, 4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    (tmp_path / "f.tif").write_bytes(_tiff16_rgb(array))  # Pillow 13 cannot open it ("cannot identify")
    t, info = read_image(tmp_path / "f.tif")
    assert info.bits == 16
    np.testing.assert_allclose(t.numpy(), array.transpose(2, 0, 1), rtol=0, atol=1e-7)
    (tmp_path / "g.tif").write_bytes(_tiff16_rgb(array * 255))
    with pytest.raises(ValueError, match="divide by 255"):
        read_image(tmp_path / "g.tif")


def test_16_bit_colour_tiff_is_read_to_the_last_bit_and_a_compressed_one_says_8(tmp_path):
    array = np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 1000 + 7
    (tmp_path / "c16.tif").write_bytes(_tiff16_rgb(array))
    with Image.open(tmp_path / "c16.tif") as check:  # a file PIL reads, at 8 bits per channel
        assert check.mode == "RGB" and check.size == (5, 4)
    t, info = read_image(tmp_path / "c16.tif")
    assert info.bits == 16
    np.testing.assert_allclose(t.numpy(), array.transpose(2, 0, 1) / 65535, rtol=0, atol=1e-6)
    # the same file with a compression tag: left to Pillow, which reads 8 bits, and says so
    data = bytearray((tmp_path / "c16.tif").read_bytes())
    at = data.index(bytes.fromhex("0301") + bytes.fromhex("0300") + (1).to_bytes(4, "little"))  # tag 259
    data[at + 8:at + 10] = (32946).to_bytes(2, "little")  # deflate (the pixels are not: only the tag is looked at)
    (tmp_path / "z16.tif").write_bytes(bytes(data))
    with pytest.warns(ImageReadWarning, match="16 bits per colour channel, which Pillow reads at 8"):
        try:
            read_image(tmp_path / "z16.tif")
        except ValueError:
            pass  # Pillow cannot inflate pixels that were never deflated: the warning came first
