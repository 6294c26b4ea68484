"""The image-classifier app and its parts on generated stripes: data, augmentation, transfer.

Every dataset here is generated stripes (horizontal vs vertical ..., a class a ResNet learns in
a few steps): in temporary folders, or the committed tests/fixtures/stripes_small that the smoke
preset uses. Nothing reads ../shared or the network (tfds is mocked, downloads are refused).
"""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, parse_app_flags, run_in_process
from suite.data import augment as aug
from suite.data import classification as cls_data
from suite.errors import DataError
from suite.tasks.classifier import ClassifierTask

CLASSES = ("horizontal", "vertical")


def stripes(n, size=32, seed=0, classes=2):
    """uint8 (n, size, size, 3) stripes: class 0 horizontal, 1 vertical, 2-3 diagonal; classes
    4-7 are 0-3 with dark stripes on a bright ground."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, size, size, 3), np.uint8)
    for i, c in enumerate(labels):
        coord = (yy, xx, yy + xx, yy - xx + size)[c % 4]
        period = rng.integers(4, 9)
        on = (coord + rng.integers(0, period)) % period < period // 2
        fg, bg = rng.integers(150, 256, 3), rng.integers(0, 100, 3)
        if c >= 4:
            fg, bg = bg, fg
        images[i] = np.where(on[..., None], fg, bg)
    return images, labels.astype(np.int64)


def write_stripes_folder(root, train_per_class=16, test_per_class=4, size=32, seed=0,
                         classes=CLASSES, fmt="png"):
    """<root>/{train,test}/<class>/<n>.<fmt>, returns root (also made the committed fixture)."""
    from PIL import Image

    for split, per_class, offset in (("train", train_per_class, 0), ("test", test_per_class, 1)):
        images, labels = stripes(per_class * len(classes), size, seed + offset, len(classes))
        for i, (image, label) in enumerate(zip(images, labels)):
            folder = os.path.join(root, split, classes[label])
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).save(os.path.join(folder, f"{i:04d}.{fmt}"))
    return str(root)


def run_classifier(model_dir, data=None, strategy=None, **kw) -> dict:
    """The app's Task through the runner, with its flags from `kw` (lists joined by commas)."""
    values = dict(model_dir=str(model_dir), batch_size=16, epochs=3, steps_per_epoch=6,
                  optimizer="momentum", learning_rate=0.05, export=False, seed=0)
    values.update(kw)
    args = []
    for name, value in values.items():
        if isinstance(value, bool):
            args.append(f"--{'' if value else 'no'}{name}")
        elif isinstance(value, (list, tuple)):
            args.append(f"--{name}={','.join(value)}")
        else:
            args.append(f"--{name}={value}")
    return run_in_process(ClassifierTask, *args, data_override=data, strategy_override=strategy)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The smoke preset through the app's own flags -> run() path, shared by several tests."""
    model_dir = str(tmp_path_factory.mktemp("runs") / "smoke")
    cwd = os.getcwd()
    os.chdir(REPO)  # the preset's paths are relative to the repository root
    try:
        results = run_in_process(ClassifierTask,
                                 "--flagfile=apps/flags/cifar_resnet20_smoke.flags",
                                 f"--model_dir={model_dir}")
    finally:
        os.chdir(cwd)
    return model_dir, results


# -- the app ---------------------------------------------------------------------------------

