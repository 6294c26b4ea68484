"""CIFAR-10 (Krizhevsky 2009) from tensorflow-datasets or from a local zip/folder of images.

The local format is the one in ../shared/data/cifar10-subset: `<split>/<class>/<n>.jpg|png`
inside a zip or a folder, classes in CIFAR-10's index order. Images come back as uint8
(N, 32, 32, 3) and labels as int64, exactly like the tfds path, so the apps need not care.
"""
from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from suite.errors import DataError

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _decode(data: bytes, name: str) -> np.ndarray:
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception as e:  # PIL raises many types for broken files
        raise DataError(f"{name}: not a readable image ({e})") from e
    return np.asarray(image, dtype=np.uint8)


def _entries(path: str) -> list[tuple[str, bytes]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return [(n, z.read(n)) for n in sorted(z.namelist())
                    if n.lower().endswith(IMAGE_EXTENSIONS)]
    if os.path.isdir(path):
        out = []
        for root, _, files in sorted(os.walk(path)):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXTENSIONS):
                    full = os.path.join(root, f)
                    with open(full, "rb") as fh:
                        out.append((os.path.relpath(full, path), fh.read()))
        return out
    raise DataError(f"{path} is neither a zip file nor a folder of <split>/<class>/<image> files")


def load_cifar10_local(path: str, classes: tuple[str, ...] = CLASS_NAMES):
    """((x_train, y_train), (x_test, y_test)) from `<split>/<class>/<image>` entries."""
    splits: dict[str, tuple[list, list]] = {"train": ([], []), "test": ([], [])}
    index = {c: i for i, c in enumerate(classes)}
    for name, data in _entries(path):
        parts = name.replace("\\", "/").split("/")
        if len(parts) < 3 or parts[-3] not in splits:
            continue
        split, cls = parts[-3], parts[-2]
        if cls not in index:
            raise DataError(f"{path}: {name} is in class folder {cls!r}, not one of {classes}")
        image = _decode(data, name)
        if image.shape != (32, 32, 3):
            raise DataError(f"{path}: {name} is {image.shape[1]}x{image.shape[0]}, CIFAR-10 is 32x32")
        splits[split][0].append(image)
        splits[split][1].append(index[cls])
    for split, (images, _) in splits.items():
        if not images:
            raise DataError(f"{path} holds no {split}/<class>/<image> files")
    return tuple((np.stack(images), np.asarray(labels, np.int64))
                 for images, labels in splits.values())
