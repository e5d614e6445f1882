"""Work a command is asked to do, sized before it starts: what would take minutes, or more memory than the machine
has, is refused up front with the estimate (or, for time, run with a progress bar when the user insists).

Used by ``lightning-papers conv animate`` (Dumoulin & Visin, arXiv 1603.07285: one frame per output unit) and
``lightning-papers landscape`` (Li et al., arXiv 1712.09913: one evaluation per grid point). Pure Python.
"""

from __future__ import annotations

import os

__all__ = ["available_memory", "check_budget", "describe_bytes", "describe_seconds"]

MAX_SECONDS = 60.0  # what runs without asking: a minute


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` on Linux, else the physical memory), or
    ``None`` when the system does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def describe_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KB"`` (powers of 1024)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} PB"  # pragma: no cover


def describe_seconds(s: float) -> str:
    """``90`` -> ``"1.5 min"``, ``2e5`` -> ``"2.3 days"``."""
    for limit, unit, size in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600), (365 * 86400, "days", 86400)):
        if s < limit:
            return f"{s / size:.2g} {unit}"
    return f"{s / (365 * 86400):.2g} years"


def check_budget(what: str, seconds: float, nbytes: float, *, force: bool = False, flag: str = "--force",
                 max_seconds: float = MAX_SECONDS) -> None:
    """Refuse work estimated to need more memory than is available (always), or more than ``max_seconds``
    (unless ``force``).

    Args:
        what: the work, for the message (e.g. ``"conv animate --i 500: 248004 frames"``).
        seconds: the estimated time.
        nbytes: the estimated peak memory.
        force: the user insisted (``flag``): long work is allowed.

    Raises:
        ValueError: one line with the estimate and the fix.
    """
    memory = available_memory()
    if memory is not None and nbytes > memory:
        raise ValueError(f"Expected work that fits in memory, got {what}, an estimated {describe_bytes(nbytes)} where "
                         f"this machine has {describe_bytes(memory)} available: choose smaller sizes")
    if seconds > max_seconds and not force:
        raise ValueError(f"Expected work of under {describe_seconds(max_seconds)}, got {what}, an estimated "
                         f"{describe_seconds(seconds)}: pass {flag} to run it anyway (with a progress bar), or "
                         "choose smaller sizes")
