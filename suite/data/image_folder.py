"""A local image dataset laid out one folder per class: `<root>/{train,test}/<class>/<image>`.

The layout of Keras's image_dataset_from_directory and torchvision's ImageFolder, with the split
made explicit so the test set never depends on a seed. Class names are the train/ folder names,
sorted (their index is the label). Files other than .jpg/.jpeg/.png are ignored.

Two ways to read the images, chosen by the caller: `load_images` decodes everything into one
uint8 array (small datasets: CIFAR-sized, decoded once, fastest to train from), `decode_file`
is the tf op of a streaming pipeline that reads and decodes per step (ImageNet-sized folders
that do not fit in memory). Everything comes out RGB.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from suite.data.idx import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")
LAYOUT = "<root>/train/<class>/<image> and <root>/test/<class>/<image> (.jpg, .jpeg or .png)"


@dataclasses.dataclass
class FolderSplit:
    paths: np.ndarray  # str, one per image
    labels: np.ndarray  # int64 index into class_names


@dataclasses.dataclass
class FolderIndex:
    root: str
    class_names: list[str]
    train: FolderSplit
    test: FolderSplit


def images_under(folder: str) -> list[str]:
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(parent, f) for f in sorted(files)
                  if f.lower().endswith(IMAGE_EXTENSIONS)]
    return found


def _scan_split(root: str, split: str, class_names: list[str] | None):
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise DataError(f"{root} has no {split}/ folder; an image folder dataset is laid out as "
                        f"{LAYOUT}")
    entries = sorted(os.listdir(folder))
    loose = [e for e in entries if e.lower().endswith(IMAGE_EXTENSIONS)
             and os.path.isfile(os.path.join(folder, e))]
    if loose:
        raise DataError(f"{folder} holds images outside any class folder ({loose[0]}, ...): move "
                        f"each image into {split}/<class name>/")
    classes = [e for e in entries if os.path.isdir(os.path.join(folder, e))
               and not e.startswith(".")]
    if not classes:
        raise DataError(f"{folder} is empty: it needs one subfolder of images per class ({LAYOUT})")
    if class_names is not None:
        unknown = sorted(set(classes) - set(class_names))
        if unknown:
            raise DataError(f"{folder} has class folders {unknown} that train/ does not have; the "
                            f"classes are train/'s: {class_names}")
    names = class_names or classes
    paths, labels = [], []
    for cls in classes:
        images = images_under(os.path.join(folder, cls))
        if not images:
            raise DataError(f"class folder {os.path.join(folder, cls)} holds no .jpg/.jpeg/.png "
                            "images: add images or remove the folder")
        paths += images
        labels += [names.index(cls)] * len(images)
    return names, FolderSplit(np.asarray(paths), np.asarray(labels, np.int64))


def scan_image_folder(root: str) -> FolderIndex:
    """Lists every image and its label; fails with the folder to fix if the layout is wrong."""
    if not os.path.isdir(root):
        raise DataError(f"{root} is not a folder; an image folder dataset is laid out as {LAYOUT}")
    class_names, train = _scan_split(root, "train", None)
    _, test = _scan_split(root, "test", class_names)
    return FolderIndex(root, class_names, train, test)


def first_image_side(paths) -> int:
    """The shorter side of the first image: the natural model size of a folder of equal images."""
    from PIL import Image

    with Image.open(paths[0]) as image:
        return min(image.size)


def load_images(paths, size: int) -> np.ndarray:
    """uint8 (N, size, size, 3): each image centre-cropped to a square and resized if needed."""
    from PIL import Image

    from suite.data.image_files import eight_bit

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = eight_bit(image, path).convert("RGB")
                w, h = image.size
                if (w, h) != (size, size):
                    side = min(w, h)
                    box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
                    image = image.resize((size, size), Image.BILINEAR, box=box)
                out[i] = np.asarray(image, np.uint8)
        except OSError as e:  # PIL's error for truncated or non-image files
            raise DataError(f"{path}: not a readable image ({e})") from e
    return out


def decode_file(path):
    """tf op: image file path -> uint8 [H, W, 3] (PNG or JPEG; grey and RGBA become RGB)."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image
