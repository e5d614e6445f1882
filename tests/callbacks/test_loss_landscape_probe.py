import copy

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util
from torch import nn

from lightning_papers.callbacks import LossLandscapeProbe
from lightning_papers.data import DigitsDataModule
from lightning_papers.landscape import load_surface
from lightning_papers.modules import ImageClassifier


def _tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )


class _Snapshot(Callback):
    """Records model, optimizer and RNG state at ``on_train_end`` (placed before and after the probe)."""

    def __init__(self):
        self.state = None

    def on_train_end(self, trainer, pl_module):
        self.state = {
            "model": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            "optim": copy.deepcopy(trainer.optimizers[0].state_dict()),
            "rng": torch.get_rng_state(),
            "training": [m.training for m in pl_module.modules()],
        }


def _fit(tmp_path, probe, callbacks_before=(), callbacks_after=(), max_epochs=1):
    L.seed_everything(0)
    dm = DigitsDataModule(batch_size=32)
    module = ImageClassifier(_tiny_net(), lr=0.05)
    logger = TensorBoardLogger(tmp_path, name="tb", version=0)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=max_epochs, limit_train_batches=3, limit_val_batches=1,
        logger=logger, callbacks=[*callbacks_before, probe, *callbacks_after], enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
    )
    trainer.fit(module, datamodule=dm)
    return trainer, module


def _tags(log_dir):
    acc = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_2d_probe_logs_figures_mesh_scalars_and_leaves_no_trace(tmp_path):
    before, after = _Snapshot(), _Snapshot()
    probe = LossLandscapeProbe(view="2d", grid=(np.linspace(-1, 1, 3), np.linspace(-0.5, 0.5, 3)), num_batches=2,
                               hessian_iters=3)
    trainer, module = _fit(tmp_path, probe, [before], [after])
    for k, v in before.state["model"].items():
        assert torch.equal(v, after.state["model"][k]), k
    assert torch.equal(before.state["rng"], after.state["rng"])
    assert before.state["training"] == after.state["training"]
    for k, s in before.state["optim"]["state"].items():
        assert torch.equal(s["momentum_buffer"], after.state["optim"]["state"][k]["momentum_buffer"])
    acc = _tags(trainer.log_dir)
    images = acc.Tags()["images"]
    assert {"landscape/contour", "landscape/heatmap", "landscape/surface3d"} <= set(images)
    assert acc.Images("landscape/contour")[0].step == 0
    scalars = acc.Tags()["scalars"]
    assert {"landscape/sharpness/hessian_top_eig", "landscape/sharpness/loss_rise"} <= set(scalars)
    assert any(t.startswith("landscape/mesh") for t in acc.Tags()["tensors"])
    out = tmp_path / "tb" / "version_0" / "landscape"
    names = {p.name for p in out.iterdir()}
    assert {"2d_epoch0.npz", "2d_epoch0.json", "2d_epoch0.vtp", "2d_epoch0_contour.png"} <= names
    saved = load_surface(out / "2d_epoch0")
    assert saved.complete and saved.shape == (3, 3) and np.isfinite(saved["loss"]).all()
    # the centre of the surface is the model's own loss on the (normalised) validation batches
    assert probe.results[0].centre_value() == saved.centre_value()
    assert saved.metadata["data"]["samples"] == 64


def test_2d_probe_mesh_is_scaled_and_says_how(tmp_path):
    from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator as PluginAccumulator

    probe = LossLandscapeProbe(view="2d", grid=(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)), num_batches=1,
                               sharpness=False)
    trainer, _ = _fit(tmp_path, probe)
    acc = PluginAccumulator(trainer.log_dir)
    acc.Reload()
    vertices = tensor_util.make_ndarray(acc.Tensors("landscape/mesh_VERTEX")[0].tensor_proto)[0]
    # heights in [0, 1] (half the grid's extent), not raw losses: the lowest point at 0, the highest at most 1
    assert vertices[:, 1].min() == 0.0 and vertices[:, 1].max() <= 1.0
    result = probe.results[0]
    lowest = np.unravel_index(np.nanargmin(result["loss"]), result.shape)  # (x index, y index)
    assert vertices[np.argmin(vertices[:, 1]), 0] == pytest.approx(result.axes[0][lowest[0]])
    colors = tensor_util.make_ndarray(acc.Tensors("landscape/mesh_COLOR")[0].tensor_proto)[0]
    assert colors.shape == (25, 3) and len(np.unique(colors, axis=0)) > 3  # coloured by height
    description = acc.SummaryMetadata("landscape/mesh_VERTEX").summary_description
    assert "loss clipped to [" in description and "half the grid's extent" in description


