"""Trains a semantic-segmentation network (FCN-32s/16s/8s or U-Net) on a mask folder or tfds.

    python -m apps.train_segmenter --flagfile=apps/flags/isbi_fcn8s.flags   # ISBI 2012, offline
    python -m apps.train_segmenter --flagfile=apps/flags/isbi_unet.flags    # the same, U-Net

Writes under --model_dir what every app writes (checkpoints/, backup/, logs/, history.csv,
learning_curves.png, results.json, run.json, flags.txt, export/<model>/<version>/) plus
overlays.png (input | truth | prediction | errors on the held-out images, also in TensorBoard).
results.json has per-class IoU, mIoU, pixel accuracy and, with --boundary_class, the ISBI
challenge's pixel and Rand errors. Running the same command again resumes.
"""
from __future__ import annotations

import os

from absl import flags

from suite.runtime import flags as suite_flags
from suite.tasks.segmentation import MODELS, SegmentationTask, SegmenterConfig


def _parse_augmentations(names):
    from suite.data.segmentation import parse_augmentations

    return parse_augmentations(names)


def _check_class_values(values):
    try:
        [int(v) for v in values]
    except ValueError as e:
        raise flags.ValidationError(f"--class_values must be integers, e.g. 0,255: {e}") from e
    return True


def define_flags(fv: flags.FlagValues) -> None:
    suite_flags.define_runtime_flags(fv, "runs/segmenter")
    suite_flags.define_schedule_flags(fv, default_epochs=50, default_batch_size=4)
    suite_flags.define_optimizer_flags(fv, default_optimizer="adam", default_learning_rate=1e-4)
    flags.DEFINE_enum("model", "fcn8s", list(MODELS), "FCN-32s, FCN-16s, FCN-8s (Long et al. "
                      "2015, on VGG-16) or U-Net (Ronneberger et al. 2015).", flag_values=fv)
    flags.DEFINE_string("dataset", None, "A folder of images and masks: <root>/image(s)/<name> "
                        "and <root>/label(s)|mask(s)/<name> (PNG/JPEG/TIFF images, lossless "
                        "masks), optionally split into <root>/train and <root>/test; or a "
                        "tensorflow-datasets segmentation set (oxford_iiit_pet).", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets' data folder for a tfds "
                        "--dataset; unset: tfds's default.", flag_values=fv)
    flags.DEFINE_list("class_names", [], "Class names in class-index order, e.g. "
                      "membrane,cell; default the class indices.", flag_values=fv)
    flags.DEFINE_list("class_values", [], "Mask pixel value of each class, in class order (ISBI: "
                      "0,255 makes 0 class 0 and 255 class 1); unset: masks hold class indices. "
                      "Any other value in a mask is refused.", flag_values=fv)
    flags.DEFINE_integer("held_out", 6, "When the folder has no train/ and test/ parts: hold "
                         "out its last N images (natural order) for validation and the reported "
                         "numbers.", flag_values=fv)
    flags.DEFINE_integer("crop_size", 256, "Side of the random training crops; evaluation uses "
                         "whole images.", flag_values=fv)
    flags.DEFINE_list("augmentations", [], "Any of flip, rotate90, scale (zoom 0.75-1.25), "
                      "elastic (U-Net's 3x3-grid deformation, 10 px std); image and mask move "
                      "together.", flag_values=fv)
    flags.DEFINE_float("width_multiplier", 1.0, "FCN: scales every VGG convolution and fc6/fc7 "
                       "(0.25 for a 2-core CPU); 1.0 is the paper's network.", flag_values=fv)
    flags.DEFINE_integer("base_filters", 64, "U-Net: filters of the first level (the paper: "
                         "64), doubled at every level.", flag_values=fv)
    flags.DEFINE_boolean("batch_norm", False, "BatchNormalization after every convolution of "
                         "the encoder (FCN) or of the whole net (U-Net); not in the papers, "
                         "which is why it is off, but it makes training from scratch reliable.",
                         flag_values=fv)
    flags.DEFINE_float("dropout", 0.5, "Dropout rate after fc6 and fc7 (FCN) or at the end of "
                       "the contracting path (U-Net); both papers use 0.5.", flag_values=fv)
    flags.DEFINE_float("model_weight_decay", 0.0, "SGD weight decay as L2 penalties on the "
                       "kernels (FCN: 5e-4 with SGD, U-Net: none).", flag_values=fv)
    flags.DEFINE_string("init_from", None, "FCN encoder start: a classifier run's VGG-16 "
                        "(model_dir, .keras or SavedModel; fc1/fc2 recast as fc6/fc7) or "
                        "'imagenet' (keras.applications' VGG-16 weights on disk).",
                        flag_values=fv)
    flags.DEFINE_integer("boundary_class", -1, "Also report the ISBI 2012 pixel and Rand errors, "
                         "with this class as the boundaries between objects (ISBI: 0, the "
                         "membranes); -1: no ISBI scores.", flag_values=fv)
    flags.DEFINE_string("export_name", None, "Model name of the export; default --model.",
                        flag_values=fv)
    flags.mark_flag_as_required("dataset", flag_values=fv)
    suite_flags.register_parse_validator(fv, "augmentations", _parse_augmentations)
    flags.register_validator("class_values", _check_class_values, flag_values=fv)
    flags.register_validator("crop_size", lambda v: v >= 8, "--crop_size must be >= 8",
                             flag_values=fv)
    flags.register_validator("held_out", lambda v: v >= 1, "--held_out must be >= 1",
                             flag_values=fv)
    flags.register_validator("boundary_class", lambda v: v >= -1,
                             "--boundary_class must be a class index (>= 0) or -1", flag_values=fv)
    flags.register_validator("width_multiplier", lambda v: v > 0,
                             "--width_multiplier must be > 0", flag_values=fv)
    flags.register_validator("dropout", lambda v: 0 <= v < 1, "--dropout must be in [0, 1)",
                             flag_values=fv)
    flags.register_validator("base_filters", lambda v: v >= 1, "--base_filters must be >= 1",
                             flag_values=fv)
    flags.register_validator(
        "init_from", lambda v: v is None or v == "imagenet" or os.path.exists(v),
        "--init_from must be 'imagenet' or an existing .keras file, SavedModel folder or "
        "model_dir", flag_values=fv)


def make_task(fv: flags.FlagValues, data_override=None) -> SegmentationTask:
    from suite.data.segmentation import parse_augmentations

    config = SegmenterConfig(
        model=fv.model, dataset=fv.dataset, data_dir=fv.data_dir,
        class_names=tuple(fv.class_names), class_values=tuple(int(v) for v in fv.class_values),
        held_out=fv.held_out, crop_size=fv.crop_size,
        augmentations=parse_augmentations(fv.augmentations),
        width_multiplier=fv.width_multiplier, base_filters=fv.base_filters,
        batch_norm=fv.batch_norm, dropout=fv.dropout, model_weight_decay=fv.model_weight_decay,
        init_from=fv.init_from, boundary_class=fv.boundary_class, export_name=fv.export_name)
    return SegmentationTask(config, suite_flags.schedule_config(fv),
                            suite_flags.optimizer_config(fv), seed=fv.seed,
                            data_override=data_override)


def main() -> None:
    """Entry point (python -m apps.train_segmenter, console script suite-train-segmenter)."""
    from suite.runtime.runner import main as run_main

    run_main(define_flags, make_task)


if __name__ == "__main__":
    main()
