"""bench/mnist_accuracy.py: a rerun trains only the runs not yet finished, so seeds trained in
different sessions (a lent GPU's few minutes each) make one ensemble."""
from __future__ import annotations

import json

import numpy as np

from bench import mnist_accuracy


def test_finished_runs_are_kept_and_the_rest_trained(tmp_path):
    np.save(tmp_path / "mnist_augment-seed0.probs.npy", np.zeros((3, 10), np.float32))
    (tmp_path / "mnist_augment-seed0.json").write_text(json.dumps({"test_accuracy": 0.99}))
    # seed 1 died after its probabilities and before its result: not finished
    np.save(tmp_path / "mnist_augment-seed1.probs.npy", np.zeros((3, 10), np.float32))
    assert mnist_accuracy.runs_to_train(["mnist_augment", "mnist"], [0, 1, 2], str(tmp_path)) == [
        ("mnist_augment", 1), ("mnist_augment", 2), ("mnist", 0), ("mnist", 1), ("mnist", 2)]
    assert mnist_accuracy.runs_to_train(["mnist_augment"], [0], str(tmp_path)) == []
