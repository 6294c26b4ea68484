"""Image files read the way the exported models decode them, for every reader of local folders.

PIL's `convert("L")` or `convert("RGB")` clips 16-bit pixels at 255, so a 16-bit PNG would
train as a near-white image while `tf.io.decode_image(dtype=uint8)` in the serving signatures
keeps its high byte; this module keeps the high byte too, and refuses 32-bit pixels, whose
8-bit meaning nobody agreed on.
"""
from __future__ import annotations

import numpy as np

from suite.errors import DataError

GRAY_MODES = ("1", "L", "LA", "La")


def eight_bit(image, path: str):
    """A PIL image in mode L (grayscale sources) or RGB (everything else; alpha dropped)."""
    from PIL import Image

    if image.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(image, np.uint16) >> 8).astype(np.uint8), "L")
    if image.mode in ("I", "F"):
        raise DataError(f"{path}: 32-bit {'float' if image.mode == 'F' else 'integer'} pixels; "
                        "save the image as 8- or 16-bit (PNG or TIFF), the kinds training and "
                        "the exported model read alike.")
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("L" if image.mode in GRAY_MODES else "RGB")


def read_image(path: str) -> np.ndarray:
    """uint8 (H, W, C) with C = 1 (grayscale) or 3 (RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(eight_bit(image, path))
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"{path}: not a readable image ({e}).") from e
    return array[:, :, None] if array.ndim == 2 else array
