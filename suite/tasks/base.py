"""A Task describes an application; the runner (suite.runtime.runner) runs it.

An application is a Task and its typed config (`config_class`, a suite.config.Config whose
fields are the app's options and, through suite.runtime.flags, its command-line flags). The
runner calls, in this order:

    load_data(run)        read the data (after the strategy exists, before any model)
    build(run)            the models, in the strategy scope: one keras.Model, or a dict of them
                          (the first is the primary: checkpointed, evaluated, exported)
    train(run)            default: the runner's resumable fit of the primary model on
                          self.train_data / self.validation_data; a task may instead run its
                          own loop (run.loop(...)) or several fits (run.fit(..., subdir=...))
    evaluate(run)         the numbers for results.json; figures (run.is_chief) into run's folder
    write_export          serving_signatures(served model, export_metadata()) into a SavedModel

and owns everything else once: runtime set-up, the run lock, folders and the chief-only rule,
restore and backups (every model, every optimizer, plus `extra_state()`), stop signals,
history, TensorBoard, checkpoints, learning curves, results.json, export freshness and the
exit code. A Task declares what the runner must know of it (the class attributes below): the
metric best.keras follows, the run.json keys that give its weights their meaning, the figures
it draws. `serving_signatures` is a classmethod of the served model and the metadata only, so
`python -m apps.export` re-exports any run from its checkpoint and run.json alone.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from suite.export.signature import Input, Signature

if TYPE_CHECKING:  # importing Keras loads TensorFlow, which the runner loads quietly first
    import keras

__all__ = ["Input", "Signature", "Task"]


class Task:
    config_class: type | None = None  # the app's typed config: its options and flags
    name: str = "model"  # the export folder under export_dir, TF Serving's model name
    best_checkpoint: tuple[str | None, str] = ("val_accuracy", "max")  # (metric, max|min)
    watched_losses: tuple[str, ...] = ("loss",)  # logs the non-finite guard checks
    global_batch_size: int | None = None  # checked against the replicas when set
    validation_label: str = "validation"  # what the val_* curves are called in figures
    validation_split: str | None = None  # the examples the val_* numbers are measured on
    export_checkpoint: str = "last"  # "best": evaluate and export checkpoints/best.keras
    initial_weights: str | None = None  # where build() took weights from (init_from, ...)
    epoch_option: str = "steps_per_epoch"  # a custom loop's epoch length: named if it changes
    # export_metadata() keys that give the trained weights their meaning: a rerun that would
    # resume them with other values (other classes, another vocabulary) is refused.
    meaning_keys: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()  # the figure files evaluate() draws into the run's folder

    # Set by load_data for the default train():
    train_data = None
    validation_data = None
    training_subset = None  # fixed training examples: the curves' inference-mode train numbers
    epochs: int = 0
    steps_per_epoch: int = 0

    def __init__(self, config=None, data_override=None):
        """`config`: an instance of `config_class`; `data_override`: in-memory data that
        replaces what load_data would read (tests, notebooks). The seed, and the epochs and
        global batch of a config with a `schedule` group, are taken from it."""
        self.config, self.data_override = config, data_override
        runtime, schedule = getattr(config, "runtime", None), getattr(config, "schedule", None)
        self.seed = runtime.seed if runtime is not None else 0
        if schedule is not None:
            self.epochs, self.global_batch_size = schedule.epochs, schedule.batch_size
        if getattr(config, "validation", None) == "holdout":  # suite.runtime.config's option
            self.export_checkpoint = "best"  # the model the held-out examples chose
        elif getattr(config, "validation", None) == "test":
            self.export_checkpoint, self.validation_label = "last", "test"

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
        """What is evaluated, exported and left in checkpoints/last.keras: checkpoints/best.keras
        for a task that serves its best checkpoint (chosen on validation data; an RL policy,
        which can collapse late), where there is one; else the primary model as trained."""
        best = self._best_checkpoint(run)
        return self.load_checkpoint(best.best_path) if best else run.model

    def selection(self, run) -> dict:
        """results.json's account of what chose the evaluated model: best.keras, by its metric
        on `validation_split` at some epoch, or the last epoch's model."""
        chosen = {"model": "last", "validation_split": self.validation_split}
        best = self._best_checkpoint(run)
        if best:
            metric, info = best.monitor, best.best_info()
            chosen.update(model="best", metric=metric, value=info.get(metric),
                          epoch=info.get("epoch"))
        return chosen

    def _best_checkpoint(self, run):
        """The run's EpochCheckpoints when this task serves its best.keras and one exists."""
        import os

        from suite.runtime.records import EpochCheckpoints

        checkpoints = EpochCheckpoints(run.paths.run_checkpoints, *self.best_checkpoint)
        if self.export_checkpoint == "best" and os.path.isfile(checkpoints.best_path):
            return checkpoints
        return None

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

    # -- what the runner and apps.export call -------------------------------------------------
    @property
    def exports(self) -> bool:
        """Whether this task serves a SavedModel at all."""
        return type(self).serving_signatures.__func__ is not Task.serving_signatures.__func__

    def has_extra_state(self) -> bool:
        return type(self).extra_state is not Task.extra_state

    @classmethod
    def load_checkpoint(cls, path: str) -> keras.Model:
        """A .keras checkpoint of this task's models, its custom classes known."""
        from suite.models.registry import load_keras_file

        return load_keras_file(path, custom_objects=cls.custom_objects())

    @classmethod
    def write_export(cls, model: keras.Model, metadata: dict, export_base: str, name: str,
                     version: int | None = None) -> str:
        """Writes `<export_base>/<name>/<version>/` with this task's signatures for `model`;
        returns that folder."""
        from suite.errors import ExportError
        from suite.export.saved_model import write_saved_model

        signatures = cls.serving_signatures(model, metadata)
        if not signatures:
            raise ExportError(f"{cls.__name__} runs export no SavedModel")
        return write_saved_model(export_base, name, signatures,
                                 {"model": model.name, "task": cls.__name__, **metadata}, version)
