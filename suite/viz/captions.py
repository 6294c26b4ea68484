"""The captioning gallery: test images with their generated and reference captions."""
from __future__ import annotations

import textwrap

import numpy as np

from suite.viz.plots import _save, plt

WRAP = 38  # characters per caption line under a panel


def plot_caption_gallery(images: np.ndarray, captions: list[dict[str, str]], path: str,
                         columns: int = 4, title: str = "") -> str:
    """One panel per image with its captions below, one entry per source ('greedy', 'beam 3',
    'reference'), each wrapped to the panel's width; every row is as tall as its longest text."""
    texts = ["\n".join(line for k, v in c.items() for line in textwrap.wrap(f"{k}: {v}", WRAP))
             for c in captions]
    rows = max(1, int(np.ceil(len(images) / columns)))
    lines = [max([t.count("\n") + 1 for t in texts[r * columns:(r + 1) * columns]] or [1])
             for r in range(rows)]
    ratios = [h for r in range(rows) for h in (3.0, 0.16 * lines[r] + 0.1)]
    fig, axes = plt.subplots(2 * rows, columns, figsize=(columns * 3.2, sum(ratios)),
                             gridspec_kw={"height_ratios": ratios}, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (image, text) in enumerate(zip(images, texts)):
        row, column = divmod(i, columns)
        axes[2 * row, column].imshow(image)
        axes[2 * row + 1, column].text(0.0, 1.0, text, va="top", ha="left", fontsize=7,
                                       family="monospace",
                                       transform=axes[2 * row + 1, column].transAxes)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
