"""Image-captioning data: images with several human captions each, from a folder or tfds.

A folder holds the images (in `images/`, `Images/`, `Flicker8k_Dataset/` or the folder itself)
and one captions file, in either of the two layouts Flickr8k is shipped in:

    image,caption                                  (CSV with that header: Kaggle's captions.txt)
    1000268201_693b08cb0e.jpg,A child in a pink dress is climbing up a set of stairs .
    1000268201_693b08cb0e.jpg#0<TAB>A child in a pink dress ...     (Flickr8k.token.txt)

Problems are reported, not crashed on: images without captions and captions whose image is not
on disk are left out and counted, empty captions dropped and counted (`CaptionData.problems`).
The split is by image and fixed: the images with captions sorted by file name, the last
`test_images` the test set, the `validation_images` before them the validation set, the rest
training (Flickr8k's file names are photo ids, so the order is unrelated to content).

The captions' text is handled by suite.text.vocabulary.
"""
from __future__ import annotations

import csv
import dataclasses
import os

import numpy as np

from suite.data.problems import described, problem
from suite.errors import DataError
from suite.text.vocabulary import clean_caption

IMAGE_DIRS = ("images", "Images", "Flicker8k_Dataset", "Flickr8k_Dataset")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CAPTION_FILES = ("captions.csv", "captions.txt", "Flickr8k.token.txt")
FORMATS = ("a CSV with the header 'image,caption', or Flickr8k.token.txt lines "
           "'<image>#<n><TAB><caption>'")
TFDS_SETS = ("coco_captions",)


@dataclasses.dataclass
class CaptionSplit:
    names: list  # image file names
    images: np.ndarray  # uint8 [N, size, size, 3]
    captions: list  # per image: its raw captions

    @property
    def count(self) -> int:
        return len(self.names)

    def references(self) -> list[list[list[str]]]:
        """Per image, every caption as a list of words (BLEU's references)."""
        return [[clean_caption(c).split() for c in caps] for caps in self.captions]


@dataclasses.dataclass
class CaptionData:
    name: str
    train: CaptionSplit
    validation: CaptionSplit
    test: CaptionSplit
    problems: dict  # what was left out, counted, with a few examples

    def summary(self) -> str:
        parts = [f"{self.name}: {self.train.count} training / {self.validation.count} validation "
                 f"/ {self.test.count} test images, "
                 f"{sum(len(c) for c in self.train.captions)} training captions"]
        return "; ".join(parts + described(self.problems, prefix="left out "))


def read_captions_file(path: str) -> tuple[dict[str, list[str]], int]:
    """{image name: [captions]} in file order, and how many empty captions were dropped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's CSVs
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the captions file ({e}).") from e
    lines = text.splitlines()
    first = lines[0].strip().lower().replace(" ", "") if lines else ""
    rows = []
    if first.startswith("image,caption"):
        for row in csv.reader(lines[1:]):
            if row:
                rows.append((row[0].strip(), ",".join(row[1:]).strip()))
    elif lines and "\t" in lines[0] and "#" in lines[0].split("\t")[0]:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if "\t" not in line or "#" not in line.split("\t")[0]:
                raise DataError(f"{path}, line {number}: expected '<image>#<n><TAB><caption>', "
                                f"got {line[:80]!r}")
            key, caption = line.split("\t", 1)
            rows.append((key.rsplit("#", 1)[0].strip(), caption.strip()))
    else:
        raise DataError(f"{path}: not a captions file; expected {FORMATS}. Its first line is "
                        f"{(lines[0][:80] if lines else '(empty file)')!r}.")
    captions: dict[str, list[str]] = {}
    empty = 0
    for name, caption in rows:
        if not clean_caption(caption):
            empty += 1
            continue
        captions.setdefault(name, []).append(caption)
    return captions, empty


def find_captions_file(folder: str, captions_file: str | None) -> str:
    if captions_file:
        path = captions_file if os.path.isabs(captions_file) or os.path.exists(
            captions_file) else os.path.join(folder, captions_file)
        if not os.path.isfile(path):
            raise DataError(f"`captions_file={captions_file}`: no such file (looked in {folder})")
        return path
    for name in CAPTION_FILES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    candidates = sorted(n for n in os.listdir(folder) if n.lower().startswith("captions")
                        and n.lower().endswith((".csv", ".txt")))
    if len(candidates) == 1:
        return os.path.join(folder, candidates[0])
    if candidates:
        raise DataError(f"{folder} holds several captions files ({', '.join(candidates)}); "
                        "choose one with `captions_file`")
    raise DataError(f"{folder} holds no captions file ({', '.join(CAPTION_FILES)} or "
                    f"captions*.csv); name it with `captions_file`. Expected {FORMATS}.")


def find_image_dir(folder: str) -> str:
    for name in IMAGE_DIRS:
        if os.path.isdir(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return folder


def squeeze_to_square(image, size: int):
    """The one resize of a captioned image, in training, evaluation and the export's graph
    alike: the whole frame to size x size (captions may speak of anything in it, so nothing is
    cropped), bilinear and antialiased, rounded to whole levels; float32 [size, size, C]."""
    import tensorflow as tf

    resized = tf.image.resize(tf.cast(image, tf.float32), (size, size), method="bilinear",
                              antialias=True)
    return tf.round(tf.clip_by_value(resized, 0.0, 255.0))


def read_resized(path: str, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: the image file through squeeze_to_square."""
    from suite.data.image_files import read_image

    image = read_image(path)
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return np.asarray(squeeze_to_square(image, size)).astype(np.uint8)


