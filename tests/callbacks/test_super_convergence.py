"""SuperConvergence: parity with torch's OneCycleLR inside a real Trainer, resume, groups, accumulation, errors,
the init-to-final interpolation probe, and DDP."""

import copy
import json
import textwrap
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_papers.callbacks import LRRangeFinder, SuperConvergence
from lightning_papers.landscape import load_surface
from lightning_papers.schedules import OneCycle


def _dataset(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())


class TinyModel(L.LightningModule):
    def __init__(self, optimizer="sgd", momentum=0.9, group_lrs=None, batch_size=4, n=32):
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(8, 3)
        self.optimizer, self.momentum, self.group_lrs = optimizer, momentum, group_lrs
        self.batch_size, self.n = batch_size, n

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        lrs = self.group_lrs or [0.1]
        mods = [self.a, self.b] if len(lrs) == 2 else [self]
        groups = [{"params": m.parameters(), "lr": lr} for m, lr in zip(mods, lrs)]
        if self.optimizer == "adam":
            return torch.optim.Adam(groups)
        return torch.optim.SGD(groups, momentum=self.momentum)

    def train_dataloader(self):
        return DataLoader(_dataset(self.n), batch_size=self.batch_size)


class Recorder(Callback):
    """lr and momentum of every param group, read right before each optimizer step."""

    def __init__(self):
        self.lrs, self.momenta, self.micro_lrs = [], [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.micro_lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        groups = optimizer.param_groups
        self.lrs.append([g["lr"] for g in groups])
        self.momenta.append([g["betas"][0] if "betas" in g else g["momentum"] for g in groups])


def _fit(tmp_path, model=None, callbacks=(), ckpt_path=None, **kwargs):
    torch.manual_seed(0)
    model = model or TinyModel()
    kwargs.setdefault("logger", False)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        default_root_dir=tmp_path, num_sanity_val_steps=0, **kwargs, callbacks=list(callbacks),
    )
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer, model


def _torch_one_cycle(n, optimizer="sgd", **kwargs):
    """lrs and momenta torch's OneCycleLR hands to each of ``n`` optimizer steps (linear unless told)."""
    kwargs.setdefault("anneal_strategy", "linear")
    params = [nn.Parameter(torch.zeros(1))]
    opt = torch.optim.Adam(params) if optimizer == "adam" else torch.optim.SGD(params, lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, total_steps=n, **kwargs)
    lrs, momenta = [], []
    for _ in range(n):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        momenta.append(g["betas"][0] if "betas" in g else g["momentum"])
        opt.step()
        sched.step()
    return lrs, momenta


# ----------------------------------------------------------------------------------------------------
# parity with torch.optim.lr_scheduler.OneCycleLR
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("three_phase", [True, False])
@pytest.mark.parametrize("anneal", ["linear", "cos"])
@pytest.mark.parametrize("n", [7, 20])
def test_parity_with_torch_one_cycle(tmp_path, three_phase, anneal, n):
    pct = 0.45 if three_phase else 0.3
    rec = Recorder()
    sc = SuperConvergence(3.0, div_factor=30, final_div_factor=100, three_phase=three_phase, anneal=anneal)
    _fit(tmp_path, callbacks=[sc, rec], max_steps=n)
    ref_lrs, ref_mom = _torch_one_cycle(
        n, max_lr=3.0, div_factor=30, final_div_factor=100, three_phase=three_phase, anneal_strategy=anneal,
        pct_start=pct, base_momentum=0.85, max_momentum=0.95,
    )
    lrs = [r[0] for r in rec.lrs]
    momenta = [m[0] for m in rec.momenta]
    assert len(lrs) == n
    assert lrs == pytest.approx(ref_lrs, abs=1e-12, rel=0)
    assert momenta == pytest.approx(ref_mom, abs=1e-12, rel=0)
    # endpoints: bit-equal to torch's, and the documented values up to torch's own last-bit rounding
    assert lrs[0] == ref_lrs[0] == pytest.approx(3.0 / 30, rel=1e-14)
    assert lrs[-1] == ref_lrs[-1] == pytest.approx(3.0 / 30 / 100, rel=1e-13)
    assert momenta[0] == 0.95


