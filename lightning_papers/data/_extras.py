"""Imports from the optional ``data`` extra (scikit-learn, scikit-image), with one install hint."""

from __future__ import annotations

import importlib
from types import ModuleType


def require_extra(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (e.g. ``"sklearn.datasets"``) or say how to install it.

    Raises:
        ImportError: naming ``purpose`` and the extra that provides ``module``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise ImportError(
            f"{purpose} needs {package!r} (the data extra): install it with `pip install \"lightning-papers[data]\"`"
        ) from err
