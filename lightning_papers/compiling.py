"""``CompiledOrEager``: call a module through ``torch.compile``, and fall back to eager mode if compiling fails.

Shared by the image commands' runner and the loss-landscape surfaces. ``torch.compile`` compiles at the first
call of each input shape, and can fail there for reasons that have nothing to do with the caller (no C compiler,
no Triton, an unsupported Python or operator). A fast path should then not cost the run: the call is repeated
eagerly, a warning names the error once, and every later call runs eagerly.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

__all__ = ["CompiledOrEager"]


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
