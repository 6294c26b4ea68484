"""Flags every app shares, their validators, and the RuntimeConfig built from them.

Apps call `define_common_flags()` at import, add their own flags, and turn the parsed flags
into a `RuntimeConfig` with `runtime_config_from_flags()`; the library below takes the config,
never the global FLAGS, so tests build configs directly.
"""
from __future__ import annotations

import dataclasses
import os

from absl import flags

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "rmsprop")
LR_SCHEDULES = ("constant", "step", "exponential", "cosine")


@dataclasses.dataclass
class RuntimeConfig:
    model_dir: str
    data_dir: str | None = None
    batch_size: int = 100
    epochs: int = 20
    steps_per_epoch: int = 0  # 0: one pass over the training set
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_decay_epochs: tuple[int, ...] = ()
    lr_decay_factor: float = 0.1
    warmup_epochs: int = 0
    seed: int = 0
    deterministic: bool = False
    strategy: str = "auto"
    precision: str = "auto"
    export: bool = True
    export_dir: str | None = None  # default <model_dir>/export
    backup_every_steps: int = 0  # 0: back up at the end of each epoch only

    @property
    def resolved_export_dir(self) -> str:
        return self.export_dir or os.path.join(self.model_dir, "export")


def define_common_flags(default_model_dir: str, default_epochs: int = 20,
                        default_batch_size: int = 100, default_learning_rate: float = 1e-3) -> None:
    """Defines the shared flags (once per process) with an app's defaults."""
    if "model_dir" in flags.FLAGS:
        return
    flags.DEFINE_string("model_dir", default_model_dir,
                        "Where checkpoints, backups, TensorBoard logs, figures and exports go. "
                        "Running the same command again resumes from here.")
    flags.DEFINE_string("data_dir", None,
                        "Folder with the dataset's original files for offline use; "
                        "unset: download through tensorflow-datasets.")
    flags.DEFINE_integer("batch_size", default_batch_size,
                         "Global batch size, split evenly over all replicas and workers.")
    flags.DEFINE_integer("epochs", default_epochs, "Training epochs; 0 evaluates (and exports) only.")
    flags.DEFINE_integer("steps_per_epoch", 0,
                         "Steps per epoch; 0 means one pass over the training set.")
    flags.DEFINE_enum("optimizer", "adam", OPTIMIZERS,
                      "Optimizer; 'momentum' is SGD with --momentum, 'adamw' uses --weight_decay.")
    flags.DEFINE_float("learning_rate", default_learning_rate, "Initial (peak) learning rate.")
    flags.DEFINE_float("momentum", 0.9, "Momentum for the 'momentum' and 'rmsprop' optimizers.")
    flags.DEFINE_float("weight_decay", 0.0,
                       "Decoupled weight decay applied by the optimizer (0 disables).")
    flags.DEFINE_enum("lr_schedule", "constant", LR_SCHEDULES,
                      "Learning-rate decay: constant; step (multiply by --lr_decay_factor at each "
                      "epoch in --lr_decay_epochs); exponential (by --lr_decay_factor every "
                      "epoch); cosine (to 0 over all epochs).")
    flags.DEFINE_list("lr_decay_epochs", [], "Epochs at which the 'step' schedule decays, e.g. 10,15.")
    flags.DEFINE_float("lr_decay_factor", 0.1, "Multiplier per decay (step) or per epoch (exponential).")
    flags.DEFINE_integer("warmup_epochs", 0, "Linear learning-rate warm-up epochs before the schedule.")
    flags.DEFINE_integer("seed", 0, "Seed for weights, dropout, shuffling and augmentation.")
    flags.DEFINE_boolean("deterministic", False,
                         "Make TensorFlow ops deterministic (same seed, same result; slower).")
    flags.DEFINE_enum("strategy", "auto", STRATEGIES,
                      "tf.distribute strategy: auto (mirrored when >1 GPU), one_device, mirrored, "
                      "multi_worker (TF_CONFIG or Slurm; see launch/).")
    flags.DEFINE_enum("precision", "auto", PRECISIONS,
                      "Compute precision: auto = mixed_float16 on CUDA GPUs with compute capability "
                      ">= 7.0, float32 elsewhere (mixed_float16 is 4-7x slower on CPUs).")
    flags.DEFINE_boolean("export", True, "Export a SavedModel for TF Serving after training.")
    flags.DEFINE_string("export_dir", None, "Export base folder; default <model_dir>/export.")
    flags.DEFINE_integer("backup_every_steps", 0,
                         "Also back up the training state every N steps (0: at epoch ends only).")

    flags.register_validator("batch_size", lambda v: v > 0, "--batch_size must be a positive integer")
    flags.register_validator("epochs", lambda v: v >= 0, "--epochs must be >= 0")
    flags.register_validator("steps_per_epoch", lambda v: v >= 0, "--steps_per_epoch must be >= 0")
    flags.register_validator("learning_rate", lambda v: v > 0, "--learning_rate must be > 0")
    flags.register_validator("momentum", lambda v: 0 <= v < 1, "--momentum must be in [0, 1)")
    flags.register_validator("weight_decay", lambda v: v >= 0, "--weight_decay must be >= 0")
    flags.register_validator("lr_decay_factor", lambda v: 0 < v <= 1,
                             "--lr_decay_factor must be in (0, 1]")
    flags.register_validator("warmup_epochs", lambda v: v >= 0, "--warmup_epochs must be >= 0")
    flags.register_validator("backup_every_steps", lambda v: v >= 0,
                             "--backup_every_steps must be >= 0")
    flags.register_validator(
        "lr_decay_epochs", lambda v: all(s.strip().isdigit() and int(s) > 0 for s in v),
        "--lr_decay_epochs must be a comma-separated list of positive epoch numbers, e.g. 10,15")
    flags.register_multi_flags_validator(
        ["lr_schedule", "lr_decay_epochs"],
        lambda f: f["lr_schedule"] != "step" or bool(f["lr_decay_epochs"]),
        "--lr_schedule=step needs --lr_decay_epochs, e.g. --lr_decay_epochs=10,15")
    flags.register_validator("model_dir", lambda v: bool(v), "--model_dir must not be empty")


def runtime_config_from_flags(flag_values=None) -> RuntimeConfig:
    f = flag_values or flags.FLAGS
    names = {field.name for field in dataclasses.fields(RuntimeConfig)}
    values = {name: f[name].value for name in names}
    values["lr_decay_epochs"] = tuple(sorted(int(e) for e in values["lr_decay_epochs"]))
    return RuntimeConfig(**values)
