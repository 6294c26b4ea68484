"""What a Task sees of the runner while it runs: folders, models, and the ways to train."""
from __future__ import annotations

import os

from suite.runtime.config import RuntimeConfig


class Run:
    """One run of a task: `run_dir` is its folder (--model_dir, the same on every worker);
    `output_path` is where this worker writes (the run's folder on the chief only)."""

    def __init__(self, task, config: RuntimeConfig, runtime, paths):
        self.task, self.config, self.runtime, self.paths = task, config, runtime, paths
        self.models: dict = {}
        self.served = None  # what is exported, once training is done

    @property
    def model(self):
        """The primary model: the first the task built."""
        return next(iter(self.models.values()))

    @property
    def is_chief(self) -> bool:
        return self.runtime.role.is_chief

    @property
    def run_dir(self) -> str:
        return self.paths.run_dir

    @property
    def strategy(self):
        return self.runtime.strategy

    def output_path(self, name: str) -> str:
        """Where a figure or file named `name` goes: the run's folder on the chief, the
        worker's scratch folder elsewhere."""
        return os.path.join(self.paths.write_dir, name)

    def fit(self, model, train_data, validation_data, *, epochs: int, steps_per_epoch: int,
            subdir: str | None = None, callbacks=(), title: str | None = None):
        """The resumable fit of `model`; `subdir` gives it a folder of its own (an ensemble
        member's). Draws its learning curves when it completes."""
        from suite.runtime.training import FitPolicy, RunPaths, fit_resumable

        paths = self.paths if subdir is None else RunPaths.for_role(
            os.path.join(self.run_dir, subdir), self.runtime)
        try:
            outcome = fit_resumable(
                model, train_data, validation_data, epochs=epochs,
                steps_per_epoch=steps_per_epoch, config=self.config, runtime=self.runtime,
                paths=paths, callbacks=list(callbacks),
                policy=FitPolicy.of(self.task, lambda epoch: self.task.epoch_metrics(self, epoch)))
            self.finished_training(outcome, paths, title or f"{model.name} ({self.task.name})")
        finally:
            if subdir is not None:
                paths.cleanup()
        return outcome

    def loop(self, total_steps: int, steps_per_epoch: int, optimizers=None):
        """A custom training loop with the runner's resume, stops and records
        (suite.runtime.loop.TrainingLoop)."""
        from suite.runtime.loop import TrainingLoop

        return TrainingLoop(self, total_steps, steps_per_epoch, optimizers)

    def finished_training(self, outcome, paths, title: str) -> None:
        """Called by each fit and loop: draws the learning curves of a completed training."""
        if outcome.status != "completed" or not self.is_chief or not os.path.exists(
                paths.history_csv):
            return
        from suite.viz import plots

        plots.plot_learning_curves(plots.read_history(paths.history_csv),
                                   os.path.join(paths.write_dir, "learning_curves.png"),
                                   title=title, validation_label=self.task.validation_label)
