"""Trains an image classifier (ResNet, plain net, VGG, GoogLeNet) on CIFAR, ImageNet or a folder.

    python -m apps.train_classifier --flagfile=apps/flags/cifar_resnet20.flags
    python -m apps.train_classifier --flagfile=apps/flags/cifar_resnet20.flags \
        --dataset=../shared/data/cifar10-subset/cifar10_jpg_test10000_train20000.zip  # offline

Writes under --model_dir what the MNIST app writes (checkpoints/, backup/, logs/, history.csv,
learning_curves.png, confusion_matrix.png, misclassified.png, results.json with top-1/top-5,
run.json, flags.txt, export/<model>/<version>/ with class names). Running the same command again
resumes.
--init_from starts from another run's weights (transfer learning), --freeze_backbone trains
only the classification head.
"""
from __future__ import annotations

import inspect
import os

from absl import flags

from suite.runtime import flags as suite_flags
from suite.tasks.classification import ImageClassificationTask


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


def _check_classes(names):
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"names {', '.join(duplicates)} more than once; name each class once")
    if len(names) == 1:
        raise ValueError(f"needs at least 2 classes to tell apart, got only {names[0]!r}; name "
                         "2 or more, or leave it empty for all of the dataset's classes")


def _check_export_name(name):
    from suite.export.saved_model import check_model_name

    if name is not None:
        check_model_name(name)  # an ExportError, i.e. a ValueError


def _parse_augmentations(names):
    from suite.data.augment import parse_augmentations

    return parse_augmentations(names)


def define_flags(fv: flags.FlagValues) -> None:
    suite_flags.define_runtime_flags(fv, "runs/classifier")
    suite_flags.define_schedule_flags(fv, default_epochs=160, default_batch_size=128)
    suite_flags.define_optimizer_flags(fv, default_optimizer="momentum",
                                       default_learning_rate=0.1)
    flags.DEFINE_string("model", "resnet20", "Network from suite.models.registry, e.g. resnet20, "
                        "resnet56, plain56, resnet50, vgg16, googlenet.", flag_values=fv)
    flags.DEFINE_string("dataset", "cifar10", "Any tensorflow-datasets image-classification set "
                        "(cifar10, cifar100, mnist, svhn_cropped, oxford_flowers102, imagenette, "
                        "imagenet2012, ...: its image and label features, classes and splits are "
                        "read from the builder; tested on 'test', else 'validation', else the "
                        "last 10% of 'train'), a folder <root>/{train,test}/<class>/<image>, or "
                        "a zip of CIFAR-10 images in that layout. --data_dir is the tfds folder.",
                        flag_values=fv)
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets' data folder (prepared datasets "
                        "and downloads/manual/); unset: tfds's default.", flag_values=fv)
    flags.DEFINE_integer("image_size", 0, "Side of the square model input; 0: the dataset's own "
                         "(32 for CIFAR, 224 for ImageNet and sets of varying size, the first "
                         "image's for a folder). Larger resizes small images up (e.g. MNIST for "
                         "an ImageNet network); grayscale stays 1 channel.", flag_values=fv)
    flags.DEFINE_list("classes", [], "Train and test on these classes only, relabelled in this "
                      "order, e.g. airplane,automobile,bird,cat,deer.", flag_values=fv)
    flags.DEFINE_integer("train_examples_per_class", 0, "Keep N random training examples per "
                         "class (few-label fine-tuning); 0 keeps all.", flag_values=fv)
    flags.DEFINE_list("augmentations", [], "Training augmentation in the input pipeline, any of "
                      "crop_flip (CIFAR: 4-pixel pad + crop, flip), crop, flip, scale_crop "
                      "(ImageNet: random area/aspect crop), brightness, contrast, rotation, "
                      "cutout (a 16x16 square of zeros, DeVries & Taylor 2017).", flag_values=fv)
    flags.DEFINE_float("model_weight_decay", 0.0, "The papers' SGD weight decay, as L2 "
                       "penalties on the kernels (the model's weight_decay argument), e.g. 1e-4 "
                       "for ResNets.", flag_values=fv)
    flags.DEFINE_string("init_from", None, "Start from these weights, matched by layer name and "
                        "shape: a .keras file, a SavedModel folder, a model_dir of a finished "
                        "run, or 'imagenet' (keras.applications weights; ResNet-50/101/152, "
                        "VGG-16/19).", flag_values=fv)
    flags.DEFINE_boolean("freeze_backbone", False, "Train only the classification head (with "
                         "--init_from); frozen BatchNormalization stays in inference mode.",
                         flag_values=fv)
    flags.DEFINE_enum("in_memory", "auto", ["auto", "yes", "no"], "Decode a folder's images into "
                      "memory once (yes) or stream them from the files (no); auto: in memory up "
                      "to 2 GiB of pixels.", flag_values=fv)
    flags.DEFINE_string("export_name", None, "Model name of the export; default --model.",
                        flag_values=fv)
    flags.register_validator("model", _check_model, flag_values=fv)
    flags.register_validator("dataset", _check_dataset, flag_values=fv)
    suite_flags.register_parse_validator(fv, "augmentations", _parse_augmentations)
    suite_flags.register_parse_validator(fv, "classes", _check_classes)
    suite_flags.register_parse_validator(fv, "export_name", _check_export_name)
    flags.register_validator("image_size", lambda v: v >= 0, "--image_size must be >= 0",
                             flag_values=fv)
    flags.register_validator("train_examples_per_class", lambda v: v >= 0,
                             "--train_examples_per_class must be >= 0", flag_values=fv)
    flags.register_validator("model_weight_decay", lambda v: v >= 0,
                             "--model_weight_decay must be >= 0", flag_values=fv)
    flags.register_validator(
        "init_from", lambda v: v is None or v == "imagenet" or os.path.exists(v),
        "--init_from must be 'imagenet' or an existing .keras file, SavedModel folder or "
        "model_dir", flag_values=fv)
    flags.register_multi_flags_validator(
        ["init_from", "freeze_backbone"], lambda f: f["init_from"] or not f["freeze_backbone"],
        "--freeze_backbone needs --init_from: a frozen random backbone learns nothing",
        flag_values=fv)


