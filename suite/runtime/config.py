"""The configs every app shares, as groups of its own config (suite.config.group).

- RuntimeConfig: where the run lives and how it runs (model_dir, strategy, precision, seed,
  export and backup settings); every app has it.
- ScheduleConfig: epochs, steps_per_epoch, batch_size, for apps that train by epochs.
- OptimizerConfig: the optimizer and its learning-rate schedule; a GAN has two, prefixed
  (`group(OptimizerConfig, prefix="g_", of="the generator")`: --g_learning_rate).

An app's config sets its own defaults where it includes them
(`group(ScheduleConfig, epochs=20, batch_size=64)`); the fields below hold the rest.
"""
from __future__ import annotations

import dataclasses
import os

from suite.config import Config, option, rule

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
PRECISIONS = ("auto", "fastest", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "rmsprop")
LR_SCHEDULES = ("constant", "step", "exponential", "cosine")
RESUME_SOURCES = ("backup", "checkpoint")
VALIDATIONS = ("holdout", "test")


def _not_empty(path: str) -> None:
    if not path:
        raise ValueError("must not be empty")


@dataclasses.dataclass
class RuntimeConfig(Config):
    model_dir: str = option(
        "runs/run", "Where checkpoints, backups, TensorBoard logs, figures, results and exports "
        "go. Running the same command again resumes from here; one run at a time per folder.",
        check=_not_empty)
    seed: int = option(0, "Seed for weights, dropout, shuffling, augmentation and any other "
                       "randomness of the run.")
    deterministic: bool = option(False, "Make TensorFlow ops deterministic (same seed, same "
                                 "result; slower).")
    strategy: str = option(
        "auto", "tf.distribute strategy: auto (multi_worker inside a cluster of several tasks, "
        "i.e. TF_CONFIG or a Slurm step; mirrored with >1 GPU; else the default), one_device, "
        "mirrored, multi_worker (see launch/).", choices=STRATEGIES)
    precision: str = option(
        "auto", "Compute precision: auto = mixed_float16 on CUDA GPUs with compute capability "
        ">= 7.0, float32 elsewhere (mixed_float16 is 4-7x slower on CPUs); fastest = the same, "
        "but mixed_bfloat16 on CPUs with bfloat16 arithmetic (AVX512_BF16 or AMX: about 2x "
        "float32's speed there).", choices=PRECISIONS)
    export: bool = option(True, "Export a SavedModel for TF Serving after training.")
    export_dir: str | None = option(None, "Export base folder; default <model_dir>/export.")
    backup_every_steps: int = option(0, "Also back up the training state every N steps (0: at "
                                     "epoch ends only).", bounds=">= 0")
    keep_checkpoints_every: int = option(
        0, "Also keep checkpoints/epoch-NNN.keras (and .json: when it ended, its logs) every N "
        "epochs, beside last.keras and best.keras (0: none), e.g. to draw a held-out curve after "
        "the run (bench.detector_curve) without choosing anything on it.", bounds=">= 0")
    resume_from: str = option(
        "backup", "backup: resume from <model_dir>/backup (exact step); checkpoint: resume from "
        "checkpoints/last.keras (end of its epoch), for when the backup is damaged; the damaged "
        "backup is moved aside, not deleted.", choices=RESUME_SOURCES)
    peer_timeout_s: int = option(
        0, "Multi-worker runs: seconds a worker may miss the coordination service's heartbeats "
        "before the cluster counts it as lost and every worker stops (the rerun resumes). 0 "
        "keeps TensorFlow's 10 s; raise it on shared or overloaded machines, where a starved "
        "but healthy worker can miss 10 s of heartbeats.", bounds=">= 0",
        message="must be >= 0 (0: TensorFlow's default)")

    @property
    def resolved_export_dir(self) -> str:
        return self.export_dir or os.path.join(self.model_dir, "export")


def validation_option(holdout: str):
    """An app's `validation` option: which data chooses its checkpoint. `holdout` names the
    training examples it holds out for that."""
    return option(
        "holdout", f"What chooses the best checkpoint, the model evaluated, exported and "
        f"reported: holdout = {holdout}, and the test set is evaluated once, at the end, on the "
        "model they chose; test = the test set every epoch, as the book does, and the last "
        "epoch's model is reported (its curves and best.keras are then chosen on the test data: "
        "only to reproduce runs made that way).", choices=VALIDATIONS)


@dataclasses.dataclass
class ScheduleConfig(Config):
    epochs: int = option(20, "Training epochs; 0 evaluates (and exports) only.", bounds=">= 0")
    steps_per_epoch: int = option(0, "Steps per epoch; 0 means one pass over the training set.",
                                  bounds=">= 0")
    batch_size: int = option(100, "Global batch size, split evenly over all replicas and "
                             "workers.", bounds=">= 1", message="must be a positive integer")


@dataclasses.dataclass
class OptimizerConfig(Config):
    """{of} in the help names what the optimizer trains when an app has several."""
    optimizer: str = option("adam", "Optimizer{of}; 'momentum' is SGD with `momentum`, 'adamw' "
                            "uses `weight_decay`.", choices=OPTIMIZERS)
    learning_rate: float = option(1e-3, "Initial (peak) learning rate{of}.", bounds="> 0")
    momentum: float = option(0.9, "Momentum{of} for the 'momentum' and 'rmsprop' optimizers.",
                             bounds="[0, 1)")
    beta_1: float = option(0.9, "Adam's beta_1{of} (first-moment decay).", bounds="[0, 1)")
    weight_decay: float = option(0.0, "Decoupled weight decay{of}, applied by the optimizer (0 "
                                 "disables).", bounds=">= 0")
    lr_schedule: str = option(
        "constant", "Learning-rate decay{of}: constant; step (multiply by `lr_decay_factor` at "
        "each epoch in `lr_decay_epochs`); exponential (by the factor every epoch); cosine (to 0 "
        "over all epochs).", choices=LR_SCHEDULES)
    lr_decay_epochs: tuple[int, ...] = option(
        (), "Epochs at which the 'step' schedule decays, counted from the run's start (warm-up "
        "included), e.g. 10,15.", bounds=">= 1",
        message="must be a comma-separated list of positive epoch numbers, e.g. 10,15")
    lr_decay_factor: float = option(0.1, "Multiplier per decay (step) or per epoch "
                                    "(exponential).", bounds="(0, 1]")
    warmup_epochs: int = option(0, "Linear learning-rate warm-up epochs before the schedule.",
                                bounds=">= 0")
    clipnorm: float = option(0.0, "Clip the gradients{of} to this global L2 norm (all weights "
                             "together; 0: no clipping).", bounds=">= 0")

    def __post_init__(self):
        super().__post_init__()
        self.lr_decay_epochs = tuple(sorted(self.lr_decay_epochs))

    @rule("lr_schedule", "lr_decay_epochs")
    def _step_needs_epochs(lr_schedule, lr_decay_epochs):
        if lr_schedule == "step" and not lr_decay_epochs:
            return ("`lr_schedule=step` needs `lr_decay_epochs`, e.g. "
                    "`lr_decay_epochs=10,15`")

    @rule("lr_decay_epochs", "warmup_epochs")
    def _decay_after_warmup(lr_decay_epochs, warmup_epochs):
        if any(e <= warmup_epochs for e in lr_decay_epochs):
            return "`lr_decay_epochs` must all come after `warmup_epochs`"
