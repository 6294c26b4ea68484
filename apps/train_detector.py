"""Trains Faster R-CNN (Ren et al. 2015) on keras-cv with a suite ResNet feature-pyramid backbone,
on a PASCAL VOC XML folder or tfds voc / coco.

    python -m apps.train_detector --flagfile=apps/flags/raccoon_faster_rcnn.flags   # offline

Writes under --model_dir what every app writes (checkpoints/, backup/, logs/, history.csv,
learning_curves.png, results.json, run.json, flags.txt, export/<name>/<version>/) plus
gallery.png (held-out images with true and predicted boxes, also in TensorBoard). results.json
has COCO mAP, mAP@0.5, mAP@0.75 and the recalls on the held-out images, detection time per image
and what the data check clipped or dropped. The export takes PNG/JPEG bytes and returns boxes in
each original image's pixels, class ids, class names and scores after NMS (serving_default with
the export's threshold; `detect` with the threshold and the cap as inputs). Running the same
command again resumes.
"""
from __future__ import annotations

import os

from absl import flags

from suite.runtime import flags as suite_flags
from suite.tasks.detection import BATCH_NORM, DetectionTask, DetectorConfig


def define_flags(fv: flags.FlagValues) -> None:
    suite_flags.define_runtime_flags(fv, "runs/detector")
    suite_flags.define_schedule_flags(fv, default_epochs=20, default_batch_size=2)
    suite_flags.define_optimizer_flags(fv, default_optimizer="momentum",
                                       default_learning_rate=0.01, default_clipnorm=10.0)
    flags.DEFINE_string("dataset", None, "A PASCAL VOC folder (XML in annotations/ or "
                        "Annotations/, images in images/ or JPEGImages/), e.g. "
                        "../shared/data/raccoon-detection; or voc / coco (tensorflow-datasets, "
                        "online).", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets' data folder for voc / coco.",
                        flag_values=fv)
    flags.DEFINE_list("class_names", [], "The classes in id order (ids 1..N); an object of any "
                      "other class is an error naming its file. Default: every name in the "
                      "annotations, sorted.", flag_values=fv)
    flags.DEFINE_string("test_files", None, "A file listing the held-out images (one name per "
                        "line, or a CSV whose first column is the file name, such as the raccoon "
                        "set's test_labels.csv). Unset: every --held_out_every-th image in "
                        "natural name order.", flag_values=fv)
    flags.DEFINE_integer("held_out_every", 5, "Without --test_files, hold out every N-th image "
                         "(5: 20%).", flag_values=fv)
    flags.DEFINE_integer("limit", 0, "Read only the first N annotations (quick trials); 0: all.",
                         flag_values=fv)
    flags.DEFINE_integer("image_size", 512, "Side of the square (letterboxed) network input; a "
                         "multiple of 32.", flag_values=fv)
    flags.DEFINE_enum("depth", "50", ["18", "34", "50", "101", "152"], "ResNet depth of the "
                      "backbone (suite.models.resnet, keras.applications layer names).",
                      flag_values=fv)
    flags.DEFINE_float("width_multiplier", 1.0, "Scales every backbone convolution (as the "
                       "classification run's --width_multiplier); 1.0 is the paper's ResNet.",
                       flag_values=fv)
    flags.DEFINE_string("init_from", None, "Backbone start: a classification run of the same "
                        "ResNet (model_dir, .keras or SavedModel; layers matched by name and "
                        "shape) or 'imagenet' (keras.applications' ResNet-50/101/152 weights on "
                        "disk). Unset or empty: random initialisation.", flag_values=fv)
    flags.DEFINE_enum("backbone_batch_norm", "auto", list(BATCH_NORM), "frozen: the backbone's "
                      "batch norm keeps its statistics and scales (Detectron's choice for a "
                      "trained backbone and small batches); trained: it learns; auto: frozen "
                      "with --init_from, trained without.", flag_values=fv)
    flags.DEFINE_boolean("augment", True, "Random horizontal flips and jittered resizes (scale "
                         "0.75-1.25) of the training images, boxes moved with them (keras-cv).",
                         flag_values=fv)
    flags.DEFINE_integer("anchor_samples", 256, "Anchors sampled per image for the RPN's losses, "
                         "up to half positive (the paper: 256).", flag_values=fv)
    flags.DEFINE_integer("train_proposals", 2000, "Proposals kept after the RPN's NMS in "
                         "training (the paper: 2000).", flag_values=fv)
    flags.DEFINE_integer("test_proposals", 300, "Proposals kept after the RPN's NMS at test time "
                         "and in the export (the paper: 300).", flag_values=fv)
    flags.DEFINE_integer("sampled_rois", 256, "RoIs sampled per image for the detection head's "
                         "losses, a quarter positive (Fast R-CNN: 128, the FPN paper: 512); at "
                         "most --test_proposals (keras-cv samples the validation losses from "
                         "the test-time proposals).", flag_values=fv)
    flags.DEFINE_list("head_units", ["1024", "1024"], "Widths of the detection head's fully "
                      "connected layers on the 7x7 RoI features (the FPN paper: 1024,1024).",
                      flag_values=fv)
    flags.DEFINE_float("score_threshold", 0.5, "The export's default score threshold (the "
                       "'detect' signature takes its own) and the gallery's; mAP counts every "
                       "detection.", flag_values=fv)
    flags.DEFINE_integer("max_detections", 100, "Detections kept per image after NMS.",
                         flag_values=fv)
    flags.DEFINE_integer("gallery_images", 8, "Held-out images in gallery.png.", flag_values=fv)
    flags.DEFINE_string("export_name", None, "Model name of the export; default "
                        "faster_rcnn_resnet<depth>.", flag_values=fv)
    flags.mark_flag_as_required("dataset", flag_values=fv)
    suite_flags.require_at_least(fv, 1, "held_out_every", "anchor_samples", "train_proposals",
                                 "test_proposals", "sampled_rois", "max_detections")
    suite_flags.require_at_least(fv, 0, "limit", "gallery_images")
    suite_flags.require_at_least(fv, 2, "batch_size")  # per replica, checked once they exist
    flags.register_validator("image_size", lambda v: v >= 64 and v % 32 == 0,
                             "--image_size must be a multiple of 32, at least 64",
                             flag_values=fv)
    flags.register_validator("width_multiplier", lambda v: v > 0,
                             "--width_multiplier must be > 0", flag_values=fv)
    flags.register_validator("score_threshold", lambda v: 0.0 <= v <= 1.0,
                             "--score_threshold must be in [0, 1]", flag_values=fv)
    flags.register_validator("head_units", lambda v: all(u.isdigit() and int(u) > 0 for u in v),
                             "--head_units must be positive integers, e.g. 1024,1024",
                             flag_values=fv)
    flags.register_multi_flags_validator(
        ["sampled_rois", "test_proposals"],
        lambda v: v["sampled_rois"] <= v["test_proposals"],
        "--sampled_rois must be at most --test_proposals: keras-cv samples the held-out losses' "
        "RoIs from the test-time proposals", flag_values=fv)
    flags.register_validator(
        "init_from", lambda v: not v or v == "imagenet" or os.path.exists(v),
        "--init_from must be 'imagenet' or an existing model_dir, .keras file or SavedModel",
        flag_values=fv)


