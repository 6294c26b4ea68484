"""Resumable training: run folders, resume, the resumable fit, and the outcome.

Only the chief writes the real checkpoints, TensorBoard logs and history; other workers write
those to a temporary folder of their own (deleted afterwards), back up under
backup/<worker>, and restore the chief's backup, so all resume from the same step.
`fit_resumable` is the runner's default training; suite.runtime.loop gives a task's own loop
the same resume, stop and record-keeping.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
from typing import Callable

import keras

from suite.errors import DamagedStateError
from suite.runtime.backup import ResumeState
from suite.runtime.callbacks import (EpochGate, EpochMetrics, EpochRecords, EpochTensorBoard,
                                     EpochValidation, NonFiniteGuard, ResumableTraining,
                                     TrainingSetEvaluation)
from suite.runtime.config import RuntimeConfig
from suite.runtime.devices import Runtime
from suite.runtime.records import EpochCheckpoints, HistoryLog
from suite.runtime.stopping import EXIT_CODES, agree_on_start, stop_requests_for

EXIT_INTERRUPTED = EXIT_CODES


@dataclasses.dataclass
class RunPaths:
    """Where one training run reads and writes. `run_dir` is the run's folder (--model_dir, the
    same on every worker); `write_dir` is where this worker writes its checkpoints, logs and
    history: the run's folder on the chief, a temporary `scratch` folder elsewhere (removed at
    the end). `backup_source` is the chief's backup, which every worker restores."""
    run_dir: str
    write_dir: str
    checkpoints: str
    backup: str
    backup_source: str
    logs: str
    history_csv: str
    scratch: str | None = None

    @classmethod
    def for_role(cls, run_dir: str, runtime: Runtime) -> "RunPaths":
        chief_backup = os.path.join(run_dir, "backup")
        if runtime.role.is_chief:
            root, scratch, backup = run_dir, None, chief_backup
        else:
            root = scratch = tempfile.mkdtemp(prefix=f"suite-{runtime.role.name}-")
            backup = os.path.join(chief_backup, runtime.role.name)
        os.makedirs(root, exist_ok=True)
        return cls(run_dir=run_dir, write_dir=root, checkpoints=os.path.join(root, "checkpoints"),
                   backup=backup, backup_source=chief_backup, logs=os.path.join(root, "logs"),
                   history_csv=os.path.join(root, "history.csv"), scratch=scratch)

    @property
    def run_checkpoints(self) -> str:
        """The chief's checkpoints folder, which every worker reads."""
        return os.path.join(self.run_dir, "checkpoints")

    def cleanup(self) -> None:
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)


@dataclasses.dataclass
class ExtraState:
    """A task's resume state besides models and optimizers (Task.extra_state and
    load_extra_state): saved with every backup, given back after a restore."""
    get: Callable[[], dict]
    set: Callable[[dict], None]

    @classmethod
    def of(cls, task) -> "ExtraState | None":
        return cls(task.extra_state, task.load_extra_state) if task.has_extra_state() else None


@dataclasses.dataclass
class FitPolicy:
    """What a resumable fit keeps and watches besides its model: the metric best.keras follows
    (`monitor`, `mode`), the logs the non-finite guard checks, the fixed training examples the
    curves' inference-mode numbers come from, the task's extra resume state, and its own
    numbers for each finished epoch (`epoch_metrics(epoch) -> dict`, before best.keras is
    chosen: a metric fit cannot compute, such as a detector's validation mAP)."""
    monitor: str | None = "val_accuracy"
    mode: str = "max"
    watched_losses: tuple[str, ...] = ("loss",)
    training_subset: object = None  # a dataset of fixed training examples, or None
    extra: ExtraState | None = None
    epoch_metrics: Callable[[int], dict] | None = None

    @classmethod
    def of(cls, task, epoch_metrics: Callable[[int], dict] | None = None) -> "FitPolicy":
        metric, mode = task.best_checkpoint
        return cls(metric, mode, tuple(task.watched_losses), task.training_subset,
                   ExtraState.of(task), epoch_metrics)


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


