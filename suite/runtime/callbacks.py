"""Callbacks that make long runs safe: atomic checkpoints, resumable backups, preemption.

Every file is written to a temporary name and renamed into place, so a kill -9 at any moment
leaves either the previous file or the new one, never half of one. Nothing is saved from an
epoch whose loss went non-finite: the last good state stays on disk.
"""
from __future__ import annotations

import json
import math
import os
import signal
import threading

import keras


def atomic_write_json(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)


def _save_model_atomically(model: keras.Model, path: str, weights_only: bool = False) -> None:
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, f"tmp-{name}")  # Keras checks the suffix, so keep it last
    if weights_only:
        model.save_weights(tmp, overwrite=True)
    else:
        model.save(tmp, overwrite=True)
    os.replace(tmp, path)


def _finite(logs: dict | None) -> bool:
    loss = (logs or {}).get("loss")
    return loss is None or math.isfinite(float(loss))


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves `last.keras` every epoch and `best.keras` when `monitor` improves (whole models)."""

    def __init__(self, directory: str, monitor: str = "val_accuracy", mode: str = "max"):
        super().__init__()
        self.directory, self.monitor, self.mode = directory, monitor, mode
        os.makedirs(directory, exist_ok=True)
        self._state_path = os.path.join(directory, "best.json")
        self.best = None
        if os.path.exists(self._state_path):  # keep "best" meaningful across resumes
            with open(self._state_path) as f:
                self.best = json.load(f).get(monitor)

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        _save_model_atomically(self.model, os.path.join(self.directory, "last.keras"))
        value = (logs or {}).get(self.monitor)
        if value is not None and math.isfinite(value) and self._improved(value):
            self.best = float(value)
            _save_model_atomically(self.model, os.path.join(self.directory, "best.keras"))
            atomic_write_json(self._state_path, {self.monitor: self.best, "epoch": epoch + 1})


class TrainingBackup(keras.callbacks.Callback):
    """Backs up weights + optimizer state so the same command resumes an interrupted run.

    Like keras.callbacks.BackupAndRestore, plus: atomic files, no backup of a non-finite
    epoch, an optional backup every N steps, and SIGTERM/SIGINT handling: the run stops after
    the current step, saves (epoch, step) and `fit_resumable` later finishes that epoch's
    remaining steps. A second SIGINT interrupts at once.
    """

    def __init__(self, backup_dir: str, every_steps: int = 0):
        super().__init__()
        self.backup_dir = backup_dir
        self.every_steps = every_steps
        self.weights_path = os.path.join(backup_dir, "latest.weights.h5")
        self.state_path = os.path.join(backup_dir, "state.json")
        self.interrupted_by: str | None = None
        self._epoch = 0
        self._step_offset = 0  # steps of the current epoch done before this fit() call
        self._step = 0
        self._previous_handlers = {}

    # -- state on disk -------------------------------------------------------------------
    def saved_state(self) -> dict | None:
        if not (os.path.exists(self.state_path) and os.path.exists(self.weights_path)):
            return None
        with open(self.state_path) as f:
            return json.load(f)

    def restore(self, model: keras.Model) -> tuple[int, int]:
        """Loads the backup into `model` (compiled); returns (epoch, step) to resume from."""
        state = self.saved_state()
        if state is None:
            return 0, 0
        if model.optimizer is not None and not model.optimizer.built:
            with model.distribute_strategy.scope():  # optimizer slots must mirror the weights
                model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(self.weights_path)
        except Exception as e:  # a backup from another model or a damaged disk
            raise RuntimeError(
                f"the training backup {self.weights_path} does not fit this model ({e}). It was "
                f"written by a different configuration: use another --model_dir, or delete "
                f"{self.backup_dir} to start this one from scratch.") from e
        return int(state["epoch"]), int(state["step"])

    def _save(self, epoch: int, step: int) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        _save_model_atomically(self.model, self.weights_path, weights_only=True)
        atomic_write_json(self.state_path, {"epoch": epoch, "step": step})

    def clear(self) -> None:
        for path in (self.weights_path, self.state_path):
            if os.path.exists(path):
                os.remove(path)

    # -- signals ---------------------------------------------------------------------------
    def _request_stop(self, signum, frame):
        if self.interrupted_by is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: the user really wants out now
        self.interrupted_by = signal.Signals(signum).name
        print(f"\n{self.interrupted_by} received: saving after this step, then exiting "
              "(run the same command again to resume).", flush=True)

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous_handlers[sig] = signal.signal(sig, self._request_stop)

    def on_train_end(self, logs=None):
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    # -- progress --------------------------------------------------------------------------
    def start_partial_epoch(self, steps_done: int) -> None:
        self._step_offset = steps_done

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._step = self._step_offset + batch + 1
        if self.interrupted_by is not None:
            self._save(self._epoch, self._step)
            self.model.stop_training = True
        elif self.every_steps and self._step % self.every_steps == 0 and _finite(logs):
            self._save(self._epoch, self._step)

    def on_epoch_end(self, epoch, logs=None):
        self._step_offset = 0
        if self.interrupted_by is None and _finite(logs):
            self._save(epoch + 1, 0)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """keras.callbacks.TerminateOnNaN that also remembers where, so the app can say so and exit non-zero."""

    def __init__(self):
        super().__init__()
        self.diverged_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not _finite(logs):
            self.diverged_at = (self._epoch, batch)
            self.model.stop_training = True