def test_parity_long_run_epochs_and_adam_beta1(tmp_path):
    # 8 batches x 5 epochs = 40 optimizer steps from estimated_stepping_batches; Adam's beta1 cycles
    rec = Recorder()
    _fit(tmp_path, model=TinyModel(optimizer="adam"), callbacks=[SuperConvergence(0.01), rec], max_epochs=5)
    ref_lrs, ref_mom = _torch_one_cycle(40, optimizer="adam", max_lr=0.01, three_phase=True, anneal_strategy="linear",
                                        pct_start=0.45)
    assert [r[0] for r in rec.lrs] == pytest.approx(ref_lrs, abs=1e-12, rel=0)
    assert [m[0] for m in rec.momenta] == pytest.approx(ref_mom, abs=1e-12, rel=0)
    assert max(r[0] for r in rec.lrs) == 0.01  # the peak lands on step 17 exactly


def test_run_past_the_end_holds_final_lr_and_warns_once(tmp_path):
    rec = Recorder()
    sc = SuperConvergence(1.0, total_steps=5, three_phase=False)
    with pytest.warns(UserWarning, match="past the planned 5") as record:
        _fit(tmp_path, callbacks=[sc, rec], max_steps=9)
    assert sum("past the planned" in str(w.message) for w in record) == 1
    lrs = [r[0] for r in rec.lrs]
    ref, _ = _torch_one_cycle(5, max_lr=1.0, pct_start=0.3, three_phase=False)
    assert lrs[:5] == pytest.approx(ref, abs=1e-12, rel=0)
    assert lrs[5:] == [lrs[4]] * 4 and lrs[4] == pytest.approx(1.0 / 25 / 1e4, rel=1e-12)


# ----------------------------------------------------------------------------------------------------
# resume, groups, accumulation, momentum rule, finder
# ----------------------------------------------------------------------------------------------------
class Killed(Exception):
    pass


class Kill(Callback):
    """Crash the run before optimizer step ``at`` (after the checkpoint of step ``at`` was written)."""

    def __init__(self, at):
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            raise Killed


def _fit_killed(tmp_path, **kwargs):
    with pytest.raises(Killed):
        _fit(tmp_path, **kwargs)


def test_resume_after_kill_reproduces_the_uninterrupted_sequence(tmp_path):
    full = Recorder()
    _fit(tmp_path / "full", callbacks=[SuperConvergence(2.0, anneal="cos"), full], max_epochs=2)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1, filename="{step}")
    first = Recorder()
    _fit_killed(tmp_path / "a", callbacks=[SuperConvergence(2.0, anneal="cos"), first, ckpt, Kill(at=7)], max_epochs=2)
    assert len(first.lrs) == 7
    second = Recorder()
    _fit(tmp_path / "b", callbacks=[SuperConvergence(2.0, anneal="cos"), second], max_epochs=2,
         ckpt_path=str(tmp_path / "ckpt" / "step=7.ckpt"))
    assert first.lrs + second.lrs == full.lrs  # bit for bit
    assert first.momenta + second.momenta == full.momenta


def test_resume_with_more_epochs_stretches_the_rest(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1, filename="{step}")
    first = Recorder()
    _fit_killed(tmp_path / "a", callbacks=[SuperConvergence(1.0), first, ckpt, Kill(at=4)], max_epochs=2)  # plan: 16
    second = Recorder()
    sc = SuperConvergence(1.0)
    with pytest.warns(UserWarning, match="length changed from 16 to 32"):
        _fit(tmp_path / "b", callbacks=[sc, second], max_epochs=4, ckpt_path=str(tmp_path / "ckpt" / "step=4.ckpt"))
    lrs = [r[0] for r in second.lrs]
    assert len(lrs) == 28
    # continuous at the resume point: step 4 keeps the lr the 16-step schedule gives it
    ref16, _ = _torch_one_cycle(16, max_lr=1.0, pct_start=0.45, three_phase=True, anneal_strategy="linear")
    assert lrs[0] == pytest.approx(ref16[4], rel=1e-12)
    assert max(lrs) == pytest.approx(1.0, rel=0.05)  # the peak is still ahead, now later
    assert lrs.index(max(lrs)) > 16 * 0.45 - 4
    assert lrs[-1] == pytest.approx(1.0 / 25 / 1e4, rel=1e-9)  # and the run still ends annihilated


