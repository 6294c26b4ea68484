"""A Task describes an application; the runner (suite.runtime.runner) runs it.

An app is its flags plus a Task. The runner calls, in this order:

    load_data(run)        read the data (after the strategy exists, before any model)
    build(run)            the models, in the strategy scope: one keras.Model, or a dict of them
                          (the first is the primary: checkpointed, evaluated, exported)
    train(run)            default: the runner's resumable fit of the primary model on
                          self.train_data / self.validation_data; a task may instead run its
                          own loop (run.loop(...)) or several fits (run.fit(..., subdir=...))
    evaluate(run)         the numbers for results.json; figures (run.is_chief) into run's folder
    export                serving_signatures(served model, export_metadata()) into a SavedModel

and owns everything else once: runtime set-up, the run lock, folders and the chief-only rule,
restore and backups (every model, every optimizer, plus `extra_state()`), stop signals,
history, TensorBoard, checkpoints, learning curves, results.json, export freshness and the
exit code. `serving_signatures` is a classmethod of the served model and the metadata only, so
`python -m apps.export` re-exports any run from its checkpoint and run.json alone.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # importing Keras loads TensorFlow, which the runner loads quietly first
    import keras


@dataclasses.dataclass
class Signature:
    """One serving signature: `fn` called with tensors matching `inputs` (tf.TensorSpecs whose
    names become the request's input names), returning a dict of named output tensors."""
    fn: Callable
    inputs: list


class Task:
    name: str = "model"  # the export folder under --export_dir, TF Serving's model name
    best_checkpoint: tuple[str | None, str] = ("val_accuracy", "max")  # (metric, max|min)
    watched_losses: tuple[str, ...] = ("loss",)  # logs the non-finite guard checks
    global_batch_size: int | None = None  # checked against the replicas when set
    validation_label: str = "validation"  # what the val_* curves are called in figures
    export_checkpoint: str = "last"  # "best": export checkpoints/best.keras (run.served)
    initial_weights: str | None = None  # where build() took weights from (--init_from, ...)
    epoch_flag: str = "the epoch length's flag"  # a custom loop's, named if a rerun changes it

    # Set by load_data for the default train():
    train_data = None
    validation_data = None
    training_subset = None  # fixed training examples: the curves' inference-mode train numbers
    epochs: int = 0
    steps_per_epoch: int = 0

    def load_data(self, run) -> None:
        """Reads the data; runs before build()."""

    def build(self, run) -> keras.Model | dict[str, keras.Model]:
        """The models, compiled (or with their own optimizers built), in the strategy scope."""
        raise NotImplementedError

    def train(self, run):
        """Trains; returns a suite.runtime.training.TrainOutcome. Default: resumable fit."""
        return run.fit(run.model, self.train_data, self.validation_data, epochs=self.epochs,
                       steps_per_epoch=self.steps_per_epoch)

    def extra_state(self) -> dict:
        """State besides models and optimizers to save with every backup: NumPy arrays and
        JSON values (a replay buffer, epsilon, RNG states). Override with load_extra_state."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Takes back what extra_state() returned, after a restore."""

    def epoch_metrics(self, run, epoch: int) -> dict:
        """A custom loop's per-epoch numbers (validation: val_* keys) for history and best."""
        return {}

    def evaluate(self, run) -> dict:
        """Numbers for results.json (and printed lines); figures on the chief."""
        return {}

    def served_model(self, run) -> keras.Model:
        """What is exported and left in checkpoints/last.keras; default the primary model."""
        return run.model

    def export_metadata(self) -> dict:
        """JSON stored with the export and in run.json: class names, vocabulary, box format."""
        return {}

    @classmethod
    def serving_signatures(cls, model: keras.Model, metadata: dict) -> dict[str, Signature] | None:
        """The SavedModel's signatures for `model`; None: this task exports nothing."""
        return None

    @classmethod
    def custom_objects(cls) -> dict:
        """Classes the checkpoint needs to load that are not registered when the task's module
        is imported (a Keras Model subclass defined lazily, to keep TensorFlow's import quiet)."""
        return {}

    # -- helpers for the runner -------------------------------------------------------------
    def has_extra_state(self) -> bool:
        return type(self).extra_state is not Task.extra_state
