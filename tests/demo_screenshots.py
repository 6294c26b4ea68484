"""Photographs the demo's page of each kind of export for docs/serving.md (not a test).

    python tests/demo_screenshots.py --out=docs/images mnist=runs/mnist \
        classifier=runs/cifar:photo.png detector=runs/raccoon:photo.png ... dqn=runs/dqn

Each argument is `<kind>=<run folder>[:<image to drop>]`, kind one of mnist (draws a 7),
classifier, segmenter, detector, captioner (drop the image), dcgan, dqn (press the button);
writes <out>/demo_<kind>.png. Each demo is started, photographed and stopped in turn.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from demo_pages import SEVEN, Demo, chromium, draw, open_page, set_slider, text_of, upload  # noqa: E402,E501

BUTTONS = {"dcgan": "generate", "dqn": "play"}
ANSWERED = {"dcgan": "answered", "dqn": "the episode returned"}  # what each page says then


def photograph(browser, kind: str, run: str, image: str | None, out: str, threshold) -> None:
    with tempfile.TemporaryDirectory() as logs:
        demo = Demo(run, os.path.join(logs, "demo.log"))
        try:
            page = open_page(browser, demo.wait().url)
            if kind == "mnist":
                draw(page, SEVEN)
                page.locator("#classify").click()
                text_of(page, "drawn_answer", "answered")
            elif kind in BUTTONS:
                page.locator(f"#{BUTTONS[kind]}").click()
                text_of(page, "message", ANSWERED[kind])
            else:
                if kind == "detector" and threshold is not None:
                    set_slider(page, "threshold", threshold)
                upload(page, image)
            page.wait_for_timeout(1500)  # images and the GIF's first frames drawn
            path = os.path.join(out, f"demo_{kind}.png")
            page.screenshot(path=path, full_page=True)
            print(path, flush=True)
        finally:
            demo.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--threshold", type=float, default=None,
                        help="the detector page's score threshold")
    parser.add_argument("runs", nargs="+", help="<kind>=<run folder>[:<image>]")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with chromium() as browser:
        for item in args.runs:
            kind, _, where = item.partition("=")
            run, _, image = where.partition(":")
            photograph(browser, kind, run, image or None, args.out, args.threshold)


if __name__ == "__main__":
    main()