def test_per_group_ratios_are_preserved(tmp_path):
    rec = Recorder()
    _fit(tmp_path, model=TinyModel(group_lrs=[0.5, 0.05]), callbacks=[SuperConvergence(2.0), rec], max_steps=20)
    for a, b in rec.lrs:
        assert b / a == pytest.approx(0.1, rel=1e-12)
    assert max(a for a, _ in rec.lrs) == pytest.approx(2.0, rel=1e-12)


def test_explicit_per_group_max_lr(tmp_path):
    rec = Recorder()
    _fit(tmp_path, model=TinyModel(group_lrs=[0.5, 0.05]), callbacks=[SuperConvergence([1.0, 3.0]), rec],
         max_steps=20)
    assert max(a for a, _ in rec.lrs) == 1.0 and max(b for _, b in rec.lrs) == 3.0


def test_gradient_accumulation_one_value_per_optimizer_step(tmp_path):
    rec = Recorder()
    _fit(tmp_path, callbacks=[SuperConvergence(1.0, three_phase=False), rec], max_epochs=2,
         accumulate_grad_batches=2)
    ref, _ = _torch_one_cycle(8, max_lr=1.0, pct_start=0.3)  # 16 batches / 2
    assert [r[0] for r in rec.lrs] == pytest.approx(ref, abs=1e-12, rel=0)
    assert rec.micro_lrs[0::2] == rec.micro_lrs[1::2] == [r[0] for r in rec.lrs]


