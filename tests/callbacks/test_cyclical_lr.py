import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_papers.callbacks import CyclicalLR, LRRangeFinder, owns_learning_rate


def _dataset(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return TensorDataset(x, (x @ torch.randn(6, 3, generator=g)).argmax(dim=1))


class TinyModel(L.LightningModule):
    def __init__(self, optimizer="sgd", momentum=0.9, two_groups=False, n=64):
        super().__init__()
        self.optimizer, self.momentum, self.two_groups, self.n = optimizer, momentum, two_groups, n
        self.lr = 0.01
        self.body = nn.Linear(6, 8)
        self.head = nn.Linear(8, 3)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.head(torch.relu(self.body(x))), y)

    def configure_optimizers(self):
        params = (
            [{"params": self.body.parameters()}, {"params": self.head.parameters()}]
            if self.two_groups
            else self.parameters()
        )
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        if self.optimizer == "adagrad":
            return torch.optim.Adagrad(params, lr=self.lr)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)

    def train_dataloader(self):
        return DataLoader(_dataset(self.n), batch_size=8)


class Recorder(Callback):
    """Records what each optimizer step actually used."""

    def __init__(self):
        self.lrs, self.momenta = [], []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        groups = optimizer.param_groups
        self.lrs.append([g["lr"] for g in groups])
        self.momenta.append([g["betas"][0] if "betas" in g else g["momentum"] for g in groups])


class MemoryLogger(Logger):
    def __init__(self):
        super().__init__()
        self.metrics = []

    @property
    def name(self):
        return "memory"

    @property
    def version(self):
        return 0

    def log_hyperparams(self, params, *args, **kwargs):
        pass

    def log_metrics(self, metrics, step=None):
        self.metrics.append((step, dict(metrics)))


def _fit(tmp_path, callbacks, model=None, max_steps=20, ckpt_path=None, logger=False, **kwargs):
    L.seed_everything(0, verbose=False)
    model = model or TinyModel()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        callbacks=callbacks,
        logger=logger,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        **kwargs,
    )
    trainer.fit(model, ckpt_path=ckpt_path)
    return trainer


def _torch_reference(steps, optimizer="sgd", n_groups=1, optimizer_steps=True, **kwargs):
    params = [nn.Parameter(torch.zeros(1)) for _ in range(n_groups)]
    groups = [{"params": [p]} for p in params]
    opt = torch.optim.Adam(groups, lr=0.1) if optimizer == "adam" else torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, **kwargs)
    lrs, momenta = [], []
    for step in range(steps):
        lrs.append([g["lr"] for g in opt.param_groups])
        momenta.append([g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups])
        if optimizer_steps or step == 0:  # the schedule does not depend on the (gradient-free) steps
            opt.step()
        sched.step()
    return lrs, momenta


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.93)])
@pytest.mark.parametrize("accumulate", [1, 2])
def test_matches_torch_cycliclr_exactly(tmp_path, mode, gamma, accumulate):
    recorder = Recorder()
    cb = CyclicalLR(1e-3, 6e-3, step_size=3, policy=mode, gamma=gamma, cycle_momentum=True)
    _fit(tmp_path, [cb, recorder], max_steps=18, accumulate_grad_batches=accumulate)
    lrs, momenta = _torch_reference(18, base_lr=1e-3, max_lr=6e-3, step_size_up=3, mode=mode, gamma=gamma)
    assert recorder.lrs == lrs
    assert recorder.momenta == momenta


def test_per_group_bounds_adam_betas_and_logging(tmp_path):
    recorder, logger = Recorder(), MemoryLogger()
    cb = CyclicalLR(
        [1e-4, 1e-3],
        [1e-3, 1e-2],
        step_size=4,
        step_size_down=2,
        cycle_momentum=True,
        base_momentum=0.85,
        max_momentum=0.95,
        log_every_n_steps=5,
    )
    _fit(tmp_path, [cb, recorder], model=TinyModel(optimizer="adam", two_groups=True), max_steps=12, logger=logger)
    lrs, momenta = _torch_reference(
        12,
        optimizer="adam",
        n_groups=2,
        base_lr=[1e-4, 1e-3],
        max_lr=[1e-3, 1e-2],
        step_size_up=4,
        step_size_down=2,
        base_momentum=0.85,
        max_momentum=0.95,
    )
    assert recorder.lrs == lrs
    assert recorder.momenta == momenta
    logged = [(step, m) for step, m in logger.metrics if any(k.startswith("schedule/") for k in m)]
    assert [step for step, _ in logged] == [0, 5, 10]
    step5 = logged[1][1]
    assert step5.keys() == {"schedule/lr/pg0", "schedule/lr/pg1", "schedule/momentum/pg0", "schedule/momentum/pg1"}
    assert step5["schedule/lr/pg1"] == lrs[5][1]
    assert step5["schedule/momentum/pg0"] == momenta[5][0]


