"""The one place where the package's callbacks talk to Trainer internals.

DESIGN.md: callbacks are thin glue from Trainer hooks to the pure core. What every one of them needs from
the Trainer lives here, once:

* :func:`evaluation_batches`: a few fixed batches of a loader, through the module's own transfer hooks
  (``on_before_batch_transfer``, ``transfer_batch_to_device``, ``on_after_batch_transfer``) under an evaluation
  stage (a datamodule never augments them), the same on every rank when asked;
* :class:`ModuleEvaluation`: the LightningModule's own loss (or a ``loss_fn`` the user passes), as the core's
  ``evaluate(batch)``, with the step's ``self.log`` calls and torchmetrics updates kept out of the user's logs;
* :func:`autocast_dtype`: the dtype the Trainer's precision runs forward passes in;
* :func:`report`: collectives on every rank, then scalars, figures, text, meshes and files on rank 0, to every
  logger; :func:`sum_across_ranks`: the all-reduce the core takes to shard a sum over ranks;
* the range test's plumbing: :class:`TrainingSnapshot` and :func:`training_step` (one optimizer step through
  the strategy, so DDP, precision and clipping apply).

Every private Lightning (or torchmetrics) attribute the package touches is in this file, each with a comment
that says why; nothing else in the package reaches into a Trainer.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities import CombinedLoader
from lightning.pytorch.utilities.seed import isolate_rng
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature

from lightning_papers import _helpers as devices
from lightning_papers.landscape import MeshView, SurfaceResult, merge_surfaces
from lightning_papers.tensorboard import add_image, add_mesh

__all__ = [
    "ModuleEvaluation",
    "StateKeyed",
    "TrainingSnapshot",
    "autocast_dtype",
    "classification_target",
    "cycle_batches",
    "evaluation_batches",
    "evaluation_stage",
    "gather_surface",
    "guarded",
    "optimizer_index",
    "planned_optimizer_steps",
    "preflight",
    "progress_bar",
    "report",
    "silenced_callbacks",
    "sum_across_ranks",
    "training_step",
]


# ----------------------------------------------------------------------------------------------------
# precision, stage, batches
# ----------------------------------------------------------------------------------------------------
def autocast_dtype(trainer: pl.Trainer) -> torch.dtype | None:
    """The autocast dtype of ``trainer.precision`` (``None`` for full or ``-true`` precisions)."""
    return devices.autocast_dtype(str(trainer.precision))


@contextmanager
def evaluation_stage(trainer: pl.Trainer) -> Iterator[None]:
    """Let data hooks see an evaluation stage (``trainer.training`` is False: no training augmentation)."""
    saved = trainer.state.stage
    trainer.state.stage = RunningStage.VALIDATING
    try:
        yield
    finally:
        trainer.state.stage = saved


def _first_loader(loaders: Any) -> Any:
    if isinstance(loaders, Mapping):
        return next(iter(loaders.values()), None)
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    return loaders


def _loader(trainer: pl.Trainer, pl_module: pl.LightningModule, which: str) -> Any:
    """The first ``"train"`` or ``"val"`` loader of the fit; the data source's own when the Trainer has not set it
    up (at fit start, or validation loaders before the first validation)."""
    loaders = trainer.train_dataloader if which == "train" else trainer.val_dataloaders
    loader = _first_loader(loaders)
    if loader is None:
        # private: `_data_source` is where fit's loaders come from (a module's or datamodule's hook, or the loaders
        # passed to `fit`) before the loop sets them up; the only place that knows all three
        loop = trainer.fit_loop if which == "train" else trainer.fit_loop.epoch_loop.val_loop
        source = getattr(loop, "_data_source", None)
        try:
            if source is not None and source.instance is not None:
                loader = _first_loader(source.dataloader()) if source.is_defined() else None
            else:
                owner = trainer.datamodule if trainer.datamodule is not None else pl_module
                method = getattr(owner, f"{which}_dataloader", None)
                loader = _first_loader(method()) if callable(method) else None
        except Exception:  # noqa: BLE001 - a source without this loader (Lightning's hook raises) has none
            loader = None
    return loader


def _generators(loader: Any) -> list[torch.Generator]:
    """The random generators a DataLoader's sampling draws from (its own, its sampler's, its batch sampler's)."""
    found = []
    for obj in (loader, getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None),
                getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        gen = getattr(obj, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


@contextmanager
def _seeded(loader: Any, seed: int | None) -> Iterator[None]:
    """Draw from ``loader`` with every random source it uses seeded with ``seed`` (the global RNGs and the
    loader's own generators), and leave them all as they were: the batches do not depend on how far training
    has got (a resumed run takes the same ones) and training's own order does not change."""
    gens = _generators(loader) if seed is not None else []
    states = [g.get_state() for g in gens]
    with isolate_rng():
        try:
            if seed is not None:
                torch.manual_seed(seed)
                for g in gens:
                    g.manual_seed(seed)
            yield
        finally:
            for g, state in zip(gens, states):
                g.set_state(state)


def _prepare(trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any) -> Any:
    """The batch as a training step would see it, on this rank's device."""
    batch = trainer.precision_plugin.convert_input(batch)
    # private: `_on_before_batch_transfer` is how Lightning itself dispatches the hook to the datamodule or the
    # module (whichever overrides it); the public hooks alone would miss a datamodule's override
    batch = pl_module._on_before_batch_transfer(batch, dataloader_idx=0)
    return trainer.strategy.batch_to_device(batch, dataloader_idx=0)


def evaluation_batches(trainer: pl.Trainer, pl_module: pl.LightningModule, which: str, n: int,
                       same_on_all_ranks: bool = True, seed: int | None = None) -> list[Any]:
    """The first ``n`` batches of the ``which`` (``"train"`` / ``"val"``) loader, ready for the module.

    Under an evaluation stage (no augmentation) and through the module's own transfer hooks. With
    ``same_on_all_ranks`` rank 0 reads them and broadcasts them (a grid sharded across ranks is then evaluated on
    one set of data); otherwise each rank reads its own share. With ``seed``, a shuffled loader is read with its
    random sources seeded (and restored afterwards): the same batches whenever they are taken, so a resumed run
    evaluates on the batches an uninterrupted one did.

    Raises:
        RuntimeError: when there is no such loader, or it is empty.
    """
    raw: list[Any] | None = None
    if not same_on_all_ranks or trainer.is_global_zero:
        loader = _loader(trainer, pl_module, which)
        if loader is None:
            raw = []
        else:
            with _seeded(loader, None if seed is None else seed + (0 if same_on_all_ranks else trainer.global_rank)):
                raw = [b for _, b in zip(range(n), loader)]
    if same_on_all_ranks and trainer.world_size > 1:
        raw = trainer.strategy.broadcast(raw, src=0)
    if not raw:
        raise RuntimeError(f"Expected a non-empty {which} dataloader to take {n} evaluation batch(es) from, got none")
    with evaluation_stage(trainer):
        return [_prepare(trainer, pl_module, b) for b in raw]


def cycle_batches(loaders: Any) -> Iterator[Any]:
    """Training batches forever (a new pass when the loader is exhausted); several loaders are combined as a
    training epoch combines them.

    Raises:
        RuntimeError: for an empty loader.
    """
    if loaders is None:
        raise RuntimeError("Expected a train dataloader, got none")
    if not isinstance(loaders, torch.utils.data.DataLoader):
        loaders = _BatchesOf(CombinedLoader(loaders, "max_size_cycle"))
    while True:
        empty = True
        for item in loaders:
            empty = False
            yield item
        if empty:
            raise RuntimeError("Expected a non-empty train dataloader, got an empty one")


class _BatchesOf:
    """A ``CombinedLoader`` yielding only the batch (it yields ``batch, batch_idx, dataloader_idx``)."""

    def __init__(self, loader: CombinedLoader) -> None:
        self.loader = loader

    def __iter__(self) -> Iterator[Any]:
        for batch, _, _ in self.loader:
            yield batch


# ----------------------------------------------------------------------------------------------------
# what a step is: optimizer steps, counted per optimizer
# ----------------------------------------------------------------------------------------------------
def optimizer_index(trainer: pl.Trainer, optimizer: Any) -> int | None:
    """Position of ``optimizer`` (a torch optimizer or Lightning's wrapper of one) in ``trainer.optimizers``."""
    raw = getattr(optimizer, "optimizer", optimizer)
    return next((i for i, opt in enumerate(trainer.optimizers) if opt is optimizer or opt is raw), None)


def planned_optimizer_steps(trainer: pl.Trainer) -> float:
    """Optimizer steps EACH optimizer is planned to take in this fit (``inf`` when unbounded).

    Automatic optimization (one optimizer): ``trainer.estimated_stepping_batches``. Manual optimization: one
    ``optimizer.step()`` of every optimizer per batch (a GAN), so the batches of the run; ``max_steps`` bounds
    them by ``max_steps / len(optimizers)``, because Lightning's ``global_step`` counts the steps of all optimizers.
    """
    total = trainer.estimated_stepping_batches  # sets up the train loader when it is not yet
    module = trainer.lightning_module
    if module is None or module.automatic_optimization:
        return total
    n = max(1, len(trainer.optimizers))
    batches = trainer.num_training_batches
    batches = math.inf if trainer.max_epochs == -1 or not math.isfinite(batches) else batches * max(
        trainer.max_epochs or 1, 1)
    if trainer.max_steps != -1:
        batches = min(batches, math.ceil(trainer.max_steps / n))
    return batches


# ----------------------------------------------------------------------------------------------------
# the module's own loss
# ----------------------------------------------------------------------------------------------------
def _metric_states(module: torch.nn.Module) -> dict[str, Any]:
    from torchmetrics import Metric

    # private: torchmetrics keeps `_update_count` / `_computed` outside `metric_state`; a step evaluated for a
    # probe updates the module's metrics, and without these the epoch's value would include the probe's batches
    return {name: (copy.deepcopy(m.metric_state), m._update_count, m._computed)
            for name, m in module.named_modules() if isinstance(m, Metric)}


def _restore_metric_states(module: torch.nn.Module, states: dict[str, Any]) -> None:
    modules = dict(module.named_modules())
    for name, (state, update_count, computed) in states.items():
        metric = modules[name]
        for key, value in state.items():
            setattr(metric, key, value)
        metric._update_count, metric._computed = update_count, computed  # private: see _metric_states


@contextmanager
def captured_logs(pl_module: pl.LightningModule, keep_metrics: bool = True) -> Iterator[dict[str, Any]]:
    """Route the module's ``self.log`` / ``self.log_dict`` calls into a dict (name -> value) instead of the
    user's logs, and (``keep_metrics``) leave its torchmetrics as they were.

    The instance's ``log`` is shadowed for the duration (``log_dict`` calls ``self.log``); nothing of Lightning's
    is changed, so it works in any hook and without a Trainer.
    """
    logged: dict[str, Any] = {}

    def log(name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        logged[name] = value

    states = _metric_states(pl_module) if keep_metrics else {}
    pl_module.log = log  # type: ignore[method-assign]
    try:
        yield logged
    finally:
        del pl_module.log
        _restore_metric_states(pl_module, states)


def _step_loss(output: Any) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("loss"), torch.Tensor):
        return output["loss"]
    return None


def _logged_loss(logged: Mapping[str, Any]) -> torch.Tensor | None:
    names = [k for k, v in logged.items() if k.rsplit("/", 1)[-1].rsplit("_", 1)[-1] == "loss"
             and isinstance(v, (torch.Tensor, float, int))]
    if len(names) > 1:
        raise ValueError(f"Expected the module's step to log one loss, got {sorted(names)}; pass `loss_fn=` "
                         "to say which loss to evaluate")
    return torch.as_tensor(logged[names[0]]) if names else None


def classification_target(batch: Any, output: Any) -> torch.Tensor | None:
    """The class targets when ``batch`` is ``(inputs, targets, ...)`` with integer targets (N,) and ``output``
    is logits (N, C >= 2): then accuracy means something; otherwise ``None``."""
    if not isinstance(batch, (list, tuple)) or len(batch) < 2 or not isinstance(output, torch.Tensor):
        return None
    target = batch[1]
    if not isinstance(target, torch.Tensor) or target.dim() != 1 or target.is_floating_point() or target.is_complex():
        return None
    if output.dim() != 2 or output.shape[0] != target.shape[0] or output.shape[1] < 2:
        return None
    return target


class ModuleEvaluation:
    """``evaluate(batch) -> {"loss": ..., ["accuracy": ...], ...}`` for a LightningModule, as the landscape core
    takes it (:func:`lightning_papers.landscape.surface`, ``hessian_top_eigenvalue``).

    The loss is the module's own unless ``loss_fn`` is given: what ``training_step`` returns (a tensor or a dict
    with ``"loss"``), else what ``validation_step`` returns, else the one loss either logs; it runs in whatever
    mode and grad state the caller sets (the core evaluates in eval mode under ``no_grad``). Accuracy is added
    when it means something: batches ``(inputs, targets, ...)`` with integer class targets and a forward pass
    that returns logits (read off the module's own ``forward`` call, no second pass). ``metrics`` are extra
    ``{name: fn(output, target)}`` on that output.

    Use it inside ``with evaluation.active():``, which keeps the steps' ``self.log`` calls and metric updates out
    of the user's logs.

    Args:
        module: the LightningModule.
        loss_fn: ``fn(module(inputs), targets)`` on ``(inputs, targets, ...)`` batches instead of the module's
            own loss.
        metrics: ``{name: fn(output, target)}``, evaluated on the module's forward output.

    Raises:
        ValueError: (when called) if the module neither returns nor logs a loss, or a metric has no output or
            target to work on.
    """

    def __init__(self, module: pl.LightningModule, loss_fn: Callable | None = None,
                 metrics: Mapping[str, Callable] | None = None) -> None:
        self.module = module
        self.loss_fn = loss_fn
        self.metrics = dict(metrics or {})
        self._outputs: list[Any] = []
        self._logged: dict[str, Any] | None = None

    def describe(self) -> str:
        """What is evaluated, for metadata (a resumed surface must have been made with the same)."""
        from lightning_papers.landscape.storage import callable_identity

        module = f"{type(self.module).__module__}.{type(self.module).__qualname__}"
        loss = f"{callable_identity(self.loss_fn)} on {module}" if self.loss_fn else f"{module}'s own step loss"
        metrics = {name: callable_identity(fn) for name, fn in self.metrics.items()}
        return loss + (f" + {metrics}" if metrics else "")

    @contextmanager
    def active(self) -> Iterator[ModuleEvaluation]:
        def keep(module: Any, args: Any, output: Any) -> None:
            self._outputs.append(output)

        handle = self.module.register_forward_hook(keep)
        try:
            with captured_logs(self.module) as logged:
                self._logged = logged
                yield self
        finally:
            handle.remove()
            self._logged, self._outputs = None, []

    def _run_step(self, batch: Any) -> torch.Tensor:
        module = self.module
        for name in ("training_step", "validation_step"):
            if name == "training_step" and not module.automatic_optimization:
                continue  # a manual-optimization step would step the optimizers itself
            step = getattr(module, name)
            with_idx = is_param_in_hook_signature(step, "batch_idx", min_args=2)
            assert self._logged is not None, "use `with evaluation.active():`"
            self._logged.clear()
            self._outputs.clear()
            loss = _step_loss(step(batch, 0) if with_idx else step(batch))
            if loss is None:
                loss = _logged_loss(self._logged)
            if loss is not None:
                return loss
        raise ValueError(f"Expected {type(module).__name__}'s training_step or validation_step to return a loss "
                         "(a tensor or a dict with 'loss') or to log one; pass `loss_fn=` to evaluate another")

    def __call__(self, batch: Any) -> dict[str, torch.Tensor]:
        if self.loss_fn is not None:
            if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                raise ValueError(f"Expected (inputs, targets, ...) batches with `loss_fn`, got {type(batch).__name__}")
            self._outputs.clear()
            output = self.module(batch[0])
            values = {"loss": self.loss_fn(output, batch[1])}
        else:
            values = {"loss": self._run_step(batch)}
            output = self._outputs[0] if len(self._outputs) == 1 else None
        target = classification_target(batch, output)
        if target is not None and "accuracy" not in self.metrics:
            values["accuracy"] = (output.argmax(dim=-1) == target).float().mean()
        for name, fn in self.metrics.items():
            if output is None or not isinstance(batch, (list, tuple)) or len(batch) < 2:
                raise ValueError(f"Expected one forward call and (inputs, targets) batches for metric {name!r}")
            values[name] = fn(output, batch[1])
        self._outputs.clear()
        return values


def preflight(trainer: pl.Trainer, pl_module: pl.LightningModule, owner: str, which: str,
              evaluation: ModuleEvaluation, *, hessian_fix: str | None = None, seed: int | None = None) -> None:
    """What an analysis needs, checked before the first training step on one batch: the ``which`` loader exists
    and yields a batch, the module's loss (or ``loss_fn``) evaluates on it to a scalar tensor, and (with
    ``hessian_fix``, the advice for when it cannot) a Hessian-vector product can be taken through it.

    Raises:
        ValueError: one line naming what is missing and the fix.
    """
    from lightning_papers.landscape import preserved_model
    from lightning_papers.landscape.double_backward import describe_blocker, double_backward_blocker

    if _loader(trainer, pl_module, which) is None:
        other = "train" if which == "val" else "val"
        raise ValueError(f"{owner}: expected a {which} dataloader to evaluate on, got none; pass "
                         f"`dataloader={other!r}` or give the Trainer {which} data")
    try:
        batch = evaluation_batches(trainer, pl_module, which, 1, same_on_all_ranks=False, seed=seed)[0]
    except RuntimeError as err:
        raise ValueError(f"{owner}: {err}") from None
    params = [p for p in pl_module.parameters() if p.requires_grad]
    with isolate_rng(), evaluation.active(), preserved_model(pl_module):
        pl_module.eval()
        try:
            with torch.no_grad():
                loss = evaluation(batch)["loss"]
        except ValueError as err:
            raise ValueError(f"{owner}: {err}") from None
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"{owner}: expected the module's loss to be a scalar tensor, got "
                             f"{type(loss).__name__} {tuple(getattr(loss, 'shape', ()))}; pass `loss_fn=`")
        if hessian_fix is not None and params:
            op = double_backward_blocker(lambda: evaluation(batch)["loss"], params)
            if op is not None:
                raise ValueError(f"{owner}: {describe_blocker(op, hessian_fix)}")


