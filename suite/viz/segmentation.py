"""Segmentation overlays: input | truth | prediction | errors, one row per image.

Built as a uint8 array so the same picture goes into overlays.png and into TensorBoard. Classes
are drawn in matplotlib's tab10 colours; errors are the input in gray with every wrongly
classified pixel in red.
"""
from __future__ import annotations

import numpy as np

ERROR_COLOR = (255, 0, 0)
GAP = 4  # white pixels between panels


def palette(num_classes: int) -> np.ndarray:
    """[num_classes, 3] uint8 colours."""
    from matplotlib import colormaps

    colors = colormaps["tab10" if num_classes <= 10 else "tab20"].colors
    return (np.asarray([colors[i % len(colors)] for i in range(num_classes)]) * 255).astype(
        np.uint8)


def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def overlay_row(image, truth, prediction, num_classes: int) -> np.ndarray:
    """[H, 4W + 3 gaps, 3] uint8: the four panels of one image."""
    colors = palette(num_classes)
    gray = _rgb(image)
    errors = (gray.mean(-1, keepdims=True) * 0.6).astype(np.uint8).repeat(3, -1)
    errors[truth != prediction] = ERROR_COLOR
    gap = np.full((gray.shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([gray, gap, colors[truth], gap, colors[prediction], gap, errors], 1)


def overlay_grid(images, truths, predictions, num_classes: int, max_rows: int = 4) -> np.ndarray:
    """Rows of overlay_row for the first `max_rows` images, padded to the widest row."""
    rows = [overlay_row(i, t, p, num_classes)
            for i, t, p in list(zip(images, truths, predictions))[:max_rows]]
    width = max(r.shape[1] for r in rows)
    padded = []
    for row in rows:
        row = np.pad(row, ((0, GAP), (0, width - row.shape[1]), (0, 0)), constant_values=255)
        padded.append(row)
    return np.concatenate(padded, 0)
