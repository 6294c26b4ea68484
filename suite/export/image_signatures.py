"""Encoded images in a request, and the three image-input signatures every image model exports:

  serving_default    image        float32 [batch, H, W, C], raw pixels 0..255 (not 0..1)
  serve_uint8        image        uint8   [batch, H, W, C]
  serve_image_bytes  image_bytes  string  [batch], encoded PNG or JPEG, decoded inside the graph

`decode_images` is how every signature decodes `image_bytes`: each image's size is read from
its header alone (PNG's IHDR chunk; JPEG's frame header, tf.io.extract_jpeg_shape) and checked
against the export's ImageLimits before anything is decoded, because a 316 KB PNG can hold
10000 x 10000 pixels. Images are read and decoded in a tf.data pipeline that drops the ones
that fail (`ignore_errors`), so a request with one unreadable image is refused naming its
index instead of with the decoder's message alone.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from suite.export.guards import answer_nonempty, pixel_limit_checks, refuse_unless
from suite.export.signature import ImageLimits, Input, Signature

PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"
NAME = "image_bytes"


def image_bytes_input(limits: ImageLimits) -> Input:
    return Input(NAME, "string", (None,), limits=limits, about="PNG or JPEG images")


def decode_image_bytes(encoded: tf.Tensor, channels: int) -> tf.Tensor:
    """PNG/JPEG bytes -> uint8 [H, W, channels]. libjpeg converts a CMYK JPEG (as print
    software saves them) to RGB but not to grey, so for one channel such an image is decoded
    as RGB and made grey with PIL's weights (training reads image files with PIL)."""

    def plain():
        return tf.io.decode_image(encoded, channels=channels, dtype=tf.uint8,
                                  expand_animations=False)

    if channels == 1:
        is_cmyk = tf.cond(tf.equal(tf.strings.substr(encoded, 0, 3), JPEG),
                          lambda: tf.equal(tf.io.extract_jpeg_shape(encoded)[2], 4),
                          lambda: tf.constant(False))
        image = tf.cond(is_cmyk, lambda: _grey(tf.io.decode_jpeg(encoded, channels=3)), plain)
    else:
        image = plain()
    image.set_shape([None, None, channels])
    return image


def _grey(rgb: tf.Tensor) -> tf.Tensor:
    luma = tf.tensordot(tf.cast(rgb, tf.float32), [0.299, 0.587, 0.114], axes=1)  # ITU-R 601
    return tf.cast(tf.round(luma), tf.uint8)[..., None]


def _header_size(encoded: tf.Tensor) -> tf.Tensor:
    """int64 [height, width] read from the header alone; an error when there is none."""

    def png():
        ihdr = tf.debugging.Assert(tf.equal(tf.strings.substr(encoded, 12, 4), b"IHDR"),
                                   ["no IHDR chunk"])
        with tf.control_dependencies([ihdr]):
            raw = tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.uint8)
        raw = tf.cast(tf.ensure_shape(raw, [8]), tf.int64)
        big_endian = tf.constant([2**24, 2**16, 2**8, 1], tf.int64)
        width, height = tf.reduce_sum(raw[:4] * big_endian), tf.reduce_sum(raw[4:] * big_endian)
        return tf.stack([height, width])

    def jpeg():
        return tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)

    return tf.cond(tf.equal(tf.strings.substr(encoded, 0, 8), PNG), png, jpeg)


def _each(fn: Callable, items: list, empty):
    """(indices, results) of `fn` over the elements of `items` (tensors [n, ...]) for which it
    ran without an error, in order; `empty` (the results' structure, 0 rows) when none did."""
    count = tf.shape(items[0], out_type=tf.int64)[0]
    data = tf.data.Dataset.from_tensor_slices((tf.range(count), *items))
    data = data.map(lambda i, *item: (i, fn(*item))).ignore_errors()
    none = tf.data.Dataset.from_tensors((tf.zeros([0], tf.int64), empty))
    # get_single_element, not reduce: reduce instantiates its function on every request (~12 ms).
    return data.batch(tf.maximum(count, 1)).concatenate(none).take(1).get_single_element()


