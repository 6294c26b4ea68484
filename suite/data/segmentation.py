"""Semantic-segmentation data: images with per-pixel class masks, from a folder or tfds.

A folder holds the images in `image/` (or `images/`) and the masks in `label/`, `labels/`,
`mask/` or `masks/`, paired by file name without extension (`image/7.png` <-> `label/7.tif`):
the layout of the ISBI 2012 challenge's PNGs and of most segmentation repositories. Masks are
single-channel images of class indices, or of pixel values that `class_values` maps to classes
(ISBI: 0 = membrane -> class 0, 255 = cell -> class 1). If the folder has `train/` and `test/`
parts, those are the split; otherwise the last `held_out` images in natural order (1, 2, ...,
10) are the test set, a fixed split that never depends on a seed.

Everything is checked before training: a missing mask, a mask whose size differs from its
image's, or a mask value outside the class set stops the run with an error naming the file.
"""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

from suite.data.image_files import read_image
from suite.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp")  # lossless only: JPEG would blur classes
IMAGE_DIRS = ("image", "images")
MASK_DIRS = ("label", "labels", "mask", "masks")
LAYOUT = ("<root>/image(s)/<name>.<png|jpg|tif> with <root>/label(s)|mask(s)/<name>.<png|tif>, "
          "optionally inside <root>/train and <root>/test")
AUGMENTATIONS = ("flip", "rotate90", "scale", "elastic")  # see segmentation_pipeline.py
# tfds sets: name -> (image feature, mask feature, value subtracted from masks, class names)
TFDS_SETS = {
    "oxford_iiit_pet": ("image", "segmentation_mask", 1, ["pet", "background", "border"]),
}


def parse_augmentations(names) -> tuple[str, ...]:
    """--augmentations' names, checked (without importing TensorFlow: flags are parsed first)."""
    names = tuple(n.strip().lower() for n in names if n.strip())
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation(s) {unknown}; choose from "
                         f"{', '.join(AUGMENTATIONS)}")
    return names


@dataclasses.dataclass
class SegmentationSplit:
    images: list  # uint8 (H, W, C) arrays; sizes may differ
    masks: list  # uint8 (H, W) class indices
    names: list  # where each pair came from

    @property
    def count(self) -> int:
        return len(self.images)


@dataclasses.dataclass
class SegmentationData:
    name: str
    class_names: list
    channels: int
    train: SegmentationSplit
    test: SegmentationSplit

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def natural_key(name: str):
    """'10.png' after '9.png'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _find_dir(root: str, candidates) -> str | None:
    for name in candidates:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    return None


def _files_by_stem(folder: str, extensions) -> dict:
    found: dict = {}
    for f in sorted(os.listdir(folder)):
        if f.lower().endswith(extensions) and not f.startswith("."):
            stem = os.path.splitext(f)[0]
            if stem in found:
                raise DataError(f"{found[stem]} and {os.path.join(folder, f)}: two files of one "
                                "name; images and masks pair by name, so keep one of them.")
            found[stem] = os.path.join(folder, f)
    return found


def read_mask(path: str) -> np.ndarray:
    """The mask's raw values, (H, W) int64; an RGB mask must be gray (R = G = B)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            array = np.asarray(im if im.mode != "P" else im.convert("L"))
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"{path}: not a readable mask image ({e}).") from e
    if array.ndim == 3:
        if not (array[..., :3] == array[..., :1]).all():
            raise DataError(f"{path}: a mask must be one channel of class values; this one is "
                            "color. Save masks as grayscale (mode L) or indexed PNGs.")
        array = array[..., 0]
    return array.astype(np.int64)


def to_classes(values: np.ndarray, path: str, class_values, num_classes: int) -> np.ndarray:
    """Raw mask values -> class indices (uint8), refusing any value outside the class set."""
    if class_values:
        lookup = {int(v): i for i, v in enumerate(class_values)}
        found = np.unique(values)
        unknown = [int(v) for v in found if int(v) not in lookup]
        if unknown:
            raise DataError(f"{path}: mask value(s) {unknown[:10]} are not in "
                            f"`class_values={','.join(str(v) for v in class_values)}`; add them, "
                            "or fix the mask.")
        classes = np.zeros(values.shape, np.uint8)
        for value, index in lookup.items():
            classes[values == value] = index
        return classes
    if values.min() < 0 or values.max() >= num_classes:
        raise DataError(f"{path}: mask values span {int(values.min())}..{int(values.max())} but "
                        f"there are {num_classes} classes (0..{num_classes - 1}); give "
                        "`class_values` to map pixel values to classes (e.g. 0,255).")
    return values.astype(np.uint8)


