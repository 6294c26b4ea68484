"""Semantic segmentation as a Task: FCN or U-Net on a mask folder or a tfds set.

Trains on random crops with per-pixel cross-entropy (pixel accuracy and mean IoU as the fit's
metrics), validates and evaluates on whole held-out images, and reports per-class IoU, mIoU,
pixel accuracy and, for a binary boundary map such as ISBI 2012's membranes, the challenge's
pixel and Rand errors. Figures: overlays.png (input | truth | prediction | errors), also in
TensorBoard. The export maps images of any size to a class map and probabilities.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from suite.runtime.task import Task

MODELS = ("fcn32s", "fcn16s", "fcn8s", "unet")
TRAINING_SUBSET = 4  # whole training images the curves' inference-mode numbers are measured on


@dataclasses.dataclass
class SegmenterConfig:
    model: str = "fcn8s"
    dataset: str = ""
    data_dir: str | None = None
    class_names: tuple = ()
    class_values: tuple = ()
    held_out: int = 6
    crop_size: int = 256
    augmentations: tuple = ()
    width_multiplier: float = 1.0
    base_filters: int = 64
    batch_norm: bool = False
    dropout: float = 0.5
    model_weight_decay: float = 0.0
    init_from: str | None = None
    boundary_class: int = -1  # >= 0: also report ISBI pixel/Rand errors with this boundary class
    export_name: str | None = None


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
    best_checkpoint = ("val_mean_iou", "max")
    validation_label = "held-out"

    def __init__(self, config: SegmenterConfig, schedule, optimizer, seed: int = 0,
                 data_override=None):
        if config.model not in MODELS:
            raise ValueError(f"--model={config.model!r}: choose from {', '.join(MODELS)}")
        self.config, self.schedule, self.optimizer, self.seed = config, schedule, optimizer, seed
        self.initial_weights = config.init_from
        self.data_override = data_override  # a SegmentationData, for tests
        self.name = config.export_name or config.model
        self.global_batch_size = schedule.batch_size
        self.epochs = schedule.epochs
        self.transfer_report = None

    def load_data(self, run):
        from suite.data import segmentation as seg_data
        from suite.data import segmentation_pipeline as pipeline

        c = self.config
        data = self.data_override or seg_data.load_segmentation(
            c.dataset, c.data_dir, list(c.class_names), list(c.class_values), c.held_out)
        if c.boundary_class >= data.num_classes:
            from suite.data.idx import DataError

            raise DataError(f"--boundary_class={c.boundary_class}, but {data.name} has "
                            f"{data.num_classes} classes {data.class_names}; give the index of "
                            "the boundary class (ISBI: 0, the membranes), or -1 for no ISBI "
                            "scores.")
        smallest = min(min(im.shape[:2]) for im in data.train.images)
        if c.crop_size > smallest and "scale" not in c.augmentations:
            print(f"Note: --crop_size={c.crop_size} exceeds the smallest training image "
                  f"({smallest}); such images are enlarged to fit the crop.", flush=True)
        self.data, self.class_names = data, data.class_names
        self.steps_per_epoch = self.schedule.steps_per_epoch or max(
            1, data.train.count // self.schedule.batch_size)
        self.train_data = pipeline.train_dataset(data.train.images, data.train.masks,
                                                 self.schedule.batch_size, c.crop_size, self.seed,
                                                 c.augmentations)
        self.validation_data = self._curve_dataset(run, data.test, "held-out")
        self.training_subset = self._curve_dataset(run, seg_data.SegmentationSplit(
            *(part[:TRAINING_SUBSET] for part in (data.train.images, data.train.masks,
                                                  data.train.names))), "training")
        sizes = sorted({f"{im.shape[1]}x{im.shape[0]}" for im in data.train.images})
        print(f"{data.name}: {data.train.count} training / {data.test.count} held-out images "
              f"({', '.join(sizes[:3])}{', ...' if len(sizes) > 3 else ''}), "
              f"{data.num_classes} classes {data.class_names}, crops {c.crop_size}x{c.crop_size}",
              flush=True)

    @staticmethod
    def _curve_dataset(run, split, what: str):
        """Whole images for the per-epoch curves: one per replica per batch, so no replica gets
        an empty batch (BatchNormalization fails on one under a strategy); the few left over
        by a division are left out of the curves only, never out of evaluate()."""
        from suite.data import segmentation_pipeline as pipeline
        from suite.data.idx import DataError

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
                            f"hold out at least {replicas} (--held_out).")
        return pipeline.eval_dataset(split.images[:keep], split.masks[:keep], batch=replicas)

    def build(self, run):
        import keras

        from suite.runtime.optim import make_optimizer

        net = build_network(self.config, self.data.num_classes, self.data.channels,
                            run.strategy.num_replicas_in_sync)
        if self.config.init_from:
            self.transfer_report = self._load_encoder(net)
        net.compile(
            optimizer=make_optimizer(self.optimizer, self.steps_per_epoch, self.epochs),
            loss="sparse_categorical_crossentropy",
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="pixel_accuracy"),
                     keras.metrics.MeanIoU(self.data.num_classes, sparse_y_pred=False,
                                           name="mean_iou")])
        return net

    def _load_encoder(self, net):
        """--init_from: a classifier run's VGG-16 (fc1/fc2 recast as fc6/fc7, as the paper
        does) or keras.applications' ImageNet VGG-16; layers matched by name and shape."""
        from suite.models.fcn import recast_classifier_weights
        from suite.runtime import transfer

        if self.config.init_from == "imagenet":
            if self.config.model == "unet":
                raise ValueError("--init_from=imagenet: U-Net has no ImageNet encoder; use an FCN "
                                 "model or a suite run of a matching U-Net.")
            source = "imagenet (keras.applications VGG-16)"
            weights = transfer.imagenet_weights("vgg16", include_top=True)
        else:
            found = transfer.read_source(self.config.init_from)
            source, weights = found.path, found.weights
        weights = recast_classifier_weights(weights, net)
        report = transfer.load_matching_weights(net, weights, source, {}, {})
        if not report.loaded:
            raise ValueError(f"--init_from={self.config.init_from}: no layer of {net.name} "
                             "matches the source by name and shape (another width, or not a "
                             "VGG-16?).")
        print(report.summary(), flush=True)
        return report

    def evaluate(self, run):
        from suite.metrics import segmentation as metrics

        data = self.data
        # A copy outside the strategy: every image alone, on every worker, no collectives.
        model = run.model
        if run.strategy.num_replicas_in_sync > 1:
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
            "model": run.model.name, "dataset": data.name, "class_names": list(data.class_names),
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
        from suite.tasks.segmentation_serving import segmentation_metadata, segmentation_signatures

        segmentation_metadata(model, metadata.get("class_names"))
        return segmentation_signatures(model)
