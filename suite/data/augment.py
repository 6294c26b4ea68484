"""Image augmentation as stateless tf ops, run per image inside the tf.data input pipeline.

Why in tf.data and not as Keras layers in the model: the work overlaps with training on the CPU
threads of the input pipeline, the exported model stays augmentation-free, and Keras's image
layers are very slow inside a model on accelerators (keras-team/keras#23229). Why stateless:
every op takes an explicit [2] int seed, so the same `--seed` gives the same augmented stream
(and the same test result) whether the map runs eagerly, in parallel or across restarts.

Images are float32 pixels in [0, 255] (what the models rescale themselves) and keep that range.
"""
from __future__ import annotations

import math

import tensorflow as tf

# Names accepted by --augmentations; "crop_flip" is the CIFAR recipe (He et al. 2015, sec. 4.2),
# "scale_crop" the ImageNet one (Inception-style random-resized crop, Szegedy et al. 2014),
# "cutout" a 16x16 square of zeros anywhere (DeVries & Taylor 2017), applied last.
AUGMENTATIONS = ("crop_flip", "crop", "flip", "scale_crop", "brightness", "contrast", "rotation",
                 "cutout")
CROP_PADDING = 4
BRIGHTNESS_DELTA = 32.0  # pixels, i.e. 0.125 of the range (the Inception preprocessing value)
CONTRAST_RANGE = (0.8, 1.2)
ROTATION_DEGREES = 15.0
SCALE_RANGE = (0.08, 1.0)  # fraction of the image area kept by scale_crop
RATIO_RANGE = (3 / 4, 4 / 3)
CUTOUT_SIZE = 16  # the paper's best for CIFAR-10
EVAL_CROP_FRACTION = 0.875  # 224 of 256: the usual centre crop for evaluation


def parse_augmentations(names) -> tuple[str, ...]:
    """Validates a list (or comma-separated string) of names; '' and 'none' mean no augmentation."""
    if isinstance(names, str):
        names = names.split(",")
    names = tuple(n.strip() for n in names if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(f"unknown augmentation {', '.join(map(repr, unknown))}; valid: "
                         f"{', '.join(AUGMENTATIONS)} (comma-separated, or none)")
    return names


def random_crop_with_padding(image, seed, padding: int = CROP_PADDING):
    """Zero-pads each side by `padding` pixels and crops back to the original size at random."""
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed)


def random_flip(image, seed):
    return tf.image.stateless_random_flip_left_right(image, seed)


def random_brightness(image, seed, max_delta: float = BRIGHTNESS_DELTA):
    return tf.clip_by_value(tf.image.stateless_random_brightness(image, max_delta, seed), 0, 255)


def random_contrast(image, seed, lower: float = CONTRAST_RANGE[0],
                    upper: float = CONTRAST_RANGE[1]):
    return tf.clip_by_value(tf.image.stateless_random_contrast(image, lower, upper, seed), 0, 255)


def random_rotation(image, seed, max_degrees: float = ROTATION_DEGREES):
    """Rotates about the centre by a uniform angle in [-max_degrees, max_degrees], zeros outside."""
    angle = tf.random.stateless_uniform([], seed, -max_degrees, max_degrees) * (math.pi / 180)
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    # Maps each output pixel (x, y) to the input pixel it samples (ImageProjectiveTransformV3).
    transform = tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                          sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])[None]
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform, output_shape=tf.shape(image)[:2],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
    return rotated[0]


def random_cutout(image, seed, size: int = CUTOUT_SIZE):
    """Zeroes a size x size square centred on a uniform pixel; it is clipped at the borders."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    centre = tf.random.stateless_uniform([2], seed) * tf.cast(tf.stack([height, width]), tf.float32)
    top, left = tf.unstack(tf.cast(centre, tf.int32) - size // 2)
    rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return tf.where(inside[:, :, None], tf.zeros_like(image), image)


def random_scale_crop(image, seed, size: int, scale=SCALE_RANGE, ratio=RATIO_RANGE):
    """A random box of `scale` x area, `ratio` aspect, resized to size x size (ImageNet recipe)."""
    begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed,
        min_object_covered=0.0, aspect_ratio_range=ratio, area_range=scale, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, box_size)
    return tf.image.resize(crop, [size, size], method="bilinear", antialias=True)


def center_crop(image, size, crop_fraction: float = 1.0):
    """Resizes the image to cover size / crop_fraction and cuts out the central size x size.

    `size` is a side or (height, width). A no-op (no resampling) when the image already is that
    size and crop_fraction is 1.
    """
    height, width = (size, size) if isinstance(size, int) else size
    if image.shape[0] == height and image.shape[1] == width and crop_fraction == 1.0:
        return image
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.reduce_max(tf.constant([height / crop_fraction, width / crop_fraction]) / shape)
    new = tf.cast(tf.math.ceil(shape * scale), tf.int32)
    image = tf.image.resize(image, new, method="bilinear", antialias=True)
    top, left = (new[0] - height) // 2, (new[1] - width) // 2
    return tf.ensure_shape(image[top:top + height, left:left + width], [height, width, None])


def augment(image, seed, names: tuple[str, ...], size: int):
    """One training image: uint8 or float [H, W, C] -> float32 [size, size, C] in [0, 255].

    `seed` is a [2] int tensor; each op draws from its own split of it. Without scale_crop the
    image is first fitted to size x size (centre crop of the shorter side).
    """
    image = tf.cast(image, tf.float32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 7)
    if "scale_crop" in names:
        image = random_scale_crop(image, seeds[0], size)
    else:
        image = center_crop(image, size)
    if "crop" in names or "crop_flip" in names:
        image = random_crop_with_padding(image, seeds[1])
    if "flip" in names or "crop_flip" in names:
        image = random_flip(image, seeds[2])
    if "rotation" in names:
        image = random_rotation(image, seeds[3])
    if "brightness" in names:
        image = random_brightness(image, seeds[4])
    if "contrast" in names:
        image = random_contrast(image, seeds[5])
    if "cutout" in names:
        image = random_cutout(image, seeds[6])
    return tf.ensure_shape(image, [size, size, None])


def prepare_for_eval(image, size, crop_fraction: float = 1.0):
    """One evaluation image: images of the model's size pass unchanged, others are centre-cropped
    and rounded to whole pixel values (so that uint8 arrays can hold them exactly).

    `size` is a side or (height, width). The one definition of what evaluation sees: streamed and
    in-memory datasets and the export's serve_image_bytes all call it. Use EVAL_CROP_FRACTION
    after scale_crop training (the objects then look as large as the crops trained on); 1.0
    otherwise, matching the training images' plain centre crop.
    """
    height, width = (size, size) if isinstance(size, int) else size
    image = tf.cast(image, tf.float32)
    if image.shape[0] == height and image.shape[1] == width:
        return image

    def crop():
        return tf.round(center_crop(image, (height, width), crop_fraction))

    if image.shape[0] is not None and image.shape[1] is not None:
        return crop()
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], [height, width]))
    return tf.ensure_shape(tf.cond(same, lambda: image, crop), [height, width, None])
