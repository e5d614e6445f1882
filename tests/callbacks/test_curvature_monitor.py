"""``CurvatureMonitor`` in real Trainers: the value it logs is the exact Hessian's top eigenvalue of the module's
loss on its batches, the threshold follows the schedule's lr and momentum step by step, training is the same
with and without it, and a resumed run continues the history."""

import copy
import json
import math
import re
import warnings

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.func import functional_call

from lightning_papers.callbacks import CurvatureMonitor, SuperConvergence
from lightning_papers.data import DigitsDataModule
from lightning_papers.modules import ImageClassifier
from lightning_papers.tensorboard import LAYOUT

WEIGHT_DECAY = 5e-4


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is several times faster than two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_net() -> nn.Module:  # 170 parameters: the exact Hessian is cheap
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


class _Recorder(Callback):
    """The lr and momentum each optimizer step used, and the weights at the end."""

    def __init__(self):
        self.lr, self.momentum, self.final = [], [], None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lr.append(optimizer.param_groups[0]["lr"])
        self.momentum.append(optimizer.param_groups[0]["momentum"])

    def on_train_end(self, trainer, pl_module):
        self.final = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def _fit(tmp_path, callbacks, max_steps=6, ckpt_path=None, name="tb", optimizer="sgd"):
    L.seed_everything(0, verbose=False)
    module = ImageClassifier(_tiny_net(), lr=0.05, momentum=0.9, weight_decay=WEIGHT_DECAY, optimizer=optimizer)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=max_steps, limit_val_batches=0,
                        logger=TensorBoardLogger(tmp_path, name=name, version=0), callbacks=callbacks,
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=16, size=8), ckpt_path=ckpt_path)
    return trainer, module


def _exact_hessian(module, batches):
    """The Hessian of the mean cross-entropy over ``batches`` with BatchNorm on batch statistics (a float64 copy,
    ``torch.autograd.functional.hessian``)."""
    net = copy.deepcopy(module.model).double().train()
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    total = sum(len(y) for _, y in batches)

    def loss_of(flat):
        params = {n: c.view(s) for n, c, s in zip(names, flat.split([s.numel() for s in shapes]), shapes)}
        return sum(F.cross_entropy(functional_call(net, params, (x.double(),)), y) * len(y) / total
                   for x, y in batches)

    return torch.autograd.functional.hessian(loss_of, flat0, vectorize=True).numpy()


