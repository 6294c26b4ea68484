"""Serving signatures of the image classifiers (MNIST's DeepConvNet, VGG, GoogLeNet, ResNet).

The three image signatures of suite.export.image_signatures, each returning `probabilities`
float32 [batch, K] and `class_ids` int64 [batch]. `serve_image_bytes` takes PNG or JPEG images
of any size up to the export's ImageLimits: decoded, converted to C channels and centre-cropped
to HxW inside the graph, exactly as evaluation prepares a test image
(suite.data.augment.prepare_for_eval).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from suite.errors import ExportError
from suite.export.image_signatures import image_signatures
from suite.export.saved_model import write_saved_model
from suite.export.signature import Signature

SIGNATURES = ("serving_default", "serve_uint8", "serve_image_bytes")


def _image_shape(model: keras.Model) -> tuple[int, int, int]:
    if len(model.inputs) != 1:
        raise ExportError(f"export_classifier needs a model with one image input; {model.name} "
                          f"has {len(model.inputs)} inputs.")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ExportError(f"The model input must be (batch, H, W, C) with H, W, C known; "
                          f"{model.name} has input shape {shape}. Build it with "
                          "keras.Input(shape=(H, W, C)).")
    return shape[1], shape[2], shape[3]


def _num_classes(model: keras.Model) -> int:
    shape = tuple(model.outputs[0].shape) if len(model.outputs) == 1 else ()
    if len(shape) != 2 or shape[1] is None:
        raise ExportError(f"The model must have one output of shape (batch, classes); {model.name} "
                          f"has outputs {[tuple(o.shape) for o in model.outputs]}.")
    return shape[1]


def classifier_metadata(model: keras.Model, class_names: list[str] | None) -> dict:
    """What the export records besides its signatures; `class_names` checked against the model."""
    height, width, channels = _image_shape(model)
    num_classes = _num_classes(model)
    if class_names is not None and len(class_names) != num_classes:
        raise ExportError(f"{len(class_names)} class names given for a model with "
                          f"{num_classes} classes.")
    return {"model": model.name, "image_shape": [height, width, channels],
            "num_classes": num_classes,
            "class_names": list(class_names) if class_names is not None else None}


def classifier_signatures(model: keras.Model, crop_fraction: float = 1.0) -> dict[str, Signature]:
    """The three serving signatures around `model` (inference mode); serve_image_bytes crops an
    image of another size as evaluation did (`crop_fraction`, 0.875 after scale_crop training)."""
    height, width, channels = _image_shape(model)
    _num_classes(model)

    def outputs(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.cast(model(pixels, training=False), tf.float32)
        return {"probabilities": probabilities,
                "class_ids": tf.argmax(probabilities, axis=-1, output_type=tf.int64)}

    def prepare(image):  # what evaluation does to a test image: the same centre crop
        from suite.data.augment import prepare_for_eval

        return prepare_for_eval(image, (height, width), crop_fraction)

    return image_signatures(outputs, (height, width, channels), prepare)


def export_classifier(model: keras.Model, export_base: str, name: str, version: int | None = None,
                      *, class_names: list[str] | None = None) -> str:
    """Writes `<export_base>/<name>/<version>/` with the three signatures; returns that folder."""
    metadata = classifier_metadata(model, class_names)
    return write_saved_model(export_base, name, classifier_signatures(model), metadata, version)
