"""tf.data for segmentation: augmentations that move an image and its mask together.

Training draws random crops (`crop` x `crop`) from the training images, each with any of

    flip       horizontal and vertical flips, each with probability 1/2
    rotate90   a rotation by 0, 90, 180 or 270 degrees
    scale      a random zoom by 0.75..1.25 before cropping
    elastic    U-Net's elastic deformation: displacements drawn on a coarse 3x3 grid from a
               Gaussian (10 pixels standard deviation), interpolated bicubically to every pixel

The image is resampled bilinearly and the mask by nearest neighbour, so a mask value is always a
class. Every random choice comes from a stateless seed drawn from --seed, so a run's crops are
reproducible. Evaluation takes whole images, one per batch (they may differ in size).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from suite.data.pipeline import with_data_sharding
from suite.data.segmentation import AUGMENTATIONS, parse_augmentations  # noqa: F401

SCALE_RANGE = (0.75, 1.25)
ELASTIC_GRID = 3
ELASTIC_SIGMA = 10.0


def _resize_pair(image, mask, height, width):
    image = tf.image.resize(image, [height, width], method="bilinear")
    mask = tf.image.resize(mask, [height, width], method="nearest")
    return image, mask


def _sample(image, y, x, nearest: bool):
    """image [H, W, C] read at float coordinates (y, x) [H', W'], clamped to the borders."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    y = tf.clip_by_value(y, 0.0, tf.cast(height - 1, tf.float32))
    x = tf.clip_by_value(x, 0.0, tf.cast(width - 1, tf.float32))
    if nearest:
        return tf.gather_nd(image, tf.cast(tf.stack([tf.round(y), tf.round(x)], -1), tf.int32))
    y0, x0 = tf.floor(y), tf.floor(x)
    wy, wx = (y - y0)[..., None], (x - x0)[..., None]
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    y1, x1 = tf.minimum(y0 + 1, height - 1), tf.minimum(x0 + 1, width - 1)

    def at(a, b):
        return tf.gather_nd(image, tf.stack([a, b], -1))

    top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
    bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
    return top * (1 - wy) + bottom * wy


def elastic_deform(image, mask, seed, sigma: float = ELASTIC_SIGMA, grid: int = ELASTIC_GRID):
    """U-Net's elastic deformation of a float image [H, W, C] and an int mask [H, W, 1]."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    coarse = tf.random.stateless_normal([1, grid, grid, 2], seed, stddev=sigma)
    shift = tf.image.resize(coarse, [height, width], method="bicubic")[0]
    yy, xx = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32),
                         indexing="ij")
    y, x = yy + shift[..., 0], xx + shift[..., 1]
    return _sample(image, y, x, nearest=False), _sample(mask, y, x, nearest=True)


def augment_pair(image, mask, seed, names: tuple[str, ...], crop: int):
    """A random `crop` x `crop` training view of (uint8 image [H, W, C], uint8 mask [H, W]):
    (float32 image, int32 mask [crop, crop])."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=7)
    image = tf.cast(image, tf.float32)
    mask = tf.cast(mask, tf.int32)[..., None]
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    # Zoom (always enough that the crop fits inside the image).
    zoom = tf.constant(1.0)
    if "scale" in names:
        zoom = tf.random.stateless_uniform([], seeds[0], *SCALE_RANGE)
    zoom = tf.maximum(zoom, crop / tf.minimum(height, width))
    new_h = tf.cast(tf.math.ceil(height * zoom), tf.int32)
    new_w = tf.cast(tf.math.ceil(width * zoom), tf.int32)
    image, mask = tf.cond(
        tf.equal(zoom, 1.0), lambda: (image, mask),
        lambda: _resize_pair(image, mask, new_h, new_w))
    top = tf.random.stateless_uniform([], seeds[1], 0, tf.shape(image)[0] - crop + 1, tf.int32)
    left = tf.random.stateless_uniform([], seeds[2], 0, tf.shape(image)[1] - crop + 1, tf.int32)
    image = image[top:top + crop, left:left + crop]
    mask = mask[top:top + crop, left:left + crop]
    if "flip" in names:
        flips = tf.random.stateless_uniform([2], seeds[3]) < 0.5
        image = tf.cond(flips[0], lambda: image[:, ::-1], lambda: image)
        mask = tf.cond(flips[0], lambda: mask[:, ::-1], lambda: mask)
        image = tf.cond(flips[1], lambda: image[::-1], lambda: image)
        mask = tf.cond(flips[1], lambda: mask[::-1], lambda: mask)
    if "rotate90" in names:
        k = tf.random.stateless_uniform([], seeds[4], 0, 4, tf.int32)
        image, mask = tf.image.rot90(image, k), tf.image.rot90(mask, k)
    if "elastic" in names:
        image, mask = elastic_deform(image, mask, seeds[5])
    channels = image.shape[-1]
    image = tf.ensure_shape(image, [crop, crop, channels])
    return image, tf.ensure_shape(mask[..., 0], [crop, crop])


def _pairs(images: list, masks: list):
    """Unbatched (uint8 image, uint8 mask) in order; one tensor when every size is the same."""
    if len({im.shape for im in images}) == 1:
        return tf.data.Dataset.from_tensor_slices((np.stack(images), np.stack(masks)))
    channels = images[0].shape[-1]

    def pairs():
        yield from zip(images, masks)

    return tf.data.Dataset.from_generator(pairs, output_signature=(
        tf.TensorSpec([None, None, channels], tf.uint8), tf.TensorSpec([None, None], tf.uint8)))


def train_dataset(images: list, masks: list, batch_size: int, crop: int, seed: int,
                  augmentations=()):
    """Endless batches of random crops: (float32 [B, crop, crop, C] pixels 0..255, int32 masks)."""
    names = tuple(augmentations)
    ds = _pairs(images, masks).shuffle(len(images), seed=seed,
                                       reshuffle_each_iteration=True).repeat()
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
    ds = ds.map(lambda pair, s: augment_pair(pair[0], pair[1], s, names, crop),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return with_data_sharding(ds.batch(batch_size, drop_remainder=True).prefetch(
        tf.data.AUTOTUNE))


def eval_dataset(images: list, masks: list, batch: int = 1):
    """Whole images, `batch` per batch (1 unless they share one size): (float32 [B, H, W, C],
    int32 [B, H, W])."""
    ds = _pairs(images, masks).map(lambda x, y: (tf.cast(x, tf.float32), tf.cast(y, tf.int32)))
    return with_data_sharding(ds.batch(batch).prefetch(tf.data.AUTOTUNE))
