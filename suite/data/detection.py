"""Object-detection data: images with labelled boxes, from PASCAL VOC XML folders or tfds.

A VOC folder holds the XML annotations in `annotations/` or `Annotations/` and the images in
`images/` or `JPEGImages/` (the XML's <filename> names the image). Boxes are kept as xyxy pixel
coordinates of the original image (keras-cv's "xyxy"), classes as ids 1..N in `class_names`
order (0 is Faster R-CNN's background).

Problems are handled, and reported rather than crashed on where the data stays usable:
- boxes reaching outside the image are clipped to it; boxes empty after clipping are dropped;
- images without objects are kept (they teach the detector what background is);
- an XML that does not parse, lacks a field or names a missing image, and (with `class_names`
  given) an object of an unknown class, is an error naming each such file.

The split is fixed: the image names in `test_files` (a text file of names, or a CSV whose
first column is the file name, such as the raccoon set's test_labels.csv) are the held-out set;
without it, every `held_out_every`-th image in natural name order is.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import xml.etree.ElementTree as ET

import numpy as np

from suite.data.image_files import read_image
from suite.data.problems import described, note, problem
from suite.data.segmentation import natural_key
from suite.errors import DataError

ANNOTATION_DIRS = ("annotations", "Annotations")
IMAGE_DIRS = ("images", "JPEGImages")
TFDS_SETS = ("voc", "coco")
MAX_ERRORS_SHOWN = 8


@dataclasses.dataclass
class Annotation:
    filename: str
    boxes: np.ndarray  # float32 [n, 4] xyxy pixels
    labels: list  # class name per box


@dataclasses.dataclass
class DetectionSplit:
    names: list
    images: list  # uint8 [H, W, 3] each, original size
    boxes: list  # float32 [n, 4] xyxy pixels each
    classes: list  # int32 [n] each, 1..num_classes

    @property
    def count(self) -> int:
        return len(self.names)

    def subset(self, indices) -> "DetectionSplit":
        return DetectionSplit(*([part[i] for i in indices] for part in (
            self.names, self.images, self.boxes, self.classes)))


@dataclasses.dataclass
class DetectionData:
    name: str
    class_names: list
    train: DetectionSplit
    test: DetectionSplit
    problems: dict  # what was clipped, dropped or empty: counts and a few examples

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        boxes = sum(len(b) for b in self.train.boxes)
        parts = [f"{self.name}: {self.train.count} training / {self.test.count} held-out images, "
                 f"{boxes} training boxes, classes {self.class_names}"]
        return "; ".join(parts + described(self.problems))


def _text(node, path: str, field: str) -> str:
    found = node.find(field)
    if found is None or found.text is None or not found.text.strip():
        raise DataError(f"{path}: no <{field}>")
    return found.text.strip()


def _number(node, path: str, field: str) -> float:
    text = _text(node, path, field)
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}: <{field}> is {text!r}, not a number") from None
    if not np.isfinite(value):
        raise DataError(f"{path}: <{field}> is {text!r}, not a finite number")
    return value


def read_voc_annotation(path: str) -> Annotation:
    """One VOC XML file; raises DataError naming the file and what is wrong."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: not valid XML ({e})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e})") from None
    filename = _text(root, path, "filename")
    boxes, labels = [], []
    for obj in root.findall("object"):
        labels.append(_text(obj, path, "name"))
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{path}: an <object> ({labels[-1]}) has no <bndbox>")
        boxes.append([_number(box, path, k) for k in ("xmin", "ymin", "xmax", "ymax")])
        xmin, ymin, xmax, ymax = boxes[-1]
        if xmin >= xmax or ymin >= ymax:
            raise DataError(f"{path}: object {len(boxes)} ({labels[-1]}) spans x {xmin:g}.."
                            f"{xmax:g}, y {ymin:g}..{ymax:g}: an empty or swapped <bndbox>")
    return Annotation(filename, np.asarray(boxes, np.float32).reshape(-1, 4), labels)


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """Boxes clipped to the image, a mask of those still non-empty, and whether any moved."""
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(boxes[:, 0::2], 0, width)
    clipped[:, 1::2] = np.clip(boxes[:, 1::2], 0, height)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped, keep, bool((clipped != boxes).any())


