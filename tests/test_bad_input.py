"""Bad and edge input, across the command line and the Python API: every case answers clearly and costs nothing.

One table per surface (the API, the command line), each row asserting the exception type or exit status **and**
the key words of the message; then the cases that must never happen, each its own test: a checkpoint that runs
code, a user's file overwritten or lost, a saved surface mixing two computations, a wrong number printed as a
result, a corrupt image crashing training. The count only grows: add a row for each new way in.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lightning_papers import landscape as ls
from lightning_papers._helpers import autocast_dtype, resolve_device
from lightning_papers.callbacks import (
    ConvArithmeticSummary,
    CyclicalLR,
    LossLandscapeProbe,
    LRRangeFinder,
    SuperConvergence,
    TensorBoardLayout,
)
from lightning_papers.cli import main
from lightning_papers.conv_arithmetic import animate, conv_output_size, explain, solve, trace_shapes
from lightning_papers.data import DigitsDataModule, ImageFolderDataModule, load_image, write_image
from lightning_papers.lr_suggestion import SmoothedLoss, smooth_ema, suggest
from lightning_papers.models import get_model
from lightning_papers.modules import ImageClassifier
from lightning_papers.modules.image_model import load_image_model, read_checkpoint
from lightning_papers.schedules import Cyclical, OneCycle, Ramp, cyclical, one_cycle

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "lightning_papers" / "recipes" / "quickstart.yaml"


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def _data():
    return torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 3


def _direction(**kwargs):
    return ls.random_directions(_net(), 1, seed=0, **kwargs)[0]


# ------------------------------------------------------------------------------------------------------------
# the Python API: (call, exception type, the key words of its message)
# ------------------------------------------------------------------------------------------------------------
API = [
    # callbacks: values refused by name at construction, not inside fit
    ("finder num_steps float", lambda: LRRangeFinder(num_steps=2.5), ValueError, r"`num_steps` .* got 2\.5"),
    ("finder num_steps 1", lambda: LRRangeFinder(num_steps=1), ValueError, r"`num_steps` .* >= 2, got 1"),
    ("finder max_lr inf", lambda: LRRangeFinder(max_lr=math.inf), ValueError, r"0 < min_lr < max_lr.*inf"),
    ("finder min_lr 0", lambda: LRRangeFinder(min_lr=0.0), ValueError, r"0 < min_lr < max_lr"),
    ("finder min > max", lambda: LRRangeFinder(1.0, 0.1), ValueError, r"0 < min_lr < max_lr.*1\.0 and 0\.1"),
    ("finder spacing", lambda: LRRangeFinder(spacing="log"), ValueError, r"`spacing` to be one of .*'log'"),
    ("finder method", lambda: LRRangeFinder(method="best"), ValueError, r"`method` to be one of .*'best'"),
    ("finder smoothing", lambda: LRRangeFinder(smoothing=1.0), ValueError, r"`smoothing` to be a number in \[0, 1\)"),
    ("finder divergence", lambda: LRRangeFinder(divergence_factor=0.5), ValueError,
     r"`divergence_factor` to be a number in \(1, inf\)"),
    ("finder at_epochs", lambda: LRRangeFinder(at_epochs=[-1]), ValueError, r"`at_epochs` .* non-negative"),
    ("finder num_batches", lambda: LRRangeFinder(num_batches=-1), ValueError, r"`num_batches` .* >= 0, got -1"),
    ("finder apply", lambda: LRRangeFinder(apply="weights"), ValueError, r"`apply` to be one of .*'weights'"),
    ("clr no bounds", lambda: CyclicalLR(step_size=3), ValueError,
     r"`base_lr` and `max_lr` \(numbers or 'finder'\)"),
    ("clr word bound", lambda: CyclicalLR("auto", 0.1, step_size=3), ValueError,
     r"`base_lr` .* or 'finder', got 'auto'"),
    ("clr inf bound", lambda: CyclicalLR(1e-3, math.inf, step_size=3), ValueError,
     r"`max_lr` to be a positive number"),
    ("clr base > max", lambda: CyclicalLR(0.1, 0.01, step_size=3), ValueError, r"`base_lr <= max_lr`"),
    ("clr both steps", lambda: CyclicalLR(1e-3, 1e-2, step_size=3, step_size_epochs=1), ValueError,
     r"exactly one of `step_size` and `step_size_epochs`"),
    ("clr policy", lambda: CyclicalLR(1e-3, 1e-2, step_size=3, policy="cos"), ValueError, r"`policy` to be one of"),
    ("clr gamma", lambda: CyclicalLR(1e-3, 1e-2, step_size=3, gamma=0), ValueError,
     r"`gamma` to be a positive finite number, got 0"),
    ("clr bounds word", lambda: CyclicalLR(1e-3, 1e-2, step_size=3, bounds="auto"), ValueError,
     r"`bounds` to be None or 'finder'"),
    ("1cycle max_lr word", lambda: SuperConvergence("auto"), ValueError, r"`max_lr` .* or 'finder', got 'auto'"),
    ("1cycle max_lr nan", lambda: SuperConvergence(math.nan), ValueError, r"`max_lr` to be a positive number"),
    ("1cycle total_steps", lambda: SuperConvergence(1.0, total_steps=2.5), ValueError, r"`total_steps` .* got 2\.5"),
    ("1cycle pct_start", lambda: SuperConvergence(1.0, pct_start=0.7), ValueError,
     r"`pct_start` to be a number in \(0, 0\.5\]"),
    ("1cycle anneal", lambda: SuperConvergence(1.0, anneal="exp"), ValueError, r"`anneal` to be one of"),
    ("1cycle momenta", lambda: SuperConvergence(1.0, base_momentum=0.99), ValueError,
     r"0 <= base_momentum <= max_momentum <= 1"),
    ("1cycle interpolation range", lambda: SuperConvergence(1.0, interpolation_range=(0.5, 1.0)), ValueError,
     r"`interpolation_range` to be \(low <= 0, high >= 1\)"),
    ("probe view", lambda: LossLandscapeProbe("3d"), ValueError, r"`view` to be one of .*'3d'"),
    ("probe num_batches", lambda: LossLandscapeProbe(num_batches=0), ValueError, r"`num_batches` .* got 0"),
    ("probe split", lambda: LossLandscapeProbe(split="test"), ValueError, r"`split` .* 'test'"),
    ("probe fold without loss_fn", lambda: LossLandscapeProbe(fold_bn=True), ValueError,
     r"`loss_fn` with \['fold_bn'\]"),
    ("probe grid dims", lambda: LossLandscapeProbe("1d", grid=(np.zeros(2), np.zeros(2))), ValueError,
     r"`grid` to be 1 non-empty"),
    ("conv summary input", lambda: ConvArithmeticSummary(input_size=(3, 0, 32)), ValueError,
     r"`input_size` .* positive integers"),
    ("layout form", lambda: TensorBoardLayout({"c": {"chart": ["Pie", []]}}), ValueError, r"`layout` as"),
    # schedules and suggestions
    ("cyclical policy", lambda: cyclical(0, 0.1, 1.0, 4, policy="saw"), ValueError, r"`policy` to be one of .*'saw'"),
    ("Cyclical step size", lambda: Cyclical(0.1, 1.0, 0), ValueError,
     r"`step_size_up` to be a positive finite number, got 0"),
    ("Cyclical groups", lambda: Cyclical((0.1, 0.2), (1.0, 1.0, 1.0), 3), ValueError, r"same length, got 2 and 3"),
    ("one_cycle step", lambda: one_cycle(11, 10, 1.0), ValueError, r"`step` to be a number in \[0, 10\], got 11"),
    ("OneCycle total", lambda: OneCycle(0, 1.0), ValueError, r"`total_steps` to be a positive integer, got 0"),
    ("OneCycle max_lr", lambda: OneCycle(10, -1.0), ValueError, r"`max_lr` to be a positive finite number, got -1\.0"),
    ("Ramp bounds", lambda: Ramp(0.0, 1.0, 3), ValueError, r"positive bounds"),
    ("suggest method", lambda: suggest("best", [1.0], [1.0]), ValueError, r"`method` to be one of"),
    ("smooth beta", lambda: smooth_ema([1.0], beta=1.5), ValueError, r"`beta` to be a number in \[0, 1\), got 1\.5"),
    ("SmoothedLoss factor", lambda: SmoothedLoss(divergence_factor=1.0), ValueError,
     r"`divergence_factor` to be a number in \(1, inf\)"),
    # the landscape library
    ("surface directions", lambda: ls.surface(_net(), [torch.zeros(3)], np.zeros(1), _data()), ValueError,
     r"one or two `Direction`s, got \['Tensor'\]"),
    ("surface grid", lambda: ls.surface(_net(), _direction(), [[np.nan]], _data()), ValueError,
     r"finite numbers"),
    ("surface backend", lambda: ls.surface(_net(), _direction(), np.zeros(1), _data(), backend="jit"), ValueError,
     r"`backend` to be one of"),
    ("surface resume", lambda: ls.surface(_net(), _direction(), np.zeros(1), _data(), resume=True), ValueError,
     r"a `path` to resume from"),
    ("surface evaluate+metrics", lambda: ls.surface(_net(), _direction(), np.zeros(1), [_data()],
                                                      evaluate=lambda b: {}, metrics=("loss",)), ValueError,
     r"either `evaluate` or `metrics`"),
    ("surface metric", lambda: ls.surface(_net(), _direction(), np.zeros(1), _data(), metrics=("f1",)),
     ValueError, r"'loss', 'accuracy' or callables, got 'f1'"),
    ("surface empty data", lambda: ls.surface(_net(), _direction(), np.zeros(1), []), ValueError,
     r"at least one sample"),
    ("surface shard", lambda: ls.surface(_net(), _direction(), np.zeros(1), _data(), shard=(2, 2)), ValueError,
     r"`rank` to be an integer in \[0, 1\], got 2: `shard` is \(rank, world_size\), got \(2, 2\)"),
    ("direction normalization", lambda: _direction(normalization="unit"), ValueError, r"`normalization` to be one of"),
    ("direction ignore", lambda: _direction(ignore=("weights",)), ValueError, r"`ignore` entries to be among"),
    ("hessian iterations", lambda: ls.hessian_top_eigenvalue(_net(), _data(), max_iter=0), ValueError,
     r"`max_iter` to be a positive integer"),
    ("interpolate start", lambda: ls.interpolate(_net(), {}, [0.0], _data()), ValueError,
     r"`start` to have an entry"),
    ("merge nothing", lambda: ls.merge_surfaces([]), ValueError, r"at least one surface"),
    ("load missing", lambda: ls.load_surface("nope"), ValueError, r"saved surface at .*nope\.npz.*no such file"),
    ("loss_rise radius", lambda: ls.loss_rise(ls.SurfaceResult([np.zeros(1)], {"loss": np.ones(1)}, np.ones(1, bool)),
                                              -1.0), ValueError, r"`radius` >= 0"),
    # convolution arithmetic
    ("conv k zero", lambda: conv_output_size(32, 0), ValueError, r"`k` to be a positive integer, got 0"),
    ("conv bool size", lambda: conv_output_size(True, 3), ValueError, r"got True"),
    ("conv float size", lambda: conv_output_size(32.0, 3), ValueError, r"got 32\.0"),
    ("conv kernel too big", lambda: conv_output_size(2, 5), ValueError, r"positive output size.*kernel must fit"),
    ("explain padding", lambda: explain(input_size=8, k=3, p="full"), ValueError, r"'full'"),
    ("solve bound", lambda: solve(8, 4, max_kernel=0), ValueError, r"positive integer, got 0"),
    ("trace example", lambda: trace_shapes(get_model("resnet20"), "3x32x32"), ValueError, r"example"),
    # models, modules, data, devices
    ("model name", lambda: get_model("resnet21"), ValueError, r"Unknown model 'resnet21'. Expected one of"),
    ("classifier optimizer", lambda: ImageClassifier("resnet20", optimizer="lamb"), ValueError,
     r"`optimizer` to be one of .*'lamb'"),
    ("classifier lr", lambda: ImageClassifier("resnet20", lr=0.0), ValueError,
     r"`lr` to be a positive finite number, got 0\.0"),
    ("classifier milestones", lambda: ImageClassifier("resnet20", scheduler="multistep"), ValueError,
     r"non-empty `milestones`"),
    ("digits val_fraction", lambda: DigitsDataModule(val_fraction=1.5), ValueError,
     r"`val_fraction` to be a number in \(0, 1\)"),
    ("image size", lambda: load_image(np.zeros((4, 4, 3)), size=0), ValueError, r"`size` to be a positive int"),
    ("image array", lambda: load_image(np.zeros((4, 4, 5))), ValueError, r"image of shape .* got \(4, 4, 5\)"),
    ("image missing", lambda: load_image("nope.png"), FileNotFoundError, r"image file, but 'nope\.png'"),
    ("device name", lambda: resolve_device("tpu!"), ValueError, r"--device to be auto, cpu, cuda or cuda:N"),
    ("precision name", lambda: autocast_dtype("bf17"), ValueError, r"precision among .*'bf17'"),
    ("checkpoint missing", lambda: read_checkpoint("nope.ckpt"), FileNotFoundError, r"--ckpt .*\(no such file\)"),
    ("checkpoint folder", lambda: read_checkpoint("."), FileNotFoundError, r"--ckpt .* \(a folder\)"),
    ("image model missing", lambda: load_image_model("nope.ckpt"), FileNotFoundError, r"--ckpt .*\(no such file\)"),
]


@pytest.mark.parametrize(("call", "error", "match"), [row[1:] for row in API], ids=[row[0] for row in API])
def test_api_refuses_bad_input_by_name(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_conv_arithmetic_takes_any_integral_size():
    assert conv_output_size(np.int64(32), np.int32(3)) == conv_output_size(32, 3) == 30
    assert conv_output_size((np.int64(32), 16), 3) == (30, 14)


# ------------------------------------------------------------------------------------------------------------
# the command line: (argv, exit status, the key words on stderr); the package's own errors are one line
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A text file, a folder, a non-YAML config, a state dict that is not a checkpoint, and a photograph."""
    root = tmp_path_factory.mktemp("bad")
    (root / "notes.txt").write_text("these are not weights\n")
    (root / "folder").mkdir()
    (root / "bad.yaml").write_text("model: [unclosed\n")
    (root / "empty.yaml").write_text("trainer: {}\n")
    torch.save({"weights": torch.zeros(1)}, root / "weights.pt")
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(root / "photo.png")
    return root


