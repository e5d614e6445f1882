"""DESIGN.md's layers: imports only point downwards.

``lightning_papers/cli/`` is on top; no library package imports it. The pure core (``landscape/``,
``conv_arithmetic/``) imports nothing above it: no ``lightning``, no callbacks, modules or command line. Modules
never import callbacks. Checked twice: on the source (every import statement, function-level ones included,
parsed with ``ast``) and on what a fresh interpreter actually loads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_papers"


def _imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` / ``from ... import`` in ``path`` names (relative imports resolved), and for
    ``from package import name`` also ``package.name`` (it may be a submodule)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = parts[:-1]  # a module's package; for an __init__.py, the package itself
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _violations(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in sorted((PACKAGE / folder).rglob("*.py")) if folder else sorted(PACKAGE.rglob("*.py")):
        if not folder and path.is_relative_to(PACKAGE / "cli"):
            continue
        bad = sorted(m for m in _imported_modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if bad:
            found[str(path.relative_to(PACKAGE.parent))] = bad
    return found


def test_the_import_parser_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "lightning_papers" / "landscape"
    pkg.mkdir(parents=True)
    source = pkg / "x.py"
    source.write_text("import torch\nfrom . import surface\n\ndef f():\n    from ..cli import landscape\n")
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path / "lightning_papers")
    assert {"torch", "lightning_papers.landscape.surface", "lightning_papers.cli.landscape"} <= _imported_modules(
        source)
    assert _violations("landscape", ("lightning_papers.cli",)) == {
        "lightning_papers/landscape/x.py": ["lightning_papers.cli", "lightning_papers.cli.landscape"]}


@pytest.mark.parametrize("folder", ["landscape", "conv_arithmetic"])
def test_the_pure_core_imports_nothing_above_it(folder):
    forbidden = ("lightning", "lightning_papers.cli", "lightning_papers.callbacks", "lightning_papers.modules",
                 "jsonargparse")
    assert list((PACKAGE / folder).glob("*.py")), folder
    assert _violations(folder, forbidden) == {}


def test_modules_do_not_import_callbacks_or_the_command_line():
    assert _violations("modules", ("lightning_papers.callbacks", "lightning_papers.cli")) == {}


def test_no_library_module_imports_the_command_line():
    assert _violations("", ("lightning_papers.cli",)) == {}


def test_importing_the_pure_core_loads_nothing_above_it():
    code = (
        "import sys, lightning_papers, lightning_papers.landscape, lightning_papers.conv_arithmetic\n"
        "above = ('lightning', 'jsonargparse', 'lightning_papers.cli', 'lightning_papers.callbacks', "
        "'lightning_papers.modules')\n"
        "bad = sorted(m for m in sys.modules if any(m == a or m.startswith(a + '.') for a in above))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent)
    assert proc.returncode == 0, proc.stderr
