"""Input sharding for multi-worker training, and the check that the global batch splits evenly.

tf.distribute splits a dataset over workers by its AutoShardPolicy:
- DATA: every worker reads everything and keeps its slice of each global batch. Right for
  in-memory arrays, which have no files to split (suite.data.pipeline uses it).
- FILE: worker i reads only its own files, so no worker reads, decodes or shuffles data it then
  throws away: right for datasets stored as many files (TFRecord shards). It needs at least one
  file per worker, and every worker must list the files in the same order, or the shares
  overlap: the file list is sorted, and shuffled only with a seed all workers share.
"""
from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf


def _with_file_sharding(ds: tf.data.Dataset) -> tf.data.Dataset:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.FILE
    return ds.with_options(options)


def tfrecord_dataset(
    file_pattern: str | Sequence[str],
    batch_size: int,
    parse_fn: Callable[[tf.Tensor], object] | None = None,
    *,
    num_workers: int = 1,
    shuffle: bool = True,
    seed: int = 0,
    shuffle_buffer: int = 10_000,
    repeat: bool = True,
    compression_type: str | None = None,
) -> tf.data.Dataset:
    """Batches of `parse_fn(serialized record)` from TFRecord files, sharded by FILE.

    `batch_size` is the global batch, as everywhere in the suite: under a strategy each worker's
    batches are split over its replicas. `num_workers` is only checked against the number of
    files (FILE sharding gives every worker whole files). With `shuffle`, the file order is
    shuffled with `seed` (the same on every worker) and records through a `shuffle_buffer`.
    """
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted({f for pattern in patterns for f in tf.io.gfile.glob(pattern)})
    if not files:
        raise ValueError(f"no TFRecord files match {file_pattern!r}: check the path and the "
                         "glob pattern (e.g. /data/train-*.tfrecord)")
    if len(files) < num_workers:
        raise ValueError(
            f"{len(files)} TFRecord file(s) match {file_pattern!r} but there are {num_workers} "
            "workers: sharding by file gives every worker whole files, so write the data as at "
            f"least {num_workers} shards (more is better: a multiple of the worker count keeps "
            "them even), or shard in-memory data by DATA instead (suite.data.pipeline).")
    ds = tf.data.Dataset.from_tensor_slices(files)
    if shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression_type),
        cycle_length=min(len(files), 8), num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    if parse_fn is not None:
        ds = ds.map(parse_fn, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=repeat)
    return _with_file_sharding(ds.prefetch(tf.data.AUTOTUNE))


def check_global_batch(batch_size: int, num_replicas: int) -> int:
    """The per-replica batch of global `batch_size`; ValueError unless it splits evenly.

    tf.distribute would split an uneven batch unevenly, and Keras averages each replica's loss
    over its own examples before dividing by the replica count, so examples on a smaller replica
    would weigh more than the rest: the gradient would no longer be the global batch's mean.
    """
    if num_replicas < 1:
        raise ValueError(f"num_replicas={num_replicas}: a strategy has at least one replica")
    if batch_size < 1 or batch_size % num_replicas:
        below = batch_size // num_replicas * num_replicas
        choices = [b for b in (below, below + num_replicas) if b >= num_replicas]
        raise ValueError(
            f"`batch_size={batch_size}` is the global batch, split evenly over all {num_replicas} "
            f"replicas (workers x devices per worker), but {batch_size} is not a positive "
            f"multiple of {num_replicas}: use "
            + " or ".join(f"`batch_size={b}` ({b // num_replicas} per replica)" for b in choices))
    return batch_size // num_replicas
