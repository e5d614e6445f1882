"""``recipes`` command line: list, show and copy the recipes that ship in the package
(:mod:`lightning_papers.recipes`), so that ``lightning-papers fit --config`` runs one from any folder::

    lightning-papers recipes list
    lightning-papers recipes show clr/resnet20_digits_triangular2
    lightning-papers recipes copy quickstart my_runs/      # writes my_runs/quickstart.yaml
    lightning-papers fit --config my_runs/quickstart.yaml
"""

from __future__ import annotations

import argparse
import textwrap

__all__ = ["add_subparser", "run"]


def add_subparser(subparsers) -> None:
    p = subparsers.add_parser(
        "recipes",
        help="list, show or copy the recipes that ship with the package",
        description="The recipes are LightningCLI YAML files inside the package: copy one into a folder of yours "
        "and run it with `lightning-papers fit --config <the copy>`.",
    )
    commands = p.add_subparsers(dest="recipes_command", metavar="{list,show,copy}")
    commands.required = True
    commands.add_parser("list", help="every recipe's name and title")
    show = commands.add_parser("show", help="print a recipe")
    show.add_argument("name", help="a name from `lightning-papers recipes list`")
    copy = commands.add_parser("copy", help="copy a recipe into a folder as <name>.yaml")
    copy.add_argument("name", help="a name from `lightning-papers recipes list`")
    copy.add_argument("folder", nargs="?", default=".", help="where to write the copy (default: here)")
    copy.add_argument("--overwrite", action="store_true", help="replace a file of that name in the folder")


def _title(text: str) -> str:
    """The header's first sentence-ish: its first comment line, without the leading ``#``."""
    first = next((line for line in text.splitlines() if line.startswith("#")), "# ")
    return textwrap.shorten(first.lstrip("# ").strip(), width=90, placeholder=" ...")


def run(args: argparse.Namespace) -> int:
    from lightning_papers.cli._tool import answer
    from lightning_papers.recipes import copy_recipe, list_recipes, read_recipe

    if args.recipes_command == "list":
        names = list_recipes()
        width = max(len(n) for n in names)
        answer("\n".join(f"{n:<{width}}  {_title(read_recipe(n))}" for n in names))
    elif args.recipes_command == "show":
        answer(read_recipe(args.name).rstrip("\n"))
    else:
        dst = copy_recipe(args.name, args.folder, overwrite=args.overwrite)
        answer(f"wrote {dst}\nrun it: lightning-papers fit --config {dst}")
    return 0
