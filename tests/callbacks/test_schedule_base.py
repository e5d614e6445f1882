"""What the schedule callbacks share (issue 22, items 3 and 4): a module's own scheduler is refused at fit start or
replaced on request, momentum / beta1 is cycled only where the user's value fits (D2), and a step is one
``optimizer.step()`` of each optimizer (D3): a GAN's two optimizers both follow the whole 1cycle / CLR cycle, and
``CurvatureMonitor`` counts the first optimizer's steps."""

import logging

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_papers.callbacks import CurvatureMonitor, CyclicalLR, SuperConvergence
from lightning_papers.data import DigitsDataModule
from lightning_papers.modules import ImageClassifier

N = 8  # batches per epoch


def _loader(n=4 * N, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long()), batch_size=4)


class WithScheduler(L.LightningModule):
    """A module written the way Lightning's docs write one: its own optimizer and scheduler."""

    def __init__(self, scheduler="step", betas=(0.9, 0.999), optimizer="sgd"):
        super().__init__()
        self.net = nn.Linear(4, 2)
        self.scheduler, self.betas, self.optimizer = scheduler, betas, optimizer

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        if self.optimizer == "adam":
            opt = torch.optim.Adam(self.parameters(), lr=0.1, betas=self.betas)
        else:
            opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)
        if self.scheduler is None:
            return opt
        if self.scheduler == "step":
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)]
        if self.scheduler == "linear":
            return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1)}
        sched = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=3)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def train_dataloader(self):
        return _loader()


class GAN(L.LightningModule):
    """Lightning's GAN shape: manual optimization, generator and discriminator each stepped once per batch."""

    def __init__(self, betas=(0.9, 0.999)):
        super().__init__()
        self.automatic_optimization = False
        self.generator, self.discriminator = nn.Linear(2, 4), nn.Linear(4, 1)
        self.betas = betas

    def _d_loss(self, x):
        fake = self.generator(torch.randn(x.shape[0], 2))
        real, unreal = self.discriminator(x), self.discriminator(fake)
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(unreal, torch.zeros_like(unreal)))

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        x = batch[0]
        scores = self.discriminator(self.generator(torch.randn(x.shape[0], 2)))
        g_loss = F.binary_cross_entropy_with_logits(scores, torch.ones_like(scores))
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        opt_g.step()
        d_loss = self._d_loss(x)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.step()

    def validation_step(self, batch, batch_idx):
        return self._d_loss(batch[0])

    def configure_optimizers(self):
        return (torch.optim.Adam(self.generator.parameters(), lr=1e-3, betas=self.betas),
                torch.optim.Adam(self.discriminator.parameters(), lr=1e-3, betas=self.betas))

    def train_dataloader(self):
        return _loader()


class Recorder(Callback):
    """lr and beta1 / momentum of each optimizer, right before each of its steps."""

    def __init__(self):
        self.lrs, self.momenta = {}, {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        i = next(k for k, o in enumerate(trainer.optimizers) if o is optimizer)
        g = optimizer.param_groups[0]
        self.lrs.setdefault(i, []).append(g["lr"])
        self.momenta.setdefault(i, []).append(g["betas"][0] if "betas" in g else g["momentum"])


def _fit(tmp_path, model, callbacks, **kwargs):
    torch.manual_seed(0)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        num_sanity_val_steps=0, callbacks=list(callbacks), **kwargs)
    trainer.fit(model)
    return trainer


def _torch_one_cycle(n, optimizer="sgd", betas=(0.9, 0.999), **kwargs):
    params = [nn.Parameter(torch.zeros(1))]
    opt = (torch.optim.Adam(params, betas=betas) if optimizer == "adam"
           else torch.optim.SGD(params, lr=0.1, momentum=0.9))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, total_steps=n, anneal_strategy="linear", three_phase=True,
                                                pct_start=0.45, **kwargs)
    lrs, momenta = [], []
    for _ in range(n):
        g = opt.param_groups[0]
        lrs.append(g["lr"])
        momenta.append(g["betas"][0] if "betas" in g else g["momentum"])
        opt.step()
        sched.step()
    return lrs, momenta


def _torch_cyclic(n, **kwargs):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.CyclicLR(opt, cycle_momentum=False, **kwargs)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


# ----------------------------------------------------------------------------------------------------
# item 3: the module's own scheduler (D1) and momentum / beta1 (D2)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheduler, name", [("step", "StepLR"), ("linear", "LinearLR"), ("dict", "LinearLR")])
@pytest.mark.parametrize("make", [lambda **kw: SuperConvergence(1.0, **kw),
                                  lambda **kw: CyclicalLR(0.01, 0.1, step_size=4, **kw)])
def test_own_scheduler_is_refused_before_the_first_step(tmp_path, scheduler, name, make):
    rec = Recorder()
    cb = make()
    with pytest.raises(ValueError, match=rf"^{type(cb).__name__}: expected no LR scheduler .* got {name}; pass "
                                         r"`\w+\(\.\.\., replace_schedulers=True\)`"):
        _fit(tmp_path, WithScheduler(scheduler), [cb, rec], max_steps=8)
    assert rec.lrs == {}  # refused before any step