def test_2d_every_epoch_draws_the_landscape_over_training(tmp_path):
    probe = LossLandscapeProbe(view="2d", at=None, every_n_epochs=1, grid=(np.linspace(-1, 1, 3),) * 2,
                               num_batches=1, sharpness=False)
    trainer, _ = _fit(tmp_path, probe, max_epochs=3)
    acc = _tags(trainer.log_dir)
    frames = acc.Images("landscape/over_training")
    assert [f.step for f in frames] == [0, 1, 2]  # the epoch is the step
    assert len({(f.width, f.height) for f in frames}) == 1
    gif = Image.open(tmp_path / "tb" / "version_0" / "landscape" / "2d_over_training.gif")
    assert gif.n_frames == 3 and gif.size == (frames[0].width, frames[0].height)
    # the surfaces travel in the checkpoint state: a resumed run draws every epoch
    restored = LossLandscapeProbe(view="2d", at=None, every_n_epochs=1, grid=(np.linspace(-1, 1, 3),) * 2)
    restored.load_state_dict(probe.state_dict())
    assert sorted(restored.results) == [0, 1, 2]
    np.testing.assert_array_equal(restored.results[2]["loss"], probe.results[2]["loss"])


def test_interpolate_every_epoch_logs_curve(tmp_path):
    probe = LossLandscapeProbe(view="interpolate", at=None, every_n_epochs=1, grid=np.linspace(0, 1, 3),
                               num_batches=1, sharpness=False)
    trainer, _ = _fit(tmp_path, probe, max_epochs=2)
    acc = _tags(trainer.log_dir)
    steps = [e.step for e in acc.Images("landscape/interpolation")]
    assert steps == [0, 1]
    assert sorted(probe.results) == [0, 1]
    assert probe.state_dict()["probed_epochs"] == [0, 1] and probe.initial_state is not None
    # alpha = 0 is the start of training (the package's one convention): higher loss than the trained alpha = 1
    assert probe.results[1]["loss"][0] > probe.results[1]["loss"][2]
    assert probe.results[1].metadata["interpolation"]["alpha=0"] == "start"


