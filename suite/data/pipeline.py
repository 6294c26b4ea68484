"""tf.data plumbing shared by the in-memory datasets (MNIST, CIFAR arrays).

Training data is shuffled, repeated and batched once for all epochs; fit() then runs with
steps_per_epoch. A per-epoch re-iteration of a 60k-image shuffle measured up to 2x slower here
(../shared/FINDINGS.md), a single repeating pipeline did not.

`batch_size` is always the global batch: under a strategy Keras splits it over the replicas,
and under multi-worker training each worker keeps every N-th element (AutoShardPolicy.DATA,
right for in-memory data that has no files to split).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def with_data_sharding(ds: tf.data.Dataset) -> tf.data.Dataset:
    """In-memory data has no files to split: each worker keeps every N-th element."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def train_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
                  shuffle: bool = True) -> tf.data.Dataset:
    """An endless stream of shuffled (float32 image, int64 label) batches."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat().batch(batch_size, drop_remainder=True)
    ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return with_data_sharding(ds.prefetch(tf.data.AUTOTUNE))


def eval_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int) -> tf.data.Dataset:
    """One ordered pass over every example (the last batch may be smaller)."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    return with_data_sharding(ds.prefetch(tf.data.AUTOTUNE))


def _to_float(images, labels):
    # Casting whole batches is one op per batch instead of one per image.
    return tf.cast(images, tf.float32), labels


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    if num_examples < batch_size:
        raise ValueError(f"`batch_size={batch_size}` is larger than the {num_examples} training "
                         "examples: lower `batch_size`")
    return num_examples // batch_size