@pytest.mark.parametrize(
    "optimizer, match",
    [
        ("sgd", r"got SGD whose param group 0 has momentum 0\.0 \(0 or absent\)"),
        ("adagrad", r"got Adagrad whose param group 0 has momentum absent \(0 or absent\)"),
    ],
)
def test_momentum_cycling_without_momentum_is_an_error(tmp_path, optimizer, match):
    recorder = Recorder()
    cb = CyclicalLR(1e-3, 6e-3, step_size=3, cycle_momentum=True)
    with pytest.raises(ValueError, match=match) as err:
        _fit(tmp_path, [cb, recorder], model=TinyModel(optimizer=optimizer, momentum=0.0), max_steps=6)
    assert "Expected an optimizer with momentum for `cycle_momentum=True`" in str(err.value)
    assert "`momentum>0`" in str(err.value) and "`cycle_momentum=False`" in str(err.value)
    assert recorder.lrs == []  # refused before the first step


def test_never_switches_momentum_on(tmp_path):
    recorder = Recorder()
    cb = CyclicalLR(1e-3, 6e-3, step_size=3)  # lr only: SGD without momentum is fine
    _fit(tmp_path, [cb, recorder], model=TinyModel(momentum=0.0), max_steps=6)
    assert all(m == [0.0] for m in recorder.momenta)  # torch's CyclicLR would have set 0.9
    assert recorder.lrs == _torch_reference(6, base_lr=1e-3, max_lr=6e-3, step_size_up=3)[0]


@pytest.mark.parametrize(
    "kwargs, fit_kwargs, match",
    [
        ({"step_size": 3}, {"max_steps": 10}, r"run's 10 optimizer steps do not end on a cycle boundary \(one cycle "
         r"is 6 steps = 2 x step_size\); set `max_steps` or `max_epochs` for 6 or 12 steps$"),
        ({"step_size": 4, "step_size_down": 2}, {"max_steps": 5}, r"run's 5 optimizer .*one cycle is 6 steps.*"
         r"for 6 steps$"),
        # 8 batches per epoch, 3 epochs = 24 steps; 2-epoch half cycle = 16 steps, cycle = 32
        ({"step_size_epochs": 2}, {"max_epochs": 3, "max_steps": -1}, r"run's 24 optimizer .* for 32 steps"),
    ],
)
def test_warns_when_the_run_does_not_end_on_a_cycle_boundary(tmp_path, kwargs, fit_kwargs, match):
    cb = CyclicalLR(1e-3, 6e-3, **kwargs)
    with pytest.warns(UserWarning, match=match) as record:
        _fit(tmp_path, [cb], **fit_kwargs)
    assert sum("cycle boundary" in str(w.message) for w in record) == 1  # once


@pytest.mark.parametrize(
    "kwargs, fit_kwargs",
    [
        ({"step_size": 3}, {"max_steps": 12}),
        ({"step_size": 5, "step_size_down": 3}, {"max_steps": 8}),
        ({"step_size_epochs": 0.5}, {"max_epochs": 2, "max_steps": -1}),  # 8 steps per epoch, cycle = 1 epoch
    ],
)
def test_no_cycle_boundary_warning_on_whole_cycles(tmp_path, kwargs, fit_kwargs):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        _fit(tmp_path, [CyclicalLR(1e-3, 6e-3, **kwargs)], **fit_kwargs)
    assert not [w for w in record if "cycle boundary" in str(w.message)]


