"""Small helpers below both ``modules/`` and ``cli/``: device and precision names, ``torch.compile`` with an
eager fallback, the files a user owns, and deprecated module aliases. Pure PyTorch and Python: no Lightning.

- Devices and precisions: the one place that turns what a user types (``--device auto|cpu|cuda|cuda:N``,
  ``--precision 32|bf16|16``, or Lightning's ``"bf16-mixed"``, ...) into a ``torch.device`` and an autocast dtype,
  so a name means the same in the image runner, loss surfaces, the probes inside a Trainer and the benchmarks.
- :class:`CompiledOrEager`: ``torch.compile`` compiles at the first call of each input shape and can fail there
  for reasons that have nothing to do with the caller (no C compiler, no Triton, an unsupported Python or
  operator); the call is then repeated eagerly, a warning names the error once, and later calls run eagerly.
- Files (``docs/errors-and-files.md``): no command writes onto any of its inputs, however the path is spelled
  (files are compared, not strings: symbolic and hard links, ``..``, a case-insensitive file system); none
  replaces a file it did not create in this run unless the user passed ``--overwrite``; every file is written
  under a temporary name in its folder and renamed over the target, so an interrupted run leaves the old file or
  the new one, never half of one. Everything is checked before the work that produces the files starts.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

# --precision value -> autocast dtype (None: plain float32)
PRECISIONS: dict[str, torch.dtype | None] = {"32": None, "bf16": torch.bfloat16, "16": torch.float16}
# --precision value -> Lightning's name for the same
LIGHTNING_PRECISIONS: dict[str, str] = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}
# Lightning precision -> the autocast dtype its training step runs under ("-true" precisions cast the weights
# themselves, so a forward pass needs no autocast)
_LIGHTNING_AUTOCAST: dict[str, torch.dtype | None] = {
    "32-true": None, "32": None, "64-true": None, "64": None, "bf16-true": None, "16-true": None,
    "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16,
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else the CPU; any other torch device name as is.

    Raises:
        ValueError: for a name torch does not know, or a CUDA device when CUDA is not available.

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"Expected --device to be auto, cpu, cuda or cuda:N, got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"Expected --device to be a device this machine has, got {device!r} (CUDA is not available)")
    return dev


def autocast_dtype(precision: str | int | None) -> torch.dtype | None:
    """The autocast dtype of a precision name: ours (``"32"``, ``"bf16"``, ``"16"``) or Lightning's
    (``"32-true"``, ``"bf16-mixed"``, ``"16-mixed"``, ``"bf16-true"``, ...); ``None`` means no autocast.

    Raises:
        ValueError: for a name that is neither.

    Examples:
        >>> autocast_dtype("bf16-mixed"), autocast_dtype("32")
        (torch.bfloat16, None)
    """
    name = "32" if precision is None else str(precision)
    if name in PRECISIONS:
        return PRECISIONS[name]
    if name in _LIGHTNING_AUTOCAST:
        return _LIGHTNING_AUTOCAST[name]
    raise ValueError(f"Expected a precision among {sorted(PRECISIONS)} or Lightning's "
                     f"{sorted(_LIGHTNING_AUTOCAST)}, got {precision!r}")


class CompiledOrEager:
    """``fn = CompiledOrEager(module, mode=...)``; ``fn(*args)`` runs ``torch.compile(module)``, or ``module``
    once compiling has failed.

    Args:
        module: the module to call.
        enabled: ``False`` calls ``module`` eagerly and never compiles.
        **compile_kwargs: passed to ``torch.compile`` (``mode``, ``backend``, ``dynamic``, ...).

    Attributes:
        error: ``"<ExceptionType>: <first line>"`` of the compile failure, or ``None``.

    Examples:
        >>> fn = CompiledOrEager(nn.Linear(2, 2), enabled=False)
        >>> fn(torch.zeros(1, 2)).shape, fn.compiled
        (torch.Size([1, 2]), False)
    """

    def __init__(self, module: nn.Module, *, enabled: bool = True, **compile_kwargs: Any) -> None:
        self.module = module
        self.error: str | None = None
        self._compiled: Any = None
        if enabled:
            try:
                self._compiled = torch.compile(module, **compile_kwargs)
            except Exception as err:  # e.g. "Dynamo is not supported on Python 3.x" on an older torch
                self._fall_back(err)

    @property
    def compiled(self) -> bool:
        """Whether calls go through ``torch.compile`` (False when disabled or after a fallback to eager)."""
        return self._compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is None:
            return self.module(*args, **kwargs)
        try:
            return self._compiled(*args, **kwargs)
        except Exception as err:  # compiling happens at the first call of each input shape
            out = self.module(*args, **kwargs)  # an error of the inputs' own is raised here, as without compile
            self._fall_back(err)
            return out

    def _fall_back(self, err: BaseException) -> None:
        self._compiled = None
        lines = str(err).strip().splitlines()
        self.error = f"{type(err).__name__}: {lines[0][:300] if lines else ''}"
        warnings.warn(f"torch.compile failed ({self.error}); running the network eagerly instead", RuntimeWarning,
                      stacklevel=3)


def check_writable_folder(folder: str | Path, what: str) -> None:
    """Make ``folder`` (with its parents) and create and remove a file there.

    Raises:
        ValueError: naming ``what`` (e.g. ``"--output"``) and the folder, when it cannot be made or written into.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".lightning-papers-check-"):
            pass
    except OSError as err:
        raise ValueError(f"Expected {what} in a folder this user can write, got {str(folder)!r} "
                         f"({err.strerror or type(err).__name__})") from None


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file: the same inode when both exist (hard and symbolic links, ``..``, case
    on a case-insensitive file system), else the same path once links and ``..`` are resolved."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_outputs(outputs: Sequence[str | os.PathLike], inputs: Iterable[str | os.PathLike] = (), *,
                  flag: str = "--output", overwrite: bool = False, input_flag: str = "an input") -> None:
    """Refuse, before any work, outputs that would write onto an input, onto each other, or replace a file.

    Args:
        outputs: the files a command is about to write.
        inputs: the files it reads (images, checkpoints, configs).
        flag: the option that named the outputs, for the message.
        overwrite: whether existing files (not inputs) may be replaced (the command's ``--overwrite``).
        input_flag: what the inputs are called in the message (e.g. ``"--ckpt"``).

    Raises:
        ValueError: for an output that is an input, two outputs that are one file, an output that is a folder, or an
            existing file without ``overwrite``; one line naming the path and the fix.
    """
    inputs = [Path(p) for p in inputs]
    seen: dict[Path, Path] = {}
    existing = []
    for out in map(Path, outputs):
        for src in inputs:
            if same_file(out, src):
                how = "" if str(out) == str(src) else f" (as {str(src)!r})"
                raise ValueError(f"Expected {flag} to differ from {input_flag}, got {str(out)!r}, which is {input_flag}"
                                 f"{how}: it would be overwritten; choose another name")
        key = Path(os.path.normcase(out.resolve()))
        if key in seen:
            raise ValueError(f"Expected one file per output, got {str(out)!r} twice (also as {str(seen[key])!r})")
        seen[key] = out
        if out.is_dir():
            raise ValueError(f"Expected {flag} to name a file, got the folder {str(out)!r}")
        if out.exists() or out.is_symlink():
            existing.append(out)
    if existing and not overwrite:
        more, verb = (f" and {len(existing) - 1} more", "exist") if len(existing) > 1 else ("", "exists")
        raise ValueError(f"Expected {flag} to name new files, got {str(existing[0])!r}{more}, which {verb}: pass "
                         f"--overwrite to replace {'them' if more else 'it'}, or choose another {flag}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, rename it over ``path``
    (``os.replace``: atomic on one file system; a link at ``path`` is replaced, not written through). On error the
    temporary file is removed and ``path`` is left as it was. The file gets the user's umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def lightning_info_off() -> Iterator[None]:
    """Only Lightning's warnings pass while the block runs: its info lines ("GPU available", the seed,
    ``limit_val_batches``) about a Trainer the package sets up for itself are not the user's to read."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def moved(old: str, home: str, names: Iterable[str], removed_in: str = "0.4.0") -> Callable[[str], Any]:
    """A module ``__getattr__`` for the deprecated module ``old``: each of ``names`` comes from the module ``home``
    (imported at first use) with a ``DeprecationWarning`` that says where to import it from now."""
    names = frozenset(names)

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        internal = home.rpartition(".")[2].startswith("_")
        fix = f"it is internal now ({home}); copy it if you rely on it" if internal else f"import it from {home}"
        warnings.warn(f"{old}.{name} is deprecated and goes in {removed_in}: {fix}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home), name)

    return __getattr__
