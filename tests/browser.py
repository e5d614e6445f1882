"""Headless Chromium for the browser tests, through Selenium and Debian's ``chromium-driver``.

``Browser`` is one page of ``width`` x ``height`` CSS pixels (device scale 1): ``goto`` waits until the document
has loaded, ``evaluate`` returns a JavaScript expression's JSON value (promises awaited), ``screenshot`` gives the
viewport as PNG bytes. WebGL (TensorBoard's mesh viewer) renders on the CPU through SwiftShader.

The browser and the driver are Debian's ``chromium`` and ``chromium-driver`` packages (``.ci/run`` installs both;
pip cannot fetch browsers here): ``$CHROMIUM`` / ``$CHROMEDRIVER`` override the paths. Both are given to Selenium
explicitly, so Selenium Manager never looks anything up on the network.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

__all__ = ["Browser", "DEEP_QUERY", "find_browser", "missing_browser_message"]

# Element queries that go through every shadow root: TensorBoard's dashboards are Polymer components.
DEEP_QUERY = """
window.__deepAll = (selector, root) => {
  const out = [];
  const walk = (node) => {
    out.push(...node.querySelectorAll(selector));
    for (const el of node.querySelectorAll('*')) if (el.shadowRoot) walk(el.shadowRoot);
  };
  walk(root || document);
  return out;
};
window.__rect = (el) => { const b = el.getBoundingClientRect();
  return [Math.round(b.left), Math.round(b.top), Math.round(b.width), Math.round(b.height)]; };
"""


def _which(*names: str) -> str | None:
    return next((path for path in (shutil.which(n) for n in names if n) if path), None)


def find_browser() -> tuple[str, str] | None:
    """``(chromium, chromedriver)``: ``$CHROMIUM`` / ``$CHROMEDRIVER`` when set, else the executables on the PATH
    (Debian: ``/usr/bin/chromium``, ``/usr/bin/chromedriver``); ``None`` when either is missing or Selenium is not
    installed."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return None
    chromium = _which(os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome")
    driver = _which(os.environ.get("CHROMEDRIVER", ""), "chromedriver")
    if driver is None and os.path.isfile("/usr/lib/chromium/chromedriver"):
        driver = "/usr/lib/chromium/chromedriver"
    return (chromium, driver) if chromium and driver else None


def missing_browser_message() -> str:
    return ('no headless browser: `apt-get install chromium chromium-driver` and `pip install -e ".[dev]"` '
            "(selenium), or set $CHROMIUM and $CHROMEDRIVER")


class Browser:
    """One headless Chromium page, ``width`` x ``height`` CSS pixels.

    Example::

        with Browser(*find_browser()) as page:
            page.goto("http://127.0.0.1:6006/#mesh")
            png = page.screenshot()
    """

    def __init__(self, chromium: str, chromedriver: str, width: int = 1280, height: int = 1000,
                 timeout: float = 30.0) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-gl=angle",
                    "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--hide-scrollbars", "--no-first-run",
                    "--no-default-browser-check", "--disable-gpu-sandbox", f"--window-size={width},{height}"):
            options.add_argument(arg)
        self.timeout = timeout
        self.driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
        try:
            self.driver.set_page_load_timeout(timeout)
            self.driver.set_script_timeout(timeout)
            self.resize(width, height)
        except Exception:
            self.close()
            raise

    def goto(self, url: str) -> None:
        """Open ``url`` and wait until its document has loaded; defines ``__deepAll`` and ``__rect`` there."""
        self.driver.get(url)
        deadline = time.monotonic() + self.timeout
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load within {self.timeout} s")
            time.sleep(0.2)
        self.run(DEEP_QUERY)

    def resize(self, width: int, height: int) -> None:
        """Set the page's viewport (CSS pixels, device scale 1): what ``screenshot`` captures."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (a promise is awaited)."""
        return self.driver.execute_script(f"return ({expression});")

    def run(self, script: str) -> Any:
        """Run JavaScript statements (``return`` gives a value back)."""
        return self.driver.execute_script(script)

    def screenshot(self) -> bytes:
        """PNG bytes of the page's viewport."""
        return self.driver.get_screenshot_as_png()

    def close(self) -> None:
        self.driver.quit()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
