"""The recipes: LightningCLI YAML files that ship inside the package, so that an installed wheel runs them.

Each recipe opens with a comment header: the paper (arXiv id), what it reproduces, the hardware, the wall-clock
time and the measured result. A recipe's name is its path below this folder without ``.yaml``
(``quickstart``, ``clr/resnet20_digits_triangular2``); the last part alone (``resnet20_digits_triangular2``)
names it too. From the command line::

    lightning-papers recipes list
    lightning-papers recipes show quickstart
    lightning-papers recipes copy quickstart .        # writes ./quickstart.yaml
    lightning-papers fit --config quickstart.yaml

Examples:
    >>> "clr/resnet20_digits_triangular2" in list_recipes()
    True
    >>> recipe_path("resnet20_digits_triangular2").name
    'resnet20_digits_triangular2.yaml'
    >>> read_recipe("quickstart").splitlines()[0].startswith("# Quickstart")
    True
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

__all__ = ["copy_recipe", "list_recipes", "read_recipe", "recipe_path"]

_SUFFIX = ".yaml"


def _root() -> Path:
    return Path(str(resources.files(__name__)))


def list_recipes() -> list[str]:
    """Every recipe's name (its path below the recipes folder, without ``.yaml``), sorted."""
    root = _root()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob(f"*{_SUFFIX}"))


def recipe_path(name: str) -> Path:
    """The YAML file of the recipe ``name`` (``"quickstart"``, ``"clr/resnet20_digits_triangular2"`` or just
    ``"resnet20_digits_triangular2"``; a trailing ``.yaml`` is allowed).

    Raises:
        ValueError: if no recipe, or more than one, has that name; the message lists the names.
    """
    names = list_recipes()
    wanted = str(name).removesuffix(_SUFFIX).strip("/")
    found = [n for n in names if n == wanted] or [n for n in names if n.rsplit("/", 1)[-1] == wanted]
    if len(found) != 1:
        what = "an unknown recipe" if not found else f"an ambiguous name ({', '.join(found)})"
        raise ValueError(f"Expected a recipe name from `lightning-papers recipes list` ({', '.join(names)}), "
                         f"got {name!r}: {what}")
    return _root() / f"{found[0]}{_SUFFIX}"


def read_recipe(name: str) -> str:
    """The text of the recipe ``name`` (its comment header and the LightningCLI configuration)."""
    return recipe_path(name).read_text(encoding="utf-8")


def copy_recipe(name: str, folder: str | os.PathLike = ".", *, overwrite: bool = False) -> Path:
    """Copy the recipe ``name`` into ``folder`` (created if missing) as ``<last part of the name>.yaml``.

    Returns:
        The path of the copy: ``lightning-papers fit --config <that path>`` runs it.

    Raises:
        ValueError: for an unknown recipe name.
        FileExistsError: if the copy's path exists and ``overwrite`` is false (your file is left as it is).
        NotADirectoryError: if ``folder`` is a file.
    """
    src = recipe_path(name)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"Expected a folder to copy the recipe into, got the file {str(folder)!r}")
    dst = folder / src.name
    if dst.exists() and not overwrite:
        raise FileExistsError(f"Expected a new file for the recipe copy, but {str(dst)!r} exists: remove it, "
                              f"pick another folder or pass --overwrite")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return dst