def test_app_lowers_the_loss_and_writes_every_output(trained):
    from suite.export.saved_model import read_metadata
    from suite.viz.plots import read_history

    model_dir, results = trained
    loss = read_history(os.path.join(model_dir, "history.csv"))["loss"]
    assert len(loss) == 5 and loss[-1] < 0.5 * loss[0], loss
    assert results["status"] == "completed" and results["test_top1_accuracy"] >= 0.85
    assert results["test_top5_accuracy"] is None  # 2 classes: always in the top 5
    assert results["class_names"] == list(CLASSES) and results["test_examples"] == 16
    # 6 of the 64 training images (10%, 3 of each class) choose the checkpoint
    assert results["augmentations"] == ["crop_flip"] and results["train_examples"] == 58
    assert results["selection"]["model"] == "best"
    assert results["selection"]["validation_split"].startswith("6 training images held out")
    assert np.trace(results["confusion_matrix"]) == round(16 * results["test_top1_accuracy"])
    for name in ("confusion_matrix.png", "learning_curves.png", "misclassified.png"):
        with open(os.path.join(model_dir, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    for name in ("checkpoints/best.keras", "checkpoints/last.keras", "backup/state.json"):
        assert os.path.getsize(os.path.join(model_dir, name)) > 0, name
    assert os.listdir(os.path.join(model_dir, "logs"))  # TensorBoard
    saved = json.load(open(os.path.join(model_dir, "results.json")))
    assert saved["test_top1_accuracy"] == results["test_top1_accuracy"]
    # The export serves the class names and the trained model's predictions.
    assert results["export"] == os.path.join(model_dir, "export", "resnet20", "1")
    assert read_metadata(results["export"])["class_names"] == list(CLASSES)
    served = tf.saved_model.load(results["export"]).signatures["serve_uint8"]
    images, labels = stripes(8, seed=5)
    class_ids = served(image=tf.constant(images))["class_ids"].numpy()
    assert np.mean(class_ids == labels) >= 0.75


def test_apps_export_re_exports_the_run_with_its_own_name_and_class_names(trained, tmp_path):
    from suite.export.saved_model import read_metadata
    from suite.tasks.runs import export_run as export

    model_dir, _ = trained
    version_dir = export(model_dir, export_dir=str(tmp_path))
    assert version_dir == os.path.join(str(tmp_path), "resnet20", "1")
    metadata = read_metadata(version_dir)
    assert metadata["class_names"] == list(CLASSES) and metadata["num_classes"] == 2


def test_served_image_bytes_are_the_evaluated_pixels_for_an_image_of_another_shape(tmp_path):
    """A 32x96 image, vertical stripes in its centre square and horizontal ones on the sides:
    serve_image_bytes centre-crops it as evaluation does (0.875 after scale_crop, recorded in
    the export's metadata, which apps/export.py re-exports from), instead of squashing it."""
    from PIL import Image

    from suite.export.saved_model import read_metadata, write_saved_model
    from suite.tasks.classification import ImageClassificationTask

    images, labels = stripes(2)
    wide = np.concatenate([images[labels == 0][0], images[labels == 1][0],
                           images[labels == 0][0]], axis=1)
    path = str(tmp_path / "wide.png")
    Image.fromarray(wide).save(path)
    model = _tiny_resnet(2, seed=0)
    task = ImageClassificationTask()
    task.class_names, task.image_shape = list(CLASSES), (16, 16, 3)
    task.crop_fraction = aug.EVAL_CROP_FRACTION
    metadata = task.export_metadata()  # what the runner exports with and run.json keeps
    version_dir = write_saved_model(str(tmp_path), "m", task.serving_signatures(model, metadata),
                                    metadata)
    assert read_metadata(version_dir)["crop_fraction"] == aug.EVAL_CROP_FRACTION
    serve = tf.saved_model.load(version_dir).signatures["serve_image_bytes"]
    served = serve(image_bytes=tf.constant([open(path, "rb").read()]))["probabilities"].numpy()
    one = cls_data.Split(1, np.array([1]), paths=np.array([path]))  # streamed from the file
    data = cls_data.ClassificationData("wide", list(CLASSES), 16, one, one)
    pixels, _ = next(iter(cls_data.eval_dataset(data, 1, aug.EVAL_CROP_FRACTION)))
    np.testing.assert_allclose(served, model(pixels, training=False).numpy(), atol=1e-6)
    squashed = tf.image.resize(wide[None].astype(np.float32), (16, 16), method="area")
    assert not np.allclose(served, model(squashed, training=False).numpy(), atol=1e-3)


def test_transfer_through_the_app_loads_the_backbone_and_skips_a_head_for_other_classes(
        trained, tmp_path):
    source_dir, _ = trained
    data = cls_data.ClassificationData.from_arrays(
        stripes(48, seed=2, classes=4), stripes(16, seed=3, classes=4),
        ["horizontal", "vertical", "diagonal", "antidiagonal"])
    results = run_classifier(tmp_path / "finetune", data, epochs=1, steps_per_epoch=2,
                             learning_rate=0.01, model="resnet20",
                             classes=["diagonal", "antidiagonal"], init_from=source_dir,
                             freeze_backbone=True)
    transfer = results["transfer"]
    assert transfer["source"] == os.path.join(source_dir, "checkpoints", "best.keras")
    assert "conv1_conv" in transfer["loaded"] and "logits" not in transfer["loaded"]
    assert "head is for classes ['horizontal', 'vertical']" in transfer["skipped"]["logits"]
    assert results["class_names"] == ["diagonal", "antidiagonal"] and results["frozen_backbone"]


def test_the_app_trains_from_a_generated_folder_streamed_from_the_files(tmp_path):
    from suite.viz.plots import read_history

    names = tuple(f"class{i}" for i in range(7))
    root = write_stripes_folder(tmp_path / "stripes", 4, 2, size=16, fmt="jpg", classes=names)
    # validation=test: the epoch's validation is then the test split the app evaluates at the end
    results = run_classifier(tmp_path / "run", epochs=1, steps_per_epoch=2, model="resnet20",
                             dataset=root, in_memory="no", augmentations=("crop", "rotation"),
                             validation="test")
    assert results["status"] == "completed" and results["image_size"] == 16
    assert results["test_examples"] == 14 and results["dataset"] == "stripes"
    # 7 classes: top-5 is measured, by Keras during training and by the app at the end.
    assert results["test_top1_accuracy"] <= results["test_top5_accuracy"] <= 1.0
    history = read_history(str(tmp_path / "run" / "history.csv"))  # the same weights, 1 epoch
    assert history["val_top5_accuracy"] == [pytest.approx(results["test_top5_accuracy"])]
    assert history["val_accuracy"] == [pytest.approx(results["test_top1_accuracy"])]
    assert os.path.isfile(tmp_path / "run" / "confusion_matrix.png")
    assert not os.path.exists(tmp_path / "run" / "misclassified.png")  # no images in memory


def test_the_curves_training_sample_holds_every_class_of_a_class_sorted_folder(tmp_path,
                                                                              monkeypatch):
    """A folder lists its training images class by class: the first N of them, which the
    curves' inference-mode accuracy was measured on, were one class (on the CIFAR subset, 2,000
    airplanes). The sample is stratified now, on every data source."""
    import suite.tasks.classifier as classifier
    from conftest import app_task
    from suite.runtime.runner import run_task

    names = tuple(f"class{i}" for i in range(7))
    root = write_stripes_folder(tmp_path / "stripes", 14, 2, size=16, classes=names)
    monkeypatch.setattr(classifier, "TRAINING_SUBSET", 14)  # 2 of each class; the first 14: 2
    task = app_task(ClassifierTask, f"--dataset={root}", f"--model_dir={tmp_path / 'run'}",
                    "--epochs=1", "--steps_per_epoch=1", "--batch_size=8", "--noexport")
    assert run_task(task, task.config.runtime)["status"] == "completed"
    labels = np.concatenate([y.numpy() for _, y in task.training_subset])
    assert np.bincount(labels, minlength=7).tolist() == [2] * 7
    # ... and the 10% of the 98 training images that choose the checkpoint hold every class.
    validation = np.concatenate([y.numpy() for _, y in task.validation_data])
    assert len(validation) == 10 and set(validation.tolist()) == set(range(7))


def test_the_app_runs_under_mirrored_strategy_with_a_frozen_transferred_backbone(
        two_cpu_strategy, trained, tmp_path):
    source_dir, _ = trained
    strategy = two_cpu_strategy
    results = run_classifier(tmp_path / "run", (stripes(32), stripes(8, seed=1)), strategy,
                             epochs=1, steps_per_epoch=2, model="resnet20",
                             augmentations=("crop_flip",), init_from=source_dir,
                             freeze_backbone=True)
    assert results["status"] == "completed" and results["replicas"] == 2
    assert "conv1_conv" in results["transfer"]["loaded"]


# Every classifier preset in apps/flags/ (the mnist_* ones belong to apps.train_mnist).
PRESETS = sorted(name[:-len(".flags")] for name in os.listdir(os.path.join(REPO, "apps", "flags"))
                 if name.startswith(("cifar_", "imagenet_")))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_parses_and_its_first_line_is_the_command(preset, tmp_path, monkeypatch):
    path = f"apps/flags/{preset}.flags"
    with open(os.path.join(REPO, path)) as f:
        first = f.readline()
    assert first.startswith(f"# python -m apps.train_classifier --flagfile={path}"), first
    monkeypatch.chdir(REPO)
    extra = [f"--init_from={tmp_path}"] if "finetune" in preset else []  # step 1's model_dir
    f = parse_app_flags(ClassifierTask, f"--flagfile={path}", *extra)
    decays = [int(e) for e in f.lr_decay_epochs]
    assert f.optimizer == "momentum" and f.momentum == 0.9
    if preset in ("cifar_resnet20_modern", "cifar_resnet20_encoder",
                  "cifar_resnet18_backbone"):  # wd 5e-4, cosine, cutout; paper lr, batch
        assert f.model_weight_decay == 5e-4 and f.augmentations == ["crop_flip", "cutout"]
        assert f.lr_schedule == "cosine" and f.learning_rate == 0.1 and f.batch_size == 128
        assert f.epochs == {"cifar_resnet20_modern": 100, "cifar_resnet20_encoder": 15,
                            "cifar_resnet18_backbone": 10}[preset]
    elif preset.startswith("cifar_") and preset != "cifar_transfer_finetune":
        assert f.model_weight_decay == 1e-4 and f.augmentations == ["crop_flip"]
        if "smoke" not in preset:  # the paper's lr, batch, and decays at 50% and 75%
            assert f.learning_rate == 0.1 and f.batch_size == 128
            assert decays == [f.epochs // 2, f.epochs * 3 // 4]
    if preset.startswith("imagenet_"):
        assert f.image_size == 224 and f.batch_size == 256 and f.dataset == "imagenet2012"
        assert f.augmentations[:2] == ["scale_crop", "flip"]


@pytest.mark.parametrize("args, message", [
    (["--augmentations=crop_flip,blur"], "unknown augmentation 'blur'; valid: crop_flip, crop,"),
    (["--freeze_backbone"], "--freeze_backbone needs --init_from"),
    (["--init_from=/no/such.keras"], "--init_from must be 'imagenet' or an existing .keras"),
    (["--train_examples_per_class=-1"], "--train_examples_per_class must be >= 0"),
    (["--model=resnet21"], "--model='resnet21' is not a registered model; valid: deep_convnet,"),
    (["--dataset=/no/such/folder"],
     "neither a known dataset nor an existing folder or zip; use a tensorflow-datasets "
     "image-classification name (cifar10, cifar100, mnist, svhn_cropped, oxford_flowers102, "
     "imagenette, imagenet2012, ...), a folder laid out as <root>/train/<class>/<image>"),
    (["--dataset=Not A Name"], "neither a known dataset nor an existing folder or zip"),
    (["--classes=horizontal,vertical,horizontal"],
     "--classes: names horizontal more than once; name each class once"),
    (["--export_name=my/model"], "--export_name: Model name 'my/model' must be a plain folder "
                                 "name such as 'mnist'."),
    (["--export_name=.hidden"], "must be a plain folder name"),
    (["--classes=horizontal"], "--classes: needs at least 2 classes to tell apart, got only "
                               "'horizontal'"),
])
def test_bad_flag_values_are_refused_when_parsed(args, message):
    """Refused while parsing, before the runner creates anything (the MNIST app's tests check
    the exit code and the one-line message of a real process)."""
    from absl import flags

    with pytest.raises(flags.IllegalFlagValueError) as error:
        parse_app_flags(ClassifierTask, *args)
    assert message in str(error.value)


def test_the_registered_names_are_in_the_bad_model_message():
    from suite.tasks.classifier import ClassifierConfig

    with pytest.raises(ValueError, match="resnet56, resnet101"):
        ClassifierConfig(model="resnet21")


# -- data: image folders, dispatch, subsets --------------------------------------------------

def test_image_folder_reads_png_and_jpeg_with_labels_from_the_folder_names(tmp_path):
    from suite.data.image_folder import load_images, scan_image_folder

    write_stripes_folder(tmp_path, 3, 2, classes=("b_class", "a_class"), fmt="png")
    write_stripes_folder(tmp_path, 2, 1, seed=7, classes=("b_class",), fmt="jpg")
    index = scan_image_folder(str(tmp_path))
    assert index.class_names == ["a_class", "b_class"]  # sorted, as Keras does
    assert len(index.train.paths) == 8 and len(index.test.paths) == 5
    names = [os.path.basename(os.path.dirname(p)) for p in index.train.paths]
    assert [index.class_names[i] for i in index.train.labels] == names
    images = load_images(index.train.paths, 32)
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.uint8
    from PIL import Image

    png = [i for i, p in enumerate(index.train.paths) if p.endswith(".png")][0]
    np.testing.assert_array_equal(images[png], np.asarray(Image.open(index.train.paths[png])))
    assert load_images(index.train.paths[:1], 20).shape == (1, 20, 20, 3)  # resized


@pytest.mark.parametrize("make, message", [
    (lambda r: write_stripes_folder(r, 1, 0), "has no test/ folder"),
    (lambda r: (os.makedirs(r / "train"), os.makedirs(r / "test")), "train is empty"),
    (lambda r: (os.makedirs(r / "train" / "a"), os.makedirs(r / "test" / "a")),
     "holds no .jpg/.jpeg/.png images"),
    (lambda r: (write_stripes_folder(r, 1, 1), os.makedirs(r / "test" / "zebra")),
     "has class folders ['zebra'] that train/ does not have"),
    (lambda r: (write_stripes_folder(r, 1, 1), open(r / "train" / "x.png", "w").close()),
     "holds images outside any class folder (x.png"),
    (lambda r: None, "is not a folder"),
])
def test_image_folder_layout_errors_name_the_problem(tmp_path, make, message):
    from suite.data.image_folder import scan_image_folder

    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError) as error:
        scan_image_folder(str(root))
    assert message in str(error.value)


@pytest.mark.parametrize("in_memory", [True, False])
def test_unreadable_image_is_named(tmp_path, in_memory):
    """Streamed too: when the folder is scanned, not by the decoder in the middle of training."""
    write_stripes_folder(tmp_path, 1, 1)
    (tmp_path / "train" / "vertical" / "broken.png").write_bytes(b"not an image")
    (tmp_path / "test" / "vertical" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="broken.png: not a readable image .*replace or delete it"):
        cls_data.load_classification(str(tmp_path), in_memory=in_memory)
    os.remove(tmp_path / "train" / "vertical" / "broken.png")
    with pytest.raises(DataError, match="empty.jpg: not a readable image"):
        cls_data.load_classification(str(tmp_path), in_memory=in_memory)


def test_streamed_and_in_memory_folders_give_the_same_batches(tmp_path):
    write_stripes_folder(tmp_path, 4, 3)
    memory = cls_data.load_classification(str(tmp_path), in_memory=True)
    stream = cls_data.load_classification(str(tmp_path), in_memory=False)
    assert memory.in_memory and not stream.in_memory and stream.train.paths is not None
    for a, b in zip(cls_data.eval_dataset(memory, 4), cls_data.eval_dataset(stream, 4)):
        assert a[0].shape == (4, 32, 32, 3) or a[0].shape[0] == 2
        assert a[0].dtype == tf.float32
        np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
        np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())
    x, y = next(iter(cls_data.train_dataset(stream, 5, seed=1, augmentations=("crop_flip",))))
    assert x.shape == (5, 32, 32, 3) and x.dtype == tf.float32 and y.dtype == tf.int64
    # A larger model size resizes on the fly from the files.
    big = cls_data.load_classification(str(tmp_path), image_size=40, in_memory=False)
    assert next(iter(cls_data.eval_dataset(big, 2)))[0].shape == (2, 40, 40, 3)


@pytest.mark.parametrize("crop", [1.0, aug.EVAL_CROP_FRACTION])  # plain training, scale_crop
def test_in_memory_and_streamed_folders_evaluate_images_of_another_size_alike(tmp_path, crop):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in CLASSES:
            os.makedirs(tmp_path / split / name)
            for i in range(2):
                noise = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
                Image.fromarray(noise).save(tmp_path / split / name / f"{i}.png")
    memory, stream = (cls_data.load_classification(str(tmp_path), image_size=32, in_memory=m,
                                                   crop_fraction=crop) for m in (True, False))
    a, b = (next(iter(cls_data.eval_dataset(d, 4, crop)))[0].numpy() for d in (memory, stream))
    assert a.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(a, b)


def test_classes_and_examples_per_class_select_and_relabel():
    labels = np.repeat(np.arange(4), 10)
    idx, new, names = cls_data.select(labels, ["a", "b", "c", "d"], ["d", "b"], per_class=3, seed=1)
    assert names == ["d", "b"] and len(idx) == 6
    assert list(labels[idx[new == 0]]) == [3, 3, 3] and list(labels[idx[new == 1]]) == [1, 1, 1]
    again, _, _ = cls_data.select(labels, ["a", "b", "c", "d"], ["d", "b"], per_class=3, seed=1)
    other, _, _ = cls_data.select(labels, ["a", "b", "c", "d"], ["d", "b"], per_class=3, seed=2)
    assert list(again) == list(idx) and list(other) != list(idx)
    with pytest.raises(DataError, match="'zebra'.*its classes are: a, b, c, d"):
        cls_data.select(labels, ["a", "b", "c", "d"], ["zebra"])
    with pytest.raises(DataError, match="class 'a' has 10 training examples, fewer than"):
        cls_data.select(labels, ["a", "b", "c", "d"], ["a"], per_class=11)


def test_tfds_names_fail_fast_offline_and_load_through_tfds(tmp_path, monkeypatch):
    import time

    import tensorflow_datasets as tfds

    from suite.data import hosts

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: False)
    start = time.monotonic()
    with pytest.raises(DataError, match="www.cs.toronto.edu is unreachable"):
        cls_data.load_classification("cifar10", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="(?s)imagenet2012 needs a manual download.*ILSVRC2012_img"):
        cls_data.load_classification("imagenet2012", data_dir=str(tmp_path))
    with pytest.raises(DataError, match=r"svhn_cropped is not prepared .* put its source files in "
                                        rf"{tmp_path}/downloads/manual"):
        cls_data.load_classification("svhn_cropped", data_dir=str(tmp_path))
    assert time.monotonic() - start < 20
    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=12):  # tfds's offline random data, real features
        data = cls_data.load_classification("cifar10", data_dir=str(tmp_path))
        assert data.in_memory and data.train.images.shape == (12, 32, 32, 3)
        streamed = cls_data.load_classification("imagenette", data_dir=str(tmp_path),
                                                image_size=24, classes=["n01440764"])
        assert not streamed.in_memory and streamed.class_names == ["n01440764"]
        x, y = next(iter(cls_data.eval_dataset(streamed, 2)))
        assert x.shape[1:] == (24, 24, 3) and set(y.numpy()) == {0}


