"""Evaluation helpers the runner and the tasks share: probabilities, accuracy, results.json."""
from __future__ import annotations

import json
import os

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


def write_results(path: str, results: dict) -> None:
    from suite.runtime.backup import atomic_write_json

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    atomic_write_json(path, results)


def read_results(path: str) -> dict:
    """results.json of an earlier run, or {}; a damaged one is named before anything is
    trained over it."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is damaged ({e}); move it aside (a rerun writes it anew)") \
            from None
    if not isinstance(results, dict):
        raise ValueError(f"{path} is damaged (not a JSON object); move it aside (a rerun "
                         "writes it anew)")
    return results


def weights_fingerprint(model: keras.Model) -> str:
    """sha256 of every weight's bytes, in order: what an export holds, without loading it."""
    import hashlib

    digest = hashlib.sha256()
    for weight in model.weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()


def export_is_current(results: dict, weights: str, export_base: str) -> bool:
    """True when results.json names an export under `export_base` (--export_dir/<name>) that
    still exists and holds these weights: a rerun of a finished training then adds no
    identical version, while one whose earlier end was cut short before the export, that
    imported other weights or serves another model does export."""
    export = results.get("export")
    return (bool(export) and os.path.isdir(export) and results.get("export_weights") == weights
            and os.path.dirname(os.path.abspath(export)) == os.path.abspath(export_base))