@contextmanager
def guarded(owner: str, what: str, where: Callable[[], str | None] = lambda: None) -> Iterator[list[BaseException]]:
    """Run an analysis at the end of training without letting it raise out of ``fit``: a failure becomes one
    rank-zero warning naming what failed and where the results written so far are (``where()``); the caught
    exception is appended to the yielded list. ``KeyboardInterrupt`` and the like still propagate."""
    from lightning.pytorch.utilities import rank_zero_warn

    failures: list[BaseException] = []
    try:
        yield failures
    except Exception as err:  # noqa: BLE001 - the point: nothing computed is lost to an analysis' failure
        failures.append(err)
        place = where()
        saved = f"; results so far are in {place}" if place else ""
        message = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        rank_zero_warn(f"{owner}: {what} failed, the trained model is kept{saved} ({type(err).__name__}: {message})")


# ----------------------------------------------------------------------------------------------------
# distributed results, reporting
# ----------------------------------------------------------------------------------------------------
def gather_surface(trainer: pl.Trainer, part: SurfaceResult) -> SurfaceResult:
    """Every rank's share of a sharded surface, merged (on every rank)."""
    if trainer.world_size == 1:
        return part
    names = list(part.values)
    device = trainer.strategy.root_device
    values = torch.as_tensor(np.stack([part.values[m] for m in names]), dtype=torch.float64, device=device)
    computed = torch.as_tensor(part.computed, device=device).to(torch.uint8)
    all_values = trainer.strategy.all_gather(values).cpu().numpy()
    all_computed = trainer.strategy.all_gather(computed).cpu().numpy().astype(bool)
    shard = part.metadata.get("shard")

    def metadata(rank: int) -> dict:  # each part says which rank computed it (merge refuses one shard twice)
        return {**part.metadata, "shard": [rank, shard[1]]} if shard else part.metadata

    return merge_surfaces([
        SurfaceResult(part.axes, {m: all_values[r, i] for i, m in enumerate(names)}, all_computed[r], metadata(r))
        for r in range(trainer.world_size)
    ])