@dataclasses.dataclass
class Resumption:
    """The resume state of one training (fit or loop): where it reads and writes, and from
    which (epoch, step) it goes on."""
    reader: ResumeState
    writer: ResumeState
    epoch: int = 0
    step: int = 0


def resume(config: RuntimeConfig, runtime: Runtime, paths: RunPaths,
           models: dict[str, keras.Model], optimizers: dict | None = None,
           extra: ExtraState | None = None) -> Resumption:
    """Restores the chief's backup into the built models (or, with --resume_from=checkpoint
    and a damaged or missing backup, checkpoints/last.keras), checks that all workers start
    from the same step, and returns where training goes on."""
    checkpoints = EpochCheckpoints(paths.run_checkpoints)
    from_checkpoint_ok = (len(models) == 1 and not optimizers and extra is None
                          and os.path.isfile(checkpoints.last_path)
                          and checkpoints.last_epoch() is not None)

    def ways_forward(what: str) -> str:
        lines = [f"{what}.", f"Nothing under {paths.run_dir} was changed. To go on, either"]
        if from_checkpoint_ok:
            lines.append(f"  - resume from {checkpoints.last_path} (after epoch "
                         f"{checkpoints.last_epoch()}): run the same command with "
                         f"`resume_from=checkpoint` (the damaged backup is moved aside, not "
                         "deleted), or")
        elif len(models) > 1 or optimizers or extra is not None:
            lines.append("  - (this task's resume state holds more than the checkpointed model, "
                         "so checkpoints/last.keras cannot replace it)")
        lines.append("  - start over in another folder: `model_dir=<new folder>`.")
        return "\n".join(lines)

    get_extra, set_extra = (extra.get, extra.set) if extra else (None, None)
    reader = ResumeState(paths.backup_source, models, optimizers, get_extra, set_extra,
                         ways_forward)
    writer = reader if paths.backup == paths.backup_source else ResumeState(
        paths.backup, models, optimizers, get_extra, set_extra, ways_forward)
    use_checkpoint = False
    try:
        restored = reader.restore()
    except DamagedStateError:
        if config.resume_from != "checkpoint" or not from_checkpoint_ok:
            raise
        restored, use_checkpoint = None, True
    if config.resume_from == "checkpoint" and restored is None and from_checkpoint_ok:
        use_checkpoint = True
    elif config.resume_from == "checkpoint" and restored is not None:
        print(f"--resume_from=checkpoint: the backup in {paths.backup_source} is intact, so "
              "training resumes from it.", flush=True)
    if use_checkpoint:
        (model,) = models.values()
        from suite.runtime.backup import build_compiled_optimizer

        build_compiled_optimizer(model)
        model.load_weights(checkpoints.last_path)
        restored = (checkpoints.last_epoch(), 0)
    epoch, step = restored or (0, 0)
    agree_on_start(runtime, epoch, step, paths.backup_source)
    if use_checkpoint:
        if runtime.role.is_chief and reader.exists():
            print(f"The damaged backup was moved to {reader.move_aside()}.", flush=True)
        print(f"Resuming from {checkpoints.last_path}: epoch {epoch + 1}, step 0.", flush=True)
        writer.save(epoch, 0)
    elif epoch or step:
        print(f"Resuming from the backup in {paths.backup_source}: epoch {epoch + 1}, "
              f"step {step}.", flush=True)
    return Resumption(reader, writer, epoch, step)


def outcome_of(gate: EpochGate, stop, writer: ResumeState, paths: RunPaths,
               epochs_done: int) -> TrainOutcome:
    """The outcome after training stopped: diverged, interrupted (state saved) or completed."""
    state = writer.read() or {"epoch": 0, "step": 0}
    if gate.diverged_at is not None:
        e, b = gate.diverged_at
        return TrainOutcome(
            "diverged", state["epoch"],
            f"training diverged: non-finite loss at epoch {e + 1}, step {b + 1}. The last good "
            f"state (epoch {state['epoch']}) is kept in {paths.checkpoints} and {paths.backup}; "
            "lower the learning rate or use `precision=float32` and run again.", exit_code=1)
    if stop.stopped_by is not None:
        return TrainOutcome(
            "interrupted", state["epoch"],
            f"stopped by {stop.stopped_by} at epoch {state['epoch'] + 1}, step "
            f"{state['step']}; the state is saved in {paths.backup}: run the same command "
            "again to resume.", exit_code=stop.exit_code)
    return TrainOutcome("completed", epochs_done)


