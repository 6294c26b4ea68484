"""Faster R-CNN detection: VOC XML parsing (malformed files, boxes outside the image, empty images,
unknown classes), the fixed split, letterboxing and keras-cv's augmentation moving boxes with the
pixels, the four losses falling in a few steps, detections mapped back to original-image pixels,
COCO mAP, and the app end to end: training, resume (also after SIGTERM), the backbone from a
classification run, gallery, and the decoded export. The images are drawn here (coloured
rectangles); the raccoon images are not redistributable."""
from __future__ import annotations

import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import (app_task, assert_workers_identical, launch_two_workers, parse_app_flags,
                      run_in_process, saved_model_cli_run)
from suite.data import detection
from suite.data import detection_pipeline as pipeline
from suite.errors import DataError
from suite.metrics.detection import coco_scores
from suite.tasks.detection import DetectionTask

COLOURS = {"square": (220, 30, 30), "disc": (30, 60, 220)}
TINY = ("--image_size=64", "--depth=18", "--width_multiplier=0.125", "--head_units=16,16",
        "--anchor_samples=32", "--train_proposals=64", "--test_proposals=32",
        "--sampled_rois=16", "--max_detections=10", "--batch_size=2", "--gallery_images=4",
        "--learning_rate=0.005")

VOC_XML = """<annotation>
  <folder>images</folder><filename>{name}</filename>
  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>
  {objects}
</annotation>"""
VOC_OBJECT = ("<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{0}</xmin>"
              "<ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>")


