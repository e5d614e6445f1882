"""What a person sees: TensorBoard over the demo's run folder, opened in a real browser.

``test_tensorboard.py`` checks through the server's HTTP API that every tag exists; this test looks at the pages.
A real ``tensorboard`` serves the run folder of ``lightning-papers demo --fast`` (the session's fixture), headless
Chromium (Selenium, ``browser.py``) opens each dashboard the package writes to, and the assertions are on the
screenshots' pixels:

* Mesh: the canvas shows a surface - a non-trivial share of non-background pixels, spread over a real area, in
  more than one colour (raw losses, hundreds high over x, y in [-1, 1], rendered as a grey dot).
* Images: every card shows a loaded, non-blank image.
* Custom scalars and scalars: every chart has a curve or a point in a run's colour (no empty frame).
* Text: every card has text on it.

The screenshots stay in ``<run folder>/browser/`` for a person to look at; failure messages name them.
``python tests/test_tensorboard_browser.py RUN_FOLDER --readme docs/images`` takes the same screenshots of any
run folder (e.g. a full ``lightning-papers demo``) and writes README's two pictures from them.

The browser is Debian's ``chromium`` with ``chromium-driver``, driven by Selenium (pip cannot fetch browsers here).
Without them the test skips, except under ``.ci/run``, which installs them and sets ``LIGHTNING_PAPERS_CI=1``: there a
missing browser fails the test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script too
from browser import Browser, find_browser, missing_browser_message  # noqa: E402

# the first test to ask for the demo's run folder pays for `demo --fast` too (about 50 s on a quiet 2-core CPU)
pytestmark = pytest.mark.timeout(600)

CI_ENV = "LIGHTNING_PAPERS_CI"
WIDTH = 1280
# viewport heights: tall enough that every card of the demo's run is on screen (TensorBoard renders cards lazily)
HEIGHTS = {"mesh": 1150, "custom_scalars": 2600, "scalars": 5200, "images": 2800, "text": 1800}
SETTLE_S = {"mesh": 45.0}  # WebGL on the CPU (SwiftShader); 25 s for the others
SHOTS = "browser"

# per dashboard: the elements to look at, as {name, rect: [x, y, w, h] in CSS pixels, ...}
ELEMENTS = {
    # the first mesh card (TensorBoard shows the mesh again under its tag's category, further down)
    "mesh": """__deepAll('canvas').filter(c => c.width > 100 && c.height > 100).slice(0, 1)
                 .map(c => ({name: 'mesh canvas', rect: __rect(c)}))""",
    "images": """__deepAll('tf-image-loader').map(e => {
                   const img = e.shadowRoot && e.shadowRoot.querySelector('img');
                   return {name: e.run + ': ' + e.tag, tag: e.tag, run: e.run,
                           description: (e.tagMetadata || {}).description || '',
                           rect: img ? __rect(img) : null, loaded: !!(img && img.complete && img.naturalWidth > 0)};
                 })""",
    "custom_scalars": """__deepAll('tf-custom-scalar-multi-line-chart-card').map(e => {
                   const chart = __deepAll('vz-line-chart2', e.shadowRoot || e)[0];
                   return {name: e.title, rect: chart ? __rect(chart) : null, loading: __loading(e)};
                 })""",
    "scalars": """__deepAll('tf-scalar-card').map(e => {
                   const chart = __deepAll('vz-line-chart2', e.shadowRoot || e)[0];
                   return {name: e.tag, rect: chart ? __rect(chart) : null, loading: __loading(e)};
                 })""",
    "text": """__deepAll('tf-text-loader').map(e => ({name: e.run + ': ' + e.tag, rect: __rect(e)}))""",
}
# TensorBoard opens the first categories of a dashboard only: open them all. A card still loading shows a
# spinner (blue, which would pass for a run's colour)
OPEN_ALL = """__deepAll('tf-category-paginated-view').forEach(e => { e.opened = true; });
  window.__loading = (card) => __deepAll('paper-spinner-lite, paper-spinner', card.shadowRoot || card)
    .some(s => s.active && s.getBoundingClientRect().width > 0);
  true"""


# ----------------------------------------------------------------------------------------------------
# pixels
# ----------------------------------------------------------------------------------------------------
def _crop(image: np.ndarray, rect: list[int] | None) -> np.ndarray:
    if not rect:
        return image[:0, :0]
    x, y, w, h = rect
    return image[max(y, 0):max(y + h, 0), max(x, 0):max(x + w, 0)]


def _luminance(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def mesh_pixels(crop: np.ndarray) -> dict[str, float]:
    """Share of the canvas that is not its white background, the drawn pixels' extent as fractions of the
    canvas' width and height, and their luminance range (5th to 95th percentile: one grey vs a colour map)."""
    if crop.size == 0:
        return {"share": 0.0, "width": 0.0, "height": 0.0, "luminance_range": 0.0}
    drawn = np.abs(crop.astype(np.int32) - 255).max(axis=2) > 24
    if not drawn.any():
        return {"share": 0.0, "width": 0.0, "height": 0.0, "luminance_range": 0.0}
    ys, xs = np.nonzero(drawn)
    lum = _luminance(crop[drawn])
    return {"share": float(drawn.mean()), "width": (xs.max() - xs.min() + 1) / crop.shape[1],
            "height": (ys.max() - ys.min() + 1) / crop.shape[0],
            "luminance_range": float(np.percentile(lum, 95) - np.percentile(lum, 5))}


