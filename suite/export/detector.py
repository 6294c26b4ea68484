"""Serving signatures of the Faster R-CNN detector: encoded images in, decoded detections out.

    serving_default   image_bytes string [batch] (PNG or JPEG, any sizes in one request)
    detect            the same plus score_threshold float32 [] and max_detections int32 []

Both return, per image, the model's `max_detections` slots (best first; the export's score
threshold and cap, or the request's, blank the rest):
    boxes           float32 [batch, K, 4]  xmin, ymin, xmax, ymax in the original image's pixels
    scores          float32 [batch, K]     0 for blank slots
    classes         int32   [batch, K]     1..N, -1 for blank slots
    class_names     string  [batch, K]     "" for blank slots
    num_detections  int32   [batch]
Each image goes through suite.models.faster_rcnn.detect, the path evaluation measured.
"""
from __future__ import annotations

import tensorflow as tf

from suite.errors import ExportError
from suite.export.image_signatures import decode_image_bytes
from suite.export.signature import Signature


def detection_signatures(model, metadata: dict) -> dict[str, Signature]:
    from suite.models.faster_rcnn import FasterRCNNDetector, detect

    if not isinstance(model, FasterRCNNDetector):
        raise ExportError(f"{model.name}: a detection export needs a FasterRCNNDetector.")
    names = list(metadata.get("class_names") or [])
    if len(names) != model.num_classes:
        raise ExportError(f"{len(names)} class names for a detector of {model.num_classes} "
                          "classes.")
    table = tf.constant([""] + names)
    slots = int(model.settings["max_detections"])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                  tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32)])
    def run(image_bytes, score_threshold, max_detections):  # traced once for both signatures
        def one(encoded):
            image = decode_image_bytes(encoded, 3)
            found = detect(model, image, score_threshold, max_detections)
            return found["boxes"], found["scores"], found["classes"]

        boxes, scores, classes = tf.map_fn(one, image_bytes, fn_output_signature=(
            tf.TensorSpec([slots, 4], tf.float32), tf.TensorSpec([slots], tf.float32),
            tf.TensorSpec([slots], tf.int32)))
        return {"boxes": boxes, "scores": scores, "classes": classes,
                "class_names": tf.gather(table, tf.maximum(classes, 0)),
                "num_detections": tf.reduce_sum(tf.cast(classes > 0, tf.int32), axis=1)}

    threshold = float(metadata.get("score_threshold", 0.5))
    cap = int(metadata.get("max_detections", slots))

    def serve(image_bytes):
        return run(image_bytes, tf.constant(threshold), tf.constant(cap))

    def detect_with(image_bytes, score_threshold, max_detections):
        return run(image_bytes, score_threshold, max_detections)

    image_bytes = tf.TensorSpec([None], tf.string, name="image_bytes")
    return {
        "serving_default": Signature(serve, [image_bytes]),
        "detect": Signature(detect_with, [
            image_bytes, tf.TensorSpec([], tf.float32, name="score_threshold"),
            tf.TensorSpec([], tf.int32, name="max_detections")]),
    }
