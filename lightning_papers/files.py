"""Files the package writes: checked before the work that produces them starts."""

from __future__ import annotations

import tempfile
from pathlib import Path

__all__ = ["check_writable_folder"]


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