def draw_scene(width: int, height: int, objects) -> np.ndarray:
    """A grey image with each (label, xmin, ymin, xmax, ymax) drawn in its label's colour."""
    image = np.full((height, width, 3), 200, np.uint8)
    for label, x0, y0, x1, y1 in objects:
        image[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = COLOURS[label]
    return image


def write_sample(root, name: str, width: int, height: int, objects, boxes=None) -> None:
    """images/<name>.png and annotations/<name>.xml; `boxes` overrides the annotated boxes."""
    from PIL import Image

    os.makedirs(root / "images", exist_ok=True)
    os.makedirs(root / "annotations", exist_ok=True)
    Image.fromarray(draw_scene(width, height, objects)).save(root / "images" / f"{name}.png")
    annotated = boxes if boxes is not None else objects
    xml = VOC_XML.format(name=f"{name}.png", width=width, height=height, objects="".join(
        VOC_OBJECT.format(*box, label=label) for label, *box in annotated))
    (root / "annotations" / f"{name}.xml").write_text(xml)


def scenes_folder(root, count: int = 10, seed: int = 0):
    """`count` scenes of 1-2 rectangles of two classes, sizes varying around 64-96 pixels."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        width, height = int(rng.integers(64, 97)), int(rng.integers(64, 97))
        objects = []
        for label in list(COLOURS)[: 1 + i % 2]:
            w, h = int(rng.integers(20, 40)), int(rng.integers(20, 40))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            objects.append((label, x, y, x + w, y + h))
        write_sample(root, f"scene-{i + 1}", width, height, objects)
    return root


def test_voc_folder_clips_drops_and_reports_boxes_and_keeps_empty_images(tmp_path):
    root = tmp_path / "voc"
    write_sample(root, "a-1", 80, 60, [("square", 10, 10, 40, 30)])
    write_sample(root, "a-2", 80, 60, [("disc", 50, 20, 70, 50)],
                 boxes=[("disc", 50, 20, 95, 50), ("square", 90, 70, 120, 90)])  # out, gone
    write_sample(root, "a-10", 50, 40, [])
    data = detection.load_voc_folder(str(root), held_out_every=3)
    assert data.class_names == ["disc", "square"]
    assert data.train.names == ["a-1.png", "a-2.png"] and data.test.names == ["a-10.png"]
    np.testing.assert_array_equal(data.train.boxes[1], [[50, 20, 80, 50]])  # clipped to 80
    np.testing.assert_array_equal(data.train.classes, [[2], [1]])
    assert data.test.boxes[0].shape == (0, 4) and data.test.images[0].shape == (40, 50, 3)
    assert data.problems["boxes_clipped_to_their_image"]["count"] == 1
    assert data.problems["boxes_dropped_outside_their_image"]["examples"] == ["a-2.png"]
    assert data.problems["images_without_objects"]["examples"] == ["a-10.png"]
    assert "1 images without objects (e.g. a-10.png)" in data.summary()
    (tmp_path / "test.csv").write_text("filename,width\na-2.png,80\na-2.png,80\n")
    data = detection.load_voc_folder(str(root), test_files=str(tmp_path / "test.csv"))
    assert data.test.names == ["a-2.png"] and data.train.count == 2


def test_bad_annotation_files_are_each_named_in_one_error(tmp_path):
    root = tmp_path / "voc"
    write_sample(root, "good", 64, 64, [("square", 5, 5, 30, 30)])
    write_sample(root, "ok-2", 64, 64, [("square", 5, 5, 30, 30)])
    (root / "annotations" / "broken.xml").write_text("<annotation><filename>x.png")
    (root / "annotations" / "nobox.xml").write_text(
        "<annotation><filename>good.png</filename><object><name>square</name></object>"
        "</annotation>")
    (root / "annotations" / "text.xml").write_text(VOC_XML.format(
        name="good.png", width=64, height=64, objects=VOC_OBJECT.format(
            "five", 5, 30, 30, label="square")))
    (root / "annotations" / "lost.xml").write_text(VOC_XML.format(
        name="missing.png", width=64, height=64, objects=""))
    (root / "annotations" / "swapped.xml").write_text(VOC_XML.format(
        name="good.png", width=64, height=64, objects=VOC_OBJECT.format(
            5, 5, 30, 30, label="square") + VOC_OBJECT.format(20, 20, 1, 30, label="square")))
    (root / "annotations" / "nan.xml").write_text(VOC_XML.format(
        name="good.png", width=64, height=64, objects=VOC_OBJECT.format(
            "nan", 5, "inf", 30, label="square")))
    with pytest.raises(DataError) as error:
        detection.load_voc_folder(str(root))
    message = str(error.value)
    assert message.startswith("6 bad annotation file(s)")
    assert "swapped.xml: object 2 (square) spans x 20..1, y 20..30: an empty or swapped" in message
    assert "nan.xml: <xmin> is 'nan', not a finite number" in message
    assert "broken.xml: not valid XML" in message
    assert "nobox.xml: an <object> (square) has no <bndbox>" in message
    assert "text.xml: <xmin> is 'five', not a number" in message
    assert "lost.xml: its image missing.png is not in" in message
    for name in ("broken", "nobox", "text", "lost", "swapped", "nan"):
        os.remove(root / "annotations" / f"{name}.xml")
    with pytest.raises(DataError, match=r"good.png: class square is not in `class_names` \(cat"):
        detection.load_voc_folder(str(root), class_names=["cat"])
    with pytest.raises(DataError, match="no annotations folder"):
        detection.load_voc_folder(str(root / "images"))
    with pytest.raises(DataError, match="names 1 image.*without an annotation"):
        (tmp_path / "t.txt").write_text("good.png\nnot-there.png\n")
        detection.load_voc_folder(str(root), test_files=str(tmp_path / "t.txt"))


def test_voc_from_tensorflow_datasets(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    from suite.data import hosts

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: True)
    for name, classes_count in (("voc/2007", 20), ("coco/2017", 80)):
        with tfds.testing.mock_data(num_examples=3):  # tfds's offline random data
            data = detection.load_detection(name, data_dir=str(tmp_path))
        assert data.num_classes == classes_count and data.train.count == data.test.count == 3
        for image, boxes, classes in zip(data.train.images, data.train.boxes,
                                         data.train.classes):
            height, width = image.shape[:2]
            assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
            assert ((classes >= 1) & (classes <= classes_count)).all()
            assert len(classes) == len(boxes)
    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: False)
    with pytest.raises(DataError, match="unreachable.*raccoon-detection"):
        detection.load_detection("voc/2007", data_dir=str(tmp_path / "empty"))
    with pytest.raises(DataError, match="not a tensorflow-datasets detection set"):
        detection.load_detection("imagenet2012")


def _extent(image, colour) -> list:
    """xyxy of the pixels within 40 of `colour` (resampling blurs the edges)."""
    near = np.abs(image.astype(float) - colour).max(-1) < 40
    ys, xs = np.nonzero(near)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_letterbox_and_augmentation_move_the_boxes_with_the_pixels(tmp_path):
    root = tmp_path / "voc"
    objects = [("square", 20, 10, 70, 40)]
    for i in range(4):
        write_sample(root, f"s-{i}", 120, 80, objects)
    data = detection.load_voc_folder(str(root), held_out_every=4)
    arrays = pipeline.letterboxed_arrays(data.train, 64, 2)
    images, boxes, classes, scales = arrays
    assert images.shape == (3, 64, 64, 3) and scales[0] == pytest.approx(64 / 120)
    np.testing.assert_allclose(boxes[0, 0], np.array(objects[0][1:]) * 64 / 120)
    assert (boxes[0, 1] == -1).all() and (classes[0] == [1, -1]).all()
    assert (images[0, 43:] == 0).all()  # padded below the 64x43 picture
    augmented = pipeline.train_dataset(arrays, 3, seed=3, augment=True)
    seen_flip = False
    for batch_images, target in augmented.take(4):
        for image, box in zip(batch_images.numpy(), target["boxes"].numpy()):
            np.testing.assert_allclose(box[0], _extent(image, COLOURS["square"]), atol=2.5)
            seen_flip |= box[0][0] > 64 - box[0][2] + 1  # moved right of its mirror image
    assert seen_flip


def test_coco_scores_of_exact_shifted_and_missing_detections():
    truth = [np.array([[10, 10, 50, 50]], np.float32), np.array([[0, 0, 20, 20]], np.float32)]
    classes = [np.array([1]), np.array([2])]
    ones = [np.ones(1), np.ones(1)]
    assert coco_scores(truth, classes, truth, ones, classes)["map"] == 1.0
    shifted = coco_scores(truth, classes, [t + 5 for t in truth], ones, classes)
    assert shifted["map_50"] == pytest.approx(0.5, abs=0.01)  # IoU 0.62 found, 0.39 missed
    assert shifted["map_75"] == 0.0
    # An image without detections still counts its objects as missed (keras-cv's
    # BoxCOCOMetrics leaves such images out and would say 1.0 here).
    padded = [np.array([[0, 0, 0, 0]]), np.array([[0, 0, 20, 20]])]
    assert coco_scores(truth, classes, padded, ones, [np.array([-1]), np.array([2])])[
        "map_50"] == pytest.approx(0.5, abs=0.01)
    nothing = coco_scores(truth, classes, [np.zeros((0, 4))] * 2, [np.zeros(0)] * 2,
                          [np.zeros(0)] * 2)
    assert nothing["map"] == 0.0 and nothing["recall_100"] == 0.0


def test_a_few_steps_lower_all_four_losses():
    from suite.models.faster_rcnn import build_faster_rcnn, compile_faster_rcnn

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = np.full((4, 64, 64, 3), 200, np.float32)
    boxes = -np.ones((4, 1, 4), np.float32)
    for i in range(4):
        x, y = rng.integers(0, 30, 2)
        images[i, y:y + 30, x:x + 30] = COLOURS["square"]
        boxes[i, 0] = [x, y, x + 30, y + 30]
    classes = np.where(boxes[..., 0] >= 0, 1.0, -1.0).astype(np.float32)
    model = build_faster_rcnn(1, 64, depth=18, width_multiplier=0.125, anchor_samples=32,
                              train_proposals=64, test_proposals=32, sampled_rois=16,
                              head_units=(32, 32))
    compile_faster_rcnn(model, keras.optimizers.Adam(1e-3))
    data = tf.data.Dataset.from_tensor_slices(
        (images, {"boxes": boxes, "classes": classes})).batch(2, drop_remainder=True)
    # Epoch means of 10 training steps each: the first against the last two. The head's box loss
    # first rises (the RPN starts proposing the objects, so more sampled RoIs are positive and
    # carry a box loss), then falls with the rest.
    history = model.fit(data.repeat(), steps_per_epoch=10, epochs=10, verbose=0).history
    for key in ("rpn_classification_loss", "rpn_box_loss", "classification_loss", "box_loss"):
        assert np.mean(history[key][-2:]) < 0.7 * history[key][0], (key, history[key])


def test_epoch_logs_hold_the_four_losses_and_no_structure_warning():
    """The epoch line and history.csv: the losses, not keras-cv's internal counters (`mean`,
    `percent_boxes_matched`, always 0); and no Keras warning that `inputs` (a bare image batch,
    keras-cv's graph names it {"images": ...}) mismatches the model's structure."""
    import warnings

    from suite.models.faster_rcnn import build_faster_rcnn, compile_faster_rcnn

    keras.utils.set_random_seed(0)
    images = np.full((2, 64, 64, 3), 200, np.float32)
    images[:, 10:40, 20:50] = COLOURS["square"]
    data = tf.data.Dataset.from_tensor_slices((images, {
        "boxes": np.tile([[[20.0, 10.0, 50.0, 40.0]]], (2, 1, 1)).astype(np.float32),
        "classes": np.ones((2, 1), np.float32)})).batch(2, drop_remainder=True)
    model = build_faster_rcnn(1, 64, depth=18, width_multiplier=0.125, anchor_samples=16,
                              train_proposals=32, test_proposals=16, sampled_rois=8,
                              head_units=(8, 8))
    compile_faster_rcnn(model, keras.optimizers.SGD(1e-3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logs = model.fit(data, validation_data=data, epochs=1, verbose=0).history
    losses = ["box_loss", "classification_loss", "loss", "rpn_box_loss",
              "rpn_classification_loss"]
    assert sorted(logs) == sorted(losses + [f"val_{k}" for k in losses])
    assert not [w for w in caught if "structure" in str(w.message)], [str(w.message)
                                                                      for w in caught]


def _fixed_proposals(model, boxes, score: float = 0.9, cls: int = 1):
    """Makes `model` propose `boxes` (xyxy letterbox pixels, repeated to fill its proposals)
    and its head keep them (zero box deltas) with class `cls` at `score`, whatever it sees: its
    detections are these boxes, through keras-cv's own decoding and NMS."""
    count = model.settings["test_proposals"]
    rois = np.resize(np.asarray(boxes, np.float32), (count, 4))[None, :, [1, 0, 3, 2]]  # yxyx
    model.roi_generator = lambda *args, **kwargs: (tf.constant(rois), tf.ones((1, count)))
    logits = np.full(model.num_classes + 1, -20.0, np.float32)
    logits[[0, cls]] = 0.0, np.log(score / (1 - score))
    head = model.rcnn_head
    for dense, bias in ((head.box_pred, np.zeros(4)), (head.cls_score, logits)):
        dense.kernel.assign(tf.zeros_like(dense.kernel))
        dense.bias.assign(bias)
    return model


def pairwise_iou(boxes) -> np.ndarray:
    """[K, 4] xyxy -> [K, K] IoU, the diagonal 0."""
    boxes = np.asarray(boxes, np.float64)
    low = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    overlap = np.prod(np.clip(high - low, 0, None), axis=-1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=-1)
    iou = overlap / (area[:, None] + area[None, :] - overlap)
    np.fill_diagonal(iou, 0.0)
    return iou


def test_returned_detections_obey_nms_in_the_original_images_pixels():
    """keras-cv suppresses in letterbox pixels, before detect maps the boxes back and clips them
    to the image: two boxes reaching into the letterbox's padding at IoU 0.47 overlap at 0.88
    once clipped; a third box lies wholly in the padding. The boxes detect returns (to the
    export, evaluation and the gallery) must obey the model's NMS IoU themselves and be
    boxes in the image."""
    from suite.models.faster_rcnn import build_faster_rcnn, detect

    model = build_faster_rcnn(1, 64, depth=18, width_multiplier=0.125, test_proposals=32,
                              sampled_rois=16, head_units=(8, 8), max_detections=5, nms_iou=0.5)
    _fixed_proposals(model, [[0, 0, 30, 60], [0, 0, 30, 28], [0, 40, 30, 60]])
    wide = np.zeros((32, 64, 3), np.uint8)  # letterboxed at scale 1: rows 32..63 are padding
    found = detect(model, tf.constant(wide))
    kept = found["boxes"].numpy()[found["classes"].numpy() > 0]
    assert len(kept) == 1 and pairwise_iou(kept).max() <= 0.5, kept
    np.testing.assert_allclose(kept[0, :3], [0, 0, 30])  # either box, clipped to the image
    tall = np.zeros((64, 64, 3), np.uint8)  # no padding, nothing clipped: all three stay
    assert (detect(model, tf.constant(tall))["classes"].numpy() > 0).sum() == 3


def test_detect_and_the_export_return_boxes_in_original_image_pixels(tmp_path):
    from suite.export.saved_model import write_saved_model
    from suite.models.faster_rcnn import build_faster_rcnn, detect
    from suite.tasks.detection import DetectionTask

    model = build_faster_rcnn(2, 64, depth=18, width_multiplier=0.125, test_proposals=32,
                              sampled_rois=16, head_units=(8, 8), max_detections=5)
    _fixed_proposals(model, [[8.0, 16.0, 32.0, 48.0]], cls=2)
    wide = np.zeros((100, 200, 3), np.uint8)  # letterboxed at scale 64/200
    found = detect(model, tf.constant(wide))
    np.testing.assert_allclose(found["boxes"][0], [25, 50, 100, 100], rtol=1e-5)  # y clipped
    assert found["classes"].numpy().tolist() == [2, -1, -1, -1, -1]
    assert detect(model, tf.constant(wide), score_threshold=0.95)["classes"][0] == -1

    metadata = {"class_names": ["square", "disc"], "score_threshold": 0.5, "max_detections": 5}
    version = write_saved_model(str(tmp_path), "det", DetectionTask.serving_signatures(
        model, metadata), metadata)
    loaded = tf.saved_model.load(version)
    tall = tf.io.encode_jpeg(np.zeros((128, 32, 3), np.uint8)).numpy()  # scale 0.5
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(
        [tf.io.encode_png(wide).numpy(), tall]))
    np.testing.assert_allclose(out["boxes"][0, 0], [25, 50, 100, 100], rtol=1e-5)
    np.testing.assert_allclose(out["boxes"][1, 0], [16, 32, 32, 96], rtol=1e-5)  # x clipped
    assert out["class_names"].numpy()[:, 0].tolist() == [b"disc", b"disc"]
    assert out["class_names"].numpy()[0, 1] == b"" and out["scores"][0, 1] == 0.0
    assert out["num_detections"].numpy().tolist() == [1, 1]
    strict = loaded.signatures["detect"](image_bytes=tf.constant([tall]),
                                         score_threshold=tf.constant(0.95),
                                         max_detections=tf.constant(5))
    assert strict["num_detections"].numpy().tolist() == [0]
    with pytest.raises(tf.errors.InvalidArgumentError, match="PNG or JPEG"):
        loaded.signatures["serving_default"](image_bytes=tf.constant([b"not an image"]))


