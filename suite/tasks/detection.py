"""Faster R-CNN object detection as a Task (suite.models.faster_rcnn on keras-cv).

Training runs keras-cv's FasterRCNN train step (its four losses: RPN objectness and boxes, RoI
classes and boxes) on letterboxed, flipped and jitter-resized batches of a fixed size. The
backbone starts from a classification run (--init_from, layers matched by name: the suite's
transfer learning) or from scratch; a backbone that starts trained keeps its batch-norm
statistics frozen (batches of 2 images cannot estimate them), as Detectron does.

The best epoch is chosen by mAP@0.5 on every `validation_every`-th training image, held out
and scored as the test images are (the validation loss, which chose it before, barely moves
over an epoch and picked the first epoch in two seeds of three: docs/detector.md); the held-out
test images are evaluated once, at the end, on its model. Evaluation
runs the one inference path (suite.models.faster_rcnn.detect) on every held-out test image at
its own size and scores the boxes in its own pixels with COCO's metrics (mAP over IoU
0.50:0.95, mAP@0.5, mAP@0.75, recalls); it times detection per image and draws gallery.png (true
boxes and predictions, also in TensorBoard). The export takes PNG/JPEG bytes and returns boxes in
each original image's pixels, class ids and names and scores after NMS.
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from suite.config import Config, existing_path, group, option, rule
from suite.errors import DataError
from suite.runtime.config import OptimizerConfig, RuntimeConfig, ScheduleConfig, validation_option
from suite.tasks.base import Task

BATCH_NORM = ("auto", "frozen", "trained")


def _side(size: int) -> None:
    if size < 64 or size % 32:
        raise ValueError("must be a multiple of 32, at least 64")


@dataclasses.dataclass
class DetectorConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/detector")
    schedule: ScheduleConfig = group(ScheduleConfig, epochs=20, batch_size=2)
    optimizer: OptimizerConfig = group(OptimizerConfig, optimizer="momentum",
                                       learning_rate=0.01, clipnorm=10.0)
    dataset: str | None = option(
        None, "A PASCAL VOC folder (XML in annotations/ or Annotations/, images in images/ or "
        "JPEGImages/), e.g. ../shared/data/raccoon-detection; or voc / coco "
        "(tensorflow-datasets, online).", required=True)
    data_dir: str | None = option(None, "tensorflow-datasets' data folder for voc / coco.")
    class_names: tuple[str, ...] = option(
        (), "The classes in id order (ids 1..N); an object of any other class is an error "
        "naming its file. Default: every name in the annotations, sorted.")
    test_files: str | None = option(
        None, "A file listing the held-out images (one name per line, or a CSV whose first "
        "column is the file name, such as the raccoon set's test_labels.csv). Unset: every "
        "--held_out_every-th image in natural name order.")
    held_out_every: int = option(5, "Without --test_files, hold out every N-th image (5: 20%).",
                                 bounds=">= 1")
    limit: int = option(0, "Read only the first N annotations (quick trials); 0: all.",
                        bounds=">= 0")
    image_size: int = option(512, "Side of the square (letterboxed) network input; a multiple "
                             "of 32.", check=_side)
    depth: int = option(50, "ResNet depth of the backbone (suite.models.resnet, "
                        "keras.applications layer names).", choices=(18, 34, 50, 101, 152))
    width_multiplier: float = option(1.0, "Scales every backbone convolution (as the "
                                     "classification run's --width_multiplier); 1.0 is the "
                                     "paper's ResNet.", bounds="> 0")
    init_from: str | None = option(
        None, "Backbone start: a classification run of the same ResNet (model_dir, .keras or "
        "SavedModel; layers matched by name and shape) or 'imagenet' (keras.applications' "
        "ResNet-50/101/152 weights on disk). Unset or empty: random initialisation.",
        check=existing_path(
            "imagenet", what="an existing model_dir, .keras file or SavedModel"))
    backbone_batch_norm: str = option(
        "auto", "frozen: the backbone's batch norm keeps its statistics and scales (Detectron's "
        "choice for a trained backbone and small batches); trained: it learns; auto: frozen "
        "with --init_from, trained without.", choices=BATCH_NORM)
    augment: bool = option(True, "Random horizontal flips and jittered resizes (scale "
                           "0.75-1.25) of the training images, boxes moved with them "
                           "(keras-cv).")
    anchor_samples: int = option(256, "Anchors sampled per image for the RPN's losses, up to "
                                 "half positive (the paper: 256).", bounds=">= 1")
    train_proposals: int = option(2000, "Proposals kept after the RPN's NMS in training (the "
                                  "paper: 2000).", bounds=">= 1")
    test_proposals: int = option(300, "Proposals kept after the RPN's NMS at test time and in "
                                 "the export (the paper: 300).", bounds=">= 1")
    sampled_rois: int = option(
        256, "RoIs sampled per image for the detection head's losses, a quarter positive (Fast "
        "R-CNN: 128, the FPN paper: 512); at most --test_proposals (keras-cv samples the "
        "validation losses from the test-time proposals).", bounds=">= 1")
    head_units: tuple[int, ...] = option(
        (1024, 1024), "Widths of the detection head's fully connected layers on the 7x7 RoI "
        "features (the FPN paper: 1024,1024).", bounds=">= 1",
        message="must be positive integers, e.g. 1024,1024")
    score_threshold: float = option(
        0.5, "The export's default score threshold (the 'detect' signature takes its own) and "
        "the gallery's; mAP counts every detection.", bounds="[0, 1]")
    max_detections: int = option(100, "Detections kept per image after NMS.", bounds=">= 1")
    gallery_images: int = option(8, "Held-out images in gallery.png.", bounds=">= 0")
    export_name: str | None = option(None, "Model name of the export; default "
                                     "faster_rcnn_resnet<depth>.")
    validation: str = validation_option(
        "every `validation_every`-th training image (natural name order), held out (raccoon: "
        "20 of its 160 training images)")
    validation_every: int = option(8, "Hold out every N-th training image for validation.",
                                   bounds=">= 2")

    @rule("schedule.batch_size")
    def _two_images(batch_size):
        if batch_size < 2:  # per replica, checked once the replicas exist
            return "`batch_size` must be >= 2"

    @rule("sampled_rois", "test_proposals")
    def _rois_from_proposals(sampled_rois, test_proposals):
        if sampled_rois > test_proposals:
            return ("`sampled_rois` must be at most `test_proposals`: keras-cv samples the "
                    "held-out losses' RoIs from the test-time proposals")

    def network(self) -> dict:
        """build_faster_rcnn's arguments besides the class count."""
        return dict(image_size=self.image_size, depth=self.depth,
                    width_multiplier=self.width_multiplier, anchor_samples=self.anchor_samples,
                    train_proposals=self.train_proposals, test_proposals=self.test_proposals,
                    sampled_rois=self.sampled_rois, head_units=tuple(self.head_units),
                    max_detections=self.max_detections)


