"""Shared launcher: ``python -m recipes.<experiment>`` is ``lightning-papers fit --config <its YAML>``."""

from __future__ import annotations

import sys
from pathlib import Path


def launch(module_file: str, yaml_name: str | None = None, argv: list[str] | None = None) -> int:
    """Run ``fit`` with the YAML beside ``module_file`` (same stem unless ``yaml_name``), plus ``argv``.

    A first argument among validate/test/predict replaces ``fit``.
    """
    from lightning_papers.cli import LIGHTNING_SUBCOMMANDS, main

    config = Path(module_file).with_name(yaml_name or Path(module_file).stem + ".yaml")
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and args[0] in LIGHTNING_SUBCOMMANDS else "fit"
    return main([command, "--config", str(config), *args])