def test_gallery_draws_only_detections_over_the_threshold_with_labels_apart():
    """Eleven detections piled on one object, one under the threshold: ten boxes drawn, in their
    class's colour, the ground truth dashed; no label covers another (a label with no free
    place is left out and counted)."""
    from matplotlib.patches import Rectangle

    from suite.viz.detection import class_colour, detection_gallery

    rng = np.random.default_rng(0)
    boxes = np.array([[40, 30, 200, 150]], np.float32) + rng.uniform(-8, 8, (11, 4))
    found = {"boxes": np.concatenate([boxes, np.zeros((3, 4))]),
             "scores": np.array([0.9, 0.4] + [0.6] * 9 + [0, 0, 0]),
             "classes": np.array([1, 1] + [2, 1] * 4 + [2, -1, -1, -1])}
    images = [draw_scene(240, 180, [("square", 40, 30, 200, 150)]), draw_scene(100, 300, [])]
    empty = {"boxes": np.zeros((2, 4)), "scores": np.zeros(2), "classes": -np.ones(2)}
    fig = detection_gallery(images, [[[40, 30, 200, 150]], np.zeros((0, 4))], [found, empty],
                            ["square", "disc"], score_threshold=0.5)
    ax = fig.axes[0]
    drawn = [p for p in ax.patches if isinstance(p, Rectangle)]
    solid = [p for p in drawn if p.get_linestyle() == "solid"]
    assert len(drawn) - len(solid) == 1 and len(solid) == 10  # the 0.4 detection left out
    assert {tuple(p.get_edgecolor()[:3]) for p in solid} == {class_colour(1), class_colour(2)}
    labels = [t for t in ax.texts]
    assert "square 0.90" in [t.get_text() for t in labels] and all(
        "0.40" not in t.get_text() for t in labels)
    renderer = fig.canvas.get_renderer()
    extents = [t.get_window_extent(renderer) for t in labels]
    assert not any(a.overlaps(b) for i, a in enumerate(extents) for b in extents[i + 1:])
    hidden = 10 - len(labels)
    assert ax.get_title() == "1 true, 10 detected" + (f", {hidden} unlabelled" if hidden else "")
    assert fig.axes[1].get_title() == "0 true, 0 detected" and not fig.axes[1].texts


