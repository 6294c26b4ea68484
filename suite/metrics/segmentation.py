"""Segmentation scores on whole held-out images.

`class_scores` gives per-class IoU, their mean (mIoU, classes absent from both truth and
prediction left out, as the FCN paper does) and pixel accuracy, from one confusion matrix over
all pixels. `isbi_scores` gives the ISBI 2012 challenge's own numbers for a membrane map:
pixel error (1 - pixel accuracy of the binary map) and the foreground-restricted Rand error of
the cells, from scikit-image's `adapted_rand_error` (the SNEMI3D/ISBI definition): cells are
the connected components of the non-membrane class in the truth and in the prediction.
"""
from __future__ import annotations

import numpy as np


def confusion(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """[true, predicted] pixel counts."""
    index = labels.astype(np.int64).ravel() * num_classes + predictions.astype(np.int64).ravel()
    return np.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def class_scores(matrix: np.ndarray) -> dict:
    """Per-class IoU, mIoU and pixel accuracy from a confusion matrix."""
    matrix = matrix.astype(np.float64)
    true_positive = np.diag(matrix)
    union = matrix.sum(0) + matrix.sum(1) - true_positive
    iou = np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)
    return {"mean_iou": float(np.nanmean(iou)),
            "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
            "pixel_accuracy": float(true_positive.sum() / max(matrix.sum(), 1))}


def isbi_scores(truth: np.ndarray, prediction: np.ndarray, boundary_class: int = 0) -> dict:
    """Pixel error and Rand error of one image's class maps; cells = connected components of
    every class but `boundary_class` (ISBI: 0, the membranes)."""
    from skimage.measure import label
    from skimage.metrics import adapted_rand_error

    pixel_error = float(np.mean((truth == boundary_class) != (prediction == boundary_class)))
    true_cells = label(truth != boundary_class, connectivity=1)
    predicted_cells = label(prediction != boundary_class, connectivity=1)
    # ignore_labels=(0,): the membrane pixels of the truth are not scored, as in the challenge.
    rand_error, _, _ = adapted_rand_error(true_cells, predicted_cells, ignore_labels=(0,))
    return {"pixel_error": pixel_error, "rand_error": float(rand_error)}


def mean_isbi_scores(truths, predictions, boundary_class: int = 0) -> dict:
    """isbi_scores averaged over images (the challenge averages per slice)."""
    scores = [isbi_scores(t, p, boundary_class) for t, p in zip(truths, predictions)]
    return {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}
