"""What the fidelity scripts (``fidelity_*.py``) share: the digits task, a plain training loop, and the report.

The fidelity scripts measure the papers' headline *effects* (accuracy against training budget, learning rates
that train well, flatness), not our code's speed, so they train many small networks: a plain PyTorch loop
keeps that affordable on a 2-core CPU. The learning rate and momentum of every step come from the package's
schedule objects (:class:`lightning_papers.schedules.OneCycle`, :class:`~lightning_papers.schedules.Cyclical`)
or from :class:`PiecewiseConstant` here, so what is measured is what the callbacks would set.

The task (:func:`digits_task`): scikit-learn's 1,797 real 8x8 digits (embedded, offline), a stratified training
subset of ``train_size`` images and *every other image* as the held-out set. With the whole 80 % split a CIFAR
ResNet reaches 97-98 % within a couple of hundred steps and every schedule ties; a few hundred training images
leave room between schedules (Smith & Topin's Table 1 shows the 1cycle gain growing as CIFAR-10 is cut from
50k to 10k images), and a held-out set of ~1,300 images resolves 0.1 points instead of 0.3.

Audit-proof method (issue 25): :func:`digits_split` draws a stratified train / validation / test split *per seed*
(so seeds vary the data too, not only initialisation and order); every choice (peak, fixed rate, budget, subset
size) is made on ``val_*`` and ``test_*`` is evaluated once, for the report. Arms are compared by paired per-seed
differences (:func:`paired_interval`: mean and a two-sided Student-t interval) and one written rule turns them
into a verdict (:func:`verdict`): **shown** when the 95 % interval excludes 0 in the paper's direction,
**contradicted** when it excludes 0 the other way, **inconclusive** otherwise (also with fewer than 2 pairs).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lightning_papers.data import load_digits_images
from lightning_papers.data.augment import BatchAugment
from lightning_papers.lr_suggestion import LRRangeResult, SmoothedLoss
from lightning_papers.models.resnet_cifar import ResNetCIFAR
from lightning_papers.schedules import Ramp

__all__ = ["DIRECTIONS", "PairedDifference", "PiecewiseConstant", "Task", "combined_verdict", "digits_split",
           "digits_task", "evaluate", "fmt", "load_average", "load_averages", "make_model", "mean_std", "paired_block",
           "paired_interval", "range_test", "split_indices", "t_quantile", "train", "verdict"]


@dataclass(frozen=True)
class PiecewiseConstant:
    """The step schedule of He et al. and of Smith & Topin's baseline: ``lr``, times ``factor`` at each milestone.

    ``PiecewiseConstant(0.35, (50_000, 70_000))(step)`` is the paper's 80k-iteration baseline.
    """

    lr: float
    milestones: tuple[int, ...]
    factor: float = 0.1

    def __call__(self, step: int) -> float:
        return self.lr * self.factor ** sum(step >= m for m in self.milestones)

    @classmethod
    def for_budget(cls, lr: float, steps: int) -> PiecewiseConstant:
        """The paper's shape scaled to ``steps``: x0.1 at 62.5 % and 87.5 % (its 50k and 70k of 80k)."""
        return cls(lr, (round(0.625 * steps), round(0.875 * steps)))


