"""What the matrix's cells share: a tiny Trainer, recorders, and the independent references."""

from __future__ import annotations

import copy
import warnings

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

QUIET = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
             enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1)


def fit(module, callbacks, root, **options):
    """``trainer.fit(module)`` on a tiny CPU Trainer (4 optimizer steps unless ``options`` say otherwise)."""
    L.seed_everything(0, verbose=False)
    ckpt_path = options.pop("ckpt_path", None)
    kwargs = {**QUIET, "max_steps": 4, "default_root_dir": str(root), **options}
    trainer = L.Trainer(callbacks=list(callbacks), **kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|LeafSpec|"
                                "smaller than the logging interval|val_dataloader|isinstance.treespec).*")
        trainer.fit(module, ckpt_path=ckpt_path)
    return trainer


class LRRecorder(Callback):
    """The lr (and momentum / beta1) of every optimizer at each of its steps, as the step uses it."""

    def __init__(self):
        self.lrs: dict[int, list[float]] = {}
        self.momenta: dict[int, list[float]] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        i = next(j for j, opt in enumerate(trainer.optimizers) if opt is optimizer or opt is getattr(
            optimizer, "optimizer", None))
        group = trainer.optimizers[i].param_groups[0]
        self.lrs.setdefault(i, []).append(group["lr"])
        self.momenta.setdefault(i, []).append(group["betas"][0] if "betas" in group else group.get("momentum"))


class WeightsAtFirstStep(Callback):
    """The trainable weights when the first training batch starts (after a range test has run and restored)."""

    state = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.state is None:
            self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def torch_schedule(scheduler_factory, steps: int, lr: float = 0.1, momentum: float = 0.9) -> list[float]:
    """The lrs a torch scheduler gives at each of ``steps`` optimizer steps."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr, momentum=momentum)
    sched = scheduler_factory(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _to_double(batch):
    if isinstance(batch, torch.Tensor):
        return batch.double() if batch.is_floating_point() else batch
    if isinstance(batch, dict):
        return {k: _to_double(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_double(b) for b in batch)
    return batch


def rayleigh_quotient(module, loss_of, batches, direction, eps: float = 1e-6, exact: bool = False) -> float:
    """``v^T H v / v^T v`` of the mean loss over ``batches`` at ``module``'s weights, in float64 on a copy: H by
    central finite differences of first-order gradients (no double backward, no attention kernel of the package's
    choosing), or with ``exact`` by double backward (for models without attention, whose curvature is too sharp for
    finite differences: a resnet18's BatchNorm on 4 samples)."""
    model = copy.deepcopy(module).double().train()
    params = dict(model.named_parameters())
    v = {k: t.detach().to(torch.float64) for k, t in direction.tensors.items() if k in params}
    batches = [_to_double(b) for b in batches]

    def mean_loss():
        return sum(loss_of(model, b) for b in batches) / len(batches)

    norm = sum((t * t).sum() for t in v.values())
    if exact:
        grads = torch.autograd.grad(mean_loss(), [params[k] for k in v], create_graph=True)
        hv = torch.autograd.grad(sum((g * t).sum() for g, t in zip(grads, v.values())), [params[k] for k in v])
        return float(sum((h * t).sum() for h, t in zip(hv, v.values())) / norm)

    def grad_at(sign):
        with torch.no_grad():
            for k, t in v.items():
                params[k].add_(sign * eps * t)
        grads = torch.autograd.grad(mean_loss(), [params[k] for k in v], allow_unused=True)
        with torch.no_grad():
            for k, t in v.items():
                params[k].sub_(sign * eps * t)
        return [torch.zeros_like(params[k]) if g is None else g for k, g in zip(v, grads)]

    plus, minus = grad_at(1.0), grad_at(-1.0)
    vhv = sum(((p - m) / (2 * eps) * t).sum() for p, m, t in zip(plus, minus, v.values()))
    return float(vhv / norm)


def first_batches(loader, n: int = 1):
    it = iter(loader)
    return [next(it) for _ in range(n)]


def served_layout(log_dir):
    """({category: {chart: [regexes]}} of the last custom-scalars layout in ``log_dir`` or None, scalar tags)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2

    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    if "custom_scalars__config__" not in acc.Tags()["tensors"]:
        return None, tags
    layout = layout_pb2.Layout()
    layout.ParseFromString(acc.Tensors("custom_scalars__config__")[-1].tensor_proto.string_val[0])
    return {c.title: {ch.title: list(ch.multiline.tag) for ch in c.chart} for c in layout.category}, tags
