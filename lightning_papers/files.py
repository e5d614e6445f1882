"""Files the package writes, and the files a user owns.

The rules (``docs/errors-and-files.md``): no command writes onto any of its inputs, however the path is spelled
(files are compared, not strings: symbolic and hard links, ``..``, a case-insensitive file system); none replaces a
file it did not create in this run unless the user passed ``--overwrite``; every file is written under a temporary
name in its folder and renamed over the target, so an interrupted run leaves the old file or the new one, never
half of one. Everything is checked before the work that produces the files starts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

__all__ = ["atomic_write", "check_outputs", "check_writable_folder", "same_file"]


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
