"""trace_shapes(): shapes, Relationships and receptive fields along the real dataflow."""

from __future__ import annotations

import json
import time
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_papers.conv_arithmetic import ShapeTrace, TraceRow, trace_shapes
from lightning_papers.models import SuperResolutionNet, get_model, list_models


@pytest.mark.parametrize("shortcut", ["A", "B"])
@pytest.mark.parametrize(("name", "rf"), [("resnet20", 81), ("resnet56", 249)])
def test_cifar_resnet_receptive_field_is_28n_minus_3(name, rf, shortcut):
    trace = trace_shapes(get_model(name, shortcut=shortcut), (3, 32, 32))
    assert trace.receptive_field == rf
    assert trace.mismatches == []
    last_conv = [r for r in trace.rows if r.kind == "conv"][-1]
    assert last_conv.receptive_field == (rf, rf) and last_conv.jump == (4, 4)
    shortcuts = [r for r in trace.rows if "shortcut" in r.name]
    assert len(shortcuts) == 2
    # Option A subsamples (a strided identity), option B is a 1x1 stride-2 projection: both add rf 1.
    assert {r.kind for r in shortcuts} == ({"subsample"} if shortcut == "A" else {"conv"})
    assert all(r.kernel == (1, 1) and r.stride == (2, 2) for r in shortcuts)
    first = shortcuts[0]
    feeding = [r for r in trace.rows if r.name.startswith("layer1.")][-1]
    assert first.receptive_field == feeding.receptive_field  # the shortcut reads the block input, rf unchanged


def test_noshort_has_the_same_receptive_field():
    assert trace_shapes(get_model("resnet20_noshort"), (3, 32, 32)).receptive_field == 81


