"""Trains a semantic-segmentation network (FCN-32s/16s/8s or U-Net) on a mask folder or tfds.

    python -m apps.train_segmenter --flagfile=apps/flags/isbi_fcn8s.flags   # ISBI 2012, offline
    python -m apps.train_segmenter --flagfile=apps/flags/isbi_unet.flags    # the same, U-Net

Writes under --model_dir what every app writes (checkpoints/, backup/, logs/, history.csv,
learning_curves.png, results.json, run.json, flags.txt, export/<model>/<version>/) plus
overlays.png (input | truth | prediction | errors on the held-out images, also in TensorBoard).
results.json has per-class IoU, mIoU, pixel accuracy and, with --boundary_class, the ISBI
challenge's pixel and Rand errors. Running the same command again resumes.

Its options (defaults, help, checks) are the fields of suite.tasks.segmentation.SegmenterConfig.
"""
from suite.runtime.cli import main as run
from suite.tasks.segmentation import SegmentationTask


def main() -> None:
    """Entry point (python -m apps.train_segmenter, console script suite-train-segmenter)."""
    run(SegmentationTask)


if __name__ == "__main__":
    main()
