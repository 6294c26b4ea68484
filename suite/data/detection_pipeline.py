"""tf.data for detection: letterboxed square images and keras-cv's box-aware augmentation.

Faster R-CNN on keras-cv needs a static input shape, so every image is letterboxed: scaled so
that its longer side is `size`, then padded at the bottom and right to `size` x `size`; a box
scales by the same factor and its origin does not move, so mapping predictions back to the
original image is one division (suite.models.faster_rcnn.detect). Training batches are flipped
horizontally and jitter-resized (scale 0.75..1.25, then cropped or padded back to the square) by
keras-cv's RandomFlip and JitteredResize, which move the boxes with the pixels and drop the boxes
that leave the crop. Boxes travel padded to `max_boxes` with -1 (keras-cv's dense format).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from suite.data.pipeline import with_data_sharding

JITTER = (0.75, 1.25)


def letterbox(image, size: int):
    """image [H, W, C] (any dtype) -> (float32 [size, size, C] pixels, scale)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_max(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    new = tf.clip_by_value(new, 1, size)
    resized = tf.image.resize(tf.cast(image, tf.float32), new, method="bilinear",
                              antialias=True)
    return tf.image.pad_to_bounding_box(resized, 0, 0, size, size), scale


def max_boxes_of(*splits) -> int:
    return max(1, *(len(b) for split in splits for b in split.boxes))


def letterboxed_arrays(split, size: int, max_boxes: int):
    """A DetectionSplit as arrays: uint8 images [N, size, size, 3], boxes float32 [N, M, 4] in
    letterbox pixels and classes float32 [N, M], both padded with -1, and the scales [N]."""
    count = split.count
    images = np.zeros((count, size, size, 3), np.uint8)
    boxes = -np.ones((count, max_boxes, 4), np.float32)
    classes = -np.ones((count, max_boxes), np.float32)
    scales = np.zeros(count, np.float32)
    for i, (image, b, c) in enumerate(zip(split.images, split.boxes, split.classes)):
        boxed, scale = letterbox(image, size)
        images[i] = np.asarray(tf.cast(tf.round(boxed), tf.uint8))
        scales[i] = float(scale)
        boxes[i, :len(b)] = b * scales[i]
        classes[i, :len(c)] = c
    return images, boxes, classes, scales


def augmenter(size: int, seed: int, jitter=JITTER):
    """keras-cv's horizontal flip and jittered resize, both moving the boxes ("xyxy")."""
    import keras_cv

    flip = keras_cv.layers.RandomFlip(mode="horizontal", bounding_box_format="xyxy", seed=seed)
    resize = keras_cv.layers.JitteredResize(target_size=(size, size), scale_factor=tuple(jitter),
                                            bounding_box_format="xyxy", seed=seed + 1)
    return lambda batch: resize(flip(batch))


def train_dataset(arrays, batch_size: int, seed: int, augment: bool = True):
    """Endless shuffled batches (float32 images [B, S, S, 3], {"boxes", "classes"}), dense."""
    import keras_cv

    images, boxes, classes, _ = arrays
    size, max_boxes = images.shape[1], boxes.shape[1]
    ds = tf.data.Dataset.from_tensor_slices({
        "images": images, "bounding_boxes": {"boxes": boxes, "classes": classes}})
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda d: {**d, "images": tf.cast(d["images"], tf.float32)})
    if augment:
        augment_batch = augmenter(size, seed)
        ds = ds.map(augment_batch)

    def to_pair(d):
        dense = keras_cv.bounding_box.to_dense(d["bounding_boxes"], max_boxes=max_boxes)
        boxes = tf.ensure_shape(dense["boxes"], [batch_size, max_boxes, 4])
        classes = tf.ensure_shape(dense["classes"], [batch_size, max_boxes])
        return tf.ensure_shape(d["images"], [batch_size, size, size, 3]), {
            "boxes": boxes, "classes": classes}

    ds = ds.map(to_pair, num_parallel_calls=tf.data.AUTOTUNE)
    return with_data_sharding(ds.prefetch(tf.data.AUTOTUNE))


def eval_dataset(arrays, batch_size: int):
    """One pass in order, whole batches only (Faster R-CNN's batch size is fixed): for the
    per-epoch validation losses; the mAP itself covers every image (evaluate())."""
    images, boxes, classes, _ = arrays
    ds = tf.data.Dataset.from_tensor_slices(
        (images, {"boxes": boxes, "classes": classes})).batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y))
    return with_data_sharding(ds.prefetch(tf.data.AUTOTUNE))
