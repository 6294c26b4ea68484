"""A suite classifier as a feature extractor: the input of its last Dense layer (the
penultimate features a Frechet distance compares) and its class probabilities."""
from __future__ import annotations

import numpy as np

from suite.errors import DataError


class FeatureClassifier:
    def __init__(self, model, source: str):
        import keras

        head = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        if not head:
            raise DataError(f"{source}: the classifier has no Dense layer whose input could "
                            "serve as its features")
        self.model = keras.Model(model.inputs[0], [head[-1].input, model.outputs[0]])
        self.source = source

    def __call__(self, images: np.ndarray, batch_size: int = 500):
        """(features, probabilities) for uint8 images, as the classifier's serving sees them
        (raw pixel values: suite classifiers rescale inside)."""
        features, probabilities = [], []
        for i in range(0, len(images), batch_size):
            f, p = self.model(images[i:i + batch_size].astype(np.float32), training=False)
            features.append(np.asarray(f, np.float64).reshape(len(f), -1))
            probabilities.append(np.asarray(p, np.float64))
        probs = np.concatenate(probabilities)
        if not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):  # a logits head
            probs = np.exp(probs - probs.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
        return np.concatenate(features), probs


def load_feature_classifier(source: str, image_shape) -> FeatureClassifier:
    """`source`: a classifier run's model_dir or .keras file whose input fits `image_shape`."""
    from suite.models.registry import load_keras_file
    from suite.models.transfer import resolve_source

    path = resolve_source(source, "classifier_from")
    if not path.endswith(".keras"):
        raise DataError(f"`classifier_from={source}`: needs a .keras checkpoint (a model_dir "
                        f"with checkpoints/best.keras or last.keras), not {path}")
    model = load_keras_file(path)
    expected = tuple(model.inputs[0].shape[1:])
    if expected != tuple(image_shape):
        raise DataError(f"`classifier_from={source}` takes images of shape {expected}, but the "
                        f"generated images are {tuple(image_shape)}: use a classifier trained "
                        "on these images")
    return FeatureClassifier(model, path)
