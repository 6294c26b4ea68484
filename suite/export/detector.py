"""Serving signatures of the Faster R-CNN detector: encoded images in, decoded detections out.

    serving_default   image_bytes string [batch] (PNG or JPEG, any sizes in one request, each
                      within the ImageLimits of suite.export.signature)
    detect            the same plus score_threshold float32 [] in [0, 1] and max_detections
                      int32 [] in [1, the model's max_detections]

Both return, per image, the model's `max_detections` slots (best first; the export's score
threshold and cap, or the request's, blank the rest):
    boxes           float32 [batch, K, 4]  xmin, ymin, xmax, ymax in the original image's pixels
    scores          float32 [batch, K]     0 for blank slots
    classes         int32   [batch, K]     1..N, -1 for blank slots
    class_names     string  [batch, K]     "" for blank slots
    num_detections  int32   [batch]
Each image goes through suite.models.faster_rcnn.detect's two halves, the path evaluation
measured: letterboxed as it is decoded (so only the letterboxed copy is kept), then detected.
"""
from __future__ import annotations

import tensorflow as tf

from suite.errors import ExportError
from suite.export.image_signatures import decode_images, image_bytes_input
from suite.export.signature import ImageLimits, Input, Signature


def detection_signatures(model, metadata: dict) -> dict[str, Signature]:
    from suite.data.detection_pipeline import letterbox
    from suite.models.faster_rcnn import FasterRCNNDetector, detect_letterboxed

    if not isinstance(model, FasterRCNNDetector):
        raise ExportError(f"{model.name}: a detection export needs a FasterRCNNDetector.")
    names = list(metadata.get("class_names") or [])
    if len(names) != model.num_classes:
        raise ExportError(f"{len(names)} class names for a detector of {model.num_classes} "
                          "classes.")
    table = tf.constant([""] + names)
    slots = int(model.settings["max_detections"])
    side, limits = model.image_size, ImageLimits()

    def prepare(image):
        boxed, scale = letterbox(image, side)
        return tf.ensure_shape(boxed, [side, side, 3]), scale

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                  tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32)])
    def run(image_bytes, score_threshold, max_detections):  # traced once for both signatures
        (images, scales), sizes = decode_images(
            image_bytes, limits, 3, prepare, (tf.zeros([0, side, side, 3]), tf.zeros([0])))

        def one(item):  # one image at a time, as evaluation detects: never an empty batch
            found = detect_letterboxed(model, *item, score_threshold, max_detections)
            return found["boxes"], found["scores"], found["classes"]

        boxes, scores, classes = tf.map_fn(one, (images, scales, sizes), fn_output_signature=(
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

    image_bytes = image_bytes_input(limits)
    return {
        "serving_default": Signature(serve, [image_bytes]),
        "detect": Signature(detect_with, [
            image_bytes,
            Input("score_threshold", "float32", (), bounds=(0.0, 1.0),
                  about="the lowest score kept", example=threshold),
            # No silent cap: more than the model's slots is refused, not quietly cut to them.
            Input("max_detections", "int32", (), bounds=(1, slots),
                  about="detections kept per image, best first", example=cap)]),
    }