@pytest.mark.parametrize("name, splits, expected", [
    # grayscale, with a test split: in memory, 1 channel, its own size
    ("mnist", {"train", "test"}, dict(channels=1, size=28, test="test", in_memory=True,
                                      classes=[str(d) for d in range(10)])),
    # colour, two label features (label and coarse_label): the fine one
    ("cifar100", {"train", "test"}, dict(channels=3, size=32, test="test", in_memory=True)),
    # colour, images of any size, no test split but a validation split: streamed, 224
    ("oxford_flowers102", {"train", "validation"}, dict(channels=3, size=224, test="validation",
                                                        in_memory=False)),
    # no test and no validation split: the last 10% of train, documented in docs/classifier.md
    ("tf_flowers", {"train"}, dict(channels=3, size=224, test="train[90%:]", in_memory=False,
                                   classes=["dandelion", "daisy", "tulips", "sunflowers",
                                            "roses"])),
])
def test_any_tfds_image_classification_set_is_read_from_its_info(tmp_path, monkeypatch, name,
                                                                 splits, expected):
    import tensorflow_datasets as tfds

    from suite.data import hosts

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: True)
    monkeypatch.setattr(cls_data, "available_splits", lambda builder: splits)
    with tfds.testing.mock_data(num_examples=10):
        data = cls_data.load_classification(name, data_dir=str(tmp_path))
        assert (data.channels, data.image_size, data.test_split, data.in_memory) == (
            expected["channels"], expected["size"], expected["test"], expected["in_memory"])
        if "classes" in expected:
            assert data.class_names == expected["classes"]
        x, y = next(iter(cls_data.eval_dataset(data, 4)))
        assert x.shape[1:] == (expected["size"], expected["size"], expected["channels"])
        assert x.dtype == tf.float32 and y.dtype == tf.int64


