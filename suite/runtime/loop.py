"""A task's own training loop, with everything `fit` gets from the runner.

For training that is not one `model.fit` (an environment loop, an optimised image):

    loop = run.loop(total_steps=..., steps_per_epoch=..., optimizers={"q": optimizer})
    for step in loop:               # resumes at the saved step; stops when asked
        loss = self.learn(...)
        loop.log(loss=loss)         # averaged per epoch into history.csv and TensorBoard
    return loop.outcome

Each step is one iteration; an "epoch" is `steps_per_epoch` of them (what a task evaluates,
logs and checkpoints by). At the end of each epoch the loop asks the task for its epoch
metrics (`Task.epoch_metrics`), then writes the history row, TensorBoard scalars and
checkpoints/{last,best}.keras of the primary model, then the backup: every model, optimizer
and the task's extra state (`Task.extra_state`), as for fit. After each step it polls the stop
requests (a collective with several workers, so every worker must run the same steps) and, on
a signal, saves that exact step and ends with exit code 143/130; the rerun continues from it. A
signal after the last step also ends with its code (training saved, nothing left to resume).
The backup holds the loop's absolute step, its epoch length and a cut epoch's running sums: a
rerun whose epoch length differs is refused (its epochs, history rows and checkpoints would
shift), naming the task's `epoch_option`.
A non-finite value of a watched loss ends the loop without saving that epoch.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from suite.runtime.callbacks import EpochGate
from suite.runtime.records import EpochCheckpoints, HistoryLog, finite
from suite.runtime.stopping import stop_requests_for
from suite.runtime.training import ExtraState, TrainOutcome, outcome_of, resume


class TrainingLoop:
    def __init__(self, run, total_steps: int, steps_per_epoch: int, optimizers=None):
        if steps_per_epoch < 1 or total_steps < 0:
            raise ValueError(f"steps_per_epoch={steps_per_epoch} must be >= 1 and "
                             f"total_steps={total_steps} >= 0")
        self.run = run
        self.total_steps, self.steps_per_epoch = total_steps, steps_per_epoch
        self.optimizers = optimizers or {}
        self.outcome: TrainOutcome | None = None
        self.step = 0  # steps done so far, over all epochs
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._gate = EpochGate()
        self._epoch_started = time.monotonic()
        self._scalars = None

    @property
    def epoch(self) -> int:
        return self.step // self.steps_per_epoch

    def log(self, **scalars) -> None:
        """Adds this step's scalars (floats) to the epoch's means; a non-finite watched loss
        ends the loop after this step."""
        for name, value in scalars.items():
            value = float(value)
            self._sums[name] = self._sums.get(name, 0.0) + value
            self._counts[name] = self._counts.get(name, 0) + 1
        if self._gate.diverged_at is None and not finite(scalars, self.run.task.watched_losses):
            self._gate.diverged_at = (self.epoch, self.step % self.steps_per_epoch)

    def scalars(self, step: int, **values) -> None:
        """TensorBoard scalars at `step` (e.g. an episode's return at its environment step),
        besides the per-epoch means; written by the chief only."""
        if self._scalars is not None:
            self._scalars.write(step, values, prefix="", flush=False)

    def __iter__(self):
        run, task = self.run, self.run.task
        paths = run.paths
        self._saved = {}
        resumption = resume(run.config, run.runtime, paths, run.models, self.optimizers,
                            ExtraState(self._extra_state, self._load_extra_state))
        saved = self._saved  # absent from backups written before the loop saved its own
        self.step = saved.get("step", resumption.epoch * self.steps_per_epoch + resumption.step)
        if self.step >= self.total_steps:
            self.outcome = TrainOutcome("completed", self.epoch, trained_now=False,
                                        message=f"already trained for {self.step} steps; not "
                                                "training")
            print(self.outcome.message, flush=True)
            run.finished_training(self.outcome, paths, "")
            return
        earlier = saved.get("steps_per_epoch", self.steps_per_epoch)
        if earlier != self.steps_per_epoch:
            option = task.epoch_option
            raise ValueError(
                f"{paths.backup_source} was saved by a run with epochs of {earlier} steps; this "
                f"command's are {self.steps_per_epoch} steps (`{option}` changed). Resuming "
                f"would shift its epochs, history rows and checkpoints: rerun with the "
                f"`{option}` value it was started with (its flags.txt), or use a new "
                "`model_dir`.")
        self._sums, self._counts = dict(saved.get("sums", {})), dict(saved.get("counts", {}))
        history = HistoryLog(paths.history_csv)
        checkpoints = EpochCheckpoints(paths.checkpoints, *task.best_checkpoint,
                                       run.config.keep_checkpoints_every)
        stop = stop_requests_for(run.runtime)
        writer = resumption.writer
        scalars = self._scalars = (_ScalarWriter(paths.logs) if run.runtime.role.is_chief
                                   else None)
        with stop:
            while self.step < self.total_steps:
                yield self.step
                self.step += 1
                if self._gate.diverged_at is not None:
                    break
                in_epoch = self.step % self.steps_per_epoch
                if in_epoch == 0 or self.step == self.total_steps:
                    self._end_epoch(history, checkpoints, scalars, writer)
                elif run.config.backup_every_steps and (
                        self.step % run.config.backup_every_steps == 0):
                    writer.save(self.epoch, in_epoch)
                if self.step < self.total_steps and stop.due(self.step):
                    agreed = stop.agreed()  # a collective with several workers
                    if agreed is not None:
                        stop.stopped_by = agreed
                        if in_epoch and self.step < self.total_steps:
                            writer.save(self.epoch, in_epoch)
                        break
            if self._gate.diverged_at is None:
                stop.agree_at_end()
        if scalars is not None:
            scalars.close()
        self.outcome = outcome_of(self._gate, stop, writer, paths,
                                  math.ceil(self.total_steps / self.steps_per_epoch))
        if self.outcome.message:
            print(self.outcome.message, flush=True)
        run.finished_training(self.outcome, paths, getattr(task, "title", None)
                              or f"{run.model.name} ({task.name})")

    def _extra_state(self) -> dict:
        """The task's extra state and the loop's own: the absolute step and epoch length (so a
        rerun with another epoch length is caught) and a cut epoch's sums (so its history row
        averages every step of it, before and after the resume)."""
        return {**(self.run.task.extra_state() or {}), "training_loop": {
            "step": self.step, "steps_per_epoch": self.steps_per_epoch,
            "sums": self._sums, "counts": self._counts}}

    def _load_extra_state(self, state: dict) -> None:
        self._saved = state.pop("training_loop", None) or {}
        self.run.task.load_extra_state(state)

    def _end_epoch(self, history, checkpoints, scalars, writer) -> None:
        finished = (self.step - 1) // self.steps_per_epoch  # the epoch that just ended
        # Sorted, as history.csv's columns: the line reads the same every epoch, whichever
        # number an epoch logged first.
        logs = {name: self._sums[name] / self._counts[name] for name in sorted(self._sums)}
        self._sums, self._counts = {}, {}
        logs.update(self.run.task.epoch_metrics(self.run, finished) or {})
        logs["steps"] = self.step
        logs["seconds"] = round(time.monotonic() - self._epoch_started, 3)
        self._epoch_started = time.monotonic()
        history.append(finished, logs)
        checkpoints.save(self.run.model, finished, logs)
        if scalars is not None:
            scalars.write(self.step, logs)
        state_epoch, state_step = divmod(self.step, self.steps_per_epoch)
        writer.save(state_epoch, state_step)
        if self.run.is_chief:
                print(f"epoch {finished + 1}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in logs.items()
                if isinstance(v, (int, float, np.floating))), flush=True)


class _ScalarWriter:
    """TensorBoard scalars: train/<name>, and validation/<name> for val_* keys."""

    def __init__(self, logdir: str):
        import tensorflow as tf

        self._tf = tf
        self._writers = {split: tf.summary.create_file_writer(os.path.join(logdir, split))
                         for split in ("train", "validation")}

    def write(self, step: int, logs: dict, prefix: str = "epoch_", flush: bool = True) -> None:
        for name, value in logs.items():
            if not isinstance(value, (int, float, np.floating, np.integer)):
                continue
            split = "validation" if name.startswith("val_") else "train"
            with self._writers[split].as_default():
                self._tf.summary.scalar(f"{prefix}{name.removeprefix('val_')}", float(value),
                                        step=step)
        if flush:
            for writer in self._writers.values():
                writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
