"""The documentation site as a reader sees it: the built pages, opened in headless Chromium (Selenium).

The site is built with ``mkdocs build --strict`` (a broken link or reference fails the build) into a temporary
folder, or taken from ``$LIGHTNING_PAPERS_SITE`` when ``.ci/run`` has built it already; a local HTTP server serves
it and the browser checks, page by page, what a reader needs: the navigation is there and leads to every section,
an API page shows a rendered signature with its parameters, every picture has loaded (``naturalWidth > 0``).
Screenshots stay beside the site (``<site>/../site-screenshots/``) for a person to look at.

``python tests/test_docs_site.py SITE_DIR --out DIR`` takes the same screenshots of a built site.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script too
from browser import Browser, find_browser, missing_browser_message  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CI_ENV = "LIGHTNING_PAPERS_CI"
SITE_ENV = "LIGHTNING_PAPERS_SITE"
WIDTH, HEIGHT = 1280, 1000
# page -> what the test reads there
PAGES = ("index.html", "getting-started.html", "papers/clr.html", "api/callbacks.html")

NAV = """Array.from(document.querySelectorAll('nav.md-nav--primary a.md-nav__link'))
           .map(a => a.textContent.trim()).filter(t => t)"""
IMAGES = """Array.from(document.querySelectorAll('article img'))
              .map(i => ({src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth}))"""
SIGNATURES = """Array.from(document.querySelectorAll('.doc-signature'))
                  .map(s => ({text: s.innerText, height: s.getBoundingClientRect().height}))"""
HEADINGS = """Array.from(document.querySelectorAll('article h1, article h2')).map(h => {
                const c = h.cloneNode(true); c.querySelectorAll('.headerlink').forEach(e => e.remove());
                return c.textContent.trim(); })"""


def _fail_or_skip(reason: str) -> None:
    if os.environ.get(CI_ENV):
        pytest.fail(f"{CI_ENV} is set (.ci/run) but {reason}")
    pytest.skip(reason)


def build_site(out: Path) -> Path:
    """``mkdocs build --strict`` of this checkout into ``out``; fails with mkdocs' own messages."""
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@contextlib.contextmanager
def serve(site: Path):
    """The site over HTTP on a free local port (as a reader's browser would get it); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the test reports what matters; no request log on stderr
        pass


def read_pages(site: Path, shots: Path, executables: tuple[str, str]) -> dict[str, dict]:
    """Open every page of ``PAGES``; per page its navigation, images, signatures, headings and screenshot."""
    shots.mkdir(parents=True, exist_ok=True)
    pages = {}
    with serve(site) as base, Browser(*executables, WIDTH, HEIGHT, timeout=60) as page:
        for name in PAGES:
            page.goto(f"{base}/{name}")
            # every picture decoded (an <img> that failed keeps naturalWidth 0)
            page.run("return Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)))")
            shot = shots / (name.replace("/", "_").removesuffix(".html") + ".png")
            shot.write_bytes(page.screenshot())
            pages[name] = {"nav": page.evaluate(NAV), "images": page.evaluate(IMAGES),
                           "signatures": page.evaluate(SIGNATURES), "headings": page.evaluate(HEADINGS),
                           "title": page.evaluate("document.title"), "screenshot": shot}
    return pages


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    if os.environ.get(SITE_ENV):
        built = Path(os.environ[SITE_ENV])
        assert (built / "index.html").is_file(), f"${SITE_ENV}={built} holds no built site"
        return built
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        _fail_or_skip('mkdocs is not installed (pip install -e ".[docs]")')
    return build_site(tmp_path_factory.mktemp("docs") / "site")


@pytest.fixture(scope="module")
def pages(site, tmp_path_factory) -> dict[str, dict]:
    executables = find_browser()
    if executables is None:
        _fail_or_skip(missing_browser_message())
    return read_pages(site, tmp_path_factory.mktemp("site-screenshots"), executables)


def test_every_page_has_the_navigation(pages):
    expected = {"Getting started", "Does it reproduce?", "TensorBoard", "Scaling out", "Recipes", "API reference",
                "Upgrading"}
    for name, page in pages.items():
        assert expected <= set(page["nav"]), (name, sorted(expected - set(page["nav"])), page["screenshot"])
        assert page["title"].endswith("lightning-papers"), (name, page["title"])


def test_every_picture_loads(pages):
    shown = 0
    for name, page in pages.items():
        broken = [img["src"] for img in page["images"] if not (img["complete"] and img["width"] > 0)]
        assert not broken, (name, broken, page["screenshot"])
        shown += len(page["images"])
    assert len(pages["index.html"]["images"]) >= 3 and len(pages["papers/clr.html"]["images"]) >= 2
    assert shown >= 5


def test_an_api_page_shows_signatures_with_their_parameters(pages):
    page = pages["api/callbacks.html"]
    signatures = {s["text"].split("(", 1)[0].strip(): s for s in page["signatures"]}
    assert {"LRRangeFinder", "CyclicalLR", "SuperConvergence", "LossLandscapeProbe"} <= set(signatures), \
        sorted(signatures)
    finder = signatures["LRRangeFinder"]
    assert "min_lr" in finder["text"] and "num_steps" in finder["text"] and finder["height"] > 0, finder
    assert "LRRangeFinder" in page["headings"], page["headings"]


def test_the_site_is_built_strictly(site):
    # a page per nav entry, the API reference included, and the search index the theme needs
    for page in ("index.html", "upgrading.html", "recipes.html", "api/callbacks.html", "api/recipes.html",
                 "search/search_index.json"):
        assert (site / page).is_file(), page


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Screenshots of the built documentation site, as the test takes "
                                     "them")
    parser.add_argument("site", type=Path, help="a built site (mkdocs build --site-dir SITE)")
    parser.add_argument("--out", type=Path, required=True, help="screenshots folder")
    args = parser.parse_args(argv)
    executables = find_browser()
    if executables is None:
        raise SystemExit(f"error: {missing_browser_message()}")
    for name, page in read_pages(args.site, args.out, executables).items():
        print(f"{name}: {page['screenshot']}, {len(page['images'])} image(s), {len(page['signatures'])} "  # noqa: T201
              f"signature(s)")


if __name__ == "__main__":
    main()