def test_a_tfds_set_of_varying_image_sizes_loads_in_memory_as_it_evaluates_streamed(
        tmp_path, monkeypatch):
    """--in_memory=yes on oxford_flowers102 (mocked: random sizes): stored at the model's size,
    the test images cropped as the streamed evaluation crops them."""
    import tensorflow_datasets as tfds

    from suite.data import hosts

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: True)
    monkeypatch.setattr(cls_data, "available_splits", lambda builder: {"train", "validation"})
    with tfds.testing.mock_data(num_examples=6):
        memory, stream = (cls_data.load_classification(
            "oxford_flowers102", data_dir=str(tmp_path), image_size=24, in_memory=m,
            crop_fraction=aug.EVAL_CROP_FRACTION) for m in (True, False))
        assert memory.in_memory and memory.train.images.shape == (6, 24, 24, 3)
        a, b = (next(iter(cls_data.eval_dataset(d, 6, aug.EVAL_CROP_FRACTION)))
                for d in (memory, stream))
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    np.testing.assert_array_equal(a[1].numpy(), b[1].numpy())


def test_a_tfds_set_that_is_not_image_classification_is_refused_with_the_reason(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(DataError, match="celeb_a` is not an image-classification set: it has "
                                            "no class-label"):
            cls_data.load_classification("celeb_a", data_dir=str(tmp_path))
        with pytest.raises(DataError, match="not a tensorflow-datasets dataset"):
            cls_data.load_classification("no_such_set_here", data_dir=str(tmp_path))


def test_the_app_trains_on_a_grayscale_tfds_set_resized_up(tmp_path, monkeypatch):
    """mnist through tfds (mocked): 1 channel into a ResNet, resized up with --image_size."""
    import tensorflow_datasets as tfds

    from suite.data import hosts

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=32):
        results = run_classifier(tmp_path / "run", dataset="mnist", data_dir=str(tmp_path),
                                 image_size=36, epochs=1, steps_per_epoch=2, export=True)
    assert results["image_size"] == 36 and results["dataset"] == "mnist"
    from suite.export.saved_model import read_metadata

    assert read_metadata(results["export"])["image_shape"] == [36, 36, 1]
    history = open(tmp_path / "run" / "history.csv").readline().strip().split(",")
    assert "inference_accuracy" in history and "val_accuracy" in history


