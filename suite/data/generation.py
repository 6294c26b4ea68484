"""Images without labels, for generative models: `--dataset` of apps.train_dcgan.

    mnist           the suite's MNIST loader: IDX files in --mnist_dir (offline), else tfds
    <zip>           the CIFAR-10 zip of ../shared/data/cifar10-subset
    <folder>        a classification folder (<root>/train/<class>/...), or any folder of images
                    (every .png/.jpg under it, centre-cropped and resized to --image_size)
    <tfds name>     any tensorflow-datasets image set (its train split)

Everything is decoded once into one uint8 (N, H, W, C) array: GAN training sets are small.
"""
from __future__ import annotations

import os

import numpy as np

from suite.errors import DataError

DATASET_FORMS = ("mnist, a tensorflow-datasets image set name, the CIFAR-10 zip of "
                 "../shared/data/cifar10-subset, or a folder of .png/.jpg images")


def _from_folder(path: str, image_size: int, limit: int = 0) -> np.ndarray:
    from suite.data import image_folder

    if os.path.isdir(os.path.join(path, "train")):  # the classifier's layout: take train/
        path = os.path.join(path, "train")
    paths = image_folder.images_under(path)
    if not paths:
        raise DataError(f"{path} holds no .png/.jpg/.jpeg images; `dataset` takes {DATASET_FORMS}")
    paths = paths[:limit] if limit else paths  # decode only what is kept
    return image_folder.load_images(paths, image_size or image_folder.first_image_side(paths))


def load_generation_images(dataset: str, image_size: int = 0, mnist_dir: str | None = None,
                           data_dir: str | None = None, grayscale: bool = False,
                           limit: int = 0):
    """(training images, test images or None, a name for them), uint8 NHWC. Test images are
    only the yardstick of quality numbers. `grayscale` averages RGB to one channel; `limit`
    keeps the first N training images (quick runs)."""
    test = None
    if dataset == "mnist":
        from suite.data.mnist import load_mnist

        if image_size not in (0, 28):
            raise DataError(f"MNIST digits are 28x28; use `image_size=28` (or 0), not {image_size}")
        try:
            (images, _), (test, _) = load_mnist(mnist_dir)
        except DataError as e:  # the MNIST app calls this folder --data_dir
            raise DataError(str(e).replace("`data_dir`", "`mnist_dir`")) from e
        name = "mnist"
    elif os.path.isdir(dataset):
        images, name = _from_folder(dataset, image_size, limit), os.path.basename(
            os.path.normpath(dataset))
    else:
        from suite.data.classification import load_classification

        if not os.path.isfile(dataset) and os.path.sep in dataset:
            raise DataError(f"`dataset={dataset!r}` does not exist; it takes {DATASET_FORMS}")
        data = load_classification(dataset, data_dir=data_dir, image_size=image_size,
                                   in_memory=True)
        images, test, name = data.train.images, data.test.images, data.name
        if image_size and images.shape[1:3] != (image_size, image_size):
            images, test = _resized(images, image_size), _resized(test, image_size)
    if limit:
        images = images[:limit]
    if grayscale:
        images, test = _gray(images), _gray(test)
    return np.ascontiguousarray(images), test, name


def _resized(images, size: int):
    import tensorflow as tf

    if images is None:
        return None
    out = tf.image.resize(images, (size, size), method="area", antialias=True)
    return np.asarray(tf.cast(tf.round(out), tf.uint8))


def _gray(images):
    if images is None or images.shape[-1] == 1:
        return images
    return np.round(images.astype(np.float32).mean(-1, keepdims=True)).astype(np.uint8)
