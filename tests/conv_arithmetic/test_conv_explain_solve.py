"""explain(), solve() and inverse_of(): worked Relationships and parameter search, verified on real layers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from lightning_papers.conv_arithmetic import (
    LayerParams,
    conv_output_size,
    explain,
    inverse_of,
    relationship_for,
    solve,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel:UserWarning")


# ------------------------------------------------------------------------------------------- explain
def test_explain_example_from_the_issue():
    text = str(explain(input_size=32, k=3, s=2, p=1))
    assert text.startswith(
        "Relationship 6 (zero padding, non-unit strides): o = ⌊(i + 2p − k)/s⌋ + 1 = ⌊(32 + 2 − 3)/2⌋ + 1 = 16"
    )
    assert "31 mod 2 = 1 ≠ 0" in text
    assert "only padding" in text


@pytest.mark.parametrize(
    ("layer", "size", "relationship", "output"),
    [
        (nn.Conv2d(1, 1, 3), 4, 1, 2),
        (nn.Conv2d(1, 1, 4, padding=2), 5, 2, 6),
        (nn.Conv2d(1, 1, 3, padding=1), 5, 3, 5),
        (nn.Conv2d(1, 1, 3, padding=2), 5, 4, 7),
        (nn.Conv2d(1, 1, 3, stride=2), 5, 5, 2),
        (nn.Conv2d(1, 1, 3, stride=2, padding=1), 5, 6, 3),
        (nn.MaxPool2d(3, stride=1), 5, 7, 3),
        (nn.AvgPool2d(3, stride=1), 5, 7, 3),
        (nn.ConvTranspose2d(1, 1, 3), 2, 8, 4),
        (nn.ConvTranspose2d(1, 1, 4, padding=2), 6, 9, 5),
        (nn.ConvTranspose2d(1, 1, 3, padding=1), 5, 10, 5),
        (nn.ConvTranspose2d(1, 1, 3, padding=2), 7, 11, 5),
        (nn.ConvTranspose2d(1, 1, 3, stride=2), 2, 12, 5),
        (nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1), 3, 13, 5),
        (nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1), 3, 14, 6),
        (nn.Conv2d(1, 1, 3, dilation=2), 7, 15, 3),
    ],
)
def test_explain_paper_cases(layer, size, relationship, output):
    result = explain(layer, size)
    assert result.relationships == (relationship, relationship)
    assert result.output_size == (output, output)
    with torch.no_grad():
        assert tuple(layer(torch.zeros(1, 1, size, size)).shape[2:]) == result.output_size
    assert f"Relationship {relationship} " in str(result)
    assert str(result).splitlines()[0].endswith(f"= {output}")


def test_explain_notes_and_extensions():
    dropped = explain(nn.Conv2d(1, 1, 1, stride=2), 32)
    assert dropped.ignores_input and "16 of the 32 input positions are never read" in str(dropped)
    assert not explain(nn.Conv2d(1, 1, 3, stride=2, padding=1), 32).ignores_input
    ceil = str(explain(nn.MaxPool1d(2, stride=2, padding=1, ceil_mode=True), 6))
    assert "ceil_mode" in ceil and ceil.endswith("= 4")
    dropped_window = str(explain({"k": 2, "s": 2, "p": 1, "pool": True, "ceil_mode": True}, 5))
    assert "would start in the right padding" in dropped_window
    same = explain(nn.Conv2d(1, 1, 4, padding="same"), (8, 9))
    assert same.output_size == (8, 9) and "asymmetrically" in str(same) and "axis 1" in str(same)
    assert "p = 1" in str(explain(nn.Conv1d(1, 1, 3, padding="same"), 8))
    dilated_t = explain(nn.ConvTranspose1d(1, 1, 3, stride=2, dilation=2, output_padding=1), 4)
    assert dilated_t.relationships == (14,) and "k̂" in str(dilated_t) and dilated_t.output_size == (12,)
    assert explain(LayerParams.create("conv", k=3), 5).to_dict()["output_size"] == [3]


def test_relationship_for():
    assert relationship_for("conv", 1, 1, 0) == 1
    assert relationship_for("conv", 2, 1, 1) == 4
    assert relationship_for("transposed", 3, 1, 1, 2) == 14  # dilated
    with pytest.raises(ValueError, match="Expected `kind` to be one of"):
        relationship_for("deconv", 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: explain(nn.Conv2d(1, 1, 3)), "Expected `input_size` to be an int"),
        (lambda: explain(input_size=5), "Expected a kernel size `k`"),
        (lambda: explain(input_size=5, k=3, transposed=True, pool=True), "at most one of `transposed` and"),
        (lambda: explain(nn.Linear(2, 2), 5), "Expected `layer` to be an nn.Conv"),
        (lambda: explain({"k": 3, "stride": 2}, 5), "unknown"),
        (lambda: explain(nn.Conv2d(1, 1, 3), (5, 5, 5)), "Expected `input_size` to have 2 entries"),
        (lambda: explain(input_size=2, k=3), "Expected a positive output size"),
        (lambda: LayerParams.create("deconv", k=3), "Expected `kind` to be one of"),
        (lambda: LayerParams.create("pool", k=3, p="same"), "Expected an integer `padding`"),
        (lambda: LayerParams.create("conv", k=(3, 3), s=(1, 1, 1)), "Expected tuple arguments of one length"),
    ],
)
def test_explain_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------------------------- solve
def _run(layer, size):
    with torch.no_grad():
        return layer(torch.zeros(1, 1, size)).shape[-1]


def test_solve_simplest_first():
    best = solve(32, 16, dilation=1)
    assert [(x.k, x.s, x.p) for x in best[:3]] == [(2, 2, 0), (3, 2, 1), (4, 2, 1)]
    assert all(x.ignored == 0 for x in best[:3]) and any(x.ignored for x in best)
    up = solve(16, 32, kernel=3, transposed=True, dilation=1)[0]
    assert (up.s, up.p, up.output_padding, up.relationship) == (2, 1, 1, 14)
    assert solve(5, 40, max_kernel=3, max_stride=2, max_dilation=1) == []
    assert [x.p for x in solve(8, 8, kernel=3, stride=1, dilation=1)] == [1]


@settings(max_examples=60, deadline=None)
@given(i=st.integers(1, 24), o=st.integers(1, 24), transposed=st.booleans())
def test_solve_answers_build_real_layers(i, o, transposed):
    found = solve(i, o, transposed=transposed, max_kernel=5, max_stride=3, max_dilation=2)
    for sol in found[:15]:
        assert _run(sol.layer(ndim=1), i) == o
        assert sol.transposed == transposed
    keys = [(x.d, x.s, x.ignored > 0, x.k, x.p, x.output_padding) for x in found]
    assert keys == sorted(keys)


@settings(max_examples=60, deadline=None)
@given(i=st.integers(1, 20), k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 3), d=st.integers(1, 2))
def test_solve_finds_the_generating_layer(i, k, s, p, d):
    assume(p <= d * (k - 1) and i + 2 * p >= d * (k - 1) + 1)
    o = conv_output_size(i, k, s, p, d)
    assert any((x.k, x.s, x.p, x.d) == (k, s, p, d) for x in solve(i, o, max_kernel=5, max_stride=3,
                                                                   max_dilation=2))


def test_solve_errors():
    with pytest.raises(ValueError, match="Expected `input_size` to be a positive integer"):
        solve(0, 4)
    with pytest.raises(ValueError, match="Expected `output_padding` only with transposed=True"):
        solve(4, 4, output_padding=1)
    with pytest.raises(ValueError, match="Expected `kernel` to be a positive integer, got 0"):
        solve(4, 4, kernel=0)
    with pytest.raises(ValueError, match="Expected `max_padding` to be an integer >= 0"):
        solve(4, 4, max_padding=-1)
    with pytest.raises(ValueError, match=r"Expected `ndim` to be an integer in \[1, 3\], got 4"):
        solve(4, 4)[0].layer(ndim=4)


# ---------------------------------------------------------------------------------------- inverse_of
@settings(max_examples=150, deadline=None)
@given(ndim=st.sampled_from([1, 2, 3]), i=st.integers(1, 12), k=st.integers(1, 4), s=st.integers(1, 3),
       p=st.integers(0, 2), d=st.integers(1, 2), groups=st.sampled_from([1, 2]))
def test_inverse_of_round_trips(ndim, i, k, s, p, d, groups):
    assume(i + 2 * p >= d * (k - 1) + 1)
    if ndim == 3:
        i = min(i, 7)
        assume(i + 2 * p >= d * (k - 1) + 1)
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1](2, 4, k, stride=s, padding=p, dilation=d, groups=groups)
    inverse = inverse_of(conv, i)
    assert isinstance(inverse, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[ndim - 1])
    assert inverse.in_channels == 4 and inverse.out_channels == 2 and inverse.groups == groups
    x = torch.zeros(1, 2, *(i,) * ndim)
    with torch.no_grad():
        assert inverse(conv(x)).shape == x.shape
    params = inverse_of({"k": k, "s": s, "p": p, "d": d}, i)
    assert params.kind == "transposed" and params.output_padding == ((i + 2 * p - d * (k - 1) - 1) % s,)


def test_inverse_of_same_padding_and_paper_case():
    assert inverse_of({"k": 3, "s": 2, "p": 1}, 6).output_padding == (1,)  # Figure 4.7: a = 1
    conv = nn.Conv2d(1, 1, 4, padding="same", dilation=3)  # pads (4, 5): needs a = 1 < d
    x = torch.zeros(1, 1, 9, 10)
    with torch.no_grad():
        assert inverse_of(conv, (9, 10))(conv(x)).shape == x.shape
    odd = nn.Conv1d(1, 1, 5, padding="same")
    with torch.no_grad():
        assert inverse_of(odd, 7)(odd(torch.zeros(1, 1, 7))).shape[-1] == 7


@pytest.mark.parametrize(("kernel", "dilation"), [(4, 1), (3, 2), ((4, 6), (1, 2)), ((5, 2), 3)])
def test_padding_amounts_are_torchs_same_padding(kernel, dilation):
    layer = nn.Conv2d(1, 1, kernel, padding="same", dilation=dilation)
    pads = layer._reversed_padding_repeated_twice  # torch's own (before, after) per axis, last axis first
    params = LayerParams.from_layer(layer)
    assert [params.padding_amounts(axis) for axis in (0, 1)] == [tuple(pads[2:4]), tuple(pads[0:2])]
    assert LayerParams.create("conv", k=kernel, p="valid", ndim=2).padding_amounts(1) == (0, 0)
    assert LayerParams.create("conv", k=3, p=(1, 2)).padding_amounts(1) == (2, 2)

@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: inverse_of(nn.Linear(2, 2), 4), "Expected `conv` to be an nn.Conv1d/2d/3d"),
        (lambda: inverse_of(nn.ConvTranspose2d(1, 1, 3), 4), "Expected `conv` to be an nn.Conv1d/2d/3d"),
        (lambda: inverse_of(nn.Conv1d(1, 1, 4, padding="same"), 8), "a ConvTranspose can undo"),
        (lambda: inverse_of(42, 8), "Expected `conv` to be an nn.Conv"),
        (lambda: inverse_of(LayerParams.create("pool", k=2), 8), "Expected a convolution"),
        (lambda: inverse_of({"k": 5}, 3), "Expected a positive output size"),
    ],
)
def test_inverse_of_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
