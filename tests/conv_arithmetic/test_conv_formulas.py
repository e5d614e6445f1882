"""Every Relationship of Dumoulin & Visin (arXiv 1603.07285) and the general output-size functions, checked
against the shapes that real PyTorch layers produce."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lightning_papers.conv_arithmetic import formulas as F
from lightning_papers.conv_arithmetic.formulas import (
    RELATIONSHIPS,
    conv_output_size,
    ignored_inputs,
    pool_output_size,
    transposed_output_padding,
    transposed_output_size,
)

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
SETTINGS = settings(max_examples=300, deadline=None)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel:UserWarning")


def _torch_size(make_layer, sizes):
    """Spatial output size from a real layer, or None when PyTorch refuses the parameters.

    Some transposed convolutions return an empty tensor for an output size of 0 instead of raising; the
    formulas call every non-positive size impossible, so an empty output counts as a refusal here.
    """
    try:
        with torch.no_grad():
            layer = make_layer()
            out = tuple(layer(torch.zeros(1, 1, *sizes)).shape[2:])
    except (RuntimeError, ValueError):
        return None
    return None if 0 in out else out


def _ours(fn):
    try:
        out = fn()
    except ValueError:
        return None
    return out if isinstance(out, tuple) else (out,)


def _axes(draw, ndim, low, high):
    return tuple(draw(st.integers(low, high)) for _ in range(ndim))


# ------------------------------------------------------------------------------------ property tests
@SETTINGS
@given(st.data())
def test_conv_output_size_matches_torch(data):
    ndim = data.draw(st.sampled_from([1, 2, 3]))
    top = 9 if ndim == 3 else 14
    i, k = _axes(data.draw, ndim, 1, top), _axes(data.draw, ndim, 1, 5)
    s, d = _axes(data.draw, ndim, 1, 4), _axes(data.draw, ndim, 1, 3)
    p = data.draw(st.one_of(st.just("same"), st.just("valid"), st.builds(tuple, st.lists(
        st.integers(0, 3), min_size=ndim, max_size=ndim))))
    expected = _torch_size(lambda: CONV[ndim](1, 1, k, stride=s, padding=p, dilation=d, bias=False), i)
    assert _ours(lambda: conv_output_size(i, k, s, p, d)) == expected


@SETTINGS
@given(st.data())
def test_transposed_output_size_matches_torch(data):
    ndim = data.draw(st.sampled_from([1, 2, 3]))
    i, k = _axes(data.draw, ndim, 1, 6), _axes(data.draw, ndim, 1, 4)
    s, d = _axes(data.draw, ndim, 1, 3), _axes(data.draw, ndim, 1, 3)
    p, a = _axes(data.draw, ndim, 0, 3), _axes(data.draw, ndim, 0, 3)

    def make():
        return TCONV[ndim](1, 1, k, stride=s, padding=p, output_padding=a, dilation=d, bias=False)

    assert _ours(lambda: transposed_output_size(i, k, s, p, a, d)) == _torch_size(make, i)


@SETTINGS
@given(st.data())
def test_max_pool_output_size_matches_torch(data):
    ndim = data.draw(st.sampled_from([1, 2, 3]))
    i, k = _axes(data.draw, ndim, 1, 12 if ndim < 3 else 8), _axes(data.draw, ndim, 1, 4)
    s = data.draw(st.one_of(st.none(), st.builds(tuple, st.lists(st.integers(1, 4), min_size=ndim,
                                                                      max_size=ndim))))
    p, d = _axes(data.draw, ndim, 0, 2), _axes(data.draw, ndim, 1, 3)
    ceil = data.draw(st.booleans())
    expected = _torch_size(lambda: MAXPOOL[ndim](k, stride=s, padding=p, dilation=d, ceil_mode=ceil), i)
    assert _ours(lambda: pool_output_size(i, k, s, p, d, ceil)) == expected


@SETTINGS
@given(st.data())
def test_avg_pool_output_size_matches_torch(data):
    ndim = data.draw(st.sampled_from([1, 2, 3]))
    i, k = _axes(data.draw, ndim, 1, 12 if ndim < 3 else 8), _axes(data.draw, ndim, 1, 4)
    s, p = _axes(data.draw, ndim, 1, 4), _axes(data.draw, ndim, 0, 2)
    ceil = data.draw(st.booleans())
    expected = _torch_size(lambda: AVGPOOL[ndim](k, stride=s, padding=p, ceil_mode=ceil), i)
    assert _ours(lambda: pool_output_size(i, k, s, p, 1, ceil, mode="avg")) == expected


def _conv1d(i, k, s=1, p=0, d=1):
    return _torch_size(lambda: nn.Conv1d(1, 1, k, stride=s, padding=p, dilation=d), (i,))[0]


def _tconv1d(i, k, s=1, p=0, a=0):
    return _torch_size(lambda: nn.ConvTranspose1d(1, 1, k, stride=s, padding=p, output_padding=a), (i,))[0]


@settings(max_examples=120, deadline=None)
@given(number=st.integers(1, 15), data=st.data())
def test_each_relationship_matches_torch_under_its_conditions(number, data):
    i = data.draw(st.integers(1, 16), label="i")
    k = data.draw(st.integers(1, 6), label="k")
    s = data.draw(st.integers(2, 4), label="s")
    p = data.draw(st.integers(0, 3), label="p")
    d = data.draw(st.integers(1, 3), label="d")
    i = max(i, k * d)  # the conditions of Relationships 1-7 and 15 let the kernel fit
    if number == 1:
        assert F.no_padding_unit_strides(i, k) == _conv1d(i, k)
    elif number == 2:
        assert F.zero_padding_unit_strides(i, k, p) == _conv1d(i, k, p=p)
    elif number == 3:
        k = 2 * (k // 2) + 1
        assert F.half_padding(i, k) == _conv1d(i, k, p=k // 2) == i
    elif number == 4:
        assert F.full_padding(i, k) == _conv1d(i, k, p=k - 1)
    elif number == 5:
        assert F.no_padding_strides(i, k, s) == _conv1d(i, k, s)
    elif number == 6:
        assert F.zero_padding_strides(i, k, s, p) == _conv1d(i, k, s, p)
    elif number == 7:
        expected = _torch_size(lambda: nn.MaxPool1d(k, stride=s), (i,))[0]
        assert F.pooling(i, k, s) == expected
        assert _torch_size(lambda: nn.AvgPool1d(k, stride=s), (i,))[0] == expected
    elif number == 8:
        assert F.transposed_no_padding_unit_strides(i, k) == _tconv1d(i, k) == _conv1d(i, k, p=k - 1)
    elif number == 9:
        p = min(p, k - 1)
        o = F.transposed_zero_padding_unit_strides(i, k, p)
        assert o == _tconv1d(i, k, p=p) == _conv1d(i, k, p=k - p - 1)  # p' = k - p - 1
    elif number == 10:
        k = 2 * (k // 2) + 1
        assert F.transposed_half_padding(i, k) == _tconv1d(i, k, p=k // 2) == i
    elif number == 11:
        assert F.transposed_full_padding(i, k) == _tconv1d(i, k, p=k - 1) == _conv1d(i, k)
    elif number in (12, 13, 14):
        if number == 12:
            p = 0
        if number in (12, 13):
            i += (-(i + 2 * p - k)) % s  # (i + 2p - k) a multiple of s
        i_t = _conv1d(i, k, s, p)
        a = (i + 2 * p - k) % s
        if number == 12:
            o = F.transposed_no_padding_strides(i_t, k, s)
        elif number == 13:
            o = F.transposed_zero_padding_strides(i_t, k, s, p)
        else:
            o = F.transposed_zero_padding_strides_odd(i_t, k, s, p, a)
        assert o == _tconv1d(i_t, k, s, p, a) == i  # the transpose restores the direct conv's input size
    else:
        s = data.draw(st.integers(1, 3), label="s15")
        assert F.dilated(i, k, s, p, d) == _conv1d(i, k, s, p, d)


# ---------------------------------------------------------------------------- the paper's own figures
PAPER_EXAMPLES = [
    # (Relationship, function arguments, expected output, figure)
    (1, (4, 3), 2, "2.1"),
    (2, (5, 4, 2), 6, "2.2"),
    (3, (5, 3), 5, "2.3"),
    (4, (5, 3), 7, "2.4"),
    (5, (5, 3, 2), 2, "2.5"),
    (6, (5, 3, 2, 1), 3, "2.6"),
    (6, (6, 3, 2, 1), 3, "2.7"),
    (7, (5, 3, 1), 3, "1.5-1.6"),
    (8, (2, 3), 4, "4.1"),
    (9, (6, 4, 2), 5, "4.2"),
    (10, (5, 3), 5, "4.3"),
    (11, (7, 3), 5, "4.4"),
    (12, (2, 3, 2), 5, "4.5"),
    (13, (3, 3, 2, 1), 5, "4.6"),
    (14, (3, 3, 2, 1, 1), 6, "4.7"),
    (15, (7, 3, 1, 0, 2), 3, "5.1"),
]


@pytest.mark.parametrize(("number", "args", "expected", "figure"), PAPER_EXAMPLES)
def test_paper_figures(number, args, expected, figure):
    assert RELATIONSHIPS[number].function(*args) == expected


@pytest.mark.parametrize(("number", "args", "expected", "figure"), PAPER_EXAMPLES)
def test_paper_figures_against_torch(number, args, expected, figure):
    if number <= 6 or number == 15:
        i, k, *rest = args
        s, p, d = {1: (1, 0, 1), 2: (1, args[-1], 1), 3: (1, 1, 1), 4: (1, 2, 1), 5: (args[-1], 0, 1),
                   6: (2, 1, 1), 15: (1, 0, 2)}[number]
        assert conv_output_size((i, i), k, s, p, d) == _torch_size(lambda: nn.Conv2d(1, 1, k, s, p, d), (i, i))
    elif number == 7:
        assert pool_output_size((5, 5), 3, 1) == _torch_size(lambda: nn.MaxPool2d(3, 1), (5, 5)) == (3, 3)
    else:
        i_t, k = args[0], args[1]
        s = args[2] if number >= 12 else 1
        p = {8: 0, 9: 2, 10: 1, 11: 2, 12: 0, 13: 1, 14: 1}[number]
        a = args[4] if number == 14 else 0
        make = lambda: nn.ConvTranspose2d(1, 1, k, s, p, output_padding=a)  # noqa: E731
        assert _torch_size(make, (i_t, i_t)) == (expected, expected)


def test_relationship_table_is_complete():
    assert sorted(RELATIONSHIPS) == list(range(1, 16))
    assert [n for n, r in RELATIONSHIPS.items() if r.transposed] == list(range(8, 15))
    assert RELATIONSHIPS[14].formula == "o' = s(i' − 1) + a + k − 2p"
    assert "dilated" in RELATIONSHIPS[15].title


def test_tuples_and_same_padding():
    assert conv_output_size((32, 17, 5), 3, s=2, p=1) == (16, 9, 3)
    assert conv_output_size((8, 9), 4, p="same") == (8, 9)
    assert conv_output_size(8, 4, p="valid") == 5
    assert transposed_output_size((3, 4), (3, 2), s=2, p=(1, 0), output_padding=(1, 0)) == (6, 8)
    assert pool_output_size(6, 2, None) == 3
    assert transposed_output_padding(6, 3, 2, 1) == 1


def test_ignored_inputs():
    assert ignored_inputs(6, 3, 2, 1) == []              # Figure 2.7: only padding left out
    assert ignored_inputs(6, 3, 2, 0) == [5]             # the last column is never read
    assert ignored_inputs(8, 1, 2) == [1, 3, 5, 7]       # 1x1 stride 2 reads every other pixel
    assert ignored_inputs(7, 2, 1, 0, 3) == []           # dilation holes are covered by the next window
    assert ignored_inputs(9, 2, 3, 0, 2) == [1, 4, 7]    # holes of a dilated kernel with a large stride


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: conv_output_size(0, 3), "Expected `i` to be a positive integer"),
        (lambda: conv_output_size(4, 3, s=0), "Expected `s` to be a positive integer"),
        (lambda: conv_output_size(4, 3, p=-1), "Expected `p` to be an integer >= 0"),
        (lambda: conv_output_size(4, True), "Expected `k` to be a positive integer"),
        (lambda: conv_output_size(2, 5), "Expected a positive output size"),
        (lambda: conv_output_size(5, 3, d=3), "kernel must fit"),
        (lambda: conv_output_size(8, 3, s=2, p="same"), "padding='same'"),
        (lambda: conv_output_size(8, 3, p="full"), "'same' or 'valid'"),
        (lambda: conv_output_size((4, 4), (3, 3, 3)), "one length"),
        (lambda: conv_output_size((4, 4, 4, 4), 3), "1, 2 or 3 spatial axes"),
        (lambda: transposed_output_size(4, 3, s=2, output_padding=2), "smaller than either the stride or the"),
        (lambda: transposed_output_size(1, 3, s=1, p=2), "Expected a positive output size"),
        (lambda: pool_output_size(8, 3, p=2), r"at most half the kernel size \(p <= k // 2\)"),
        (lambda: pool_output_size(2, 3), "Expected a positive output size"),
        (lambda: pool_output_size(8, 2, ceil_mode=1), "Expected `ceil_mode` to be True or False, got 1"),
        (lambda: pool_output_size(8, 2, mode="lp"), "Expected `mode` to be one of"),
        (lambda: pool_output_size(8, 2, d=2, mode="avg"), "Expected `d` to be 1 for average pooling"),
        (lambda: pool_output_size((1, 4, 4), 2, 1, 1, mode="avg"), r"Expected `i` >= `k` for 3-D average"),
        (lambda: F.half_padding(5, 4), "Expected `k` to be odd"),
        (lambda: F.transposed_half_padding(5, 2), "Expected `k` to be odd"),
        (lambda: F.transposed_zero_padding_strides_odd(3, 3, 2, 1, 2), r"smaller than the stride"),
        (lambda: F.transposed_full_padding(2, 3), "Expected a positive output size"),
        (lambda: F.no_padding_unit_strides(2, 3), "Relationship 1"),
        (lambda: F.effective_kernel_size(3, 0), "Expected `d` to be a positive integer"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
