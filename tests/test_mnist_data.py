import gzip
import os
import time

import numpy as np
import pytest

from conftest import FIXTURE_MNIST
from suite.data import hosts, mnist
from suite.data.idx import read_idx, write_idx
from suite.errors import DataError


def test_idx_round_trip_gz_and_raw(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    for name in ("a.idx3.gz", "a.idx3"):
        write_idx(str(tmp_path / name), a)
        np.testing.assert_array_equal(read_idx(str(tmp_path / name)), a)


def test_fixture_loads_with_the_shapes_the_models_expect(mnist_small):
    (x_train, y_train), (x_test, y_test) = mnist_small
    assert x_train.shape == (500, 28, 28, 1) and x_train.dtype == np.uint8
    assert x_test.shape == (200, 28, 28, 1) and y_test.dtype == np.int64
    assert set(np.unique(y_train)) == set(range(10))


def test_truncated_file_is_refused_with_its_name(tmp_path):
    raw = gzip.decompress(open(os.path.join(FIXTURE_MNIST, "t10k-images-idx3-ubyte.gz"), "rb").read())
    path = tmp_path / "cut.idx"
    path.write_bytes(raw[:-100])
    with pytest.raises(DataError, match=r"cut.idx.*truncated or corrupt"):
        read_idx(str(path))
    gz = tmp_path / "cut.gz"
    gz.write_bytes(open(os.path.join(FIXTURE_MNIST, "t10k-images-idx3-ubyte.gz"), "rb").read()[:5000])
    with pytest.raises(DataError, match=r"cut.gz.*truncated or corrupt"):
        read_idx(str(gz))


def test_not_an_idx_file(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(b"PK\x03\x04 hello")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(str(path))


def test_checksums_are_verified_and_the_message_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"does not match the official MNIST file.*"
                                        r"`verify_checksums=false`"):
        mnist.load_mnist_arrays(FIXTURE_MNIST, verify_checksums=True)


def test_missing_files_explain_how_to_get_the_data(tmp_path):
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz is missing.*"
                                        r"`data_dir=<that folder>`"):
        mnist.load_mnist_arrays(str(tmp_path))
    with pytest.raises(DataError, match="is not a folder"):
        mnist.load_mnist_arrays(str(tmp_path / "nope"))


def test_offline_without_data_fails_fast_instead_of_retrying(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on stands in for the unreachable host
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()
    monkeypatch.setattr(hosts, "TFDS_HOST", closed)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(DataError, match=r"unreachable.*`data_dir=<that folder>`"):
        mnist.load_mnist(None)
    assert time.monotonic() - start < 10
    assert not os.path.exists(tmp_path / "downloads")  # no half-downloaded leftovers
