"""`--dataset` for the image classifier: a tensorflow-datasets name or a local folder/zip.

Small datasets (CIFAR) are decoded once into uint8 arrays; large ones (ImageNet, big folders)
stream from files or tfds records, decoded per step. Either way the app gets the same
ClassificationData and trains from the same tf.data pipelines (`train_dataset`, `eval_dataset`):
shuffle, repeat, per-image augmentation (suite.data.augment) with a per-element seed, batch.
`classes` keeps a subset of classes, relabelled 0..k-1 in the given order (transfer learning);
`train_examples_per_class` keeps a few labels per class (few-label fine-tuning). The validation
examples that choose a checkpoint are the set's own validation split where it has one beside
its test split, else a stratified share of the training examples (suite.data.holdout).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable

import numpy as np

from suite.errors import DataError

# What a tfds builder's info cannot say: a sensible default input size and the host its files
# come from (None: a manual download), for the offline check. Every other image-classification
# set works without an entry (its size then defaults to its images' own, else 224).
TFDS_HINTS = {
    "cifar10": (32, ("www.cs.toronto.edu", 443)),
    "cifar100": (32, ("www.cs.toronto.edu", 443)),
    "mnist": (28, ("storage.googleapis.com", 443)),
    "fashion_mnist": (28, ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80)),
    "svhn_cropped": (32, ("ufldl.stanford.edu", 80)),
    "imagenette": (224, ("s3.amazonaws.com", 443)),
    "imagenet2012": (224, None),
    "oxford_flowers102": (224, ("www.robots.ox.ac.uk", 443)),
    "food101": (224, ("data.vision.ee.ethz.ch", 443)),
    "caltech101": (224, ("data.caltech.edu", 443)),
    "oxford_iiit_pet": (224, ("www.robots.ox.ac.uk", 443)),
}
DEFAULT_HOST = ("storage.googleapis.com", 443)  # tfds's own mirror, for sets without a hint
HELD_OUT_PERCENT = 10  # a set with neither test nor validation split tests on train's last 10%
DATASET_FORMS = (
    "a tensorflow-datasets image-classification name (cifar10, cifar100, mnist, svhn_cropped, "
    "oxford_flowers102, imagenette, imagenet2012, ...), a folder laid out as "
    "<root>/train/<class>/<image> and <root>/test/<class>/<image>, or a zip of CIFAR-10 images "
    "in that layout (e.g. ../shared/data/cifar10-subset/cifar10_jpg_test10000_train20000.zip)")
IN_MEMORY_BYTES = 2 << 30  # datasets whose decoded train+test images exceed this stream instead
_TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_.-]+)?(:[0-9.*]+)?$")


@dataclasses.dataclass
class Split:
    """One split: in-memory `images`, or `paths` of files, or a tfds `stream`; plus labels."""
    count: int
    labels: np.ndarray | None = None
    images: np.ndarray | None = None
    paths: np.ndarray | None = None
    stream: Callable | None = None  # () -> unbatched tf.data.Dataset of (uint8 image, label)


@dataclasses.dataclass
class ClassificationData:
    name: str
    class_names: list[str]
    image_size: int
    train: Split
    test: Split
    image_channels: int = 0  # 0: from the in-memory arrays, else 3 (files decode as RGB)
    test_split: str = "test"  # where the test examples came from (tfds split expression)
    validation: Split | None = None  # what chooses the checkpoint; None: nothing held out
    validation_source: str = ""  # where the validation examples came from, in words

    @property
    def in_memory(self) -> bool:
        return self.train.images is not None

    @property
    def channels(self) -> int:
        if self.image_channels:
            return self.image_channels
        return int(self.train.images.shape[-1]) if self.in_memory else 3

    @classmethod
    def from_arrays(cls, train, test, class_names=None, name="arrays"):
        """Wraps ((x_train, y_train), (x_test, y_test)) uint8 NHWC arrays (tests, benches)."""
        (x_train, y_train), (x_test, y_test) = train, test
        num = int(max(y_train.max(), y_test.max())) + 1
        return cls(name, list(class_names or [str(i) for i in range(num)]), int(x_train.shape[1]),
                   Split(len(x_train), np.asarray(y_train, np.int64), images=x_train),
                   Split(len(x_test), np.asarray(y_test, np.int64), images=x_test))


def dataset_form_error(value: str) -> str | None:
    """None if `value` can be a --dataset, else the message (used by the flag validator, which
    must not load tensorflow-datasets: a tfds name is checked when the data loads)."""
    if os.path.isdir(value) or (os.path.isfile(value) and value.lower().endswith(".zip")):
        return None
    if _TFDS_NAME.match(value) and os.sep not in value.split("/")[0]:
        return None
    return f"`dataset={value!r}` is neither a known dataset nor an existing folder or zip; use " \
           f"{DATASET_FORMS}"


def select(labels: np.ndarray, class_names: list[str], classes=(), per_class: int = 0,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(indices kept, their new labels, new class names); `per_class` examples drawn with `seed`."""
    classes = list(classes) or list(class_names)
    unknown = [c for c in classes if c not in class_names]
    if unknown:
        raise DataError(f"`classes` names {unknown}, which the dataset does not have; its classes "
                        f"are: {', '.join(class_names)}")
    rng = np.random.default_rng(seed)
    kept, new_labels = [], []
    for new, cls in enumerate(classes):
        idx = np.flatnonzero(labels == class_names.index(cls))
        if per_class:
            if len(idx) < per_class:
                raise DataError(f"class {cls!r} has {len(idx)} training examples, fewer than "
                                f"`train_examples_per_class={per_class}`")
            idx = np.sort(rng.choice(idx, per_class, replace=False))
        kept.append(idx)
        new_labels.append(np.full(len(idx), new, np.int64))
    order = np.argsort(np.concatenate(kept), kind="stable")  # keep the dataset's order
    return np.concatenate(kept)[order], np.concatenate(new_labels)[order], classes