def fit_resumable(model: keras.Model, train_ds, val_ds, *, epochs: int, steps_per_epoch: int,
                  config: RuntimeConfig, runtime: Runtime, paths: RunPaths,
                  policy: FitPolicy | None = None,
                  callbacks: list[keras.callbacks.Callback] = ()) -> TrainOutcome:
    """Trains `model` (built and compiled in the strategy scope) up to `epochs`.

    Run the same command twice and the second resumes: from the end of the last finished
    epoch after a kill -9, from the exact step after SIGTERM/SIGINT, or not at all when done.
    `policy` says which checkpoint is best, which losses must stay finite, the training subset
    and extra state (FitPolicy); `callbacks` run after the runner's own. The outcome's message,
    if any, is printed.
    """
    outcome = _fit(model, train_ds, val_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
                   config=config, runtime=runtime, paths=paths, policy=policy or FitPolicy(),
                   extra_callbacks=callbacks)
    if outcome.message:
        print(outcome.message, flush=True)
    return outcome


def _fit(model, train_ds, val_ds, *, epochs, steps_per_epoch, config, runtime, paths,
         policy: FitPolicy, extra_callbacks) -> TrainOutcome:
    resumption = resume(config, runtime, paths, {"model": model}, extra=policy.extra)
    epoch, step = resumption.epoch, resumption.step
    if step >= steps_per_epoch:  # stopped on an epoch's last step: that epoch is complete
        epoch, step = epoch + 1, 0
    if epoch >= epochs:
        why = (f"already trained for {epoch} epochs; not training" if epoch
               else "0 epochs to train: evaluating only")
        return TrainOutcome("completed", epoch, why, trained_now=False)
    gate = EpochGate()
    stop = stop_requests_for(runtime)
    monitor, mode = policy.monitor, policy.mode
    if val_ds is None and monitor and monitor.startswith("val_"):
        monitor, mode = "loss", "min"
    backup = ResumableTraining(gate, resumption.writer, stop, config.backup_every_steps)
    callbacks = [
        NonFiniteGuard(gate, policy.watched_losses),  # first: flag a non-finite step before saving
        *([TrainingSetEvaluation(gate, policy.training_subset)]
          if policy.training_subset is not None else []),
        *([EpochValidation(gate, val_ds)] if val_ds is not None else []),
        *([EpochMetrics(gate, policy.epoch_metrics)] if policy.epoch_metrics else []),
        EpochRecords(gate, HistoryLog(paths.history_csv),
                     EpochCheckpoints(paths.checkpoints, monitor, mode,
                                      config.keep_checkpoints_every)),
        EpochTensorBoard(gate, paths.logs, profile_batch=0),
        *extra_callbacks,
        backup,  # last: the backup names only epochs whose records are written
    ]

    def fit(first, last, steps):
        model.fit(train_ds, initial_epoch=first, epochs=last, steps_per_epoch=steps,
                  callbacks=callbacks, shuffle=False,  # tf.data shuffles
                  verbose=progress_verbosity(runtime))

    with stop:
        if step:  # finish the epoch a signal interrupted, then carry on normally
            backup.start_partial_epoch(step)
            fit(epoch, epoch + 1, steps_per_epoch - step)
            epoch += 1
        if not (gate.closed or stop.stopped_by) and epoch < epochs:
            fit(epoch, epochs, steps_per_epoch)
        if not gate.closed:
            stop.agree_at_end()
    return outcome_of(gate, stop, resumption.writer, paths, epochs)


def build_in_scope(runtime: Runtime, build: Callable[[], keras.Model]) -> keras.Model:
    with runtime.strategy.scope():
        return build()
