"""Serving signatures of the segmentation networks (FCN, U-Net): the three image signatures
of suite.export.image_signatures for images of any size (`serve_image_bytes`: PNG or JPEG
images of one size per request), returning `class_map` int64 [batch, H, W] and
`probabilities` float32 [batch, H, W, classes]. Inputs are checked at run time (rank,
channels, one size per batch) and fail with InvalidArgumentError naming what was expected.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from suite.errors import ExportError
from suite.export.image_signatures import decode_image_bytes, image_signatures
from suite.export.signature import Signature


def segmentation_metadata(model: keras.Model, class_names) -> dict:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError(f"{model.name}: a segmentation export needs one image input and one "
                          "probability-map output.")
    channels = model.inputs[0].shape[-1]
    num_classes = model.outputs[0].shape[-1]
    if len(model.outputs[0].shape) != 4 or channels is None or num_classes is None:
        raise ExportError(f"{model.name}: expected (batch, H, W, C) -> (batch, H, W, classes), got "
                          f"{model.inputs[0].shape} -> {model.outputs[0].shape}.")
    if class_names is not None and len(class_names) != num_classes:
        raise ExportError(f"{len(class_names)} class names for a model with {num_classes} "
                          "classes.")
    return {"model": model.name, "channels": int(channels), "num_classes": int(num_classes),
            "class_names": list(class_names) if class_names is not None else None}


def segmentation_signatures(model: keras.Model) -> dict[str, Signature]:
    channels = int(model.inputs[0].shape[-1])

    def outputs(pixels):
        probabilities = tf.cast(model(pixels, training=False), tf.float32)
        return {"probabilities": probabilities,
                "class_map": tf.argmax(probabilities, axis=-1, output_type=tf.int64)}

    def decode_batch(image_bytes):
        sizes = tf.map_fn(lambda b: tf.shape(decode_image_bytes(b, channels))[:2], image_bytes,
                          fn_output_signature=tf.TensorSpec([2], tf.int32))
        same = tf.reduce_all(tf.equal(sizes, sizes[:1]))
        check = tf.debugging.Assert(same, [
            "Input 'image_bytes': every image of one request must have the same size; send "
            "images of other sizes in separate requests. Sizes (height, width):", sizes],
            summarize=16)
        with tf.control_dependencies([check]):
            return tf.map_fn(lambda b: tf.cast(decode_image_bytes(b, channels), tf.float32),
                             image_bytes,
                             fn_output_signature=tf.TensorSpec([None, None, channels],
                                                               tf.float32))

    return image_signatures(outputs, (None, None, channels), decode_batch)