# -- augmentation ----------------------------------------------------------------------------

def _image(seed=0):
    """Noise, not stripes: horizontal stripes do not change under a left-right flip."""
    return np.random.default_rng(seed).integers(0, 256, (32, 32, 3)).astype(np.uint8)


SEED = tf.constant([3, 4], tf.int64)


@pytest.mark.parametrize("names, size", [
    (("crop_flip",), 32), (("crop",), 32), (("flip",), 32), (("rotation",), 32),
    (("brightness",), 32), (("contrast",), 32), (("scale_crop", "flip"), 24),
    (("crop_flip", "brightness", "contrast", "rotation"), 32), (("crop_flip", "cutout"), 32),
])
def test_augmentations_keep_shape_dtype_and_range_and_follow_the_seed(names, size):
    image = _image()
    out = aug.augment(image, SEED, names, size)
    assert out.shape == (size, size, 3) and out.dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 255.0
    np.testing.assert_array_equal(out.numpy(), aug.augment(image, SEED, names, size).numpy())
    different = [aug.augment(image, tf.constant([s, 9]), names, size).numpy() for s in range(4)]
    assert any(not np.array_equal(d, out.numpy()) for d in different)


def test_flip_really_flips_and_crop_is_a_window_of_the_zero_padded_image():
    image = _image().astype(np.float32)
    flipped = [aug.random_flip(image, tf.constant([s, 0])).numpy() for s in range(12)]
    assert all(np.array_equal(f, image) or np.array_equal(f, image[:, ::-1]) for f in flipped)
    assert any(np.array_equal(f, image[:, ::-1]) for f in flipped)
    assert any(np.array_equal(f, image) for f in flipped)
    padded = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    for s in range(5):
        crop = aug.random_crop_with_padding(image, tf.constant([s, 1])).numpy()
        assert any(np.array_equal(crop, padded[dy:dy + 32, dx:dx + 32])
                   for dy in range(9) for dx in range(9))