def run_colour_pixels(crop: np.ndarray) -> int:
    """Pixels in a run's colour (saturated: TensorBoard draws axes, grid and labels in greys)."""
    if crop.size == 0:
        return 0
    c = crop.astype(np.int32)
    return int(((c.max(axis=2) - c.min(axis=2)) >= 80).sum())


def image_pixels(crop: np.ndarray) -> dict[str, float]:
    """The luminance spread of an image and the share of it that is not white."""
    if crop.size == 0:
        return {"std": 0.0, "not_white": 0.0}
    lum = _luminance(crop)
    return {"std": float(lum.std()), "not_white": float((lum < 245).mean())}


def text_pixels(crop: np.ndarray) -> float:
    """Share of dark (text) pixels."""
    return float((_luminance(crop) < 120).mean()) if crop.size else 0.0


# what "shows something" means, per dashboard: (minimum number of elements, test of one element's pixels)
MIN_ELEMENTS = {"mesh": 1, "images": 6, "custom_scalars": 6, "scalars": 15, "text": 2}


def looks_right(dashboard: str, element: dict[str, Any]) -> bool:
    m = element["pixels"]
    if dashboard == "mesh":
        return m["share"] >= 0.05 and m["width"] >= 0.3 and m["height"] >= 0.15 and m["luminance_range"] >= 60
    if dashboard == "images":
        return element["loaded"] and m["std"] >= 8 and m["not_white"] >= 0.02
    if dashboard in ("custom_scalars", "scalars"):
        return m >= 15 and not element["loading"]
    return m >= 0.002


def _measure(dashboard: str, image: np.ndarray, element: dict[str, Any]) -> Any:
    crop = _crop(image, element["rect"])
    if dashboard == "mesh":
        return mesh_pixels(crop)
    if dashboard == "images":
        return image_pixels(crop)
    if dashboard in ("custom_scalars", "scalars"):
        return run_colour_pixels(crop)
    return text_pixels(crop)


# ----------------------------------------------------------------------------------------------------
# TensorBoard and the browser
# ----------------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.loads(resp.read().decode())


@contextlib.contextmanager
def serve(logdir: Path, log_file: Path):
    """A ``tensorboard`` over ``logdir``; yields its port once it has read the runs' scalars, images and meshes."""
    port = _free_port()
    runs = {p.parent for p in logdir.rglob("events.out.tfevents.*")}
    with log_file.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
                                 "127.0.0.1", "--port", str(port), "--load_fast", "false", "--reload_interval", "1"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, f"tensorboard exited: {log_file.read_text()[-2000:]}"
                with contextlib.suppress(OSError, ValueError):
                    loaded = get_json(port, "/data/runs")
                    if len(loaded) >= len(runs) and get_json(port, "/data/plugin/images/tags") and \
                            any(get_json(port, "/data/plugin/scalars/tags").values()):
                        break
                assert time.monotonic() < deadline, "tensorboard did not serve the run folder within 90 s"
                time.sleep(0.5)
            time.sleep(1.0)  # one more reload: the last runs' late tags (meshes, text)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Capture:
    """One dashboard as the browser showed it: the screenshot (H, W, 3), where it is saved, its elements with
    their pixel measures, and whether they all looked right before the time was up."""

    dashboard: str
    image: np.ndarray
    path: Path
    elements: list[dict[str, Any]] = field(default_factory=list)
    settled: bool = False
    seconds: float = 0.0


