"""Proof that suite.runtime.multiworker_compat makes Keras 3 fit correct under
MultiWorkerMirroredStrategy: two real worker processes on 127.0.0.1, started by launch.local
(so this also proves the launcher's TF_CONFIG makes a working cluster), against one process.

Equivalence argument. Both runs read the same unshuffled data in global batches of 8. With
AutoShardPolicy.DATA, tf.distribute first splits every global batch into one slice per replica
and then gives worker i the i-th slice (checked below: worker 0 sees examples 0-3 of each batch,
worker 1 examples 4-7). Each replica's loss is the mean over its 4 examples scaled by 1/2
(Keras scales losses by 1/num_replicas), and the gradients are summed across workers, so every
step applies the mean gradient of the whole global batch: what one process training on the
same global batches in the same order computes, up to float32 summation order (measured here:
3e-8 max weight difference after 8 SGD steps; we allow 1e-5).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "_mw_worker.py"
TIMEOUT_S = 180
ATOL = 1e-5
NUM_WEIGHTS = 4  # conv kernel, conv bias, dense kernel, dense bias


def _start(command, log):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    with open(log, "wb") as log_file:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)


def _stop(proc):
    """SIGTERM first: launch.local forwards it, so its workers do not outlive it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two workers started by launch.local (free loopback ports, one TF_CONFIG each) and the
    single-process runs, all at once; returns the results each saved."""
    tmp = tmp_path_factory.mktemp("multiworker")
    jobs = {
        "workers": _start([sys.executable, "-m", "launch.local", "--num_workers=2",
                           "--grace_period_s=5", "--", sys.executable, str(WORKER),
                           "multiworker", str(tmp)], tmp / "workers.log"),
        "local": _start([sys.executable, str(WORKER), "local", str(tmp)], tmp / "local.log"),
    }
    deadline = time.monotonic() + TIMEOUT_S
    try:
        for proc in jobs.values():
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for proc in jobs.values():
            _stop(proc)
    failed = {name: proc.returncode for name, proc in jobs.items() if proc.returncode != 0}
    if failed:
        tails = "\n".join(
            f"--- {name} (exit {code}):\n{(tmp / f'{name}.log').read_text()[-3000:]}"
            for name, code in failed.items()
        )
        pytest.fail(f"training failed or ran past {TIMEOUT_S} s: {failed}\n{tails}")
    return {name: dict(np.load(tmp / f"{name}.npz")) for name in ("worker0", "worker1", "local")}


def _weights(result, prefix=""):
    return [result[f"{prefix}weights_{i}"] for i in range(NUM_WEIGHTS)]


@pytest.mark.slow
def test_workers_end_with_identical_weights(runs):
    for w0, w1 in zip(_weights(runs["worker0"]), _weights(runs["worker1"])):
        np.testing.assert_array_equal(w0, w1)
    np.testing.assert_array_equal(runs["worker0"]["loss"], runs["worker1"]["loss"])


@pytest.mark.slow
def test_multiworker_fit_equals_single_process_on_global_batches(runs):
    reference = runs["local"]
    worker = runs["worker0"]
    for ref, got in zip(_weights(reference, "reference_"), _weights(worker)):
        np.testing.assert_allclose(got, ref, rtol=0, atol=ATOL)
    # Training moved the weights a thousand times further than the tolerance: not a trivial match.
    moved = [np.abs(w - reference[f"reference_initial_{i}"]).max()
             for i, w in enumerate(_weights(reference, "reference_"))]
    assert max(moved) > 1000 * ATOL
    # Logged losses are averaged across workers: they must match the global-batch loss too.
    np.testing.assert_allclose(worker["loss"], reference["reference_loss"], rtol=1e-5)
    assert worker["loss"][1] < worker["loss"][0]
    np.testing.assert_allclose(worker["eval_loss"], reference["reference_eval_loss"], rtol=1e-5)


@pytest.mark.slow
def test_data_sharding_gives_worker_i_the_ith_half_of_each_global_batch(runs):
    ids = np.arange(32).reshape(4, 8)  # 4 global batches of 8 examples, in order
    np.testing.assert_array_equal(runs["worker0"]["ids"], ids[:, :4])
    np.testing.assert_array_equal(runs["worker1"]["ids"], ids[:, 4:])


@pytest.mark.slow
def test_single_worker_training_unchanged_by_apply(runs):
    local = runs["local"]
    assert bool(local["idempotent"])
    for ref, got in zip(_weights(local, "reference_"), _weights(local, "default_")):
        np.testing.assert_array_equal(got, ref)
    assert int(local["mirrored_replicas"]) == 2
    for ref, got in zip(_weights(local, "reference_"), _weights(local, "mirrored_")):
        np.testing.assert_allclose(got, ref, rtol=0, atol=ATOL)
    np.testing.assert_allclose(local["mirrored_loss"], local["reference_loss"], rtol=1e-5)


def test_apply_refuses_unsupported_keras_version(monkeypatch):
    import keras
    from keras.src.backend.tensorflow import trainer

    from suite.runtime import multiworker_compat

    before = (trainer.reduce_per_replica, trainer.TensorFlowTrainer._maybe_symbolic_build)
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    with pytest.raises(RuntimeError, match=r"Keras 3\.15\.1, but Keras 3\.99\.0"):
        multiworker_compat.apply()
    assert before == (trainer.reduce_per_replica, trainer.TensorFlowTrainer._maybe_symbolic_build)
    assert "3.15.1" in multiworker_compat.SUPPORTED_KERAS_VERSIONS


def test_apply_refuses_non_tensorflow_backend(monkeypatch):
    import keras

    from suite.runtime import multiworker_compat

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        multiworker_compat.apply()


def test_an_uneven_first_batch_evaluates_under_mirrored_strategy(two_cpu_strategy):
    """Keras builds the model from the first batch reduced over the replicas: 459 examples over
    2 replicas (230 and 229) failed `AddN ... must have the same size and shape`. Patched, the
    uneven batch evaluates to what one device gives."""
    import keras
    import tensorflow as tf

    from suite.runtime import multiworker_compat

    multiworker_compat.apply()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(459, 6)).astype("float32"), rng.integers(0, 3, 459)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(1000)

    def model():
        keras.utils.set_random_seed(0)
        net = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
        net.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return net

    alone = model().evaluate(data, verbose=0)
    with two_cpu_strategy.scope():
        mirrored = model()
    np.testing.assert_allclose(mirrored.evaluate(data, verbose=0), alone, rtol=1e-5)