def freeze_batch_norm(model) -> int:
    """Every BatchNormalization layer of `model` to inference mode with fixed parameters."""
    import keras

    frozen = 0
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


class DetectionTask(Task):
    config_class = DetectorConfig
    best_checkpoint = ("val_map_50", "max")
    validation_label = "held-out"
    meaning_keys = ("class_names",)
    figures = ("gallery.png",)

    def __init__(self, config: DetectorConfig, data_override=None):
        """`data_override`: a DetectionData instead of `dataset`."""
        super().__init__(config, data_override)
        self.initial_weights = config.init_from
        self.name = config.export_name or f"faster_rcnn_resnet{config.depth}"
        self.transfer_report = None
        self.batch_norm = None

    # -- data -----------------------------------------------------------------------------------
    def load_data(self, run):
        from suite.data import detection as det_data
        from suite.data import detection_pipeline as pipeline
        from suite.data.pipeline import steps_per_epoch

        c, batch = self.config, self.config.schedule.batch_size
        data = self.data_override or det_data.load_detection(
            c.dataset, list(c.class_names) or None, c.test_files, c.held_out_every, c.data_dir,
            c.limit)
        replicas = run.strategy.num_replicas_in_sync
        if batch < 2 * replicas:  # keras-cv's training step corrupts memory at 1 (FINDINGS)
            raise DataError(
                f"`batch_size={batch}` gives {batch / replicas:g} image(s) per replica; Faster "
                f"R-CNN's training step (keras-cv) needs at least 2: use "
                f"`batch_size={2 * replicas}` or more")
        validation = data.test
        if c.validation == "holdout":
            every = c.validation_every
            picked = [i for i in range(data.train.count) if i % every == every - 1]
            validation = data.train.subset(picked)
            data = dataclasses.replace(data, train=data.train.subset(
                [i for i in range(data.train.count) if i % every != every - 1]))
        self.validation_split = (f"{validation.count} images: "
                                 + ", ".join(os.path.basename(n) for n in validation.names[:3])
                                 + (", ..." if validation.count > 3 else ""))
        self.data, self.class_names, self.validation = data, data.class_names, validation
        self.max_boxes = pipeline.max_boxes_of(data.train, data.test, validation)
        train = pipeline.letterboxed_arrays(data.train, c.image_size, self.max_boxes)
        validating = pipeline.letterboxed_arrays(validation, c.image_size, self.max_boxes)
        per_pass = steps_per_epoch(data.train.count, batch)  # refuses a batch above the count
        self.steps_per_epoch = self.config.schedule.steps_per_epoch or per_pass
        self.train_data = pipeline.train_dataset(train, batch, self.seed, c.augment)
        self.validation_data = (pipeline.eval_dataset(validating, batch)
                                if validation.count >= batch else None)
        print(data.summary(), flush=True)
        print(f"Letterboxed to {c.image_size}x{c.image_size}, batches of {batch}, "
              f"{self.steps_per_epoch} steps per epoch, augmentation "
              f"{'flip + jittered resize' if c.augment else 'none'}", flush=True)

    # -- model ----------------------------------------------------------------------------------
    def build(self, run):
        from suite.models.faster_rcnn import build_faster_rcnn, compile_faster_rcnn
        from suite.runtime.optim import make_optimizer

        c = self.config
        mode = c.backbone_batch_norm
        if mode == "auto":
            mode = "frozen" if c.init_from else "trained"
        self.batch_norm = mode
        # Trained over several replicas, batch norm takes the global batch's statistics: every
        # worker then keeps the same moving statistics.
        replicas = run.strategy.num_replicas_in_sync if run is not None else 1
        model = build_faster_rcnn(self.data.num_classes, **c.network(),
                                  sync_batch_norm=mode == "trained" and replicas > 1)
        if c.init_from:
            self.transfer_report = self._load_backbone(model.backbone)
        if mode == "frozen":
            print(f"Backbone batch norm frozen ({freeze_batch_norm(model.backbone)} layers).",
                  flush=True)
        compile_faster_rcnn(model, make_optimizer(self.config.optimizer, self.steps_per_epoch,
                                                  self.epochs))
        return model

    def _load_backbone(self, backbone):
        """--init_from: a classification run's ResNet of the same depth (and width), matched by
        layer name and shape; its classification head has no place here and is left out."""
        from suite.models import transfer

        if self.config.init_from == "imagenet":
            if self.config.depth not in (50, 101, 152) or self.config.width_multiplier != 1.0:
                raise ValueError("`init_from=imagenet`: keras.applications has ImageNet weights "
                                 "for ResNet-50/101/152 at full width only; use `depth=50` "
                                 "`width_multiplier=1`, or a suite classification run.")
            source = f"imagenet (keras.applications ResNet-{self.config.depth})"
            weights = transfer.imagenet_weights(f"resnet{self.config.depth}", include_top=False)
        else:
            found = transfer.read_source(self.config.init_from)
            source, weights = found.path, found.weights
        report = transfer.load_matching_weights(backbone, weights, source)
        if report.skipped:  # a backbone loads whole: half a ResNet is not a trained start
            example = next(iter(report.skipped.items()))
            raise ValueError(f"`init_from={self.config.init_from}`: {len(report.skipped)} of "
                             f"{len(report.skipped) + len(report.loaded)} layers of the ResNet-"
                             f"{self.config.depth} backbone (width {self.config.width_multiplier})"
                             f" do not match the source (e.g. {example[0]}: {example[1]}); "
                             "train the classifier with the same `model` depth and width")
        print(report.summary(), flush=True)
        return report

    # -- evaluation -----------------------------------------------------------------------------
    def _inference_model(self, run, model):
        """`model`, or outside a multi-replica strategy a copy of it: evaluation runs image by
        image on every worker, with no collectives."""
        if run.strategy.num_replicas_in_sync > 1:
            copy = type(model).from_config(model.get_config())
            copy.set_weights(model.get_weights())
            model = copy
        return model

    def _scored(self, model, images) -> tuple[dict, list, list]:
        """(COCO scores, detections, seconds per image) of `model` on `images` (a
        DetectionSet), each image at its own size through the one inference path."""
        import tensorflow as tf

        from suite.metrics.detection import coco_scores

        detect_fn = self._detector(model)
        found, seconds = [], []
        for image in images.images:
            started = time.perf_counter()
            found.append({k: v.numpy() for k, v in detect_fn(tf.constant(image)).items()})
            seconds.append(time.perf_counter() - started)
        scores = coco_scores(images.boxes, images.classes, [f["boxes"] for f in found],
                             [f["scores"] for f in found], [f["classes"] for f in found])
        return scores, found, seconds

    def _detector(self, model):
        """`detect` of `model` as one traced function, kept while the model is the same:
        epoch_metrics scores the training model every epoch, and a new tf.function each time
        would trace the whole detector again (seconds an epoch)."""
        import tensorflow as tf

        from suite.models.faster_rcnn import detect

        if getattr(self, "_detector_of", None) is not model:
            @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
            def detect_fn(image):  # a def, not a lambda: AutoGraph cannot read a lambda's source
                return detect(model, image)
            self._detector_of, self._detect_fn = model, detect_fn
        return self._detect_fn

    def epoch_metrics(self, run, epoch: int) -> dict:
        """mAP@0.5 and COCO mAP of the epoch's model on the validation images: what chooses
        the best epoch."""
        scores, _, _ = self._scored(self._inference_model(run, run.model), self.validation)
        return {"val_map_50": scores["map_50"], "val_map": scores["map"]}

    def evaluate(self, run):
        test = self.data.test
        scores, found, seconds = self._scored(self._inference_model(run, run.served), test)
        latency = float(np.median(seconds[1:] or seconds))  # the first call traces
        print(f"Held-out images ({test.count}): COCO mAP {scores['map']:.4f}, mAP@0.5 "
              f"{scores['map_50']:.4f}, mAP@0.75 {scores['map_75']:.4f}, recall@100 "
              f"{scores['recall_100']:.4f}; {latency * 1000:.0f} ms per image", flush=True)
        if run.is_chief and self.config.gallery_images:
            self._draw(run, found)
        c = self.config
        return {
            **scores, "model": run.model.name, "dataset": self.data.name,
            "class_names": list(self.class_names), "train_images": self.data.train.count,
            "held_out_images": test.count, "held_out_files": list(test.names),
            "image_size": c.image_size, "depth": c.depth,
            "width_multiplier": c.width_multiplier, "init_from": c.init_from,
            "backbone_batch_norm": self.batch_norm, "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch, "batch_size": self.config.schedule.batch_size,
            "detection_ms_per_image": round(latency * 1000, 1),
            "problems": self.data.problems,
            "transfer": self.transfer_report.as_dict() if self.transfer_report else None,
        }

    def _draw(self, run, found):
        """gallery.png: the first held-out images with their true boxes and the detections a
        user of the export gets (score at least its threshold), also in TensorBoard."""
        import tensorflow as tf

        from suite.viz.detection import plot_detection_gallery

        count = min(self.config.gallery_images, self.data.test.count)
        path = plot_detection_gallery(self.data.test.images[:count], self.data.test.boxes[:count],
                                      found[:count], self.class_names,
                                      self.config.score_threshold, run.output_path("gallery.png"))
        with tf.summary.create_file_writer(f"{run.paths.logs}/evaluation").as_default():
            png = tf.image.decode_png(tf.io.read_file(path), channels=3)
            tf.summary.image("held-out detections (true: dashed white)", png[None],
                             step=self.epochs)

    # -- export ---------------------------------------------------------------------------------
    def export_metadata(self) -> dict:
        return {"class_names": list(self.class_names), "image_size": self.config.image_size,
                "box_format": "xyxy pixels of the original image",
                "score_threshold": self.config.score_threshold,
                "max_detections": self.config.max_detections}

    @classmethod
    def serving_signatures(cls, model, metadata: dict):
        from suite.export.detector import detection_signatures

        return detection_signatures(model, metadata)

    @classmethod
    def custom_objects(cls) -> dict:
        from suite.models.faster_rcnn import FasterRCNNDetector, ResNetPyramid

        return {"FasterRCNNDetector": FasterRCNNDetector, "ResNetPyramid": ResNetPyramid}
