"""Shared launcher: ``python -m recipes.<experiment>`` is ``lightning-papers fit --config <its YAML>``.

The YAML files ship inside the package (``lightning_papers/recipes/``, :mod:`lightning_papers.recipes`); these
launchers, kept in the checkout, run the one whose path matches theirs (``recipes/clr/x.py`` ->
``lightning_papers/recipes/clr/x.yaml``).
"""

from __future__ import annotations

import sys
from pathlib import Path


def launch(module_file: str, yaml_name: str | None = None, argv: list[str] | None = None) -> int:
    """Run ``fit`` with the recipe of ``module_file``'s path (same stem unless ``yaml_name``), plus ``argv``.

    A first argument among validate/test/predict replaces ``fit``.
    """
    from lightning_papers.cli import LIGHTNING_SUBCOMMANDS, main
    from lightning_papers.recipes import recipe_path

    here = Path(module_file).resolve()
    name = here.parent.relative_to(Path(__file__).resolve().parent) / (yaml_name or here.stem)
    config = recipe_path(name.as_posix())
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and args[0] in LIGHTNING_SUBCOMMANDS else "fit"
    return main([command, "--config", str(config), *args])
