"""Animations of convolutions, transposed convolutions, dilation and pooling in the visual style of
Dumoulin & Visin, A guide to convolution arithmetic for deep learning, 2016 (arXiv 1603.07285).

Drawn with our own Pillow code: the input grid (blue), zero padding and inserted zeros (white, dashed
outline), the kernel's footprint (dark) moving one output position per frame, and the output grid (cyan,
the current unit dark) beside it, with ``i``, ``k``, ``s``, ``p``, ``d`` and ``o`` written underneath. As in the
paper, a transposed convolution is drawn as its equivalent direct convolution over the stretched
(``s - 1`` zeros between units) and padded (``p' = k̂ - p - 1``, plus ``a`` on the bottom/right) input.

One frame per output unit, so a GIF has ``o * o`` frames. :data:`CASES` lists the paper's figures and
:func:`animate_all` regenerates all of them.

Examples:
    >>> len(frames(4, 3))   # Figure 2.1: a 2x2 output
    4
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from lightning_papers._validation import integer, positive_int
from lightning_papers.conv_arithmetic.formulas import (
    conv_output_size,
    effective_kernel_size,
    pool_output_size,
    transposed_output_padding,
)

__all__ = ["CASES", "AnimationCase", "animate", "animate_all", "animation_cost", "frames"]

log = logging.getLogger(__name__)

# Palette indices (images are drawn directly in "P" mode: small, identical palettes across frames).
_BG, _LINE, _INPUT, _INPUT_K, _ZERO_K, _OUT_DONE, _OUT_NOW, _OUT_TODO, _DASH, _TEXT = range(10)
_PALETTE = [
    (255, 255, 255), (40, 40, 40), (96, 160, 220), (22, 66, 120), (150, 150, 150),
    (120, 222, 222), (0, 110, 110), (228, 248, 248), (120, 120, 120), (20, 20, 20),
]


@dataclass(frozen=True)
class AnimationCase:
    """One of the paper's animated figures: the direct layer's ``i, k, s, p, d`` and how to draw it."""

    i: int
    k: int
    s: int = 1
    p: int = 0
    d: int = 1
    transposed: bool = False
    pool: bool = False


def _cases() -> dict[str, AnimationCase]:
    direct = {
        "no_padding_no_strides": AnimationCase(4, 3),
        "arbitrary_padding_no_strides": AnimationCase(5, 4, p=2),
        "same_padding_no_strides": AnimationCase(5, 3, p=1),
        "full_padding_no_strides": AnimationCase(5, 3, p=2),
        "no_padding_strides": AnimationCase(5, 3, s=2),
        "padding_strides": AnimationCase(5, 3, s=2, p=1),
        "padding_strides_odd": AnimationCase(6, 3, s=2, p=1),
    }
    cases = dict(direct)
    for name, c in direct.items():
        cases[f"{name}_transposed"] = AnimationCase(c.i, c.k, c.s, c.p, c.d, transposed=True)
    cases["dilation"] = AnimationCase(7, 3, d=2)
    cases["pooling"] = AnimationCase(5, 3, s=1, pool=True)
    cases["pooling_strides"] = AnimationCase(6, 2, s=2, pool=True)
    return cases


CASES: dict[str, AnimationCase] = _cases()


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _dashed_rect(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], dash: int = 3) -> None:
    x0, y0, x1, y1 = box
    for x in range(x0, x1, 2 * dash):
        draw.line([(x, y0), (min(x + dash, x1), y0)], fill=_DASH)
        draw.line([(x, y1), (min(x + dash, x1), y1)], fill=_DASH)
    for y in range(y0, y1, 2 * dash):
        draw.line([(x0, y), (x0, min(y + dash, y1))], fill=_DASH)
        draw.line([(x1, y), (x1, min(y + dash, y1))], fill=_DASH)


def _layout(i: int, k: int, s: int, p: int, d: int, transposed: bool, pool: bool
            ) -> tuple[int, list[list[bool]], int, int, str]:
    """The grid the kernel slides over, which of its cells hold data, the stride on it, the output size
    and the caption."""
    if transposed:
        kd = effective_kernel_size(k, d)
        o_direct = conv_output_size(i, k, s, p, d)
        a = transposed_output_padding(i, k, s, p, d)
        p_eq = kd - p - 1
        if p_eq < 0:
            raise ValueError(f"Expected `p` <= k̂ - 1 = {kd - 1} to draw a transposed convolution as its direct "
                             f"equivalent (p' = k̂ - p - 1 >= 0), got p={p}: lower p")
        stretched = s * (o_direct - 1) + 1
        size = stretched + 2 * p_eq + a
        data = {p_eq + x * s for x in range(o_direct)}
        grid = [[r in data and c in data for c in range(size)] for r in range(size)]
        caption = (f"transpose of i={i}, k={k}, s={s}, p={p}" + (f", d={d}" if d > 1 else "")
                   + f": i'={o_direct} stretched to {stretched}, p'={p_eq}" + (f", a={a}" if a else "")
                   + f", s'=1 -> o'={i}")
        return size, grid, 1, i, caption
    size = i + 2 * p
    grid = [[p <= r < p + i and p <= c < p + i for c in range(size)] for r in range(size)]
    if pool:
        o = pool_output_size(i, k, s, p, d)
        caption = (f"pooling: i={i}, k={k}, s={s}" + (f", p={p}" if p else "") + (f", d={d}" if d > 1 else "")
                   + f" -> o={o}")
    else:
        o = conv_output_size(i, k, s, p, d)
        caption = f"i={i}, k={k}, s={s}, p={p}" + (f", d={d}" if d > 1 else "") + f" -> o={o}"
    return size, grid, s, o, caption


# Measured on a loaded 2-core CPU: about 4 us per grid cell drawn (a frame draws every cell of both grids)
_SECONDS_PER_CELL = 4e-6


def _sizes(i: int, k: int, s: int, p: int, d: int, transposed: bool, pool: bool) -> tuple[int, int]:
    """(side of the grid the kernel slides over, output side) without drawing anything (checks as _layout)."""
    if transposed:
        kd = effective_kernel_size(k, d)
        o_direct = conv_output_size(i, k, s, p, d)
        a = transposed_output_padding(i, k, s, p, d)
        return s * (o_direct - 1) + 1 + 2 * max(kd - p - 1, 0) + a, i
    o = pool_output_size(i, k, s, p, d) if pool else conv_output_size(i, k, s, p, d)
    return i + 2 * p, o


def animation_cost(i: int, k: int, s: int = 1, p: int = 0, d: int = 1, *, transposed: bool = False,
                   pool: bool = False, cell: int = 20) -> tuple[int, float, float]:
    """(frames, estimated seconds, estimated peak bytes) of :func:`animate` for these parameters, computed without
    drawing: ``o * o`` frames, each drawing every cell of both grids and held in memory until the GIF is written.

    Raises:
        ValueError: for impossible parameters, as the formulas raise.
    """
    size, o = _sizes(i, k, s, p, d, transposed, pool)
    n = o * o
    width, height = (size + o + 4) * cell, (max(size, o) + 4) * cell
    return n, n * (size * size + o * o) * _SECONDS_PER_CELL, 2.0 * n * width * height


def _draw_input(draw: ImageDraw.ImageDraw, grid: list[list[bool]], covered: set[tuple[int, int]], x0: int, y0: int,
                cell: int) -> None:
    """The grid the kernel slides over: data cells blue (dark under the kernel), zeros white with a dashed outline."""
    for r, row in enumerate(grid):
        for c, data in enumerate(row):
            box = (x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell, y0 + (r + 1) * cell)
            if data:
                draw.rectangle(box, fill=_INPUT_K if (r, c) in covered else _INPUT, outline=_LINE)
            else:
                if (r, c) in covered:
                    draw.rectangle(box, fill=_ZERO_K)
                _dashed_rect(draw, box)


def _draw_output(draw: ImageDraw.ImageDraw, o: int, t: int, x0: int, y0: int, cell: int) -> None:
    """The ``o x o`` output grid: units before ``t`` done, unit ``t`` dark, the rest still to come."""
    for r in range(o):
        for c in range(o):
            index = r * o + c
            fill = _OUT_NOW if index == t else _OUT_DONE if index < t else _OUT_TODO
            draw.rectangle((x0 + c * cell, y0 + r * cell, x0 + (c + 1) * cell, y0 + (r + 1) * cell), fill=fill,
                           outline=_LINE)


def frames(
    i: int,
    k: int,
    s: int = 1,
    p: int = 0,
    d: int = 1,
    *,
    transposed: bool = False,
    pool: bool = False,
    cell: int = 20,
    progress: bool = False,
) -> list[Image.Image]:
    """Draw one frame per output unit (``o * o`` frames) for a square 2-D layer.

    Args:
        i: input size of the *direct* layer (for ``transposed=True``, the convolution whose transpose is
            drawn, as in the paper's captions; its output size ``o'`` is then ``i``).
        k: kernel size. s: stride. p: zero padding. d: dilation.
        transposed: draw the transpose of the convolution ``(i, k, s, p, d)``.
        pool: draw a pooling window instead of a convolution kernel.
        cell: cell size in pixels.
        progress: show a progress bar (tqdm) over the frames.

    Returns:
        Palette (``"P"``) images, all of one size.

    Raises:
        ValueError: for impossible parameters (as the formulas raise), ``transposed`` together with
            ``pool``, a ``cell`` under 6 pixels, or a transposed case whose equivalent padding is negative.

    Examples:
        >>> len(frames(5, 3, 2, 1, transposed=True)), frames(5, 3, 2, 1, transposed=True)[0].mode
        (25, 'P')
    """
    if transposed and pool:
        raise ValueError("Expected at most one of `transposed` and `pool` to be True, got both")
    integer("cell", cell, 6)
    size, grid, step, o, caption = _layout(i, k, s, p, d, transposed, pool)
    kernel_dilation = d
    margin, gap = cell, 2 * cell
    font = _font(max(10, cell * 2 // 3))
    probe = ImageDraw.Draw(Image.new("P", (1, 1)))
    text_w = int(probe.textlength(caption, font=font)) + 2 * margin
    grid_w = margin + size * cell + gap + o * cell + margin
    width = max(grid_w, text_w)
    height = margin + max(size, o) * cell + margin + 2 * cell
    out_x0 = margin + size * cell + gap
    out_y0 = margin + (max(size, o) - o) * cell // 2
    in_y0 = margin + (max(size, o) - size) * cell // 2
    flat_palette = [v for rgb in _PALETTE for v in rgb]

    from tqdm.auto import tqdm

    images = []
    for t in tqdm(range(o * o), desc="frames", unit="frame", disable=not progress):
        row, col = divmod(t, o)
        covered = {(row * step + m * kernel_dilation, col * step + n * kernel_dilation)
                   for m in range(k) for n in range(k)}
        img = Image.new("P", (width, height), _BG)
        img.putpalette(flat_palette)
        draw = ImageDraw.Draw(img)
        _draw_input(draw, grid, covered, margin, in_y0, cell)
        _draw_output(draw, o, t, out_x0, out_y0, cell)
        arrow_y = margin + max(size, o) * cell // 2
        draw.line([(margin + size * cell + cell // 2, arrow_y), (out_x0 - cell // 2, arrow_y)], fill=_LINE, width=2)
        draw.polygon([(out_x0 - cell // 2, arrow_y), (out_x0 - cell, arrow_y - cell // 4),
                      (out_x0 - cell, arrow_y + cell // 4)], fill=_LINE)
        draw.text((margin, height - margin - cell // 2), caption, fill=_TEXT, font=font)
        images.append(img)
    return images


def animate(
    path: str | Path,
    i: int,
    k: int,
    s: int = 1,
    p: int = 0,
    d: int = 1,
    *,
    transposed: bool = False,
    pool: bool = False,
    cell: int = 20,
    duration: int = 400,
    progress: bool = False,
) -> Path:
    """Write the animation of :func:`frames` as a looping GIF.

    Args:
        path: where to write the ``.gif``.
        duration: milliseconds per frame.
        i: as for :func:`frames`.
        k: as for :func:`frames`.
        s: as for :func:`frames`.
        p: as for :func:`frames`.
        d: as for :func:`frames`.
        transposed: as for :func:`frames`.
        pool: as for :func:`frames`.
        cell: as for :func:`frames`.
        progress: as for :func:`frames`.

    Raises:
        ValueError: as :func:`frames` does, for a non-positive ``duration``, or a ``path`` that does not end in
            ``.gif``.

    Examples:
        >>> import tempfile, os
        >>> out = animate(os.path.join(tempfile.mkdtemp(), "x.gif"), 5, 3, 2, 1)
        >>> out.suffix
        '.gif'
    """
    positive_int("duration", duration, fix="pass milliseconds per frame, e.g. 400")
    from lightning_papers._helpers import atomic_write

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"Expected the animation's file name to end in .gif, got {str(path)!r}")
    images = frames(i, k, s, p, d, transposed=transposed, pool=pool, cell=cell, progress=progress)
    with atomic_write(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0,
                       optimize=False, disposal=1)
    log.info("wrote %s (%d frames)", path, len(images))
    return path


def animate_all(outdir: str | Path, *, cell: int = 20, duration: int = 400) -> list[Path]:
    """Regenerate every case of :data:`CASES` as ``outdir/<name>.gif``; returns the paths."""
    outdir = Path(outdir)
    return [
        animate(outdir / f"{name}.gif", c.i, c.k, c.s, c.p, c.d, transposed=c.transposed, pool=c.pool, cell=cell,
                duration=duration)
        for name, c in CASES.items()
    ]