def _take(split: Split, idx: np.ndarray, labels: np.ndarray | None = None) -> Split:
    """The examples `idx` of an in-memory or file split (with new `labels` if given)."""
    return Split(len(idx), split.labels[idx] if labels is None else labels,
                 images=None if split.images is None else split.images[idx],
                 paths=None if split.paths is None else split.paths[idx])


def _subset(split: Split, class_names, classes, per_class, seed) -> tuple[Split, list[str]]:
    idx, labels, names = select(split.labels, class_names, classes, per_class, seed)
    return _take(split, idx, labels), names


def held_out_count(count: int, fraction: float) -> int:
    """How many of `count` training examples a `fraction` holds out: at least one each side."""
    return min(max(1, round(count * fraction)), count - 1)


def hold_out(data: ClassificationData, fraction: float, seed: int) -> ClassificationData:
    """`data` with a stratified `fraction` of its in-memory or file training examples held out
    as its validation split (drawn with `seed`)."""
    if not fraction or data.validation is not None:
        return data
    from suite.data.holdout import stratified_split

    held = held_out_count(data.train.count, fraction)
    kept, out = stratified_split(data.train.labels, held, seed)
    return dataclasses.replace(
        data, train=_take(data.train, kept), validation=_take(data.train, out),
        validation_source=f"{held} training images held out ({100 * fraction:g}%, stratified, "
                          f"seed {seed})")


def _load_local(path: str, image_size: int, in_memory: bool | None, crop_fraction: float,
                validation_fraction: float = 0.0, seed: int = 0):
    from suite.data import image_folder

    if os.path.isfile(path):  # a zip: the CIFAR-10 layout of ../shared/data/cifar10-subset
        from suite.data.cifar10 import CLASS_NAMES, load_cifar10_local

        (x_train, y_train), (x_test, y_test) = load_cifar10_local(path)
        data = ClassificationData.from_arrays((x_train, y_train), (x_test, y_test),
                                              list(CLASS_NAMES), os.path.basename(path))
        if image_size not in (0, 32):
            raise DataError(f"{path} holds 32x32 CIFAR-10 images; use `image_size=32` (or 0)")
        return hold_out(data, validation_fraction, seed)
    index = image_folder.scan_image_folder(path)
    size = image_size or image_folder.first_image_side(index.train.paths)
    total = (len(index.train.paths) + len(index.test.paths)) * size * size * 3
    if in_memory is None:
        in_memory = total <= IN_MEMORY_BYTES
    files = {"train": Split(len(index.train.paths), index.train.labels, paths=index.train.paths),
             "test": Split(len(index.test.paths), index.test.labels, paths=index.test.paths)}
    source = ""
    if validation_fraction:  # held out by file, so they load with the evaluation's crop
        from suite.data.holdout import stratified_split

        held = held_out_count(files["train"].count, validation_fraction)
        kept, out = stratified_split(files["train"].labels, held, seed)
        files["train"], files["validation"] = _take(files["train"], kept), _take(files["train"],
                                                                               out)
        source = (f"{held} training images held out ({100 * validation_fraction:g}%, "
                  f"stratified, seed {seed})")
    splits = {}
    for key, s in files.items():
        if in_memory:  # the training crop for training images, the evaluation's for the rest
            crop = 1.0 if key == "train" else crop_fraction
            splits[key] = Split(s.count, s.labels,
                                images=image_folder.load_images(s.paths, size, crop))
        else:
            splits[key] = s
    return ClassificationData(os.path.basename(os.path.normpath(path)), index.class_names, size,
                              splits["train"], splits["test"],
                              validation=splits.get("validation"), validation_source=source)