def _read_pairs(root: str, class_values, num_classes: int) -> SegmentationSplit:
    image_dir, mask_dir = _find_dir(root, IMAGE_DIRS), _find_dir(root, MASK_DIRS)
    if image_dir is None or mask_dir is None:
        raise DataError(f"{root}: expected {LAYOUT}; found no "
                        f"{'image(s)/' if image_dir is None else 'label(s)/ or mask(s)/'} "
                        "folder there.")
    images = _files_by_stem(image_dir, IMAGE_EXTENSIONS)
    masks = _files_by_stem(mask_dir, MASK_EXTENSIONS)
    if not images:
        raise DataError(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}).")
    split = SegmentationSplit([], [], [])
    for stem in sorted(images, key=natural_key):
        if stem not in masks:
            raise DataError(f"{images[stem]}: no mask for this image; expected "
                            f"{os.path.join(mask_dir, stem)}.<png|tif>. Add it or remove the "
                            "image.")
        image = read_image(images[stem])
        values = read_mask(masks[stem])
        if values.shape != image.shape[:2]:
            raise DataError(f"{masks[stem]}: mask is {values.shape[1]}x{values.shape[0]} but its "
                            f"image {images[stem]} is {image.shape[1]}x{image.shape[0]}; a mask "
                            "must have its image's size.")
        split.images.append(image)
        split.masks.append(to_classes(values, masks[stem], class_values, num_classes))
        split.names.append(images[stem])
    channels = {im.shape[-1] for im in split.images}
    if len(channels) > 1:
        raise DataError(f"{image_dir}: images mix grayscale and color; convert them to one kind.")
    return split


def load_mask_folder(root: str, class_names=None, class_values=None,
                     held_out: int = 6) -> SegmentationData:
    """Reads a folder of images and masks (see the module docstring) into memory."""
    if not os.path.isdir(root):
        raise DataError(f"`dataset={root}`: no such folder; expected {LAYOUT}.")
    class_values = [int(v) for v in class_values or ()]
    if class_names and class_values and len(class_names) != len(class_values):
        raise DataError(f"`class_names` has {len(class_names)} names but `class_values` has "
                        f"{len(class_values)} values; give one value per class.")
    num_classes = len(class_names or class_values or ()) or 256
    parts = [os.path.join(root, p) for p in ("train", "test")]
    if all(os.path.isdir(p) and _find_dir(p, MASK_DIRS) for p in parts):
        train, test = (_read_pairs(p, class_values, num_classes) for p in parts)
    else:
        every = _read_pairs(root, class_values, num_classes)
        if not 0 < held_out < every.count:
            raise DataError(f"{root}: {every.count} image/mask pairs; `held_out={held_out}` must "
                            f"leave at least one for training and hold out at least one.")
        cut = every.count - held_out
        train = SegmentationSplit(every.images[:cut], every.masks[:cut], every.names[:cut])
        test = SegmentationSplit(every.images[cut:], every.masks[cut:], every.names[cut:])
    if train.images[0].shape[-1] != test.images[0].shape[-1]:
        raise DataError(f"{root}: train and test images differ in channels; convert them.")
    if not class_names:
        count = len(class_values) or int(max(m.max() for m in train.masks + test.masks)) + 1
        class_names = [str(v) for v in class_values] if class_values else [
            str(i) for i in range(max(count, 2))]
    name = os.path.basename(os.path.normpath(root))
    if name in ("train", "training") or name == "":  # ISBI's .../isbi2012-em-membrane/train
        name = os.path.basename(os.path.dirname(os.path.normpath(root))) + "/" + name
    return SegmentationData(name, list(class_names),
                            train.images[0].shape[-1], train, test)


def load_tfds_segmentation(name: str, data_dir: str | None = None,
                           limit: int | None = None) -> SegmentationData:
    """A tensorflow-datasets segmentation set (TFDS_SETS), read into memory."""
    import tensorflow_datasets as tfds

    from suite.data.classification import _prepare_tfds

    if name.split(":")[0] not in TFDS_SETS:
        raise DataError(f"`dataset={name}`: not a folder, and not a tensorflow-datasets "
                        f"segmentation set this app knows ({', '.join(TFDS_SETS)}).")
    image_key, mask_key, offset, class_names = TFDS_SETS[name.split(":")[0]]
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        _prepare_tfds(name, builder, LAYOUT)  # fails in seconds offline, saying what to do
    splits = []
    for split in ("train", "test"):
        part = SegmentationSplit([], [], [])
        dataset = builder.as_dataset(split=split)
        for i, example in enumerate(tfds.as_numpy(dataset)):
            if limit is not None and i >= limit:
                break
            part.images.append(np.asarray(example[image_key], np.uint8))
            part.masks.append((np.asarray(example[mask_key])[..., 0] - offset).astype(np.uint8))
            part.names.append(f"{name}/{split}/{i}")
        splits.append(part)
    return SegmentationData(name, class_names, splits[0].images[0].shape[-1], *splits)


def load_segmentation(dataset: str, data_dir=None, class_names=None, class_values=None,
                      held_out: int = 6) -> SegmentationData:
    if os.path.sep in dataset or os.path.isdir(dataset):
        return load_mask_folder(dataset, class_names, class_values, held_out)
    return load_tfds_segmentation(dataset, data_dir)