def test_never_switches_momentum_on_and_cycle_momentum_false(tmp_path):
    rec = Recorder()
    # the same rule as CyclicalLR: cycling momentum an optimizer does not have is refused, never switched on
    with pytest.raises(ValueError, match=r"got SGD whose param group 0 has momentum 0\.0 \(0 or absent\)"):
        _fit(tmp_path / "a", model=TinyModel(momentum=0.0), callbacks=[SuperConvergence(1.0, cycle_momentum=True), rec],
             max_steps=5)
    assert rec.lrs == []
    # the default (cycle_momentum=None) cycles only a momentum it finds: SGD without one keeps 0
    _fit(tmp_path / "d", model=TinyModel(momentum=0.0), callbacks=[SuperConvergence(1.0), rec], max_steps=5)
    assert rec.momenta == [[0.0]] * 5
    rec = Recorder()
    _fit(tmp_path / "c", model=TinyModel(momentum=0.0), callbacks=[SuperConvergence(1.0, cycle_momentum=False), rec],
         max_steps=5)
    assert all(m == [0.0] for m in rec.momenta)
    rec = Recorder()
    _fit(tmp_path / "b", callbacks=[SuperConvergence(1.0, cycle_momentum=False), rec], max_steps=5)
    assert all(m == [0.9] for m in rec.momenta)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_max_lr_from_finder(tmp_path):
    # a sweep whose curve reads well on this model (an untrusted one is refused: the test below)
    finder = LRRangeFinder(min_lr=1e-3, max_lr=10.0, num_steps=40, save_results=False)
    rec = Recorder()
    sc = SuperConvergence("finder", three_phase=False)
    _fit(tmp_path, callbacks=[sc, finder, rec], max_steps=10)  # listed before the finder on purpose
    result = finder.result
    assert result.trusted and result.clr_bounds[0] <= result.suggestion <= result.clr_bounds[1]
    expected = result.clr_bounds[1] if result.clr_bounds is not None else result.suggestion
    assert sc.schedule.max_lr == (pytest.approx(expected, rel=1e-12),)
    ref, _ = _torch_one_cycle(10, max_lr=expected, pct_start=0.3)
    assert [r[0] for r in rec.lrs] == pytest.approx(ref, abs=1e-12, rel=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_lr": "auto"}, r"Expected `max_lr` to be a positive number, a sequence of them \(one per param "
                             r"group\) or 'finder', got 'auto'"),
        ({"max_lr": "finder"}, None),
        ({"max_lr": -1.0}, "Expected `max_lr` to be a positive number"),
        ({"max_lr": [1.0, 0.0]}, "Expected `max_lr` to be a positive number"),
        ({"max_lr": float("inf")}, "Expected `max_lr` to be a positive number"),
        ({"max_lr": [1.0, "x"]}, "Expected `max_lr` to be a positive number"),
        ({"max_lr": 1.0, "total_steps": 0}, "Expected `total_steps` to be a positive integer"),
        ({"max_lr": 1.0, "total_steps": 2.5}, "Expected `total_steps` to be a positive integer"),
        ({"max_lr": 1.0, "div_factor": 0}, "Expected `div_factor` to be a positive finite number"),
        ({"max_lr": 1.0, "final_div_factor": -1}, "Expected `final_div_factor` to be a positive finite number"),
        ({"max_lr": 1.0, "anneal": "exp"}, "Expected `anneal` to be one of"),
        ({"max_lr": 1.0, "pct_start": 0.6},
         r"Expected `pct_start` to be a number in \(0, 0.5\], got 0.6: the range with three_phase=True$"),
        ({"max_lr": 1.0, "pct_start": 0.0, "three_phase": False}, r"Expected `pct_start` to be a number in \(0, 1\)"),
        ({"max_lr": 1.0, "annihilation_pct": 0.1, "three_phase": False}, "Expected `annihilation_pct=None`"),
        ({"max_lr": 1.0, "annihilation_pct": 1.0}, r"Expected `annihilation_pct` to be a number in \[0, 1\)"),
        ({"max_lr": 1.0, "annihilation_pct": 0.2, "pct_start": 0.3}, "Expected `2 \\* pct_start"),
        ({"max_lr": 1.0, "base_momentum": 0.96}, "Expected `0 <= base_momentum <= max_momentum <= 1`"),
        ({"max_lr": 1.0, "log_every_n_steps": 0}, "Expected `log_every_n_steps` to be a positive integer"),
        ({"max_lr": 1.0, "interpolation_points": 1}, "Expected `interpolation_points` to be an integer >= 2"),
        ({"max_lr": 1.0, "num_batches": 0}, "Expected `num_batches` to be a positive"),
        ({"max_lr": 1.0, "interpolation_range": (0.2, 1.0)}, "Expected `interpolation_range` to be"),
        ({"max_lr": 1.0, "interpolation_range": (0.0,)}, "Expected `interpolation_range` to be"),
    ],
)
def test_constructor_errors(kwargs, match):
    if match is None:  # valid: no error
        SuperConvergence(**kwargs)
        return
    with pytest.raises(ValueError, match=match):
        SuperConvergence(**kwargs)


def test_annihilation_pct_sets_pct_start():
    assert SuperConvergence(1.0, annihilation_pct=0.2).pct_start == pytest.approx(0.4)
    assert SuperConvergence(1.0, annihilation_pct=0.2, pct_start=0.4).pct_start == 0.4


@pytest.mark.parametrize(
    ("model", "sc", "trainer_kwargs", "match"),
    [
        (None, {"max_lr": "finder"}, {"max_steps": 2}, "Expected an `LRRangeFinder`"),
        (None, {"max_lr": [1.0, 2.0]}, {"max_steps": 2}, "Expected `max_lr` to have one value per param group"),
        (None, {"max_lr": 1.0}, {"max_epochs": -1}, "Expected `total_steps` for an unbounded run"),
    ],
)
def test_fit_start_errors(tmp_path, model, sc, trainer_kwargs, match):
    with pytest.raises(ValueError, match=match):
        _fit(tmp_path, callbacks=[SuperConvergence(**sc)], **trainer_kwargs)