@dataclass
class Task:
    """Normalised float images and labels, training and held-out."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    size: int
    test_x: torch.Tensor | None = None
    test_y: torch.Tensor | None = None

    def describe(self) -> str:
        if self.test_y is None:
            return (f"digits {self.size}x{self.size}, {len(self.train_y)} training images, "
                    f"{len(self.val_y)} held out")
        return (f"digits {self.size}x{self.size}, {len(self.train_y)} training / {len(self.val_y)} validation / "
                f"{len(self.test_y)} test images")


def digits_task(size: int = 8, train_size: int = 500, split_seed: int = 0) -> Task:
    """The digits at ``size`` px: a stratified training subset of ``train_size`` images, the rest held out.

    Raises:
        ValueError: when ``train_size`` leaves fewer than 100 images (or ten per class) on either side.
    """
    if not 100 <= train_size <= 1797 - 100:
        raise ValueError(f"Expected `train_size` in [100, 1697] (the digits have 1,797 images), got {train_size!r}")
    from sklearn.model_selection import train_test_split

    images, labels = load_digits_images(size)
    x = (images.float() / 255.0 - 0.5) / 0.5
    train_idx, val_idx = train_test_split(np.arange(len(labels)), train_size=train_size, random_state=split_seed,
                                          stratify=labels.numpy())
    train_idx, val_idx = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    return Task(x[train_idx].contiguous(), labels[train_idx], x[val_idx].contiguous(), labels[val_idx], size)


def split_indices(train_size: int = 500, val_size: int = 300, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(train, validation, test) indices into the 1,797 digits, stratified by class and drawn under ``seed``.

    Raises:
        ValueError: when a part would hold fewer than 100 images.
    """
    n = 1797
    if train_size < 100 or val_size < 100 or n - train_size - val_size < 100:
        raise ValueError(f"Expected train_size and val_size >= 100 leaving >= 100 test images of the 1,797 digits, "
                         f"got train_size={train_size!r}, val_size={val_size!r}; make them smaller")
    from sklearn.model_selection import train_test_split

    strat = load_digits_images(8)[1].numpy()
    train_idx, rest = train_test_split(np.arange(n), train_size=train_size, random_state=seed, stratify=strat)
    val_idx, test_idx = train_test_split(rest, train_size=val_size, random_state=seed, stratify=strat[rest])
    return train_idx, val_idx, test_idx


def digits_split(size: int = 8, train_size: int = 500, val_size: int = 300, seed: int = 0) -> Task:
    """The digits at ``size`` px split three ways, stratified by class and drawn under ``seed`` (resample it per
    seed): ``train_size`` training images, ``val_size`` validation images for every choice, the rest the test set
    (:func:`split_indices`).

    Raises:
        ValueError: when a part would hold fewer than 100 images.
    """
    train_idx, val_idx, test_idx = (torch.as_tensor(i) for i in split_indices(train_size, val_size, seed))
    images, labels = load_digits_images(size)
    x = (images.float() / 255.0 - 0.5) / 0.5
    return Task(x[train_idx].contiguous(), labels[train_idx], x[val_idx].contiguous(), labels[val_idx], size,
                x[test_idx].contiguous(), labels[test_idx])


# two-sided 95 % Student-t quantiles t(0.975, df), used when scipy is missing (scipy.stats.t.ppf to 3 decimals)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}

DIRECTIONS = ("greater", "less")


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided Student-t quantile ``t((1 + level) / 2, df)``: scipy's when installed, else the 95 % table
    (the nearest tabulated df at or below ``df``, a slightly wider interval)."""
    if df < 1:
        raise ValueError(f"Expected df >= 1 (at least 2 paired values), got df={df!r}; collect more seeds")
    try:
        from scipy.stats import t
    except ImportError:
        if level != 0.95:
            raise ValueError(f"Expected level 0.95 without scipy, got {level!r}; install scipy or use 0.95") from None
        return _T975[max(k for k in _T975 if k <= df)]
    return float(t.ppf((1.0 + level) / 2.0, df))


@dataclass(frozen=True)
class PairedDifference:
    """Paired per-seed differences ``a_i - b_i``: their mean and two-sided Student-t interval at ``level``."""

    diffs: tuple[float, ...]
    mean: float
    low: float
    high: float
    level: float = 0.95

    @property
    def n(self) -> int:
        return len(self.diffs)

    def as_dict(self) -> dict:
        return {"diffs": list(self.diffs), "mean": self.mean, "ci": [self.low, self.high], "level": self.level,
                "n": self.n}


def paired_interval(a: Sequence[float | None], b: Sequence[float | None] | None = None,
                    level: float = 0.95) -> PairedDifference:
    """The paired differences ``a_i - b_i`` (``a`` itself when ``b`` is None) over the seeds where both are known,
    with mean ± ``t * sd / sqrt(n)``; the interval is (-inf, inf) with fewer than 2 pairs."""
    if b is not None and len(a) != len(b):
        raise ValueError(f"Expected paired sequences of equal length, got {len(a)} and {len(b)}; pass one value "
                         "per seed for both arms (None where a run is missing)")
    pairs = a if b is None else [None if x is None or y is None else x - y for x, y in zip(a, b)]
    diffs = tuple(float(d) for d in pairs if d is not None)
    if not diffs:
        return PairedDifference(diffs, math.nan, -math.inf, math.inf, level)
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return PairedDifference(diffs, mean, -math.inf, math.inf, level)
    half = t_quantile(len(diffs) - 1, level) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return PairedDifference(diffs, mean, mean - half, mean + half, level)


def verdict(diffs: Sequence[float | None], direction: str, level: float = 0.95) -> str:
    """The written verdict rule: ``"shown"`` when the ``level`` t-interval of the paired differences excludes 0 in
    the paper's ``direction`` (``"greater"``: the paper says the differences are > 0; ``"less"``: < 0),
    ``"contradicted"`` when it excludes 0 the other way, ``"inconclusive"`` otherwise (fewer than 2 pairs too)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"Expected direction 'greater' or 'less' (the sign the paper predicts), got {direction!r}")
    d = paired_interval(diffs, level=level)
    if d.low > 0:
        return "shown" if direction == "greater" else "contradicted"
    if d.high < 0:
        return "shown" if direction == "less" else "contradicted"
    return "inconclusive"