def _cli(f):
    return [
        (["landscape", "--ckpt", "nope.ckpt", "--config", str(QUICKSTART)], r"--ckpt .*'nope\.ckpt' \(no such file\)"),
        (["landscape", "--ckpt", str(f / "notes.txt"), "--config", str(QUICKSTART), "--device", "cpu"],
         r"--ckpt to be a checkpoint written by torch\.save or Lightning.*notes\.txt"),
        (["landscape", "--ckpt", str(f / "weights.pt"), "--config", str(QUICKSTART), "--device", "cpu"],
         r"--ckpt to be a Lightning checkpoint with a 'state_dict'"),
        (["landscape", "--ckpt", str(f / "weights.pt"), "--config", str(f / "bad.yaml"), "--device", "cpu"],
         r"--config to be a YAML recipe, got .*bad\.yaml.*not YAML"),
        (["landscape", "--ckpt", str(f / "weights.pt"), "--config", str(f / "empty.yaml"), "--device", "cpu"],
         r"recipe with `model:` and `data:` sections"),
        (["landscape", "--ckpt", str(f / "weights.pt"), "--config", "nope.yaml"], r"--config to be a recipe YAML"),
        (["landscape", "--ckpt", str(f / "weights.pt"), "--config", str(QUICKSTART), "--grid", "1:-1:3"],
         r"grid as START:STOP:POINTS .* got '1:-1:3'"),
        (["landscape", "--ckpt", str(f / "weights.pt"), "--config", str(QUICKSTART), "--grid", "a:b"],
         r"got 'a:b'"),
        (["landscape", "--ckpt", str(f / "weights.pt"), "--config", str(QUICKSTART), "--batches", "0"],
         r"--batches >= 1, got 0"),
        (["landscape", "--ckpt", str(f / "weights.pt"), "--config", str(QUICKSTART), "--device", "tpu9"],
         r"--device to be auto, cpu, cuda or cuda:N, got 'tpu9'"),
        (["landscape", "--ckpt", str(f / "weights.pt"), "--config", str(QUICKSTART), "--device", "cpu",
          "--out", str(f / "notes.txt" / "sub")], r"--out in a folder this user can write"),
        (["stylize", "--ckpt", "nope.ckpt", "--input", str(f / "photo.png"), "--output", "o.png"],
         r"--ckpt .*'nope\.ckpt' \(no such file\)"),
        (["stylize", "--ckpt", str(f / "notes.txt"), "--input", str(f / "photo.png"), "--output", "o.png"],
         r"--ckpt to be a checkpoint written by torch\.save .*notes\.txt' is neither a zip archive nor a pickle"),
        (["stylize", "--ckpt", str(f / "weights.pt"), "--input", str(f / "photo.png"), "--output", "o.png"],
         r"holds neither network"),
        (["stylize", "--ckpt", str(f / "folder"), "--input", str(f / "photo.png"), "--output", "o.png"],
         r"--ckpt to be a checkpoint file, got .*\(a folder\)"),
        (["stylize", "--ckpt", str(f / "weights.pt"), "--input", "nope.png", "--output", "o.png"],
         r"--input to be an image file or a folder, got 'nope\.png'"),
        (["stylize", "--ckpt", str(f / "weights.pt"), "--input", str(f / "photo.png"),
          "--output", str(f / "photo.png")], r"--output to differ from --input"),
        (["stylize", "--ckpt", str(f / "weights.pt"), "--input", str(f), "--output", str(f)],
         r"--output to differ from --input"),
        (["stylize", "--ckpt", str(f / "weights.pt"), "--input", str(f / "folder"), "--output", "out"],
         r"images under .*folder.*found none"),
        (["stylize", "--ckpt", str(f / "weights.pt"), "--input", str(f), "--output", "o.png"],
         r"--output to be a folder when --input is one"),
        (["stylize", "--ckpt", str(f / "weights.pt"), "--input", str(f / "photo.png"),
          "--output", str(f / "notes.txt" / "o.png")], r"--output in a folder this user can write"),
        (["stylize", "--ckpt", str(f / "weights.pt"), "--input", str(f / "photo.png"), "--output", "o.png",
          "--device", "gpu0"], r"--device to be auto, cpu, cuda or cuda:N, got 'gpu0'"),
        (["super-resolve", "--ckpt", str(f / "notes.txt"), "--input", str(f / "photo.png"), "--output", "o.png"],
         r"--ckpt to be a checkpoint written by torch\.save"),
        (["export", "--ckpt", str(f / "notes.txt"), "--format", "onnx", "--output", "m.onnx"],
         r"--ckpt to be a checkpoint written by torch\.save"),
        (["export", "--ckpt", str(f / "weights.pt"), "--format", "onnx", "--output", str(f / "folder")],
         r"--output to name a file, got the folder"),
        (["export", "--ckpt", str(f / "weights.pt"), "--format", "tflite", "--output", "m.tfl"], r"tflite"),
        (["conv", "explain", "--i", "2", "--k", "3"], r"positive output size"),
        (["conv", "explain", "--i", "8", "--k", "3", "--s", "0"], r"`s` to be a positive integer, got 0"),
        (["conv", "trace", "--model", "resnet21"], r"Unknown model 'resnet21'"),
        (["conv", "trace", "--model", "resnet20", "--input-size", "3", "32"], r"--input-size to be C H W"),
        (["conv", "animate", "--kind", "conv", "--i", "2", "--k", "3", "-o", "x.gif"], r"positive output size"),
        (["fit", "--config", str(QUICKSTART), "--model.init_args.model=resnet21", "--trainer.fast_dev_run=true"],
         r"Unknown model 'resnet21'"),
    ]


