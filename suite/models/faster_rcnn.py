"""Faster R-CNN (Ren, He, Girshick & Sun, 2015) on keras-cv, the suite's own ResNet its backbone.

keras-cv's `FasterRCNN` (keras-cv-nightly 0.10.0.dev2024100303, the Keras 3 port) supplies the
region proposal network, anchors, RoI sampling and align, the box coder, the losses and NMS. The
suite adds what it lacks:

- `ResNetPyramid`: the suite's ImageNet ResNet (suite.models.resnet, keras.applications layer
  names) cut after conv5, its four stage outputs keras-cv's pyramid levels P2..P5 (strides 4
  to 32, the FPN variant of the paper). So a classification run's ResNet loads into it by layer
  name (`--init_from`), and keras.applications' ResNet-50 weights would too.
- `FasterRCNNDetector`: FasterRCNN whose proposal counts, RoI head and NMS are settings that
  survive a save (keras-cv's own get_config keeps only the class count and the backbone), and
  whose heads stay float32 under a mixed precision policy (keras-cv's NMS fails on float16).
- `detect`: one image of any size -> boxes in its own pixels, scores and classes, through the
  letterbox the training data used (suite.data.detection_pipeline.letterbox): the one
  inference path of evaluation and the SavedModel.

Defaults are the paper's: 256 anchors sampled per image for the RPN, 2,000 proposals kept for
training and 300 for testing after NMS at IoU 0.7, and the FPN paper's two 1024-unit fully
connected layers on 7x7 RoI features. RoIs sampled per image for the head: 256, between Fast
R-CNN's 128 and the FPN paper's 512; keras-cv samples its validation losses from the test-time
proposals, so this must not exceed them (checked).
"""
from __future__ import annotations

import contextlib
import functools
from unittest import mock

import keras
import keras_cv
import tensorflow as tf
from keras_cv.src.models.object_detection.faster_rcnn import faster_rcnn as keras_cv_faster_rcnn

from suite.data.detection_pipeline import letterbox
from suite.models.resnet import IMAGENET_STAGES, build_resnet

BOX_FORMAT = "xyxy"
LEVELS = ("P2", "P3", "P4", "P5")


@keras.saving.register_keras_serializable(package="suite")
class ResNetPyramid(keras_cv.models.Backbone):
    """The suite's ImageNet ResNet-`depth` up to conv5, with pyramid levels P2..P5."""

    def __init__(self, depth: int = 50, width_multiplier: float = 1.0,
                 input_shape=(512, 512, 3), sync_batch_norm: bool = False, **kwargs):
        kwargs.pop("trainable", None)
        net = build_resnet(depth, input_shape=tuple(input_shape), num_classes=1,
                           width_multiplier=width_multiplier, sync_batch_norm=sync_batch_norm)
        blocks = IMAGENET_STAGES[depth][1]
        levels = {level: f"conv{stage}_block{count}_out"
                  for level, stage, count in zip(LEVELS, range(2, 6), blocks)}
        kwargs.setdefault("name", f"resnet{depth}_pyramid")
        super().__init__(inputs=net.inputs, outputs=net.get_layer(levels["P5"]).output, **kwargs)
        self.pyramid_level_inputs = levels
        self.depth, self.width_multiplier = depth, width_multiplier
        self.image_shape = tuple(int(s) for s in input_shape)
        self.sync_batch_norm = sync_batch_norm

    def get_config(self):
        return {**super().get_config(), "depth": self.depth,
                "width_multiplier": self.width_multiplier, "input_shape": list(self.image_shape),
                "sync_batch_norm": self.sync_batch_norm}


