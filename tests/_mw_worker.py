"""Training worker for tests/test_multiworker_compat.py (run as a subprocess, not by pytest).

    python -m launch.local --num_workers=2 -- python tests/_mw_worker.py multiworker OUT_DIR
    python tests/_mw_worker.py local OUT_DIR   # the single-process runs to compare against

Every run trains the same tiny Conv/Dense model (seeded initialisers, no dropout, plain SGD)
for EPOCHS x STEPS steps on the same fixed data, unshuffled, in global batches of GLOBAL_BATCH,
and saves its weights, per-epoch loss and evaluate() loss to OUT_DIR/{worker<i>,local}.npz.
"""
from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from suite.runtime import multiworker_compat  # noqa: E402
from suite.runtime.devices import make_strategy  # noqa: E402

GLOBAL_BATCH = 8
STEPS = 4
EPOCHS = 2
NUM_CLASSES = 3


def make_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 6, 6, 1)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=GLOBAL_BATCH * STEPS).astype("int32")
    return x, y


def make_dataset(*tensors):
    """Unshuffled global batches, sharded by DATA (never by FILE: there are no files)."""
    ds = tf.data.Dataset.from_tensor_slices(tensors).batch(GLOBAL_BATCH, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def build_model():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(
                4, 3, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(1)
            ),
            keras.layers.Flatten(),
            keras.layers.Dense(NUM_CLASSES, kernel_initializer=keras.initializers.GlorotUniform(2)),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def train(strategy=None):
    """Initial and final weights, per-epoch loss and evaluate() loss of one training run."""
    x, y = make_data()
    if strategy is None:
        model = build_model()
    else:
        with strategy.scope():
            model = build_model()
    initial = model.get_weights()
    history = model.fit(make_dataset(x, y), epochs=EPOCHS, verbose=0, shuffle=False)
    result = {f"weights_{i}": w for i, w in enumerate(model.get_weights())}
    result.update({f"initial_{i}": w for i, w in enumerate(initial)})
    result["loss"] = np.array(history.history["loss"])
    result["eval_loss"] = np.array(model.evaluate(make_dataset(x, y), verbose=0)[0])
    return result


def local_example_ids(strategy):
    """The example indices each step hands to this worker's replicas, in replica order."""
    ids = make_dataset(np.arange(GLOBAL_BATCH * STEPS))
    steps = []
    for batch in strategy.experimental_distribute_dataset(ids):
        (batch,) = batch
        local = strategy.experimental_local_results(batch)
        steps.append(np.concatenate([t.numpy() for t in local]))
    return np.stack(steps)


def run_multiworker(out_dir):
    # The apps' own path (patched Keras, TF_CONFIG's cluster), patient with heartbeats like
    # every cluster test (conftest.PATIENT_PEERS).
    strategy = make_strategy("multi_worker", peer_timeout_s=60)
    result = train(strategy)
    result["ids"] = local_example_ids(strategy)
    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    np.savez(os.path.join(out_dir, f"worker{index}.npz"), **result)


def run_local(out_dir):
    (cpu,) = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    result = {f"reference_{k}": v for k, v in train().items()}  # upstream Keras, unpatched
    multiworker_compat.apply()
    patched_once = multiworker_compat.is_applied()
    from keras.src.backend.tensorflow import trainer

    functions = (trainer.reduce_per_replica, trainer.TensorFlowTrainer._maybe_symbolic_build)
    multiworker_compat.apply()
    same_functions = functions == (
        trainer.reduce_per_replica,
        trainer.TensorFlowTrainer._maybe_symbolic_build,
    )
    result["idempotent"] = np.array(patched_once and same_functions)
    result.update({f"default_{k}": v for k, v in train().items()})
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    result["mirrored_replicas"] = np.array(mirrored.num_replicas_in_sync)
    result.update({f"mirrored_{k}": v for k, v in train(mirrored).items()})
    np.savez(os.path.join(out_dir, "local.npz"), **result)


if __name__ == "__main__":
    tf.config.threading.set_intra_op_parallelism_threads(1)
    mode, out_dir = sys.argv[1:]
    {"multiworker": run_multiworker, "local": run_local}[mode](out_dir)
