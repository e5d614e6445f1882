"""``TensorBoardLayout``: the callback that writes the package's custom-scalars layout (DESIGN.md's tag table) into
the Trainer's TensorBoard loggers, drawing only charts the run has data for. The layout itself and the writers are
Lightning-free, in :mod:`lightning_papers.tensorboard`.
"""

from __future__ import annotations

import glob
import os
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from typing_extensions import override

from lightning_papers.tensorboard import Layout, _scalar_reader, add_layout, layout_for_tags


class TensorBoardLayout(Callback):
    """Write a custom-scalars layout into the Trainer's TensorBoard loggers that charts what the run logged.

    The layout is :data:`LAYOUT` (or ``layout``) without the charts the run logged no tag for, plus (with
    ``auto``) one chart per metric of the module that no such chart shows, its train/val/test curves together,
    whatever the spelling (``train_loss`` / ``val_loss``, ``train/loss``, ``Loss/train``, ``loss``; see
    :func:`layout_for_tags`). It is written when training logged its first tags and rewritten whenever the set of
    charts changes (after each validation and training epoch, and at fit end), so TensorBoard, which shows a
    run's last layout and merges the layouts of the runs it serves, never shows an empty chart; a run that logged
    nothing gets no layout. Rank zero only; loggers other than ``TensorBoardLogger`` are left alone.

    Args:
        layout: ``{category: {chart: ["Multiline", [tag regex, ...]]}}``; ``None`` uses :data:`LAYOUT`.
        auto: also chart the module's metrics that no chart of ``layout`` matches.

    Raises:
        ValueError: if ``layout`` is not in that form.

    Examples:
        >>> trainer = pl.Trainer(callbacks=[TensorBoardLayout()])  # doctest: +SKIP
    """

    def __init__(self, layout: Layout | None = None, *, auto: bool = True) -> None:
        if layout is not None:
            _check_layout(layout)
        self.layout = layout
        self.auto = bool(auto)
        self._readers: dict[str, Any] = {}
        self._written: dict[str, Layout] = {}

    def __getstate__(self) -> dict[str, Any]:
        # the event readers hold open files and generators: a spawned or checkpointed copy starts without them
        return {**self.__dict__, "_readers": {}, "_written": {}}

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._readers, self._written = {}, {}
        self._refresh(trainer)  # only what a previous fit in the same folder logged: nothing is drawn empty

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._refresh(trainer)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._refresh(trainer)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._refresh(trainer)

    def _refresh(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            logger.experiment.flush()
            log_dir = logger.log_dir
            layout = layout_for_tags(self._tags(log_dir), self.layout, auto=self.auto)
            if layout and layout != self._written.get(log_dir):
                add_layout(logger, layout)
                self._written[log_dir] = layout

    def _tags(self, log_dir: str) -> set[str]:
        # one reader per folder, reloaded incrementally: each refresh reads only the events written since the last
        if log_dir not in self._readers:
            if not glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
                return set()
            self._readers[log_dir] = _scalar_reader(log_dir)
        reader = self._readers[log_dir]
        reader.Reload()
        return set(reader.Tags()["scalars"])


def _check_layout(layout: Any) -> None:
    expected = 'Expected `layout` as {category: {chart: ["Multiline" or "Margin", [tag regex, ...]]}}'
    if not isinstance(layout, dict) or not layout:
        raise ValueError(f"{expected}, got {layout!r}")
    for category, charts in layout.items():
        if not isinstance(category, str) or not isinstance(charts, dict) or not charts:
            raise ValueError(f"{expected}; category {category!r} maps to {charts!r}")
        for chart, spec in charts.items():
            ok = (isinstance(chart, str) and isinstance(spec, (list, tuple)) and len(spec) == 2
                  and spec[0] in ("Multiline", "Margin") and isinstance(spec[1], (list, tuple))
                  and all(isinstance(t, str) for t in spec[1]))
            if not ok:
                raise ValueError(f"{expected}; chart {chart!r} in {category!r} is {spec!r}")
