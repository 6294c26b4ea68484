"""What a page gets from its visitor, made into a request: an uploaded file's bytes (sent to the
signature as they are: the signature judges them, as TF Serving's would) and a digit drawn on
the canvas, made into an MNIST-style image.

MNIST's digits are white on black, fit in a 20x20 box and are centred by their centre of mass
in 28x28 (LeCun et al.'s preparation); a digit drawn in black on a large white canvas is made
the same way, or a classifier trained on MNIST sees a shape it never saw.
"""
from __future__ import annotations

import io

import numpy as np


def read_upload(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def decoded(data: bytes) -> np.ndarray:
    """uint8 [H, W, 3] of an image the signature has already accepted (within its limits)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def preview(data: bytes, least: int = 224) -> np.ndarray:
    """`decoded(data)`, enlarged (nearest neighbour) until its longer side is at least `least`
    pixels: a 28x28 digit or a 32x32 CIFAR image is visible on the page."""
    image = decoded(data)
    factor = max(1, -(-least // max(image.shape[:2])))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def ink(editor_value) -> np.ndarray | None:
    """float [H, W] in 0..1: how much was drawn at each pixel of a Sketchpad's composite (dark
    strokes on white, or on transparency); None when nothing was drawn."""
    composite = None if editor_value is None else editor_value.get("composite")
    if composite is None:
        return None
    image = np.asarray(composite, np.float32) / 255.0
    if image.ndim == 2:
        image = image[..., None]
    grey = image[..., :3].mean(-1)
    alpha = image[..., 3] if image.shape[-1] in (2, 4) else np.ones_like(grey)
    drawn = (1.0 - grey) * alpha
    return drawn if drawn.max() > 0.1 else None


def digit_image(drawn: np.ndarray, side: int = 28) -> np.ndarray:
    """uint8 [side, side, 1]: the ink fit in a box of 20/28 of `side`, centred by its mass."""
    from PIL import Image

    rows, columns = np.nonzero(drawn > 0.1)
    crop = drawn[rows.min():rows.max() + 1, columns.min():columns.max() + 1]
    box = max(1, round(side * 20 / 28))
    scale = box / max(crop.shape)
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(
        size, Image.Resampling.LANCZOS), np.float32)
    total = small.sum()
    centre = np.array([np.arange(small.shape[0]) @ small.sum(1),
                       np.arange(small.shape[1]) @ small.sum(0)]) / max(total, 1e-6)
    top, left = np.round(side / 2 - centre).astype(int)
    top = int(np.clip(top, 0, side - small.shape[0]))
    left = int(np.clip(left, 0, side - small.shape[1]))
    out = np.zeros((side, side), np.float32)
    out[top:top + small.shape[0], left:left + small.shape[1]] = small
    return np.clip(np.round(out), 0, 255).astype(np.uint8)[..., None]