def sum_across_ranks(trainer: pl.Trainer) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``fn(tensor) -> tensor`` summed over every rank (the same sum on each; every rank must call it the same
    number of times), as the core's ``all_reduce=`` takes it; ``None`` on a single process."""
    if trainer.world_size == 1:
        return None
    return functools.partial(_reduce_sum, trainer.strategy)


def _reduce_sum(strategy: Any, tensor: torch.Tensor) -> torch.Tensor:
    return strategy.reduce(tensor, reduce_op="sum")


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return _json_ready(obj.tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return _json_ready(obj.item())
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return obj


def report(
    trainer: pl.Trainer,
    part: str,
    *,
    step: int = 0,
    scalars: Mapping[str, float] | None = None,
    series: Mapping[str, Sequence[float]] | None = None,
    figures: Mapping[str, Any] | None = None,
    texts: Mapping[str, str] | None = None,
    meshes: Mapping[str, MeshView | tuple[np.ndarray, np.ndarray]] | None = None,
    images: Mapping[str, np.ndarray] | None = None,
    files: Mapping[str, Any] | None = None,
    save_files: bool = True,
    figure_prefix: str = "",
) -> str | None:
    """Log results to every logger and write them under ``<trainer.log_dir>/<part>/``. Call it on every rank.

    ``trainer.log_dir`` is a collective under DDP, so every rank calls it here; then rank 0 alone writes:
    ``scalars`` at ``step`` and ``series`` (one point per index) to every logger, and to TensorBoard loggers
    also ``figures`` (matplotlib Figures), ``texts``, ``meshes`` (a :class:`~lightning_papers.landscape.MeshView`,
    whose description goes into the tag, or ``(vertices, faces)``) and ``images`` (H, W, 3 uint8); with ``save_files``,
    the figures as ``<figure_prefix><tag without its first part>.png`` (``lr_range/curve/epoch1`` ->
    ``curve_epoch1.png``) and ``files``: ``{name.json: JSON-able}`` (non-finite numbers become ``null``)
    or ``{name: writer(path)}``.

    Returns:
        the output folder on rank 0 (``None`` elsewhere, or when nothing is saved).
    """
    log_dir = trainer.log_dir  # a collective under DDP: every rank must get here
    if not trainer.is_global_zero:
        return None
    scalars, series, figures = dict(scalars or {}), dict(series or {}), dict(figures or {})
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            writer = logger.experiment
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, global_step=step)
            for tag, values in series.items():
                for i, value in enumerate(values):
                    if math.isfinite(value):
                        writer.add_scalar(tag, value, global_step=i)
            for tag, fig in figures.items():
                writer.add_figure(tag, fig, global_step=step, close=False)
            for tag, text in (texts or {}).items():
                writer.add_text(tag, text, global_step=step)
            for tag, mesh in (meshes or {}).items():
                if isinstance(mesh, MeshView):
                    add_mesh(writer, tag, mesh.vertices, mesh.faces, mesh.colors, step=step,
                             description=mesh.description, config=mesh.config)
                else:
                    add_mesh(writer, tag, mesh[0], mesh[1], step=step)
            for tag, image in (images or {}).items():
                add_image(writer, tag, image, step=step)
            writer.flush()
        else:
            if scalars:
                logger.log_metrics(scalars, step=step)
            length = max((len(v) for v in series.values()), default=0)
            for i in range(length):
                row = {t: v[i] for t, v in series.items() if i < len(v) and math.isfinite(v[i])}
                if row:
                    logger.log_metrics(row, step=i)
    if not save_files or log_dir is None or not (figures or files):
        return None
    out = os.path.join(log_dir, part)
    os.makedirs(out, exist_ok=True)
    for tag, fig in figures.items():
        name = figure_prefix + tag.split("/", 1)[-1].replace("/", "_") + ".png"
        fig.savefig(os.path.join(out, name), dpi=100, bbox_inches="tight")
    for name, content in (files or {}).items():
        path = os.path.join(out, name)
        if callable(content):
            content(path)
        else:
            with open(path, "w") as f:
                json.dump(_json_ready(content), f, indent=2)
    return out


