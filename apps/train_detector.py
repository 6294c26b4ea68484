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

Its options (defaults, help, checks) are the fields of suite.tasks.detection.DetectorConfig.
"""
from suite.runtime.cli import main as run
from suite.tasks.detection import DetectionTask


def main() -> None:
    """Entry point (python -m apps.train_detector, console script suite-train-detector)."""
    run(DetectionTask)


if __name__ == "__main__":
    main()
