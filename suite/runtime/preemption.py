"""Backups under multi-worker training: every worker stops after, and resumes from, the same step.

`TrainingBackup` suits one process. Under MultiWorkerMirroredStrategy every training step is a
collective op and every worker holds its own copy of the weights, so two more things must hold:

1. All workers stop after the same step. `TrainingBackup` stops after the step during which its
   own process got SIGTERM/SIGINT. Measured here (2 workers on 127.0.0.1, the MNIST app): a
   SIGTERM to worker 1 alone made it stop after step 7 and start validation while worker 0 ran
   step 8; the collectives mismatched ("Shape mismatch in the collective instance"), worker 0
   crashed, and the two backups said step 5 and step 7. A SIGTERM sent to all workers at once
   (launch.local forwards it) usually lands in the same step, but nothing makes it.
   Here a signal only records a request; every `check_every_steps` steps all workers add up
   their requests with one all-reduce of two floats (~2 ms on loopback here) and, if any worker
   asked, all save the same (epoch, step) and leave `fit` together.
2. All workers resume from the same weights. Each worker saves its own backup, but after a
   kill -9 they can differ: nothing collective separates the end of an epoch's validation from
   each worker's own backup write, so a worker killed in between leaves the chief's backup one
   epoch ahead of its own. So every worker
   restores the chief's backup, as keras 2's BackupAndRestore did, and the workers check with
   one all-reduce that they start from the same (epoch, step): a model_dir that is not shared by
   all workers fails there with a clear error instead of training divergent copies.
"""
from __future__ import annotations

import os
import signal

import keras
import tensorflow as tf

from suite.runtime.callbacks import TrainingBackup

_SIGNALS = ("SIGTERM", "SIGINT")  # SIGTERM wins when both were asked for: it is the scheduler's


class WorkerSum:
    """Sums a small float vector over all replicas of all workers; the same result everywhere.

    A collective: every worker must call it at the same points, with the same length.
    """

    def __init__(self, strategy: tf.distribute.Strategy):
        self._strategy = strategy
        self._sum = tf.function(self._sum_over_replicas)

    def _sum_over_replicas(self, local: tf.Tensor) -> tf.Tensor:
        # A per-replica value: a plain tensor would be taken as already equal everywhere.
        per_replica = self._strategy.experimental_distribute_values_from_function(lambda _: local)
        return self._strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def __call__(self, values) -> list[float]:
        return [float(v) for v in self._sum(tf.constant(values, tf.float64)).numpy()]


class MultiWorkerBackup(TrainingBackup):
    """TrainingBackup for MultiWorkerMirroredStrategy: joint stops, one restore source.

    `backup_dir` is where this worker writes; `restore_dir` is the chief's backup, which every
    worker restores (it must be on storage all workers share: the model_dir already must be).
    A stop request that arrives after the last check of a run is not acted on: training has
    finished anyway.
    """

    def __init__(self, backup_dir: str, restore_dir: str, strategy: tf.distribute.Strategy,
                 every_steps: int = 0, check_every_steps: int = 1):
        if check_every_steps < 1:
            raise ValueError(f"check_every_steps={check_every_steps} must be >= 1")
        super().__init__(backup_dir, every_steps=every_steps)
        self.restore_dir = restore_dir
        self.check_every_steps = check_every_steps
        self._strategy = strategy
        self._sum = WorkerSum(strategy)
        self._requested: str | None = None
        self._stop_after_epoch: str | None = None

    # -- resume: the chief's state, the same on every worker --------------------------------
    def restore(self, model: keras.Model) -> tuple[int, int]:
        with self._strategy.scope():  # restore() may build the optimizer: its variables too
            if self.restore_dir == self.backup_dir:
                epoch, step = super().restore(model)
            else:
                epoch, step = TrainingBackup(self.restore_dir).restore(model)
        # Equal on all replicas iff N * sum(x^2) == sum(x)^2 (Cauchy-Schwarz); every worker sees
        # the same sums, so all take the same decision and none is left waiting.
        n, e, e2, s, s2 = self._sum([1, epoch, epoch * epoch, step, step * step])
        if n * e2 != e * e or n * s2 != s * s:
            raise RuntimeError(
                f"the workers found different training backups to resume from (this worker: "
                f"epoch {epoch}, step {step} in {self.restore_dir}; the mean over workers: epoch "
                f"{e / n:g}, step {s / n:g}). Every worker reads the chief's backup there, so "
                "--model_dir must be on storage all workers share (NFS, a ReadWriteMany volume).")
        return epoch, step

    # -- stop: requested locally, decided jointly ---------------------------------------------
    def _request_stop(self, signum, frame):
        if self._requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: out now, whatever the other workers do
        self._requested = signal.Signals(signum).name
        print(f"\n{self._requested} received: all workers will save after the same step, then "
              "exit (run the same command again to resume).", flush=True)

    def agreed_stop(self) -> str | None:
        """The signal any worker asked to stop for, or None; a collective."""
        totals = self._sum([float(self._requested == name) for name in _SIGNALS])
        return next((name for name, count in zip(_SIGNALS, totals) if count > 0), None)

    def on_train_batch_end(self, batch, logs=None):
        if self.interrupted_by is None and self._stop_after_epoch is None and (
                (batch + 1) % self.check_every_steps == 0):
            agreed = self.agreed_stop()
            if agreed is not None and self._requested is None:
                print(f"\nanother worker received {agreed}: saving after this step, then exiting.",
                      flush=True)
            if agreed is not None and batch + 1 == self.params.get("steps"):
                # The epoch's last step: end the epoch as usual (validation, history,
                # checkpoint, then the backup at (epoch + 1, 0)) and stop after it. A backup
                # at (epoch, last step) would make the rerun fit 0 steps, which Keras reads
                # as "until the data runs out": forever, on a repeating dataset.
                self._stop_after_epoch = agreed
                self.model.stop_training = True
            else:
                self.interrupted_by = agreed
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if self._stop_after_epoch is not None:
            self.interrupted_by = self._stop_after_epoch


def training_backup_for(runtime, backup_dir: str, every_steps: int = 0,
                        check_every_steps: int = 1) -> TrainingBackup:
    """The backup callback for `runtime` (a suite.runtime.devices.Runtime).

    One worker: TrainingBackup. Several: MultiWorkerBackup restoring the chief's backup, which
    RunPaths.for_role puts at <model_dir>/backup, one level above a non-chief's
    <model_dir>/backup/<worker name>. `check_every_steps`: see bench/SCALING.md for its cost.
    """
    if runtime.role.num_workers <= 1:
        return TrainingBackup(backup_dir, every_steps=every_steps)
    if runtime.role.is_chief:
        restore_dir = backup_dir
    else:
        parent, name = os.path.split(os.path.normpath(backup_dir))
        if name != runtime.role.name:
            raise ValueError(f"a non-chief backup_dir must end in /{runtime.role.name} (RunPaths."
                             f"for_role's layout) to find the chief's backup; got {backup_dir}")
        restore_dir = parent
    return MultiWorkerBackup(backup_dir, restore_dir, runtime.strategy, every_steps=every_steps,
                             check_every_steps=check_every_steps)
