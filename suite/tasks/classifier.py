"""An image classifier (ResNet, plain net, VGG, GoogLeNet) on CIFAR, ImageNet or a folder.

A registered network (suite.models.registry) on a tensorflow-datasets set, a folder or a zip;
`init_from` starts from another run's weights (transfer learning), `freeze_backbone` trains only
the classification head. The best epoch is chosen on the set's validation split, or on a
stratified 10% of its training examples held out; the test split is evaluated once, at the
end. Writes what the MNIST task writes (confusion matrix, misclassified images; results with
top-1/top-5) and exports <model>/<version>/ with the class names.
"""
from __future__ import annotations

import dataclasses
import inspect

from suite.config import Config, existing_path, group, option, rule
from suite.errors import ConfigError
from suite.runtime.config import OptimizerConfig, RuntimeConfig, ScheduleConfig, validation_option
from suite.tasks.classification import ImageClassificationTask

TRAINING_SUBSET = 2000  # training images the curves' inference-mode accuracy is measured on
IN_MEMORY = {"auto": None, "yes": True, "no": False}


def _registered_model(name: str) -> None:
    from suite.models.registry import MODEL_BUILDERS, model_names

    if name.strip().lower().replace("-", "") not in MODEL_BUILDERS:
        raise ConfigError(f"`model={name!r}` is not a registered model; valid: "
                          f"{', '.join(model_names())}")


def _dataset_form(value: str) -> None:
    from suite.data.classification import dataset_form_error

    error = dataset_form_error(value)
    if error:
        raise ConfigError(error)


def _distinct_classes(names: tuple[str, ...]) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"names {', '.join(duplicates)} more than once; name each class once")
    if len(names) == 1:
        raise ValueError(f"needs at least 2 classes to tell apart, got only {names[0]!r}; name "
                         "2 or more, or leave it empty for all of the dataset's classes")


def _augmentations(names: tuple[str, ...]) -> None:
    from suite.data.augment import parse_augmentations

    parse_augmentations(names)


def _export_name(name: str) -> None:
    from suite.export.saved_model import check_model_name

    check_model_name(name)  # an ExportError, i.e. a ValueError


