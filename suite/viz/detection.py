"""The detection gallery: held-out images at their own proportions, about 400 pixels wide, so an
object is visible; the true boxes dashed white, the detections at or above the export's score
threshold (what a user of the export gets) solid, one colour per class. Each detection is
labelled with its class and score where the label covers no other label (best score first):
a label with no free place is left out and counted in the panel's title."""
from __future__ import annotations

import math

import numpy as np

from suite.viz.plots import _save, plt  # the suite's headless (Agg) matplotlib

PANEL_INCHES = 3.6  # at the suite's 110 dpi: about 400 pixels a panel
TRUE_STYLE = dict(edgecolor="white", linestyle="--", linewidth=1.5)


def class_colour(class_id: int):
    """One colour per class id 1..N (tab10, then tab20's other shades)."""
    palette = plt.get_cmap("tab10").colors + plt.get_cmap("tab20").colors[1::2]
    return palette[(int(class_id) - 1) % len(palette)]


def _outlined(linewidth: float):
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=linewidth + 2, foreground="black")]


def _label(ax, renderer, box, text: str, colour, taken: list) -> bool:
    """Places `text` at the first corner of `box` (above it, then inside it, below it) where it
    stays in the panel and overlaps none of `taken` (display extents); False if none."""
    x0, y0, x1, y1 = box
    panel = ax.get_window_extent(renderer)
    for x, y, align, valign in ((x0, y0, "left", "bottom"), (x0, y0, "left", "top"),
                                (x0, y1, "left", "top"), (x0, y1, "left", "bottom"),
                                (x1, y0, "right", "bottom"), (x1, y1, "right", "top")):
        label = ax.text(x, y, text, ha=align, va=valign, fontsize=8, color="white",
                        bbox=dict(facecolor=colour, edgecolor="none", alpha=0.85, pad=1.5))
        extent = label.get_window_extent(renderer).padded(3)
        inside = (extent.x0 >= panel.x0 and extent.x1 <= panel.x1 and extent.y0 >= panel.y0
                  and extent.y1 <= panel.y1)
        if inside and not any(extent.overlaps(other) for other in taken):
            taken.append(extent)
            return True
        label.remove()
    return False


def _panel(ax, renderer, image, true_boxes, found: dict, class_names: list,
           score_threshold: float) -> None:
    from matplotlib.patches import Rectangle

    ax.imshow(image)
    ax.set_xlim(0, image.shape[1])
    ax.set_ylim(image.shape[0], 0)
    ax.set_axis_off()
    ax.apply_aspect()  # the panel's final place, so that the labels' extents are too
    for x0, y0, x1, y1 in true_boxes:
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, **TRUE_STYLE,
                               path_effects=_outlined(TRUE_STYLE["linewidth"])))
    shown = np.flatnonzero((found["classes"] > 0) & (found["scores"] >= score_threshold))
    shown = shown[np.argsort(-found["scores"][shown], kind="stable")]
    taken, unlabelled = [], 0
    for i in shown:
        (x0, y0, x1, y1), cls = found["boxes"][i], int(found["classes"][i])
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=2,
                               edgecolor=class_colour(cls)))
        text = f"{class_names[cls - 1]} {found['scores'][i]:.2f}"
        unlabelled += not _label(ax, renderer, (x0, y0, x1, y1), text, class_colour(cls),
                                 taken)
    hidden = f", {unlabelled} unlabelled" if unlabelled else ""
    ax.set_title(f"{len(true_boxes)} true, {len(shown)} detected{hidden}", fontsize=9)


def detection_gallery(images: list, true_boxes: list, found: list, class_names: list,
                      score_threshold: float, columns: int = 4):
    """A Figure of `images` (uint8 [H, W, 3], any sizes), each with its true boxes ([M, 4] xyxy
    pixels) and its detections ({"boxes" [K, 4] xyxy pixels, "scores" [K], "classes" [K] 1..N,
    -1 for empty slots}) scored at least `score_threshold`."""
    from matplotlib.lines import Line2D

    columns = max(1, min(columns, len(images)))
    rows = max(1, math.ceil(len(images) / columns))
    fig, axes = plt.subplots(rows, columns, squeeze=False,
                             figsize=(columns * PANEL_INCHES, rows * PANEL_INCHES + 0.5))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.5 / fig.get_figheight(), top=0.95,
                        wspace=0.03, hspace=0.12)  # fixed before labels are placed
    renderer = fig.canvas.get_renderer()
    for ax in axes.ravel()[len(images):]:
        ax.set_axis_off()
    for ax, image, boxes, detections in zip(axes.ravel(), images, true_boxes, found):
        detections = {k: np.asarray(v) for k, v in detections.items()}
        _panel(ax, renderer, np.asarray(image, np.uint8), np.asarray(boxes).reshape(-1, 4),
               detections, class_names, score_threshold)
    handles = [Line2D([], [], **{k.replace("edge", ""): v for k, v in TRUE_STYLE.items()},
                      path_effects=_outlined(TRUE_STYLE["linewidth"]), label="true")]
    handles += [Line2D([], [], color=class_colour(i + 1), linewidth=2,
                       label=f"{name} (score >= {score_threshold:g})")
                for i, name in enumerate(class_names)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=9,
               facecolor="lightgrey", frameon=True)
    return fig


def plot_detection_gallery(images: list, true_boxes: list, found: list, class_names: list,
                           score_threshold: float, path: str, columns: int = 4) -> str:
    """detection_gallery written to `path` (PNG, atomically)."""
    return _save(detection_gallery(images, true_boxes, found, class_names, score_threshold,
                                   columns), path)
