"""python -m apps.demo in a real browser (Debian's headless Chromium, driven by playwright): the
MNIST page of a run made by a tiny training, where a digit is drawn and a bad upload gets the
signature's message on the page, and the classifier, detector and captioner pages of tiny
exports, where an image is dropped; each page must show what the export's own signature
answers for what the page sent. Every demo is started on a free local port and stopped."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import FIXTURE_MNIST, REPO, run_in_process
from demo_pages import SEVEN, Demo, chromium, draw, open_page, set_slider, text_of, upload
from tiny_exports import export_tiny

pytestmark = pytest.mark.slow
DIGIT = os.path.join(REPO, "docs", "examples", "digit.png")


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """app -> (its running demo, its export's signatures, loaded here). MNIST's run is trained
    (4 steps), the others are tiny exports in a run's layout (export/<name>/1); each demo
    starts as soon as its run is there, while the next is made."""
    from suite.demo.served import find_export
    from suite.tasks.mnist import MnistTask

    root, started = tmp_path_factory.mktemp("demo_runs"), {}
    try:
        for app in ("mnist", "classifier", "detector", "captioner"):
            if app == "mnist":
                run_in_process(MnistTask, f"--model_dir={root / app}", "--epochs=1",
                               "--steps_per_epoch=4", "--batch_size=50",
                               f"--data_dir={FIXTURE_MNIST}", "--noverify_checksums")
            else:
                export_tiny(app, str(root / app / "export"))
            started[app] = Demo(str(root / app), str(root / f"{app}.log"))
        for demo in started.values():
            demo.wait()
        yield {app: (demo, tf.saved_model.load(find_export(str(root / app))).signatures)
               for app, demo in started.items()}
    finally:
        for demo in started.values():
            demo.stop()
    assert all(demo.process.poll() is not None for demo in started.values())


@pytest.fixture(scope="module")
def browser():
    with chromium() as opened:
        yield opened


def ranked(probabilities: np.ndarray, names: list[str], top: int) -> str:
    best = np.argsort(-probabilities, kind="stable")[:top]
    return ", ".join(f"{names[i]} {probabilities[i]:.4g}" for i in best)


def png_file(folder, name: str, height: int, width: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), np.uint8)
    path = os.path.join(folder, name)
    tf.io.write_file(path, tf.io.encode_png(pixels))
    return path


def test_mnist_draw_a_digit_and_upload_bad_and_good_files(demos, browser, tmp_path):
    from PIL import Image

    demo, signatures = demos["mnist"]
    page = open_page(browser, demo.url)
    digits = [str(d) for d in range(10)]
    draw(page, SEVEN)
    page.locator("#classify").click()
    shown = text_of(page, "drawn_answer", "answered")
    sent = page.request.get(page.locator("#sent img").get_attribute("src")).body()
    digit = np.asarray(Image.open(io.BytesIO(sent)))[::8, ::8]  # shown 8x enlarged
    assert digit.shape == (28, 28) and digit.max() > 200
    expected = signatures["serve_uint8"](image=tf.constant(digit[None, ..., None]))
    assert f"serve_uint8 answered class_ids {int(expected['class_ids'][0])}" in shown
    assert ranked(expected["probabilities"].numpy()[0], digits, 10) in shown

    page.get_by_role("tab", name="Upload").click()
    not_image = tmp_path / "photo.png"
    not_image.write_bytes(b"GIF89a, named .png")
    shown = upload(page, str(not_image), answer="refused")
    assert ("The model refused this request: Input image_bytes must hold PNG or JPEG encoded "
            "images; image 0 is neither") in shown
    too_large = tmp_path / "wide.png"
    header = tf.io.encode_png(np.zeros((1, 1, 1), np.uint8)).numpy()
    too_large.write_bytes(header[:16] + (20000).to_bytes(4, "big") + (900).to_bytes(4, "big")
                          + header[24:])  # its IHDR says 20000 x 900
    shown = upload(page, str(too_large), answer="refused")
    assert ("Input image_bytes: image 0 is 900x20000 = 18000000 pixels, over the limit of "
            "16777216 pixels per image") in shown
    shown = upload(page, DIGIT)
    with open(DIGIT, "rb") as f:
        expected = signatures["serve_image_bytes"](image_bytes=tf.constant([f.read()]))
    assert ranked(expected["probabilities"].numpy()[0], digits, 5) in shown
    assert "Traceback" not in page.content()


def test_classifier_drop_an_image_see_the_top_5_with_the_class_names(demos, browser,
                                                                    tmp_path):
    demo, signatures = demos["classifier"]
    page = open_page(browser, demo.url)
    path = png_file(tmp_path, "photo.png", 50, 40)
    shown = upload(page, path)
    expected = signatures["serve_image_bytes"](image_bytes=tf.constant([open(path, "rb").read()]))
    probabilities = expected["probabilities"].numpy()[0]
    names = ["horizontal", "vertical"]  # the tiny export's class names
    assert ranked(probabilities, names, 5) in shown
    top = names[int(expected["class_ids"][0])]
    assert f"({top})" in shown
    assert page.locator("#labels").get_by_text(top).count() >= 1


def test_detector_boxes_at_the_sliders_threshold(demos, browser, tmp_path):
    demo, signatures = demos["detector"]
    page = open_page(browser, demo.url)
    set_slider(page, "threshold", 0)
    path = png_file(tmp_path, "street.png", 60, 90, seed=3)
    shown = upload(page, path)
    found = signatures["detect"](image_bytes=tf.constant([open(path, "rb").read()]),
                                 score_threshold=tf.constant(0.0),
                                 max_detections=tf.constant(5))
    count = int(found["num_detections"][0])
    assert f"detect (score_threshold 0.00) answered {count} detection" in shown
    for score, name in zip(found["scores"].numpy()[0][:count],
                           found["class_names"].numpy()[0][:count]):
        assert f"{name.decode()} {score:.3f} at (" in shown


def test_captioner_greedy_and_beam_captions_at_the_beam_width(demos, browser, tmp_path):
    demo, signatures = demos["captioner"]
    page = open_page(browser, demo.url)
    set_slider(page, "beam_size", 2)
    path = png_file(tmp_path, "dog.png", 32, 48, seed=5)
    shown = upload(page, path)
    images = tf.constant([open(path, "rb").read()])
    greedy = signatures["serving_default"](image_bytes=images)["caption"].numpy()[0].decode()
    beam = signatures["beam_search"](image_bytes=images, beam_size=tf.constant(2))[
        "caption"].numpy()[0].decode()
    assert f'serving_default answered "{greedy}"' in shown
    assert f'beam_search (beam_size 2) answered "{beam}"' in shown
    assert page.locator("#greedy textarea").input_value() == greedy
    assert page.locator("#beam textarea").input_value() == beam
