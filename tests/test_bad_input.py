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
from lightning_papers.callbacks import (
    ConvArithmeticSummary,
    CyclicalLR,
    LossLandscapeProbe,
    LRRangeFinder,
    SuperConvergence,
    TensorBoardLayout,
)
from lightning_papers.cli import main
from lightning_papers.conv_arithmetic import conv_output_size, explain, solve, trace_shapes
from lightning_papers.data import DigitsDataModule, ImageFolderDataModule, load_image
from lightning_papers.devices import autocast_dtype, resolve_device
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
    ("finder mode", lambda: LRRangeFinder(mode="log"), ValueError, r"`mode` to be one of .*'log'"),
    ("finder method", lambda: LRRangeFinder(method="best"), ValueError, r"`method` to be one of .*'best'"),
    ("finder smoothing", lambda: LRRangeFinder(smoothing=1.0), ValueError, r"`smoothing` in \[0, 1\)"),
    ("finder divergence", lambda: LRRangeFinder(divergence_factor=0.5), ValueError, r"`divergence_factor > 1`"),
    ("finder at_epochs", lambda: LRRangeFinder(at_epochs=[-1]), ValueError, r"`at_epochs` .* non-negative"),
    ("finder val_batches", lambda: LRRangeFinder(val_batches=-1), ValueError, r"`val_batches` .* >= 0, got -1"),
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
    ("clr mode", lambda: CyclicalLR(1e-3, 1e-2, step_size=3, mode="cos"), ValueError, r"`mode` to be one of"),
    ("clr gamma", lambda: CyclicalLR(1e-3, 1e-2, step_size=3, gamma=0), ValueError, r"positive `gamma`, got 0"),
    ("clr bounds word", lambda: CyclicalLR(1e-3, 1e-2, step_size=3, bounds="auto"), ValueError,
     r"`bounds` to be None or 'finder'"),
    ("1cycle max_lr word", lambda: SuperConvergence("auto"), ValueError, r"`max_lr` .* or 'finder', got 'auto'"),
    ("1cycle max_lr nan", lambda: SuperConvergence(math.nan), ValueError, r"`max_lr` to be a positive number"),
    ("1cycle total_steps", lambda: SuperConvergence(1.0, total_steps=2.5), ValueError, r"`total_steps` .* got 2\.5"),
    ("1cycle pct_start", lambda: SuperConvergence(1.0, pct_start=0.7), ValueError, r"`pct_start` in \(0, 0\.5\]"),
    ("1cycle anneal", lambda: SuperConvergence(1.0, anneal="exp"), ValueError, r"`anneal` to be one of"),
    ("1cycle momenta", lambda: SuperConvergence(1.0, base_momentum=0.99), ValueError,
     r"0 <= base_momentum <= max_momentum <= 1"),
    ("1cycle interpolation range", lambda: SuperConvergence(1.0, interpolation_range=(0.5, 1.0)), ValueError,
     r"`interpolation_range` to be \(low <= 0, high >= 1\)"),
    ("probe mode", lambda: LossLandscapeProbe("3d"), ValueError, r"`mode` to be one of .*'3d'"),
    ("probe num_batches", lambda: LossLandscapeProbe(num_batches=0), ValueError, r"`num_batches` .* got 0"),
    ("probe dataloader", lambda: LossLandscapeProbe(dataloader="test"), ValueError, r"`dataloader` .* 'test'"),
    ("probe fold without loss_fn", lambda: LossLandscapeProbe(fold_bn=True), ValueError,
     r"`loss_fn` with \['fold_bn'\]"),
    ("probe grid dims", lambda: LossLandscapeProbe("1d", grid=(np.zeros(2), np.zeros(2))), ValueError,
     r"`grid` to be 1 non-empty"),
    ("conv summary input", lambda: ConvArithmeticSummary(input_size=(3, 0, 32)), ValueError,
     r"`input_size` .* positive integers"),
    ("layout form", lambda: TensorBoardLayout({"c": {"chart": ["Pie", []]}}), ValueError, r"`layout` as"),
    # schedules and suggestions
    ("cyclical mode", lambda: cyclical(0, 0.1, 1.0, 4, mode="saw"), ValueError, r"`mode` to be one of .*'saw'"),
    ("Cyclical step size", lambda: Cyclical(0.1, 1.0, 0), ValueError, r"`step_size_up` to be positive"),
    ("Cyclical groups", lambda: Cyclical((0.1, 0.2), (1.0, 1.0, 1.0), 3), ValueError, r"same length, got 2 and 3"),
    ("one_cycle step", lambda: one_cycle(11, 10, 1.0), ValueError, r"`step` in \[0, 10\], got 11"),
    ("OneCycle total", lambda: OneCycle(0, 1.0), ValueError, r"positive `total_steps`, got 0"),
    ("OneCycle max_lr", lambda: OneCycle(10, -1.0), ValueError, r"`max_lr` to be positive"),
    ("Ramp bounds", lambda: Ramp(0.0, 1.0, 3), ValueError, r"positive bounds"),
    ("suggest method", lambda: suggest("best", [1.0], [1.0]), ValueError, r"`method` to be one of"),
    ("smooth beta", lambda: smooth_ema([1.0], beta=1.5), ValueError, r"`beta` in \[0, 1\), got 1\.5"),
    ("SmoothedLoss factor", lambda: SmoothedLoss(divergence_factor=1.0), ValueError, r"`divergence_factor > 1`"),
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
     r"`shard` to be \(rank, world_size\)"),
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
    ("classifier lr", lambda: ImageClassifier("resnet20", lr=0.0), ValueError, r"`lr` > 0, got 0\.0"),
    ("classifier milestones", lambda: ImageClassifier("resnet20", scheduler="multistep"), ValueError,
     r"non-empty `milestones`"),
    ("digits val_fraction", lambda: DigitsDataModule(val_fraction=1.5), ValueError, r"`val_fraction` in \(0, 1\)"),
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
    (["landscape", "--ckpt", "a", "--config", "b", "--mode", "3d"], r"argument --mode: invalid choice: '3d'"),
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
    from lightning_papers.cli import _check_ckpt_class

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

    probe = LossLandscapeProbe("1d", grid=np.linspace(-1, 1, 3), dataloader="train", num_batches=1,
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


def test_lightning_cli_no_longer_warns_about_args_and_the_command_line(tmp_path, monkeypatch):
    import warnings

    from lightning_papers.cli import lightning_cli

    monkeypatch.setattr(sys, "argv", ["lightning-papers", "fit", "--config", str(QUICKSTART)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lightning_cli(["--config", str(QUICKSTART), "--trainer.logger=false"], run=False,
                      save_config_callback=None)
    assert not [w for w in caught if "not recommended to provide both" in str(w.message)]
