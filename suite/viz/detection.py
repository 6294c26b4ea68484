"""The detection gallery: held-out images with their true boxes and the detector's, drawn by
keras-cv's plot_bounding_box_gallery (true boxes cyan, predicted yellow, class and score)."""
from __future__ import annotations

import math
import os

import numpy as np

from suite.viz.plots import plt  # the suite's headless (Agg) matplotlib


def plot_detection_gallery(images: np.ndarray, true: dict, predicted: dict, class_names: list,
                           path: str, columns: int = 4) -> str:
    """`images` uint8 [N, S, S, 3]; `true` {"boxes" [N, M, 4], "classes" [N, M]} and `predicted`
    {... , "confidence"} in those images' xyxy pixels, padded with class -1. Written atomically."""
    from keras_cv.visualization import plot_bounding_box_gallery

    mapping = {i + 1: name for i, name in enumerate(class_names)}
    rows = max(1, math.ceil(len(images) / columns))
    columns = min(columns, len(images))
    tmp = f"{path}.tmp.png"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    plot_bounding_box_gallery(images.astype(np.float32), value_range=(0, 255),
                              bounding_box_format="xyxy", y_true=true, y_pred=predicted,
                              class_mapping=mapping, rows=rows, cols=columns, scale=3,
                              font_scale=0.5, legend=True, path=tmp, dpi=80)
    plt.close("all")
    os.replace(tmp, path)
    return path
