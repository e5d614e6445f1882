"""``recipes/make_figures.py``: every README picture in ``--fast`` mode is a small valid image, and what the
pictures plot is checked where it is cheap (the schedules against torch's own schedulers, the conv GIFs
against the committed ones)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_papers.losses import vgg16_checkpoint_path

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def make_figures():
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("recipes.make_figures")


@pytest.fixture(scope="module")
def fast_run(make_figures, tmp_path_factory):
    """Every figure in ``--fast`` mode, once per module: (folder, name -> Picture)."""
    out = tmp_path_factory.mktemp("figures")
    return out, make_figures.make(None, out, fast=True)


def test_registry_names_every_readme_picture(make_figures):
    assert list(make_figures.FIGURES) == ["lr_range_test", "schedules", "superconvergence", "landscapes",
                                          "curvature", "style_transfer", "super_resolution", "conv_animations"]


def test_every_figure_is_a_small_valid_image(fast_run):
    out, made = fast_run
    names = {p.name for picture in made.values() for p in picture.paths}
    assert names == {"lr_range_test.png", "schedules.png", "superconvergence.png", "landscape_resnet20.png",
                     "landscape_resnet20_noshort.png", "curvature_1cycle.png", "curvature_spectrum.png",
                     "style_transfer.png", "super_resolution.png",
                     "conv_no_padding_no_strides.gif", "conv_padding_strides_transposed.gif", "conv_dilation.gif"}
    for picture in made.values():
        for path in picture.paths:
            assert path.parent == out and path.is_file()
            assert 1_000 < path.stat().st_size < 300_000, (path, path.stat().st_size)
            with Image.open(path) as image:
                image.verify()
            with Image.open(path) as image:
                width, height = image.size
                assert 100 <= width <= 1600 and 100 <= height <= 1600, (path, image.size)
                assert image.format == path.suffix[1:].upper()
                if image.format == "GIF":
                    assert image.n_frames > 1
                else:  # a picture, not a blank canvas
                    assert len(image.convert("RGB").getcolors(1 << 16) or range(1 << 16)) > 8


def _torch_lrs(scheduler: type, steps: int, momentum: bool = False, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """The lr (and momentum) torch's own scheduler gives at each of ``steps`` optimizer steps."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    sched = scheduler(optimizer, **kwargs)
    lrs, momenta = [], []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        momenta.append(optimizer.param_groups[0]["momentum"])
        optimizer.step()
        sched.step()
    return np.array(lrs), np.array(momenta)


def test_schedules_figure_plots_what_torch_computes(fast_run):
    data = fast_run[1]["schedules"].data
    clr, oc = data["clr"], data["one_cycle"]
    for mode in ("triangular", "triangular2", "exp_range"):
        expected, _ = _torch_lrs(torch.optim.lr_scheduler.CyclicLR, clr["steps"], base_lr=clr["base_lr"],
                                 max_lr=clr["max_lr"], step_size_up=clr["step_size"], mode=mode,
                                 gamma=clr["gamma"] if mode == "exp_range" else 1.0, cycle_momentum=False)
        assert len(data[mode]) == clr["steps"]
        np.testing.assert_allclose(data[mode], expected, rtol=1e-12, atol=0, err_msg=mode)
    lrs, momenta = _torch_lrs(torch.optim.lr_scheduler.OneCycleLR, oc["steps"], max_lr=oc["max_lr"],
                              total_steps=oc["steps"], pct_start=oc["pct_start"], anneal_strategy=oc["anneal"],
                              three_phase=oc["three_phase"], div_factor=oc["div_factor"],
                              final_div_factor=oc["final_div_factor"], base_momentum=oc["base_momentum"],
                              max_momentum=oc["max_momentum"])
    np.testing.assert_allclose(data["one_cycle_lr"], lrs, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(data["one_cycle_momentum"], momenta, rtol=1e-12, atol=0)
    assert 0.9 * oc["max_lr"] <= data["one_cycle_lr"].max() <= oc["max_lr"]  # the peak is really there


def test_measured_numbers_are_sane(fast_run):
    made = fast_run[1]
    lr = made["lr_range_test"].data
    assert lr["points"] == len(lr["lrs"]) >= 2 and lr["lrs"][0] == pytest.approx(1e-4)
    if lr["suggestion"] is not None:
        assert min(lr["lrs"]) <= lr["suggestion"] <= max(lr["lrs"])
    sc = made["superconvergence"].data
    assert sc["benchmark"] == "fidelity_superconvergence" and "baseline" in sc["accuracy"]
    assert set(sc["accuracy"]) == {"baseline", *(f"1cycle {p:.3g}" for p in sc["peaks"])}
    for by_budget in sc["accuracy"].values():
        assert all(0.0 <= v["mean"] <= 1.0 for v in by_budget.values())
    sr = made["super_resolution"].data
    assert 10.0 < sr["psnr_bicubic"] < 60.0 and 10.0 < sr["psnr_ours"] < 60.0
    for row in made["landscapes"].data.values():
        assert 0.0 <= row["val_acc"] <= 1.0 and 0.0 <= row["share_nonconvex_points"] <= 1.0
    curvature = made["curvature"].data  # the recipe's CurvatureMonitor files, read back
    history = curvature["history"]
    assert history["steps"] == [2, 4] and all(v > 0 for v in history["top_eigenvalue"])
    for lr, threshold in zip(history["lr"], history["threshold"]):
        assert threshold == pytest.approx((2 + 2 * 0.9) / lr - 1e-4)  # the recipe's momentum and weight decay
    np.testing.assert_allclose(np.sum(curvature["spectrum"]["weights"], axis=1), 1.0, rtol=1e-6)


def test_style_transfer_says_when_its_weights_are_random(fast_run):
    data = fast_run[1]["style_transfer"].data
    if vgg16_checkpoint_path().is_file():
        assert data["vgg_weights"] == "imagenet" and "random" not in data["title"]
    else:
        assert data["vgg_weights"] == "random"
        assert "random VGG weights: pipeline check, not a real stylisation" in data["title"]


def test_conv_animations_are_the_committed_ones(fast_run):
    for path in fast_run[1]["conv_animations"].paths:
        assert path.read_bytes() == (REPO / "docs" / "images" / path.name).read_bytes(), path.name


def test_main_fails_naming_an_oversized_file(make_figures, tmp_path, capsys):
    assert make_figures.main(["--out", str(tmp_path), "--only", "conv_animations"]) == 0
    (tmp_path / "huge.png").write_bytes(b"\0" * 300_000)
    assert make_figures.main(["--out", str(tmp_path), "--only", "conv_animations"]) == 1
    err = capsys.readouterr().err
    assert "huge.png is 300.0 kB" in err
