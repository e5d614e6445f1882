"""A LightningModule's evaluation as the landscape core takes it: :func:`module_spec` builds the
:class:`~lightning_papers.landscape.EvaluationSpec` that :class:`~lightning_papers.callbacks.LossLandscapeProbe`
and ``lightning-papers landscape`` pass to :func:`~lightning_papers.landscape.surface` (Li et al., Visualizing the
Loss Landscape of Neural Nets, 2018, arXiv 1712.09913) from :func:`evaluation_batches` (a few fixed batches through
the module's own transfer hooks, under an evaluation stage, the same on every rank when asked),
:class:`ModuleEvaluation` (the module's own loss, its ``self.log`` calls and metric updates kept out of the user's
logs) in the Trainer's precision. Every private Lightning (or torchmetrics) attribute
touched here has a comment that says why.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import RunningStage
from lightning.pytorch.utilities.seed import isolate_rng
from lightning.pytorch.utilities.signature_utils import is_param_in_hook_signature

from lightning_papers import _helpers as devices
from lightning_papers.landscape import EvaluationSpec, accuracy, preserved_model

__all__ = [
    "ModuleEvaluation", "captured_logs", "classification_target", "evaluation_batches", "module_spec", "preflight",
]


@contextmanager
def module_spec(trainer: pl.Trainer, pl_module: pl.LightningModule, split: str, num_batches: int, *,
                loss_fn: Callable | None = None, metrics: Mapping[str, Callable] | None = None,
                seed: int | None = None, **options: Any) -> Iterator[EvaluationSpec]:
    """The :class:`~lightning_papers.landscape.EvaluationSpec` of ``pl_module`` in ``trainer``, for the block.

    ``num_batches`` fixed batches of the ``split`` (``"train"``/``"val"``) loader, the same on every rank
    (:func:`evaluation_batches`), evaluated by the module's own loss (:class:`ModuleEvaluation`, its ``self.log``
    calls captured while the block runs), in the Trainer's autocast dtype unless ``options`` say another
    (``torch.float32``: none). With an option that evaluates a copy of the network (``fold_bn``,
    ``channels_last``, ``compile``, ``backend="vmap"``), ``loss_fn`` and ``metrics`` on its output instead, plus
    accuracy when the batches are ``(inputs, class targets)`` and the output is logits. ``options``: the other
    fields of the spec (``shard``, ``gather``, ...).

    Raises:
        RuntimeError: when the loader is missing or empty.
        ValueError: as :class:`~lightning_papers.landscape.EvaluationSpec` does.
    """
    batches = evaluation_batches(trainer, pl_module, split, num_batches, seed=seed)
    dtype = options.pop("autocast_dtype", None) or devices.autocast_dtype(str(trainer.precision))
    options["autocast_dtype"] = None if dtype == torch.float32 else dtype
    probe = EvaluationSpec([], **options)  # the options checked before anything runs
    if probe.copies and loss_fn is not None:
        extra: dict[str, str | Callable] = {"loss": "loss", **(metrics or {})}
        if isinstance(batches[0], (list, tuple)) and batches[0] and "accuracy" not in extra:
            with preserved_model(pl_module), torch.no_grad():  # eval mode: no BatchNorm statistics change
                pl_module.eval()
                logits = pl_module(batches[0][0])
            if classification_target(batches[0], logits) is not None:
                extra["accuracy"] = "accuracy"
        yield EvaluationSpec(batches, metrics=extra, loss_fn=loss_fn, **options)
        return
    evaluation = ModuleEvaluation(pl_module, loss_fn, metrics)
    with evaluation.active():
        yield EvaluationSpec(batches, evaluate=evaluation, **options)


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
                datamodule = getattr(trainer, "datamodule", None)
                owner = datamodule if datamodule is not None else pl_module
                method = getattr(owner, f"{which}_dataloader", None)
                loader = _first_loader(method()) if callable(method) else None
        except Exception:  # noqa: BLE001 - a source without this loader (Lightning's hook raises) has none
            loader = None
    return loader


def _generators(loader: Any) -> list[torch.Generator]:
    """The random generators a DataLoader's sampling draws from (its own, its sampler's, its batch sampler's)."""
    found: list[torch.Generator] = []
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
    saved = trainer.state.stage
    trainer.state.stage = RunningStage.VALIDATING  # data hooks see `trainer.training` False: no augmentation
    try:
        return [_prepare(trainer, pl_module, b) for b in raw]
    finally:
        trainer.state.stage = saved


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
    pl_module.log = log  # type: ignore[method-assign]  # shadowed on purpose, see above
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
        def keep(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> None:
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
            values["accuracy"] = accuracy(output, target)
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
    from lightning_papers.landscape.double_backward import describe_blocker, double_backward_blocker

    if _loader(trainer, pl_module, which) is None:
        other = "train" if which == "val" else "val"
        raise ValueError(f"{owner}: expected a {which} dataloader to evaluate on, got none; pass "
                         f"`split={other!r}` or give the Trainer {which} data")
    try:
        batch = evaluation_batches(trainer, pl_module, which, 1, same_on_all_ranks=False, seed=seed)[0]
    except RuntimeError as err:
        raise ValueError(f"{owner}: {err}") from None
    params: list[torch.Tensor] = [p for p in pl_module.parameters() if p.requires_grad]
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