def test_cutout_zeroes_one_clipped_square_and_keeps_every_other_pixel():
    image = np.full((32, 32, 3), 200.0, np.float32)
    areas = set()
    for s in range(40):
        out = aug.random_cutout(image, tf.constant([s, 2])).numpy()
        zero = (out == 0).all(-1)
        assert ((out == 0) | (out == 200)).all() and zero.any() == (out == 0).any()
        rows, cols = np.flatnonzero(zero.any(1)), np.flatnonzero(zero.any(0))
        # one axis-aligned rectangle, at most 16 x 16 and at least the 8 x 8 corner case
        assert zero.sum() == len(rows) * len(cols) and np.ptp(rows) == len(rows) - 1
        assert 8 <= len(rows) <= 16 and 8 <= len(cols) <= 16
        areas.add(int(zero.sum()))
    assert 256 in areas and len(areas) > 3  # unclipped squares and clipped ones both occur


def test_rotation_by_zero_is_the_identity_and_keeps_a_constant_centre():
    image = _image().astype(np.float32)
    np.testing.assert_allclose(aug.random_rotation(image, SEED, max_degrees=0).numpy(), image,
                               atol=1e-3)
    flat = np.full((32, 32, 3), 100.0, np.float32)
    rotated = aug.random_rotation(flat, SEED, max_degrees=30).numpy()
    np.testing.assert_allclose(rotated[12:20, 12:20], 100.0, atol=1e-3)


