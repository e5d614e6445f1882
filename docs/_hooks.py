"""MkDocs hooks: pages that include a file kept elsewhere in the repository.

A line ``<!-- include: PATH -->`` (PATH relative to the repository root) is replaced by that file's text, its
headings moved one level down and its links into ``docs/`` (pictures, pages) made relative to the page, so
``benchmarks/README.md`` and ``CHANGELOG.md`` stay where their authors edit them and the site shows them whole.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDE = re.compile(r"^<!-- include: (\S+) -->$", re.M)


def _included(match: re.Match, page_path: str) -> str:
    text = (ROOT / match.group(1)).read_text(encoding="utf-8")
    depth = page_path.count("/")
    # links into docs/ (pictures, pages) become relative to the including page
    text = re.sub(r"\]\((?:\.\./)*docs/", "](" + "../" * depth, text)
    text = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.M)  # under the page's own title
    return text


def on_page_markdown(markdown: str, page, config, files) -> str:
    return INCLUDE.sub(lambda m: _included(m, page.file.src_uri), markdown)