def test_fold_bn_and_channels_last_probe_gives_the_plain_probes_curve(tmp_path):
    curves = []
    for fast in (False, True):
        probe = LossLandscapeProbe(view="1d", grid=np.linspace(-1, 1, 3), num_batches=1, sharpness=False,
                                   fold_bn=fast, channels_last=fast, loss_fn=F.cross_entropy)
        _fit(tmp_path / str(fast), probe)
        curves.append(probe.results[0])
    np.testing.assert_allclose(curves[1]["loss"], curves[0]["loss"], rtol=1e-5)
    assert curves[1].metadata["fold_bn"] == 2 and curves[0].metadata["fold_bn"] == 0
    assert curves[1].metadata["channels_last"] and np.ptp(curves[1]["loss"]) > 0.01


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(view="3d"), "Expected `view`"),
        (dict(at="epoch_end"), "Expected `at`"),
        (dict(every_n_epochs=0), "Expected `every_n_epochs`"),
        (dict(at=None), "Expected `at='fit_end'` or an `every_n_epochs`"),
        (dict(num_batches=0), "Expected `num_batches`"),
        (dict(split="test"), "Expected `split`"),
        (dict(normalization="unit"), "Expected `normalization`"),
        (dict(kind="grads"), "Expected `kind`"),
        (dict(hessian_iters=0), "Expected `hessian_iters`"),
        (dict(view="1d", grid=(np.zeros(2), np.zeros(2))), "Expected `grid` to be 1"),
        (dict(compile="max-autotune"), r"Expected `compile` to be a bool or a dict of torch.compile arguments, "
                                       r"got 'max-autotune'"),
        (dict(compile=True, backend="vmap"), r"Expected backend='inplace' with `compile`, got backend 'vmap'"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossLandscapeProbe(**kwargs)


_DDP_SCRIPT = '''
import json
import sys

import lightning as L
import numpy as np
import torch
from torch import nn

from lightning_papers.callbacks import LossLandscapeProbe
from lightning_papers.callbacks.evaluation import evaluation_batches
from lightning_papers.data import DigitsDataModule
from lightning_papers.landscape import random_directions, surface
from lightning_papers.modules import ImageClassifier

if __name__ == "__main__":
    L.seed_everything(0)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10),
    )
    axes = (np.linspace(-1, 1, 3), np.linspace(-1, 1, 2))
    probe = LossLandscapeProbe(view="2d", grid=axes, num_batches=1, sharpness=False, save_results=True)
    fine = (np.linspace(-1, 1, 9), np.linspace(-1, 1, 9))  # adaptive: the ranks share every round's points
    adaptive = LossLandscapeProbe(view="2d", grid=fine, adaptive=40, num_batches=1, sharpness=False,
                                  save_results=False)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, limit_train_batches=2,
                        limit_val_batches=1, callbacks=[probe, adaptive], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=sys.argv[1])
    module = ImageClassifier(net, lr=0.05)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=16))
    batches = evaluation_batches(trainer, module, "val", 1)  # the probe's: rank 0's, broadcast
    single = surface(module, random_directions(module, 2, seed=0), axes, batches)
    result = probe.results[0]
    sampled = adaptive.results[0]
    every = surface(module, random_directions(module, 2, seed=0), fine, batches)
    out = {"loss": result["loss"].tolist(), "single": single["loss"].tolist(),
           "complete": result.complete, "rank": trainer.global_rank,
           "adaptive_computed": sampled.computed.tolist(), "adaptive": sampled["loss"][sampled.computed].tolist(),
           "adaptive_single": every["loss"][sampled.computed].tolist()}
    with open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w") as f:
        json.dump(out, f)
    torch.distributed.destroy_process_group()  # see tests/conftest.py::run_script
'''


@pytest.mark.timeout(180)
def test_ddp_two_processes_shard_and_gather(tmp_path, run_script):
    import json
    run_script(_DDP_SCRIPT, "ddp_probe.py", timeout=170)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["complete"] and ranks[1]["complete"]
    assert ranks[0]["loss"] == ranks[1]["loss"]
    np.testing.assert_allclose(ranks[0]["loss"], ranks[0]["single"], rtol=1e-6)
    assert len(list(tmp_path.rglob("landscape/2d_epoch0.npz"))) == 1
    assert ranks[0]["adaptive_computed"] == ranks[1]["adaptive_computed"] and ranks[0]["adaptive"] == ranks[1][
        "adaptive"]
    assert 25 <= np.sum(ranks[0]["adaptive_computed"]) <= 40
    np.testing.assert_allclose(ranks[0]["adaptive"], ranks[0]["adaptive_single"], rtol=1e-6)


def test_state_dict_round_trip_keeps_initial_weights():
    probe = LossLandscapeProbe(view="interpolate")
    probe.initial_state = {"w": torch.arange(3.0)}
    restored = LossLandscapeProbe(view="interpolate")
    restored.load_state_dict(probe.state_dict())
    assert torch.equal(restored.initial_state["w"], torch.arange(3.0))
    assert probe.state_dict()["probed_epochs"] == []


def test_framed_adaptive_probe_keeps_one_range_over_training(tmp_path):
    probe = LossLandscapeProbe(view="2d", at=None, every_n_epochs=1, grid="frame", adaptive=0.3, num_batches=1,
                               sharpness=False)
    trainer, _ = _fit(tmp_path, probe, max_epochs=2)
    first, second = probe.results[0], probe.results[1]
    assert first.shape == (21, 21) and first.metadata["range"]["spans"][0] == pytest.approx(first.axes[0][-1])
    # the range chosen at the first probe is kept: the surfaces over training share it
    for a, b in zip(first.axes, second.axes):
        np.testing.assert_array_equal(a, b)
    assert second.metadata["range"] == first.metadata["range"]
    assert 0.2 * 441 < first.computed.sum() <= round(0.3 * 441)
    assert first.metadata["adaptive"]["rounds"][-1]["points"] == first.computed.sum()
    saved = load_surface(tmp_path / "tb" / "version_0" / "landscape" / "2d_epoch0")
    np.testing.assert_array_equal(saved.computed, first.computed)
    restored = LossLandscapeProbe(view="2d", at=None, every_n_epochs=1, grid="frame", adaptive=0.3)
    assert restored.state_key == probe.state_key
    restored.load_state_dict(probe.state_dict())
    np.testing.assert_array_equal(restored._framed_axes[0], first.axes[0])


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(view="interpolate", grid="frame"), "Expected `grid='frame'` with view '2d' or '1d'"),
    (dict(view="interpolate", adaptive=0.2), "Expected `adaptive` with view '2d' or '1d'"),
    (dict(grid="zoom"), "Expected `grid` to be coordinate axes, 'frame' or a Framed"),
    (dict(adaptive="half"), "Expected `adaptive` to be a Refinement"),
])
def test_frame_and_adaptive_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossLandscapeProbe(**kwargs)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (dict(mode="1d"), dict(view="1d"), "`mode` is deprecated: pass `view='1d'`"),
        (dict(dataloader="train"), dict(split="train"), "`dataloader` is deprecated: pass `split='train'`"),
        (dict(mode="interpolate", kind="weights"), dict(view="interpolate", kind="weights"), "`mode` is deprecated"),
    ],
)
def test_old_argument_names_warn_and_still_work(old, new, match):
    with pytest.warns(DeprecationWarning, match=match):
        probe = LossLandscapeProbe(**old)
    same = LossLandscapeProbe(**new)
    assert (probe.view, probe.split, probe.kind) == (same.view, same.split, same.kind)
    assert probe.state_key == same.state_key  # checkpoints saved under the old names still load


def test_released_call_with_view_first_and_kind_still_means_the_perturbation():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # `kind` keeps its released meaning: no deprecation
        probe = LossLandscapeProbe("interpolate", kind="weights")
    assert (probe.view, probe.kind) == ("interpolate", "weights")
    assert LossLandscapeProbe("interpolate").kind == "states" and LossLandscapeProbe("2d").kind == "weights"


def test_state_key_keeps_the_names_it_had_before_the_renames():
    probe = LossLandscapeProbe("1d", grid=np.linspace(-1, 1, 3), split="train")
    assert probe.state_key.startswith("LossLandscapeProbe{") and "'mode': '1d'" in probe.state_key
    assert "'dataloader': 'train'" in probe.state_key