@dataclasses.dataclass
class ClassifierConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/classifier")
    schedule: ScheduleConfig = group(ScheduleConfig, epochs=160, batch_size=128)
    optimizer: OptimizerConfig = group(OptimizerConfig, optimizer="momentum",
                                       learning_rate=0.1)
    model: str = option("resnet20", "Network from suite.models.registry, e.g. resnet20, "
                        "resnet56, plain56, resnet50, vgg16, googlenet.",
                        check=_registered_model)
    dataset: str = option(
        "cifar10", "Any tensorflow-datasets image-classification set (cifar10, cifar100, mnist, "
        "svhn_cropped, oxford_flowers102, imagenette, imagenet2012, ...: its image and label "
        "features, classes and splits are read from the builder; tested on 'test', else "
        "'validation', else the last 10% of 'train'), a folder <root>/{train,test}/<class>/"
        "<image>, or a zip of CIFAR-10 images in that layout. --data_dir is the tfds folder.",
        check=_dataset_form)
    data_dir: str | None = option(None, "tensorflow-datasets' data folder (prepared datasets "
                                  "and downloads/manual/); unset: tfds's default.")
    image_size: int = option(
        0, "Side of the square model input; 0: the dataset's own (32 for CIFAR, 224 for "
        "ImageNet and sets of varying size, the first image's for a folder). Larger resizes "
        "small images up (e.g. MNIST for an ImageNet network); grayscale stays 1 channel.",
        bounds=">= 0")
    classes: tuple[str, ...] = option(
        (), "Train and test on these classes only, relabelled in this order, e.g. "
        "airplane,automobile,bird,cat,deer.", check=_distinct_classes)
    train_examples_per_class: int = option(0, "Keep N random training examples per class "
                                           "(few-label fine-tuning); 0 keeps all.",
                                           bounds=">= 0")
    augmentations: tuple[str, ...] = option(
        (), "Training augmentation in the input pipeline, any of crop_flip (CIFAR: 4-pixel pad "
        "+ crop, flip), crop, flip, scale_crop (ImageNet: random area/aspect crop), brightness, "
        "contrast, rotation, cutout (a 16x16 square of zeros, DeVries & Taylor 2017).",
        check=_augmentations)
    model_weight_decay: float = option(
        0.0, "The papers' SGD weight decay, as L2 penalties on the kernels (the model's "
        "weight_decay argument), e.g. 1e-4 for ResNets.", bounds=">= 0")
    init_from: str | None = option(
        None, "Start from these weights, matched by layer name and shape: a .keras file, a "
        "SavedModel folder, a model_dir of a finished run, or 'imagenet' (keras.applications "
        "weights; ResNet-50/101/152, VGG-16/19).", check=existing_path(
            "imagenet", what="an existing .keras file, SavedModel folder or model_dir"))
    freeze_backbone: bool = option(False, "Train only the classification head (with "
                                   "--init_from); frozen BatchNormalization stays in inference "
                                   "mode.")
    in_memory: str = option(
        "auto", "Decode a folder's images into memory once (yes) or stream them from the files "
        "(no); auto: in memory up to 2 GiB of pixels.", choices=tuple(IN_MEMORY))
    export_name: str | None = option(None, "Model name of the export; default --model.",
                                     check=_export_name)
    validation: str = validation_option(
        "the set's validation split where it has one beside its test split, else "
        "`validation_fraction` of the training examples, stratified by class (seed `seed`)")
    validation_fraction: float = option(0.1, "Share of the training examples held out for "
                                        "validation when the set has no validation split.",
                                        bounds="(0, 0.5]")

    @rule("init_from", "freeze_backbone")
    def _frozen_needs_weights(init_from, freeze_backbone):
        if freeze_backbone and not init_from:
            return ("`freeze_backbone` needs `init_from`: a frozen random backbone learns "
                    "nothing")

    @rule("model", "model_weight_decay")
    def _weight_decay_argument(model, model_weight_decay):
        from suite.models.registry import MODEL_BUILDERS

        builder = MODEL_BUILDERS.get(model.strip().lower().replace("-", ""))
        if model_weight_decay and builder and "weight_decay" not in inspect.signature(
                builder).parameters:
            return (f"`model={model}` has no weight_decay argument: use the optimizer's "
                    "`weight_decay` instead of `model_weight_decay`")


