"""Semantic segmentation as a Task: FCN or U-Net on a mask folder or a tfds set.

Trains on random crops with per-pixel cross-entropy (pixel accuracy and mean IoU as the fit's
metrics), validates and evaluates on whole held-out images, and reports per-class IoU, mIoU,
pixel accuracy and, for a binary boundary map such as ISBI 2012's membranes, the challenge's
pixel and Rand errors. The best epoch is chosen on the last `validation_images` training
images, held out; the held-out test images are evaluated once, at the end, on its model.
Figures: overlays.png (input | truth | prediction | errors), also in TensorBoard. The export
maps images of any size to a class map and probabilities.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from suite.config import Config, existing_path, group, option
from suite.errors import DataError
from suite.runtime.config import OptimizerConfig, RuntimeConfig, ScheduleConfig, validation_option
from suite.tasks.base import Task

MODELS = ("fcn32s", "fcn16s", "fcn8s", "unet")
TRAINING_SUBSET = 4  # whole training images the curves' inference-mode numbers are measured on


def _augmentations(names: tuple[str, ...]) -> None:
    from suite.data.segmentation import parse_augmentations

    parse_augmentations(names)


@dataclasses.dataclass
class SegmenterConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/segmenter")
    schedule: ScheduleConfig = group(ScheduleConfig, epochs=50, batch_size=4)
    optimizer: OptimizerConfig = group(OptimizerConfig, optimizer="adam", learning_rate=1e-4)
    model: str = option("fcn8s", "FCN-32s, FCN-16s, FCN-8s (Long et al. 2015, on VGG-16) or "
                        "U-Net (Ronneberger et al. 2015).", choices=MODELS)
    dataset: str | None = option(
        None, "A folder of images and masks: <root>/image(s)/<name> and <root>/label(s)|mask(s)/"
        "<name> (PNG/JPEG/TIFF images, lossless masks), optionally split into <root>/train and "
        "<root>/test; or a tensorflow-datasets segmentation set (oxford_iiit_pet).",
        required=True)
    data_dir: str | None = option(None, "tensorflow-datasets' data folder for a tfds --dataset; "
                                  "unset: tfds's default.")
    class_names: tuple[str, ...] = option((), "Class names in class-index order, e.g. "
                                          "membrane,cell; default the class indices.")
    class_values: tuple[int, ...] = option(
        (), "Mask pixel value of each class, in class order (ISBI: 0,255 makes 0 class 0 and "
        "255 class 1); unset: masks hold class indices. Any other value in a mask is refused.",
        message="must be integers, e.g. 0,255")
    held_out: int = option(6, "When the folder has no train/ and test/ parts: hold out its last "
                           "N images (natural order) for validation and the reported numbers.",
                           bounds=">= 1")
    crop_size: int = option(256, "Side of the random training crops; evaluation uses whole "
                            "images.", bounds=">= 8")
    augmentations: tuple[str, ...] = option(
        (), "Any of flip, rotate90, scale (zoom 0.75-1.25), elastic (U-Net's 3x3-grid "
        "deformation, 10 px std); image and mask move together.", check=_augmentations)
    width_multiplier: float = option(1.0, "FCN: scales every VGG convolution and fc6/fc7 (0.25 "
                                     "for a 2-core CPU); 1.0 is the paper's network.",
                                     bounds="> 0")
    base_filters: int = option(64, "U-Net: filters of the first level (the paper: 64), doubled "
                               "at every level.", bounds=">= 1")
    batch_norm: bool = option(
        False, "BatchNormalization after every convolution of the encoder (FCN) or of the whole "
        "net (U-Net); not in the papers, which is why it is off, but it makes training from "
        "scratch reliable.")
    dropout: float = option(0.5, "Dropout rate after fc6 and fc7 (FCN) or at the end of the "
                            "contracting path (U-Net); both papers use 0.5.", bounds="[0, 1)")
    model_weight_decay: float = option(0.0, "SGD weight decay as L2 penalties on the kernels "
                                       "(FCN: 5e-4 with SGD, U-Net: none).")
    init_from: str | None = option(
        None, "FCN encoder start: a classifier run's VGG-16 (model_dir, .keras or SavedModel; "
        "fc1/fc2 recast as fc6/fc7) or 'imagenet' (keras.applications' VGG-16 weights on "
        "disk).", check=existing_path(
            "imagenet", what="an existing .keras file, SavedModel folder or model_dir"))
    boundary_class: int = option(
        -1, "Also report the ISBI 2012 pixel and Rand errors, with this class as the boundaries "
        "between objects (ISBI: 0, the membranes); -1: no ISBI scores.", bounds=">= -1",
        message="must be a class index (>= 0) or -1")
    export_name: str | None = option(None, "Model name of the export; default --model.")
    validation: str = validation_option(
        "the last `validation_images` training images (natural order), held out (ISBI: "
        "images 20-23 when 24-29 are the test images)")
    validation_images: int = option(4, "Training images held out for validation: the last N "
                                    "of the training part.", bounds=">= 1")

    def __post_init__(self):
        super().__post_init__()
        from suite.data.segmentation import parse_augmentations

        self.augmentations = parse_augmentations(self.augmentations)


def build_network(config: SegmenterConfig, num_classes: int, channels: int,
                  replicas: int = 1):
    """The configured FCN variant or U-Net (uncompiled). Over several replicas batch norm
    takes its statistics from the global batch: every worker then keeps the same moving
    statistics, and small per-replica batches (segmentation's) stay usable."""
    from suite.models.fcn import build_fcn
    from suite.models.unet import build_unet

    shape = (None, None, channels)
    if config.model == "unet":
        return build_unet(num_classes, shape, base_filters=config.base_filters,
                          batch_norm=config.batch_norm, sync_batch_norm=replicas > 1,
                          dropout_rate=config.dropout,
                          weight_decay=config.model_weight_decay)
    return build_fcn(config.model[3:], num_classes, shape,
                     width_multiplier=config.width_multiplier, batch_norm=config.batch_norm,
                     sync_batch_norm=replicas > 1, dropout_rate=config.dropout,
                     weight_decay=config.model_weight_decay,
                     name=config.model)


class SegmentationTask(Task):
    config_class = SegmenterConfig
    best_checkpoint = ("val_mean_iou", "max")
    validation_label = "held-out"
    meaning_keys = ("class_names", "num_classes", "channels")
    figures = ("overlays.png",)

    def __init__(self, config: SegmenterConfig, data_override=None):
        """`data_override`: a SegmentationData instead of `dataset`."""
        super().__init__(config, data_override)
        self.initial_weights = config.init_from
        self.name = config.export_name or config.model
        self.transfer_report = None

    def load_data(self, run):
        from suite.data import segmentation as seg_data
        from suite.data import segmentation_pipeline as pipeline

        c = self.config
        data = self.data_override or seg_data.load_segmentation(
            c.dataset, c.data_dir, list(c.class_names), list(c.class_values), c.held_out)
        if c.boundary_class >= data.num_classes:
            raise DataError(f"`boundary_class={c.boundary_class}`, but {data.name} has "
                            f"{data.num_classes} classes {data.class_names}; give the index of "
                            "the boundary class (ISBI: 0, the membranes), or -1 for no ISBI "
                            "scores.")
        smallest = min(min(im.shape[:2]) for im in data.train.images)
        if c.crop_size > smallest and "scale" not in c.augmentations:
            print(f"Note: --crop_size={c.crop_size} exceeds the smallest training image "
                  f"({smallest}); such images are enlarged to fit the crop.", flush=True)
        validation = data.test
        if c.validation == "holdout":
            keep = data.train.count - c.validation_images
            if keep < 1:
                raise DataError(f"{data.train.count} training images: `validation_images="
                                f"{c.validation_images}` must leave at least one to train on")
            validation = seg_data.SegmentationSplit(
                *(part[keep:] for part in (data.train.images, data.train.masks,
                                           data.train.names)))
            data = dataclasses.replace(data, train=seg_data.SegmentationSplit(
                *(part[:keep] for part in (data.train.images, data.train.masks,
                                           data.train.names))))
        names = [os.path.basename(n) for n in validation.names]
        self.validation_split = ", ".join(names[:3]) + (
            f", ... ({validation.count} images)" if validation.count > 3 else "")
        self.data, self.class_names = data, data.class_names
        batch = c.schedule.batch_size
        self.steps_per_epoch = c.schedule.steps_per_epoch or max(1, data.train.count // batch)
        self.train_data = pipeline.train_dataset(data.train.images, data.train.masks, batch,
                                                 c.crop_size, self.seed, c.augmentations)
        self.validation_data = self._curve_dataset(run, validation, "validation")
        self.training_subset = self._curve_dataset(run, seg_data.SegmentationSplit(
            *(part[:TRAINING_SUBSET] for part in (data.train.images, data.train.masks,
                                                  data.train.names))), "training")
        sizes = sorted({f"{im.shape[1]}x{im.shape[0]}" for im in data.train.images})
        print(f"{data.name}: {data.train.count} training / {validation.count} validation / "
              f"{data.test.count} held-out test images "
              f"({', '.join(sizes[:3])}{', ...' if len(sizes) > 3 else ''}), "
              f"{data.num_classes} classes {data.class_names}, crops {c.crop_size}x{c.crop_size}",
              flush=True)

    @staticmethod
    def _curve_dataset(run, split, what: str):
        """Whole images for the per-epoch curves: one per replica per batch, so no replica gets
        an empty batch (BatchNormalization fails on one under a strategy); the few left over
        by a division are left out of the curves only, never out of evaluate()."""
        from suite.data import segmentation_pipeline as pipeline

        replicas = run.strategy.num_replicas_in_sync
        if replicas == 1:
            return pipeline.eval_dataset(split.images, split.masks)
        if len({im.shape for im in split.images}) > 1:
            raise DataError(f"The {what} images differ in size, and {replicas} replicas need "
                            "batches of one size; resize them to one size or train on one "
                            "device.")
        keep = split.count - split.count % replicas
        if keep == 0:
            raise DataError(f"{split.count} {what} image(s) cannot feed {replicas} replicas; "
                            f"hold out at least {replicas} (`held_out`).")
        return pipeline.eval_dataset(split.images[:keep], split.masks[:keep], batch=replicas)

    def build(self, run):
        import keras

        from suite.runtime.optim import make_optimizer

        net = build_network(self.config, self.data.num_classes, self.data.channels,
                            run.strategy.num_replicas_in_sync)
        if self.config.init_from:
            self.transfer_report = self._load_encoder(net)
        net.compile(
            optimizer=make_optimizer(self.config.optimizer, self.steps_per_epoch, self.epochs),
            loss="sparse_categorical_crossentropy",
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
                     keras.metrics.MeanIoU(self.data.num_classes, sparse_y_pred=False,
                                           name="mean_iou")])
        return net

    def _load_encoder(self, net):
        """--init_from: a classifier run's VGG-16 (fc1/fc2 recast as fc6/fc7, as the paper
        does) or keras.applications' ImageNet VGG-16; layers matched by name and shape."""
        from suite.models import transfer
        from suite.models.fcn import recast_classifier_weights

        if self.config.init_from == "imagenet":
            if self.config.model == "unet":
                raise ValueError("`init_from=imagenet`: U-Net has no ImageNet encoder; use an FCN "
                                 "model or a suite run of a matching U-Net.")
            source = "imagenet (keras.applications VGG-16)"
            weights = transfer.imagenet_weights("vgg16", include_top=True)
        else:
            found = transfer.read_source(self.config.init_from)
            source, weights = found.path, found.weights
        weights = recast_classifier_weights(weights, net)
        report = transfer.load_matching_weights(net, weights, source, {}, {})
        if not report.loaded:
            raise ValueError(f"`init_from={self.config.init_from}`: no layer of {net.name} "
                             "matches the source by name and shape (another width, or not a "
                             "VGG-16?).")
        print(report.summary(), flush=True)
        return report

    def evaluate(self, run):
        from suite.metrics import segmentation as metrics

        data = self.data
        # A copy outside the strategy: every image alone, on every worker, no collectives.
        model = run.served
        if run.strategy.num_replicas_in_sync > 1 and model is run.model:
            import keras

            model = keras.models.clone_model(run.model)
            model.set_weights(run.model.get_weights())
        probabilities = [model.predict(image[None].astype(np.float32), verbose=0)[0]
                         for image in data.test.images]
        predictions = [np.argmax(p, -1).astype(np.uint8) for p in probabilities]
        matrix = sum(metrics.confusion(t, p, data.num_classes)
                     for t, p in zip(data.test.masks, predictions))
        results = metrics.class_scores(matrix)
        line = (f"Held-out images: mIoU {results['mean_iou']:.4f}, pixel accuracy "
                f"{results['pixel_accuracy']:.4f}, IoU per class "
                + ", ".join(f"{n} {v:.4f}" for n, v in zip(data.class_names,
                                                            results["per_class_iou"])
                            if v is not None))
        if self.config.boundary_class >= 0:
            isbi = metrics.mean_isbi_scores(data.test.masks, predictions,
                                            self.config.boundary_class)
            results.update(isbi)
            line += (f"; ISBI pixel error {isbi['pixel_error']:.4f}, Rand error "
                     f"{isbi['rand_error']:.4f}")
        print(line, flush=True)
        if run.is_chief:
            self._draw(run, predictions)
        c = self.config
        results.update({
            "model": model.name, "dataset": data.name, "class_names": list(data.class_names),
            "train_images": data.train.count, "held_out_images": data.test.count,
            "held_out_files": list(data.test.names), "crop_size": c.crop_size,
            "augmentations": list(c.augmentations), "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "confusion_matrix": matrix.tolist() if data.num_classes <= 50 else None,
            "transfer": self.transfer_report.as_dict() if self.transfer_report else None,
        })
        return results

    def _draw(self, run, predictions):
        import tensorflow as tf

        from suite.viz.images import save_png
        from suite.viz.segmentation import overlay_grid

        data = self.data
        grid = overlay_grid(data.test.images, data.test.masks, predictions, data.num_classes)
        save_png(grid, run.output_path("overlays.png"))
        with tf.summary.create_file_writer(f"{run.paths.logs}/evaluation").as_default():
            tf.summary.image("overlays (input | truth | prediction | errors)", grid[None],
                             step=self.epochs)

    def export_metadata(self) -> dict:
        return {"class_names": list(self.class_names), "channels": self.data.channels,
                "num_classes": self.data.num_classes}

    @classmethod
    def serving_signatures(cls, model, metadata: dict):
        from suite.export.segmenter import segmentation_metadata, segmentation_signatures

        segmentation_metadata(model, metadata.get("class_names"))
        return segmentation_signatures(model)
