"""The site's API reference (``docs/api/*.md``) documents exactly the public names: every name in
``lightning_papers.__all__`` and in each public submodule's ``__all__`` has one ``::: lightning_papers.<module>.<name>``
entry, on the page of the module that exports it, and nothing else is listed.

``python tests/test_api_reference.py`` rewrites the pages from the ``__all__`` lists (a name's description comes
from its docstring when mkdocstrings renders the site).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
from pathlib import Path

import lightning_papers

API = Path(__file__).resolve().parents[1] / "docs" / "api"
ENTRY = re.compile(r"^::: (lightning_papers(?:\.\w+)*)$", re.M)


def public_modules() -> list[str]:
    """``lightning_papers`` and its public first-level modules and subpackages that declare ``__all__``."""
    names = ["lightning_papers"]
    for info in pkgutil.iter_modules(lightning_papers.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"lightning_papers.{info.name}")
        if hasattr(module, "__all__"):
            names.append(module.__name__)
    return names


def exported() -> set[str]:
    """Every ``<module>.<name>`` that a public module's ``__all__`` exports."""
    return {f"{m}.{name}" for m in public_modules() for name in importlib.import_module(m).__all__}


def documented() -> set[str]:
    """Every entry on the API pages, less the module headers (``::: lightning_papers.callbacks`` itself)."""
    modules = set(public_modules())
    return {e for page in API.glob("*.md") for e in ENTRY.findall(page.read_text())} - modules


def page_text(module: str) -> str:
    """A module's page: its docstring, then one entry per name in its ``__all__``, in that order."""
    entries = "\n\n".join(f"::: {module}.{name}" for name in importlib.import_module(module).__all__)
    header = f"::: {module}\n    options:\n      members: false\n      show_root_heading: false\n"
    return f"# `{module}`\n\n{header}\n{entries}\n"


def test_every_public_name_has_an_api_entry_and_nothing_else():
    missing, extra = exported() - documented(), documented() - exported()
    assert not missing, f"public names without an API entry (run `python tests/test_api_reference.py`): {missing}"
    assert not extra, f"API entries that are not public names: {extra}"


def test_every_public_module_has_a_page_in_the_navigation():
    nav = (API.parents[1] / "mkdocs.yml").read_text()
    for module in public_modules():
        page = f"api/{module.removeprefix('lightning_papers.')}.md"
        assert (API.parent / page).is_file() and page in nav, page


def test_the_lists_are_compared_for_real():
    # the comparison above would pass on two empty sets: the package exports what README's parts are
    names = exported()
    assert len(names) > 150
    assert {"lightning_papers.callbacks.CyclicalLR", "lightning_papers.landscape.surface",
            "lightning_papers.__version__"} <= names


if __name__ == "__main__":
    for module in public_modules():
        (API / f"{module.removeprefix('lightning_papers.')}.md").write_text(page_text(module))
    sys.exit(0)
