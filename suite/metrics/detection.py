"""COCO detection metrics with pycocotools (the reference implementation).

`coco_scores` takes per-image ground truth and detections as xyxy pixel boxes of each original
image and returns COCO's AP averaged over IoU 0.50:0.95 ("map"), AP at IoU 0.50 (PASCAL VOC's
measure, "map_50") and 0.75, the area breakdowns and the average recalls at 1/10/100 detections.

Not keras-cv's BoxCOCOMetrics: keras-cv-nightly 0.10.0.dev2024100303 evaluates only the images
that have at least one detection (it sets COCOeval's imgIds to the detections' image ids), so
the objects of an image where the detector found nothing are not counted as missed and mAP comes
out too high. Here every image is evaluated.
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

STATS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "recall_1",
         "recall_10", "recall_100", "recall_small", "recall_medium", "recall_large")


def _xywh(boxes) -> np.ndarray:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def coco_scores(true_boxes: list, true_classes: list, boxes: list, scores: list,
                classes: list) -> dict:
    """Per image: true boxes [n, 4] and classes [n] (1..N), detected boxes [k, 4], scores [k]
    and classes [k] (entries with class < 1 are padding). Returns {"map", "map_50", ...};
    -1 where COCO defines no value (e.g. no large objects)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, truth, found = [], [], []
    categories = sorted({int(c) for cs in true_classes for c in cs} |
                        {int(c) for cs in classes for c in cs if c >= 1})
    for image_id, (tb, tc, b, s, c) in enumerate(
            zip(true_boxes, true_classes, boxes, scores, classes), start=1):
        images.append({"id": image_id})
        for box, cls in zip(_xywh(tb), tc):
            truth.append({"id": len(truth) + 1, "image_id": image_id, "category_id": int(cls),
                          "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": 0})
        for box, score, cls in zip(_xywh(b), s, c):
            if cls >= 1:
                found.append({"image_id": image_id, "category_id": int(cls),
                              "bbox": box.tolist(), "score": float(score)})
    quiet = contextlib.redirect_stdout(io.StringIO())  # pycocotools prints its progress
    with quiet:
        ground = COCO()
        ground.dataset = {"images": images, "annotations": truth,
                          "categories": [{"id": c} for c in categories]}
        ground.createIndex()
        detections = ground.loadRes(found) if found else COCO()
        if not found:  # loadRes refuses an empty list: an empty result set, same categories
            detections.dataset = {"images": images, "annotations": [],
                                  "categories": ground.dataset["categories"]}
            detections.createIndex()
        evaluation = COCOeval(ground, detections, iouType="bbox")
        evaluation.params.imgIds = [im["id"] for im in images]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: round(float(v), 4) for name, v in zip(STATS, evaluation.stats)}