def test_monitor_measures_the_exact_top_eigenvalue_and_the_schedules_threshold(tmp_path):
    monitor = CurvatureMonitor(every_n_steps=2, num_batches=2, trace=True, trace_samples=4, spectrum=True,
                               spectrum_runs=1, spectrum_steps=6, max_iter=40, tol=1e-6)
    recorder = _Recorder()
    schedule = SuperConvergence(0.5, div_factor=5.0, cycle_momentum=True)  # lr and momentum move every step
    trainer, module = _fit(tmp_path, [schedule, monitor, recorder])
    history = monitor.history
    assert history.steps == [2, 4, 6]
    # the threshold of each measurement is the one of the lr and momentum the step before it used (torch's SGD
    # semantics; tests/landscape/test_curvature.py checks the formula against torch.optim.SGD itself)
    for i, step in enumerate(history.steps):
        lr, momentum = recorder.lr[step - 1], recorder.momentum[step - 1]
        assert history.lr[i] == lr and history.momentum[i] == momentum
        assert history.threshold[i] == pytest.approx((2 + 2 * momentum) / lr - WEIGHT_DECAY, rel=1e-12)
    assert len(set(history.threshold)) == 3  # it moved with the schedule
    # the last value is the exact Hessian's top eigenvalue of the module's loss on the monitor's batches
    batches = [(x, y) for x, y in monitor._batches]
    assert [len(y) for _, y in batches] == [16, 16]
    hess = _exact_hessian(module, batches)
    assert history.top_eigenvalue[-1] == pytest.approx(np.linalg.eigvalsh(hess)[-1], rel=1e-4)
    # and the trace is Hutchinson's: within 4 standard deviations of 4 Rademacher samples of the exact one
    off_diagonal = hess - np.diag(np.diag(hess))
    assert abs(history.trace[-1] - np.trace(hess)) < 4 * math.sqrt(2 * (off_diagonal**2).sum() / 4)
    assert monitor.spectrum_result is not None and monitor.spectrum_result.nodes.shape == (1, 6)

    log_dir = tmp_path / "tb" / "version_0"
    events = EventAccumulator(str(log_dir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    for tag in ("curvature/top_eigenvalue", "curvature/2_over_lr", "curvature/trace", "curvature/lr"):
        assert [e.step for e in events.Scalars(tag)] == [2, 4, 6], tag
    assert [e.value for e in events.Scalars("curvature/2_over_lr")] == pytest.approx(history.threshold, rel=1e-6)
    assert {"curvature/sharpness", "curvature/spectrum"} <= set(events.Tags()["images"])
    for _, regexes in LAYOUT["Curvature"].values():  # every custom-scalars chart shows what the monitor wrote
        assert all(any(re.fullmatch(r, t) for t in events.Tags()["scalars"]) for r in regexes), regexes
    saved = json.loads((log_dir / "curvature" / "history.json").read_text())
    assert saved["steps"] == [2, 4, 6] and saved["top_eigenvalue"] == pytest.approx(history.top_eigenvalue)
    assert (log_dir / "curvature" / "sharpness.png").is_file() and (log_dir / "curvature" / "spectrum.png").is_file()
    assert json.loads((log_dir / "curvature" / "spectrum.json").read_text())["dimension"] == 170

    # training is the same without the monitor, bit for bit (weights, BatchNorm statistics; RNG and data order)
    alone = _Recorder()
    _fit(tmp_path, [SuperConvergence(0.5, div_factor=5.0, cycle_momentum=True), alone], name="alone")
    assert alone.lr == recorder.lr
    for key, value in recorder.final.items():
        assert torch.equal(value, alone.final[key]), key


def test_resume_continues_the_history(tmp_path):
    first = CurvatureMonitor(every_n_steps=2, max_iter=40, tol=1e-6)
    trainer, _ = _fit(tmp_path, [first], max_steps=4)
    ckpt = tmp_path / "mid.ckpt"
    trainer.save_checkpoint(ckpt)
    resumed = CurvatureMonitor(every_n_steps=2, max_iter=40, tol=1e-6)
    _, module = _fit(tmp_path, [resumed], max_steps=6, ckpt_path=ckpt, name="resumed")
    assert resumed.history.steps == [2, 4, 6] and resumed.history.top_eigenvalue[:2] == first.history.top_eigenvalue
    # after the resume there is no warm start (not checkpointed) and the batches were taken again: still the exact
    # top eigenvalue of the module's loss on them
    hess = _exact_hessian(module, [(x, y) for x, y in resumed._batches])
    assert resumed.history.top_eigenvalue[2] == pytest.approx(np.linalg.eigvalsh(hess)[-1], rel=1e-4)
    assert first.state_key == resumed.state_key and "CurvatureMonitor" in first.state_key


class _FreezeFirstConv(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 2:
            pl_module.model[0].requires_grad_(False)


def test_parameters_frozen_mid_run_drop_the_warm_start(tmp_path):
    monitor = CurvatureMonitor(every_n_steps=2, max_iter=40, tol=1e-6)
    _, module = _fit(tmp_path, [monitor, _FreezeFirstConv()], max_steps=4)
    assert monitor.history.steps == [2, 4]
    # the second value is the top eigenvalue of the Hessian block of the parameters still trainable
    hess = _exact_hessian(module, [(x, y) for x, y in monitor._batches])
    frozen = sum(p.numel() for p in module.model[0].parameters())
    assert monitor.history.top_eigenvalue[1] == pytest.approx(np.linalg.eigvalsh(hess[frozen:, frozen:])[-1],
                                                              rel=1e-4)
    assert set(monitor.last_result.eigenvectors[0].tensors) == {"model.1.weight", "model.1.bias", "model.5.weight",
                                                                "model.5.bias"}


def test_adaptive_optimizer_gets_no_threshold_and_a_warning(tmp_path):
    monitor = CurvatureMonitor(every_n_steps=3, batchnorm="running", split="val")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit(tmp_path, [monitor], max_steps=3, optimizer="adamw")
    assert any("no `curvature/2_over_lr` for ['AdamW']" in str(w.message) for w in caught)
    assert monitor.history.steps == [3] and math.isnan(monitor.history.threshold[0])
    assert monitor.history.top_eigenvalue[0] > 0 and monitor.history.momentum[0] == 0.9  # Adam's beta1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"every_n_steps": 0}, "Expected `every_n_steps` to be a positive integer, got 0"),
        ({"num_batches": 1.5}, "Expected `num_batches` to be a positive integer, got 1.5"),
        ({"k": 0}, "Expected `k` to be a positive integer, got 0"),
        ({"max_iter": True}, "Expected `max_iter` to be a positive integer, got True"),
        ({"spectrum_runs": 0}, "Expected `spectrum_runs` to be a positive integer, got 0"),
        ({"spectrum_steps": -1}, "Expected `spectrum_steps` to be a positive integer, got -1"),
        ({"trace_samples": 1}, r"Expected `trace_samples` to be an integer >= 2 \(a standard error needs two\), got 1"),
        ({"tol": 0.0}, "Expected `tol` to be a positive finite number, got 0.0"),
        ({"split": "test"}, r"Expected `split` to be one of \('train', 'val'\), got 'test'"),
        ({"batchnorm": "eval"}, r"Expected `batchnorm` to be one of \('running', 'batch'\), got 'eval'"),
        ({"autocast_dtype": "bf16"}, "Expected `autocast_dtype` to be a torch.dtype or None, got 'bf16'"),
        ({"seed": 1.0}, "Expected `seed` to be an integer, got 1.0"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CurvatureMonitor(**kwargs)


def test_dataloader_is_the_old_name_of_split():
    with pytest.warns(DeprecationWarning, match="`dataloader` is deprecated: pass `split='val'`"):
        monitor = CurvatureMonitor(dataloader="val")
    assert monitor.split == "val" and monitor.state_key == CurvatureMonitor(split="val").state_key
    assert "'dataloader': 'val'" in monitor.state_key  # the key checkpoints were saved under


def test_state_dict_round_trip():
    monitor = CurvatureMonitor()
    monitor.history.record(5, 1.5, 38.0, lr=0.1, momentum=0.9)
    monitor._last_step = 5
    other = CurvatureMonitor()
    other.load_state_dict(json.loads(json.dumps(monitor.state_dict())))  # what a checkpoint can hold
    assert other.history.steps == [5] and other.history.threshold == [38.0] and other._last_step == 5


def test_fixed_batches_do_not_depend_on_how_far_training_has_got():
    # what a mid-epoch resume changes is the RNG state at the time a callback draws its fixed batches (an
    # uninterrupted run has consumed more of it): seeded draws give the same batches whatever that state, and leave
    # the state, and a loader's own generator, as they were
    from lightning_papers.callbacks.evaluation import _seeded

    generator = torch.Generator().manual_seed(5)
    loader = torch.utils.data.DataLoader(torch.arange(100), batch_size=4, shuffle=True, generator=generator)

    def draw(global_seed, seed):
        torch.manual_seed(global_seed)
        with _seeded(loader, seed):
            batch = next(iter(loader))
        return batch, torch.rand(1), generator.get_state()

    (a, after_a, gen_a), (b, _, gen_b) = draw(1, 0), draw(2, 0)
    assert torch.equal(a, b)  # the same fixed batch from two different training positions
    torch.manual_seed(1)
    assert torch.equal(after_a, torch.rand(1))  # the global RNG continues as if nothing was drawn
    assert torch.equal(gen_a, gen_b) and torch.equal(gen_a, torch.Generator().manual_seed(5).get_state())
    generator.manual_seed(5)
    (c, _, _), (d, _, _) = draw(1, None), draw(2, None)
    assert not torch.equal(c, d)  # unseeded, the draw follows the RNG: what a resume used to change