class _FakeTrainer(SimpleNamespace):
    """Just what ``CyclicalLR``'s hooks read: lets a test drive >= 10,000 optimizer steps in well under a second
    per configuration (a real Trainer would spend minutes in its loop)."""


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0), ("exp_range", 0.9997)])
@pytest.mark.parametrize(
    "step_size_up, step_size_down, optimizer",
    [(5, None, "sgd"), (37, 11, "adam"), (2000, None, "sgd")],
)
def test_callback_matches_torch_cycliclr_over_10k_steps_per_group(mode, gamma, step_size_up, step_size_down, optimizer):
    base_lr, max_lr = [1e-4, 1e-3, 0.01], [1e-3, 6e-3, 0.5]
    cycle = step_size_up + (step_size_down or step_size_up)
    steps = -(-10_000 // cycle) * cycle  # >= 10,000 optimizer steps, ending on a cycle boundary
    momentum = {"base_momentum": 0.8, "max_momentum": 0.95}
    kwargs = dict(step_size_down=step_size_down, mode=mode, gamma=gamma, **momentum)
    ref_lrs, ref_momenta = _torch_reference(
        steps, optimizer, n_groups=3, optimizer_steps=False,
        base_lr=base_lr, max_lr=max_lr, step_size_up=step_size_up, **kwargs,
    )

    params = [nn.Parameter(torch.zeros(1)) for _ in range(3)]
    groups = [{"params": [p]} for p in params]
    opt = torch.optim.Adam(groups, lr=0.1) if optimizer == "adam" else torch.optim.SGD(groups, lr=0.1, momentum=0.5)
    trainer = _FakeTrainer(
        optimizers=[opt], callbacks=[], loggers=[], log_every_n_steps=50, global_step=0,
        estimated_stepping_batches=steps, num_training_batches=steps, accumulate_grad_batches=1,
        lr_scheduler_configs=[], lightning_module=SimpleNamespace(automatic_optimization=True),
    )
    ours = {("policy" if k == "mode" else k): v for k, v in kwargs.items()}
    cb = CyclicalLR(base_lr, max_lr, step_size=step_size_up, cycle_momentum=True, **ours)
    lrs, momenta = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a whole number of cycles: no warning of any kind
        cb.on_fit_start(trainer, None)
        cb.on_train_start(trainer, None)
        for step in range(steps):
            trainer.global_step = step
            cb.on_train_batch_start(trainer, None, None, step)
            lrs.append([g["lr"] for g in opt.param_groups])
            momenta.append([g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups])
            cb.on_before_optimizer_step(trainer, None, opt)  # each optimizer counts its own steps
    assert len(lrs) == len(ref_lrs) >= 10_000
    lr_err = max(abs(a - b) for ours, ref in zip(lrs, ref_lrs) for a, b in zip(ours, ref))
    momentum_err = max(abs(a - b) for ours, ref in zip(momenta, ref_momenta) for a, b in zip(ours, ref))
    assert lr_err <= 1e-12
    assert momentum_err <= 1e-12
    # the sequences really cycle (a constant lr would pass the comparison only if torch's were constant too)
    assert min(lr[2] for lr in lrs) == 0.01 and max(lr[2] for lr in lrs) > 0.25
    assert max(m[0] for m in momenta) == 0.95 and min(m[0] for m in momenta) < 0.9


def test_step_size_in_epochs(tmp_path):
    recorder = Recorder()
    cb = CyclicalLR(1e-3, 6e-3, step_size_epochs=0.5)  # 8 batches per epoch, accumulate 2 -> 4 steps/epoch
    _fit(tmp_path, [cb, recorder], max_steps=12, accumulate_grad_batches=2)
    assert cb.schedule.step_size_up == 2.0 and cb.state_dict()["schedule"]["step_size_up"] == 2.0
    assert recorder.lrs == _torch_reference(12, base_lr=1e-3, max_lr=6e-3, step_size_up=2)[0]


def test_bounds_from_finder(tmp_path):
    recorder = Recorder()
    # a sweep whose curve reads well on this model: an untrusted one is refused (the test below)
    finder = LRRangeFinder(min_lr=1e-3, max_lr=3.0, num_steps=30, save_results=False)
    cb = CyclicalLR("finder", "finder", step_size=4)
    _fit(tmp_path, [cb, finder, recorder], max_steps=8)
    assert finder.result.trusted
    base, peak = finder.result.clr_bounds
    assert base <= finder.result.suggestion <= peak  # one reading: the bounds bracket the suggestion
    assert cb.schedule.base_lr == (base,)
    assert cb.schedule.max_lr == (peak,)
    assert recorder.lrs[0] == [base]
    assert recorder.lrs[4] == [pytest.approx(peak)]


@pytest.mark.filterwarnings("ignore:.*cycle boundary:UserWarning")
def test_crash_then_resume_continues_the_cycle(tmp_path):
    def make():
        return CyclicalLR(1e-3, 6e-3, step_size_epochs=0.75, policy="exp_range", gamma=0.97, cycle_momentum=True)

    full = Recorder()
    _fit(tmp_path / "full", [make(), full], max_steps=20)

    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=5, save_top_k=-1)
    first = Recorder()
    _fit(tmp_path / "a", [make(), first, ckpt], max_steps=10)
    path = tmp_path / "ckpt" / "epoch=0-step=5.ckpt"
    assert path.exists()

    resumed = Recorder()
    cb = make()
    _fit(tmp_path / "b", [cb, resumed], max_steps=20, ckpt_path=str(path))
    assert first.lrs == full.lrs[:10]
    assert resumed.lrs == full.lrs[5:]
    assert resumed.momenta == full.momenta[5:]
    assert cb.schedule.step_size_up == 6.0