def test_augmentation_inside_tf_data_equals_the_eager_op():
    images = np.stack([_image(s) for s in range(4)])
    seeds = np.array([[s, 7] for s in range(4)], np.int64)
    names = ("crop_flip", "rotation", "brightness", "contrast")
    ds = tf.data.Dataset.from_tensor_slices((images, seeds)).map(
        lambda x, s: aug.augment(x, s, names, 32), num_parallel_calls=2, deterministic=True)
    for out, image, seed in zip(ds, images, seeds):
        np.testing.assert_allclose(out.numpy(), aug.augment(image, seed, names, 32).numpy(),
                                   atol=1e-4)


def test_training_pipeline_is_deterministic_per_seed():
    data = cls_data.ClassificationData.from_arrays(stripes(20), stripes(4, seed=1))

    def first_batches(seed):
        ds = cls_data.train_dataset(data, 8, seed, ("crop_flip", "brightness"))
        return [x.numpy() for x, _ in ds.take(3)]

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_unknown_augmentation_lists_the_valid_ones():
    assert aug.parse_augmentations("crop_flip, rotation") == ("crop_flip", "rotation")
    assert aug.parse_augmentations(["none"]) == ()
    with pytest.raises(ValueError, match="'blur'; valid: crop_flip, crop, flip, scale_crop"):
        aug.parse_augmentations("blur")


# -- transfer learning -----------------------------------------------------------------------