def progress_bar(trainer: pl.Trainer, total: int, desc: str) -> Any:
    """A tqdm bar on rank 0 when the Trainer shows progress bars (disabled otherwise)."""
    from tqdm.auto import tqdm

    disable = not trainer.is_global_zero or trainer.progress_bar_callback is None
    return tqdm(total=total, desc=desc, leave=False, disable=disable, dynamic_ncols=True)


# ----------------------------------------------------------------------------------------------------
# training steps of our own (the range test)
# ----------------------------------------------------------------------------------------------------
class TrainingSnapshot:
    """In-memory copy of everything training steps change; ``restore()`` puts it back bit for bit: weights,
    ``.grad``, train/eval flags, optimizers, schedulers, the precision plugin (grad scaler), metric states."""

    def __init__(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainer, self.module = trainer, pl_module
        self.model_state = copy.deepcopy(pl_module.state_dict())
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in pl_module.parameters()]
        self.training = {name: m.training for name, m in pl_module.named_modules()}
        self.optimizers = [copy.deepcopy(opt.state_dict()) for opt in trainer.optimizers]
        self.schedulers = [copy.deepcopy(cfg.scheduler.state_dict()) for cfg in trainer.lr_scheduler_configs]
        self.precision = copy.deepcopy(trainer.precision_plugin.state_dict())
        self.metrics = _metric_states(pl_module)

    def restore(self) -> None:
        module, trainer = self.module, self.trainer
        module.load_state_dict(self.model_state)
        for p, grad in zip(module.parameters(), self.grads):
            p.grad = grad
        for name, m in module.named_modules():
            m.train(self.training.get(name, m.training))
        for opt, state in zip(trainer.optimizers, self.optimizers):
            opt.load_state_dict(state)
        for cfg, state in zip(trainer.lr_scheduler_configs, self.schedulers):
            cfg.scheduler.load_state_dict(state)
        if self.precision:
            trainer.precision_plugin.load_state_dict(self.precision)
        _restore_metric_states(module, self.metrics)