def test_state_dict_pickles_and_round_trips():
    import pickle

    sc = SuperConvergence(1.0)
    sc.schedule = OneCycle(10, (1.0,), anneal="linear", three_phase=True)
    clone = pickle.loads(pickle.dumps(sc))
    other = SuperConvergence(1.0)
    other.load_state_dict(clone.state_dict())
    assert other.lr_at(3) == sc.lr_at(3) and other.momentum_at(3) == sc.momentum_at(3)
    assert other.schedule == sc.schedule
    with pytest.warns(UserWarning, match="different schedule shape"):
        SuperConvergence(1.0, anneal="cos").load_state_dict(sc.state_dict())
    # a checkpoint of the first release (its own keys) resumes the same sequence, stretched as it was
    old = {"max_lrs": [1.0], "schedule_total": 10, "run_total": 12, "anchor_step": 4, "anchor_pos": 4.0,
           "shape": sc.schedule.shape(), "init_state": None}
    legacy = SuperConvergence(1.0)
    legacy.load_state_dict(old)
    assert legacy.schedule == sc.schedule.stretched(4, 12)
    assert legacy.lr_at(11) == sc.lr_at(9)


# ----------------------------------------------------------------------------------------------------
# interpolation probe (1702.04283) and logging
# ----------------------------------------------------------------------------------------------------
class BNModel(L.LightningModule):
    """Conv + BatchNorm so that the probe has running statistics to interpolate."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(48, 1, 6, 6, generator=g)
        self.y = torch.randint(0, 3, (48,), generator=g)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", F.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)

    def train_dataloader(self):
        return DataLoader(TensorDataset(self.x[:32], self.y[:32]), batch_size=8)

    def val_dataloader(self):
        return DataLoader(TensorDataset(self.x[32:], self.y[32:]), batch_size=8)


def _evaluate(model, batches):
    was = model.training
    model.eval()
    with torch.no_grad():
        losses = [F.cross_entropy(model(x), y, reduction="sum") for x, y in batches]
        correct = [(model(x).argmax(-1) == y).sum() for x, y in batches]
    model.train(was)
    n = sum(len(y) for _, y in batches)
    return float(sum(losses)) / n, float(sum(correct)) / n


class StateBeforeProbe(Callback):
    def on_train_end(self, trainer, pl_module):
        self.state = {k: v.clone() for k, v in pl_module.state_dict().items()}
        self.training = {n: m.training for n, m in pl_module.named_modules()}
        self.rng = torch.get_rng_state()


def test_interpolation_probe_endpoints_identity_json_and_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    model = BNModel()
    init = copy.deepcopy(model)
    before = StateBeforeProbe()
    sc = SuperConvergence(0.5, interpolation_probe=True, interpolation_points=5, num_batches=2,
                          interpolation_range=(-0.25, 1.25), log_every_n_steps=1)
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer, _ = _fit(tmp_path, model=model, callbacks=[before, sc], max_steps=8, logger=logger,
                      val_check_interval=4)

    result = sc.interpolation
    alphas = list(result.axes[0])
    assert alphas == [-0.25, 0.0, 0.125, 0.5, 0.875, 1.0, 1.25]
    i0, i1 = alphas.index(0.0), alphas.index(1.0)
    train_batches = [(model.x[:8], model.y[:8]), (model.x[8:16], model.y[8:16])]
    val_batches = [(model.x[32:40], model.y[32:40]), (model.x[40:48], model.y[40:48])]
    for split, batches in (("train", train_batches), ("val", val_batches)):
        init_loss, init_acc = _evaluate(init, batches)
        final_loss, final_acc = _evaluate(model, batches)
        assert result[f"{split}_loss"][i0] == pytest.approx(init_loss, rel=1e-6)
        assert result[f"{split}_accuracy"][i0] == pytest.approx(init_acc)
        assert result[f"{split}_loss"][i1] == pytest.approx(final_loss, rel=1e-5)
        assert result[f"{split}_accuracy"][i1] == pytest.approx(final_acc)
        assert init_loss != pytest.approx(final_loss, rel=1e-3)  # training moved it: a test that can fail

    # the model (weights, BN statistics, flags) and the RNG come back bit-identical
    after = model.state_dict()
    assert before.state.keys() == after.keys()
    assert all(torch.equal(before.state[k], after[k]) for k in after)
    assert {n: m.training for n, m in model.named_modules()} == before.training
    assert torch.equal(torch.get_rng_state(), before.rng)

    # one interpolation in the package: LossLandscapeProbe(view="interpolate")'s files and tags
    (npz,) = (Path(trainer.log_dir) / "landscape").glob("interpolate_epoch*.npz")
    saved = load_surface(npz)
    assert list(saved.axes[0]) == alphas
    assert saved["train_loss"] == pytest.approx(list(result["train_loss"]))
    assert saved.metadata["interpolation"]["alpha=0"] == "start"

    acc = EventAccumulator(trainer.log_dir, size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert "landscape/interpolation" in tags["images"]
    for tag in ("schedule/lr", "schedule/momentum", "landscape/interpolation/train_loss",
                "landscape/interpolation/val_accuracy", "landscape/interpolation/alpha"):
        assert tag in tags["scalars"], tag
    lrs = [e.value for e in acc.Scalars("schedule/lr")]
    ref, _ = _torch_one_cycle(8, max_lr=0.5, pct_start=0.45, three_phase=True, anneal_strategy="linear")
    assert lrs == pytest.approx(ref, rel=1e-6)  # float32 in the event file


def test_interpolation_start_survives_resume(tmp_path):
    torch.manual_seed(0)
    model = BNModel()
    init = copy.deepcopy(model)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1, save_top_k=-1, filename="{step}")
    kw = dict(interpolation_probe=True, interpolation_points=2, num_batches=1, interpolation_range=(0, 1))
    _fit_killed(tmp_path / "a", model=model, callbacks=[SuperConvergence(0.5, **kw), ckpt, Kill(at=3)], max_steps=6)
    resumed = BNModel()  # a fresh init: the line must still start at the first run's init
    sc = SuperConvergence(0.5, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _fit(tmp_path / "b", model=resumed, callbacks=[sc], max_steps=6,
             ckpt_path=str(tmp_path / "ckpt" / "step=3.ckpt"))
    init_loss, _ = _evaluate(init, [(model.x[:8], model.y[:8])])
    assert sc.interpolation["train_loss"][0] == pytest.approx(init_loss, rel=1e-6)


# ----------------------------------------------------------------------------------------------------
# DDP: two CPU processes (gloo) see the same schedule
# ----------------------------------------------------------------------------------------------------
_DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning as L, torch, torch.nn.functional as F
    from lightning.pytorch.callbacks import Callback
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from lightning_papers.callbacks import SuperConvergence

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = nn.Linear(4, 3)
        def forward(self, x):
            return self.net(x)
        def training_step(self, batch, batch_idx):
            return F.cross_entropy(self(batch[0]), batch[1])
        def validation_step(self, batch, batch_idx):
            pass
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        def _data(self):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(64, 4, generator=g)
            return TensorDataset(x, (x[:, 0] > 0).long())
        def train_dataloader(self):
            return DataLoader(self._data(), batch_size=4)
        def val_dataloader(self):
            return DataLoader(self._data(), batch_size=4)

    class Recorder(Callback):
        lrs = []
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            self.lrs.append([optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["momentum"]])

    if __name__ == "__main__":
        torch.manual_seed(0)
        rec = Recorder()
        sc = SuperConvergence(1.0, interpolation_probe=True, interpolation_points=3, num_batches=2)
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                            callbacks=[sc, rec], enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, default_root_dir=sys.argv[1], num_sanity_val_steps=0)
        trainer.fit(Model())
        out = {"lrs": rec.lrs, "total": sc.schedule.run_total, "interp": sc.interpolation["train_loss"].tolist()}
        with open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(out, f)
        torch.distributed.destroy_process_group()  # see tests/conftest.py::run_script
    """
)