@contextlib.contextmanager
def float32_policy():
    """Layers built inside are float32 whatever the global (mixed) policy is."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@keras.saving.register_keras_serializable(package="suite")
class FasterRCNNDetector(keras_cv.models.FasterRCNN):
    """keras-cv's FasterRCNN with every setting kept in its config (see the module docstring)."""

    def __init__(self, backbone, num_classes: int, anchor_samples: int = 256,
                 train_proposals: int = 2000, test_proposals: int = 300,
                 sampled_rois: int = 256, head_units=(1024, 1024), nms_iou: float = 0.5,
                 min_score: float = 0.05, max_detections: int = 100, **kwargs):
        for key in ("bounding_box_format", "label_encoder", "rpn_head", "rcnn_head",
                    "prediction_decoder"):  # keras-cv's own config keys, rebuilt below
            kwargs.pop(key, None)
        if sampled_rois > test_proposals:
            raise ValueError(f"sampled_rois={sampled_rois} exceeds test_proposals="
                             f"{test_proposals}: keras-cv samples the validation losses' RoIs "
                             "from the test-time proposals; lower the one or raise the other")
        if isinstance(backbone, dict):
            backbone = keras.saving.deserialize_keras_object(backbone)
        # keras-cv builds its RoI generator with fixed proposal counts and offers no argument:
        # give it ours while it builds (this exact keras-cv version is pinned).
        proposals = functools.partial(
            keras_cv_faster_rcnn.ROIGenerator, pre_nms_topk_train=max(2000, train_proposals),
            post_nms_topk_train=train_proposals, pre_nms_topk_test=max(1000, test_proposals),
            post_nms_topk_test=test_proposals)
        with float32_policy(), mock.patch.object(keras_cv_faster_rcnn, "ROIGenerator", proposals):
            super().__init__(
                backbone=backbone, num_classes=num_classes, bounding_box_format=BOX_FORMAT,
                rpn_label_encoder_samples_per_image=anchor_samples, num_sampled_rois=sampled_rois,
                rcnn_head=keras_cv_faster_rcnn.RCNNHead(num_classes, fc_dims=list(head_units),
                                                        name="rcnn_head"),
                prediction_decoder=keras_cv.layers.NonMaxSuppression(
                    bounding_box_format=BOX_FORMAT, from_logits=False, iou_threshold=nms_iou,
                    confidence_threshold=min_score, max_detections=max_detections),
                **kwargs)
        self.settings = dict(anchor_samples=anchor_samples, train_proposals=train_proposals,
                             test_proposals=test_proposals, sampled_rois=sampled_rois,
                             head_units=list(head_units), nms_iou=nms_iou, min_score=min_score,
                             max_detections=max_detections)

    @property
    def image_size(self) -> int:
        return int(self.backbone.input_shape[1])

    def call(self, inputs, training=None, mask=None):
        """keras-cv builds the graph on {"images": ...} but is fed image batches: name them, or
        Keras warns that the structure of `inputs` does not match at every trace."""
        if not isinstance(inputs, dict):
            inputs = {"images": inputs}
        return super().call(inputs, training=training, mask=mask)

    @property
    def metrics(self):
        """The losses (and any compiled metrics), without the counters of keras-cv's RPN label
        encoder and RoI sampler: logged as `mean` and `percent_boxes_matched`, they name
        nothing a user can act on, and the latter is never updated (always 0)."""
        internal = {id(m) for layer in (self.label_encoder, self.roi_sampler)
                    for m in layer.metrics}
        return [m for m in super().metrics if id(m) not in internal]

    def get_config(self):
        return {"name": self.name, "num_classes": self.num_classes,
                "backbone": keras.saving.serialize_keras_object(self.backbone), **self.settings}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_faster_rcnn(num_classes: int, image_size: int, depth: int = 50,
                      width_multiplier: float = 1.0, sync_batch_norm: bool = False,
                      **settings) -> FasterRCNNDetector:
    """Faster R-CNN with a ResNet-`depth` pyramid backbone for `image_size` square inputs
    (uncompiled; compile with `compile_faster_rcnn`). `sync_batch_norm`: the backbone's batch
    statistics over all replicas, for a backbone whose batch norm trains on several."""
    if image_size % 32:
        raise ValueError(f"`image_size={image_size}`: must be a multiple of 32 (the backbone's "
                         "coarsest stride), e.g. 256, 384 or 512")
    backbone = ResNetPyramid(depth, width_multiplier, (image_size, image_size, 3),
                             sync_batch_norm)
    return FasterRCNNDetector(backbone, num_classes, name=f"faster_rcnn_resnet{depth}",
                              **settings)