def test_backbone_from_a_classification_run_with_frozen_batch_norm(tmp_path):
    from suite.models.registry import build_model

    classifier_dir = tmp_path / "classifier"
    os.makedirs(classifier_dir / "checkpoints")
    classifier = build_model("resnet18", input_shape=(32, 32, 3), num_classes=10,
                             width_multiplier=0.125)
    classifier.save(classifier_dir / "checkpoints" / "last.keras")
    root = scenes_folder(tmp_path / "data", count=6)

    def build(*args):
        task = app_task(DetectionTask, f"--dataset={root}", *TINY, *args)
        task.data = detection.load_detection(str(root))
        task.steps_per_epoch = 1
        return task, task.build(None)

    task, model = build(f"--init_from={classifier_dir}")
    assert task.batch_norm == "frozen"  # auto, with trained weights
    loaded = set(task.transfer_report.loaded)
    assert {"conv1_conv", "conv1_bn", "conv5_block2_2_conv"} <= loaded
    assert task.transfer_report.skipped == {}  # the classifier's head has no place here
    for layer in ("conv1_conv", "conv4_block1_0_conv"):
        np.testing.assert_array_equal(model.backbone.get_layer(layer).kernel.numpy(),
                                      classifier.get_layer(layer).kernel.numpy())
    norms = [la for la in model.backbone.layers
             if isinstance(la, keras.layers.BatchNormalization)]
    assert norms and not any(la.trainable for la in norms)
    assert all(la.trainable for la in model.backbone.layers if "conv" in type(la).__name__.lower())
    task, model = build()
    assert task.batch_norm == "trained" and all(la.trainable for la in model.backbone.layers)
    with pytest.raises(ValueError, match=r"layers of the ResNet-34 backbone \(width 0.125\) "
                                         "do not match the source"):
        build("--depth=34", f"--init_from={classifier_dir}")


