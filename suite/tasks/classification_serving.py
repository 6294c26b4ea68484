"""Serving signatures of the image classifiers (MNIST's DeepConvNet, VGG, GoogLeNet, ResNet).

Each returns `probabilities` float32 [batch, K] and `class_ids` int64 [batch]:
  serving_default    image        float32 [batch, H, W, C], raw pixels 0..255 (not 0..1)
  serve_uint8        image        uint8   [batch, H, W, C]
  serve_image_bytes  image_bytes  string  [batch], encoded PNG or JPEG of any size; decoded,
                                  converted to C channels and resized to HxW inside the graph.

Every signature checks its input at run time and fails with InvalidArgumentError naming the
expected shape: a session (saved_model_cli, TF Serving) does not check fed shapes itself, and a
wrong-rank tensor reaching a oneDNN convolution aborts the whole process instead of failing.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from suite.export.saved_model import ExportError, write_saved_model
from suite.runtime.task import Signature

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


def _checked_image(image: tf.Tensor, height: int, width: int, channels: int,
                   dtype: str) -> tf.Tensor:
    """`image` after a run-time check of its shape (see the module docstring for why)."""
    shape = tf.shape(image, out_type=tf.int32)
    # Pad so that a rank-3 input compares as unequal instead of failing to broadcast.
    padded = tf.concat([shape, tf.zeros([4], tf.int32)], axis=0)
    ok = tf.logical_and(tf.equal(tf.size(shape), 4),
                        tf.reduce_all(tf.equal(padded[1:4], [height, width, channels])))
    check = tf.debugging.Assert(ok, [
        f"Input 'image' must be {dtype} of shape [batch, {height}, {width}, {channels}] "
        "(raw pixels 0..255); got shape", shape], summarize=8)
    with tf.control_dependencies([check]):
        return tf.identity(image)


def decode_image_bytes(encoded: tf.Tensor, channels: int) -> tf.Tensor:
    """PNG/JPEG bytes -> uint8 [H, W, channels]; anything else fails naming the input."""
    header = tf.strings.substr(encoded, 0, 8)
    is_png = tf.equal(header, b"\x89PNG\r\n\x1a\n")
    is_jpeg = tf.equal(tf.strings.substr(encoded, 0, 3), b"\xff\xd8\xff")
    check = tf.debugging.Assert(tf.logical_or(is_png, is_jpeg), [
        "Input 'image_bytes' must hold PNG or JPEG encoded images; got bytes starting with",
        header])
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8,
                                   expand_animations=False)
    image.set_shape([None, None, channels])
    return image


def _decode_one(encoded: tf.Tensor, height: int, width: int, channels: int) -> tf.Tensor:
    """PNG/JPEG bytes -> float32 [H, W, C] pixels 0..255, resized only if the size differs."""
    image = decode_image_bytes(encoded, channels)
    same_size = tf.reduce_all(tf.equal(tf.shape(image)[:2], [height, width]))
    image = tf.cond(
        same_size,
        lambda: tf.cast(image, tf.float32),
        # Area (box) averaging: the usual shrink of a large drawing or photo, exact for integer
        # factors and always within 0..255.
        lambda: tf.image.resize(tf.cast(image, tf.float32), [height, width], method="area"))
    return tf.ensure_shape(image, [height, width, channels])


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


def classifier_signatures(model: keras.Model) -> dict[str, Signature]:
    """The three serving signatures around `model` (inference mode)."""
    height, width, channels = _image_shape(model)
    _num_classes(model)

    def outputs(pixels: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.cast(model(pixels, training=False), tf.float32)
        return {"probabilities": probabilities,
                "class_ids": tf.argmax(probabilities, axis=-1, output_type=tf.int64)}

    # Argument names become the signature input names ("image", "image_bytes").
    def serve_float(image):
        return outputs(_checked_image(image, height, width, channels, "float32"))

    def serve_uint8(image):
        image = _checked_image(image, height, width, channels, "uint8")
        return outputs(tf.cast(image, tf.float32))

    def serve_image_bytes(image_bytes):
        pixels = tf.map_fn(lambda b: _decode_one(b, height, width, channels), image_bytes,
                           fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32))
        return outputs(pixels)

    image_shape = [None, height, width, channels]
    return {
        "serving_default": Signature(serve_float,
                                     [tf.TensorSpec(image_shape, tf.float32, name="image")]),
        "serve_uint8": Signature(serve_uint8, [tf.TensorSpec(image_shape, tf.uint8, name="image")]),
        "serve_image_bytes": Signature(serve_image_bytes,
                                       [tf.TensorSpec([None], tf.string, name="image_bytes")]),
    }


def export_classifier(model: keras.Model, export_base: str, name: str, version: int | None = None,
                      *, class_names: list[str] | None = None) -> str:
    """Writes `<export_base>/<name>/<version>/` with the three signatures; returns that folder."""
    metadata = classifier_metadata(model, class_names)
    return write_saved_model(export_base, name, classifier_signatures(model), metadata, version)
