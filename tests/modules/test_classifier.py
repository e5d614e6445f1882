import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from lightning_papers.data import DigitsDataModule
from lightning_papers.modules import ImageClassifier


def tiny_trainer(tmp_path, **kw):
    defaults = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    defaults.update(kw)
    return L.Trainer(**defaults)


def test_resnet20_learns_the_real_digits(tmp_path):
    """ResNet-20 on the embedded digits reaches >= 95 % validation accuracy on a CPU budget."""
    L.seed_everything(0)
    module = ImageClassifier("resnet20", lr=0.05, weight_decay=5e-4, scheduler="multistep", milestones=[3])
    trainer = tiny_trainer(tmp_path, max_epochs=4)
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=64, seed=0))
    acc = trainer.callback_metrics["val/acc"].item()
    assert acc >= 0.95
    # The logged accuracy is the real one: recompute it with a plain loop over the validation set.
    dm = DigitsDataModule(batch_size=256, seed=0)
    dm.setup("fit")
    module.eval()
    correct = 0
    with torch.no_grad():
        for x, y in dm.val_dataloader():
            correct += (module(dm.transform(x)).argmax(1) == y).sum().item()
    assert correct / len(dm.val_set) == pytest.approx(acc, abs=1e-6)


class Owner(Callback):
    owns_learning_rate = True


def test_schedule_callback_owns_the_learning_rate(tmp_path):
    module = ImageClassifier("resnet20", scheduler="multistep", milestones=[1])
    trainer = tiny_trainer(tmp_path, max_steps=1, callbacks=[Owner()])
    module.trainer = trainer
    with pytest.warns(UserWarning, match=r"scheduler='multistep' is ignored because a schedule callback owns"):
        out = module.configure_optimizers()
    assert isinstance(out, torch.optim.SGD)


def test_multistep_baseline_matches_torch_in_optimizer_steps(tmp_path):
    """With scheduler_interval='step' the lr drops at the given optimizer steps, as MultiStepLR does."""
    lrs = []

    class Record(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    module = ImageClassifier(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)), lr=0.4, scheduler="multistep",
                             milestones=[3, 5], gamma=0.1, scheduler_interval="step")
    trainer = tiny_trainer(tmp_path, max_steps=7, limit_val_batches=0, callbacks=[Record()])
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=32))
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.4)
    ref_sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[3, 5], gamma=0.1)
    ref = []
    for _ in range(7):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        ref_sched.step()
    assert lrs == pytest.approx(ref)


def test_optimizer_settings_reach_the_optimizer():
    sgd = ImageClassifier("resnet20", lr=0.3, momentum=0.8, nesterov=True, weight_decay=1e-3).configure_optimizers()
    g = sgd.param_groups[0]
    assert (g["lr"], g["momentum"], g["nesterov"], g["weight_decay"]) == (0.3, 0.8, True, 1e-3)
    module = ImageClassifier("resnet20", optimizer="adamw", lr=1e-3, betas=(0.8, 0.99), weight_decay=0.05)
    module.lr = 2e-3  # range finders set this public attribute before the optimizer is built
    adamw = module.configure_optimizers()
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["lr"] == 2e-3 and adamw.param_groups[0]["betas"] == (0.8, 0.99)


def test_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    a = ImageClassifier("resnet20").eval()
    b = ImageClassifier("resnet20", channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-5)
    assert b.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_own_module_and_model_kwargs():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 4))
    module = ImageClassifier(net, num_classes=4)
    assert module.model is net and "model" not in module.hparams
    proj = ImageClassifier("resnet20", model_kwargs={"shortcut": "B"})
    assert proj.model.shortcut == "B"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"optimizer": "adam"}, r"Expected `optimizer` to be one of \('sgd', 'adamw'\), got 'adam'"),
    ({"scheduler": "cosine"}, r"Expected `scheduler` to be one of \(None, 'step', 'multistep'\), got 'cosine'"),
    ({"scheduler_interval": "batch"}, r"Expected `scheduler_interval` to be one of \('epoch', 'step'\), got 'batch'"),
    ({"lr": 0.0}, r"Expected `lr` to be a positive finite number, got 0.0"),
    ({"scheduler": "multistep"}, r"Expected non-empty `milestones` for scheduler='multistep'"),
    ({"model": "vgg16"}, r"Unknown model 'vgg16'. Expected one of: resnet110"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageClassifier(**kwargs)
