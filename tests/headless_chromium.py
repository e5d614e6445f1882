"""Headless Chromium driven over the DevTools protocol, with the standard library only.

Chromium's ``--remote-debugging-pipe`` speaks the protocol as NUL-terminated JSON messages on file descriptors
3 (commands in) and 4 (replies and events out): no websocket, no port, no extra package. ``bash`` hands the two
pipe ends over as fds 3 and 4 (``subprocess`` keeps fds but cannot renumber them without a ``preexec_fn``,
which is unsafe in a process with threads). WebGL (TensorBoard's mesh viewer) renders on the CPU through
SwiftShader.

Used by ``tests/test_tensorboard_browser.py``; the browser is Debian's ``chromium`` package (``.ci/run`` installs
it; pip cannot fetch browsers here).
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from typing import Any

__all__ = ["Chromium", "find_chromium"]

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


def find_chromium() -> str | None:
    """The Chromium executable: ``$CHROMIUM`` when set, else ``chromium`` / ``chromium-browser`` /
    ``google-chrome`` on the PATH; ``None`` when there is none."""
    names = [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"]
    return next((path for path in (shutil.which(n) for n in names if n) if path), None)


class Chromium:
    """One headless browser with one page of ``width`` x ``height`` CSS pixels (device scale 1).

    Example::

        with Chromium(find_chromium()) as page:
            page.goto("http://127.0.0.1:6006/#mesh")
            png = page.screenshot()
    """

    def __init__(self, executable: str, width: int = 1280, height: int = 1000, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="chromium-profile-")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        args = [executable, "--headless", "--no-sandbox", "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--hide-scrollbars",
                "--no-first-run", "--no-default-browser-check", "--disable-gpu-sandbox",
                f"--window-size={width},{height}", "about:blank"]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}', "bash", *args],
            pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._buffer = b""
        self._id = 0
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.call("Emulation.setDeviceMetricsOverride", page=True, width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
        except Exception:
            self.close()
            raise

    # -- the protocol ------------------------------------------------------------------------------------
    def call(self, method: str, page: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command (to the page's session with ``page``) and return its result."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if page:
            message["sessionId"] = self.session
        self._out.write(json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                if not select.select([self._in], [], [], self.timeout)[0]:
                    raise TimeoutError(f"Chromium did not answer {method} within {self.timeout} s")
                chunk = self._in.read(1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the DevTools pipe during {method} (exit {self.proc.poll()})")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:  # events and other replies are not waited for
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    # -- the page ----------------------------------------------------------------------------------------
    def goto(self, url: str) -> None:
        self.call("Page.navigate", page=True, url=url)
        deadline = time.monotonic() + self.timeout
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not load within {self.timeout} s")
            time.sleep(0.2)
        self.evaluate(DEEP_QUERY)

    def resize(self, width: int, height: int) -> None:
        """Set the page's viewport (CSS pixels)."""
        self.call("Emulation.setDeviceMetricsOverride", page=True, width=width, height=height, deviceScaleFactor=1,
                  mobile=False)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression (promises awaited)."""
        result = self.call("Runtime.evaluate", page=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self) -> bytes:
        """PNG bytes of the page's viewport."""
        return base64.b64decode(self.call("Page.captureScreenshot", page=True, format="png")["data"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("Browser.close")
            except (RuntimeError, OSError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self._out, self._in):
            try:
                stream.close()
            except (OSError, AttributeError):
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
