"""What makes every ``lightning-papers`` subcommand read like a tool: user errors as one ``error:`` line with status 2
(:func:`run_as_tool`), answers on standard output (:func:`answer`), LightningCLI with one-line parser errors
(:func:`lightning_cli`), and quiet framework noise. Shared by the subcommands; :mod:`lightning_papers.cli` dispatches.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
DEBUG_ENV = "LIGHTNING_PAPERS_DEBUG"
# what the package raises for input a user can fix (MissingExtraError: an optional extra to `pip install`)
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, ImportError)  # ImportError: only MissingExtraError is ours (see _ours)
_PACKAGE = str(Path(__file__).resolve().parents[1])


def lightning_cli(args: Sequence[str], **kwargs):
    """``LightningCLI`` over any LightningModule / LightningDataModule named in the config, on ``args``.

    Lightning warns whenever ``args`` are given while the process has command-line arguments of its own
    ("not recommended to provide both"): here ``args`` *are* the command line, passed on, so that warning is
    silenced. ``validate|test|predict --ckpt_path`` with a checkpoint of another model class than the config's
    is refused (Lightning would silently switch to the checkpoint's class).
    """
    from jsonargparse import ArgumentError
    from lightning.pytorch.cli import LightningCLI

    class _CLI(LightningCLI):
        def parse_arguments(self, parser, args) -> None:
            try:
                super().parse_arguments(parser, args)
            except ArgumentError as err:
                raise ValueError(condense_parser_error(str(err))) from None
            except UnicodeDecodeError:
                raise ValueError(f"Expected --config to be a YAML file, got {_config_arg(args)!r}, which is not "
                                 "text") from None
            _check_ckpt_class(self.config)

        def _set_seed(self) -> None:
            # the config's own seed is not news ("Seed set to 0" before a one-line error); a random one is printed
            from lightning.fabric.utilities.seed import seed_everything

            seed = self._get(self.config, "seed_everything")
            if seed is True or seed is False:
                return super()._set_seed()
            seed = seed_everything(seed, workers=True, verbose=False)
            (self.config[self.subcommand] if self.subcommand else self.config)["seed_everything"] = seed

        def instantiate_trainer(self, **kwargs):
            # an accelerator or strategy this machine cannot run (`--trainer.accelerator tpu` without torch_xla,
            # `gpu` without CUDA): Lightning's ImportError / MisconfigurationException as one line
            from lightning.fabric.utilities.exceptions import MisconfigurationException

            try:
                return super().instantiate_trainer(**kwargs)
            except (ImportError, MisconfigurationException) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise ValueError(f"Expected --trainer settings this machine can run, got: {first}") from None

        def _parse_ckpt_path(self) -> None:  # Lightning >= 2.5: the checkpoint's hyperparameters checked too
            try:
                if not _parse_plain_ckpt_hparams(self):
                    super()._parse_ckpt_path()
            except ArgumentError as err:
                raise ValueError("Expected --ckpt_path to be a checkpoint of the config's model, got hyperparameters "
                                 f"that do not fit it: {condense_parser_error(str(err))}") from None

    defaults = dict(model_class=None, datamodule_class=None, subclass_mode_model=True, subclass_mode_data=True)
    # jsonargparse raises instead of printing usage and paragraphs: its error becomes one line (condense_parser_error)
    no_exit = {"exit_on_error": False}
    kwargs["parser_kwargs"] = {**no_exit, **{c: dict(no_exit) for c in LIGHTNING_SUBCOMMANDS},
                               **kwargs.get("parser_kwargs", {})}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        # Lightning's own calls of jsonargparse APIs that jsonargparse deprecates: not the user's business
        warnings.filterwarnings("ignore", category=_jsonargparse_deprecation())
        return _CLI(**{**defaults, **kwargs}, args=list(args))


def _parse_plain_ckpt_hparams(cli) -> bool:
    """A ``--ckpt_path`` saved by a Trainer outside LightningCLI has hyperparameters without ``_class_path``:
    Lightning would apply them to the base ``LightningModule`` ("Option 'model' is not accepted"); they are applied
    to the config's model class instead. Returns whether it handled the checkpoint."""
    command, ckpt, wanted = _ckpt_and_model(cli.config)
    if not command or not ckpt or not wanted or not Path(str(ckpt)).is_file():
        return False
    from lightning_papers.modules.image_model import read_checkpoint

    hparams = read_checkpoint(ckpt, "--ckpt_path").get("hyper_parameters") or {}
    if not isinstance(hparams, dict) or not hparams or "_class_path" in hparams:
        return False
    hparams = {k: v for k, v in hparams.items() if k != "_instantiator"}
    cli.config = cli.parser.parse_object({command: {"model": {"class_path": wanted, "init_args": hparams}}},
                                         cli.config)
    return True


def _config_arg(args: Sequence[str]) -> str:
    """The value of ``--config`` (or ``-c``) in ``args``, for a message."""
    args = [str(a) for a in args or ()]
    for i, a in enumerate(args):
        if a in ("--config", "-c") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return "?"


def _jsonargparse_deprecation() -> type[Warning]:
    import jsonargparse

    # an older jsonargparse has no category of its own
    warning: type[Warning] = getattr(jsonargparse, "JsonargparseDeprecationWarning", DeprecationWarning)
    return warning


def condense_parser_error(message: str) -> str:
    """jsonargparse's multi-line error (a union of subtypes, the errors of each, the given value) as one line:
    the key path and the innermost reasons, e.g. ``Expected a valid configuration, got model.lr: Expected a
    <class 'float'>. Got value: abc``."""
    import re

    noise = ("Does not validate", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>",
             "tip:", "usage:")
    keys, reasons = [], []
    for line in message.splitlines():
        line = line.strip().lstrip("-").strip()
        key = re.match(r'^Parser key "([^"]+)":\s*(.*)$', line)
        if key:
            keys.append(key.group(1))
            line = key.group(2)
        if line and not line.startswith(noise):
            reasons.append(re.sub(r"^Problem with given class_path '([^']+)':?", r"class \1:", line))
    path = ".".join(dict.fromkeys(keys))
    text = " ".join(reasons) or message.strip().splitlines()[0]
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"Expected a valid configuration, got {path}: {text}" if path else text


def _ckpt_and_model(config: Any) -> tuple[str | None, Any, Any]:
    """``(subcommand, ckpt_path, the model's class_path)`` of a parsed LightningCLI config (``None`` where absent)."""
    command = config.get("subcommand")
    section = config.get(command) if command else config
    ckpt = section.get("ckpt_path") if section is not None else None
    model = section.get("model") if section is not None else None
    wanted = getattr(model, "class_path", None) or (model.get("class_path") if isinstance(model, dict) else None)
    return command, ckpt, wanted


def _check_ckpt_class(config: Any) -> None:
    """Refuse a ``--ckpt_path`` whose checkpoint was written by another model class than the config names."""
    _, ckpt, wanted = _ckpt_and_model(config)
    if ckpt and isinstance(ckpt, (str, Path)) and str(ckpt) not in ("best", "last", "hpc", "registry") \
            and "://" not in str(ckpt) and not str(ckpt).startswith("registry:") and not Path(ckpt).is_file():
        what = "a folder" if Path(ckpt).is_dir() else "no such file"
        raise FileNotFoundError(f"Expected --ckpt_path to be a checkpoint file, got {str(ckpt)!r} ({what})")
    if not ckpt or not wanted or not Path(ckpt).is_file():
        return
    from lightning_papers.modules.image_model import read_checkpoint

    hparams = read_checkpoint(ckpt, "--ckpt_path").get("hyper_parameters") or {}
    found = hparams.get("_class_path") if isinstance(hparams, dict) else None
    if found and found.rsplit(".", 1)[-1] != str(wanted).rsplit(".", 1)[-1]:
        raise ValueError(f"Expected --ckpt_path to be a checkpoint of the config's model {wanted}, got a {found} "
                         f"checkpoint in {ckpt!r}")


def answer(text: str) -> None:
    """Write a command's answer (a summary, a table, where the files went) to standard output: the one place the
    command line prints; library code logs instead."""
    sys.stdout.write(f"{text}\n")
    sys.stdout.flush()


def run_lightning_cli(args: Sequence[str]):
    """Run LightningCLI on ``args`` (e.g. ``["fit", "--config", "quickstart.yaml"]``)."""
    return lightning_cli(args, save_config_kwargs={"overwrite": True})


def _ours(err: BaseException) -> BaseException | None:
    """``err``, or the error it was raised from (LightningCLI wraps a module's own ``ValueError`` in its own), when
    its innermost frame is in this package: one of the package's own checks, not a bug elsewhere."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb, last = current.__traceback__, None
        while tb is not None:
            last, tb = tb, tb.tb_next
        from lightning_papers.data._extras import MissingExtraError

        if isinstance(current, ImportError) and not isinstance(current, MissingExtraError):
            current = current.__cause__ or current.__context__
            continue
        if isinstance(current, USER_ERRORS) and last is not None and \
                os.path.abspath(last.tb_frame.f_code.co_filename).startswith(_PACKAGE):
            return current
        current = current.__cause__ or current.__context__
    return None


def run_as_tool(prog: str, fn: Callable[[], int], debug: bool = False) -> int:
    """Run ``fn``; the package's own user errors become ``<prog>: error: <message>`` on stderr and status 2."""
    try:
        return int(fn() or 0)
    except USER_ERRORS as err:
        ours = _ours(err)
        if debug or os.environ.get(DEBUG_ENV, "") not in ("", "0") or ours is None:
            raise
        sys.stderr.write(f"{prog}: error: {ours}\n")
        return 2


class _NoAdverts:
    """A logging filter: Lightning's "💡 Tip: ... try installing litlogger/litmodels" lines are not for our users."""

    @staticmethod
    def filter(record) -> bool:
        return not str(record.getMessage()).startswith("💡 Tip")


def quiet_framework_noise() -> None:
    """Leave on stderr only what a user of the command must read: the deprecation notices that Lightning's own
    calls raise in jsonargparse and torch's pytree (a user cannot act on them), and Lightning's product tips."""
    import logging

    warnings.filterwarnings("ignore", category=_jsonargparse_deprecation())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _NoAdverts) for f in handler.filters):
                handler.addFilter(_NoAdverts())
