"""Serving signatures of the segmentation networks (FCN, U-Net): the three image signatures
of suite.export.image_signatures for images of any size (`serve_image_bytes`: PNG or JPEG
images of one size per request), returning `class_map` int64 [batch, H, W] and
`probabilities` float32 [batch, H, W, classes]. Inputs are checked at run time (rank,
channels, one size per batch, LIMITS) and fail with InvalidArgumentError naming what was
expected.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from suite.errors import ExportError
from suite.export.image_signatures import image_signatures
from suite.export.signature import ImageLimits, Signature

# The network runs at the images' own size, its memory growing with every pixel of the request
# (U-Net's first layers hold 64 float32 channels per pixel: 256 MB per layer at 1024 x 1024),
# so the limit is on the request's pixels too, and 16x smaller than an image classifier's.
LIMITS = ImageLimits(max_pixels=1024 * 1024, max_request_pixels=1024 * 1024)


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

    return image_signatures(outputs, (None, None, channels),
                            lambda image: tf.cast(image, tf.float32), LIMITS, one_size=True)