def test_command_line_table_has_its_rows(files):
    assert len(_cli(files)) >= 30


@pytest.mark.parametrize("row", range(32))
def test_command_line_answers_in_one_line_with_status_2(files, row, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv, match = _cli(files)[row]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"lightning-papers {argv[0]}: error: ")]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err
    import re

    assert re.search(match, lines[0]), lines[0]


# argparse's own refusals: status 2 and the flag named
ARGPARSE = [
    (["conv", "explain", "--i", "8", "--k", "3", "--p", "foo"],
     r"argument --p: expected an integer, 'same' or 'valid', got 'foo'"),
    (["conv", "solve", "--i", "8", "--o", "4", "--limit", "-1"],
     r"argument --limit: expected a positive integer, got '-1'"),
    (["conv", "solve", "--i", "8", "--o", "4", "--limit", "0"], r"argument --limit: expected a positive integer"),
    (["conv", "explain", "--i", "x", "--k", "3"], r"argument --i: invalid int value: 'x'"),
    (["landscape", "--ckpt", "a", "--config", "b", "--mode", "3d"], r"argument --view/--mode: invalid choice: '3d'"),
    (["stylize", "--ckpt", "a", "--input", "b", "--output", "c", "--precision", "64"],
     r"argument --precision: invalid choice: '64'"),
    (["landscape", "--ckpt", "a"], r"the following arguments are required: --config"),
    (["demo", "--epochs", "many"], r"argument --epochs: invalid int value: 'many'"),
    (["nope"], r"invalid choice: 'nope'"),
]