@pytest.mark.timeout(210)
def test_ddp_two_processes_identical_lrs(tmp_path, run_script):
    run_script(_DDP_SCRIPT, "ddp_sc.py")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["total"] == ranks[1]["total"] == 16  # 64 samples / 2 ranks / batch 4 x 2 epochs
    assert ranks[0]["lrs"] == ranks[1]["lrs"]
    ref_lrs, ref_mom = _torch_one_cycle(16, max_lr=1.0, pct_start=0.45, three_phase=True, anneal_strategy="linear")
    assert [v[0] for v in ranks[0]["lrs"]] == pytest.approx(ref_lrs, abs=1e-12, rel=0)
    assert [v[1] for v in ranks[0]["lrs"]] == pytest.approx(ref_mom, abs=1e-12, rel=0)
    assert ranks[0]["interp"] == ranks[1]["interp"]  # the probe's means are reduced over ranks


def test_max_lr_from_an_untrusted_range_test_is_refused_before_the_first_step(tmp_path):
    # 1e-7 .. 1e-6 teaches the model nothing: the curve has no descent and its "upper bound" is noise
    finder = LRRangeFinder(min_lr=1e-7, max_lr=1e-6, num_steps=20, save_results=False)
    sc, rec = SuperConvergence("finder", three_phase=False), Recorder()
    with pytest.warns(UserWarning, match=r"^LR range test at epoch 0: its curve cannot be trusted \(no descent\)"), \
            pytest.raises(ValueError, match=r"^SuperConvergence: Expected an LR range test whose curve can be read, "
                                            r"got one that cannot \(no descent\); lengthen or widen the sweep .* or "
                                            r"give the learning rates as numbers[^\n]*$"):
        _fit(tmp_path, callbacks=[finder, sc, rec], max_steps=6)
    assert rec.lrs == [] and sc.schedule is None


