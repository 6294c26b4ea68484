"""Confusion matrix of a classifier: which classes it mixes up, as numbers and as a PNG.

Rows are true classes, columns predictions; the figure shows each row normalised to 1 (the
recall of that class) so rare and common classes read on one colour scale, with the counts
written in the cells while there are few enough classes to read them (ImageNet's 1000 are not).
"""
from __future__ import annotations

import numpy as np

from suite.viz.plots import _save, plt

MAX_ANNOTATED = 20  # classes up to which counts are written in the cells
MAX_TICK_LABELS = 50  # classes up to which their names are written on the axes


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """int64 [num_classes, num_classes]: entry (i, j) counts examples of class i predicted as j."""
    labels, predictions = np.asarray(labels, np.int64), np.asarray(predictions, np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"{labels.shape[0]} labels but {predictions.shape[0]} predictions")
    out_of_range = (labels < 0) | (labels >= num_classes) | (predictions < 0) | (
        predictions >= num_classes)
    if out_of_range.any():
        raise ValueError(f"class ids must be in 0..{num_classes - 1}")
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


def plot_confusion_matrix(matrix: np.ndarray, class_names, path: str, title: str = "") -> str:
    """Writes the row-normalised matrix as a PNG at `path` (returned)."""
    matrix = np.asarray(matrix)
    k = matrix.shape[0]
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for a {k}x{k} matrix")
    totals = matrix.sum(axis=1, keepdims=True)
    recall = np.divide(matrix, totals, out=np.zeros(matrix.shape, float), where=totals > 0)
    side = min(14.0, 3.0 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if k <= MAX_TICK_LABELS:
        ax.set_xticks(range(k), class_names, rotation=90 if k > 5 else 0, fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
    if k <= MAX_ANNOTATED:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if recall[i, j] > 0.5 else "black")
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or f"Confusion matrix ({matrix.sum()} examples, accuracy "
                 f"{100 * accuracy:.1f}%)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
