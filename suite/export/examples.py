"""Example requests made from a signature's declared inputs alone: valid values that every
check of suite.export.guards lets through, so TF Serving can replay them at load
(suite.export.warmup) without failing the version.

Images are a smooth 0..255 pattern (small once encoded, and never mistaken for 0..1 pixels);
encoded images alternate PNG and JPEG, so both decoders run, at one size per request (the
segmenter's rule); other floats are standard normal draws (a GAN's latent, an observation),
integers count up (seeds), and a scalar takes its declared example or its lowest bound.
"""
from __future__ import annotations

import numpy as np

from suite.export.signature import Input

SIDE = 64  # height and width of an image input that takes any size, and of encoded images


def pattern(height: int, width: int, channels: int, shift: int = 0) -> np.ndarray:
    """uint8 [height, width, channels]: diagonal stripes 0..255, each channel offset."""
    rows, columns = np.mgrid[:height, :width]
    stripes = [(rows + columns) * 8 + 85 * c + shift for c in range(channels)]
    return (np.stack(stripes, axis=-1) % 256).astype(np.uint8)


def encoded_images(count: int, channels: int = 3, side: int = SIDE) -> np.ndarray:
    """`count` encoded images (object array of bytes), PNG first, then alternating with JPEG."""
    import tensorflow as tf

    images = []
    for i in range(count):
        pixels = pattern(side, side, channels, shift=37 * i)
        encode = tf.io.encode_png if i % 2 == 0 else tf.io.encode_jpeg
        images.append(encode(pixels).numpy())
    return np.array(images, dtype=object)


def scalar(declared: Input):
    if declared.example is not None:
        return declared.example
    return declared.bounds[0] if declared.bounds is not None else 0


def example_value(declared: Input, batch: int) -> np.ndarray:
    """A valid value of `declared` with `batch` rows (a scalar has none)."""
    dtype = declared.dtype
    if declared.shape == ():
        return np.asarray(scalar(declared), dtype=dtype if dtype != "string" else object)
    if dtype == "string":
        return encoded_images(batch)
    shape = [batch] + [SIDE if size is None else size for size in declared.shape[1:]]
    if len(shape) == 4 and dtype in ("float32", "uint8"):  # images
        return np.stack([pattern(*shape[1:], shift=37 * i) for i in range(batch)]
                        ).reshape(shape).astype(dtype)
    rng = np.random.default_rng(batch)
    if dtype.startswith("float"):
        values = rng.standard_normal(shape)
    elif dtype == "uint8":
        values = rng.integers(0, 256, shape)
    else:
        values = np.broadcast_to(np.arange(batch).reshape([batch] + [1] * (len(shape) - 1)),
                                 shape)
    if declared.bounds is not None:
        values = np.clip(values, *declared.bounds)
    return np.asarray(values, dtype=dtype)


def example_request(inputs: list[Input], batch: int) -> dict[str, np.ndarray]:
    """{input name: value} for one request of `batch` rows to a signature with `inputs`."""
    return {declared.name: example_value(declared, batch) for declared in inputs}
