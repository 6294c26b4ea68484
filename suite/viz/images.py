"""Pictures as uint8 arrays, so the same picture goes into a PNG and into TensorBoard: image
grids, atomic PNG writes, an animated GIF of PNGs. Grid images are scaled up to at least 64
pixels a side with nearest-neighbour resampling: a 28x28 digit grid at its own size is too
small to look at.
"""
from __future__ import annotations

import os

import numpy as np

GAP = 2  # white pixels between images
MIN_SIDE = 64


def image_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """uint8 (N, H, W, C) -> one RGB picture, `columns` images a row."""
    images = np.asarray(images, np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    scale = max(1, -(-MIN_SIDE // images.shape[1]))
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    count, height, width, _ = images.shape
    rows = -(-count // columns)
    grid = np.full((rows * (height + GAP) + GAP, columns * (width + GAP) + GAP, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = GAP + r * (height + GAP), GAP + c * (width + GAP)
        grid[top:top + height, left:left + width] = image
    return grid


def save_png(grid: np.ndarray, path: str) -> str:
    from PIL import Image

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp.png"
    Image.fromarray(grid).save(tmp)
    os.replace(tmp, path)  # a reader never sees half a file
    return path


def save_gif(frame_paths: list[str], path: str, frame_ms: int = 400) -> str | None:
    """An animated GIF of the PNGs in order (the last frame held longer); None if none."""
    from PIL import Image

    if not frame_paths:
        return None
    frames = [Image.open(p).convert("P", palette=Image.ADAPTIVE) for p in frame_paths]
    durations = [frame_ms] * (len(frames) - 1) + [frame_ms * 5]
    tmp = f"{path}.tmp.gif"
    frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    os.replace(tmp, path)
    return path