def test_replace_schedulers_replaces_it_and_says_so(tmp_path, caplog):
    rec = Recorder()
    with caplog.at_level(logging.INFO):
        _fit(tmp_path, WithScheduler("linear"), [SuperConvergence(1.0, replace_schedulers=True), rec], max_steps=8)
    assert any("replacing the module's LR scheduler LinearLR" in r.getMessage() for r in caplog.records)
    ref_lrs, ref_momenta = _torch_one_cycle(8, max_lr=1.0, div_factor=25.0, final_div_factor=1e4)
    # the 1cycle alone, at the optimizer's own peak ratio (LinearLR's start_factor neither applies nor shrinks it)
    assert rec.lrs[0] == pytest.approx(ref_lrs, abs=1e-12, rel=0)
    assert rec.momenta[0] == pytest.approx(ref_momenta, abs=1e-12, rel=0)
    rec = Recorder()
    _fit(tmp_path, WithScheduler("step"), [CyclicalLR(0.01, 0.1, step_size=4, replace_schedulers=True), rec],
         max_steps=8)
    assert rec.lrs[0] == pytest.approx(_torch_cyclic(8, base_lr=0.01, max_lr=0.1, step_size_up=4), abs=1e-12, rel=0)


def test_image_classifier_hands_out_a_bare_optimizer(tmp_path):
    dm = DigitsDataModule(batch_size=64, size=8, augment=False)
    module = ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(192, 10)), lr=0.1, scheduler="step", step_size=1)
    rec = Recorder()
    torch.manual_seed(0)
    trainer = L.Trainer(accelerator="cpu", max_steps=6, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                        limit_val_batches=0, callbacks=[SuperConvergence(1.0), rec])
    with pytest.warns(UserWarning, match="scheduler='step' is ignored"):
        trainer.fit(module, datamodule=dm)
    assert rec.lrs[0] == pytest.approx(_torch_one_cycle(6, max_lr=1.0)[0], abs=1e-12, rel=0)


def test_beta1_outside_the_range_is_kept_and_named_once(tmp_path):
    rec = Recorder()
    with pytest.warns(UserWarning, match=r"SuperConvergence: Adam beta1=0\.5 is outside 0\.85\.\.0\.95: momentum is "
                                         r"not cycled; pass cycle_momentum=True to cycle it") as record:
        _fit(tmp_path, WithScheduler(None, betas=(0.5, 0.999), optimizer="adam"), [SuperConvergence(1.0), rec],
             max_steps=8)
    assert sum("is outside" in str(w.message) for w in record) == 1
    assert rec.momenta[0] == [0.5] * 8
    assert rec.lrs[0] == pytest.approx(_torch_one_cycle(8, max_lr=1.0)[0], abs=1e-12, rel=0)
    # asked for: cycled as torch's OneCycleLR cycles it; Adam's default 0.9 lies inside: cycled by default
    for cycle_momentum, betas in ((True, (0.5, 0.999)), (None, (0.9, 0.999))):
        rec = Recorder()
        _fit(tmp_path, WithScheduler(None, betas=betas, optimizer="adam"),
             [SuperConvergence(1.0, cycle_momentum=cycle_momentum), rec], max_steps=8)
        ref = _torch_one_cycle(8, optimizer="adam", betas=betas, max_lr=1.0)[1]
        assert rec.momenta[0] == pytest.approx(ref, abs=1e-12, rel=0)


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="Expected `cycle_momentum` to be None, True or False, got 'yes'"):
        SuperConvergence(1.0, cycle_momentum="yes")
    with pytest.raises(ValueError, match="Expected `replace_schedulers` to be True or False, got 1"):
        CyclicalLR(0.01, 0.1, step_size=2, replace_schedulers=1)


# ----------------------------------------------------------------------------------------------------
# item 4: what a step is (D3)
# ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [{"max_epochs": 2}, {"max_steps": 4 * N}])  # max_steps counts both optimizers
def test_gan_both_optimizers_follow_the_whole_one_cycle(tmp_path, limit):
    rec = Recorder()
    _fit(tmp_path, GAN(), [SuperConvergence(0.01), rec], limit_val_batches=0, **limit)
    ref_lrs, ref_momenta = _torch_one_cycle(2 * N, optimizer="adam", max_lr=0.01)
    for i in (0, 1):
        assert rec.lrs[i] == pytest.approx(ref_lrs, abs=1e-12, rel=0)
        assert rec.momenta[i] == pytest.approx(ref_momenta, abs=1e-12, rel=0)
    assert max(rec.lrs[1]) > 0.009  # near the peak, and ends in the annihilation
    assert rec.lrs[1][-1] < 0.01 / 25 / 100


def test_gan_cyclical_cycles_have_the_asked_length(tmp_path):
    rec = Recorder()
    _fit(tmp_path, GAN(betas=(0.5, 0.999)), [CyclicalLR(1e-4, 1e-3, step_size=4), rec], max_epochs=2,
         limit_val_batches=0)
    ref = _torch_cyclic(2 * N, base_lr=1e-4, max_lr=1e-3, step_size_up=4)
    assert rec.lrs[0] == pytest.approx(ref, abs=1e-12, rel=0)
    assert rec.lrs[1] == pytest.approx(ref, abs=1e-12, rel=0)
    assert rec.momenta[0] == rec.momenta[1] == [0.5] * (2 * N)


def test_curvature_monitor_counts_first_optimizer_steps_and_warns_when_it_cannot_fire(tmp_path):
    monitor = CurvatureMonitor(every_n_steps=3, max_iter=3, save_results=False)
    _fit(tmp_path, GAN(), [monitor], max_epochs=1, limit_val_batches=0)
    assert monitor.history.steps == [3, 6]  # 8 generator steps (16 optimizer steps in all)
    with pytest.warns(UserWarning, match=r"CurvatureMonitor: every_n_steps=20 never fires: the run plans 8 steps of "
                                         r"the first optimizer \(Adam\); lower `every_n_steps` or train longer"):
        _fit(tmp_path, GAN(), [CurvatureMonitor(every_n_steps=20, save_results=False)], max_steps=16,
             limit_val_batches=0)
