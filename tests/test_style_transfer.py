"""Style transfer: the paper's loss terms on known tensors, the feature network from each
source, the loss falling in a few steps on a tiny image (both optimizers), exact resume, and one
clear error for each bad input."""
from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_process
from suite.errors import DataError
from suite.models import style_transfer as st
from suite.models.style_features import FeatureSource, build_feature_extractor, feature_source
from suite.models.vgg import build_vgg
from suite.tasks.style_transfer import StyleTransferTask

TINY = ("--size=32", "--features_from=random", "--network=vgg16", "--save_every=1")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    yy, xx = np.mgrid[:40, :48]
    content = np.stack([((xx // 8 + yy // 8) % 2) * 200 + 30] * 3, -1).astype(np.uint8)
    style = np.stack([np.sin(xx / 2.0) * 100 + 128, np.cos(yy / 1.5) * 100 + 128,
                      (xx * 5 + yy * 3) % 255], -1).astype(np.uint8)
    Image.fromarray(content).save(folder / "content.png")
    Image.fromarray(style).save(folder / "style.jpg")
    (folder / "broken.png").write_bytes(b"not a png")
    return folder


def test_gram_matrix_and_loss_terms_on_known_tensors():
    features = tf.constant(np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3))
    flat = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_allclose(st.gram_matrix(features)[0], flat.T @ flat)
    # E = sum (G - A)^2 / (4 N^2 M^2): N = 3 channels, M = 4 pixels.
    target = tf.zeros((1, 3, 3))
    expected = np.sum((flat.T @ flat) ** 2) / (4 * 9 * 16)
    assert float(st.style_layer_loss(features, target)) == pytest.approx(expected, rel=1e-6)
    assert float(st.content_loss(features, features + 2.0)) == pytest.approx(0.5 * 4 * 12)
    image = tf.constant([[[[0.0] * 3, [1.0] * 3], [[3.0] * 3, [3.0] * 3]]])  # 2x2 RGB
    # vertical differences 3 and 2, horizontal 1 and 0, per channel: (9 + 4 + 1) * 3
    assert float(st.total_variation(image)) == pytest.approx(42.0)


def test_the_feature_network_loads_a_suite_vgg_classifier(tmp_path):
    classifier = build_vgg(16, (32, 32, 3), num_classes=10, width_multiplier=1 / 16,
                           classifier_units=16, batch_norm=True)
    classifier.save(tmp_path / "vgg.keras")
    source = feature_source(str(tmp_path / "vgg.keras"), "vgg19")
    assert (source.depth, source.width_multiplier, source.batch_norm,
            source.preprocessing) == (16, 1 / 16, True, "rescale")
    extractor = build_feature_extractor(source, "avg")
    np.testing.assert_array_equal(extractor.get_layer("block3_conv2").kernel.numpy(),
                                  classifier.get_layer("block3_conv2").kernel.numpy())
    assert extractor.get_layer("block1_pool").__class__.__name__ == "AveragePooling2D"
    outputs = extractor(np.zeros((1, 37, 45, 3), np.float32))  # any size
    assert [o.shape[-1] for o in outputs] == [32, 4, 8, 16, 32, 32]
    with pytest.raises(DataError, match="not a suite VGG classifier"):
        from suite.models.deep_convnet import build_deep_convnet

        build_deep_convnet().save(tmp_path / "convnet.keras")
        feature_source(str(tmp_path / "convnet.keras"), "vgg19")


def test_imagenet_features_fail_fast_offline_naming_the_file(tmp_path, monkeypatch):
    from suite.data import hosts

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DataError, match="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        feature_source("imagenet", "vgg19")


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_a_few_steps_lower_the_loss_on_a_tiny_image(tmp_path, images, optimizer):
    results = run_in_process(StyleTransferTask, f"--content={images / 'content.png'}",
                             f"--style={images / 'style.jpg'}", f"--model_dir={tmp_path}",
                             f"--optimizer={optimizer}", "--steps=3", "--lbfgs_evaluations=5",
                             "--learning_rate=10", "--tv_weight=1e-4",
                             f"--out={tmp_path / 'out.png'}", *TINY)
    assert results["loss"] < results["start_loss"] and results["loss_ratio"] > 1.5
    assert len(open(tmp_path / "history.csv").read().split()) == 1 + 3
    from PIL import Image

    assert Image.open(tmp_path / "out.png").size == (32, 27)  # 48x40 -> longer side 32
    assert sorted(os.listdir(tmp_path / "progress")) == [
        "step_00001.png", "step_00002.png", "step_00003.png"]
    assert Image.open(tmp_path / "content_style_result.png").size[0] > 3 * 32


def test_a_resumed_run_ends_with_the_uninterrupted_image(tmp_path, images):
    args = (f"--content={images / 'content.png'}", f"--style={images / 'style.jpg'}",
            "--optimizer=adam", "--learning_rate=10", *TINY)
    straight = run_in_process(StyleTransferTask, *args, f"--model_dir={tmp_path / 'a'}", "--steps=4")
    run_in_process(StyleTransferTask, *args, f"--model_dir={tmp_path / 'b'}", "--steps=2")
    resumed = run_in_process(StyleTransferTask, *args, f"--model_dir={tmp_path / 'b'}", "--steps=4")
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-5)
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / "result.png")),
                                  np.asarray(Image.open(tmp_path / "b" / "result.png")))


