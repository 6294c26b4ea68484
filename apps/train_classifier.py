"""Trains an image classifier (ResNet, plain net, VGG, GoogLeNet) on CIFAR, ImageNet or a folder.

    python -m apps.train_classifier --flagfile=apps/flags/cifar_resnet20.flags
    python -m apps.train_classifier --flagfile=apps/flags/cifar_resnet20.flags \
        --dataset=../shared/data/cifar10-subset/cifar10_jpg_test10000_train20000.zip  # offline

Writes under --model_dir what the MNIST app writes (checkpoints/, backup/, logs/, history.csv,
learning_curves.png, misclassified.png, results.json with top-1/top-5, export/<model>/<version>/
with class names) plus confusion_matrix.png. Running the same command again resumes.
--init_from starts from another run's weights (transfer learning), --freeze_backbone trains
only the classification head.
"""
from __future__ import annotations

import inspect
import os

from absl import flags
from absl import app as absl_app

from suite.runtime.entry import training_main
from suite.runtime.flags import RuntimeConfig, define_common_flags, runtime_config_from_flags

define_common_flags("runs/classifier", default_epochs=160, default_batch_size=128,
                    default_learning_rate=0.1)
# allow_override: another app defining a flag of the same name in one process (a test session)
# must not stop this module from importing; each app still runs in its own process.
_DEF = dict(allow_override=True)
flags.DEFINE_string("model", "resnet20", "Network from suite.models.registry, e.g. resnet20, "
                    "resnet56, plain56, resnet50, vgg16, googlenet.", **_DEF)
flags.DEFINE_string("dataset", "cifar10", "A tensorflow-datasets name (cifar10, imagenette, "
                    "imagenet2012), a folder <root>/{train,test}/<class>/<image>, or a zip of "
                    "CIFAR-10 images in that layout. --data_dir is the tfds folder.", **_DEF)
flags.DEFINE_integer("image_size", 0, "Side of the square model input; 0: the dataset's own "
                     "(32 for CIFAR, 224 for ImageNet, the first image's for a folder).", **_DEF)
flags.DEFINE_list("classes", [], "Train and test on these classes only, relabelled in this "
                  "order, e.g. airplane,automobile,bird,cat,deer.", **_DEF)
flags.DEFINE_integer("train_examples_per_class", 0, "Keep N random training examples per class "
                     "(few-label fine-tuning); 0 keeps all.", **_DEF)
flags.DEFINE_list("augmentations", [], "Training augmentation in the input pipeline, any of "
                  "crop_flip (CIFAR: 4-pixel pad + crop, flip), crop, flip, scale_crop "
                  "(ImageNet: random area/aspect crop), brightness, contrast, rotation, cutout "
                  "(a 16x16 square of zeros, DeVries & Taylor 2017).", **_DEF)
flags.DEFINE_float("model_weight_decay", 0.0, "The papers' SGD weight decay, as L2 penalties "
                   "on the kernels (the model's weight_decay argument), e.g. 1e-4 for ResNets.",
                   **_DEF)
flags.DEFINE_string("init_from", None, "Start from these weights, matched by layer name and "
                    "shape: a .keras file, a SavedModel folder, a model_dir of a finished run, or "
                    "'imagenet' (keras.applications weights; ResNet-50/101/152, VGG-16/19).",
                    **_DEF)
flags.DEFINE_boolean("freeze_backbone", False, "Train only the classification head (with "
                     "--init_from); frozen BatchNormalization stays in inference mode.", **_DEF)
flags.DEFINE_enum("in_memory", "auto", ["auto", "yes", "no"], "Decode a folder's images into "
                  "memory once (yes) or stream them from the files (no); auto: in memory up to "
                  "2 GiB of pixels.", **_DEF)
flags.DEFINE_string("export_name", None, "Model name of the export; default --model.", **_DEF)


def _check_model(name):
    from suite.models.registry import MODEL_BUILDERS, model_names

    if name.strip().lower().replace("-", "") not in MODEL_BUILDERS:
        raise flags.ValidationError(
            f"--model={name!r} is not a registered model; valid: {', '.join(model_names())}")
    return True


def _check_dataset(value):
    from suite.data.classification import dataset_form_error

    error = dataset_form_error(value)
    if error:
        raise flags.ValidationError(error)
    return True


def _check_augmentations(names):
    from suite.data.augment import parse_augmentations

    try:
        parse_augmentations(names)
    except ValueError as e:
        raise flags.ValidationError(f"--augmentations: {e}") from e
    return True


flags.register_validator("model", _check_model)
flags.register_validator("dataset", _check_dataset)
flags.register_validator("augmentations", _check_augmentations)
flags.register_validator("image_size", lambda v: v >= 0, "--image_size must be >= 0")
flags.register_validator("train_examples_per_class", lambda v: v >= 0,
                         "--train_examples_per_class must be >= 0")
flags.register_validator("model_weight_decay", lambda v: v >= 0,
                         "--model_weight_decay must be >= 0")