def _missing(indices: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
    """The indices in 0..count-1 that are not in `indices`."""
    seen = tf.scatter_nd(indices[:, None], tf.ones_like(indices), tf.reshape(count, [1]))
    return tf.where(tf.equal(seen, 0))[:, 0]


def _first(bad: tf.Tensor) -> tf.Tensor:
    """The index of the first True in `bad`, len(bad) when none."""
    return tf.argmax(tf.concat([tf.cast(bad, tf.int32), [1]], axis=0))


def decode_images(image_bytes: tf.Tensor, limits: ImageLimits, channels: int,
                  prepare: Callable, empty, one_size: bool = False):
    """(prepare(image) for every image, int64 [batch, 2] heights and widths): uint8
    [H, W, channels] images made by `prepare` into tensors of one shape (`empty`: the same
    structure with 0 rows). `one_size`: every image of the request must have the same size.
    Every check runs before anything is decoded, and each names the image by its index."""
    count = tf.shape(image_bytes, out_type=tf.int64)[0]
    lengths = tf.concat([tf.strings.length(image_bytes), [0]], axis=0)  # [count]: none over
    big = _first(lengths[:-1] > limits.max_bytes)
    checks = [refuse_unless(
        big >= count, f"Input {NAME}: image {{}} is {{}} bytes, over the limit of "
                      f"{limits.max_bytes} bytes per encoded image", big, lengths[big])]
    known = tf.logical_or(tf.equal(tf.strings.substr(image_bytes, 0, 8), PNG),
                          tf.equal(tf.strings.substr(image_bytes, 0, 3), JPEG))
    other = _first(tf.logical_not(known))
    checks.append(refuse_unless(
        other >= count, f"Input {NAME} must hold PNG or JPEG encoded images; image {{}} is "
                        "neither (its first bytes are no PNG or JPEG signature)", other))
    with tf.control_dependencies(checks):
        indices, sizes = _each(_header_size, [image_bytes], tf.zeros([0, 2], tf.int64))
    unread = _missing(indices, count)
    checks = [refuse_unless(tf.equal(tf.size(unread), 0),
                            f"Input {NAME}: no readable PNG or JPEG header in image(s) {{}}",
                            unread)]
    with tf.control_dependencies(checks):
        sizes = tf.identity(sizes)  # every image's, in order, once all were read
    checks = pixel_limit_checks(sizes[:, 0], sizes[:, 1], NAME, limits)
    if one_size:
        same = tf.reduce_all(tf.equal(sizes, sizes[:1]))
        checks.append(refuse_unless(
            same, f"Input {NAME}: every image of one request must have the same size; send "
                  "images of other sizes in separate requests. Sizes (height, width): {}",
            sizes))
    with tf.control_dependencies(checks):
        indices, images = _each(lambda b: prepare(decode_image_bytes(b, channels)),
                                [image_bytes], empty)
    broken = _missing(indices, count)
    ok = refuse_unless(tf.equal(tf.size(broken), 0),
                       f"Input {NAME}: image(s) {{}} could not be decoded (corrupt or truncated "
                       "PNG or JPEG data)", broken)
    with tf.control_dependencies([ok]):
        return tf.nest.map_structure(tf.identity, images), tf.identity(sizes)


def image_signatures(outputs: Callable, shape, prepare: Callable,
                     limits: ImageLimits = ImageLimits(), one_size: bool = False
                     ) -> dict[str, Signature]:
    """The three signatures around `outputs(float32 pixels [batch, H, W, C]) -> dict`; `shape`
    is (H, W, C) with None for any size (then `limits` bound the image tensors too, and
    `one_size` asks every encoded image of a request to have one size), `prepare(uint8 image
    [h, w, C]) -> float32 pixels [H, W, C]` makes a decoded image what `outputs` takes."""
    any_size = shape[0] is None
    empty = tf.zeros([0] + [1 if d is None else d for d in shape], tf.float32)

    def serve_pixels(image):
        return answer_nonempty(outputs, tf.cast(image, tf.float32))

    def serve_image_bytes(image_bytes):
        pixels, _ = decode_images(image_bytes, limits, shape[2], prepare, empty, one_size)
        return answer_nonempty(outputs, pixels)

    tensor_limits = limits if any_size else None
    size_note = ", any height and width" if any_size else ""
    image = (None, *shape)
    return {
        "serving_default": Signature(serve_pixels, [Input(
            "image", "float32", image, pixels=True, limits=tensor_limits,
            about=f"raw pixels 0..255, not 0..1{size_note}")]),
        "serve_uint8": Signature(serve_pixels, [Input(
            "image", "uint8", image, limits=tensor_limits, about=f"pixels 0..255{size_note}")]),
        "serve_image_bytes": Signature(serve_image_bytes, [image_bytes_input(limits)]),
    }