class ClassifierTask(ImageClassificationTask):
    """A registered network on a tfds dataset, a folder or a zip; transfer learning."""
    config_class = ClassifierConfig

    def __init__(self, config: ClassifierConfig, data_override=None):
        """`data_override`: (x_train, y_train), (x_test, y_test) arrays or a
        ClassificationData, instead of `dataset`."""
        from suite.data.augment import parse_augmentations
        from suite.models.registry import MODEL_BUILDERS

        super().__init__(config, data_override)
        self.model_name = config.model.strip().lower().replace("-", "")
        self.builder = MODEL_BUILDERS[self.model_name]
        self.augmentations = parse_augmentations(config.augmentations)
        self.initial_weights = config.init_from
        self.name = config.export_name or self.model_name
        self.transfer_report = None

    def load_data(self, run):
        from suite.data import classification as cls_data
        from suite.data.augment import EVAL_CROP_FRACTION
        from suite.data.pipeline import steps_per_epoch

        c = self.config
        # The eval centre crop; serve_image_bytes crops alike (export_metadata's crop_fraction).
        self.crop_fraction = EVAL_CROP_FRACTION if "scale_crop" in self.augmentations else 1.0
        override = self.data_override
        if isinstance(override, tuple):
            override = cls_data.ClassificationData.from_arrays(*override)
        fraction = c.validation_fraction if c.validation == "holdout" else 0.0
        if override is not None:
            data = cls_data.subset(cls_data.hold_out(override, fraction, self.seed), c.classes,
                                   c.train_examples_per_class, self.seed)
        else:
            data = cls_data.load_classification(c.dataset, c.data_dir, c.image_size, c.classes,
                                                c.train_examples_per_class, self.seed,
                                                IN_MEMORY[c.in_memory], self.crop_fraction,
                                                fraction)
        self.data, self.class_names = data, data.class_names
        self.validation_split = (data.validation_source if data.validation is not None
                                 else f"{data.name}'s test split ({data.test_split})")
        self.image_shape = (data.image_size, data.image_size, data.channels)
        batch = c.schedule.batch_size
        self.steps_per_epoch = c.schedule.steps_per_epoch or steps_per_epoch(data.train.count,
                                                                             batch)
        self.train_data = cls_data.train_dataset(data, batch, self.seed, self.augmentations)
        self.validation_data = cls_data.eval_dataset(data, batch, self.crop_fraction,
                                                     data.validation)
        self.training_subset = cls_data.eval_dataset(
            data, batch, self.crop_fraction,
            cls_data.training_sample(data, TRAINING_SUBSET, self.seed))
        validation = data.validation.count if data.validation is not None else "no"
        print(f"{data.name}: {data.train.count} training / {validation} validation / "
              f"{data.test.count} test images, {len(data.class_names)} classes, "
              f"{data.image_size}x{data.image_size}, "
              f"{'in memory' if data.in_memory else 'streamed'}", flush=True)

    def build(self, run):
        import keras

        from suite.models import transfer
        from suite.models.registry import build_model, builder_accepts
        from suite.runtime.optim import make_optimizer

        c = self.config
        num_classes = len(self.class_names)
        options = {"weight_decay": c.model_weight_decay} if c.model_weight_decay else {}
        if run.strategy.num_replicas_in_sync > 1 and builder_accepts(self.model_name,
                                                                     "sync_batch_norm"):
            # Batch statistics of the global batch, as one process takes them: every replica
            # (every worker) then keeps the same moving statistics, evaluates the same model.
            options["sync_batch_norm"] = True
        source, weights, rename, head_reason = None, None, {}, None
        if c.init_from == "imagenet":
            weights = transfer.imagenet_weights(self.model_name, include_top=num_classes == 1000)
            source, rename = "imagenet (keras.applications)", {"logits": "predictions"}
            # Those weights expect keras.applications' "caffe" inputs: that layer replaces /255.
            options.update(rescale=False,
                           augmentation=transfer.CaffePreprocess(name="caffe_preprocess"))
        elif c.init_from:
            found = transfer.read_source(c.init_from)
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
                raise ValueError(f"`init_from={c.init_from}`: no layer of {net.name} matches "
                                 "the source by name and shape; was it trained with another "
                                 "`model`?")
            print(self.transfer_report.summary(), flush=True)
        if c.freeze_backbone:
            transfer.freeze_backbone(net)
        metrics = ["accuracy"]
        if num_classes > 5:
            metrics.append(keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5_accuracy"))
        net.compile(optimizer=make_optimizer(c.optimizer, self.steps_per_epoch, self.epochs),
                    loss="sparse_categorical_crossentropy", metrics=metrics)
        return net

    def evaluate(self, run):
        from suite.data.classification import eval_dataset
        from suite.runtime.evaluation import predict_dataset

        data, model = self.data, run.served
        test = eval_dataset(data, self.config.schedule.batch_size, self.crop_fraction)
        probabilities, labels = predict_dataset(model, test)
        same_size = data.in_memory and data.test.images.shape[1] == data.image_size
        results = self.report(run, probabilities, labels,
                              images=data.test.images if same_size else None,
                              title=f"{model.name} on {data.name}")
        results.update({
            "model": model.name, "dataset": data.name, "image_size": data.image_size,
            "train_examples": data.train.count, "epochs": self.epochs,
            "augmentations": list(self.augmentations),
            "transfer": self.transfer_report.as_dict() if self.transfer_report else None,
            "frozen_backbone": bool(self.config.freeze_backbone),
        })
        return results
