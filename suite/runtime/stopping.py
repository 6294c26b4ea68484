"""Stop requests: SIGTERM/SIGINT become "stop after this step", agreed by all workers.

Any training loop polls one StopRequests object after each step: `fit` through
suite.runtime.callbacks.ResumableTraining, a task's own loop through suite.runtime.loop. So both
get the same exact-step resume, exit codes (143 for SIGTERM, 130 for SIGINT: "retry me" to
schedulers) and multi-worker behaviour.

Why workers must agree. Under MultiWorkerMirroredStrategy every step is a collective op. A
signal reaches the workers at different steps (or only one of them: a scheduler preempting one
node); measured here (2 workers on 127.0.0.1, the MNIST app): a SIGTERM to worker 1 alone made
it stop after step 7 and start validating while worker 0 ran step 8, the collectives
mismatched and worker 0 crashed. So a signal only records a request, and every
`check_every_steps` steps all workers add up their requests with one all-reduce of two floats
(~2 ms on loopback here): if any worker asked, all stop after that same step.
"""
from __future__ import annotations

import signal
import threading

EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}  # 128 + signal number
# Exit codes after which running the same command again resumes: 143 (stopped by SIGTERM, state
# saved), 138 (a lost peer, last backup intact: suite.runtime.peers) and 137 (SIGKILL: resumes
# from the last backup). What launch/slurm.sbatch requeues (143, 138), launch.local restarts
# (--max_restarts) and the Kubernetes manifests of launch.k8s retry (with 130).
EXIT_LOST_PEER = 138  # 128 + SIGUSR1: no signal a scheduler sends gives it
RETRYABLE_EXIT_CODES = (137, EXIT_LOST_PEER, 143)
_SIGNALS = ("SIGTERM", "SIGINT")  # SIGTERM wins when both were asked for: it is the scheduler's


class WorkerSum:
    """Sums a small float vector over all replicas of all workers; the same result everywhere.

    A collective: every worker must call it at the same points, with the same length.
    """

    def __init__(self, strategy):
        import tensorflow as tf

        self._strategy = strategy
        self._tf = tf
        self._sum = tf.function(self._sum_over_replicas)

    def _sum_over_replicas(self, local):
        tf = self._tf
        # A per-replica value: a plain tensor would be taken as already equal everywhere.
        per_replica = self._strategy.experimental_distribute_values_from_function(lambda _: local)
        return self._strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    def __call__(self, values) -> list[float]:
        tf = self._tf
        return [float(v) for v in self._sum(tf.constant(values, tf.float64)).numpy()]


class StopRequests:
    """Records SIGTERM/SIGINT while installed; `agreed()` says whether to stop now.

    With `worker_sum` (a WorkerSum, for several workers) `agreed()` is a collective that every
    worker must call at the same steps; without, it is the local request. A second Ctrl-C
    raises KeyboardInterrupt at once: the user really wants out.
    """

    def __init__(self, worker_sum: WorkerSum | None = None, check_every_steps: int = 1):
        if check_every_steps < 1:
            raise ValueError(f"check_every_steps={check_every_steps} must be >= 1")
        self.worker_sum = worker_sum
        self.check_every_steps = check_every_steps
        self.requested: str | None = None  # this process's own signal
        self.stopped_by: str | None = None  # the agreed one, once acted on
        self._previous = {}

    @property
    def several_workers(self) -> bool:
        return self.worker_sum is not None

    # -- signals ------------------------------------------------------------------------------
    def _on_signal(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        whom = "all workers" if self.several_workers else "training"
        print(f"\n{self.requested} received: {whom} will save after this step, then exit "
              "(run the same command again to resume).", flush=True)

    def install(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread() and not self._previous:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> "StopRequests":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    # -- deciding -----------------------------------------------------------------------------
    def due(self, steps_done: int) -> bool:
        """Whether step count `steps_done` is one at which requests are checked."""
        return steps_done % self.check_every_steps == 0

    def agreed(self) -> str | None:
        """The signal to stop for now (any worker's), or None; a collective with several."""
        if self.worker_sum is None:
            return self.requested
        totals = self.worker_sum([float(self.requested == name) for name in _SIGNALS])
        agreed = next((name for name, count in zip(_SIGNALS, totals) if count > 0), None)
        if agreed is not None and self.requested is None:
            print(f"\nanother worker received {agreed}: saving after this step, then exiting.",
                  flush=True)
        return agreed

    def agree_at_end(self) -> None:
        """After training's last step: a signal that came after the last check (the last step's
        tail, the last epoch's end-of-epoch work) still ends the run with its code, training
        saved, instead of being swallowed while evaluation outlasts a scheduler's grace period
        (a Slurm time limit then ends the job unrequeued); the rerun finds training done and
        evaluates. A collective with several workers: every worker must get here."""
        if self.stopped_by is None:
            self.stopped_by = self.agreed()

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.stopped_by or "", 0)


def stop_requests_for(runtime, check_every_steps: int = 1) -> StopRequests:
    """One worker: local requests. Several: requests agreed over the runtime's strategy."""
    several = runtime.role.num_workers > 1
    return StopRequests(WorkerSum(runtime.strategy) if several else None, check_every_steps)


def agree_on_start(runtime, epoch: int, step: int, source: str) -> None:
    """With several workers, fails unless every worker resumes from the same (epoch, step).

    Every worker restores the chief's backup, so a mismatch means the model_dir is not shared.
    Equal on all workers iff N * sum(x^2) == sum(x)^2 (Cauchy-Schwarz); every worker sees the
    same sums, so all take the same decision and none is left waiting.
    """
    if runtime.role.num_workers <= 1:
        return
    n, e, e2, s, s2 = WorkerSum(runtime.strategy)([1, epoch, epoch * epoch, step, step * step])
    if n * e2 != e * e or n * s2 != s * s:
        raise RuntimeError(
            f"the workers found different training backups to resume from (this worker: epoch "
            f"{epoch}, step {step} in {source}; the mean over workers: epoch {e / n:g}, step "
            f"{s / n:g}). Every worker reads the chief's backup there, so `model_dir` must be on "
            "storage all workers share (NFS, a ReadWriteMany volume).")


def finish_together(runtime) -> None:
    """With several workers, returns once every worker has got here: the non-chiefs wait while
    the chief alone exports and writes its results, so all tasks of a job exit within moments
    of each other. A launcher can then end a job whose task went silent soon after the first
    exit (launch/slurm.sbatch: `srun --wait`) without cutting a chief's export short."""
    if runtime.role.num_workers > 1:
        WorkerSum(runtime.strategy)([1.0])
