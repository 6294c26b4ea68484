"""A local image dataset laid out one folder per class: `<root>/{train,test}/<class>/<image>`.

The layout of Keras's image_dataset_from_directory and torchvision's ImageFolder, with the split
made explicit so the test set never depends on a seed. Class names are the train/ folder names,
sorted (their index is the label). Files other than .jpg/.jpeg/.png are ignored.

Two ways to read the images, chosen by the caller: `load_images` decodes everything into one
uint8 array (small datasets: CIFAR-sized, decoded once, fastest to train from), `decode_file`
is the tf op of a streaming pipeline that reads and decodes per step (ImageNet-sized folders
that do not fit in memory). Everything comes out RGB. The scan checks each file's first bytes,
so a file that is no image fails at once, named, in both ways.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from suite.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# The first bytes of the formats tf.io.decode_image reads (PNG, JPEG, BMP, GIF).
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"GIF87a", b"GIF89a")
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


def _check_headers(paths: list[str]) -> None:
    """DataError naming the files that are no image at all (by their first bytes), so that a
    streamed dataset fails at the start, not with a decoder error mid-training."""
    bad = []
    for path in paths:
        with open(path, "rb") as f:
            if not f.read(8).startswith(IMAGE_MAGIC):
                bad.append(path)
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise DataError(f"{', '.join(bad[:5])}{more}: not a readable image (no PNG, JPEG, BMP or "
                        "GIF data, whatever the file name says); replace or delete "
                        f"{'it' if len(bad) == 1 else 'them'}")


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
    _check_headers(paths)
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


def load_images(paths, size: int, crop_fraction: float = 1.0) -> np.ndarray:
    """uint8 (N, size, size, 3): each image of another size centre-cropped as evaluation crops it
    (suite.data.augment.prepare_for_eval, with `crop_fraction`), so that in-memory and streamed
    folders evaluate on the same pixels."""
    from PIL import Image

    from suite.data.augment import prepare_for_eval
    from suite.data.image_files import eight_bit

    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                pixels = np.asarray(eight_bit(image, path).convert("RGB"), np.uint8)
        except OSError as e:  # PIL's error for truncated or non-image files
            raise DataError(f"{path}: not a readable image ({e})") from e
        if pixels.shape[:2] != (size, size):
            pixels = prepare_for_eval(pixels, size, crop_fraction).numpy()
        out[i] = pixels
    return out


def decode_file(path):
    """tf op: image file path -> uint8 [H, W, 3] (PNG or JPEG; grey and RGBA become RGB)."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image
