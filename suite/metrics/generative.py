"""How good generated images are, measured with a classifier trained by the suite.

The standard Inception Score and FID use an ImageNet Inception network whose weights cannot be
downloaded here, and on digits a digit classifier is the better judge anyway. So both are
computed on a suite classifier (for MNIST the DeepConvNet of apps.train_mnist) and named for
what they are:

- classifier score: exp(E_x KL(p(y|x) || p(y))), the Inception Score's formula on that
  classifier's probabilities. 10 at most (10 classes); high when every image is one confident
  class and the classes are balanced.
- Frechet classifier distance: ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between
  Gaussians fitted to the classifier's penultimate features (FID's formula; scipy's sqrtm).
  Only comparable to the same classifier's real-vs-real floor, reported beside it.
- class histogram: the share of each class among the generated images (mode collapse shows).
"""
from __future__ import annotations

import numpy as np
from scipy import linalg


def classifier_score(probabilities: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Mean and standard deviation over `splits` chunks, as the Inception Score is reported."""
    p = np.asarray(probabilities, np.float64)
    scores = []
    for chunk in np.array_split(p, splits):
        marginal = chunk.mean(axis=0, keepdims=True)
        kl = np.sum(chunk * (np.log(chunk + 1e-12) - np.log(marginal + 1e-12)), axis=1)
        scores.append(float(np.exp(kl.mean())))
    return float(np.mean(scores)), float(np.std(scores))


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Frechet distance between Gaussians fitted to two feature sets (rows are samples)."""
    (mu_a, cov_a), (mu_b, cov_b) = gaussian(a), gaussian(b)
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(root).all():  # near-singular products: the usual epsilon offset
        offset = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = np.real(root)  # sqrtm leaves tiny imaginary parts from round-off
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))


def class_histogram(probabilities: np.ndarray, num_classes: int) -> np.ndarray:
    """The share of each class among the classifier's argmax labels."""
    labels = np.argmax(probabilities, axis=1)
    return np.bincount(labels, minlength=num_classes) / max(len(labels), 1)