def read_split_file(path: str) -> set:
    """Image names listed in a text file (one per line) or a CSV's first column."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and r[0].strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"`test_files={path}`: cannot be read ({e})") from None
    names = {os.path.basename(r[0].strip()) for r in rows}
    names.discard("filename")  # a CSV header
    if not names:
        raise DataError(f"`test_files={path}` lists no image names")
    return names


def _find_dir(root: str, candidates, what: str) -> str:
    for name in candidates:
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    raise DataError(f"{root}: no {what} folder (expected one of {', '.join(candidates)}/)")


def load_voc_folder(root: str, class_names=None, test_files: str | None = None,
                    held_out_every: int = 5, limit: int = 0) -> DetectionData:
    """A VOC XML folder (see the module docstring), every image read into memory."""
    if not os.path.isdir(root):
        raise DataError(f"`dataset={root}`: no such folder (a PASCAL VOC folder with "
                        "annotations/ and images/, or a tfds name: voc, coco)")
    xml_dir = _find_dir(root, ANNOTATION_DIRS, "annotations")
    image_dir = _find_dir(root, IMAGE_DIRS, "images")
    files = sorted((f for f in os.listdir(xml_dir) if f.lower().endswith(".xml")),
                   key=natural_key)
    if limit:
        files = files[:limit]
    if not files:
        raise DataError(f"{xml_dir}: no .xml annotation files")
    annotations, errors = [], []
    for f in files:
        try:
            annotation = read_voc_annotation(os.path.join(xml_dir, f))
            if not os.path.isfile(os.path.join(image_dir, annotation.filename)):
                raise DataError(f"{os.path.join(xml_dir, f)}: its image "
                                f"{annotation.filename} is not in {image_dir}")
            annotations.append(annotation)
        except DataError as e:
            errors.append(str(e))
    known = list(class_names) if class_names else sorted(
        {label for a in annotations for label in a.labels})
    for a in annotations:
        unknown = sorted(set(a.labels) - set(known))
        if unknown:
            errors.append(f"{a.filename}: class {', '.join(unknown)} is not in `class_names` "
                          f"({', '.join(known)})")
    if errors:
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(
            errors) > MAX_ERRORS_SHOWN else ""
        raise DataError(f"{len(errors)} bad annotation file(s) in {root}; fix or remove them:"
                        f"\n  {shown}{more}")
    if not known:
        raise DataError(f"{root}: no annotation names any object; nothing to detect")
    problems = {k: problem() for k in ("boxes_clipped_to_their_image",
                                        "boxes_dropped_outside_their_image",
                                        "images_without_objects")}
    split = DetectionSplit([], [], [], [])
    for a in annotations:
        image = read_image(os.path.join(image_dir, a.filename))
        if image.shape[-1] == 1:
            image = np.repeat(image, 3, axis=-1)
        boxes, keep, moved = clip_boxes(a.boxes, *image.shape[:2])
        if moved:
            note(problems, "boxes_clipped_to_their_image", a.filename)
        if not keep.all():
            note(problems, "boxes_dropped_outside_their_image", a.filename)
        if not keep.any():
            note(problems, "images_without_objects", a.filename)
        split.names.append(a.filename)
        split.images.append(image)
        split.boxes.append(boxes[keep])
        split.classes.append(np.asarray([known.index(label) + 1 for label, k in
                                         zip(a.labels, keep) if k], np.int32))
    if test_files:
        listed = read_split_file(test_files)
        held = [i for i, n in enumerate(split.names) if n in listed]
        missing = listed - set(split.names)
        if missing and not limit:
            raise DataError(f"`test_files={test_files}` names {len(missing)} image(s) without an "
                            f"annotation in {xml_dir}, e.g. {sorted(missing)[:3]}")
    else:
        held = list(range(held_out_every - 1, split.count, held_out_every))
    train = sorted(set(range(split.count)) - set(held))
    if not held or not train:
        raise DataError(f"{root}: the split leaves {len(train)} training and {len(held)} "
                        "held-out images; both need at least one")
    name = os.path.basename(os.path.normpath(root))
    return DetectionData(name, known, split.subset(train), split.subset(held), problems)


def load_tfds_detection(name: str, data_dir: str | None = None, limit: int = 0) -> DetectionData:
    """tfds `voc` (2007: trainval for training, test held out) or `coco` (2017: train and
    validation), boxes turned from tfds's relative yxyx into xyxy pixels."""
    import tensorflow_datasets as tfds

    from suite.data import hosts

    family = name.split("/")[0].split(":")[0]
    if family not in TFDS_SETS:
        raise DataError(f"`dataset={name}`: not a folder, and not a tensorflow-datasets "
                        f"detection set this app knows ({', '.join(TFDS_SETS)})")
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        if not hosts.reachable(hosts.TFDS_HOST):
            raise DataError(f"{name} is not prepared in {builder.data_dir} and "
                            f"{hosts.TFDS_HOST[0]} is "
                            "unreachable (offline?); use a local PASCAL VOC folder: "
                            "`dataset=<folder with annotations/ and images/>`, e.g. "
                            "../shared/data/raccoon-detection")
        builder.download_and_prepare()
    class_names = list(builder.info.features["objects"]["label"].names)
    splits = ("train", "test") if family == "voc" else ("train", "validation")
    problems = {k: problem() for k in ("images_without_objects",
                                        "objects_without_both_box_and_label")}
    parts = []
    for split in splits:
        part = DetectionSplit([], [], [], [])
        dataset = builder.as_dataset(split=f"{split}[:{limit}]" if limit else split)
        for i, example in enumerate(tfds.as_numpy(dataset)):
            image = np.asarray(example["image"], np.uint8)
            height, width = image.shape[:2]
            boxes = np.asarray(example["objects"]["bbox"], np.float32).reshape(-1, 4)
            labels = np.asarray(example["objects"]["label"], np.int32).reshape(-1)
            if len(boxes) != len(labels):
                note(problems, "objects_without_both_box_and_label", f"{split}/{i}")
            count = min(len(boxes), len(labels))
            ymin, xmin, ymax, xmax = boxes[:count].T
            boxes = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], -1)
            boxes, keep, _ = clip_boxes(boxes, height, width)
            if not keep.any():
                note(problems, "images_without_objects", f"{split}/{i}")
            part.names.append(f"{name}/{split}/{i}")
            part.images.append(image if image.shape[-1] == 3 else np.repeat(image, 3, -1))
            part.boxes.append(boxes[keep])
            part.classes.append(labels[:count][keep] + 1)
        parts.append(part)
    return DetectionData(name, class_names, *parts, problems)


def load_detection(dataset: str, class_names=None, test_files=None, held_out_every: int = 5,
                   data_dir: str | None = None, limit: int = 0) -> DetectionData:
    family = dataset.split("/")[0].split(":")[0]
    if os.path.isdir(dataset) or (os.path.sep in dataset and family not in TFDS_SETS):
        return load_voc_folder(dataset, class_names, test_files, held_out_every, limit)
    return load_tfds_detection(dataset, data_dir, limit)