@dataclasses.dataclass
class TfdsClassification:
    """What the suite needs of a tfds builder's info."""
    image_key: str
    label_key: str
    shape: tuple  # (H, W, C), H and W None for images of varying size
    class_names: list[str]
    train_split: str
    test_split: str
    validation_split: str | None = None  # the set's own, beside its test split


def available_splits(builder) -> set[str]:
    """The prepared dataset's split names (tfds's mock data reports none: then train and test)."""
    return set(builder.info.splits) or {"train", "test"}


def describe_tfds(name: str, info, splits: set[str]) -> TfdsClassification:
    """The image and label features, class names and train/test splits of tfds dataset `name`;
    DataError for a set that is not image classification."""
    import tensorflow_datasets as tfds

    features = info.features
    images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
    labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    if not images or not labels:
        missing = "image feature" if not images else "class-label (ClassLabel) feature"
        raise DataError(f"`dataset={name}` is not an image-classification set: it has no "
                        f"{missing} (its features: {', '.join(features)}). Use a set with an "
                        "Image and a ClassLabel feature, or a folder/zip of images by class")
    label_key = "label" if "label" in labels else labels[0]
    image_key = "image" if "image" in images else images[0]
    if "train" not in splits:
        raise DataError(f"`dataset={name}` has no 'train' split (its splits: {sorted(splits)})")
    if "test" in splits:
        train, test = "train", "test"
    elif "validation" in splits:
        train, test = "train", "validation"
    else:
        cut = 100 - HELD_OUT_PERCENT
        train, test = f"train[:{cut}%]", f"train[{cut}%:]"
    validation = "validation" if "validation" in splits and test != "validation" else None
    return TfdsClassification(image_key, label_key, tuple(features[image_key].shape),
                              list(features[label_key].names), train, test, validation)


def _prepare_tfds(name: str, builder, local_forms: str = DATASET_FORMS) -> None:
    """download_and_prepare, but fails in seconds (not ~3.5 minutes of retries) offline."""
    import tensorflow_datasets as tfds

    from suite.data import hosts

    manual = os.path.join(builder.data_dir_root, "downloads", "manual")
    base = name.split("/")[0].split(":")[0]
    _, host = TFDS_HINTS.get(base, (None, DEFAULT_HOST))
    needs_manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
    if (host is None or needs_manual) and not os.path.isdir(manual):
        raise DataError(f"{name} needs a manual download: put its archives in {manual} "
                        f"(or pass `data_dir=<tfds folder with downloads/manual/>`).\n"
                        f"{(builder.MANUAL_DOWNLOAD_INSTRUCTIONS or '').strip()}")
    if host is not None and not needs_manual and not hosts.reachable(host):
        raise DataError(f"{name} is not prepared in {builder.data_dir} and its download host "
                        f"{host[0]} is unreachable (offline?). Run once with network access, put "
                        f"its source files in {manual} (tensorflow-datasets looks there first), "
                        f"pass `data_dir=<a tfds folder where it is prepared>`, or use a local "
                        f"copy: `dataset=<folder or zip>`, i.e. {local_forms}")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual))