def split_by_image(names: list, images: np.ndarray, captions: list, validation_images: int,
                   test_images: int, source: str) -> tuple[CaptionSplit, ...]:
    """Training, validation and test parts, fixed by the (sorted) order of `names`."""
    if len(names) < validation_images + test_images + 1:
        raise DataError(f"{source}: {len(names)} captioned images cannot give "
                        f"{validation_images} validation and {test_images} test images plus "
                        "training ones; lower `validation_images` / `test_images`")
    cut_test, cut_val = len(names) - test_images, len(names) - test_images - validation_images

    def part(lo, hi):
        return CaptionSplit(names[lo:hi], images[lo:hi], captions[lo:hi])

    return part(0, cut_val), part(cut_val, cut_test), part(cut_test, len(names))


def load_caption_folder(folder: str, image_size: int, captions_file: str | None = None,
                        validation_images: int = 100, test_images: int = 100,
                        limit: int = 0) -> CaptionData:
    if not os.path.isdir(folder):
        raise DataError(f"`dataset={folder}`: no such folder (expected a folder of images with "
                        f"a captions file, or one of {', '.join(TFDS_SETS)})")
    path = find_captions_file(folder, captions_file)
    captions, empty = read_captions_file(path)
    image_dir = find_image_dir(folder)
    on_disk = {n for n in os.listdir(image_dir) if n.lower().endswith(IMAGE_EXTENSIONS)}
    names = sorted(on_disk & set(captions))
    if limit:
        names = names[:limit]
    if not names:
        raise DataError(f"{path}: none of its {len(captions)} images is in {image_dir} "
                        f"({len(on_disk)} images there); is `dataset` the right folder?")
    missing = set(captions) - on_disk
    problems = {"captions_without_images": {"count": sum(len(captions[n]) for n in missing),
                                            "examples": problem(missing)["examples"]},
                "images_without_captions": problem(on_disk - set(captions)),
                "empty_captions": {"count": empty, "examples": []}}
    images = np.stack([read_resized(os.path.join(image_dir, n), image_size) for n in names])
    parts = split_by_image(names, images, [captions[n] for n in names], validation_images,
                           test_images, path)
    return CaptionData(os.path.basename(os.path.normpath(folder)), *parts, problems)


def load_caption_tfds(name: str, image_size: int, data_dir: str | None,
                      validation_images: int, test_images: int, limit: int) -> CaptionData:
    """tfds `coco_captions` (its train split, then the same fixed split by image id)."""
    import tensorflow_datasets as tfds

    from suite.data import hosts

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared() and not hosts.reachable(hosts.TFDS_HOST):
        raise DataError(f"{name} is not prepared in {builder.data_dir} and {hosts.TFDS_HOST[0]} is "
                        "unreachable (offline?); use a local folder: `dataset=<folder with "
                        "images and a captions file>`, e.g. ../shared/data/flickr8k-subset")
    builder.download_and_prepare()
    rows = []
    split = "train" if not limit else f"train[:{limit}]"
    for example in tfds.as_numpy(builder.as_dataset(split=split)):
        texts = [t.decode() for t in np.asarray(example["captions"]["text"]).ravel()]
        texts = [t for t in texts if clean_caption(t)]
        if texts:
            image = squeeze_to_square(example["image"], image_size)
            key = str(example.get("image/id", len(rows)))
            rows.append((key, np.asarray(image).astype(np.uint8), texts))
    rows.sort(key=lambda r: r[0])
    names, images, captions = zip(*rows)
    parts = split_by_image(list(names), np.stack(images), list(captions), validation_images,
                           test_images, name)
    empty = {"count": 0, "examples": []}
    return CaptionData(name, *parts, {"empty_captions": empty})


def load_captions(dataset: str, image_size: int, captions_file: str | None = None,
                  data_dir: str | None = None, validation_images: int = 100,
                  test_images: int = 100, limit: int = 0) -> CaptionData:
    if dataset in TFDS_SETS:
        return load_caption_tfds(dataset, image_size, data_dir, validation_images, test_images,
                                 limit)
    return load_caption_folder(dataset, image_size, captions_file, validation_images,
                               test_images, limit)
