"""The Keras callbacks through which `fit` gets the runner's guarantees.

They share one EpochGate, which says whether the current epoch is finishing normally: after a
stop signal mid-epoch (`partial`) or a non-finite loss (`diverged`) no callback validates,
logs, checkpoints or backs up that epoch, so the grace period before SIGKILL is spent saving,
and a partial epoch never shows up as an epoch in history.csv or the learning curves.
Order in the list matters for kill -9 at any instant: history first, then checkpoints, the
backup last, so a finished epoch is never lost (at worst it is run, and logged, again).
"""
from __future__ import annotations

import dataclasses

import keras

from suite.runtime.backup import ResumeState
from suite.runtime.records import EpochCheckpoints, HistoryLog, finite
from suite.runtime.stopping import StopRequests


@dataclasses.dataclass
class EpochGate:
    partial: bool = False  # stopped by a signal before the epoch's last step
    diverged_at: tuple[int, int] | None = None  # (epoch, step) of a non-finite loss

    @property
    def closed(self) -> bool:
        return self.partial or self.diverged_at is not None


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training at the first step whose watched losses (a task names them: `loss`, or a
    GAN's `d_loss` and `g_loss`) are not finite; first in the list, before anything saves."""

    def __init__(self, gate: EpochGate, watched=("loss",)):
        super().__init__()
        self.gate, self.watched = gate, tuple(watched)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.gate.diverged_at is None and not finite(logs, self.watched):
            self.gate.diverged_at = (self._epoch, batch)
            self.model.stop_training = True


class EpochValidation(keras.callbacks.Callback):
    """Validates at the end of each finished epoch and adds `val_*` to the epoch's logs.

    Instead of fit's validation_data, which also validates an epoch a stop signal cut short."""

    def __init__(self, gate: EpochGate, data):
        super().__init__()
        self.gate, self.data = gate, data

    def on_epoch_end(self, epoch, logs=None):
        if self.gate.closed or logs is None:
            return
        results = self.model.evaluate(self.data, verbose=0, return_dict=True)
        logs.update({f"val_{name}": value for name, value in results.items()})


class EpochMetrics(keras.callbacks.Callback):
    """Adds the task's own numbers of each finished epoch (`metrics(epoch) -> dict`) to its
    logs, before they are recorded and the best epoch is chosen."""

    def __init__(self, gate: EpochGate, metrics):
        super().__init__()
        self.gate, self.metrics = gate, metrics

    def on_epoch_end(self, epoch, logs=None):
        if self.gate.closed or logs is None:
            return
        logs.update(self.metrics(epoch) or {})


class TrainingSetEvaluation(keras.callbacks.Callback):
    """Adds `inference_*`: the model's loss and metrics on a fixed subset of the training data,
    in inference mode, at the end of each finished epoch.

    The logs Keras reports for training are running means over the epoch in training mode
    (dropout on): with the book's dropout on the logits, DeepConvNet's training accuracy reads
    ~50% while the same model scores 99% on the test set. This is the accuracy the model has.
    """

    def __init__(self, gate: EpochGate, data):
        super().__init__()
        self.gate, self.data = gate, data

    def on_epoch_end(self, epoch, logs=None):
        if self.gate.closed or logs is None:
            return
        results = self.model.evaluate(self.data, verbose=0, return_dict=True)
        logs.update({f"inference_{name}": value for name, value in results.items()})


class EpochRecords(keras.callbacks.Callback):
    """history.csv and checkpoints/{last,best}.keras for each finished epoch."""

    def __init__(self, gate: EpochGate, history: HistoryLog, checkpoints: EpochCheckpoints):
        super().__init__()
        self.gate, self.history, self.checkpoints = gate, history, checkpoints

    def on_epoch_end(self, epoch, logs=None):
        if self.gate.closed:
            return
        self.history.append(epoch, logs or {})
        self.checkpoints.save(self.model, epoch, logs)


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """keras.callbacks.TensorBoard without the scalars of an epoch that did not finish."""

    def __init__(self, gate: EpochGate, log_dir: str, **kwargs):
        super().__init__(log_dir, **kwargs)
        self.gate = gate

    def on_epoch_end(self, epoch, logs=None):
        if not self.gate.closed:
            super().on_epoch_end(epoch, logs)


class ResumableTraining(keras.callbacks.Callback):
    """Backs up the resume state at each epoch end (and every `every_steps` steps) and stops
    after the step at which the workers agree on a stop request, saving that exact step.

    A stop agreed on an epoch's last step ends that epoch as usual (validation, history,
    checkpoint, then the backup at (epoch + 1, 0)) and then stops: a backup at (epoch, last
    step) would make the rerun fit 0 steps, which Keras reads as "until the data runs out".
    Last in the callback list.
    """

    def __init__(self, gate: EpochGate, state: ResumeState, stop: StopRequests,
                 every_steps: int = 0):
        super().__init__()
        self.gate, self.state, self.stop, self.every_steps = gate, state, stop, every_steps
        self.epoch = 0
        self.steps_done = 0
        self._offset = 0  # steps of the current epoch done before this fit() call

    def start_partial_epoch(self, steps_done: int) -> None:
        self._offset = steps_done

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done = self._offset + batch + 1
        if self.gate.diverged_at is not None or self.stop.stopped_by is not None:
            return
        if self.stop.due(self.steps_done):
            agreed = self.stop.agreed()  # a collective with several workers: never skipped
            if agreed is not None:
                self.stop.stopped_by = agreed
                self.model.stop_training = True
                if batch + 1 < self.params.get("steps", 0):
                    self.gate.partial = True
                    self.state.save(self.epoch, self.steps_done)
                return
        if self.every_steps and self.steps_done % self.every_steps == 0:
            self.state.save(self.epoch, self.steps_done)

    def on_epoch_end(self, epoch, logs=None):
        self._offset = 0
        if not self.gate.closed:
            self.state.save(epoch + 1, 0)
