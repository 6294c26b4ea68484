"""The captioning gallery: test images with their generated and reference captions."""
from __future__ import annotations

import textwrap

import numpy as np

from suite.viz.plots import _save, plt


def plot_caption_gallery(images: np.ndarray, captions: list[dict[str, str]], path: str,
                         columns: int = 4, title: str = "") -> str:
    """One panel per image with its captions below, one line per source ('greedy', 'beam 3',
    'reference'), each wrapped to the panel's width."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    lines = max((sum(len(textwrap.wrap(f"{k}: {v}", 34)) for k, v in c.items())
                 for c in captions), default=1)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 3.2, rows * (2.6 + 0.16 * lines)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, texts in zip(axes.flat, images, captions):
        ax.imshow(image)
        text = "\n".join(line for k, v in texts.items()
                         for line in textwrap.wrap(f"{k}: {v}", 34))
        ax.text(0.0, -0.03, text, transform=ax.transAxes, va="top", ha="left", fontsize=7,
                family="monospace")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
