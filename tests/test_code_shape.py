"""The package's shape holds what issue 24 asked of it: short functions and one positive-integer check (the import
rules are in test_layers.py). Read from the source, so a regression names the place."""

import ast
import re
from pathlib import Path

import lightning_papers

PACKAGE = Path(lightning_papers.__file__).parent
MAX_FUNCTION_LINES = 80


def _sources():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these into named steps: " + "; ".join(long)


def test_one_positive_integer_check():
    """``isinstance(x, bool)`` next to an int test is the hand-written check ``_validation.integer`` replaces."""
    pattern = re.compile(r"isinstance\([^()]*,\s*bool\)[^\n]*isinstance\([^()]*,\s*(int|numbers\.Integral)\)"
                         r"|isinstance\([^()]*,\s*(int|numbers\.Integral)\)[^\n]*isinstance\([^()]*,\s*bool\)")
    found = [f"{path.relative_to(PACKAGE)}:{n}" for path in _sources() if path.name != "_validation.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "use lightning_papers._validation (positive_int / integer) instead: " + ", ".join(found)


def test_the_pattern_finds_a_hand_written_check():
    line = "if isinstance(n, bool) or not isinstance(n, int) or n < 1:"
    assert re.search(r"isinstance\([^()]*,\s*bool\)[^\n]*isinstance\([^()]*,\s*(int|numbers\.Integral)\)", line)

