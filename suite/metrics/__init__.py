"""Evaluation metrics that are more than a Keras metric: per-image, per-class, challenge scores."""