@contextmanager
def silenced_callbacks(trainer: pl.Trainer) -> Iterator[None]:
    """Keep other callbacks' backward/optimizer hooks from seeing steps of our own (the module's own hooks,
    gradient clipping included, still run: they are part of how it trains)."""
    saved = trainer.callbacks
    trainer.callbacks = []
    try:
        yield
    finally:
        trainer.callbacks = saved


def training_step(trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer,
                  batches: Iterator[Any], step: int) -> tuple[torch.Tensor | None, bool]:
    """One optimizer step the way ``fit`` takes it: ``accumulate_grad_batches`` micro-batches through the strategy
    (DDP gradient sync on the last only), precision and clipping applied, ``self.log`` calls captured.

    Returns:
        ``(loss, skipped)``: the mean loss of the micro-batches at the first closure call (``None`` when the step
        returned none) and whether the AMP grad scaler skipped the step.
    """
    accumulate = trainer.accumulate_grad_batches
    strategy = trainer.strategy
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    with_idx = is_param_in_hook_signature(pl_module.training_step, "batch_idx", min_args=2)
    no_sync = getattr(strategy.model, "no_sync", None)
    losses: list[torch.Tensor] = []
    calls = [0]

    def closure() -> torch.Tensor | None:
        calls[0] += 1
        pl_module.optimizer_zero_grad(trainer.current_epoch, step, optimizer)
        micro = []
        for k in range(accumulate):
            batch = _prepare(trainer, pl_module, next(batches))
            last = k == accumulate - 1
            with nullcontext() if last or no_sync is None else no_sync():
                args = (batch, step * accumulate + k) if with_idx else (batch,)
                loss = _step_loss(strategy.training_step(*args))
                if loss is None:
                    continue
                strategy.backward(loss / accumulate, optimizer)
            micro.append(loss.detach().float())
        if not micro:
            return None
        mean = torch.stack(micro).mean()
        if calls[0] == 1:  # LBFGS may call the closure again: record the first evaluation
            losses.append(mean)
        return mean

    scale_before = scaler.get_scale() if scaler is not None and scaler.is_enabled() else None
    with captured_logs(pl_module, keep_metrics=False):  # the caller's TrainingSnapshot restores the metrics
        strategy.optimizer_step(optimizer, closure, model=pl_module)
    skipped = scale_before is not None and scaler.get_scale() < scale_before
    return (losses[0] if losses else None), bool(skipped)


class StateKeyed(Callback):
    """Checkpoint-state plumbing for callbacks two of which can share a Trainer: a ``state_key`` made of the
    arguments that tell instances apart (Lightning's ``_generate_state_key``), and checkpoints saved under the
    old key, the bare class name, still load.

    Subclasses list those arguments in ``_state_key_fields``.
    """

    _state_key_fields: tuple[str, ...] = ()

    @property
    def state_key(self) -> str:
        return self._generate_state_key(**{name: _key_value(getattr(self, name)) for name in self._state_key_fields})

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("callbacks") or {}
        old = type(self).__qualname__
        if self.state_key not in states and old in states:  # saved before instances had their own keys
            self.load_state_dict(copy.deepcopy(states[old]))


def _key_value(value: Any) -> Any:
    """A compact, stable rendering of an argument for a state key."""
    if isinstance(value, np.ndarray):
        return [round(float(v), 6) for v in value]
    if isinstance(value, (list, tuple)):
        return [_key_value(v) for v in value]
    if callable(value) and not isinstance(value, type):
        return getattr(value, "__qualname__", type(value).__name__)
    return value