def _load_tfds(name: str, data_dir: str | None, image_size: int, in_memory: bool | None,
               crop_fraction: float, validation_fraction: float = 0.0, seed: int = 0):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from suite.data.augment import prepare_for_eval

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # noqa: BLE001 - tfds raises DatasetNotFoundError and others
        raise DataError(f"`dataset={name!r}` is not a tensorflow-datasets dataset nor an existing "
                        f"folder or zip ({str(e).splitlines()[0]}); use {DATASET_FORMS}") from e
    if not builder.is_prepared():  # refuse a non-classification set before downloading it
        describe_tfds(name, builder.info, {"train", "test"})
        _prepare_tfds(name, builder)
    meta = describe_tfds(name, builder.info, available_splits(builder))
    height, width, channels = meta.shape
    default_size = TFDS_HINTS.get(name.split("/")[0].split(":")[0], (None, None))[0]
    size = image_size or default_size or (height if height and height == width else 224)
    def size_of(split):  # from the split info
        return int(builder.as_dataset(split=split).cardinality())

    count = {split: size_of(split) for split in (meta.train_split, meta.test_split)}
    if in_memory is None:
        pixels = (height or size) * (width or size) * (channels or 3)
        in_memory = bool(height and width) and sum(count.values()) * pixels <= IN_MEMORY_BYTES
    if validation_fraction and meta.validation_split is None and not in_memory:
        meta = _sliced_validation(meta, validation_fraction)  # a stream is not indexable
        count[meta.train_split] = size_of(meta.train_split)
    if validation_fraction and meta.validation_split:
        count[meta.validation_split] = size_of(meta.validation_split)

    def pairs(split, shuffle=False):
        ds = builder.as_dataset(split=split, shuffle_files=shuffle)
        return ds.map(lambda e: (e[meta.image_key], e[meta.label_key]))

    def split_of(split):
        if in_memory:  # one batch of the whole split (batch_size=-1 aborts under tfds mocks)
            ds = pairs(split)
            if not (height and width):  # images of varying size: stacked at the model's size
                crop = crop_fraction if split != meta.train_split else 1.0
                ds = ds.map(lambda x, y: (tf.cast(prepare_for_eval(x, size, crop), tf.uint8), y))
            x, y = next(iter(tfds.as_numpy(ds.batch(max(count[split], 1)))))
            return Split(len(y), y.astype(np.int64), images=x.astype(np.uint8))
        return Split(count[split], stream=lambda: pairs(split, shuffle=split == meta.train_split))

    data = ClassificationData(name, meta.class_names, size, split_of(meta.train_split),
                              split_of(meta.test_split), image_channels=channels or 3,
                              test_split=meta.test_split)
    if validation_fraction and meta.validation_split:
        data = dataclasses.replace(
            data, validation=split_of(meta.validation_split),
            validation_source=f"{name}'s {meta.validation_split!r} split")
    return hold_out(data, validation_fraction, seed) if in_memory else data


def _sliced_validation(meta: TfdsClassification, fraction: float) -> TfdsClassification:
    """A streamed set without a validation split holds out the end of its training split
    (tfds shuffles records when it prepares a set; not stratified: a stream has no index)."""
    percent = max(1, round(100 * fraction))
    end = 100 - HELD_OUT_PERCENT if meta.train_split != "train" else 100
    return dataclasses.replace(meta, train_split=f"train[:{end - percent}%]",
                               validation_split=f"train[{end - percent}%:{end}%]")


def load_classification(dataset: str, data_dir: str | None = None, image_size: int = 0,
                        classes=(), train_examples_per_class: int = 0, seed: int = 0,
                        in_memory: bool | None = None, crop_fraction: float = 1.0,
                        validation_fraction: float = 0.0) -> ClassificationData:
    """The dataset `dataset` names, with `classes` / `train_examples_per_class` applied, and
    with `validation_fraction` of its training examples held out unless it has a validation
    split of its own (0: no validation split).

    `data_dir` is the tensorflow-datasets folder for tfds names; `in_memory=None` decides by size.
    In-memory images of a folder, or of a tfds set of varying size, are stored at the model's size
    as augment.prepare_for_eval prepares them: the test split with `crop_fraction` (pass
    eval_dataset the same), the training split with the training crop (1.0), so that in-memory
    and streamed test sets evaluate on the same pixels.
    """
    error = dataset_form_error(dataset)
    if error:
        raise DataError(error)
    is_path = os.path.isdir(dataset) or os.path.isfile(dataset)
    data = (_load_local(dataset, image_size, in_memory, crop_fraction, validation_fraction, seed)
            if is_path else _load_tfds(dataset, data_dir, image_size, in_memory, crop_fraction,
                                       validation_fraction, seed))
    return subset(data, classes, train_examples_per_class, seed)


def subset(data: ClassificationData, classes=(), train_examples_per_class: int = 0,
           seed: int = 0) -> ClassificationData:
    """Only `classes` (relabelled in that order), and at most N training examples of each."""
    if not classes and not train_examples_per_class:
        return data
    if data.train.stream is not None:
        return _subset_streams(data, classes, train_examples_per_class)
    train, names = _subset(data.train, data.class_names, classes, train_examples_per_class, seed)
    test, _ = _subset(data.test, data.class_names, classes, 0, seed)
    validation = (None if data.validation is None
                  else _subset(data.validation, data.class_names, classes, 0, seed)[0])
    return dataclasses.replace(data, class_names=names, train=train, test=test,
                               validation=validation)


