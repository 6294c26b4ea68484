"""Writes the style-transfer demo's two inputs, both free to redistribute:

    <out>/astronaut.png   scikit-image's `astronaut` (Eileen Collins, NASA, public domain)
    <out>/mosaic.png      a generated stained-glass mosaic: Voronoi cells in saturated colours
                          with dark leading between them (seeded, so always the same picture)

    python -m bench.style_images --out=runs/style_inputs [--size=256]
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags
from PIL import Image

from bench import cli


def mosaic(size: int, cells: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, size, (cells, 2))
    palette = np.array([[200, 30, 40], [240, 180, 20], [30, 90, 200], [20, 150, 80],
                        [230, 110, 20], [120, 40, 160], [250, 240, 220], [20, 160, 190]])
    colours = palette[rng.integers(0, len(palette), cells)] * rng.uniform(0.75, 1.0, (cells, 1))
    yy, xx = np.mgrid[:size, :size]
    distance = np.hypot(yy[..., None] - points[:, 0], xx[..., None] - points[:, 1])
    nearest = np.sort(distance, axis=-1)
    image = colours[np.argmin(distance, axis=-1)]
    leading = (nearest[..., 1] - nearest[..., 0]) < 2.5  # near the border of two cells
    image[leading] = [25, 20, 20]
    grain = rng.normal(0, 8, image.shape)  # the glass is not flat
    return np.clip(image + grain, 0, 255).astype(np.uint8)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("out", "runs/style_inputs", "folder the two images go to",
                        flag_values=fv)
    flags.DEFINE_integer("size", 256, "side of both images in pixels", lower_bound=1,
                         flag_values=fv)


def main(args):
    import skimage.data

    os.makedirs(args.out, exist_ok=True)
    astronaut = Image.fromarray(skimage.data.astronaut()).resize((args.size, args.size),
                                                                 Image.LANCZOS)
    astronaut.save(os.path.join(args.out, "astronaut.png"))
    Image.fromarray(mosaic(args.size)).save(os.path.join(args.out, "mosaic.png"))
    print(f"wrote {args.out}/astronaut.png and {args.out}/mosaic.png")


if __name__ == "__main__":
    cli.run(main, define_flags)