def test_imagenet_backbone_offline_fails_fast_naming_the_file(tmp_path, monkeypatch):
    from suite.data import hosts

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    root = scenes_folder(tmp_path / "data", count=6)
    with pytest.raises(DataError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        run_in_process(DetectionTask, f"--dataset={root}", "--epochs=0", "--depth=50",
                       "--init_from=imagenet", f"--model_dir={tmp_path / 'run'}",
                       *[a for a in TINY if not a.startswith(("--depth", "--width"))])


def test_bad_flags_are_refused_with_the_reason():
    from absl import flags

    for bad, reason in ((["--image_size=100"], "multiple of 32"),
                        (["--sampled_rois=400"], "at most --test_proposals"),
                        (["--head_units=64,x"], "positive integers"),
                        (["--batch_size=1"], "--batch_size must be >= 2"),
                        (["--init_from=/no/such/run"], "existing model_dir")):
        with pytest.raises(flags.IllegalFlagValueError, match=reason):
            parse_app_flags(DetectionTask, "--dataset=x", *bad)


def test_app_trains_scores_draws_and_exports_under_mirrored_strategy(tmp_path,
                                                                     two_cpu_strategy):
    """The app end to end over two replicas (the single-device path and the trained export run
    in the slow SIGTERM test): training with held-out losses, COCO scores and the gallery."""
    root = scenes_folder(tmp_path / "data", count=12)
    with pytest.raises(DataError, match="gives 1 image.*per replica.*--batch_size=4"):
        run_in_process(DetectionTask, f"--dataset={root}", f"--model_dir={tmp_path / 'x'}",
                       *TINY, strategy_override=two_cpu_strategy)
    model_dir = tmp_path / "run"
    results = run_in_process(DetectionTask, f"--dataset={root}", f"--model_dir={model_dir}",
                             "--epochs=1", "--steps_per_epoch=2", *TINY, "--batch_size=4",
                             "--held_out_every=3", "--validation_every=2", "--noexport",
                             strategy_override=two_cpu_strategy)
    assert results["replicas"] == 2 and results["status"] == "completed"
    # 12 images: every 3rd held out for the test (4); of the other 8, every 2nd validates
    assert results["train_images"] == 4 and results["held_out_images"] == 4
    assert results["selection"]["validation_split"].startswith("4 images: ")
    history = open(model_dir / "history.csv").read().splitlines()
    assert len(history) == 2 and "val_rpn_box_loss" in history[0]
    # The best epoch is chosen by the validation images' mAP@0.5, scored as the test's are.
    header, row = history[0].split(","), history[1].split(",")
    assert {"val_map_50", "val_map"} <= set(header)
    assert results["selection"]["metric"] == "val_map_50"
    assert results["selection"]["value"] == pytest.approx(float(row[header.index("val_map_50")]))
    assert 0.0 <= results["selection"]["value"] <= 1.0
    for key in ("map", "map_50", "map_75", "recall_100"):
        assert 0.0 <= results[key] <= 1.0
    assert results["class_names"] == ["disc", "square"] and results["backbone_batch_norm"] == (
        "trained")
    assert results["detection_ms_per_image"] > 0
    assert os.path.getsize(model_dir / "gallery.png") > 5_000
    assert "export" not in results  # the trained export is checked in the slow SIGTERM test


@pytest.mark.slow
def test_a_sigtermed_run_resumes_and_its_export_runs_under_saved_model_cli(tmp_path,
                                                                          monkeypatch):
    from suite.tasks.detection import DetectionTask

    root = scenes_folder(tmp_path / "data", count=10)
    model_dir = tmp_path / "run"
    args = (f"--dataset={root}", f"--model_dir={model_dir}", "--steps_per_epoch=2",
            "--epochs=2", *TINY)
    train = DetectionTask.train

    class SignalAtStep(keras.callbacks.Callback):
        steps = 0

        def on_train_batch_end(self, batch, logs=None):
            SignalAtStep.steps += 1
            if SignalAtStep.steps == 3:  # epoch 2, step 1: as a scheduler's SIGTERM
                os.kill(os.getpid(), signal.SIGTERM)

    def train_with_signal(self, run):
        return run.fit(run.model, self.train_data, self.validation_data, epochs=self.epochs,
                       steps_per_epoch=self.steps_per_epoch, callbacks=[SignalAtStep()])

    monkeypatch.setattr(DetectionTask, "train", train_with_signal)
    first = run_in_process(DetectionTask, *args)
    monkeypatch.setattr(DetectionTask, "train", train)
    assert first["status"] == "interrupted" and first["exit_code"] == 143, first
    saved = json.load(open(model_dir / "backup" / "state.json"))
    assert saved["epoch"] == 1 and saved["step"] >= 1
    again = run_in_process(DetectionTask, *args)
    assert again["status"] == "completed" and "map_50" in again
    assert len(open(model_dir / "history.csv").read().splitlines()) == 3
    loaded = tf.saved_model.load(again["export"])
    scenes = [draw_scene(90, 70, [("square", 10, 10, 40, 40)]), draw_scene(64, 96, [])]
    out = loaded.signatures["detect"](
        image_bytes=tf.constant([tf.io.encode_png(s).numpy() for s in scenes]),
        score_threshold=tf.constant(0.0), max_detections=tf.constant(10))
    boxes, classes = out["boxes"].numpy(), out["classes"].numpy()
    assert boxes.shape == (2, 10, 4) and set(classes.ravel()) <= {-1, 1, 2}
    for (height, width), image_boxes in zip([(70, 90), (96, 64)], boxes):
        assert (image_boxes[:, 2] <= width).all() and (image_boxes[:, 3] <= height).all()
    metadata = json.load(open(os.path.join(again["export"], "assets.extra", "metadata.json")))
    assert metadata["class_names"] == ["disc", "square"] and metadata["image_size"] == 64
    # The export, as TF Serving runs it (a session).
    png = tf.io.encode_png(draw_scene(80, 60, [("disc", 5, 5, 40, 40)])).numpy()
    printed = saved_model_cli_run(again["export"], "serving_default", "image_bytes",
                                  np.array([png], dtype=f"S{len(png)}"), tmp_path)
    for key in ("boxes", "scores", "classes", "class_names", "num_detections"):
        assert f"Result for output key {key}:" in printed, printed[-2000:]


@pytest.mark.slow
def test_two_workers_train_one_detector_with_identical_weights(tmp_path):
    root = scenes_folder(tmp_path / "data", count=10)
    model_dir = tmp_path / "run"
    launch_two_workers("apps.train_detector", f"--dataset={root}", f"--model_dir={model_dir}",
                       "--epochs=1", "--steps_per_epoch=2", *TINY, "--batch_size=4")
    results = json.load(open(model_dir / "results.json"))
    assert results["replicas"] == 2 and results["status"] == "completed"
    assert len(assert_workers_identical(model_dir)) > 50  # backbone, heads, optimizer


@pytest.mark.parametrize("preset", ["raccoon_faster_rcnn", "raccoon_faster_rcnn_scratch"])
def test_presets_parse_and_differ_only_in_the_backbone_start(preset, tmp_path, monkeypatch):
    from conftest import REPO

    path = f"apps/flags/{preset}.flags"
    with open(os.path.join(REPO, path)) as f:
        assert f.readline().startswith(f"# python -m apps.train_detector --flagfile={path}")
    monkeypatch.chdir(REPO)
    extra = [f"--init_from={tmp_path}"] if preset == "raccoon_faster_rcnn" else []
    task = app_task(DetectionTask, f"--flagfile={path}", *extra)
    config = task.config
    assert (config.depth, config.image_size, config.schedule.batch_size) == (18, 256, 2)
    assert config.test_files.endswith("raccoon-detection/test_labels.csv")
    assert config.schedule.epochs == 6 and config.optimizer.lr_schedule == "cosine"
    assert config.init_from == (str(tmp_path) if extra else None)


def test_under_mixed_float16_the_backbone_computes_in_float16_and_the_heads_in_float32():
    from suite.models.faster_rcnn import build_faster_rcnn

    keras.mixed_precision.set_global_policy("mixed_float16")
    model = build_faster_rcnn(1, 64, depth=18, width_multiplier=0.125, test_proposals=32,
                              sampled_rois=16, head_units=(8, 8))
    assert model.backbone.get_layer("conv1_conv").compute_dtype == "float16"
    for layer in (model.rpn_head, model.rcnn_head, model.feature_pyramid,
                  model.prediction_decoder):
        assert layer.compute_dtype == "float32", layer.name
    assert keras.mixed_precision.global_policy().name == "mixed_float16"  # restored


def test_the_hour_preset_is_the_scratch_preset_stretched_to_30_epochs(tmp_path, monkeypatch):
    from conftest import REPO

    path = "apps/flags/raccoon_faster_rcnn_60min.flags"
    monkeypatch.chdir(REPO)
    config = app_task(DetectionTask, f"--flagfile={path}").config
    assert config.schedule.epochs == 30 and config.optimizer.lr_schedule == "cosine"
    assert config.init_from is None and config.validation == "holdout"
    assert config.runtime.model_dir == "runs/raccoon_faster_rcnn_60min"


def test_scoring_the_same_model_again_traces_the_detector_once():
    """epoch_metrics scores the training model every epoch: one traced detector serves them
    all, and another model gets its own."""
    from suite.models.faster_rcnn import build_faster_rcnn

    model = build_faster_rcnn(1, 64, depth=18, width_multiplier=0.125, test_proposals=8,
                              sampled_rois=8, head_units=(8, 8), max_detections=5)
    task = DetectionTask.__new__(DetectionTask)
    images = [np.zeros((48, 64, 3), np.uint8), np.zeros((64, 40, 3), np.uint8)]
    split = detection.DetectionSplit(["a", "b"], images,
                                     [np.array([[4, 4, 20, 20]], np.float32)] * 2,
                                     [np.array([1], np.int32)] * 2)
    for _ in range(3):
        task._scored(model, split)
    assert task._detector(model).experimental_get_tracing_count() == 1
    other = build_faster_rcnn(1, 64, depth=18, width_multiplier=0.125, test_proposals=8,
                              sampled_rois=8, head_units=(8, 8), max_detections=5)
    assert task._detector(other) is not task._detector(model)
