"""python -m apps.demo: each page's handlers answer what the export's signatures answer, for
tiny exports of all seven kinds (tests/tiny_exports.py); a refused upload is said on the page;
the export is found from a run's folder, an older export (no warm-up records, no input
metadata) still loads, and a run without one is refused naming apps.export. The pages in a
real browser: tests/test_demo_browser.py."""
from __future__ import annotations

import json
import os
import shutil
import struct

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_app
from tiny_exports import BUILDERS

KINDS = {"mnist": "classifier", "classifier": "classifier", "segmenter": "segmenter",
         "detector": "detector", "captioner": "captioner", "dcgan": "dcgan", "dqn": "dqn",
         "dqn_atari": "dqn"}


@pytest.fixture
def served(tiny_exports):
    from suite.demo.served import Served

    def get(app):
        folder, signatures = tiny_exports(app)
        return Served(folder, signatures)

    return get


def png(height=40, width=30, channels=3, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    return tf.io.encode_png(rng.integers(0, 256, (height, width, channels), np.uint8)).numpy()


def jpeg_claiming(height: int, width: int) -> bytes:
    data = bytearray(tf.io.encode_jpeg(np.zeros((16, 16, 3), np.uint8)).numpy())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def ranked(names, probabilities, top) -> list[str]:
    best = np.argsort(-probabilities, kind="stable")[:top]
    return [f"{names[i]} {probabilities[i]:.4g}" for i in best]


@pytest.mark.parametrize("app", list(BUILDERS))
def test_each_export_gets_its_page_from_its_signatures(served, app):
    from suite.demo.app import build_page

    page = served(app)
    assert page.kind == KINDS[app]
    assert build_page(page) is not None  # every component and event wired


def test_the_demo_replays_the_warmup_records_as_tf_serving_does(served):
    assert served("mnist").warm_up() == 6  # two per signature


@pytest.mark.parametrize("app", ["mnist", "classifier"])
def test_the_classifier_page_shows_what_serve_image_bytes_answers(served, app):
    from suite.demo.classify import from_bytes

    page, data = served(app), png()
    labels, line, image = from_bytes(page, data)
    expected = page.signatures["serve_image_bytes"](image_bytes=tf.constant([data]))
    probabilities = expected["probabilities"].numpy()[0]
    names = page.class_names(len(probabilities))
    assert f"class_ids **{int(expected['class_ids'][0])}**" in line
    assert ", ".join(ranked(names, probabilities, 5)) in line
    assert list(labels) == [r.rsplit(" ", 1)[0] for r in ranked(names, probabilities, 5)]
    assert image.shape == (240, 180, 3)  # enlarged 6x to be seen
    np.testing.assert_array_equal(image[::6, ::6], tf.io.decode_png(data).numpy())


def test_a_drawn_digit_is_sent_as_mnist_prepares_its_digits(served):
    from suite.demo.classify import blank_canvas, from_drawing

    page = served("mnist")
    canvas = blank_canvas()["background"].copy()
    canvas[40:240, 130:150] = 0  # a tall black stroke off centre: a 1
    labels, line, sent = from_drawing(page, {"composite": canvas})
    digit = sent[::8, ::8]
    assert digit.shape == (28, 28) and digit.max() > 200 and digit[0].max() == 0
    rows, columns = np.nonzero(digit)
    assert rows.max() - rows.min() + 1 == 20  # the box MNIST fits its digits in
    centre = np.average(np.indices(digit.shape).reshape(2, -1), axis=1, weights=digit.ravel())
    np.testing.assert_allclose(centre, [14, 14], atol=1.0)
    expected = page.signatures["serve_uint8"](image=tf.constant(digit[None, ..., None]))
    assert ", ".join(ranked(page.class_names(10), expected["probabilities"].numpy()[0], 10)) \
        in line
    assert len(labels) == 10


@pytest.mark.parametrize("data, message", [
    (b"GIF89a not what it claims", "Input image_bytes must hold PNG or JPEG encoded images; "
                                   "image 0 is neither"),
    (jpeg_claiming(10000, 10000), "Input image_bytes: image 0 is 10000x10000 = 100000000 "
                                  "pixels, over the limit of 16777216 pixels per image"),
    (None, "Drop an image first."),
])
def test_a_bad_upload_gets_a_message_on_the_page_not_a_traceback(served, data, message):
    from suite.demo.classify import from_bytes
    from suite.demo.common import guarded

    shown = guarded(outputs=2)(lambda d: from_bytes(served("mnist"), d))(data)
    assert shown[:2] == (None, None)
    assert message in shown[2]
    if data is not None:
        assert shown[2].startswith("**The model refused this request:** Input")


def test_nothing_drawn_is_said_not_sent(served):
    from suite.demo.classify import blank_canvas, from_drawing
    from suite.demo.common import guarded

    shown = guarded(outputs=2)(lambda v: from_drawing(served("mnist"), v))(
        {"composite": blank_canvas()["background"]})
    assert shown == (None, None, "Draw a digit first.")


def test_the_segmenter_page_overlays_every_pixels_class(served):
    from suite.demo.segment import segment

    page, data = served("segmenter"), png(48, 64, 1)
    (image, masks), line = segment(page, data)
    class_map = page.signatures["serve_image_bytes"](image_bytes=tf.constant([data]))[
        "class_map"].numpy()[0]
    assert image.shape == (48, 64, 3)
    assert sum(mask for mask, _ in masks).tolist() == np.ones((48, 64)).tolist()
    for mask, name in masks:
        index = page.class_names(2).index(name)
        assert np.array_equal(mask.astype(bool), class_map == index)
        assert f"{name} {(class_map == index).mean():.1%}" in line


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_the_detector_page_draws_what_detect_answers_at_the_sliders_threshold(served,
                                                                              threshold):
    from suite.demo.detect import detect

    page, data = served("detector"), png(60, 80)
    (image, boxes), line = detect(page, data, threshold)
    expected = page.signatures["detect"](
        image_bytes=tf.constant([data]), score_threshold=tf.constant(threshold),
        max_detections=tf.constant(5))
    found = int(expected["num_detections"][0])
    assert len(boxes) == found and f"answered {found} detection" in line
    for (box, label), score, name in zip(boxes, expected["scores"].numpy()[0],
                                         expected["class_names"].numpy()[0]):
        assert label == f"{name.decode()} {score:.3f}"
    assert image.shape == (60, 80, 3)


def test_the_captioner_page_shows_the_greedy_and_beam_captions(served):
    from suite.demo.caption import caption

    page, data = served("captioner"), png()
    image, greedy, beam, line = caption(page, data, 2)
    images = tf.constant([data])
    assert greedy == page.signatures["serving_default"](image_bytes=images)[
        "caption"].numpy()[0].decode()
    assert beam == page.signatures["beam_search"](image_bytes=images, beam_size=tf.constant(2))[
        "caption"].numpy()[0].decode()
    assert greedy and beam and f'"{greedy}"' in line and "beam_size 2" in line


def test_the_dcgan_page_walks_from_one_seeds_image_to_the_others(served):
    from suite.demo.generate import generate

    page = served("dcgan")
    gallery, line = generate(page, 7, 42, 5)
    assert len(gallery) == 5
    ends = page.signatures["from_seed"](seed=tf.constant([7, 42], tf.int64))["images"].numpy()
    assert np.array_equal(gallery[0][0][::4, ::4], ends[0][..., 0])
    assert np.array_equal(gallery[-1][0][::4, ::4], ends[1][..., 0])
    assert "its ends are the seeds" in line


def test_the_dqn_page_plays_an_episode_with_the_exported_policy(served):
    from PIL import Image

    from suite.demo.play import play

    path, line = play(served("dqn"), 3, max_steps=40)
    with Image.open(path) as gif:
        assert gif.n_frames >= 2
    assert "on CartPole-v1" in line and "the episode returned" in line
    shutil.rmtree(os.path.dirname(path))


def test_an_export_made_before_warmup_records_and_input_metadata_still_loads(tiny_exports,
                                                                            tmp_path):
    from suite.demo.app import build_page
    from suite.demo.detect import detect
    from suite.demo.served import Served, find_export

    old = tmp_path / "run" / "export" / "detector" / "1"
    shutil.copytree(tiny_exports("detector")[0], old)
    os.remove(old / "assets.extra" / "tf_serving_warmup_requests")
    metadata = json.loads((old / "assets.extra" / "metadata.json").read_text())
    for key in ("inputs", "signatures", "task"):
        metadata.pop(key)
    (old / "assets.extra" / "metadata.json").write_text(json.dumps(metadata))
    page = Served(find_export(str(tmp_path / "run")))
    assert page.warm_up() == 0  # no records to replay
    assert page.kind == "detector" and build_page(page) is not None
    assert "detection" in detect(page, png(), 0.0)[1]


def _version(base, number):
    os.makedirs(base / str(number))
    (base / str(number) / "saved_model.pb").write_bytes(b"")
    return str(base / str(number))


def test_the_export_is_found_from_the_run_folder(tmp_path):
    from suite.demo.served import find_export
    from suite.errors import ExportError

    run = tmp_path / "run"
    _version(run / "export" / "mnist", 1)
    newest = _version(run / "export" / "mnist", 2)
    (run / "export" / "mnist" / ".tmp-3-abc").mkdir()  # an export under way: not a version
    assert find_export(str(run)) == newest
    assert find_export(str(run), 1).endswith(os.path.join("mnist", "1"))
    assert find_export(newest) == newest  # a version folder itself
    assert find_export(str(run / "export" / "mnist")) == newest  # a model base
    elsewhere = _version(tmp_path / "other" / "mnist", 5)  # --export_dir
    (run / "results.json").write_text(json.dumps({"export": elsewhere}))
    assert find_export(str(run)) == elsewhere
    with pytest.raises(ExportError, match="holds no version 9"):
        find_export(str(run), 9)
    with pytest.raises(ExportError, match="is not a folder"):
        find_export(str(tmp_path / "missing"))


def test_the_app_refuses_a_run_without_an_export_naming_apps_export(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    done = run_app("apps.demo", f"--model_dir={tmp_path}", "--port=1", timeout=120)
    assert done.returncode == 2, done.stderr
    assert f"error: {tmp_path} holds no export" in done.stderr
    assert f"python -m apps.export --model_dir={tmp_path}" in done.stderr
    assert "Traceback" not in done.stderr