def paired_block(a: Sequence[float | None], b: Sequence[float | None], direction: str, level: float = 0.95) -> dict:
    """What a fidelity script writes into its JSON for one comparison: the per-seed ``a_i - b_i`` (``None`` where a
    seed lacks either arm), their mean and interval, the paper's ``direction`` and the :func:`verdict`. A test
    re-derives ``verdict`` from ``diffs`` and ``direction`` (``tests/benchmarks/test_fidelity_verdicts.py``)."""
    d = paired_interval(a, b, level)
    return {**d.as_dict(), "direction": direction, "verdict": verdict(d.diffs, direction, level)}


def combined_verdict(verdicts: Sequence[str]) -> str:
    """A claim made of several comparisons: ``"shown"`` when every part is shown, ``"contradicted"`` when any part
    is contradicted, ``"inconclusive"`` otherwise (none when there are no parts)."""
    if not verdicts:
        return "inconclusive"
    if all(v == "shown" for v in verdicts):
        return "shown"
    return "contradicted" if "contradicted" in verdicts else "inconclusive"


def make_model(depth: int = 20, *, wide: int = 1, shortcut: str = "A", seed: int = 0) -> nn.Module:
    """A CIFAR ResNet-``depth`` (``6n + 2``) for the ten digit classes, its weights drawn under ``seed``."""
    if (depth - 2) % 6 or depth < 8:
        raise ValueError(f"Expected a CIFAR ResNet depth 6n + 2 >= 8 (8, 14, 20, 32, 44, 56, ...), got {depth!r}")
    torch.manual_seed(seed)
    return ResNetCIFAR((depth - 2) // 6, num_classes=10, wide=wide, shortcut=shortcut)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 512) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode, on the model's device; its mode is restored."""
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), chunk):
        xb, yb = x[i : i + chunk].to(device), y[i : i + chunk].to(device)
        out = model(xb)
        correct += int((out.argmax(1) == yb).sum())
        loss += float(F.cross_entropy(out, yb, reduction="sum"))
    model.train(was_training)
    return correct / len(y), loss / len(y)


