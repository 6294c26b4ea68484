"""Make Keras 3 `model.fit` work under tf.distribute.MultiWorkerMirroredStrategy.

Upstream Keras 3 does not support MultiWorkerMirroredStrategy (keras-team/keras#20585,
tensorflow/tensorflow#72388). `fit` fails in two private pieces of
keras.src.backend.tensorflow.trainer:

1. `TensorFlowTrainer._maybe_symbolic_build` averages the first distributed batch eagerly
   (`strategy.reduce("MEAN", batch)`) only to learn its shapes and dtypes; in multi-worker mode
   that raises `ValueError: Attempt to convert a value (PerReplica:{...})`, and under
   MirroredStrategy a first batch that does not split evenly (459 validation images over 2
   replicas: 230 and 229) fails `AddN ... must have the same size and shape`. The first local
   replica's batch has the same per-replica shapes and dtypes, so we build from it (under both
   strategies).
2. `reduce_per_replica` averages every log with `strategy.reduce("MEAN", v, axis=0)`; the loss
   and metric results are scalars, hence `Invalid reduction dimension 0 for input with 0
   dimensions`. We average scalars across replicas with `axis=None`.

`apply()` swaps in replacements that change only those paths and hand every other call to
the original code, so one-device training is untouched; the runner applies them whenever its
strategy has several replicas. It patches private code, so it refuses any Keras version it
was not checked against: re-verify both functions (and tests/test_multiworker_compat.py) before adding a
version to SUPPORTED_KERAS_VERSIONS, and delete this module once upstream is fixed.
"""
from __future__ import annotations

import functools
import sys

import keras

SUPPORTED_KERAS_VERSIONS = ("3.15.1",)

_TRAINER_MODULE = "keras.src.backend.tensorflow.trainer"
_MARKER = "_suite_multiworker_compat"


def is_applied() -> bool:
    """True once `apply()` has patched the TensorFlow trainer in this process."""
    trainer = sys.modules.get(_TRAINER_MODULE)
    if trainer is None:
        return False
    return getattr(trainer.reduce_per_replica, _MARKER, False) and getattr(
        trainer.TensorFlowTrainer._maybe_symbolic_build, _MARKER, False
    )


def apply() -> None:
    """Patch Keras so `fit`/`evaluate` run under MultiWorkerMirroredStrategy. Idempotent.

    Raises RuntimeError, patching nothing, on an unsupported Keras version or a non-TensorFlow
    backend: a patch of private code applied blindly could silently train wrong.
    """
    if keras.__version__ not in SUPPORTED_KERAS_VERSIONS:
        raise RuntimeError(
            f"suite.runtime.multiworker_compat patches private Keras code and was checked only "
            f"against Keras {', '.join(SUPPORTED_KERAS_VERSIONS)}, but Keras {keras.__version__} "
            "is installed. Install a supported Keras (setup.cfg pins it), or check whether "
            "keras-team/keras#20585 is fixed upstream (then drop this patch), or re-read "
            f"{_TRAINER_MODULE}._maybe_symbolic_build and reduce_per_replica, rerun "
            "tests/test_multiworker_compat.py and add the version to SUPPORTED_KERAS_VERSIONS."
        )
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "MultiWorkerMirroredStrategy is a TensorFlow strategy but the Keras backend is "
            f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow for multi-worker runs."
        )
    if is_applied():
        return
    from keras.src.backend.tensorflow import trainer

    trainer.TensorFlowTrainer._maybe_symbolic_build = _patched_symbolic_build(
        trainer, trainer.TensorFlowTrainer._maybe_symbolic_build
    )
    trainer.reduce_per_replica = _patched_reduce_per_replica(trainer, trainer.reduce_per_replica)


def _patched_symbolic_build(trainer, original):
    import tensorflow as tf
    from keras.src import tree

    @functools.wraps(original)
    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if (
            iterator is None
            or strategy is None
            or not (trainer._collective_all_reduce_multi_worker(strategy)
                    or isinstance(strategy, tf.distribute.MirroredStrategy))
        ):
            return original(self, iterator=iterator, data_batch=data_batch)

        def first_local(value):
            if isinstance(value, tf.distribute.DistributedValues):
                return strategy.experimental_local_results(value)[0]
            return value

        for _, _, it in iterator:
            data_batch = tree.map_structure(first_local, next(it))
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    setattr(_maybe_symbolic_build, _MARKER, True)
    return _maybe_symbolic_build


def _patched_reduce_per_replica(trainer, original):
    from keras.src import tree

    def is_scalar(value, strategy):
        if trainer._is_per_replica_instance(value):
            value = strategy.experimental_local_results(value)[0]
        shape = getattr(value, "shape", None)
        return shape is not None and shape.rank == 0

    @functools.wraps(original)
    def reduce_per_replica(values, strategy, reduction):
        # "auto" means "mean" for every strategy but TPUStrategy, and MWMS is not a TPUStrategy.
        if reduction not in ("auto", "mean") or not trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            return original(values, strategy, reduction)

        def reduce_one(value):
            if is_scalar(value, strategy):
                return strategy.reduce("MEAN", value, axis=None)
            return original(value, strategy, reduction)

        return tree.map_structure(reduce_one, values)

    setattr(reduce_per_replica, _MARKER, True)
    return reduce_per_replica
