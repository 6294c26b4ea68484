"""MNIST from the four original IDX files (offline, checksummed) or from tensorflow-datasets.

Images come back as uint8 (N, 28, 28, 1) and labels as int64 (N,): the models rescale
pixels themselves, so the same arrays feed training, evaluation and serving tests.

Without network, `tfds.load('mnist')` retries for minutes before failing; we test reachability
first and fail in seconds with instructions instead (see ../shared/FINDINGS.md).
"""
from __future__ import annotations

import os

import numpy as np

from suite.data import hosts
from suite.data.idx import read_idx, sha256_of
from suite.errors import DataError

# The official files (yann.lecun.com / the TFDS mirror), byte for byte.
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}
HOW_TO_GET_DATA = (
    "Either run with network access (tensorflow-datasets downloads MNIST), or download the four "
    "files " + ", ".join(name for name, _ in FILES.values()) +
    " (e.g. from https://storage.googleapis.com/cvdf-datasets/mnist/) into a folder and pass "
    "`data_dir=<that folder>`."
)

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _check_pair(images: np.ndarray, labels: np.ndarray, what: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"MNIST {what} images have shape {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"MNIST {what}: {images.shape[0]} images but labels of shape {labels.shape}")
    if labels.size and labels.max() > 9:
        raise DataError(f"MNIST {what} labels hold {labels.max()}, outside 0..9: corrupt file")


def load_mnist_arrays(data_dir: str, verify_checksums: bool = True) -> Arrays:
    """Reads ((x_train, y_train), (x_test, y_test)) from the four IDX .gz files in `data_dir`.

    With `verify_checksums`, each file must equal the official one (sha256); turn it off only
    for deliberate subsets such as the test fixture.
    """
    if not os.path.isdir(data_dir):
        raise DataError(f"`data_dir={data_dir}` is not a folder. {HOW_TO_GET_DATA}")
    arrays = {}
    for key, (name, sha256) in FILES.items():
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            raise DataError(f"{path} is missing. {HOW_TO_GET_DATA}")
        if verify_checksums and sha256_of(path) != sha256:
            raise DataError(
                f"{path} does not match the official MNIST file (sha256 differs): it is corrupt or "
                "truncated, download it again. For a deliberate subset pass "
                "`verify_checksums=false`.")
        arrays[key] = read_idx(path)
    _check_pair(arrays["train_images"], arrays["train_labels"], "train")
    _check_pair(arrays["test_images"], arrays["test_labels"], "test")
    return ((arrays["train_images"][..., None], arrays["train_labels"].astype(np.int64)),
            (arrays["test_images"][..., None], arrays["test_labels"].astype(np.int64)))


def load_mnist_tfds(tfds_data_dir: str | None = None) -> Arrays:
    """MNIST through tensorflow-datasets; fails within seconds when it would have to download offline."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("mnist", data_dir=tfds_data_dir)
    if not builder.is_prepared() and not hosts.reachable(hosts.TFDS_HOST):
        raise DataError(
            f"MNIST is not prepared in {builder.data_dir} and the download host "
            f"{hosts.TFDS_HOST[0]} is unreachable (offline?). {HOW_TO_GET_DATA}")
    builder.download_and_prepare()
    out = []
    for split in ("train", "test"):
        data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, as_supervised=True))
        images, labels = data
        out.append((images.astype(np.uint8).reshape(-1, 28, 28, 1), labels.astype(np.int64)))
    return out[0], out[1]


def load_mnist(data_dir: str | None, verify_checksums: bool = True) -> Arrays:
    """Local IDX files when `data_dir` is given, else tensorflow-datasets."""
    if data_dir:
        return load_mnist_arrays(data_dir, verify_checksums)
    return load_mnist_tfds()
