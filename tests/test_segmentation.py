"""Segmentation: FCN-32s/16s/8s and U-Net shapes and parameter counts, the bilinear
initialisation, augmentations that keep image and mask aligned, the mask-folder checks, the
metrics, learning on generated shapes, and the app end to end with its export."""
from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import run_in_process, saved_model_cli_outputs
from suite.data import segmentation as seg_data
from suite.data import segmentation_pipeline as pipeline
from suite.errors import DataError
from suite.metrics import segmentation as metrics
from suite.models.dense_prediction import bilinear_upsample
from suite.models.fcn import build_fcn, recast_classifier_weights
from suite.models.unet import build_unet
from suite.models.vgg import build_vgg
from suite.tasks.segmentation import SegmentationTask


def shapes(count: int, size: int = 48, seed: int = 0, channels: int = 1):
    """Noisy gray images with bright discs and boxes (class 1) on a dark background (class 0)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(count):
        mask = np.zeros((size, size), np.uint8)
        for _ in range(rng.integers(2, 4)):
            cy, cx, r = rng.integers(8, size - 8, 2).tolist() + [int(rng.integers(4, 9))]
            if rng.random() < 0.5:
                mask[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
            else:
                mask[max(cy - r, 0):cy + r, max(cx - r, 0):cx + r] = 1
        image = 60 + 130 * mask + rng.normal(0, 20, mask.shape)
        image = np.clip(image, 0, 255).astype(np.uint8)[..., None].repeat(channels, -1)
        images.append(image)
        masks.append(mask)
    return images, masks


def write_folder(root, images, masks, mask_values=(0, 255)):
    from PIL import Image

    os.makedirs(root / "image", exist_ok=True)
    os.makedirs(root / "label", exist_ok=True)
    for i, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            root / "image" / f"{i}.png")
        Image.fromarray(np.asarray(mask_values, np.uint8)[mask]).save(root / "label" / f"{i}.png")
    return root


# -- models --------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["32s", "16s", "8s", "unet"])
def test_every_variant_answers_at_the_input_size_for_odd_and_even_sizes(variant):
    if variant == "unet":
        model = build_unet(3, (None, None, 3), base_filters=4)
    else:
        model = build_fcn(variant, 3, (None, None, 3), width_multiplier=1 / 32)
    for height, width in ((37, 50), (64, 64), (5, 3), (33, 97)):
        out = model(np.random.default_rng(0).uniform(0, 255, (2, height, width, 3)))
        assert out.shape == (2, height, width, 3)
        np.testing.assert_allclose(np.sum(out, -1), 1.0, atol=1e-5)


def test_fcn_parameter_counts_follow_vgg16_and_the_paper():
    vgg16 = build_vgg(16).count_params()
    assert vgg16 == 138_357_544
    fcn32 = build_fcn("32s", 21, (None, None, 3))
    # VGG-16 without its 1000-way classifier, plus score_fr and the fixed x32 bilinear kernel.
    assert fcn32.count_params() == vgg16 - (4096 * 1000 + 1000) + (4096 * 21 + 21) + 64 * 64 * 21 * 21
    assert fcn32.count_params() == 136_152_917
    assert round(sum(int(np.prod(w.shape)) for w in fcn32.trainable_weights) / 1e6) == 134  # Table 1
    assert not fcn32.get_layer("upscore").trainable  # the final upsampling stays bilinear
    fcn8 = build_fcn("8s", 21, (None, None, 3), width_multiplier=1 / 8)
    assert fcn8.get_layer("upscore2").trainable and fcn8.get_layer("upscore_pool4").trainable
    assert not fcn8.get_layer("upscore8").trainable
    for name in ("score_fr", "score_pool4", "score_pool3"):  # zero-initialised, as in the paper
        assert not np.any(fcn8.get_layer(name).kernel.numpy())


def test_unet_has_the_papers_31m_parameters_and_valid_convolutions_give_388_from_572():
    assert build_unet(2, (None, None, 1)).count_params() == 31_030_658
    paper = build_unet(2, (572, 572, 1), base_filters=2, padding="valid")
    assert paper.output_shape == (None, 388, 388, 2)


@pytest.mark.parametrize("factor", [2, 8, 32])
def test_bilinear_initialisation_equals_tf_image_resize_borders_included(factor):
    inputs = keras.Input((None, None, 2))
    model = keras.Model(inputs, bilinear_upsample(inputs, factor, 2, "up"))
    image = np.random.default_rng(factor).uniform(0, 1, (1, 7, 9, 2)).astype(np.float32)
    expected = tf.image.resize(image, (7 * factor, 9 * factor), method="bilinear").numpy()
    np.testing.assert_allclose(model(image).numpy(), expected, atol=1e-5)


def test_classifier_fc_layers_recast_into_fc6_and_fc7():
    classifier = build_vgg(16, (64, 64, 3), num_classes=5, width_multiplier=1 / 16,
                           classifier_units=16)
    fcn = build_fcn("8s", 2, (None, None, 3), width_multiplier=1 / 16)
    fcn_units = fcn.get_layer("fc6").kernel.shape[-1]
    assert fcn_units == 256  # 4096 / 16; a 16-unit classifier does not fit: left out
    weights = {f"{layer.name}/{v.name}": v.numpy() for layer in classifier.layers
               for v in layer.weights}
    assert "fc6/kernel" not in recast_classifier_weights(weights, fcn)
    classifier = build_vgg(16, (224, 224, 3), num_classes=5, width_multiplier=1 / 16,
                           classifier_units=256)
    weights = {f"{layer.name}/{v.name}": v.numpy() for layer in classifier.layers
               for v in layer.weights}
    recast = recast_classifier_weights(weights, fcn)
    np.testing.assert_array_equal(recast["fc6/kernel"].reshape(-1, 256), weights["fc1/kernel"])
    # A 7x7 convolution with these weights on a 7x7 map is the dense layer on its flattening.
    pool5 = np.random.default_rng(0).normal(size=(1, 7, 7, 32)).astype(np.float32)
    conv = tf.nn.conv2d(pool5, recast["fc6/kernel"], 1, "VALID").numpy().ravel()
    np.testing.assert_allclose(conv, (pool5.reshape(1, -1) @ weights["fc1/kernel"])[0], rtol=1e-4,
                               atol=1e-4)


# -- augmentation --------------------------------------------------------------------------------
@pytest.mark.parametrize("names", [(), ("flip",), ("rotate90",), ("scale",), ("elastic",),
                                   ("flip", "rotate90", "scale", "elastic")])
def test_image_and_mask_stay_aligned_through_every_augmentation(names):
    _, masks = shapes(1, size=64, seed=3)
    mask = masks[0]
    image = (mask * 255).astype(np.uint8)[..., None]  # the image is its own mask
    changed = False
    for i in range(6):
        out_image, out_mask = pipeline.augment_pair(image, mask, [7, i], names, crop=40)
        out_image, out_mask = out_image.numpy()[..., 0], out_mask.numpy()
        assert out_image.shape == out_mask.shape == (40, 40)
        assert set(np.unique(out_mask)) <= {0, 1}
        exact = np.isclose(out_image, 0, atol=1e-3) | np.isclose(out_image, 255, atol=1e-3)
        if not set(names) & {"scale", "elastic"}:
            assert exact.all()  # flips, rotations and crops move pixels, never blend them
        assert exact.mean() > 0.8
        np.testing.assert_array_equal(out_mask[exact], np.round(out_image[exact] / 255))
        top_left = (image[:40, :40, 0] / 255).astype(np.int32)
        changed = changed or not np.array_equal(out_mask, top_left)
    assert changed  # the augmentation (or crop position) really varied


def test_training_batches_are_reproducible_from_the_seed():
    images, masks = shapes(4, size=32)
    first = [pipeline.train_dataset(images, masks, 2, 24, seed=5, augmentations=("elastic",))
             for _ in range(2)]
    a, b = (next(iter(ds)) for ds in first)
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


# -- the mask folder -----------------------------------------------------------------------------
def test_mask_folder_reads_pairs_in_natural_order_and_holds_out_the_last(tmp_path):
    images, masks = shapes(12, size=24)
    root = write_folder(tmp_path / "data", images, masks)
    data = seg_data.load_mask_folder(str(root), ["background", "shape"], [0, 255], held_out=3)
    assert data.train.count == 9 and data.test.count == 3 and data.channels == 1
    assert [os.path.basename(n) for n in data.test.names] == ["9.png", "10.png", "11.png"]
    np.testing.assert_array_equal(data.test.masks[1], masks[10])
    np.testing.assert_array_equal(data.train.images[2][..., 0], images[2][..., 0])


def test_bad_mask_folders_are_refused_naming_the_file(tmp_path):
    from PIL import Image

    images, masks = shapes(4, size=24)
    root = write_folder(tmp_path / "missing", images, masks)
    os.remove(root / "label" / "2.png")
    with pytest.raises(DataError, match=r"2\.png: no mask for this image"):
        seg_data.load_mask_folder(str(root), class_values=[0, 255], held_out=1)

    root = write_folder(tmp_path / "size", images, masks)
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(root / "label" / "1.png")
    with pytest.raises(DataError, match=r"label/1\.png: mask is 24x20 but its image .* is 24x24"):
        seg_data.load_mask_folder(str(root), class_values=[0, 255], held_out=1)

    root = write_folder(tmp_path / "values", images, masks)
    bad = np.asarray([0, 255], np.uint8)[masks[3]]
    bad[0, 0] = 128
    Image.fromarray(bad).save(root / "label" / "3.png")
    with pytest.raises(DataError, match=r"label/3\.png: mask value\(s\) \[128\] are not in "
                                        r"`class_values=0,255`"):
        seg_data.load_mask_folder(str(root), class_values=[0, 255], held_out=1)
    with pytest.raises(DataError, match=r"label/0\.png: mask values span 0\.\.255 but there are "
                                        r"2 classes"):
        seg_data.load_mask_folder(str(root), class_names=["a", "b"], held_out=1)
    with pytest.raises(DataError, match="`held_out=4` must leave at least one for training"):
        seg_data.load_mask_folder(str(write_folder(tmp_path / "few", images, masks)),
                                  class_values=[0, 255], held_out=4)

    root = write_folder(tmp_path / "twice", images, masks)
    Image.fromarray(images[0][..., 0]).save(root / "image" / "0.tif")
    with pytest.raises(DataError, match=r"image/0\.png and .*image/0\.tif: two files of one name"):
        seg_data.load_mask_folder(str(root), class_values=[0, 255], held_out=1)


# -- metrics -------------------------------------------------------------------------------------
def test_class_scores_from_a_known_confusion():
    truth = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    prediction = np.array([[0, 1, 1, 1], [2, 2, 2, 0]])
    scores = metrics.class_scores(metrics.confusion(truth, prediction, 4))
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: 2/3; class 2: 3/4; class 3 absent: left out
    assert scores["per_class_iou"][:3] == pytest.approx([1 / 3, 2 / 3, 3 / 4])
    assert scores["per_class_iou"][3] is None
    assert scores["mean_iou"] == pytest.approx((1 / 3 + 2 / 3 + 3 / 4) / 3)
    assert scores["pixel_accuracy"] == pytest.approx(6 / 8)


def test_isbi_scores_count_a_missing_membrane_as_a_merge():
    truth = np.ones((20, 20), np.uint8)
    truth[:, 10] = 0  # one membrane: two cells
    assert metrics.isbi_scores(truth, truth) == {"pixel_error": 0.0, "rand_error": 0.0}
    merged = np.ones_like(truth)  # the membrane missed: one cell
    scores = metrics.isbi_scores(truth, merged)
    assert scores["pixel_error"] == pytest.approx(20 / 400)
    assert scores["rand_error"] > 0.3  # a merge of two equal cells is a large Rand error


# -- learning and the app ------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["fcn8s", "unet"])
def test_a_few_steps_lower_the_loss_on_generated_shapes(model):
    keras.utils.set_random_seed(0)
    images, masks = shapes(8, size=32)
    if model == "unet":
        net = build_unet(2, (None, None, 1), base_filters=4, batch_norm=True)
    else:
        net = build_fcn("8s", 2, (None, None, 1), width_multiplier=1 / 16, batch_norm=True)
    net.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    data = pipeline.train_dataset(images, masks, 4, 32, seed=0)
    history = net.fit(data, epochs=6, steps_per_epoch=5, verbose=0).history["loss"]
    assert history[-1] < 0.75 * history[0], history


SMALL_RUN = ["--class_values=0,255", "--class_names=background,shape", "--boundary_class=0",
             "--held_out=2", "--crop_size=32", "--batch_size=2", "--steps_per_epoch=4",
             "--augmentations=flip,elastic", "--width_multiplier=0.0625", "--batch_norm",
             "--learning_rate=3e-3", "--validation_images=2"]


def test_app_trains_evaluates_draws_and_exports_a_model_of_any_input_size(tmp_path):
    images, masks = shapes(8, size=48, seed=1)
    images[-1], masks[-1] = shapes(1, size=61, seed=2)[0][0], shapes(1, size=61, seed=2)[1][0]
    root = write_folder(tmp_path / "data", images, masks)
    model_dir = tmp_path / "run"
    results = run_in_process(SegmentationTask, f"--dataset={root}", f"--model_dir={model_dir}",
                             "--epochs=2", *SMALL_RUN)
    assert results["status"] == "completed", results
    # 8 images: the last 2 are the test images, the 2 before them validate, 4 train
    assert results["held_out_images"] == 2 and results["train_images"] == 4
    assert results["selection"]["validation_split"] == "4.png, 5.png"
    assert 0 <= results["pixel_error"] <= 1 and 0 <= results["rand_error"] <= 1
    # binary: the error is the complement of accuracy (per image there, over all pixels here)
    assert results["pixel_accuracy"] == pytest.approx(1 - results["pixel_error"], abs=0.02)
    assert len(results["per_class_iou"]) == 2
    for name in ("overlays.png", "learning_curves.png", "history.csv", "checkpoints/last.keras"):
        assert (model_dir / name).exists(), name
    from PIL import Image

    overlays = np.asarray(Image.open(model_dir / "overlays.png"))
    assert overlays.shape[1] >= 4 * 61 and overlays.shape[0] >= 48 + 61
    assert os.listdir(model_dir / "logs" / "evaluation")  # the overlays in TensorBoard

    loaded = tf.saved_model.load(results["export"])  # the model the validation images chose
    model = keras.models.load_model(model_dir / "checkpoints" / "best.keras")
    image = images[-1][None].astype(np.float32)  # 61x61: not a multiple of anything
    served = loaded.signatures["serving_default"](image=tf.constant(image))
    expected = model.predict(image, verbose=0)
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(served["class_map"].numpy(), np.argmax(expected, -1))
    png = tf.io.encode_png(images[-1]).numpy()
    by_bytes = loaded.signatures["serve_image_bytes"](image_bytes=tf.constant([png, png]))
    assert by_bytes["class_map"].shape == (2, 61, 61)
    np.testing.assert_array_equal(by_bytes["class_map"].numpy()[0], np.argmax(expected, -1)[0])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[batch, height, width, 1\]"):
        loaded.signatures["serving_default"](image=tf.zeros([1, 16, 16, 3]))
    other = tf.io.encode_png(images[0]).numpy()  # 48x48 next to 61x61
    with pytest.raises(tf.errors.InvalidArgumentError, match="same size"):
        loaded.signatures["serve_image_bytes"](image_bytes=tf.constant([png, other]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="PNG or JPEG"):
        loaded.signatures["serve_image_bytes"](image_bytes=tf.constant([b"not an image"]))

    # The same command again resumes: nothing left to train, no new export version.
    again = run_in_process(SegmentationTask, f"--dataset={root}", f"--model_dir={model_dir}",
                           "--epochs=2", *SMALL_RUN)
    assert again["export"] == results["export"]
    assert again["mean_iou"] == pytest.approx(results["mean_iou"])


def test_a_boundary_class_outside_the_classes_is_refused_before_training(tmp_path):
    from absl import flags

    images, masks = shapes(4, size=24)
    root = write_folder(tmp_path / "data", images, masks)
    args = (f"--dataset={root}", f"--model_dir={tmp_path / 'run'}", "--epochs=1", *SMALL_RUN)
    with pytest.raises(DataError, match=r"--boundary_class=2, but data has 2 classes "
                                        r"\['background', 'shape'\]"):
        run_in_process(SegmentationTask, *args, "--boundary_class=2")
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(flags.IllegalFlagValueError, match="--boundary_class must be"):
        run_in_process(SegmentationTask, *args, "--boundary_class=-2")


@pytest.mark.slow
def test_exported_segmenter_runs_under_saved_model_cli(tmp_path):
    """The export served by saved_model_cli (a TF Serving-style session) on an odd-sized image."""
    images, masks = shapes(6, size=40, seed=4)
    root = write_folder(tmp_path / "data", images, masks)
    model_dir = tmp_path / "run"
    results = run_in_process(SegmentationTask, f"--dataset={root}", f"--model_dir={model_dir}",
                             "--epochs=1", "--model=unet", "--base_filters=4", *SMALL_RUN)
    served = saved_model_cli_outputs(results["export"], "serve_uint8", "image",
                                     np.full((1, 45, 39, 1), 200, np.uint8), tmp_path)
    class_map, probabilities = served["class_map"], served["probabilities"]
    assert class_map.shape == (1, 45, 39) and probabilities.shape == (1, 45, 39, 2)
    np.testing.assert_array_equal(class_map, np.argmax(probabilities, -1))
    assert json.load(open(model_dir / "run.json"))["task"] == "SegmentationTask"


@pytest.mark.slow
def test_two_workers_train_one_segmenter_with_identical_weights(tmp_path):
    """launch.local with 2 workers: auto picks MultiWorkerMirroredStrategy, the run finishes,
    and the chief's and the other worker's backups hold the same weights."""
    from conftest import assert_workers_identical, launch_two_workers

    images, masks = shapes(6, size=40, seed=5)
    root = write_folder(tmp_path / "data", images, masks)
    model_dir = tmp_path / "run"
    done = launch_two_workers("apps.train_segmenter", f"--dataset={root}",
                              f"--model_dir={model_dir}", "--epochs=2", *SMALL_RUN)
    assert '"replicas": 2' in done.stdout
    results = json.load(open(model_dir / "results.json"))
    assert results["replicas"] == 2 and results["status"] == "completed"

    assert len(assert_workers_identical(model_dir)) > 20


def test_oxford_pets_from_tensorflow_datasets_gives_three_classes_from_zero(tmp_path,
                                                                            monkeypatch):
    import tensorflow_datasets as tfds

    from suite.data import hosts

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: False)
    with pytest.raises(DataError, match="www.robots.ox.ac.uk is unreachable.*image\\(s\\)/"):
        seg_data.load_segmentation("oxford_iiit_pet", data_dir=str(tmp_path))  # in seconds
    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=3):  # tfds's offline random data, real features
        data = seg_data.load_segmentation("oxford_iiit_pet", data_dir=str(tmp_path))
    assert data.class_names == ["pet", "background", "border"] and data.channels == 3
    assert data.train.count == data.test.count == 3  # (mock masks are random, not 1..3)
    assert all(m.ndim == 2 and m.dtype == np.uint8 for m in data.train.masks + data.test.masks)


def test_init_from_a_vgg16_classifier_loads_the_encoder_and_recasts_fc6_fc7(tmp_path):
    classifier = build_vgg(16, (224, 224, 3), num_classes=4, width_multiplier=1 / 16,
                           classifier_units=256)
    classifier.save(tmp_path / "vgg.keras")
    images, masks = shapes(5, size=40, seed=6, channels=3)
    data = seg_data.SegmentationData(
        "shapes", ["background", "shape"], 3,
        seg_data.SegmentationSplit(images[:4], masks[:4], [f"{i}" for i in range(4)]),
        seg_data.SegmentationSplit(images[4:], masks[4:], ["4"]))
    model_dir = tmp_path / "run"
    results = run_in_process(SegmentationTask, "--dataset=unused", f"--model_dir={model_dir}",
                             "--epochs=0", f"--init_from={tmp_path / 'vgg.keras'}",
                             "--width_multiplier=0.0625", "--validation_images=1",
                             data_override=data)
    loaded = results["transfer"]["loaded"]
    assert "block1_conv1" in loaded and "block5_conv3" in loaded
    assert "fc6" in loaded and "fc7" in loaded  # dense weights recast as convolutions
    fcn = keras.models.load_model(model_dir / "checkpoints" / "last.keras")
    np.testing.assert_array_equal(fcn.get_layer("fc6").kernel.numpy().reshape(-1, 256),
                                  classifier.get_layer("fc1").kernel.numpy())
    np.testing.assert_array_equal(fcn.get_layer("block3_conv2").kernel.numpy(),
                                  classifier.get_layer("block3_conv2").kernel.numpy())