def test_a_rerun_with_another_save_every_is_refused_not_shifted(tmp_path, images):
    """The backup holds the absolute step and the epoch length: a rerun with another
    --save_every once read "already trained for 8 steps" after only 4 had run."""
    args = (f"--content={images / 'content.png'}", f"--style={images / 'style.jpg'}",
            "--optimizer=adam", f"--model_dir={tmp_path}", *TINY)
    run_in_process(StyleTransferTask, *args, "--steps=4")
    history = open(tmp_path / "history.csv").read()
    with pytest.raises(ValueError, match="epochs of 1 steps; this command's are 2 steps "
                                         r"\(--save_every changed\)"):
        run_in_process(StyleTransferTask, *args, "--steps=8", "--save_every=2")
    assert open(tmp_path / "history.csv").read() == history
    resumed = run_in_process(StyleTransferTask, *args, "--steps=6")  # the same --save_every goes on
    assert len(open(tmp_path / "history.csv").read().split()) == 1 + 6
    assert resumed["status"] == "completed"


@pytest.mark.parametrize("flag,name,message", [
    ("--content", "missing.png", "--content=.*missing.png: no such file"),
    ("--style", "broken.png", "--style=.*broken.png: not a readable image"),
])
def test_bad_image_paths_give_one_clear_error(tmp_path, images, flag, name, message):
    args = {"--content": images / "content.png", "--style": images / "style.jpg"}
    args[flag] = images / name
    with pytest.raises(DataError, match=message):
        run_in_process(StyleTransferTask, *(f"{k}={v}" for k, v in args.items()),
                       f"--model_dir={tmp_path}", *TINY)


def test_an_out_path_that_cannot_take_a_file_is_refused_before_any_work(tmp_path, images):
    from absl import flags

    from conftest import parse_app_flags

    required = (f"--content={images / 'content.png'}", f"--style={images / 'style.jpg'}")
    (tmp_path / "a_file").write_text("")
    for out, message in [(tmp_path, "is a folder; give a file name, e.g. --out=.*result.png"),
                         (tmp_path / "a_file" / "x.png", "a_file is not a folder")]:
        with pytest.raises(flags.IllegalFlagValueError, match=message):
            parse_app_flags(StyleTransferTask, *required, f"--out={out}")
    new = tmp_path / "new" / "folder" / "out.png"  # created when the result is written
    assert parse_app_flags(StyleTransferTask, *required, f"--out={new}").out == str(new)


def test_feature_layers_of_a_batch_norm_vgg_are_its_relus():
    source = FeatureSource("random", 16, 1 / 16, batch_norm=True, preprocessing="none")
    extractor = build_feature_extractor(source, "max")
    assert extractor.outputs[0] is extractor.get_layer("block4_conv2_relu").output
    assert extractor.outputs[1] is extractor.get_layer("block1_conv1_relu").output
