"""Animations: one frame per output unit, stable frame size, small readable GIFs."""

from __future__ import annotations

import pytest
from PIL import Image

from lightning_papers.conv_arithmetic import animate, animate_all, frames
from lightning_papers.conv_arithmetic.animation import CASES
from lightning_papers.conv_arithmetic.formulas import conv_output_size, pool_output_size


@pytest.mark.parametrize("name", sorted(CASES))
def test_frame_count_is_the_number_of_output_positions(name):
    c = CASES[name]
    images = frames(c.i, c.k, c.s, c.p, c.d, transposed=c.transposed, pool=c.pool)
    if c.transposed:
        o = c.i  # the transpose restores the direct convolution's input size
    elif c.pool:
        o = pool_output_size(c.i, c.k, c.s, c.p)
    else:
        o = conv_output_size(c.i, c.k, c.s, c.p, c.d)
    assert len(images) == o * o
    assert len({im.size for im in images}) == 1
    assert all(im.mode == "P" for im in images)
    assert images[0].tobytes() != images[-1].tobytes()  # the kernel moved


def test_kernel_footprint_moves_by_the_stride():
    # Without padding the dark kernel cells of the first frame start at the grid's top-left corner.
    first, second = frames(5, 3, 2, 0, cell=10)[:2]
    dark = 3  # palette index of the kernel over input cells
    cols_first = {x for x in range(first.width) if first.getpixel((x, 10 + 5)) == dark}
    cols_second = {x for x in range(second.width) if second.getpixel((x, 10 + 5)) == dark}
    assert min(cols_second) - min(cols_first) == 2 * 10


def test_gif_round_trip(tmp_path):
    path = animate(tmp_path / "sub" / "t.gif", 6, 3, 2, 1, transposed=True, duration=100)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 36
        sizes = set()
        for n in range(gif.n_frames):
            gif.seek(n)
            sizes.add(gif.size)
        assert len(sizes) == 1
    assert path.stat().st_size < 300_000


def test_animate_all(tmp_path):
    paths = animate_all(tmp_path, duration=50)
    assert sorted(p.stem for p in paths) == sorted(CASES)
    assert all(p.stat().st_size < 300_000 for p in paths)
    assert {"dilation", "pooling", "padding_strides_odd_transposed", "full_padding_no_strides"} <= set(CASES)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: frames(5, 3, transposed=True, pool=True), "at most one of `transposed` and `pool`"),
        (lambda: frames(5, 3, cell=2), "Expected `cell` to be an integer >= 6"),
        (lambda: frames(5, 3, p=3, transposed=True), r"Expected `p` <= k̂ - 1"),
        (lambda: frames(2, 3), "Expected a positive output size"),
        (lambda: animate("x.gif", 5, 3, duration=0), "Expected `duration` to be a positive integer"),
    ],
)
def test_animation_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
