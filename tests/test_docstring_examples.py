"""The docstring examples run as tests (doctest), one test per module, so the API reference cannot rot.

What ``pytest --doctest-modules lightning_papers`` does, kept inside ``tests/`` so that ``pytest`` (``.ci/run``)
runs it with the suite's fixtures: every example runs in its own empty working directory, offline. An
``Examples:`` section (Google style, which mkdocstrings renders as code) that does not start with ``>>>`` would
never run: that is a failure too, and so is an RST ``Example::`` that the API reference would show as plain text.
"""

from __future__ import annotations

import doctest
import importlib
import io
import pkgutil
import re
from pathlib import Path

import pytest

import lightning_papers


def _modules() -> list[str]:
    names = [lightning_papers.__name__]
    for info in pkgutil.walk_packages(lightning_papers.__path__, prefix="lightning_papers."):
        names.append(info.name)
    return sorted(n for n in names if not n.endswith("__main__"))


MODULES = _modules()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _examples(module) -> list[doctest.DocTest]:
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, module.__name__)
    return [t for t in tests if t.examples]


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in _examples(module):
        runner.run(test, out=out.write)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, out.getvalue()


def test_the_examples_are_collected_for_real():
    counts = {name: sum(len(t.examples) for t in _examples(importlib.import_module(name))) for name in MODULES}
    assert sum(counts.values()) > 150, counts
    for name in ("lightning_papers.schedules", "lightning_papers.callbacks.lr_range_finder",
                 "lightning_papers.landscape.surface", "lightning_papers.losses.perceptual"):
        assert counts[name] > 0, name


def test_every_example_section_is_doctest_lines():
    section = re.compile(r"^[ \t]*Examples?(::?)\n(?:[ \t]*\n)?[ \t]+(\S.*)", re.M)
    unread = []
    for name in MODULES:
        text = Path(importlib.import_module(name).__file__).read_text(encoding="utf-8")
        unread += [f"{name}: {m.group(0).strip()!r}" for m in section.finditer(text)
                   if m.group(1) == "::" or not m.group(2).startswith(">>>")]
    assert not unread, f"example sections that doctest or the API reference cannot read (write `Examples:`, then " \
                       f">>> lines): {unread}"
