"""Imports from the optional extras (``data``: scikit-learn, scikit-image; ``export``: onnx), with one install hint."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional extra is not installed. The message is one line that names the ``pip install`` to run; the
    command line prints it as ``lightning-papers <command>: error: <message>``, without a traceback."""


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
