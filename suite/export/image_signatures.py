"""The three image-input serving signatures every image model exports, written once:

  serving_default    image        float32 [batch, H, W, C], raw pixels 0..255 (not 0..1)
  serve_uint8        image        uint8   [batch, H, W, C]
  serve_image_bytes  image_bytes  string  [batch], encoded PNG or JPEG, decoded inside the graph

A task gives what differs: `outputs(float32 pixels) -> dict of tensors`, the image shape (H
and W None for any size) and how a batch of encoded images becomes pixels. Every input is
checked at run time and fails with InvalidArgumentError naming the expected shape: a session
(saved_model_cli, TF Serving) does not check fed shapes itself, and a wrong-rank tensor reaching
a oneDNN convolution aborts the whole process instead of failing.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from suite.export.signature import Signature


def checked_image(image: tf.Tensor, shape, dtype: str) -> tf.Tensor:
    """`image` after a run-time check of its rank and of the known sizes in `shape`
    (height, width, channels; None: any)."""
    actual = tf.shape(image, out_type=tf.int32)
    # Pad so that a rank-3 input compares as unequal instead of failing to broadcast.
    padded = tf.concat([actual, tf.zeros([4], tf.int32)], axis=0)
    ok = tf.equal(tf.size(actual), 4)
    for axis, size in enumerate(shape, start=1):
        if size is not None:
            ok = tf.logical_and(ok, tf.equal(padded[axis], size))
    height, width, channels = (("height" if shape[0] is None else shape[0]),
                               ("width" if shape[1] is None else shape[1]), shape[2])
    any_size = ", any height and width" if shape[0] is None else ""
    check = tf.debugging.Assert(ok, [
        f"Input 'image' must be {dtype} of shape [batch, {height}, {width}, {channels}] (raw "
        f"pixels 0..255{any_size}); got shape", actual], summarize=8)
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


def image_signatures(outputs: Callable, shape, decode_batch: Callable) -> dict[str, Signature]:
    """The three signatures around `outputs`; `shape` is (H, W, C) with None for any size,
    `decode_batch(image_bytes) -> float32 pixels [batch, H, W, C]`."""

    # Argument names become the signature input names ("image", "image_bytes").
    def serve_float(image):
        return outputs(checked_image(image, shape, "float32"))

    def serve_uint8(image):
        return outputs(tf.cast(checked_image(image, shape, "uint8"), tf.float32))

    def serve_image_bytes(image_bytes):
        return outputs(decode_batch(image_bytes))

    image_shape = [None, *shape]
    return {
        "serving_default": Signature(serve_float,
                                     [tf.TensorSpec(image_shape, tf.float32, name="image")]),
        "serve_uint8": Signature(serve_uint8, [tf.TensorSpec(image_shape, tf.uint8, name="image")]),
        "serve_image_bytes": Signature(serve_image_bytes,
                                       [tf.TensorSpec([None], tf.string, name="image_bytes")]),
    }
