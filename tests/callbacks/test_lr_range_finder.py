import copy
import json
import math
import os
import textwrap

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy

from lightning_papers.callbacks import LRRangeFinder, LRRangeResult, SuperConvergence
from lightning_papers.callbacks.lr_range_finder import classification_accuracy
from lightning_papers.lr_suggestion import smooth_ema


def _dataset(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 3, generator=g)
    return TensorDataset(x, (x @ w).argmax(dim=1))


class TinyModel(L.LightningModule):
    def __init__(self, lr=0.05, n=96, batch_size=16, shuffle=True):
        super().__init__()
        self.lr = lr
        self.n, self.batch_size, self.shuffle = n, batch_size, shuffle
        self.net = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
        self.train_acc = MulticlassAccuracy(num_classes=3)
        self.step_calls = 0

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        self.step_calls += 1
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=True, on_epoch=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)}

    def train_dataloader(self):
        return DataLoader(_dataset(self.n), batch_size=self.batch_size, shuffle=self.shuffle)

    def val_dataloader(self):
        return DataLoader(_dataset(48, seed=1), batch_size=16)


def _trainer(tmp_path, callbacks=(), logger=False, **kwargs):
    kwargs.setdefault("max_steps", 4)
    kwargs.setdefault("limit_val_batches", 0)
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        callbacks=list(callbacks),
        logger=logger,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **kwargs,
    )


def _fit(tmp_path, callbacks=(), seed=7, model_kwargs=None, **kwargs):
    L.seed_everything(seed, verbose=False)
    model = TinyModel(**(model_kwargs or {}))
    trainer = _trainer(tmp_path, callbacks, **kwargs)
    trainer.fit(model)
    return trainer, model


def _assert_states_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class _StateProbe(Callback):
    """Snapshots everything at ``on_train_start`` (before the finder) or compares against a snapshot."""

    def __init__(self, reference=None):
        self.reference = reference
        self.state = None

    def on_train_start(self, trainer, pl_module):
        opt = trainer.optimizers[0]
        state = {
            "model": copy.deepcopy(pl_module.state_dict()),
            "opt": copy.deepcopy(opt.state_dict()),
            "sched": copy.deepcopy(trainer.lr_scheduler_configs[0].scheduler.state_dict()),
            "rng": torch.get_rng_state().clone(),
            "grads": [p.grad for p in pl_module.parameters()],
            "loop": copy.deepcopy(trainer.fit_loop.state_dict()),
            "global_step": trainer.global_step,
            "training": [m.training for m in pl_module.modules()],
            "metric": pl_module.train_acc.tp.clone(),
        }
        if self.reference is None:
            self.state = state
            return
        ref = self.reference.state
        _assert_states_equal(state["model"], ref["model"])
        assert state["opt"] == ref["opt"]
        assert state["sched"] == ref["sched"]
        assert torch.equal(state["rng"], ref["rng"])
        assert all(g is None for g in state["grads"])
        assert state["loop"] == ref["loop"]
        assert state["global_step"] == ref["global_step"] == 0
        assert state["training"] == ref["training"]
        assert torch.equal(state["metric"], ref["metric"])
        self.state = "checked"


def test_state_is_bit_identical_and_training_unchanged(tmp_path):
    before = _StateProbe()
    after = _StateProbe(reference=before)
    finder = LRRangeFinder(min_lr=1e-4, max_lr=1.0, num_steps=12, save_results=False)
    trainer_a, model_a = _fit(tmp_path, [before, finder, after], max_steps=6)
    assert after.state == "checked"
    assert len(finder.result.lrs) > 1
    assert model_a.step_calls == len(finder.result.lrs) + 6

    trainer_b, model_b = _fit(tmp_path, max_steps=6)
    _assert_states_equal(model_a.state_dict(), model_b.state_dict())
    state_a, state_b = trainer_a.optimizers[0].state_dict(), trainer_b.optimizers[0].state_dict()
    assert state_a["param_groups"] == state_b["param_groups"]
    for key in state_a["state"]:
        assert torch.equal(state_a["state"][key]["momentum_buffer"], state_b["state"][key]["momentum_buffer"])
    # the sweep's self.log calls did not leak into the epoch's metrics
    assert trainer_a.callback_metrics.keys() == trainer_b.callback_metrics.keys()
    for key in trainer_b.callback_metrics:
        assert torch.equal(trainer_a.callback_metrics[key], trainer_b.callback_metrics[key]), key