def train(
    model: nn.Module,
    task: Task,
    steps: int,
    lr_at: Callable[[int], float],
    *,
    momentum_at: Callable[[int], float] | None = None,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 64,
    seed: int = 0,
    eval_every: int | None = None,
    augment: int = 1,
    eval_at: Sequence[int] = (),
) -> dict:
    """Plain SGD for ``steps`` optimizer steps, the lr (and momentum) of step ``t`` set from ``lr_at(t)``.

    The data stays on the CPU (batches are drawn, augmented and then moved to the model's device), so a
    CUDA model trains on the same batches. Batches are drawn from reshuffled epochs of the training images under
    ``seed`` and augmented by a random
    shift of up to ``augment`` pixels (a padded random crop, no flip: a flipped digit is another digit). A
    non-finite loss ends the run (``diverged``); the model is then evaluated as it stands (usually chance).

    Returns:
        ``{"curve": [(step, held-out acc)], "final_acc", "final_loss", "test_acc", "diverged", "seconds",
        "steps"}``; the curve holds every ``eval_every`` steps and the steps in ``eval_at`` (after that many
        steps). ``final_acc`` is on ``task.val_*`` (choices are made on it); ``test_acc`` on ``task.test_*``,
        ``None`` when the task has no test set.
    """
    gen = torch.Generator().manual_seed(10_000 + seed)
    crops = torch.Generator().manual_seed(20_000 + seed)
    shift = BatchAugment(padding=augment, flip=False) if augment else None
    opt = torch.optim.SGD(model.parameters(), lr=lr_at(0), momentum=momentum, weight_decay=weight_decay)
    device = next(model.parameters()).device
    n = len(task.train_y)
    order = torch.randperm(n, generator=gen)
    pos = 0
    marks = set(eval_at) | ({s for s in range(eval_every, steps + 1, eval_every)} if eval_every else set())
    curve: list[tuple[int, float]] = []
    diverged = False
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        xb, yb = task.train_x[idx], task.train_y[idx]
        if shift is not None:
            xb = shift(xb + 1.0, generator=crops) - 1.0  # pads with the background (-1 after normalising)
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
            if momentum_at is not None:
                group["momentum"] = momentum_at(step)
        loss = F.cross_entropy(model(xb), yb)
        if not torch.isfinite(loss):
            diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step + 1 in marks:
            curve.append((step + 1, evaluate(model, task.val_x, task.val_y)[0]))
    acc, val_loss = evaluate(model, task.val_x, task.val_y)
    if not math.isfinite(val_loss):
        diverged = True
    if not curve or curve[-1][0] != steps:
        curve.append((steps, acc))
    test_acc = evaluate(model, task.test_x, task.test_y)[0] if task.test_y is not None else None
    return {"curve": curve, "final_acc": acc, "final_loss": val_loss if math.isfinite(val_loss) else None,
            "test_acc": test_acc, "diverged": diverged, "seconds": time.perf_counter() - start, "steps": steps}


def range_test(task: Task, model: nn.Module, min_lr: float, max_lr: float, steps: int, *, batch_size: int = 64,
               weight_decay: float = 5e-4, seed: int = 0) -> LRRangeResult:
    """Smith's range test in a plain loop, with ``LRRangeFinder``'s parts: the ``Ramp``, the ``SmoothedLoss``
    (its default smoothing ``min(0.98, 1 - 10 / steps)`` and 4x divergence stop) and ``LRRangeResult``'s
    reading (suggestion, CLR bounds, problems). The model is trained by the sweep (pass a fresh one)."""
    ramp = Ramp(min_lr, max_lr, steps, "exponential")
    ema = SmoothedLoss(min(0.98, max(0.0, 1.0 - 10.0 / steps)), divergence_factor=4.0)
    result = LRRangeResult(method="steepest")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=ramp(0), momentum=0.9, weight_decay=weight_decay)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(task.train_y), (batch_size,), generator=gen)
        for group in opt.param_groups:
            group["lr"] = ramp(step)
        device = next(model.parameters()).device
        loss = F.cross_entropy(model(task.train_x[idx].to(device)), task.train_y[idx].to(device))
        value = float(loss.detach())
        result.lrs.append(ramp(step))
        result.losses.append(value)
        result.smoothed_losses.append(ema.update(value))
        if ema.stop_reason is not None:
            result.stop_reason = ema.stop_reason
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    result.compute_suggestions()
    return result


def mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    """(mean, sample standard deviation, n) over the values that are not ``None``; NaNs when there are none."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)


def fmt(values: Sequence[float | None], scale: float = 100.0, digits: int = 1) -> str:
    """``"mean ± std (n)"`` of ``values`` times ``scale``."""
    m, s, n = mean_std(values)
    if n == 0:
        return "n/a"
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f} (n={n})"


def load_averages() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages, as ``uptime`` prints them (written into every result's JSON)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def load_average() -> float | None:
    """The 1-minute load average (what else was running shapes every wall time printed beside it)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None