def make_task(fv: flags.FlagValues, data_override=None) -> DetectionTask:
    config = DetectorConfig(
        dataset=fv.dataset, data_dir=fv.data_dir, class_names=tuple(fv.class_names),
        test_files=fv.test_files, held_out_every=fv.held_out_every, limit=fv.limit,
        image_size=fv.image_size, depth=int(fv.depth), width_multiplier=fv.width_multiplier,
        init_from=fv.init_from or None, backbone_batch_norm=fv.backbone_batch_norm,
        augment=fv.augment,
        anchor_samples=fv.anchor_samples, train_proposals=fv.train_proposals,
        test_proposals=fv.test_proposals, sampled_rois=fv.sampled_rois,
        head_units=tuple(int(u) for u in fv.head_units), score_threshold=fv.score_threshold,
        max_detections=fv.max_detections, gallery_images=fv.gallery_images,
        export_name=fv.export_name)
    return DetectionTask(config, suite_flags.schedule_config(fv), suite_flags.optimizer_config(fv),
                         seed=fv.seed, data_override=data_override)


def main() -> None:
    """Entry point (python -m apps.train_detector, console script suite-train-detector)."""
    from suite.runtime.runner import main as run_main

    run_main(define_flags, make_task)


if __name__ == "__main__":
    main()
