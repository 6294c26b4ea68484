"""The training run every app shares: folders, callbacks, resume, and the outcome.

Apps describe (model builder, datasets); this module runs. Only the chief writes the real
checkpoints, TensorBoard logs and history; other workers write those to a temporary folder
of their own (deleted afterwards) and keep their resume backup under backup/<worker>.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from typing import Callable

import keras
import tensorflow as tf

from suite.runtime.callbacks import AtomicCheckpoint, StopOnNonFiniteLoss
from suite.runtime.preemption import training_backup_for
from suite.runtime.devices import Runtime
from suite.runtime.flags import RuntimeConfig

EXIT_INTERRUPTED = {"SIGTERM": 143, "SIGINT": 130}  # 128 + signal: "retry me" to job schedulers


@dataclasses.dataclass
class RunPaths:
    """Where one training run writes; `scratch` is set for non-chief workers and removed at the end."""
    model_dir: str
    checkpoints: str
    backup: str
    logs: str
    history_csv: str
    scratch: str | None = None

    @classmethod
    def for_role(cls, model_dir: str, runtime: Runtime) -> "RunPaths":
        if runtime.role.is_chief:
            root, scratch = model_dir, None
            backup = os.path.join(model_dir, "backup")
        else:
            root = scratch = tempfile.mkdtemp(prefix=f"suite-{runtime.role.name}-")
            backup = os.path.join(model_dir, "backup", runtime.role.name)
        os.makedirs(root, exist_ok=True)
        return cls(model_dir=root, checkpoints=os.path.join(root, "checkpoints"), backup=backup,
                   logs=os.path.join(root, "logs"), history_csv=os.path.join(root, "history.csv"),
                   scratch=scratch)

    def cleanup(self) -> None:
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


@dataclasses.dataclass
class TrainOutcome:
    status: str  # "completed", "interrupted" or "diverged"
    epochs_done: int
    message: str = ""
    exit_code: int = 0
    trained_now: bool = True  # False when the run was already finished and nothing was trained

    def results(self) -> dict:
        """What an app returns when training did not complete (the exit code travels with it)."""
        return {"status": self.status, "exit_code": self.exit_code, "message": self.message}


def progress_verbosity(runtime: Runtime) -> int:
    """Keras progress bar on a terminal, one line per epoch in logs, nothing from non-chiefs."""
    if not runtime.role.is_chief:
        return 0
    return 1 if sys.stdout.isatty() else 2


def fit_resumable(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    config: RuntimeConfig,
    steps_per_epoch: int,
    runtime: Runtime,
    paths: RunPaths,
    extra_callbacks: list[keras.callbacks.Callback] = (),
    monitor: str = "val_accuracy",
) -> TrainOutcome:
    """Trains `model` (built and compiled in the strategy scope) up to `config.epochs`.

    Runs the same command twice and the second resumes: from the end of the last finished
    epoch after a kill -9, from the exact step after SIGTERM/SIGINT, or not at all when done.
    The outcome's message, if any, is printed.
    """
    outcome = _fit(model, train_ds, val_ds, config, steps_per_epoch, runtime, paths,
                   extra_callbacks, monitor)
    if outcome.message:
        print(outcome.message, flush=True)
    return outcome


def _fit(model, train_ds, val_ds, config, steps_per_epoch, runtime, paths, extra_callbacks,
         monitor) -> TrainOutcome:
    backup = training_backup_for(runtime, paths.backup, config.backup_every_steps)
    nan_guard = StopOnNonFiniteLoss()
    epoch, step = backup.restore(model)
    if step >= steps_per_epoch:  # stopped on an epoch's last step: that epoch is complete
        epoch, step = epoch + 1, 0
    if epoch >= config.epochs:
        return TrainOutcome("completed", epoch, f"already trained for {epoch} epochs; not training",
                            trained_now=False)
    if epoch or step:
        source = getattr(backup, "restore_dir", paths.backup)  # other workers read the chief's
        print(f"Resuming from the backup in {source}: epoch {epoch + 1}, step {step}.",
              flush=True)
    # Order matters for kill -9 at any instant: logs first, then checkpoints, the backup last,
    # so a finished epoch is never lost from the history (at worst it is logged twice).
    callbacks = [
        nan_guard,  # first: a non-finite step must be flagged before anything saves
        keras.callbacks.CSVLogger(paths.history_csv, append=True),
        keras.callbacks.TensorBoard(paths.logs, profile_batch=0),
        *extra_callbacks,
        AtomicCheckpoint(paths.checkpoints, monitor=monitor if val_ds is not None else "loss",
                         mode="max" if "acc" in monitor and val_ds is not None else "min"),
        backup,
    ]
    fit = lambda first, last, steps: model.fit(  # noqa: E731
        train_ds, validation_data=val_ds, initial_epoch=first, epochs=last,
        steps_per_epoch=steps, callbacks=callbacks, shuffle=False,  # tf.data shuffles
        verbose=progress_verbosity(runtime))
    if step:  # finish the epoch a signal interrupted, then carry on normally
        backup.start_partial_epoch(step)
        fit(epoch, epoch + 1, steps_per_epoch - step)
        epoch += 1
    if backup.interrupted_by is None and nan_guard.diverged_at is None and epoch < config.epochs:
        fit(epoch, config.epochs, steps_per_epoch)

    state = backup.saved_state() or {"epoch": 0}
    if nan_guard.diverged_at is not None:
        e, b = nan_guard.diverged_at
        return TrainOutcome(
            "diverged", state["epoch"],
            f"training diverged: non-finite loss at epoch {e + 1}, step {b + 1}. The last good "
            f"state (epoch {state['epoch']}) is kept in {paths.checkpoints} and {paths.backup}; "
            "lower --learning_rate or use --precision=float32 and run again.", exit_code=1)
    if backup.interrupted_by is not None:
        return TrainOutcome(
            "interrupted", state["epoch"],
            f"stopped by {backup.interrupted_by} at epoch {state['epoch'] + 1}, step "
            f"{state['step']}; the state is saved in {paths.backup}: run the same command again "
            "to resume.", exit_code=EXIT_INTERRUPTED[backup.interrupted_by])
    return TrainOutcome("completed", state["epoch"])


def build_in_scope(runtime: Runtime, build: Callable[[], keras.Model]) -> keras.Model:
    with runtime.strategy.scope():
        return build()
