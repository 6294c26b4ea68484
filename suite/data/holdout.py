"""Fixed, seeded subsets of a training set: the validation images that choose a checkpoint
(so the test set is looked at once, at the end) and the training sample the learning curves'
inference-mode numbers are measured on.

Both are stratified: every class keeps its share. A folder or zip lists its training images
class by class (`train/airplane/0000.jpg` first), so "the first N training examples" is one
class; a stratified random draw is what "the training set" means in a curve.
"""
from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) index arrays, both in the dataset's order: `count` examples held out,
    each class's share rounded, drawn with `seed`."""
    labels = np.asarray(labels)
    total = len(labels)
    if not 0 < count < total:
        raise ValueError(f"cannot hold out {count} of {total} examples: keep at least one for "
                         "training and hold out at least one")
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(labels, return_counts=True)
    shares = _shares(sizes, count)
    held = [rng.choice(np.flatnonzero(labels == c), n, replace=False)
            for c, n in zip(classes, shares) if n]
    held_out = np.sort(np.concatenate(held))
    mask = np.ones(total, bool)
    mask[held_out] = False
    return np.flatnonzero(mask), held_out


def stratified_sample(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of up to `count` examples, each class's share, drawn with `seed` (all of them
    when there are no more)."""
    labels = np.asarray(labels)
    if count >= len(labels):
        return np.arange(len(labels))
    return stratified_split(labels, count, seed)[1]


def _shares(sizes: np.ndarray, count: int) -> np.ndarray:
    """`count` split over classes in proportion to `sizes` (largest remainders), never more
    than a class has and, where the count allows, at least one of each."""
    exact = sizes * count / sizes.sum()
    shares = np.minimum(np.floor(exact).astype(int), sizes)
    if count >= len(sizes):
        shares = np.maximum(shares, np.minimum(1, sizes))
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    while shares.sum() < count:
        for c in order:
            if shares.sum() < count and shares[c] < sizes[c]:
                shares[c] += 1
    while shares.sum() > count:  # the ones of each class overshot: take from the largest
        surplus = np.where(shares > 1, shares - exact, -np.inf)
        shares[int(np.argmax(surplus))] -= 1
    return shares