@pytest.mark.parametrize(("argv", "match"), ARGPARSE, ids=[" ".join(a[:3]) for a, _ in ARGPARSE])
def test_argparse_names_the_flag(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    import re

    assert re.search(match, capsys.readouterr().err)


def test_debug_shows_the_traceback_and_internal_errors_keep_theirs(files, capsys, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such file"):
        main(["landscape", "--ckpt", "nope.ckpt", "--config", str(QUICKSTART), "--debug"])
    monkeypatch.setenv("LIGHTNING_PAPERS_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["landscape", "--ckpt", "nope.ckpt", "--config", str(QUICKSTART)])
    monkeypatch.delenv("LIGHTNING_PAPERS_DEBUG")
    # a ValueError that is not one of the package's own checks is a bug: it keeps its traceback
    from lightning_papers.cli import run_as_tool

    with pytest.raises(ValueError, match="from elsewhere"):
        run_as_tool("lightning-papers x", lambda: int("from elsewhere"))


def test_ckpt_path_of_another_model_class_is_refused(tmp_path, capsys):
    from lightning_papers.cli._tool import _check_ckpt_class

    ckpt = tmp_path / "other.ckpt"
    torch.save({"hyper_parameters": {"_class_path": "lightning_papers.modules.SuperResolution"}, "state_dict": {}},
               ckpt)
    config = {"subcommand": "validate",
              "validate": {"ckpt_path": str(ckpt), "model": {"class_path": "lightning_papers.modules.ImageClassifier"}}}
    with pytest.raises(ValueError, match=r"--ckpt_path to be a checkpoint of the config's model .*ImageClassifier, "
                                         r"got a .*SuperResolution checkpoint"):
        _check_ckpt_class(config)
    config["validate"]["model"]["class_path"] = "lightning_papers.modules.SuperResolution"
    _check_ckpt_class(config)  # the same class: accepted


# ------------------------------------------------------------------------------------------------------------
# must never happen: a checkpoint runs code
# ------------------------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # what a crafted checkpoint does: call something when unpickled
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("force_unsafe", [False, True], ids=["default", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1"])
def test_a_crafted_checkpoint_never_runs_its_payload(tmp_path, files, style_checkpoint, force_unsafe, capsys,
                                                     monkeypatch):
    if force_unsafe:
        monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "PWNED"
    checkpoint = torch.load(style_checkpoint[0], weights_only=True)  # a real one, with one object added
    checkpoint["hyper_parameters"]["payload"] = _Payload(marker)
    crafted = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, crafted)
    photo = files / "photo.png"
    commands = [
        ["stylize", "--ckpt", str(crafted), "--input", str(photo), "--output", str(tmp_path / "s.png")],
        ["super-resolve", "--ckpt", str(crafted), "--input", str(photo), "--output", str(tmp_path / "r.png")],
        ["export", "--ckpt", str(crafted), "--format", "torchscript", "--output", str(tmp_path / "m.pt")],
        ["landscape", "--ckpt", str(crafted), "--config", str(QUICKSTART), "--device", "cpu", "--grid", "-1:1:3",
         "--out", str(tmp_path / "surf")],
        ["validate", "--config", str(QUICKSTART), "--ckpt_path", str(crafted), "--trainer.logger=false"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "could run code; refused" in err, err
        assert not marker.exists(), argv
    # the library entry points too
    with pytest.raises(ValueError, match="could run code; refused"):
        load_image_model(crafted)
    assert not marker.exists()


def test_cifar_files_are_checked_before_they_are_unpickled():
    # the table the data module checks against (its own test writes crafted files: tests/data/test_cifar.py)
    from lightning_papers.data.cifar import MD5

    assert MD5["cifar10"]["data_batch_1"] == "c99cafc152244af753f735de768cd75f"


# ------------------------------------------------------------------------------------------------------------
# must never happen: a user's file is overwritten or lost
# ------------------------------------------------------------------------------------------------------------
def _photo(path, value=100, size=(10, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)


def _sums(root):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_stylize_never_writes_onto_its_inputs(tmp_path, style_checkpoint, capsys):
    ckpt = str(style_checkpoint[0])
    photos = tmp_path / "photos"
    _photo(photos / "p.png")
    _photo(photos / "q.jpg", 50)
    before = _sums(photos)
    assert main(["stylize", "--ckpt", ckpt, "--input", str(photos / "p.png"), "--output", str(photos / "p.png")]) == 2
    assert main(["stylize", "--ckpt", ckpt, "--input", str(photos), "--output", str(photos)]) == 2
    assert main(["stylize", "--ckpt", ckpt, "--input", str(photos), "--output", str(photos / ".")]) == 2
    assert "--output to differ from --input" in capsys.readouterr().err
    assert _sums(photos) == before


def test_same_stems_stay_apart_and_an_output_inside_the_input_is_not_read_again(tmp_path, style_checkpoint, capsys):
    ckpt = str(style_checkpoint[0])
    photos = tmp_path / "photos"
    _photo(photos / "a.jpg", 30)
    _photo(photos / "a.png", 200)
    _photo(photos / "sub" / "b.png")
    before = _sums(photos)
    out = photos / "stylised"  # inside the input folder
    assert main(["stylize", "--ckpt", ckpt, "--input", str(photos), "--output", str(out)]) == 0
    assert "3 written, 0 skipped" in capsys.readouterr().out
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["a_jpg.png", "a_png.png", "sub/b.png"]
    a_jpg, a_png = (np.asarray(Image.open(out / n)) for n in ("a_jpg.png", "a_png.png"))
    assert not np.array_equal(a_jpg, a_png)  # two results, not one written twice
    # the second run does not stylise the first run's outputs
    assert main(["stylize", "--ckpt", ckpt, "--input", str(photos), "--output", str(out), "--overwrite"]) == 0
    assert "3 written" in capsys.readouterr().out
    assert {p: s for p, s in _sums(photos).items() if out not in p.parents} == before


def test_an_unreadable_image_is_skipped_not_fatal(tmp_path, style_checkpoint, capsys, caplog):
    photos = tmp_path / "photos"
    _photo(photos / "good.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    assert main(["stylize", "--ckpt", str(style_checkpoint[0]), "--input", str(photos),
                 "--output", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "1 written, 1 skipped" in captured.out
    # one logged warning (on stderr through logging's last-resort handler when nothing else is configured)
    assert "skipped" in caplog.text and "broken.jpg" in caplog.text
    assert (tmp_path / "out" / "good.png").is_file()


def test_a_bad_output_fails_before_the_checkpoint_is_read(tmp_path, files, capsys):
    # the checkpoint is a text file: if it were read first, the error would be about --ckpt
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["stylize", "--ckpt", str(files / "notes.txt"), "--input", str(files / "photo.png"),
                 "--output", str(blocker / "o.png")]) == 2
    assert "--output in a folder this user can write" in capsys.readouterr().err


def test_a_surface_path_is_checked_before_any_point_is_computed(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    calls = []

    def evaluate(batch):
        calls.append(1)
        return {"loss": torch.zeros(())}

    with pytest.raises(ValueError, match=r"`path` in a folder this user can write"):
        ls.surface(_net(), _direction(), np.linspace(-1, 1, 5), [_data()], evaluate=evaluate,
                   path=str(blocker / "surf"))
    assert calls == []


def test_files_we_write_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        npz, js = ls.save_surface(ls.SurfaceResult([np.zeros(1)], {"loss": np.ones(1)}, np.ones(1, bool)),
                                  tmp_path / "s")
    finally:
        os.umask(old)
    for path in (npz, js):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# ------------------------------------------------------------------------------------------------------------
# must never happen: a saved surface mixes two computations; a wrong number printed as a result
# ------------------------------------------------------------------------------------------------------------
def test_resuming_with_another_loss_is_refused(tmp_path):
    net, data, direction = _net(), _data(), _direction()
    ls.surface(net, direction, np.linspace(-1, 1, 3), data, metrics={"loss": F.cross_entropy}, path=tmp_path / "s")
    with pytest.raises(ValueError, match=r"match this run's `evaluation`.*cross_entropy.*instead of .*<lambda>"):
        ls.surface(net, direction, np.linspace(-1, 1, 3), data, path=tmp_path / "s", resume=True,
                   metrics={"loss": lambda out, y: F.mse_loss(out, F.one_hot(y, 3).float())})


def test_merging_shards_of_different_surfaces_is_refused():
    net, data = _net(), _data()
    a = ls.surface(net, _direction(), np.linspace(-1, 1, 4), data, shard=(0, 2))
    other = ls.random_directions(net, 1, seed=7)[0]
    b = ls.surface(net, other, np.linspace(-1, 1, 4), data, shard=(1, 2))
    with pytest.raises(ValueError, match=r"part 1 to match this run's `directions`.*merge only shards of one"):
        ls.merge_surfaces([a, b])
    c = ls.surface(net, _direction(), np.linspace(-1, 1, 4), data, shard=(1, 2))
    assert ls.merge_surfaces([a, c]).complete


def test_a_corrupt_surface_file_says_so(tmp_path):
    (tmp_path / "s.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"surface written by save_surface .* damaged") as err:
        ls.load_surface(tmp_path / "s")
    assert "allow_pickle" not in str(err.value)


def test_a_grid_without_zero_labels_the_nearest_point(tmp_path, capsys):
    from lightning_papers.cli.landscape import _centre

    result = ls.SurfaceResult([np.array([-1.0, 1.0])], {"loss": np.array([3097.95, 2.43])}, np.ones(2, bool))
    line = _centre(result)
    assert "centre" not in line.split(",")[0] and "at (-1)" in line and "the grid has no 0" in line
    assert _centre(ls.SurfaceResult([np.array([-1.0, 0.0])], {"loss": np.array([9.0, 2.43])},
                                    np.ones(2, bool))) == "centre loss 2.4300"


# ------------------------------------------------------------------------------------------------------------
# must never happen: a corrupt image crashes training; a probe's NaN surface passes without a word
# ------------------------------------------------------------------------------------------------------------
def test_a_truncated_jpeg_is_skipped_at_setup(tmp_path):
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    for i in range(3):
        _photo(tmp_path / f"good{i}.png", 40 * i, (40, 40))
    (tmp_path / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with Image.open(tmp_path / "truncated.jpg") as image:
        image.verify()  # it passes PIL's verify: only decoding finds it
    dm = ImageFolderDataModule(root=str(tmp_path), image_size=16, batch_size=2, val_fraction=0.25)
    with pytest.warns(UserWarning, match=r"Skipping 1 unreadable image file\(s\) of 4.*truncated\.jpg"):
        dm.setup("fit")
    assert dm.skipped == [tmp_path / "truncated.jpg"]


def test_a_probe_with_an_all_nan_surface_says_so(tmp_path):
    class NaNModule(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(4, 3)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum() * (torch.nan if not self.training else 0.0)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*_data()), batch_size=4)

    probe = LossLandscapeProbe("1d", grid=np.linspace(-1, 1, 3), split="train", num_batches=1,
                               sharpness=False, save_results=False)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, callbacks=[probe], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    with pytest.warns(UserWarning, match=r"every point of the surface has a non-finite loss"):
        trainer.fit(NaNModule())


def test_the_tables_hold_at_least_80_cases(files):
    assert len(API) + len(_cli(files)) + len(ARGPARSE) >= 80


def test_lightning_papers_run_as_a_process_prints_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lightning_papers.cli", "landscape", "--ckpt", "nope.ckpt",
                           "--config", str(QUICKSTART)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("lightning-papers landscape: error: Expected --ckpt")
    assert "Traceback" not in proc.stderr


def test_validate_with_a_checkpoint_of_another_model_class_is_refused(tmp_path, capsys):
    ckpt = tmp_path / "sr.ckpt"
    torch.save({"hyper_parameters": {"_class_path": "lightning_papers.modules.SuperResolution", "factor": 4},
                "state_dict": {}, "pytorch-lightning_version": L.__version__}, ckpt)
    code = main(["validate", "--config", str(QUICKSTART), "--ckpt_path", str(ckpt), "--trainer.logger=false",
                 "--trainer.limit_val_batches=1", f"--trainer.default_root_dir={tmp_path}"])
    assert code == 2
    assert "--ckpt_path to be a checkpoint of the config's model" in capsys.readouterr().err


def test_validate_takes_a_checkpoint_saved_outside_the_cli(tmp_path, capsys):
    # a Trainer in a user's own script saves hyperparameters without `_class_path`: they apply to the config's model
    # (Lightning applied them to the base LightningModule: "Option 'model' is not accepted", exit 2)
    torch.manual_seed(0)
    module = ImageClassifier("resnet20", lr=0.05)
    ckpt = tmp_path / "plain.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(),
                "pytorch-lightning_version": L.__version__}, ckpt)
    before = _sums(tmp_path)
    code = main(["validate", "--config", str(QUICKSTART), "--ckpt_path", str(ckpt), "--trainer.logger=false",
                 "--trainer.limit_val_batches=1", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
                 f"--trainer.default_root_dir={tmp_path}"])
    assert code == 0, capsys.readouterr().err[-500:]
    assert "val/loss" in capsys.readouterr().out
    assert {path: digest for path, digest in _sums(tmp_path).items() if path in before} == before  # the checkpoint


def test_a_config_mistake_is_not_preceded_by_the_seed_line(capsys, caplog):
    # "Seed set to 0" (Lightning's info line for the config's own seed) came before the one-line error
    import logging

    caplog.set_level(logging.INFO)
    assert main(["fit", "--config", str(QUICKSTART), "--model.init_args.lr=-1"]) == 2
    assert "Expected `lr` to be a positive finite number, got -1.0" in capsys.readouterr().err
    assert "Seed set to" not in caplog.text, caplog.text


def test_lightning_cli_no_longer_warns_about_args_and_the_command_line(tmp_path, monkeypatch):
    import warnings

    from lightning_papers.cli import lightning_cli

    monkeypatch.setattr(sys, "argv", ["lightning-papers", "fit", "--config", str(QUICKSTART)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lightning_cli(["--config", str(QUICKSTART), "--trainer.logger=false"], run=False,
                      save_config_callback=None)
    assert not [w for w in caught if "not recommended to provide both" in str(w.message)]


# ============================================================================================================
# Issue 23: every file a user has. One table per class of failure; the file cases assert every input file's
# checksum before and after the command (only the files a row names as replaced may change).
# ============================================================================================================
def _png_bits(path) -> int:
    """The bit depth a PNG file declares (IHDR byte 24), read from the bytes: independent of any decoder."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return data[24]


def _bomb(path, side=100_000):
    """A small valid PNG whose header claims side x side pixels (PIL's DecompressionBombError at open)."""
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", side, side)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    Path(path).write_bytes(bytes(data))


def _truncated(path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buffer, "PNG")
    Path(path).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _owned(root: Path, style: Path, sr: Path) -> None:
    """What every file case starts from: photographs, a folder of them, a user's other files and the checkpoints."""
    _photo(root / "p.png", 90)
    _photo(root / "photos" / "a.png", 30)
    _photo(root / "photos" / "b.jpg", 200)
    _photo(root / "user.png", 7)
    (root / "user.gif").write_bytes(b"GIF89a a user's own animation")
    (root / "model.ckpt").write_bytes(style.read_bytes())
    (root / "sr.ckpt").write_bytes(sr.read_bytes())
    grey16 = (np.arange(16 * 24, dtype=np.uint32).reshape(16, 24) * 170).clip(0, 65535).astype(np.uint16)
    Image.fromarray(grey16).save(root / "g16.png")
    Image.fromarray(np.linspace(0, 1, 16 * 24, dtype=np.float32).reshape(16, 24)).save(root / "f01.tif")
    Image.fromarray(np.linspace(0, 255, 16 * 24, dtype=np.float32).reshape(16, 24)).save(root / "f255.tif")


def _link(name, target):
    def make(r):
        os.symlink(r / target, r / name)
    return make


def _hard(name, target):
    def make(r):
        os.link(r / target, r / name)
    return make


def _put(name, builder):
    def make(r):
        (r / name).parent.mkdir(parents=True, exist_ok=True)
        builder(r / name)
    return make


def _images(r):
    """One photograph of each kind a user may have, in images/."""
    d = r / "images"
    d.mkdir()
    Image.fromarray(np.full((8, 10), 180, np.uint8)).convert("1").save(d / "bilevel.png")
    Image.fromarray(np.dstack([np.full((8, 10), 90, np.uint8), np.full((8, 10), 128, np.uint8)]), "LA").save(
        d / "la.png")
    pal = Image.new("P", (10, 8), 1)
    pal.putpalette([0, 0, 0, 200, 40, 40] + [0] * 762)
    pal.save(d / "palette.png", transparency=0)
    Image.new("CMYK", (10, 8), (20, 80, 0, 10)).save(d / "cmyk.jpg")
    frames = [Image.new("L", (10, 8), v) for v in (20, 220)]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGBA", (10, 8), (0, 120, 240, 128)).save(d / "rgba.png")


# (id, prepare(root) or None, argv(root), exit status, regex on stderr + stdout, names allowed to change)
FILE_CASES = [
    # class 2: never onto an input, however spelled; never over a file it did not make without --overwrite
    ("out via symlink", _link("link.png", "p.png"), lambda r: ["stylize", "--input", r / "p.png", "--output",
                                                               r / "link.png"], 2, r"differ from --input", ()),
    ("out via ..", None, lambda r: ["stylize", "--input", r / "p.png", "--output", r / "photos" / ".." / "p.png"],
     2, r"--output to differ from --input", ()),
    ("out via hard link", _hard("hard.png", "p.png"), lambda r: ["stylize", "--input", r / "p.png", "--output",
                                                                 r / "hard.png"], 2, r"differ from --input", ()),
    ("out dir via symlink", _link("photos_link", "photos"), lambda r: ["stylize", "--input", r / "photos",
                                                                       "--output", r / "photos_link"],
     2, r"--output to differ from --input", ()),
    ("out existing user file", None, lambda r: ["stylize", "--input", r / "p.png", "--output", r / "user.png"],
     2, r"name new files, got .*user\.png', which exists: pass --overwrite", ()),
    ("out existing --overwrite", None, lambda r: ["stylize", "--input", r / "p.png", "--output", r / "user.png",
                                                  "--overwrite"], 0, r"1 written, 0 skipped", ("user.png",)),
    ("out folder inside input holds user files", _put("photos/out/a.png", _photo),
     lambda r: ["stylize", "--input", r / "photos", "--output", r / "photos" / "out"], 2,
     r"name new files, got .*out/a\.png'.*pass --overwrite", ()),
    ("out folder inside input, new", None, lambda r: ["stylize", "--input", r / "photos", "--output",
                                                      r / "photos" / "new"], 0, r"2 written, 0 skipped", ()),
    ("out is the checkpoint", None, lambda r: ["stylize", "--input", r / "p.png", "--output", r / "model.ckpt"],
     2, r"--output to differ from --ckpt", ()),
    ("out is the checkpoint via link", _link("m.png", "model.ckpt"),
     lambda r: ["stylize", "--input", r / "p.png", "--output", r / "m.png"], 2, r"differ from --ckpt", ()),
    ("super-resolve out via ./", None, lambda r: ["super-resolve", "--ckpt", r / "sr.ckpt", "--input", r / "p.png",
                                                  "--output", f"{r}/./p.png"], 2, r"differ from --input", ()),
    ("export onto its checkpoint", None, lambda r: ["export", "--ckpt", r / "model.ckpt", "--format", "torchscript",
                                                    "--output", r / "model.ckpt"], 2, r"--output to differ from --ckpt",
     ()),
    ("export onto checkpoint via ..", None, lambda r: ["export", "--ckpt", r / "model.ckpt", "--format",
                                                       "torchscript", "--output", r / "photos" / ".." / "model.ckpt"],
     2, r"--output to differ from --ckpt", ()),
    ("export onto checkpoint via link", _link("m.pt", "model.ckpt"),
     lambda r: ["export", "--ckpt", r / "model.ckpt", "--format", "torchscript", "--output", r / "m.pt"],
     2, r"differ from --ckpt", ()),
    ("export over a user file", None, lambda r: ["export", "--ckpt", r / "model.ckpt", "--format", "torchscript",
                                                 "--output", r / "user.png"], 2, r"pass --overwrite", ()),
    ("export --overwrite", None, lambda r: ["export", "--ckpt", r / "model.ckpt", "--format", "torchscript",
                                            "--output", r / "user.png", "--overwrite"], 0, r"exported", ("user.png",)),
    ("animate over a user gif", None, lambda r: ["conv", "animate", "-o", r / "user.gif"], 2, r"pass --overwrite",
     ()),
    ("animate --all over a user gif", _put("figs/dilation.gif", lambda p: p.write_bytes(b"GIF89a mine")),
     lambda r: ["conv", "animate", "--all", r / "figs"], 2, r"--all to name new files, got .*dilation\.gif", ()),
    ("landscape over a user picture", _put("land/contour.png", _photo),
     lambda r: ["landscape", "--ckpt", r / "model.ckpt", "--config", QUICKSTART, "--out", r / "land"], 2,
     r"--out to name new files, got .*contour\.png", ()),
    ("landscape out onto its checkpoint", _put("land2/surface.json", lambda p: p.write_text("{}")),
     lambda r: ["landscape", "--ckpt", r / "land2" / "surface.json", "--config", QUICKSTART, "--out", r / "land2"],
     2, r"--out to differ from --ckpt or --config", ()),
    # class 1: images of any depth and format, written back with the input's depth
    ("16-bit png in, 16-bit png out", None, lambda r: ["stylize", "--input", r / "g16.png", "--output",
                                                       r / "o16.png"], 0, r"1 written", ()),
    ("float tiff in, 16-bit png out", None, lambda r: ["stylize", "--input", r / "f01.tif", "--output",
                                                       r / "of.png"], 0, r"1 written", ()),
    ("float tiff 0..255 refused by name", None, lambda r: ["stylize", "--input", r / "f255.tif", "--output",
                                                           r / "o.png"], 1, r"divide by 255.*0 written, 1 skipped", ()),
    ("16-bit super-resolve", None, lambda r: ["super-resolve", "--ckpt", r / "sr.ckpt", "--input", r / "g16.png",
                                              "--output", r / "big16.png"], 0, r"1 written", ()),
    ("16-bit to jpeg says 8 bits", None, lambda r: ["stylize", "--input", r / "g16.png", "--output", r / "o.jpg"],
     0, r"8 bits per channel from a 16-bit source", ()),
    ("every mode in a folder", _images, lambda r: ["stylize", "--input", r / "images", "--output", r / "styled"],
     0, r"has 2 frames; only the first is read.*6 written, 0 skipped", ()),
    ("int32 image out of range", _put("wide.tif", lambda p: Image.fromarray(np.array([[-5, 70000]], np.int32)).save(
        p)), lambda r: ["stylize", "--input", r / "wide.tif", "--output", r / "o.png"], 1,
     r"mode 'I'\) to hold 16-bit values.*0 written, 1 skipped", ()),
    # class 3: per-file failures are skipped and counted; a batch fails only when nothing could be read
    ("decompression bomb skipped", _put("photos/bomb.png", _bomb),
     lambda r: ["stylize", "--input", r / "photos", "--output", r / "o"], 0,
     r"skipped .*bomb\.png.*decompression bomb.*2 written, 1 skipped", ()),
    ("truncated png skipped", _put("photos/cut.png", _truncated),
     lambda r: ["stylize", "--input", r / "photos", "--output", r / "o"], 0, r"cut\.png.*2 written, 1 skipped", ()),
    ("text named png skipped", _put("photos/notes.png", lambda p: p.write_text("not an image")),
     lambda r: ["stylize", "--input", r / "photos", "--output", r / "o"], 0, r"notes\.png.*2 written, 1 skipped", ()),
    ("nothing readable: status 1", _put("bad/x.png", _bomb),
     lambda r: ["stylize", "--input", r / "bad", "--output", r / "o"], 1, r"0 written, 1 skipped", ()),
    # class 5: options that cannot apply
    ("--input ''", None, lambda r: ["stylize", "--input", "", "--output", r / "o.png"], 2,
     r"--input to name an image file or a folder, got an empty string", ()),
    ("--output ''", None, lambda r: ["stylize", "--input", r / "p.png", "--output", ""], 2,
     r"--output to name a file or a folder, got an empty string", ()),
    ("export --output ''", None, lambda r: ["export", "--ckpt", r / "model.ckpt", "--format", "onnx", "--output",
                                            ""], 2, r"--output to name the file to write, got an empty string", ()),
    ("landscape --out ''", None, lambda r: ["landscape", "--ckpt", r / "model.ckpt", "--config", QUICKSTART,
                                            "--out", ""], 2, r"--out to name a folder, got an empty string", ()),
]


@pytest.mark.parametrize(("prepare", "argv", "status", "match", "changed"), [c[1:] for c in FILE_CASES],
                         ids=[c[0] for c in FILE_CASES])
def test_a_users_files_are_kept(tmp_path, style_checkpoint, sr_checkpoint, prepare, argv, status, match, changed,
                                capsys, caplog):
    import re

    root = tmp_path / "home"
    _owned(root, style_checkpoint[0], sr_checkpoint[0])
    if prepare is not None:
        prepare(root)
    argv = [str(a) for a in argv(root)]
    if argv[0] in ("stylize", "super-resolve") and "--ckpt" not in argv:
        argv[1:1] = ["--ckpt", str(root / ("sr.ckpt" if argv[0] == "super-resolve" else "model.ckpt"))]
    before = _sums(root)
    code = main(argv)
    captured = capsys.readouterr()
    text = " ".join((captured.err + caplog.text + captured.out).split())
    assert code == status, text[-2000:]
    assert re.search(match, text), text[-2000:]
    if status == 2:
        errors = [line for line in captured.err.splitlines() if line.startswith(f"lightning-papers {argv[0]}: error:")]
        assert len(errors) == 1 and "Traceback" not in captured.err, captured.err
    after = _sums(root)
    for path, digest in before.items():  # every file that was there is there, unchanged unless the row says so
        assert path in after, f"{path} was removed"
        if path.relative_to(root).as_posix() not in changed:
            assert after[path] == digest, f"{path} was changed"
        else:
            assert after[path] != digest, f"{path} should have been replaced"
    assert not [p for p in root.rglob("*.tmp*")], "a temporary file was left behind"


def test_16_bit_inputs_give_16_bit_outputs_with_the_8_bit_result(tmp_path, style_checkpoint):
    """The issue's 16-bit PNG: stylised, it matches the stylised 8-bit version of the same picture (not white)."""
    ramp16 = (np.arange(20 * 28, dtype=np.uint32).reshape(20, 28) * 117).clip(0, 65535).astype(np.uint16)
    Image.fromarray(ramp16).save(tmp_path / "g16.png")
    Image.fromarray(np.round(ramp16 / 257).astype(np.uint8)).save(tmp_path / "g8.png")
    Image.fromarray(np.full_like(ramp16, 255, dtype=np.uint8)).save(tmp_path / "white.png")  # how it was read
    ckpt = str(style_checkpoint[0])
    for name in ("g16", "g8", "white"):
        assert main(["stylize", "--ckpt", ckpt, "--input", str(tmp_path / f"{name}.png"),
                     "--output", str(tmp_path / f"{name}_out.png")]) == 0
    assert _png_bits(tmp_path / "g16_out.png") == 16 and _png_bits(tmp_path / "g8_out.png") == 8
    out16, out8, white = (load_image(tmp_path / f"{n}_out.png") for n in ("g16", "g8", "white"))
    # the same picture, up to the 8-bit input's rounding (which the untrained network amplifies here and there),
    # and far from what the old reading (almost all white) gave
    near, far = float((out16 - out8).abs().mean()), float((out16 - white).abs().mean())
    assert near < far / 4, (near, far)
    assert np.corrcoef(out16.flatten().numpy(), out8.flatten().numpy())[0, 1] > 0.8


# the command line: (id, argv, stderr regex); one line, status 2, before any work (no file written)
USER_ERRORS_23 = [
    # class 4: every user mistake is one line
    ("validate missing ckpt", ["validate", "--config", QUICKSTART, "--ckpt_path", "missing.ckpt"],
     r"--ckpt_path to be a checkpoint file, got 'missing\.ckpt' \(no such file\)"),
    ("validate ckpt folder", ["validate", "--config", QUICKSTART, "--ckpt_path", "."],
     r"--ckpt_path to be a checkpoint file, got '\.' \(a folder\)"),
    ("demo tpu", ["demo", "--device", "tpu"], r"--device to be one of auto, cpu.*got 'tpu' \(not a device the demo"),
    ("demo xpu", ["demo", "--device", "xpu"], r"got 'xpu'"),
    ("demo precision 64", ["demo", "--precision", "64"], r"--precision to be one of 32-true, 32, bf16-mixed.*'64'"),
    ("demo precision 16-true", ["demo", "--precision", "16-true"], r"got '16-true'"),
    ("demo out is a file", ["demo", "--out", "afile"], r"--out in a folder this user can write, got 'afile'"),
    ("demo epochs 0", ["demo", "--epochs", "0"], r"`epochs` to be a positive integer, got 0"),
    ("trace 1 channel", ["conv", "trace", "--model", "resnet20", "--input-size", "1", "32", "32"],
     r"--input-size to start with the 3 channels resnet20 takes, got 1 32 32"),
    ("trace zero size", ["conv", "trace", "--model", "resnet20", "--input-size", "3", "0", "32"],
     r"three positive numbers.*got 3 0 32"),
    ("animate txt", ["conv", "animate", "-o", "x.txt"], r"-o/--output to name a \.gif file, got 'x\.txt'"),
    ("animate empty output", ["conv", "animate", "-o", ""], r"\.gif file, got ''"),
    ("export opset 99999", ["export", "--ckpt", "m.ckpt", "--format", "onnx", "--output", "m.onnx", "--opset",
                            "99999"], r"`--opset` to be an integer in \[11, \d+\], got 99999"),
    ("export opset 9", ["export", "--ckpt", "m.ckpt", "--format", "onnx", "--output", "m.onnx", "--opset", "9"],
     r"in \[11, \d+\], got 9"),
    ("fit bad value", ["fit", "--config", QUICKSTART, "--model.init_args.lr=abc", "--trainer.fast_dev_run=true"],
     r"valid configuration, got model\.lr: class lightning_papers\.modules\.ImageClassifier: Expected a .*float"),
    ("fit unknown class", ["fit", "--config", "unknown.yaml"], r"got model: class lightning_papers\.modules\.Nope: "
                                                              r"module .* has no attribute 'Nope'"),
    ("fit bad int", ["fit", "--config", QUICKSTART, "--trainer.max_epochs=x"], r"got trainer\.max_epochs: Expected"),
    ("fit unknown option", ["fit", "--config", QUICKSTART, "--nope=1"], r"unrecognized arguments: --nope=1"),
    ("fit config not text", ["fit", "--config", "photo.png"], r"--config to be a YAML file, got 'photo\.png', which is "
                                                              r"not text"),
    ("validate foreign hparams", ["validate", "--config", QUICKSTART, "--ckpt_path", "foreign.ckpt",
                                  "--trainer.logger=false"],
     r"--ckpt_path to be a checkpoint of the config's model, got hyperparameters .*'style_image' is not accepted"),
    # class 3: sizes refused up front, with the estimate
    ("animate i 500", ["conv", "animate", "--i", "500", "-o", "big.gif"],
     r"fits in memory, got conv animate --i 500 \(248004 frames\), an estimated .* where this machine has"),
    ("animate long", ["conv", "animate", "--i", "60", "--k", "1", "-o", "long.gif"],
     r"under 1 min, got conv animate --i 60 \(3600 frames\), an estimated .*pass --force"),
    ("landscape huge grid", ["landscape", "--ckpt", "m.ckpt", "--config", QUICKSTART, "--grid", "-1:1:1000000000000"],
     r"fits in memory, got --grid -1:1:1000000000000 \(1e\+24 points x 4 batches, at least\)"),
    ("landscape long grid", ["landscape", "--ckpt", "m.ckpt", "--config", QUICKSTART, "--grid", "-1:1:2000"],
     r"under 1 min, got --grid -1:1:2000 \(4000000 points.*pass --force"),
    # class 5: options that cannot apply
    ("landscape ygrid in 1d", ["landscape", "--ckpt", "m.ckpt", "--config", QUICKSTART, "--mode", "1d", "--ygrid",
                               "-1:1:3"], r"--ygrid only with --view 2d, got --ygrid -1:1:3 with --view 1d"),
    ("animate all with -o", ["conv", "animate", "--all", "figs", "-o", "x.gif"],
     r"--all OUTDIR alone .*got -o/--output as well"),
    ("animate all with kind and i", ["conv", "animate", "--all", "figs", "--kind", "pool", "--i", "7"],
     r"got --kind, --i as well"),
    ("animate all empty", ["conv", "animate", "--all", ""], r"--all to name a folder, got an empty string"),
    # the rerun of the new-user audit (issue 23): what it still found
    ("demo out empty", ["demo", "--out", ""], r"--out to name a folder, got an empty string"),
    ("explain a without transposed", ["conv", "explain", "--i", "8", "--k", "3", "--a", "1"],
     r"--output-padding/--a only with --transposed, got --a 1"),
    ("explain ceil-mode without pool", ["conv", "explain", "--i", "8", "--k", "3", "--ceil-mode"],
     r"--ceil-mode only with --pool, got it for a convolution"),
    ("solve huge bounds", ["conv", "solve", "--i", "8", "--o", "4", "--max-stride", "1000000000", "--max-kernel",
                           "1000000000"], r"at most 500,000 .*combinations, got [\d,]+: lower max_kernel"),
    ("animate all into a file", ["conv", "animate", "--all", "afile"],
     r"--all in a folder this user can write, got 'afile'"),
    ("fit accelerator not here", ["fit", "--config", QUICKSTART, "--trainer.accelerator", "tpu"],
     r"--trainer settings this machine can run, got: .*torch_xla"),
]


@pytest.mark.parametrize(("argv", "match"), [c[1:] for c in USER_ERRORS_23], ids=[c[0] for c in USER_ERRORS_23])
def test_every_mistake_is_one_line_before_any_work(argv, match, tmp_path, capsys, monkeypatch):
    import re

    from lightning_papers import budget

    monkeypatch.setattr(budget, "available_memory", lambda: 64 * 1024**3)  # the same verdicts on every machine
    (tmp_path / "afile").write_text("a user's file")
    (tmp_path / "m.ckpt").write_text("not read: the mistake is found first")
    _photo(tmp_path / "photo.png")
    torch.save({"hyper_parameters": {"style_image": "coffee"}, "state_dict": {},
                "pytorch-lightning_version": L.__version__}, tmp_path / "foreign.ckpt")
    (tmp_path / "unknown.yaml").write_text("model:\n  class_path: lightning_papers.modules.Nope\n"
                                           "data:\n  class_path: lightning_papers.data.DigitsDataModule\n")
    before = _sums(tmp_path)
    argv = [str(a) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"lightning-papers {argv[0]}: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert re.search(match, lines[0]), lines[0]
    assert _sums(tmp_path) == before  # nothing written, nothing changed


def test_a_missing_extra_is_one_line_naming_the_install(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # as if scikit-learn were not installed
    assert main(["demo", "--fast", "--device", "cpu", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lightning-papers demo: error: "), err
    assert err[0].endswith("needs 'sklearn' (the data extra): install it with `pip install \"lightning-papers[data]\"`")


def test_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    """`lightning-papers conv solve ... | head -3`: the reader leaves; no BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", stream)
    try:
        assert main(["conv", "solve", "--i", "32", "--o", "16"]) == 141
    finally:
        monkeypatch.undo()
        stream.close()
    assert "BrokenPipe" not in capsys.readouterr().err


def test_the_budget_refuses_by_estimate(monkeypatch):
    from lightning_papers import budget

    monkeypatch.setattr(budget, "available_memory", lambda: 1024**3)
    with pytest.raises(ValueError, match=r"an estimated 2 GB where this machine has 1 GB available"):
        budget.check_budget("x", 1.0, 2 * 1024**3, force=True)  # memory: even when forced
    with pytest.raises(ValueError, match=r"under 1 min, got x, an estimated 2 min: pass --force"):
        budget.check_budget("x", 120.0, 10)
    budget.check_budget("x", 120.0, 10, force=True)  # time: allowed when the user insists
    assert budget.describe_seconds(3 * 86400) == "3 days" and budget.describe_bytes(1536) == "1.5 KB"


def test_animate_with_force_shows_a_progress_bar(tmp_path, monkeypatch, capsys):
    from lightning_papers import budget
    from lightning_papers.conv_arithmetic import animation

    monkeypatch.setattr(budget, "MAX_SECONDS", 60.0)
    monkeypatch.setattr(animation, "_SECONDS_PER_CELL", 1.0)  # every animation now "takes" minutes
    assert main(["conv", "animate", "--i", "4", "-o", str(tmp_path / "a.gif")]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert main(["conv", "animate", "--i", "4", "-o", str(tmp_path / "a.gif"), "--force"]) == 0
    assert "frames: 100%" in capsys.readouterr().err
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 4


def _shards(tmp_path):
    net, data = _net(), _data()
    grid = np.linspace(-1, 1, 4)
    a = ls.surface(net, _direction(), grid, data, shard=(0, 2), path=tmp_path / "partA")
    b = ls.surface(net, _direction(), grid, data, shard=(1, 2), path=tmp_path / "partB")
    return a, b


def test_merge_surfaces_takes_paths_as_the_readme_shows(tmp_path):
    a, b = _shards(tmp_path)
    merged = ls.merge_surfaces([tmp_path / "partA", str(tmp_path / "partB.npz")])
    reference = ls.merge_surfaces([a, b])
    assert merged.complete and np.array_equal(merged["loss"], reference["loss"])
    full = ls.surface(_net(), _direction(), np.linspace(-1, 1, 4), _data())
    np.testing.assert_allclose(merged["loss"], full["loss"], rtol=1e-6)
    with pytest.warns(UserWarning, match=r"lacks the points of rank\(s\) \[1\] of 2 \(2 of 4 points not computed"):
        ls.merge_surfaces([tmp_path / "partA"])


def _edited(tmp_path, edit):
    _shards(tmp_path)
    arrays = dict(np.load(tmp_path / "partA.npz"))
    edit(arrays)
    np.savez(tmp_path / "edited.npz", **arrays)
    return tmp_path / "edited"


def _meta_net():
    with torch.device("meta"):
        return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


# the library's edges (class 6) and the image reader (class 1): (id, call(tmp_path), error, message)
LIBRARY_23 = [
    ("merge one shard twice", lambda t: ls.merge_surfaces([_shards(t)[0], ls.load_surface(t / "partA")]),
     ValueError, r"each shard once, got shard \(rank, world_size\) = \(0, 2\) in parts 0 and 1"),
    ("merge one file twice", lambda t: ls.merge_surfaces([(_shards(t), t / "partA")[1], t / "partA.npz"]),
     ValueError, r"each saved part once, got .*partA\.npz' twice"),
    ("merge a missing file", lambda t: ls.merge_surfaces([t / "nope"]), ValueError, r"saved surface at .*nope\.npz"),
    ("edited npz without computed", lambda t: ls.load_surface(_edited(t, lambda a: a.pop("computed"))), ValueError,
     r"surface written by save_surface .*edited\.npz.*damaged \(KeyError: .*computed"),
    ("edited npz wrong shape", lambda t: ls.load_surface(_edited(t, lambda a: a.update(
        value_loss=a["value_loss"][:2]))), ValueError,
     r"damaged .*`values\['loss'\]` to have the grid's shape \(4,\), got \(2,\)"),
    ("edited npz without metrics", lambda t: ls.load_surface(_edited(t, lambda a: a.update(
        metric_names=np.array([], dtype=str)))), ValueError, r"damaged .*no axes, no metrics or no metadata"),
    ("edited npz renamed metric", lambda t: ls.load_surface(_edited(t, lambda a: a.update(
        metric_names=np.array(["lossy"]), value_lossy=a["value_loss"])))["loss"], KeyError,
     r"metric of this surface \('lossy'\), got 'loss'"),
    ("surface non-scalar loss", lambda t: ls.surface(_net(), _direction(), np.zeros(1), _data(), metrics={
        "loss": lambda out, y: F.cross_entropy(out, y, reduction="none")}), ValueError,
     r"metric `loss` to return one number per batch .*shape \(8,\): reduce it"),
    ("surface non-scalar evaluate", lambda t: ls.surface(_net(), _direction(), np.zeros(1), [_data()],
                                                         evaluate=lambda b: {"loss": torch.ones(2)}), ValueError,
     r"metric `loss` to return one number per batch .*shape \(2,\)"),
    ("hessian_trace max_samples 1", lambda t: ls.hessian_trace(_net(), _data(), max_samples=1), ValueError,
     r"`max_samples` >= 2 .*got 1"),
    ("hessian_trace min > max", lambda t: ls.hessian_trace(_net(), _data(), max_samples=5, min_samples=6),
     ValueError, r"`min_samples` to be an integer in \[2, max_samples=5\], got 6"),
    ("meta directions", lambda t: ls.random_directions(_meta_net(), 1), ValueError,
     r"weights on a real device, got '1\.weight' on the meta device .*to_empty"),
    ("meta eigenvalue", lambda t: ls.hessian_top_eigenvalue(_meta_net(), _data()), ValueError, r"meta device"),
    ("meta trace", lambda t: ls.hessian_trace(_meta_net(), _data()), ValueError, r"meta device"),
    ("meta surface", lambda t: ls.surface(_meta_net(), _direction(), np.zeros(1), _data()), ValueError,
     r"meta device"),
    ("image float 0..255", lambda t: load_image(np.array([[0.0, 200.0]], np.float32)), ValueError,
     r"\[0, 1\], got 0\.\.200 .*divide by 255"),
    ("image int64", lambda t: load_image(np.array([[0, 255]])), ValueError, r"int64 values 0\.\.255.*cast to uint8"),
    ("image nan", lambda t: load_image(torch.tensor([[float("nan")]])), ValueError, r"NaN or infinite"),
    ("image bomb", lambda t: (_bomb(t / "b.png"), load_image(t / "b.png")), ValueError,
     r"Could not read an image from .*b\.png.*decompression bomb"),
    ("write_image bits", lambda t: write_image(torch.zeros(3, 2, 2), t / "o.png", bits=12), ValueError,
     r"`bits` to be one of \(8, 16\), got 12"),
    ("write_image extension", lambda t: write_image(torch.zeros(3, 2, 2), t / "o.txt"), ValueError,
     r"image extension PIL can write .*o\.txt"),
    ("animate to txt", lambda t: animate(t / "a.txt", 4, 3), ValueError, r"end in \.gif, got .*a\.txt"),
    ("write_image nan", lambda t: write_image(torch.full((3, 2, 2), float("nan")), t / "o.png"), ValueError,
     r"finite image values, got NaN or infinite values for .*o\.png"),
    ("directions of a model name", lambda t: ls.random_directions("resnet20", 2), ValueError,
     r"`model` to be a torch\.nn\.Module, got str 'resnet20'"),
    ("write_image numpy", lambda t: write_image(np.zeros((3, 2, 2)), t / "o.png"), ValueError,
     r"image tensor \(3, H, W\), got ndarray"),
]


@pytest.mark.parametrize(("call", "error", "match"), [c[1:] for c in LIBRARY_23], ids=[c[0] for c in LIBRARY_23])
def test_library_edges_answer_clearly(call, error, match, tmp_path):
    with pytest.raises(error, match=match):
        call(tmp_path)


def test_a_dilated_pooling_animation_says_so():
    # `conv animate --kind pool --d 3` drew the dilated window and o = 1, but the caption left d out
    from lightning_papers.conv_arithmetic.animation import _layout
    from lightning_papers.conv_arithmetic.formulas import pool_output_size

    assert pool_output_size(7, 2, 2, 0, 3) == 2  # (7 - 3*(2-1) - 1) // 2 + 1, independently of the caption
    assert _layout(7, 2, 2, 0, 3, False, True)[4] == "pooling: i=7, k=2, s=2, d=3 -> o=2"
    assert _layout(7, 2, 2, 0, 1, False, True)[4] == "pooling: i=7, k=2, s=2 -> o=3"


def test_hessian_trace_takes_a_small_max_samples():
    result = ls.hessian_trace(_net(), _data(), max_samples=5)  # min_samples follows max_samples, never asked for
    assert len(result.samples) <= 5 and math.isfinite(result.trace)


def test_the_parser_errors_condense_to_one_line():
    from lightning_papers.cli import condense_parser_error

    message = ('Parser key "model":\n  Does not validate against any of the Union subtypes\n  Subtypes: [...]\n'
               "  Errors:\n    - Problem with given class_path 'pkg.Model':\n        Parser key \"lr\":\n"
               "          Expected a <class 'float'>. Got value: abc\n    - Expected a <class 'NoneType'>\n"
               "  Given value type: <class 'str'>\n  Given value: abc")
    assert condense_parser_error(message) == ("Expected a valid configuration, got model.lr: class pkg.Model: "
                                              "Expected a <class 'float'>. Got value: abc")


# class 7: a normal run's stderr holds only what the user must read
def _stderr_of(argv, cwd):
    proc = subprocess.run([sys.executable, "-m", "lightning_papers.cli", *map(str, argv)], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": ""},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def test_a_normal_run_leaves_stderr_empty(tmp_path, style_checkpoint):
    # one process (each costs an interpreter and the imports): the image path, Lightning and torch imported
    _photo(tmp_path / "p.png")
    assert _stderr_of(["stylize", "--ckpt", style_checkpoint[0], "--input", "p.png", "--output", "s.png"],
                      tmp_path) == ""


def test_lightning_cli_raises_no_jsonargparse_deprecation(monkeypatch):
    import warnings

    from lightning_papers.cli._tool import _jsonargparse_deprecation, lightning_cli

    monkeypatch.setattr(sys, "argv", ["lightning-papers"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lightning_cli(["--config", str(QUICKSTART), "--trainer.logger=false"], run=False, save_config_callback=None)
    assert not [w for w in caught if issubclass(w.category, _jsonargparse_deprecation())]


def test_issue_23_grew_the_tables_by_at_least_60_cases():
    assert len(FILE_CASES) + len(USER_ERRORS_23) + len(LIBRARY_23) >= 60