def capture(page: Browser, port: int, dashboard: str, out_dir: Path) -> Capture:
    """Open ``dashboard``, and screenshot it until every element looks right or ``SETTLE_S`` pass; save the last
    screenshot as ``out_dir/<dashboard>.png``."""
    page.resize(WIDTH, HEIGHTS[dashboard])
    page.goto(f"http://127.0.0.1:{port}/#{dashboard}")
    start = time.monotonic()
    deadline = start + SETTLE_S.get(dashboard, 25.0)
    while True:
        page.run(OPEN_ALL)
        elements = page.evaluate(ELEMENTS[dashboard]) or []
        png = page.screenshot()
        image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        for element in elements:
            element["pixels"] = _measure(dashboard, image, element)
            element["looks_right"] = looks_right(dashboard, element)
        settled = len(elements) >= MIN_ELEMENTS[dashboard] and all(e["looks_right"] for e in elements)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.7)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dashboard}.png"
    path.write_bytes(png)
    return Capture(dashboard, image, path, elements, settled, time.monotonic() - start)


def capture_all(run_dir: Path, out_dir: Path, executables: tuple[str, str]) -> dict[str, Capture]:
    """Every dashboard the package writes to, served from ``run_dir``, screenshots under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with serve(run_dir, out_dir / "tensorboard.log") as port, \
            Browser(*executables, WIDTH, 1000, timeout=60) as page:
        captures = {d: capture(page, port, d, out_dir) for d in HEIGHTS}
        captures["_api"] = Capture("_api", np.zeros((0, 0, 3), np.uint8), out_dir, [
            {"name": "layout", "value": get_json(port, "/data/plugin/custom_scalars/layout")},
            {"name": "scalar tags", "value": get_json(port, "/data/plugin/scalars/tags")},
            {"name": "hp_metric", "value": {run: get_json(port, f"/data/plugin/scalars/scalars?run={run}&tag=hp_metric")
                                            for run, tags in get_json(port, "/data/plugin/scalars/tags").items()
                                            if "hp_metric" in tags}},
        ])
    return captures


# ----------------------------------------------------------------------------------------------------
# the tests
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboards(demo_fast_run):
    executables = find_browser()
    if executables is None:
        if os.environ.get(CI_ENV):
            pytest.fail(f"{CI_ENV} is set (.ci/run) but there is {missing_browser_message()}")
        pytest.skip(missing_browser_message())
    run_dir, summary = demo_fast_run
    return capture_all(run_dir, run_dir / SHOTS, executables), summary


def _failures(shot: Capture) -> str:
    bad = [f"{e['name']}: {e['pixels']}" for e in shot.elements if not e["looks_right"]]
    return f"{len(shot.elements)} element(s), failing {bad}; screenshot {shot.path}"


def test_mesh_renders_as_a_surface(dashboards):
    shot = dashboards[0]["mesh"]
    assert len(shot.elements) >= 1, f"no mesh canvas on the page; screenshot {shot.path}"
    m = shot.elements[0]["pixels"]
    # a surface, not a dot: a real share of the canvas, spread over a real area, coloured by height
    assert m["share"] >= 0.05, _failures(shot)
    assert m["width"] >= 0.3 and m["height"] >= 0.15, _failures(shot)
    assert m["luminance_range"] >= 60, _failures(shot)


def test_every_image_card_shows_a_picture(dashboards):
    captures, summary = dashboards
    shot = captures["images"]
    tags = {e["tag"] for e in shot.elements}
    assert {"landscape/contour", "landscape/heatmap", "landscape/surface3d", "lr_range/curve",
            "style/samples"} <= tags, f"{sorted(tags)}; screenshot {shot.path}"
    assert shot.settled, _failures(shot)
    if "random VGG-16" in summary:  # no ImageNet weights here: the samples' card says what they are
        style = next(e for e in shot.elements if e["tag"] == "style/samples")
        assert "Random VGG-16" in style["description"], (style["description"], shot.path)


def test_no_custom_scalars_chart_is_empty(dashboards):
    captures = dashboards[0]
    shot = captures["custom_scalars"]
    assert len(shot.elements) >= MIN_ELEMENTS["custom_scalars"], _failures(shot)
    assert shot.settled, _failures(shot)
    # and what the server serves agrees: every chart of the layout has a tag to draw
    layout = captures["_api"].elements[0]["value"]
    tags = [t for run_tags in captures["_api"].elements[1]["value"].values() for t in run_tags]
    empty = [chart["title"] for category in layout["category"] for chart in category["chart"]
             if not any(re.search(r, t) for r in chart["multiline"]["tag"] for t in tags)]
    assert not empty, empty


def test_no_scalars_chart_is_empty_and_no_placeholder(dashboards):
    captures = dashboards[0]
    shot = captures["scalars"]
    assert len(shot.elements) >= MIN_ELEMENTS["scalars"], _failures(shot)
    assert shot.settled, _failures(shot)
    # Lightning's hp_metric placeholder (-1, written when no metric is given) is not a result
    placeholders = {run: [v for _, _, v in points] for run, points in captures["_api"].elements[2]["value"].items()
                    if all(v == -1 for _, _, v in points)}
    assert not placeholders, placeholders


def test_text_cards_show_text(dashboards):
    shot = dashboards[0]["text"]
    names = " ".join(e["name"] for e in shot.elements)
    assert "conv_arithmetic/table" in names and "lr_range/suggestion" in names, (names, shot.path)
    assert shot.settled, _failures(shot)


# ----------------------------------------------------------------------------------------------------
# README's pictures, from the same screenshots
# ----------------------------------------------------------------------------------------------------
def _save_small(image: np.ndarray, path: Path, width: int) -> Path:
    picture = Image.fromarray(image)
    picture = picture.resize((width, round(picture.height * width / picture.width)), Image.Resampling.LANCZOS)
    picture.save(path, optimize=True)
    if path.stat().st_size >= 250_000:  # README's pictures stay under 300 kB
        picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path,
                                                                                                     optimize=True)
    return path


def readme_pictures(captures: dict[str, Capture], out: Path) -> list[Path]:
    """``tensorboard_mesh.png`` (the Mesh tab down to the drawn surface) and ``tensorboard_custom_scalars.png``
    (the Custom Scalars tab down to its last chart) under ``out``, 800 px wide."""
    out.mkdir(parents=True, exist_ok=True)
    mesh = captures["mesh"]
    x, y, w, h = mesh.elements[0]["rect"]
    drawn = np.abs(_crop(mesh.image, [x, y, w, h]).astype(np.int32) - 255).max(axis=2) > 24
    bottom = y + int(np.nonzero(drawn)[0].max()) + 40 if drawn.any() else y + h
    paths = [_save_small(mesh.image[:bottom], out / "tensorboard_mesh.png", 800)]
    charts = captures["custom_scalars"]
    bottom = max(r[1] + r[3] for r in (e["rect"] for e in charts.elements) if r) + 110
    paths.append(_save_small(charts.image[:bottom], out / "tensorboard_custom_scalars.png", 800))
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Screenshots of TensorBoard over a run folder, as the test takes "
                                     "them; with --readme, README's two pictures")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help=f"screenshots folder (default RUN_DIR/{SHOTS})")
    parser.add_argument("--readme", type=Path, default=None, help="write README's pictures to this folder")
    args = parser.parse_args(argv)
    executables = find_browser()
    if executables is None:
        raise SystemExit(f"error: {missing_browser_message()}")
    captures = capture_all(args.run_dir, args.out or args.run_dir / SHOTS, executables)
    for name, shot in captures.items():
        if name != "_api":
            verdict = "looks right" if shot.settled else "DOES NOT look right"
            print(f"{name}: {verdict} after {shot.seconds:.1f} s, {_failures(shot)}")  # noqa: T201
    if args.readme:
        for path in readme_pictures(captures, args.readme):
            print(f"{path}: {path.stat().st_size / 1000:.0f} kB")  # noqa: T201


if __name__ == "__main__":
    main()