class Branchy(nn.Module):
    """Calls `a` then `b` on the same input: chaining layers in call order would feed `a` into `b`."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 7, padding=3)
        self.b = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.c = nn.Conv2d(4, 4, 3, padding=1)
        self.up = nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1)

    def forward(self, x):
        ya = self.a(x)
        yb = self.c(self.b(x))
        return F.relu(ya + self.up(yb))


def test_branches_and_merges_follow_the_dataflow():
    trace = trace_shapes(Branchy(), (1, 16, 16))
    rows = {r.name: r for r in trace.rows}
    assert rows["a"].receptive_field == (7, 7)
    assert rows["b"].receptive_field == (3, 3)            # call-order chaining would say 7 + 2 = 9
    assert rows["c"].receptive_field == (7, 7) and rows["c"].jump == (2, 2)
    assert rows["up"].receptive_field == (9, 9) and rows["up"].jump == (1, 1)
    assert rows["up"].relationships == (14, 14)
    assert trace.receptive_field == 9                      # the merge takes the longest path
    assert trace.mismatches == []


def test_geometry_of_pooling_padding_resize_and_slices():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, dilation=2, padding=2)
            self.pool = nn.MaxPool2d(2, ceil_mode=True)
            self.avg = nn.AvgPool2d(3, stride=1, padding=1)
            self.up = nn.Upsample(scale_factor=2)

        def forward(self, x):
            x = self.pool(self.conv(x))
            x = F.pad(x, (1, 1, 2, 0))
            x = self.avg(x)[..., 1:, ::2]
            return self.up(x)

    trace = trace_shapes(Net(), torch.zeros(2, 1, 9, 9))
    kinds = [r.kind for r in trace.rows]
    assert kinds == ["conv", "pool", "pad", "pool", "subsample", "resize"]
    conv, pool, pad, avg, sub, up = trace.rows
    assert conv.receptive_field == (5, 5) and conv.relationships == (15, 15)
    assert pool.receptive_field == (6, 6) and pool.jump == (2, 2) and pool.actual == (5, 5)
    assert pad.actual == (7, 7) and pad.start[0] == pool.start[0] - 4
    assert avg.receptive_field == (10, 10)
    assert sub.actual == (6, 4) and sub.jump == (2, 4) and sub.stride == (1, 2)
    assert up.actual == (12, 8) and up.jump == (1, 2)
    assert trace.mismatches == []
    assert trace.input_shapes == [(2, 1, 9, 9)] and trace.output_shapes == [(2, 2, 12, 8)]


def test_every_registered_model_predicts_every_layer():
    for name in list_models():
        if name == "resnet1202":
            continue
        trace = trace_shapes(get_model(name), (3, 8, 8))
        assert trace.rows, name
        assert trace.mismatches == [], (name, trace.table())
        assert all(r.predicted == r.actual for r in trace.rows)


def test_resnet1202_per_layer():
    start = time.perf_counter()
    trace = trace_shapes(get_model("resnet1202"), (3, 8, 8))
    assert trace.mismatches == []
    assert trace.receptive_field == 28 * 200 - 3
    assert len([r for r in trace.rows if r.kind == "conv"]) == 1201
    assert time.perf_counter() - start < 120


def test_trace_leaves_no_trace():
    model = get_model("resnet20")
    model.train()
    model.layer1[0].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace_shapes(model, (3, 16, 16))
    assert model.training and not model.layer1[0].training and model.layer2[0].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_dropped_pixels_table_and_json():
    net = nn.Sequential(nn.Conv2d(1, 2, 1, stride=2), nn.Identity())
    trace = trace_shapes(net, (1, 32, 32))
    assert trace.rows[0].ignored == (16, 16) and trace.dropping_rows == [trace.rows[0]]
    text = trace.table()
    assert "receptive field: 1 px; 1 layers" in text and str(trace) == text
    data = json.loads(trace.to_json())
    assert data["receptive_field"] == [1, 1] and data["rows"][0]["ignored"] == [16, 16]
    assert data["rows"][0]["relationships"] == [5, 5]
    assert trace.to_markdown().startswith("| layer | op |")



def test_json_of_a_fractional_receptive_field():
    # the super-resolution net's upsampling stages give a receptive field in fractions of an input pixel
    trace = trace_shapes(SuperResolutionNet(), (3, 9, 11))
    assert any(isinstance(v, Fraction) and v.denominator > 1 for v in trace.max_receptive_field)
    data = json.loads(trace.to_json())
    assert data["receptive_field"] == [round(float(v), 4) for v in trace.max_receptive_field]

def test_mismatch_is_flagged():
    row = TraceRow("x", "Conv2d", "conv2d", "conv", (1, 1, 4, 4), (1, 1, 3, 3), predicted=(2, 2), actual=(3, 3))
    trace = ShapeTrace([row], [(1, 1, 4, 4)], [(1, 1, 3, 3)], (3, 3))
    assert trace.mismatches == [row] and "MISMATCH" in trace.table()
    assert trace.to_dict()["mismatches"] == 1


def test_one_dimensional_and_non_square():
    net = nn.Sequential(nn.Conv1d(1, 2, 5, stride=3), nn.MaxPool1d(2))
    trace = trace_shapes(net, (1, 50))
    assert [r.receptive_field for r in trace.rows] == [(5,), (8,)]
    rect = trace_shapes(nn.Conv2d(1, 1, (3, 1), stride=(2, 1)), (1, 9, 4))
    assert rect.receptive_field == (3, 1) and rect.rows[0].relationships == (5, 1)


@pytest.mark.parametrize(
    ("model", "example", "match"),
    [
        ("not a model", (3, 8, 8), "Expected `model` to be an nn.Module"),
        (nn.Conv2d(1, 1, 3), (0, 8), "Expected `input_size` to be a tuple of positive ints"),
        (nn.Conv2d(1, 1, 3), "3x8x8", "Expected `input_size` to be a tuple of positive ints"),
    ],
)
def test_trace_errors(model, example, match):
    with pytest.raises(ValueError, match=match):
        trace_shapes(model, example)
