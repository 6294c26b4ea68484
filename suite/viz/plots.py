"""Figures written by the apps (matplotlib, headless Agg backend)."""
from __future__ import annotations

import csv
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402


def read_history(csv_path: str) -> dict[str, list[float]]:
    """Columns of Keras's CSVLogger file; rows of resumed runs are already appended in order."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    by_epoch = {int(r["epoch"]): r for r in rows}  # a repeated epoch: the last row wins
    keys = list(rows[0].keys()) if rows else []
    return {key: [float(by_epoch[e][key]) if by_epoch[e].get(key) not in (None, "")
                  else float("nan") for e in sorted(by_epoch)] for key in keys}


NOT_CURVES = ("epoch", "steps", "seconds", "learning_rate", "lr")


def plot_learning_curves(history: dict[str, list[float]], path: str, title: str = "",
                         validation_label: str = "validation", max_panels: int = 6) -> str:
    """One panel per metric in `history` (loss first), with its `inference_` twin (the same
    metric on fixed training examples in inference mode) and its `val_` twin."""
    epochs = [int(e) + 1 for e in history.get("epoch", [])]
    twins = ("val_", "inference_")
    names = [k for k in history if k not in NOT_CURVES and not k.startswith(twins)
             and not k.endswith("_std")]
    names += [k.split("_", 1)[1] for k in history if k.startswith(twins)
              and k.split("_", 1)[1] not in names and not k.endswith("_std")]
    names = sorted(names, key=lambda n: (not n.endswith("loss"), n != "loss"))[:max_panels]
    if not names:
        raise ValueError(f"no metric to plot in the history (columns: {list(history)})")
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], names):
        inference = f"inference_{metric}" in history
        if metric in history:  # Keras's running mean over the epoch, dropout on
            ax.plot(epochs, history[metric], marker="o", alpha=0.6 if inference else 1.0,
                    label="train, training mode" if inference else "train")
        if inference:  # the same model in inference mode on fixed training examples
            ax.plot(epochs, history[f"inference_{metric}"], marker="^",
                    label="train, inference mode")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], marker="s", label=validation_label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_misclassified(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray, path: str,
                       max_images: int = 40, columns: int = 10, title: str = "") -> str:
    """A grid of wrongly classified images, true label top-left and prediction bottom-right (the book's figure)."""
    wrong = np.flatnonzero(labels != predictions)[:max_images]
    rows = max(1, int(np.ceil(len(wrong) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.2), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, wrong):
        ax.imshow(images[i].squeeze(), cmap="gray_r" if images[i].shape[-1] == 1 else None)
        ax.text(0.02, 0.98, str(labels[i]), transform=ax.transAxes, va="top", ha="left",
                color="tab:blue", fontsize=9, fontweight="bold")
        ax.text(0.98, 0.02, str(predictions[i]), transform=ax.transAxes, va="bottom", ha="right",
                color="tab:red", fontsize=9, fontweight="bold")
    fig.suptitle(title or f"{len(np.flatnonzero(labels != predictions))} misclassified "
                 "(true label top-left, prediction bottom-right)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plot_step_series(steps, series: dict[str, list[float]], path: str, title: str = "",
                     ylabel: str = "loss") -> str:
    """Per-step curves (a GAN's two losses) on one axis."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, values in series.items():
        ax.plot(steps, values, label=name, linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)