def _subset_streams(data: ClassificationData, classes, per_class: int) -> ClassificationData:
    """--classes / --train_examples_per_class on tfds streams: relabel, filter, count per class.

    Streams are not indexable, so the kept examples are the first `per_class` of each class in
    record order, and the epoch length is estimated from the split size (the stream repeats).
    """
    import tensorflow as tf

    _, _, names = select(np.arange(len(data.class_names)), data.class_names, classes)
    mapping = np.full(len(data.class_names), -1, np.int64)
    mapping[[data.class_names.index(c) for c in names]] = np.arange(len(names))
    fraction = len(names) / len(data.class_names)

    def subset(split: Split, limit: int) -> Split:
        def stream():
            ds = split.stream().map(lambda x, y: (x, tf.gather(mapping, y)))
            ds = ds.filter(lambda x, y: y >= 0)
            if limit:
                ds = ds.scan(tf.zeros([len(names)], tf.int64), lambda counts, xy: (
                    counts + tf.one_hot(xy[1], len(names), dtype=tf.int64),
                    (xy[0], xy[1], counts[xy[1]] < limit)))
                ds = ds.filter(lambda x, y, keep: keep).map(lambda x, y, keep: (x, y))
            return ds

        count = limit * len(names) if limit else max(1, int(split.count * fraction))
        return Split(count, stream=stream)

    validation = None if data.validation is None else subset(data.validation, 0)
    return dataclasses.replace(data, class_names=names, train=subset(data.train, per_class),
                               test=subset(data.test, 0), validation=validation)


def training_sample(data: ClassificationData, count: int, seed: int) -> Split:
    """`count` training examples, each class's share drawn with `seed`: what the learning
    curves' inference-mode training accuracy is measured on, the same images every epoch. A
    folder or zip lists its images class by class, so its first N would be one class; a
    streamed tfds set has no index, and gives its first `count` records (tfds shuffles records
    when it prepares a set)."""
    from suite.data.holdout import stratified_sample

    split = data.train
    if split.stream is not None:
        n = min(count, split.count)
        return Split(n, stream=lambda: split.stream().take(n))
    return _take(split, stratified_sample(split.labels, count, seed))


# -- tf.data pipelines ----------------------------------------------------------------------

def _elements(split: Split, shuffle_seed: int | None):
    """Unbatched (uint8 image, int64 label); shuffled before decoding when a seed is given."""
    import tensorflow as tf

    from suite.data.image_folder import decode_file

    if split.stream is not None:
        ds = split.stream()
        return ds if shuffle_seed is None else ds.shuffle(10_000, seed=shuffle_seed)
    source = split.images if split.images is not None else split.paths
    ds = tf.data.Dataset.from_tensor_slices((source, split.labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(split.count, seed=shuffle_seed, reshuffle_each_iteration=True)
    if split.paths is not None:
        ds = ds.map(lambda p, y: (decode_file(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def _finish(ds, batch_size: int, drop_remainder: bool):
    import tensorflow as tf

    ds = ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()  # files are not split per worker: every worker reads every N-th
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def train_dataset(data: ClassificationData, batch_size: int, seed: int, augmentations=()):
    """Endless shuffled batches of (float32 [B, S, S, 3] pixels 0..255, int64 labels)."""
    import tensorflow as tf

    from suite.data.augment import augment

    size, names = data.image_size, tuple(augmentations)
    ds = _elements(data.train, seed).repeat()
    # One [2] seed per element, from a stream that itself depends only on --seed.
    ds = tf.data.Dataset.zip((ds, tf.data.Dataset.random(seed=seed).batch(2)))
    ds = ds.map(lambda xy, s: (augment(xy[0], s, names, size), xy[1]),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _finish(ds, batch_size, drop_remainder=True)


def eval_dataset(data: ClassificationData, batch_size: int, crop_fraction: float = 1.0,
                 split: Split | None = None):
    """One ordered pass over `split` (default the test split; the last batch may be
    smaller), prepared as evaluation prepares images."""
    import tensorflow as tf

    from suite.data.augment import prepare_for_eval

    ds = _elements(split or data.test, None).map(
        lambda x, y: (prepare_for_eval(x, data.image_size, crop_fraction), y),
        num_parallel_calls=tf.data.AUTOTUNE)
    return _finish(ds, batch_size, drop_remainder=False)
