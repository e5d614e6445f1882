"""The compatibility matrix: each callback on each model / Trainer option, each cell asserting a value.

A cell passes when the callback's value equals an independent reference (the probe's centre = the module's own loss
on those batches, written out again in ``models.py``; the curvature = a float64 finite-difference Rayleigh quotient
along the reported eigenvector, no double backward and no fused attention in it, eager attention for Hugging Face
(resnet18: double backward in float64, its BatchNorm on 4 samples is too sharp for finite differences);
the lrs = torch's ``OneCycleLR`` / ``CyclicLR``; the range test's lrs = its documented geometric sweep, its first loss
= the module's loss at the initial weights), or when the callback refuses before the first training step
(``trainer.global_step == 0``) with the message the cell matches; ``record_property("refused", ...)`` puts that
message into the table (``python -m tests.compat.matrix --write``).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from lightning_papers.callbacks import (
    ConvArithmeticSummary,
    CurvatureMonitor,
    CyclicalLR,
    LossLandscapeProbe,
    LRRangeFinder,
    SuperConvergence,
    TensorBoardLayout,
)

from . import models as m
from .helpers import (
    LRRecorder,
    WeightsAtFirstStep,
    first_batches,
    fit,
    rayleigh_quotient,
    served_layout,
    torch_schedule,
)

# row id -> (module factory, loss_of(module, batch), Trainer options)
ROWS = {
    "boring": (m.Boring, m.boring_loss, {}),
    "encoder_lm": (m.EncoderLM, m.encoder_lm_loss, {}),
    "demo_transformer": (m.DemoTransformer, m.demo_transformer_loss, {}),
    "resnet18": (m.ResNet18, m.resnet_loss, {"max_steps": 2}),
    "bert": (m.Bert, m.bert_loss, {}),
    "gan": (m.GAN, None, {"max_steps": -1, "max_epochs": 1}),  # 4 batches: 4 steps of each optimizer
    "manual": (m.Manual, m.manual_loss, {}),
    "accumulate": (m.MLP, m.mlp_loss, {"accumulate_grad_batches": 2}),
    "clip": (m.MLP, m.mlp_loss, {"gradient_clip_val": 0.05}),
    "bf16": (m.MLP, m.mlp_loss, {"precision": "bf16-mixed"}),
}
MODELS = list(ROWS)
# the module returns its own LR scheduler (BoringModel: StepLR; resnet18: a StepLR dict): D1, refuse by name
OWN_SCHEDULER = {"boring": "StepLR", "resnet18": "StepLR"}
# manual optimization: training_step steps the optimizers, so an analysis cannot evaluate it; it asks for `loss_fn=`
NO_LOSS = {"gan", "manual"}
MANUAL = {"gan", "manual"}


def _row(row):
    factory, loss_of, options = ROWS[row]
    torch.manual_seed(0)  # the same initial weights whatever ran before: the table is reproducible
    return factory(), loss_of, dict(options)


def _refused(record_property, err, pattern):
    message = str(err.value).splitlines()[0]
    assert re.search(pattern, message), message
    record_property("refused", message)


# -- CurvatureMonitor --------------------------------------------------------------------------------------------
@pytest.mark.compat_cell("CurvatureMonitor")
@pytest.mark.parametrize("row", MODELS)
def test_curvature_monitor(row, tmp_path, record_property):
    module, loss_of, options = _row(row)
    steps = options.setdefault("max_steps", 4)
    monitor = CurvatureMonitor(every_n_steps=max(steps, 1), max_iter=6, save_results=False)
    if row in NO_LOSS:
        with pytest.raises(ValueError, match="CurvatureMonitor: .*loss") as err:
            fit(module, [monitor], tmp_path, **options)
        assert module.trainer.global_step == 0
        return _refused(record_property, err, "loss")
    trainer = fit(module, [monitor], tmp_path, **options)
    assert trainer.global_step == steps and monitor.history.steps == [steps]  # measured once, at the last step
    value = monitor.history.to_dict()["top_eigenvalue"][-1]
    reference = rayleigh_quotient(module, loss_of, monitor._batches, monitor.last_result.eigenvectors[0],
                                  exact=row == "resnet18")
    assert value == pytest.approx(reference, rel=2e-3, abs=1e-5)


# -- LossLandscapeProbe ------------------------------------------------------------------------------------------
@pytest.mark.compat_cell("LossLandscapeProbe")
@pytest.mark.parametrize("row", MODELS)
def test_loss_landscape_probe(row, tmp_path, record_property):
    module, loss_of, options = _row(row)
    probe = LossLandscapeProbe("1d", grid=[-0.5, 0.0, 0.5], num_batches=1, hessian_iters=3, save_results=False)
    if row in NO_LOSS:
        with pytest.raises(ValueError, match="LossLandscapeProbe: ") as err:
            fit(module, [probe], tmp_path, **options)
        assert module.trainer.global_step == 0
        return _refused(record_property, err, "val|loss")
    trainer = fit(module, [probe], tmp_path, **options)
    (result,) = probe.results.values()
    batch = first_batches(trainer.val_dataloaders or module.val_dataloader())[0]
    module.eval()
    dtype = torch.bfloat16 if options.get("precision") == "bf16-mixed" else None
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        expected = float(loss_of(module, batch))
    assert result.centre_value("loss") == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert np.isfinite(result.values["loss"]).all()


# -- LRRangeFinder -----------------------------------------------------------------------------------------------
@pytest.mark.compat_cell("LRRangeFinder")
@pytest.mark.parametrize("row", MODELS)
def test_lr_range_finder(row, tmp_path, record_property):
    module, loss_of, options = _row(row)
    initial = {k: v.detach().clone() for k, v in module.state_dict().items()}
    finder = LRRangeFinder(1e-4, 1e-1, num_steps=4, divergence_factor=None, save_results=False)
    first = WeightsAtFirstStep()
    if row in MANUAL:
        with pytest.raises(ValueError, match="Expected automatic optimization") as err:
            fit(module, [finder, first], tmp_path, **options)
        assert module.trainer.global_step == 0 and first.state is None
        return _refused(record_property, err, "manual optimization")
    trainer = fit(module, [finder, first], tmp_path, **options)
    result = finder.result
    np.testing.assert_allclose(result.lrs, np.geomspace(1e-4, 1e-1, 4), rtol=1e-12)
    # training starts from the weights it had before the sweep, bit for bit
    assert all(torch.equal(first.state[k], v) for k, v in initial.items())
    if loss_of is not None:  # the sweep's first loss is the module's loss at the initial weights (mean over accum.)
        accumulate = options.get("accumulate_grad_batches", 1)
        batches = first_batches(trainer.train_dataloader, accumulate)
        module.load_state_dict(initial)
        module.train()
        with torch.no_grad():
            expected = float(sum(loss_of(module, b) for b in batches) / accumulate)
        rel = 2e-2 if options.get("precision") == "bf16-mixed" else 1e-5
        assert result.losses[0] == pytest.approx(expected, rel=rel)


# -- the range test's reading (issue 22 item 5) --------------------------------------------------------------
AUTOMATIC = [r for r in MODELS if r not in MANUAL]


@pytest.mark.compat_cell("LRRangeFinder reading")
@pytest.mark.parametrize("row", AUTOMATIC)
def test_lr_range_reading(row, tmp_path):
    """Bounds and suggestion are one reading of one curve (Smith: the lower bound where the loss starts to fall,
    the upper where it stops; the steepest fall lies between), and a trusted curve's lower bound is not simply the
    sweep's start."""
    module, _, options = _row(row)
    finder = LRRangeFinder(1e-5, 1.0, num_steps=12, save_results=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(module, [finder], tmp_path, **{**options, "max_steps": 1})
    result = finder.result
    if result.suggestion is not None and result.clr_bounds is not None:
        low, high = result.clr_bounds
        assert low <= result.suggestion <= high, (result.suggestion, result.clr_bounds)
    if result.trusted and result.clr_bounds is not None:
        assert result.clr_bounds[0] > result.lrs[1], (result.clr_bounds, result.lrs[:3])


# -- CyclicalLR --------------------------------------------------------------------------------------------------
@pytest.mark.compat_cell("CyclicalLR")
@pytest.mark.parametrize("row", MODELS)
def test_cyclical_lr(row, tmp_path, record_property):
    module, _, options = _row(row)
    steps = options.setdefault("max_steps", 4)
    clr, recorder = CyclicalLR(1e-3, 1e-2, step_size=2), LRRecorder()
    if row in OWN_SCHEDULER:
        with pytest.raises(ValueError, match=rf"CyclicalLR.*{OWN_SCHEDULER[row]}.*replace_schedulers=True") as err:
            fit(module, [clr, recorder], tmp_path, **options)
        assert module.trainer.global_step == 0
        return _refused(record_property, err, "replace_schedulers")
    trainer = fit(module, [clr, recorder], tmp_path, **options)
    # each optimizer counts its own steps (the GAN's global_step counts both)
    per_optimizer = trainer.num_training_batches if row == "gan" else steps
    assert [len(recorder.lrs[i]) for i in range(len(trainer.optimizers))] == [per_optimizer] * len(trainer.optimizers)
    expected = torch_schedule(lambda opt: torch.optim.lr_scheduler.CyclicLR(
        opt, 1e-3, 1e-2, step_size_up=2, cycle_momentum=False), per_optimizer)
    for i in range(len(trainer.optimizers)):
        np.testing.assert_allclose(recorder.lrs[i], expected, rtol=1e-12)


# -- SuperConvergence --------------------------------------------------------------------------------------------
@pytest.mark.compat_cell("SuperConvergence")
@pytest.mark.parametrize("row", MODELS)
def test_super_convergence(row, tmp_path, record_property):
    module, _, options = _row(row)
    options.setdefault("max_steps", 4)
    recorder = LRRecorder()
    momentum = {} if row == "gan" else {"cycle_momentum": False}  # the GAN: D2's default must keep beta1=0.5
    sc = SuperConvergence(0.05, three_phase=False, pct_start=0.5, **momentum)
    if row in OWN_SCHEDULER:
        with pytest.raises(ValueError, match=rf"SuperConvergence.*{OWN_SCHEDULER[row]}.*replace_schedulers=True") \
                as err:
            fit(module, [sc, recorder], tmp_path, **options)
        assert module.trainer.global_step == 0
        return _refused(record_property, err, "replace_schedulers")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = fit(module, [sc, recorder], tmp_path, **options)
    # the plan's length is the optimizer steps of each optimizer: batches / accumulation (the GAN: batches)
    total = len(recorder.lrs[0])
    assert total == (trainer.num_training_batches if row == "gan" else trainer.global_step)
    expected = torch_schedule(lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, 0.05, total_steps=total, pct_start=0.5, anneal_strategy="linear", cycle_momentum=False,
        three_phase=False), total)
    for i in range(len(trainer.optimizers)):
        np.testing.assert_allclose(recorder.lrs[i], expected, rtol=1e-10)
    if row == "gan":
        assert all(b == 0.5 for i in recorder.momenta for b in recorder.momenta[i])
        assert any("beta1=0.5 is outside" in str(w.message) for w in caught)


