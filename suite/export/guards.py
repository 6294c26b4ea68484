"""The run-time checks of a request, written once for every serving signature of every app.

A signature is the suite's front door: whatever a client sends reaches it. A session (TF
Serving, a C++ client) checks the dtypes it is fed but not their shapes, a wrong-rank tensor
reaching a oneDNN convolution fails with an unrelated message (or aborts the process), and a
NaN pixel gets a confident answer. So every check is an op in the graph, run before the model,
failing with InvalidArgumentError whose text names the input as the request names it and what
was expected. suite.export.saved_model applies `checked` to every signature from the `Input`s
it declares; encoded images are checked on their headers by suite.export.image_signatures.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from suite.export.signature import Input


def refuse_unless(ok, template: str, *values) -> tf.Operation:
    """An assertion failing with `template`, its {} filled with `values`."""
    message = tf.strings.format(template, list(values), summarize=16) if values else template
    return tf.debugging.Assert(ok, [message])


def after(x: tf.Tensor, *checks) -> tf.Tensor:
    """`x` once `checks` have passed: what reads it cannot run before them."""
    with tf.control_dependencies(checks):
        return tf.identity(x)


def as_input(declared) -> Input:
    """An `Input` for a declared input (an Input already, or a tf.TensorSpec)."""
    if isinstance(declared, Input):
        return declared
    return Input(declared.name, declared.dtype.name, tuple(declared.shape.as_list()))


def spec(declared: Input) -> tf.TensorSpec:
    return tf.TensorSpec(list(declared.shape), tf.as_dtype(declared.dtype), name=declared.name)


def check_input(x: tf.Tensor, declared: Input) -> tf.Tensor:
    """`x` after its checks, each run only once the one before passed (a wrong rank is named
    as such, not by a reduction that could not run on it)."""
    name = declared.name
    actual = _fed_shape(x, declared)
    rank = len(declared.shape)
    # The rank read from the run-time shape: tf.rank and tf.size(shape) are folded into the
    # declared rank when the graph is built, and a session feeds any rank to a placeholder.
    padded = tf.concat([actual, tf.fill([rank + 1], tf.constant(-1, tf.int64))], axis=0)
    ok = tf.equal(tf.argmin(padded, output_type=tf.int32), rank)  # the first -1: the rank
    for axis, size in enumerate(declared.shape):
        if size is not None:
            ok = tf.logical_and(ok, tf.equal(padded[axis], size))
    about = f" ({declared.about})" if declared.about else ""
    x = after(x, refuse_unless(ok, f"Input {name} must be {declared.dtype} of shape "
                                   f"{declared.shape_text()}{about}; got shape {{}}", actual))
    if x.dtype.is_floating:
        x = after(x, refuse_unless(tf.reduce_all(tf.math.is_finite(x)),
                                   f"Input {name} holds NaN or infinite values; send finite "
                                   "numbers"))
    if declared.pixels:
        x = after(x, _raw_pixels(x, name))
    if declared.bounds is not None:
        low, high = declared.bounds
        inside = tf.reduce_all(tf.logical_and(x >= low, x <= high))
        x = after(x, refuse_unless(inside, f"Input {name} must be in [{low}, {high}]; got {{}}",
                                   x))
    if declared.limits is not None and rank == 4:  # images of any size, sent as pixels
        shape = tf.shape(x, out_type=tf.int64)  # of the checked x: rank 4 now
        x = after(x, *pixel_limit_checks(tf.fill([shape[0]], shape[1]),
                                         tf.fill([shape[0]], shape[2]), name, declared.limits))
    return x


def _fed_shape(x: tf.Tensor, declared: Input) -> tf.Tensor:
    """The shape of what was fed. A declared shape without None (a scalar) is a constant to
    tf.shape and to the function optimiser, so there it is read from a serialised copy."""
    if all(size is not None for size in declared.shape):  # small: scalars only, in practice
        x = tf.io.parse_tensor(tf.io.serialize_tensor(x), x.dtype)
    return tf.shape(x, out_type=tf.int64)


def _raw_pixels(x: tf.Tensor, name: str) -> tf.Operation:
    """0..1 pixels sent to a 0..255 signature would get an answer for a black image: refuse a
    request whose values all lie within [0, 1] (an all-black request, all 0, is answered)."""
    largest = tf.reduce_max(x)  # -inf for an empty request: answered
    looks_scaled = tf.logical_and(largest > 0.0, largest <= 1.0)
    return refuse_unless(tf.logical_not(looks_scaled),
                         f"Input {name} takes raw pixels 0..255, but every value of this "
                         "request lies within [0, 1] (the largest is {}): multiply 0..1 pixels "
                         "by 255", largest)


def pixel_limit_checks(heights, widths, name: str, limits) -> list:
    """The checks of `limits` (ImageLimits) on a request's images of these heights and widths
    (int64 [batch] each), naming the largest image when one is over."""
    heights, widths = tf.concat([heights, [0]], axis=0), tf.concat([widths, [0]], axis=0)
    pixels = heights * widths  # the 0 at the end: an empty request has a largest image too
    i = tf.argmax(pixels)
    checks = [refuse_unless(
        pixels[i] <= limits.max_pixels,
        f"Input {name}: image {{}} is {{}}x{{}} = {{}} pixels, over the limit of "
        f"{limits.max_pixels} pixels per image", i, heights[i], widths[i], pixels[i])]
    if limits.max_request_pixels is not None:
        total = tf.reduce_sum(pixels)
        checks.append(refuse_unless(
            total <= limits.max_request_pixels,
            f"Input {name}: the {{}} images of this request have {{}} pixels in all, over the "
            f"limit of {limits.max_request_pixels} pixels per request; send fewer or smaller "
            "images", tf.size(pixels) - 1, total))
    return checks


def checked(fn: Callable, inputs: list[Input]) -> Callable:
    """`fn` called with its inputs checked, in the order of `inputs` (the request's names are
    the tf.TensorSpec names, so the wrapper's own argument names do not matter)."""

    def serve(*args):
        return fn(*(check_input(x, declared) for x, declared in zip(args, inputs)))

    return serve


def answer_nonempty(fn: Callable, *batches: tf.Tensor):
    """`fn(*batches)` that answers an empty batch with empty outputs: oneDNN's convolutions
    fail on a batch of 0 with an unrelated message ("input depth must be evenly divisible by
    filter depth"), so an empty batch gets one zero row whose answer is dropped. No tf.cond:
    the TFLite converter would not quantise the model inside one (suite.export.quantize)."""
    count = tf.shape(batches[0])[0]
    missing = tf.maximum(1 - count, 0)

    def padded(batch):
        zeros = tf.zeros(tf.concat([[missing], tf.shape(batch)[1:]], axis=0), batch.dtype)
        return tf.concat([batch, zeros], axis=0)

    outputs = fn(*(padded(b) for b in batches))
    return tf.nest.map_structure(lambda t: t[:count], outputs)