def compile_faster_rcnn(model: FasterRCNNDetector, optimizer, weight_decay: float = 0.0):
    """The paper's four losses: smooth L1 (Huber) on boxes, binary cross-entropy for the RPN's
    objectness, softmax cross-entropy over the classes plus background."""
    model.compile(optimizer=optimizer, rpn_box_loss="Huber",
                  rpn_classification_loss="BinaryCrossentropy", box_loss="Huber",
                  classification_loss="CategoricalCrossentropy", weight_decay=weight_decay)


class _Unsuppressed:
    """keras-cv's FasterRCNN seen with its NMS layer replaced by a pass-through, so that its own
    decode_predictions yields every decoded box with its class scores (background left out)."""

    bounding_box_format = BOX_FORMAT

    def __init__(self, model):
        self.model = model
        self.prediction_decoder = self

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, boxes, scores, image_shape=None):
        return {"boxes": boxes, "scores": scores, "classes": tf.zeros_like(scores[..., 0])}


def decode_candidates(model: FasterRCNNDetector, predictions, images) -> dict:
    """The model's raw outputs on letterboxed `images` -> {"boxes": [B, R, 4] xyxy letterbox
    pixels, "scores": [B, R, N] class probabilities}: keras-cv's decoding before its NMS."""
    found = keras_cv.models.FasterRCNN.decode_predictions(_Unsuppressed(model), predictions,
                                                          images)
    return {"boxes": found["boxes"], "scores": found["scores"]}


def detect(model: FasterRCNNDetector, image, score_threshold=0.0, max_detections=None):
    """One image [H, W, 3] (uint8 or float pixels 0..255) -> {"boxes": float32 [K, 4] xyxy in
    the image's own pixels, "scores": [K], "classes": int32 [K] 1..N}, K = the model's
    max_detections; slots past the detections (or under `score_threshold`) hold class -1,
    score 0 and box 0.

    The model's NMS runs on the boxes as returned: mapped back to the image and clipped to it.
    keras-cv suppresses before either, on boxes that may reach into the letterbox's padding or
    past the square; clipping them afterwards can raise two kept boxes' IoU over the threshold.
    A box wholly in the padding, empty once clipped, is no detection."""
    boxed, scale = letterbox(image, model.image_size)
    return detect_letterboxed(model, boxed, scale, tf.shape(image)[:2], score_threshold,
                              max_detections)


def detect_letterboxed(model: FasterRCNNDetector, boxed, scale, size, score_threshold=0.0,
                       max_detections=None):
    """`detect` of an image already letterboxed (`boxed`, `scale`) from one of `size` (height,
    width): a server letterboxes each image as it decodes it, and keeps only that."""
    batch = boxed[None]
    found = decode_candidates(model, model(batch, training=False), batch)
    height, width = tf.cast(size[0], tf.float32), tf.cast(size[1], tf.float32)
    boxes = tf.clip_by_value(tf.cast(found["boxes"], tf.float32) / scale, 0.0,
                             tf.stack([width, height, width, height]))
    seen = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])  # not all padding
    scores = tf.cast(found["scores"], tf.float32) * tf.cast(seen, tf.float32)[..., None]
    decoded = model.prediction_decoder(boxes, scores)
    boxes = tf.cast(decoded["boxes"][0], tf.float32)
    scores = tf.cast(decoded["confidence"][0], tf.float32)
    classes = tf.cast(decoded["classes"][0], tf.int32) + 1  # keras-cv's NMS counts from 0
    valid = (classes > 0) & (scores >= score_threshold)
    if max_detections is not None:
        valid &= tf.range(tf.shape(scores)[0]) < tf.cast(max_detections, tf.int32)
    return {"boxes": tf.where(valid[:, None], boxes, 0.0),
            "scores": tf.where(valid, scores, 0.0),
            "classes": tf.where(valid, classes, -1)}
