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


def _header_sizes(image_bytes: tf.Tensor, is_png: tf.Tensor):
    """(int64 [n, 2] heights and widths, bool [n] whether each header could be read), from
    the headers alone: PNG's IHDR chunk for all the PNGs at once, and JPEG's frame header
    through tf.io.extract_jpeg_shape (which fails on a bad header: a tf.data pipeline, run
    only when the request holds JPEGs, drops those)."""
    head = tf.strings.join([tf.strings.substr(image_bytes, 0, 24), b"\0" * 24])  # >= 24 bytes
    read = tf.logical_and(is_png, tf.logical_and(tf.strings.length(image_bytes) >= 24, tf.equal(
        tf.strings.substr(head, 12, 4), b"IHDR")))
    raw = tf.reshape(tf.io.decode_raw(tf.strings.substr(head, 16, 8), tf.uint8), [-1, 8])
    raw = tf.cast(raw, tf.int64)  # width and height, big-endian
    big_endian = tf.constant([2**24, 2**16, 2**8, 1], tf.int64)
    sizes = tf.stack([tf.reduce_sum(raw[:, 4:] * big_endian, axis=1),  # height, then width
                      tf.reduce_sum(raw[:, :4] * big_endian, axis=1)], axis=1)
    jpegs = tf.where(tf.logical_not(is_png))[:, 0]

    def jpeg_sizes():
        def shape(i):
            return tf.cast(tf.io.extract_jpeg_shape(image_bytes[jpegs[i]])[:2], tf.int64)

        found, shapes = _each(shape, tf.size(jpegs, out_type=tf.int64),
                              tf.zeros([0, 2], tf.int64))
        return tf.gather(jpegs, found), shapes

    found, shapes = tf.cond(tf.size(jpegs) > 0, jpeg_sizes,
                            lambda: (tf.zeros([0], tf.int64), tf.zeros([0, 2], tf.int64)))
    return (tf.tensor_scatter_nd_update(sizes, found[:, None], shapes),
            tf.tensor_scatter_nd_update(read, found[:, None], tf.ones_like(found, tf.bool)))


def _each(fn: Callable, count: tf.Tensor, empty):
    """(the indices i in 0..count-1 for which `fn(i)` ran without an error, in order, and its
    results for them); `empty` (the results' structure, 0 rows) when none did."""
    data = tf.data.Dataset.range(count).map(lambda i: (i, fn(i))).ignore_errors()
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
    lengths = tf.concat([tf.strings.length(image_bytes), [0]], axis=0)  # [count] when none over
    big = _first(lengths[:-1] > limits.max_bytes)
    checks = [refuse_unless(
        big >= count, f"Input {NAME}: image {{}} is {{}} bytes, over the limit of "
                      f"{limits.max_bytes} bytes per encoded image", big, lengths[big])]
    is_png = tf.equal(tf.strings.substr(image_bytes, 0, 8), PNG)
    known = tf.logical_or(is_png, tf.equal(tf.strings.substr(image_bytes, 0, 3), JPEG))
    other = _first(tf.logical_not(known))
    checks.append(refuse_unless(
        other >= count, f"Input {NAME} must hold PNG or JPEG encoded images; image {{}} is "
                        "neither (its first bytes are no PNG or JPEG signature)", other))
    with tf.control_dependencies(checks):
        sizes, read = _header_sizes(image_bytes, is_png)
    unread = tf.where(tf.logical_not(read))[:, 0]
    checks = [refuse_unless(tf.equal(tf.size(unread), 0),
                            f"Input {NAME}: no readable PNG or JPEG header in image(s) {{}}",
                            unread)]
    with tf.control_dependencies(checks):
        sizes = tf.identity(sizes)  # every image's, once all were read
    checks = pixel_limit_checks(sizes[:, 0], sizes[:, 1], NAME, limits)
    if one_size:
        same = tf.reduce_all(tf.equal(sizes, sizes[:1]))
        checks.append(refuse_unless(
            same, f"Input {NAME}: every image of one request must have the same size; send "
                  "images of other sizes in separate requests. Heights {}, widths {}",
            sizes[:, 0], sizes[:, 1]))
    with tf.control_dependencies(checks):
        indices, images = _each(lambda i: prepare(decode_image_bytes(image_bytes[i], channels)),
                                count, empty)
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
