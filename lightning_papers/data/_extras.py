"""Imports from the optional extras (``data``: scikit-learn, scikit-image; ``export``: onnx), with one install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require_extra"]


class MissingExtraError(ImportError):
    """An optional extra of ``lightning-papers`` is not installed; the message names the ``pip install`` line."""


def require_extra(module: str, purpose: str, extra: str = "data") -> ModuleType:
    """Import ``module`` (e.g. ``"sklearn.datasets"``) or say how to install it.

    Args:
        module: the module to import.
        purpose: what needs it, for the message (e.g. ``"DigitsDataModule"``).
        extra: the optional extra of ``lightning-papers`` that installs it (``"data"`` or ``"export"``).

    Raises:
        MissingExtraError: (an ``ImportError``) naming ``purpose`` and the extra that provides ``module``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise MissingExtraError(
            f"{purpose} needs {package!r} (the {extra} extra): install it with "
            f"`pip install \"lightning-papers[{extra}]\"`"
        ) from err