def test_max_lr_falls_back_to_fallback_lr_when_the_range_test_is_refused(tmp_path):
    finder = LRRangeFinder(min_lr=1e-7, max_lr=1e-6, num_steps=20, save_results=False)
    sc, rec = SuperConvergence("finder", three_phase=False, fallback_lr=0.5), Recorder()
    with pytest.warns(UserWarning) as record:
        _fit(tmp_path, callbacks=[finder, sc, rec], max_steps=6)
    # the verdict once (the finder's, with the fix), and the decision once (the schedule's), each one short line
    ours = [str(w.message) for w in record if "range test" in str(w.message)]
    assert ours == ["LR range test at epoch 0: its curve cannot be trusted (no descent); lengthen or widen the sweep "
                    "(the numbers are in `result.problems`)",
                    "SuperConvergence: the LR range test is refused (no descent); using the given fallback learning "
                    "rates"]
    assert all(len(m) <= 200 for m in ours)
    assert [r[0] for r in rec.lrs] == pytest.approx(_torch_one_cycle(6, max_lr=0.5)[0], abs=1e-12, rel=0)
    with pytest.raises(ValueError, match=r"Expected `fallback_lr` only with max_lr='finder', got max_lr=1.0"):
        SuperConvergence(1.0, fallback_lr=0.5)
    with pytest.raises(ValueError, match=r"Expected `fallback_lr` to be a positive number"):
        SuperConvergence("finder", fallback_lr=-1.0)


def test_interpolation_batches_is_deprecated_for_num_batches():
    with pytest.warns(DeprecationWarning, match=r"^`interpolation_batches` is deprecated: pass `num_batches=2`$"):
        old = SuperConvergence(1.0, interpolation_probe=True, interpolation_batches=2)
    assert old._probe.num_batches == SuperConvergence(1.0, num_batches=2)._probe.num_batches == 2
    with pytest.raises(ValueError, match=r"^Expected `num_batches` to be given once"):
        SuperConvergence(1.0, num_batches=3, interpolation_batches=2)