def test_state_dict_round_trip():
    cb = CyclicalLR(1e-3, 6e-3, step_size=5)
    state = {
        "base_lrs": [0.1],
        "max_lrs": [0.5],
        "step_size_up": 7.0,
        "step_size_down": 3.0,
        "mode": "triangular",
        "gamma": 1.0,
    }
    cb.load_state_dict(state)  # a checkpoint of the first release
    assert cb.lr_at(7) == [0.5] and cb.lr_at(10) == [0.1]
    restored = CyclicalLR(1e-3, 6e-3, step_size=5)
    restored.load_state_dict(cb.state_dict())
    assert restored.schedule == cb.schedule and restored.state_dict() == cb.state_dict()


def test_owns_learning_rate():
    assert owns_learning_rate([CyclicalLR(1e-3, 1e-2, step_size=10)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"policy": "cosine"}, "Expected `policy` to be one of"),
        ({"bounds": "auto"}, "Expected `bounds` to be None or 'finder'"),
        ({"step_size": None}, "Expected exactly one of `step_size` and `step_size_epochs`"),
        ({"step_size_epochs": 2}, "Expected exactly one of `step_size` and `step_size_epochs`"),
        ({"step_size": 0}, "Expected `step_size` to be a positive"),
        ({"step_size_down": -1}, "Expected `step_size_down` to be a positive"),
        ({"base_lr": None}, r"Expected `base_lr` and `max_lr` \(numbers or 'finder'\)"),
        ({"base_lr": "auto"}, "Expected `base_lr` to be a positive number, a sequence of them .* or 'finder'"),
        ({"base_lr": 0.0}, "Expected `base_lr` to be a positive number"),
        ({"max_lr": float("inf")}, "Expected `max_lr` to be a positive number"),
        ({"base_lr": 0.1, "max_lr": 0.01}, "Expected `base_lr <= max_lr`"),
        ({"base_lr": [1e-3, 1e-3], "max_lr": [1e-2, 1e-2, 1e-2]}, "Expected `base_lr` and `max_lr` of the same"),
        ({"gamma": 0.0}, "Expected `gamma` to be a positive finite number"),
        ({"base_momentum": 0.95, "max_momentum": 0.9}, "Expected `0 <= base_momentum <= max_momentum <= 1`"),
        ({"log_every_n_steps": 0}, "Expected `log_every_n_steps` to be a positive integer"),
    ],
)
def test_constructor_errors(kwargs, match):
    args = {"base_lr": 1e-3, "max_lr": 1e-2, "step_size": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        CyclicalLR(**args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"base_lr": [1e-3, 1e-3, 1e-3], "max_lr": 1e-2}, "Expected `base_lr` to have one value per param group"),
        ({"base_lr": "finder", "max_lr": "finder"}, "Expected an `LRRangeFinder`"),
        ({"base_lr": 1e-4, "max_lr": "finder"}, "Expected an `LRRangeFinder`"),
    ],
)
def test_fit_start_errors(tmp_path, kwargs, match):
    cb = CyclicalLR(step_size=4, **kwargs)
    with pytest.raises(ValueError, match=match):
        _fit(tmp_path, [cb], model=TinyModel(two_groups=True), max_steps=2)