TRAINING_SUBSET = 2000  # training images the curves' inference-mode accuracy is measured on


class ClassifierTask(ImageClassificationTask):
    """A registered network on a tfds dataset, a folder or a zip; transfer learning."""

    def __init__(self, schedule: suite_flags.ScheduleConfig,
                 optimizer: suite_flags.OptimizerConfig, seed: int = 0, model: str = "resnet20",
                 dataset: str = "cifar10", data_dir: str | None = None, image_size: int = 0,
                 classes=(), train_examples_per_class: int = 0, augmentations=(),
                 model_weight_decay: float = 0.0, init_from: str | None = None,
                 freeze_backbone: bool = False, in_memory: bool | None = None,
                 export_name: str | None = None, data_override=None):
        from suite.data.augment import parse_augmentations
        from suite.models.registry import MODEL_BUILDERS, model_names

        self.schedule, self.optimizer, self.seed = schedule, optimizer, seed
        self.model_name = model.strip().lower().replace("-", "")
        self.builder = MODEL_BUILDERS.get(self.model_name)
        if self.builder is None:
            raise ValueError(f"--model={model!r} is not a registered model; valid: "
                             f"{', '.join(model_names())}")
        if model_weight_decay and "weight_decay" not in inspect.signature(
                self.builder).parameters:
            raise ValueError(f"--model={model} has no weight_decay argument: use the "
                             "optimizer's --weight_decay instead of --model_weight_decay")
        self.dataset, self.data_dir, self.image_size_flag = dataset, data_dir, image_size
        self.classes, self.per_class = list(classes), train_examples_per_class
        self.augmentations = parse_augmentations(augmentations)
        self.model_weight_decay, self.init_from = model_weight_decay, init_from
        self.initial_weights = init_from
        self.freeze_backbone, self.in_memory = freeze_backbone, in_memory
        self.name = export_name or self.model_name
        # (x_train, y_train), (x_test, y_test) arrays or a ClassificationData, for tests
        self.data_override = data_override
        self.global_batch_size = schedule.batch_size
        self.epochs = schedule.epochs
        self.transfer_report = None

    def load_data(self, run):
        from suite.data import classification as cls_data
        from suite.data.augment import EVAL_CROP_FRACTION
        from suite.data.pipeline import steps_per_epoch

        # The eval centre crop; serve_image_bytes crops alike (export_metadata's crop_fraction).
        self.crop_fraction = EVAL_CROP_FRACTION if "scale_crop" in self.augmentations else 1.0
        override = self.data_override
        if isinstance(override, tuple):
            override = cls_data.ClassificationData.from_arrays(*override)
        if override is not None:
            data = cls_data.subset(override, self.classes, self.per_class, self.seed)
        else:
            data = cls_data.load_classification(self.dataset, self.data_dir, self.image_size_flag,
                                                self.classes, self.per_class, self.seed,
                                                self.in_memory, self.crop_fraction)
        self.data, self.class_names = data, data.class_names
        self.image_shape = (data.image_size, data.image_size, data.channels)
        batch = self.schedule.batch_size
        self.steps_per_epoch = self.schedule.steps_per_epoch or steps_per_epoch(data.train.count,
                                                                                batch)
        self.train_data = cls_data.train_dataset(data, batch, self.seed, self.augmentations)
        self.validation_data = cls_data.eval_dataset(data, batch, self.crop_fraction)
        self.training_subset = cls_data.eval_dataset(
            cls_data.first_training_examples(data, TRAINING_SUBSET), batch, self.crop_fraction)
        print(f"{data.name}: {data.train.count} training / {data.test.count} test images, "
              f"{len(data.class_names)} classes, {data.image_size}x{data.image_size}, "
              f"{'in memory' if data.in_memory else 'streamed'}", flush=True)

    def build(self, run):
        import keras

        from suite.models.registry import build_model
        from suite.runtime import transfer
        from suite.runtime.optim import make_optimizer

        num_classes = len(self.class_names)
        options = {"weight_decay": self.model_weight_decay} if self.model_weight_decay else {}
        source, weights, rename, head_reason = None, None, {}, None
        if self.init_from == "imagenet":
            weights = transfer.imagenet_weights(self.model_name, include_top=num_classes == 1000)
            source, rename = "imagenet (keras.applications)", {"logits": "predictions"}
            # Those weights expect keras.applications' "caffe" inputs: that layer replaces /255.
            options.update(rescale=False,
                           augmentation=transfer.CaffePreprocess(name="caffe_preprocess"))
        elif self.init_from:
            found = transfer.read_source(self.init_from)
            source, weights = found.path, found.weights
            if found.class_names is not None and found.class_names != self.class_names:
                # Same number of classes is not the same classes: a head for others starts fresh.
                head_reason = (f"the source's head is for classes {found.class_names}, this run "
                               f"has {self.class_names}")
        net = build_model(self.model_name, input_shape=self.image_shape,
                          num_classes=num_classes, **options)
        if weights is not None:
            skip = dict.fromkeys(transfer.head_layers(net), head_reason) if head_reason else {}
            self.transfer_report = transfer.load_matching_weights(net, weights, source, rename,
                                                                  skip)
            if not self.transfer_report.loaded:
                raise ValueError(f"--init_from={self.init_from}: no layer of {net.name} matches "
                                 "the source by name and shape; was it trained with another "
                                 "--model?")
            print(self.transfer_report.summary(), flush=True)
        if self.freeze_backbone:
            transfer.freeze_backbone(net)
        metrics = ["accuracy"]
        if num_classes > 5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
        net.compile(optimizer=make_optimizer(self.optimizer, self.steps_per_epoch, self.epochs),
                    loss="sparse_categorical_crossentropy", metrics=metrics)
        return net

    def evaluate(self, run):
        from suite.runtime.evaluation import predict_dataset

        data = self.data
        probabilities, labels = predict_dataset(run.model, self.validation_data)
        same_size = data.in_memory and data.test.images.shape[1] == data.image_size
        results = self.report(run, probabilities, labels,
                              images=data.test.images if same_size else None,
                              title=f"{run.model.name} on {data.name}")
        results.update({
            "model": run.model.name, "dataset": data.name, "image_size": data.image_size,
            "train_examples": data.train.count, "epochs": self.epochs,
            "augmentations": list(self.augmentations),
            "transfer": self.transfer_report.as_dict() if self.transfer_report else None,
            "frozen_backbone": bool(self.freeze_backbone),
        })
        return results


def make_task(fv: flags.FlagValues, data_override=None) -> ClassifierTask:
    return ClassifierTask(
        suite_flags.schedule_config(fv), suite_flags.optimizer_config(fv), seed=fv.seed,
        model=fv.model, dataset=fv.dataset, data_dir=fv.data_dir, image_size=fv.image_size,
        classes=fv.classes, train_examples_per_class=fv.train_examples_per_class,
        augmentations=fv.augmentations, model_weight_decay=fv.model_weight_decay,
        init_from=fv.init_from, freeze_backbone=fv.freeze_backbone,
        in_memory={"auto": None, "yes": True, "no": False}[fv.in_memory],
        export_name=fv.export_name, data_override=data_override)


def main() -> None:
    """Entry point (python -m apps.train_classifier, console script suite-train-classifier)."""
    from suite.runtime.runner import main as run_main

    run_main(define_flags, make_task)


if __name__ == "__main__":
    main()