def test_bias_corrected_ema_and_exact_endpoints(tmp_path):
    finder = LRRangeFinder(min_lr=1e-5, max_lr=0.3, num_steps=9, smoothing=0.98, divergence_factor=None,
                           save_results=False)
    _fit(tmp_path, [finder], max_steps=1)
    result = finder.result
    assert result.lrs[0] == 1e-5 and result.lrs[-1] == 0.3
    assert len(result.lrs) == len(result.losses) == 9
    assert result.smoothed_losses[0] == result.losses[0]
    assert result.smoothed_losses == pytest.approx(smooth_ema(result.losses, 0.98).tolist(), rel=1e-12)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert max(ratios) == pytest.approx(min(ratios))
    assert result.stop_reason == "completed"


def test_linear_mode(tmp_path):
    finder = LRRangeFinder(
        min_lr=0.01, max_lr=0.1, num_steps=5, spacing="linear", divergence_factor=None, save_results=False
    )
    _fit(tmp_path, [finder], max_steps=1)
    assert finder.result.lrs == pytest.approx([0.01, 0.0325, 0.055, 0.0775, 0.1])
    assert finder.result.lrs[-1] == 0.1


def test_divergence_stops_early(tmp_path):
    finder = LRRangeFinder(min_lr=1e-3, max_lr=1e6, num_steps=40, save_results=False)
    _fit(tmp_path, [finder], max_steps=2)
    result = finder.result
    assert result.stop_reason in ("diverged", "non-finite")
    assert len(result.lrs) < 40
    last = result.smoothed_losses[-1]
    assert not math.isfinite(result.losses[-1]) or last > 4.0 * min(result.smoothed_losses[:-1])


def test_at_epochs_mid_training_is_invisible(tmp_path):
    finder = LRRangeFinder(min_lr=1e-4, max_lr=1.0, num_steps=6, at_epochs=[1], save_results=False)
    _, model_a = _fit(tmp_path, [finder], max_steps=-1, max_epochs=2, model_kwargs={"n": 48})
    assert list(finder.results) == [1]
    assert finder.result.epoch == 1
    _, model_b = _fit(tmp_path, max_steps=-1, max_epochs=2, model_kwargs={"n": 48})
    _assert_states_equal(model_a.state_dict(), model_b.state_dict())


def test_gradient_accumulation_one_point_per_optimizer_step(tmp_path):
    finder = LRRangeFinder(min_lr=1e-4, max_lr=0.1, num_steps=5, divergence_factor=None, save_results=False)
    _, model = _fit(tmp_path, [finder], max_steps=1, accumulate_grad_batches=3)
    assert len(finder.result.lrs) == 5
    assert model.step_calls == 5 * 3 + 3


def test_short_loader_is_cycled(tmp_path):
    finder = LRRangeFinder(min_lr=1e-4, max_lr=0.1, num_steps=11, divergence_factor=None, save_results=False)
    _fit(tmp_path, [finder], max_steps=1, model_kwargs={"n": 32})  # 2 batches per epoch
    assert len(finder.result.lrs) == 11


def test_no_files_left_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cwd_before = set(os.listdir(tmp_path))
    finder = LRRangeFinder(min_lr=1e-4, max_lr=1.0, num_steps=6, save_results=False)
    _fit(tmp_path, [finder], max_steps=2)
    assert set(os.listdir(tmp_path)) == cwd_before