flags.register_validator(
    "init_from", lambda v: v is None or v == "imagenet" or os.path.exists(v),
    "--init_from must be 'imagenet' or an existing .keras file, SavedModel folder or model_dir")
flags.register_multi_flags_validator(
    ["init_from", "freeze_backbone"], lambda f: f["init_from"] or not f["freeze_backbone"],
    "--freeze_backbone needs --init_from: a frozen random backbone learns nothing")

FLAGS = flags.FLAGS


def run(config: RuntimeConfig, model: str = "resnet20", dataset: str = "cifar10",
        image_size: int = 0, classes=(), train_examples_per_class: int = 0, augmentations=(),
        model_weight_decay: float = 0.0, init_from: str | None = None,
        freeze_backbone: bool = False, in_memory: bool | None = None,
        export_name: str | None = None, datasets_override=None, strategy_override=None) -> dict:
    """Trains, evaluates, draws and exports; returns the results dict (also in results.json).

    `datasets_override` (a suite.data.classification.ClassificationData, or arrays
    ((x_train, y_train), (x_test, y_test))) and `strategy_override` let tests inject tiny data
    and a strategy instead of patching globals.
    """
    # -- devices and precision (before any other TensorFlow op) ---------------------------
    from suite.runtime.devices import setup_runtime

    runtime = setup_runtime(config.strategy, config.precision, config.seed, config.deterministic,
                            strategy_override)
    print(f"Runtime: {runtime.describe()}", flush=True)
    from suite.data.sharding import check_global_batch

    check_global_batch(config.batch_size, runtime.num_replicas)

    import keras
    import numpy as np

    from suite.data import classification as cls_data
    from suite.data.augment import EVAL_CROP_FRACTION, parse_augmentations
    from suite.data.pipeline import steps_per_epoch
    from suite.models.registry import MODEL_BUILDERS, build_model, model_names
    from suite.runtime import evaluation, transfer
    from suite.runtime.optim import make_optimizer
    from suite.runtime.training import RunPaths, build_in_scope, fit_resumable
    from suite.viz import plots
    from suite.viz.confusion import confusion_matrix, plot_confusion_matrix

    # -- input pipeline -------------------------------------------------------------------
    augmentations = parse_augmentations(augmentations)
    if isinstance(datasets_override, tuple):
        datasets_override = cls_data.ClassificationData.from_arrays(*datasets_override)
    if datasets_override is not None:
        data = cls_data.subset(datasets_override, classes, train_examples_per_class, config.seed)
    else:
        data = cls_data.load_classification(dataset, config.data_dir, image_size, classes,
                                            train_examples_per_class, config.seed, in_memory)
    num_classes, size = len(data.class_names), data.image_size
    steps = config.steps_per_epoch or steps_per_epoch(data.train.count, config.batch_size)
    train_ds = cls_data.train_dataset(data, config.batch_size, config.seed, augmentations)
    crop = EVAL_CROP_FRACTION if "scale_crop" in augmentations else 1.0
    test_ds = cls_data.eval_dataset(data, config.batch_size, crop)
    print(f"{data.name}: {data.train.count} training / {data.test.count} test images, "
          f"{num_classes} classes, {size}x{size}, {'in memory' if data.in_memory else 'streamed'}",
          flush=True)

    # -- model, transfer, optimizer -----------------------------------------------------------
    builder = MODEL_BUILDERS.get(model.strip().lower().replace("-", ""))
    if builder is None:
        raise ValueError(f"--model={model!r} is not a registered model; valid: "
                         f"{', '.join(model_names())}")
    options = {}
    if model_weight_decay:
        if "weight_decay" not in inspect.signature(builder).parameters:
            raise ValueError(f"--model={model} has no weight_decay argument: use the optimizer's "
                             "--weight_decay instead of --model_weight_decay")
        options["weight_decay"] = model_weight_decay
    source, weights, rename, head_reason = None, None, {}, None
    if init_from == "imagenet":
        weights = transfer.imagenet_weights(model, include_top=num_classes == 1000)
        source, rename = "imagenet (keras.applications)", {"logits": "predictions"}
        # Those weights expect keras.applications' "caffe" inputs: that layer replaces /255.
        options.update(rescale=False,
                       augmentation=transfer.CaffePreprocess(name="caffe_preprocess"))
    elif init_from:
        found = transfer.read_source(init_from)
        source, weights = found.path, found.weights
        if found.class_names is not None and found.class_names != data.class_names:
            # Same number of classes is not the same classes: a head for others starts fresh.
            head_reason = (f"the source's head is for classes {found.class_names}, this run "
                           f"has {data.class_names}")
    report = None

    def build() -> keras.Model:
        nonlocal report
        net = build_model(model, input_shape=(size, size, data.channels),
                          num_classes=num_classes, **options)
        if weights is not None:
            skip = dict.fromkeys(transfer.head_layers(net), head_reason) if head_reason else {}
            report = transfer.load_matching_weights(net, weights, source, rename, skip)
            if not report.loaded:
                raise ValueError(f"--init_from={init_from}: no layer of {net.name} matches the "
                                 "source by name and shape; was it trained with another --model?")
        if freeze_backbone:
            transfer.freeze_backbone(net)
        metrics = ["accuracy"]
        if num_classes > 5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
        net.compile(optimizer=make_optimizer(config, steps),
                    loss="sparse_categorical_crossentropy", metrics=metrics)
        return net

    # -- training (resumable) ------------------------------------------------------------------
    paths = RunPaths.for_role(config.model_dir, runtime)
    net = build_in_scope(runtime, build)
    if report is not None:
        print(report.summary(), flush=True)
    outcome = fit_resumable(net, train_ds, test_ds, config, steps, runtime, paths)
    if outcome.status != "completed":
        paths.cleanup()
        return outcome.results()
    if runtime.role.is_chief and os.path.exists(paths.history_csv):
        plots.plot_learning_curves(plots.read_history(paths.history_csv),
                                   os.path.join(config.model_dir, "learning_curves.png"),
                                   title=f"{net.name} on {data.name}")
    paths.cleanup()

    # -- evaluation --------------------------------------------------------------------------
    probabilities, labels = _predict(net, test_ds)
    predictions = np.argmax(probabilities, axis=-1)
    top5 = np.argsort(-probabilities, axis=-1)[:, :5]
    results_path = os.path.join(config.model_dir, "results.json")
    results = evaluation.read_results(results_path)
    results.update({
        "status": "completed", "exit_code": 0, "model": net.name, "dataset": data.name,
        "test_top1_accuracy": evaluation.accuracy(probabilities, labels),
        # With 5 classes or fewer every label is in the top 5: nothing to report.
        "test_top5_accuracy": float(np.mean((top5 == labels[:, None]).any(axis=-1)))
        if num_classes > 5 else None,
        "class_names": data.class_names, "image_size": size, "train_examples": data.train.count,
        "test_examples": int(len(labels)), "epochs": config.epochs, "seed": config.seed,
        "augmentations": list(augmentations), "precision": runtime.precision,
        "replicas": runtime.num_replicas, "transfer": report.as_dict() if report else None,
        "frozen_backbone": bool(freeze_backbone),
    })
    results["test_accuracy"] = results["test_top1_accuracy"]
    top5_text = "n/a" if num_classes <= 5 else f"{100 * results['test_top5_accuracy']:.2f}%"
    print(f"Test accuracy: top-1 {100 * results['test_top1_accuracy']:.2f}%, top-5 {top5_text} "
          f"({len(labels)} images)", flush=True)
    if not runtime.role.is_chief:
        return results
    matrix = confusion_matrix(labels, predictions, num_classes)
    results["confusion_matrix"] = matrix.tolist() if num_classes <= 100 else None
    plot_confusion_matrix(matrix, data.class_names,
                          os.path.join(config.model_dir, "confusion_matrix.png"),
                          title=f"{net.name} on {data.name}: top-1 "
                                f"{100 * results['test_top1_accuracy']:.1f}%")
    if data.in_memory and data.test.images.shape[1] == size:
        plots.plot_misclassified(data.test.images, labels, predictions,
                                 os.path.join(config.model_dir, "misclassified.png"))

    # -- export ----------------------------------------------------------------------------
    if config.export and not evaluation.export_is_current(results, outcome.trained_now):
        from suite.export.saved_model import export_classifier

        results["export"] = export_classifier(net, config.resolved_export_dir,
                                               export_name or net.name,
                                               class_names=data.class_names)
        print(f"SavedModel: {results['export']}", flush=True)
    evaluation.write_results(results_path, results)
    return results


def _predict(model, dataset):
    """(probabilities, labels) over one pass, through one traced inference function."""
    import numpy as np
    import tensorflow as tf

    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    probabilities, labels = [], []
    for x, y in dataset:
        probabilities.append(np.asarray(call(x), np.float32))
        labels.append(y.numpy())
    return np.concatenate(probabilities), np.concatenate(labels).astype(np.int64)


def run_from_flags(flag_values=None) -> dict:
    """`run` with every argument taken from the parsed flags (what main does; tests reuse it)."""
    f = flag_values or FLAGS
    return run(runtime_config_from_flags(f), model=f.model, dataset=f.dataset,
               image_size=f.image_size, classes=f.classes,
               train_examples_per_class=f.train_examples_per_class,
               augmentations=f.augmentations, model_weight_decay=f.model_weight_decay,
               init_from=f.init_from, freeze_backbone=f.freeze_backbone,
               in_memory={"auto": None, "yes": True, "no": False}[f.in_memory],
               export_name=f.export_name)


main = training_main(run_from_flags)


def run_main():
    """console_scripts entry point."""
    absl_app.run(main)


if __name__ == "__main__":
    run_main()
