"""`python -m apps.demo` started on a free local port and driven in Debian's headless Chromium
(playwright with /usr/bin/chromium: no browser download): what tests/test_demo_browser.py
checks and tests/demo_screenshots.py photographs."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from conftest import REPO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
VIEWPORT = {"width": 1200, "height": 860}
WAIT_MS = 60_000  # one answer on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Demo:
    """`python -m apps.demo --model_dir=<run>` in its own process group, stopped by stop()."""

    def __init__(self, model_dir: str, log_path: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2",
               "CUDA_VISIBLE_DEVICES": ""}
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "apps.demo", f"--model_dir={model_dir}",
                 f"--port={self.port}"], cwd=REPO, env=env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def wait(self, timeout: float = 240) -> "Demo":
        """Returns once the page answers; AssertionError with the log if the app died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the demo exited:\n{self.log()[-3000:]}"
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url, timeout=5) as answer:
                    if answer.status == 200:
                        return self
            time.sleep(0.5)
        raise AssertionError(f"no page at {self.url} after {timeout} s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        """SIGTERM to the process group it leads, SIGKILL after 20 s; nothing is left."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(20)


@contextlib.contextmanager
def chromium():
    """A headless Chromium browser (the system's), closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    page.locator("#message, #drawn_answer").first.wait_for(state="attached", timeout=WAIT_MS)
    return page


def text_of(page, elem_id: str, containing: str) -> str:
    """The text of #elem_id once it contains `containing`."""
    from playwright.sync_api import expect

    box = page.locator(f"#{elem_id}")
    expect(box).to_contain_text(containing, timeout=WAIT_MS)
    return box.inner_text()


def upload(page, path: str, answer: str = "answered") -> str:
    """Drops the file at `path` into the page's upload box (removing one dropped before, which
    blanks the answer) and returns #message once it contains `answer`."""
    from playwright.sync_api import expect

    box = page.locator("#upload")
    clear = box.get_by_label("Clear")
    if clear.count():
        clear.first.click()
        expect(page.locator("#message")).to_have_text("", timeout=WAIT_MS)
    box.locator("input[type=file]").set_input_files(path)
    return text_of(page, "message", answer)


def set_slider(page, elem_id: str, value) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draws `strokes` on the sketchpad: points in -0.5..0.5 of the drawing area's side, from
    its centre."""
    canvas = page.locator("#sketch canvas").first
    canvas.wait_for()
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    side = min(box["width"], box["height"]) * 0.8
    for points in strokes:
        page.mouse.move(x + points[0][0] * side, y + points[0][1] * side)
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            for t in range(1, 9):
                page.mouse.move(x + (x0 + (x1 - x0) * t / 8) * side,
                                y + (y0 + (y1 - y0) * t / 8) * side)
        page.mouse.up()


SEVEN = [[(-0.25, -0.3), (0.25, -0.3), (-0.05, 0.35)]]
