"""suite.data.sharding: FILE sharding of TFRecord shards over workers, and the global batch check.

Worker i's share is computed with tf.distribute's own input_ops.auto_shard_dataset, the call
MultiWorkerMirroredStrategy.experimental_distribute_dataset makes on each worker, so the test
needs no cluster; each worker's dataset is built separately, as each process builds its own.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.distribute import input_ops

from suite.data.sharding import check_global_batch, tfrecord_dataset

NUM_FILES, RECORDS_PER_FILE = 4, 6


@pytest.fixture
def shards(tmp_path):
    """4 files of 6 tf.Examples: an 8x8 'image' filled with the file number, and a label."""
    for k in range(NUM_FILES):
        with tf.io.TFRecordWriter(str(tmp_path / f"train-{k:02d}.tfrecord")) as writer:
            for j in range(RECORDS_PER_FILE):
                image = np.full((8, 8, 1), k, np.uint8).tobytes()
                example = tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                    "file": tf.train.Feature(int64_list=tf.train.Int64List(value=[k])),
                    "record": tf.train.Feature(int64_list=tf.train.Int64List(value=[j])),
                }))
                writer.write(example.SerializeToString())
    return str(tmp_path / "train-*.tfrecord")


FEATURES = {"image": tf.io.FixedLenFeature([], tf.string),
            "file": tf.io.FixedLenFeature([], tf.int64),
            "record": tf.io.FixedLenFeature([], tf.int64)}


def parse(serialized):
    example = tf.io.parse_single_example(serialized, FEATURES)
    image = tf.reshape(tf.io.decode_raw(example["image"], tf.uint8), (8, 8, 1))
    return image, (example["file"], example["record"])


def worker_share(pattern, index, num_workers=2, **kw):
    ds = tfrecord_dataset(pattern, 3, parse, num_workers=num_workers, repeat=False, seed=7, **kw)
    sharded = input_ops.auto_shard_dataset(ds, num_workers, index, num_workers)
    seen = []
    for images, (files, records) in sharded:
        assert images.shape[1:] == (8, 8, 1)
        np.testing.assert_array_equal(images.numpy()[:, 0, 0, 0], files.numpy())
        seen += zip(files.numpy().tolist(), records.numpy().tolist())
    return seen


def test_the_dataset_asks_for_file_sharding(shards):
    ds = tfrecord_dataset(shards, 3, parse)
    policy = ds.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.FILE


@pytest.mark.parametrize("shuffle", [False, True])
def test_two_workers_read_disjoint_whole_files_that_cover_the_data(shards, shuffle):
    shares = [worker_share(shards, i, shuffle=shuffle) for i in range(2)]
    files = [{f for f, _ in share} for share in shares]
    assert files[0].isdisjoint(files[1]) and files[0] | files[1] == set(range(NUM_FILES))
    for share, mine in zip(shares, files):
        assert len(mine) == NUM_FILES // 2  # whole files, evenly
        assert sorted(share) == sorted((f, r) for f in mine for r in range(RECORDS_PER_FILE))


def test_without_sharding_one_worker_reads_everything_once(shards):
    seen = worker_share(shards, 0, num_workers=1)
    assert sorted(seen) == [(f, r) for f in range(NUM_FILES) for r in range(RECORDS_PER_FILE)]


def test_shuffle_is_seeded_so_every_worker_orders_the_files_alike(shards):
    first = [worker_share(shards, 0, shuffle=True) for _ in range(2)]
    assert first[0] == first[1]


def test_repeat_gives_full_batches_forever(shards):
    ds = tfrecord_dataset(shards, 5, parse, repeat=True)
    batches = list(ds.take(10))  # 50 records from 24: it went round more than twice
    assert all(images.shape[0] == 5 for images, _ in batches)


def test_fewer_files_than_workers_is_a_clear_error(shards):
    with pytest.raises(ValueError, match=r"4 TFRecord file\(s\) match .* but there are 5 workers"):
        tfrecord_dataset(shards, 3, num_workers=5)


def test_no_matching_files_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no TFRecord files match"):
        tfrecord_dataset(str(tmp_path / "missing-*.tfrecord"), 3)


def test_global_batch_splits_evenly_or_names_the_fix():
    assert check_global_batch(100, 2) == 50
    assert check_global_batch(100, 1) == 100
    with pytest.raises(ValueError) as error:
        check_global_batch(100, 3)
    message = str(error.value)
    assert "`batch_size=100` is the global batch" in message and "3 replicas" in message
    assert "`batch_size=99` (33 per replica) or `batch_size=102` (34 per replica)" in message
    with pytest.raises(ValueError, match=r"use `batch_size=8` \(1 per replica\)$"):
        check_global_batch(5, 8)
    with pytest.raises(ValueError, match="at least one replica"):
        check_global_batch(100, 0)