def _tiny_resnet(num_classes, seed):
    from suite.models.resnet import build_cifar_resnet

    keras.utils.set_random_seed(seed)
    return build_cifar_resnet(8, input_shape=(16, 16, 3), num_classes=num_classes, base_filters=4)


def _layer_weights(model, name):
    return [w.numpy() for w in model.get_layer(name).weights]


@pytest.mark.parametrize("kind", ["keras", "savedmodel"])
def test_matching_layers_load_and_a_head_of_another_size_is_skipped(tmp_path, kind):
    from suite.models import transfer

    source = _tiny_resnet(3, seed=1)
    if kind == "keras":
        path = str(tmp_path / "source.keras")
        source.save(path)
    else:
        from suite.export.classifier import export_classifier

        path = export_classifier(source, str(tmp_path), "tiny", class_names=["a", "b", "c"])
    found = transfer.read_source(path)
    assert found.class_names == (None if kind == "keras" else ["a", "b", "c"])
    target = _tiny_resnet(2, seed=2)
    report = transfer.load_matching_weights(target, found.weights, found.path)
    assert report.skipped.keys() == {"logits"}
    assert "logits/kernel has shape (16, 3) in the source, (16, 2) here" in report.skipped["logits"]
    assert "skipped logits" in report.summary()
    assert len(report.loaded) == len({v.path.rsplit("/", 1)[0] for v in target.weights}) - 1
    for layer in target.layers:
        if layer.weights and layer.name != "logits":
            for a, b in zip(_layer_weights(target, layer.name), _layer_weights(source, layer.name)):
                np.testing.assert_array_equal(a, b)


def test_frozen_backbone_keeps_its_weights_and_statistics_while_the_head_learns():
    from suite.models import transfer

    model = _tiny_resnet(2, seed=0)
    assert transfer.freeze_backbone(model) == ["logits"]
    model.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    before = {v.path: v.numpy() for v in model.weights}
    images, labels = stripes(16, size=16)
    model.fit(images.astype("float32"), labels, batch_size=8, epochs=1, verbose=0)
    changed = {v.path for v in model.weights if not np.array_equal(before[v.path], v.numpy())}
    assert changed == {"logits/kernel", "logits/bias"}  # BN moving statistics included


def test_imagenet_weights_fail_fast_offline_and_only_for_models_that_have_them(
        tmp_path, monkeypatch):
    from suite.data import hosts
    from suite.models import transfer

    monkeypatch.setattr(hosts, "reachable", lambda *a, **k: False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(DataError, match="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 "
                                        "from storage.googleapis.com, which is unreachable"):
        transfer.imagenet_weights("resnet50", include_top=False)
    with pytest.raises(DataError, match="only for resnet50, resnet101, resnet152, vgg16, vgg19"):
        transfer.imagenet_weights("googlenet", include_top=False)


def test_keras_applications_resnet50_loads_into_ours_by_name_except_the_head():
    """What --init_from=imagenet relies on, checked without downloading (weights=None)."""
    from suite.models import transfer
    from suite.models.registry import build_model

    source = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    model = build_model("resnet50", input_shape=(64, 64, 3), num_classes=7, rescale=False,
                        augmentation=transfer.CaffePreprocess(name="caffe_preprocess"))
    report = transfer.load_matching_weights(model, {v.path: v.numpy() for v in source.weights},
                                            "keras.applications", {"logits": "predictions"})
    assert len(report.loaded) == 106 and list(report.skipped) == ["logits"]
    np.testing.assert_array_equal(model.get_layer("conv5_block3_3_bn").weights[3].numpy(),
                                  source.get_layer("conv5_block3_3_bn").weights[3].numpy())


def test_caffe_preprocess_is_keras_applications_preprocess_input():
    from suite.models.transfer import CaffePreprocess

    images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype(np.float32)
    expected = keras.applications.resnet50.preprocess_input(images.copy())
    np.testing.assert_allclose(CaffePreprocess()(images), expected, atol=1e-4)


# -- confusion matrix ------------------------------------------------------------------------

def test_confusion_matrix_counts_and_png(tmp_path):
    from suite.viz.confusion import confusion_matrix, plot_confusion_matrix

    matrix = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    for k, name in ((3, "small.png"), (120, "large.png")):
        m = matrix if k == 3 else np.diag(np.arange(1, k + 1))
        path = plot_confusion_matrix(m, [f"c{i}" for i in range(k)], str(tmp_path / name))
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="class ids must be in 0..2"):
        confusion_matrix([0, 3], [0, 0], 3)
    with pytest.raises(ValueError, match="2 class names for a 3x3 matrix"):
        plot_confusion_matrix(matrix, ["a", "b"], str(tmp_path / "x.png"))
