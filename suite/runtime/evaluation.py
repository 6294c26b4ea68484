"""Evaluation helpers the tasks share: inference-mode probabilities and accuracy."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def predict_probabilities(model: keras.Model, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Inference-mode probabilities through one traced function (steadier than model.predict here)."""
    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    outputs = [call(tf.cast(images[i:i + batch_size], tf.float32)).numpy()
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs).astype(np.float32)


def predict_dataset(model: keras.Model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, labels) over one pass of a (features, labels) dataset, through one traced
    inference function."""
    call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    probabilities, labels = [], []
    for x, y in dataset:
        probabilities.append(np.asarray(call(x), np.float32))
        labels.append(np.asarray(y))
    return np.concatenate(probabilities), np.concatenate(labels).astype(np.int64)


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(probabilities, axis=-1) == labels))