@pytest.mark.parametrize("deprecated", [True, False])
def test_finder_bounds_with_fallback_numbers_old_and_new_spelling(tmp_path, deprecated):
    """`bounds="finder"` (deprecated) and its replacement `fallback_lr=` give the same schedules: the range test's
    bounds when it reads well, the numbers given when it suggests nothing."""

    def make():
        if not deprecated:
            return CyclicalLR("finder", "finder", step_size=4, fallback_lr=(0.01, 0.1))
        with pytest.warns(DeprecationWarning, match=r"base_lr='finder', max_lr='finder'` and the numbers as "
                                                     r"`fallback_lr=\(base_lr, max_lr\)`"):
            return CyclicalLR(0.01, 0.1, step_size=4, bounds="finder")

    recorder = Recorder()
    # a sweep whose curve reads well on this model (1e-4 .. 1 over 20 steps reads its bounds off the flat start,
    # and is refused in favour of the numbers: test_bounds_from_an_untrusted_range_test_warn_or_fall_back)
    finder = LRRangeFinder(min_lr=1e-3, max_lr=3.0, num_steps=30, save_results=False)
    cb = make()
    _fit(tmp_path, [finder, cb, recorder], max_steps=8)
    assert finder.result.trusted
    assert cb.schedule.base_lr == (finder.result.clr_bounds[0],)
    # a range test that suggests nothing: the numbers given are the fallback, with a warning
    finder.result.clr_bounds = finder.result.suggestion = None
    fallback = make()
    fallback._steps = (4.0, 4.0)  # what on_train_start resolves
    with pytest.warns(UserWarning, match=r"^CyclicalLR: the LR range test is refused \(no suggestion\); using the "
                                         r"given fallback learning rates$"):
        schedule = fallback._build(SimpleNamespace(callbacks=[finder]))
    assert (schedule.base_lr, schedule.max_lr) == ((0.01,), (0.1,))


def test_mode_is_deprecated_for_policy():
    with pytest.warns(DeprecationWarning, match=r"^`mode` is deprecated: pass `policy='triangular2'`$"):
        old = CyclicalLR(0.01, 0.1, step_size=4, mode="triangular2")
    new = CyclicalLR(0.01, 0.1, step_size=4, policy="triangular2")
    assert old.policy == new.policy == "triangular2" and old.state_key == new.state_key
    assert "'mode': 'triangular2'" in new.state_key  # the key of checkpoints written before the rename


def test_bounds_from_an_untrusted_range_test_are_refused_or_fall_back(tmp_path):
    """A sweep over 1e-7 .. 1e-6 teaches the model nothing: its curve has no descent, so its bounds are read off
    noise. 'finder' bounds are refused before the first step, in one line that says what to do; with numbers to fall
    back on, the numbers are used."""
    finder = LRRangeFinder(min_lr=1e-7, max_lr=1e-6, num_steps=20, save_results=False)
    cb, recorder = CyclicalLR("finder", "finder", step_size=4), Recorder()
    with pytest.raises(ValueError, match=r"^CyclicalLR: Expected an LR range test whose curve can be read, got one "
                                         r"that cannot \(no descent\); lengthen or widen the sweep [^\n]*$"):
        _fit(tmp_path / "a", [finder, cb, recorder], max_steps=8)
    assert not finder.result.trusted and recorder.lrs == []

    with pytest.warns(DeprecationWarning):
        deprecated = CyclicalLR(0.01, 0.1, step_size=4, bounds="finder")
    for fallback in (CyclicalLR("finder", "finder", step_size=4, fallback_lr=(0.01, 0.1)), deprecated):
        finder = LRRangeFinder(min_lr=1e-7, max_lr=1e-6, num_steps=20, save_results=False)
        with pytest.warns(UserWarning, match=r"^CyclicalLR: the LR range test is refused \(no descent\); using the "
                                             r"given fallback learning rates$"):
            _fit(tmp_path / "b", [finder, fallback], max_steps=8)
        assert (fallback.schedule.base_lr, fallback.schedule.max_lr) == ((0.01,), (0.1,))


@pytest.mark.parametrize("kwargs, match", [
    ({"base_lr": 0.01, "max_lr": 0.1, "fallback_lr": (0.01, 0.1)},
     r"Expected `fallback_lr` only with bounds 'finder', got base_lr=0.01, max_lr=0.1"),
    ({"base_lr": "finder", "max_lr": "finder", "fallback_lr": 0.1},
     r"Expected `fallback_lr` to be \(base_lr, max_lr\), got 0.1"),
    ({"base_lr": "finder", "max_lr": "finder", "fallback_lr": (0.1, 0.01)},
     r"Expected `fallback_lr` to be \(base_lr, max_lr\) with base_lr <= max_lr, got \(0.1, 0.01\)"),
])
def test_fallback_lr_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CyclicalLR(step_size=4, **kwargs)