# -- ConvArithmeticSummary ---------------------------------------------------------------------------------------
@pytest.mark.compat_cell("ConvArithmeticSummary")
@pytest.mark.parametrize("row", MODELS)
def test_conv_arithmetic_summary(row, tmp_path, record_property):
    module, _, options = _row(row)
    summary = ConvArithmeticSummary(input_size=(3, 16, 16))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = fit(module, [summary], tmp_path, **options)
    assert trainer.state.finished and trainer.global_step > 0  # never stops training
    traced = [r for r in summary.trace.rows if r.kernel is not None] if summary.trace is not None else []
    if not any(isinstance(x, torch.nn.modules.conv._ConvNd) for x in module.modules()):
        # nothing to trace; the input the callback guesses does not fit a non-image model: one warning, training on
        if summary.trace is None:
            (message,) = [str(w.message) for w in caught if "ConvArithmeticSummary" in str(w.message)]
            assert re.fullmatch(rf"ConvArithmeticSummary: {type(module).__name__} has no convolution or pooling "
                                r"layer, nothing to trace; remove the callback for this model", message), message
            record_property("refused", "warns " + message.replace(type(module).__name__, "the module"))
        else:
            assert traced == []
        return
    shapes = {}
    hooks = [mod.register_forward_hook(lambda mod, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
             for name, mod in module.named_modules() if name in {r.name for r in traced}]
    module.eval()
    with torch.no_grad():
        module(torch.zeros(1, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert len(traced) == len(shapes) > 0
    assert {r.name: tuple(r.output_shape) for r in traced} == shapes
    assert summary.trace.mismatches == []


# -- TensorBoardLayout -------------------------------------------------------------------------------------------
@pytest.mark.compat_cell("TensorBoardLayout")
@pytest.mark.parametrize("row", MODELS)
def test_tensorboard_layout(row, tmp_path, record_property):
    module, _, options = _row(row)
    options.setdefault("max_steps", 4)
    trainer = fit(module, [TensorBoardLayout()], tmp_path, log_every_n_steps=1, logger=TensorBoardLogger(
        tmp_path, name="tb", default_hp_metric=False), **options)
    charts, tags = served_layout(trainer.log_dir)
    metrics = tags - {"epoch", "hp_metric"}
    if not metrics:  # the module logs nothing (BoringModel): no layout, not one of empty charts
        assert charts is None
        return
    regexes = [r for by_title in charts.values() for rs in by_title.values() for r in rs]
    for by_title in charts.values():  # no chart is empty
        for title, rs in by_title.items():
            assert any(re.search(r, t) for r in rs for t in tags), title
    for tag in metrics:  # every metric the module logged is on a chart
        assert any(re.search(r, tag) for r in regexes), tag


# -- checkpoint + ckpt_path resume -------------------------------------------------------------------------------
class _KilledAfterFirstEpoch(Callback):
    """Ends the run after its first epoch (of two planned): a crash after the epoch's checkpoint was written."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def _resume_run(tmp_path, name, resume):
    """Two epochs of 2 steps; ``resume``: stopped after the first epoch, then the second from its checkpoint in a
    new Trainer with new callbacks."""
    def callbacks():
        return [SuperConvergence(0.05, three_phase=False, pct_start=0.5, cycle_momentum=False),
                CurvatureMonitor(every_n_steps=2, max_iter=6, save_results=False),
                LossLandscapeProbe("interpolate", grid=[0.0, 1.0], num_batches=1, sharpness=False,
                                   save_results=False), LRRecorder()]

    torch.manual_seed(0)
    module = m.MLP()
    options = dict(max_epochs=2, max_steps=-1, limit_train_batches=2)
    if not resume:
        cbs = callbacks()
        fit(module, cbs, tmp_path / name, **options)
        return cbs, module
    first = callbacks()
    ckpt = ModelCheckpoint(tmp_path / name, save_top_k=-1, every_n_epochs=1)
    fit(module, [*first, ckpt, _KilledAfterFirstEpoch()], tmp_path / name, enable_checkpointing=True, **options)
    assert module.trainer.global_step == 2
    torch.manual_seed(1)  # other initial weights: the checkpoint must bring the trained ones back
    module = m.MLP()
    cbs = callbacks()
    fit(module, cbs, tmp_path / name, ckpt_path=ckpt.best_model_path, **options)
    cbs[3].lrs = {0: first[3].lrs[0] + cbs[3].lrs[0]}
    return cbs, module


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    return _resume_run(root, "whole", False), _resume_run(root, "resumed", True)


@pytest.mark.compat_cell("SuperConvergence")
@pytest.mark.parametrize("row", ["resume"])
def test_super_convergence_resume(row, resumed):
    (whole, _), (again, _) = resumed
    expected = torch_schedule(lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, 0.05, total_steps=4, pct_start=0.5, anneal_strategy="linear", cycle_momentum=False,
        three_phase=False), 4)
    np.testing.assert_allclose(whole[3].lrs[0], expected, rtol=1e-10)
    np.testing.assert_allclose(again[3].lrs[0], expected, rtol=1e-10)


@pytest.mark.compat_cell("CurvatureMonitor")
@pytest.mark.parametrize("row", ["resume"])
def test_curvature_monitor_resume(row, resumed):
    (whole, _), (again, _) = resumed
    a, b = whole[1].history.to_dict(), again[1].history.to_dict()
    assert a["steps"] == b["steps"] == [2, 4]
    np.testing.assert_allclose(b["top_eigenvalue"], a["top_eigenvalue"], rtol=1e-4)


@pytest.mark.compat_cell("LossLandscapeProbe")
@pytest.mark.parametrize("row", ["resume"])
def test_loss_landscape_probe_resume(row, resumed):
    (whole, module_a), (again, module_b) = resumed
    (a,), (b,) = whole[2].results.values(), again[2].results.values()
    np.testing.assert_allclose(b.values["loss"], a.values["loss"], rtol=1e-5)
    # alpha = 1 is the trained model: its loss on the probe's first val batch
    batch = first_batches(module_b.val_dataloader())[0]
    with torch.no_grad():
        assert b.values["loss"][-1] == pytest.approx(float(m.mlp_loss(module_b.eval(), batch)), rel=1e-5)


# -- 2-process DDP (gloo, CPU): a few cells, one run ---------------------------------------------------------------
_DDP_SCRIPT = '''
import json, sys
from datetime import timedelta

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.strategies import DDPStrategy

from lightning_papers.callbacks import CurvatureMonitor, SuperConvergence, TensorBoardLayout
from tests.compat import models as m
from tests.compat.helpers import LRRecorder, fit, rayleigh_quotient

if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.manual_seed(0)
    module = m.EncoderLM()
    monitor, recorder = CurvatureMonitor(every_n_steps=4, max_iter=6, save_results=False), LRRecorder()
    sc = SuperConvergence(0.01, three_phase=False, pct_start=0.5, cycle_momentum=False)
    trainer = fit(module, [sc, monitor, TensorBoardLayout(), recorder], sys.argv[1], devices=2, max_steps=4,
                  strategy=DDPStrategy(timeout=timedelta(seconds=60)), log_every_n_steps=1,
                  logger=TensorBoardLogger(sys.argv[1], name="tb", version=0, default_hp_metric=False))
    shares = [None] * trainer.world_size  # each rank's curvature batches: the Hessian is that of both together
    torch.distributed.all_gather_object(shares, monitor._batches)
    union = [batch for share in shares for batch in share]
    reference = rayleigh_quotient(module, m.encoder_lm_loss, union, monitor.last_result.eigenvectors[0])
    out = {"lrs": recorder.lrs[0], "total": trainer.estimated_stepping_batches,
           "curvature": monitor.history.to_dict()["top_eigenvalue"], "reference": reference}
    with open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w") as f:
        json.dump(out, f)
    torch.distributed.destroy_process_group()  # see tests/conftest.py::run_script
'''


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path_factory.mktemp("ddp")
    script = root / "ddp_compat.py"
    script.write_text(_DDP_SCRIPT)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(root)], env=env, capture_output=True, text=True,
                          timeout=200, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, [json.loads((root / f"rank{r}.json").read_text()) for r in (0, 1)]


@pytest.mark.compat_cell("SuperConvergence")
@pytest.mark.parametrize("row", ["ddp"])
def test_super_convergence_ddp(row, ddp_run):
    _, ranks = ddp_run
    expected = torch_schedule(lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, 0.01, total_steps=4, pct_start=0.5, anneal_strategy="linear", cycle_momentum=False,
        three_phase=False), 4)
    for rank in ranks:
        np.testing.assert_allclose(rank["lrs"], expected, rtol=1e-10)


@pytest.mark.compat_cell("CurvatureMonitor")
@pytest.mark.parametrize("row", ["ddp"])
def test_curvature_monitor_ddp(row, ddp_run):
    _, ranks = ddp_run
    assert ranks[0]["curvature"] == ranks[1]["curvature"] and len(ranks[0]["curvature"]) == 1
    assert ranks[0]["curvature"][0] == pytest.approx(ranks[0]["reference"], rel=2e-3)


@pytest.mark.compat_cell("TensorBoardLayout")
@pytest.mark.parametrize("row", ["ddp"])
def test_tensorboard_layout_ddp(row, ddp_run):
    root, _ = ddp_run
    charts, tags = served_layout(root / "tb" / "version_0")
    assert any("^train_loss$" in rs for rs in charts["Training"].values()), charts
    for by_title in charts.values():
        for title, rs in by_title.items():
            assert any(re.search(r, t) for r in rs for t in tags), title


# -- the module's own scheduler, replaced when the user asks (D1) ---------------------------------------------------
@pytest.mark.compat_cell("CyclicalLR")
@pytest.mark.parametrize("row", ["replace"])
def test_cyclical_lr_replaces_when_asked(row, tmp_path, caplog):
    recorder = LRRecorder()
    clr = CyclicalLR(1e-3, 1e-2, step_size=2, replace_schedulers=True)
    with caplog.at_level("INFO"):
        fit(m.ResNet18(), [clr, recorder], tmp_path, max_steps=4, limit_train_batches=2)
    assert "StepLR" in caplog.text  # the info line names what it replaced
    expected = torch_schedule(lambda opt: torch.optim.lr_scheduler.CyclicLR(
        opt, 1e-3, 1e-2, step_size_up=2, cycle_momentum=False), 4)
    np.testing.assert_allclose(recorder.lrs[0], expected, rtol=1e-12)


@pytest.mark.compat_cell("SuperConvergence")
@pytest.mark.parametrize("row", ["replace"])
def test_super_convergence_replaces_when_asked(row, tmp_path, caplog):
    recorder = LRRecorder()
    sc = SuperConvergence(0.05, three_phase=False, pct_start=0.5, cycle_momentum=False, replace_schedulers=True)
    with caplog.at_level("INFO"):
        fit(m.ResNet18(), [sc, recorder], tmp_path, max_steps=4, limit_train_batches=2)
    assert "StepLR" in caplog.text
    expected = torch_schedule(lambda opt: torch.optim.lr_scheduler.OneCycleLR(
        opt, 0.05, total_steps=4, pct_start=0.5, anneal_strategy="linear", cycle_momentum=False,
        three_phase=False), 4)
    np.testing.assert_allclose(recorder.lrs[0], expected, rtol=1e-10)