def test_results_written_and_tensorboard_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path, name="tb")
    finder = LRRangeFinder(min_lr=1e-4, max_lr=1.0, num_steps=8, num_batches=2, val_every=2)
    trainer, _ = _fit(tmp_path, [finder], logger=logger, max_steps=2, limit_val_batches=1)
    files = sorted(os.listdir(os.path.join(trainer.log_dir, "lr_range")))
    assert files == ["curve.png", "result.json"]
    with open(os.path.join(trainer.log_dir, "lr_range", "result.json")) as f:
        saved = json.load(f)
    assert saved["lrs"] == finder.result.lrs
    assert LRRangeResult.from_dict(saved).suggestion == finder.result.suggestion

    events = EventAccumulator(logger.log_dir, size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("lr_range/loss", "lr_range/loss_smoothed", "lr_range/lr", "lr_range/val_acc"):
        assert tag in tags["scalars"], tag
    assert len(events.Scalars("lr_range/lr")) == len(finder.result.lrs)
    assert "lr_range/curve" in tags["images"]
    assert "lr_range/suggestion/text_summary" in tags["tensors"]
    accs = finder.result.val_accuracies
    assert len(accs) == len(finder.result.lrs)
    assert all(0.0 <= a <= 1.0 for a in accs[1::2]) and all(math.isnan(a) for a in accs[0::2])


def test_apply_sets_module_and_optimizer_lr(tmp_path):
    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.lr = trainer.optimizers[0].param_groups[0]["lr"]

    record = Record()
    finder = LRRangeFinder(min_lr=1e-4, max_lr=1.0, num_steps=10, apply="lr", save_results=False)
    _, model = _fit(tmp_path, [finder, record], max_steps=1)
    assert finder.result.suggestion is not None
    assert model.lr == finder.result.suggestion
    assert record.lr == finder.result.suggestion


def test_result_object_plot_and_state_dict(tmp_path):
    finder = LRRangeFinder(min_lr=1e-4, max_lr=1.0, num_steps=10, save_results=False)
    _fit(tmp_path, [finder], max_steps=1)
    ax = finder.result.plot()  # an Axes, like every plot() of the package
    assert isinstance(ax, Axes) and isinstance(ax.figure, Figure)
    assert any(line.get_linestyle() == "--" for line in ax.lines)  # suggestion marked
    json.dumps(finder.result.to_dict())

    clone = LRRangeFinder()
    clone.load_state_dict(copy.deepcopy(finder.state_dict()))
    assert clone.result == finder.result
    # a resumed run does not repeat the test
    _, model = _fit(tmp_path, [clone], max_steps=1)
    assert model.step_calls == 1


class _Manual(TinyModel):
    def __init__(self):
        super().__init__()
        self.automatic_optimization = False


class _NoLr(TinyModel):
    def __init__(self):
        super().__init__()
        del self.lr

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(
    "model_cls, finder_kwargs, match",
    [
        (_Manual, {}, "Expected automatic optimization"),
        (_NoLr, {"apply": "lr"}, "Expected the module to have an `lr` or `learning_rate`"),
    ],
)
def test_runtime_errors(tmp_path, model_cls, finder_kwargs, match):
    trainer = _trainer(tmp_path, [LRRangeFinder(**finder_kwargs)])
    with pytest.raises(ValueError, match=match):
        trainer.fit(model_cls())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spacing": "log"}, "Expected `spacing` to be one of"),
        ({"method": "best"}, "Expected `method` to be one of"),
        ({"apply": "weights"}, "Expected `apply` to be one of"),
        ({"min_lr": 0.0}, "Expected `0 < min_lr < max_lr`"),
        ({"min_lr": 1.0, "max_lr": 0.1}, "Expected `0 < min_lr < max_lr`"),
        ({"num_steps": 1}, "Expected `num_steps` to be an integer >= 2, got 1"),
        ({"num_steps": 2.5}, "Expected `num_steps` to be an integer >= 2, got 2.5"),
        ({"max_lr": float("inf")}, r"Expected `0 < min_lr < max_lr` \(finite\)"),
        ({"smoothing": 1.0}, r"Expected `smoothing` to be a number in \[0, 1\), got 1.0"),
        ({"divergence_factor": 1.0}, r"Expected `divergence_factor` to be a number in \(1, inf\)"),
        ({"at_epochs": [-1]}, "Expected `at_epochs` to be non-negative integers"),
        ({"at_epochs": []}, "Expected `at_epochs` to be non-negative integers"),
        ({"num_batches": -1}, "Expected `num_batches` to be an integer >= 0"),
        ({"val_every": 0}, "Expected `val_every` to be a positive integer"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LRRangeFinder(**kwargs)


_DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import lightning as L, torch, torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, Dataset
    from lightning_papers.callbacks import LRRangeFinder

    class RankData(Dataset):
        # rank r sees targets whose loss differs by rank: the recorded loss must be the mean over ranks
        def __len__(self):
            return 64
        def __getitem__(self, i):
            return torch.ones(4), torch.tensor(0)

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.lr = 0.1
            self.net = nn.Linear(4, 3)
            self.local = []
        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.net(x), y) + float(self.global_rank) * 10.0
            self.local.append(loss.item())
            return loss
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr)
        def train_dataloader(self):
            return DataLoader(RankData(), batch_size=8)

    if __name__ == "__main__":
        torch.manual_seed(0)
        finder = LRRangeFinder(min_lr=1e-3, max_lr=1.0, num_steps=6, divergence_factor=None, save_results=False)
        model = Model()
        trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=1, logger=False,
                            callbacks=[finder], enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, default_root_dir=sys.argv[1])
        trainer.fit(model)
        out = {"suggestion": finder.result.suggestion, "losses": finder.result.losses,
               "local": model.local[:6], "rank": trainer.global_rank}
        with open(f"{sys.argv[1]}/rank{trainer.global_rank}.json", "w") as f:
            json.dump(out, f)
        torch.distributed.destroy_process_group()  # see tests/conftest.py::run_script
    """
)


@pytest.mark.timeout(210)
def test_ddp_two_processes_mean_loss_and_same_suggestion(tmp_path, run_script):
    run_script(_DDP_SCRIPT, "ddp_finder.py")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["suggestion"] == ranks[1]["suggestion"] is not None
    assert ranks[0]["losses"] == ranks[1]["losses"]
    local0, local1 = ranks[0]["local"], ranks[1]["local"]
    assert local1[0] == pytest.approx(local0[0] + 10.0, rel=1e-5)
    for recorded, a, b in zip(ranks[0]["losses"], local0, local1):
        assert recorded == pytest.approx((a + b) / 2, rel=1e-6)


@pytest.mark.filterwarnings("ignore:.*(finite points|never improves).*:UserWarning")
def test_amp_skipped_steps_are_not_points(tmp_path):
    from lightning.pytorch.plugins import MixedPrecision

    class ScaleProbe(Callback):
        def on_train_start(self, trainer, pl_module):
            self.scale = trainer.precision_plugin.scaler.get_scale()

    # fp16 autocast on CPU with a huge initial loss scale: the first backward passes overflow
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20)
    probe = ScaleProbe()
    finder = LRRangeFinder(min_lr=1e-4, max_lr=0.1, num_steps=8, divergence_factor=None, save_results=False)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    _fit(tmp_path, [finder, probe], max_steps=1, plugins=[plugin])
    result = finder.result
    assert result.skipped_steps > 0
    assert len(result.lrs) + result.skipped_steps == 8
    assert all(math.isfinite(loss) for loss in result.losses)
    assert probe.scale == 2.0**20  # the scaler's state was restored too


def test_bf16_mixed_on_cpu_restores_bit_identically(tmp_path):
    before = _StateProbe()
    after = _StateProbe(reference=before)
    finder = LRRangeFinder(min_lr=1e-4, max_lr=1.0, num_steps=10, divergence_factor=None, save_results=False)
    kwargs = dict(max_steps=4, precision="bf16-mixed")
    trainer_a, model_a = _fit(tmp_path, [before, finder, after], **kwargs)
    assert after.state == "checked"
    assert len(finder.result.lrs) == 10 and finder.result.skipped_steps == 0
    assert all(math.isfinite(loss) for loss in finder.result.losses)
    assert finder.result.suggestion is not None
    # the losses really came from bf16 autocast: they differ from a float32 sweep of the same model and data
    finder_32 = LRRangeFinder(min_lr=1e-4, max_lr=1.0, num_steps=10, divergence_factor=None, save_results=False)
    _fit(tmp_path, [finder_32], max_steps=1)
    assert finder_32.result.losses != finder.result.losses
    # training after the sweep is the training without it, bit for bit
    trainer_b, model_b = _fit(tmp_path, **kwargs)
    _assert_states_equal(model_a.state_dict(), model_b.state_dict())
    state_a, state_b = trainer_a.optimizers[0].state_dict(), trainer_b.optimizers[0].state_dict()
    for key in state_b["state"]:
        assert torch.equal(state_a["state"][key]["momentum_buffer"], state_b["state"][key]["momentum_buffer"])


@pytest.mark.parametrize(("num_steps", "beta"), [(10, 0.0), (80, 0.875), (100, 0.9), (500, 0.98), (2000, 0.98)])
def test_default_smoothing_spans_a_tenth_of_the_sweep(num_steps, beta):
    assert LRRangeFinder(num_steps=num_steps).smoothing == pytest.approx(beta)
    assert LRRangeFinder(num_steps=num_steps, smoothing=0.5).smoothing == 0.5


@pytest.mark.filterwarnings("ignore:LR range test at epoch 0:UserWarning")
def test_boring_model_noise_neither_stops_the_sweep_nor_drives_a_schedule(tmp_path):
    """Lightning's BoringModel at batch size 2: single losses scatter widely. The divergence stop waits for the EMA's
    span (it fired at the 6th point, lr 2.5e-7, on main), and a curve that cannot be read is refused, before the
    first training step, by the schedule that would have taken its peak from it."""
    from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset

    class Boring(BoringModel):
        def train_dataloader(self):
            return DataLoader(RandomDataset(32, 64), batch_size=2)

    class Steps(Callback):
        count = 0

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            Steps.count += 1

    torch.manual_seed(2)
    finder = LRRangeFinder(save_results=False)
    sc = SuperConvergence("finder", replace_schedulers=True)  # BoringModel returns its own StepLR
    trainer = L.Trainer(accelerator="cpu", max_steps=4, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        callbacks=[finder, sc, Steps()])
    with pytest.raises(ValueError, match=r"^SuperConvergence: Expected an LR range test whose curve can be read, got "
                                         r"one that cannot \(no descent\); lengthen or widen the sweep"):
        trainer.fit(Boring())
    result = finder.result
    assert result.stop_reason == "diverged" and result.lrs[-1] > 1e-2 and len(result.lrs) > 50
    assert Steps.count == 0  # the finder's own steps are not seen by callbacks; no training step was taken
    assert result.clr_bounds is None or result.clr_bounds[0] <= result.suggestion <= result.clr_bounds[1]


def test_old_argument_names_warn_and_keep_working():
    with pytest.warns(DeprecationWarning, match=r"^`mode` is deprecated: pass `spacing='linear'`$"):
        old = LRRangeFinder(0.01, 0.1, num_steps=3, mode="linear")
    assert old.schedule.values() == LRRangeFinder(0.01, 0.1, num_steps=3, spacing="linear").schedule.values()
    assert "'mode': 'linear'" in old.state_key  # the key of checkpoints written before the rename
    with pytest.warns(DeprecationWarning, match=r"^`val_batches` is deprecated: pass `num_batches=2`$"):
        assert LRRangeFinder(val_batches=2).num_batches == 2
    with pytest.raises(ValueError, match=r"^Expected `num_batches` to be given once"):
        LRRangeFinder(val_batches=2, num_batches=3)


def test_default_accuracy_counts_correct_predictions():
    class Fixed(nn.Module):
        def forward(self, x):
            return x

    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    correct, total = classification_accuracy(Fixed(), (logits, torch.tensor([1, 1, 1])))
    assert (correct.item(), total.item()) == (2.0, 3)
