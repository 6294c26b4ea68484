"""The shared flags in three groups, their validators, and the configs built from them.

- runtime: where the run lives and how it runs (--model_dir, --strategy, --precision, --seed,
  export and backup settings); every app has them.
- schedule: --epochs, --steps_per_epoch, --batch_size, for apps that train by epochs.
- optimizer: --optimizer, --learning_rate and its schedule; definable several times with a
  prefix, so a GAN has --g_learning_rate and --d_learning_rate.

An app defines its flags into a FlagValues it is given (`define_flags(fv)`), never at import:
two apps imported into one process (a test session) then cannot share, or silently keep, each
other's defaults, and defining a flag twice in one FlagValues fails loudly. The library below
takes the configs, never the global FLAGS, so tests build configs directly.
"""
from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
PRECISIONS = ("auto", "fastest", "float32", "mixed_float16", "mixed_bfloat16")
OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "rmsprop")
LR_SCHEDULES = ("constant", "step", "exponential", "cosine")
RESUME_SOURCES = ("backup", "checkpoint")


@dataclasses.dataclass
class RuntimeConfig:
    model_dir: str
    seed: int = 0
    deterministic: bool = False
    strategy: str = "auto"
    precision: str = "auto"
    export: bool = True
    export_dir: str | None = None  # default <model_dir>/export
    backup_every_steps: int = 0  # 0: back up at the end of each epoch only
    resume_from: str = "backup"  # or "checkpoint": checkpoints/last.keras, after a damaged backup
    peer_timeout_s: int = 0  # multi-worker: heartbeat timeout; 0 keeps TensorFlow's (10 s)

    @property
    def resolved_export_dir(self) -> str:
        return self.export_dir or os.path.join(self.model_dir, "export")


@dataclasses.dataclass
class ScheduleConfig:
    epochs: int = 20
    steps_per_epoch: int = 0  # 0: one pass over the training set
    batch_size: int = 100  # global: split over every replica of every worker


@dataclasses.dataclass
class OptimizerConfig:
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    beta_1: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_decay_epochs: tuple[int, ...] = ()
    lr_decay_factor: float = 0.1
    warmup_epochs: int = 0
    clipnorm: float = 0.0  # 0: no gradient clipping


def register_parse_validator(fv: flags.FlagValues, name: str, parse) -> None:
    """Validates --`name` by calling `parse` on its value (importing nothing until then): a
    ValueError from it becomes the flag's error message."""
    def check(value):
        try:
            parse(value)
        except ValueError as e:
            raise flags.ValidationError(f"--{name}: {e}") from e
        return True

    flags.register_validator(name, check, flag_values=fv)


def usage_error(message: str):
    """Bad command-line input: one `error:` line and exit code 2 (1 is a crash's), no --help."""
    print(f"error: {message}\nPass --help to see the flags.", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_flags(argv, fv: flags.FlagValues = flags.FLAGS):
    """absl's parsing for `app.run(main, flags_parser=parse_flags)`: its own exits 1."""
    try:
        return fv(argv)
    except flags.Error as e:
        usage_error(str(e))


def require_at_least(fv: flags.FlagValues, minimum, *names: str) -> None:
    """Each of --`names` must be >= `minimum` ("--steps must be >= 1")."""
    for name in names:
        flags.register_validator(name, lambda v: v >= minimum, f"--{name} must be >= {minimum}",
                                 flag_values=fv)


def define_runtime_flags(fv: flags.FlagValues = flags.FLAGS,
                         default_model_dir: str = "runs/run") -> None:
    """--model_dir --seed --deterministic --strategy --precision --export --export_dir
    --backup_every_steps --resume_from --peer_timeout_s."""
    flags.DEFINE_string("model_dir", default_model_dir,
                        "Where checkpoints, backups, TensorBoard logs, figures, results and "
                        "exports go. Running the same command again resumes from here; one run "
                        "at a time per folder.", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed for weights, dropout, shuffling, augmentation and "
                         "any other randomness of the run.", flag_values=fv)
    flags.DEFINE_boolean("deterministic", False,
                         "Make TensorFlow ops deterministic (same seed, same result; slower).",
                         flag_values=fv)
    flags.DEFINE_enum("strategy", "auto", STRATEGIES,
                      "tf.distribute strategy: auto (multi_worker inside a cluster of several "
                      "tasks, i.e. TF_CONFIG or a Slurm step; mirrored with >1 GPU; else the "
                      "default), one_device, mirrored, multi_worker (see launch/).",
                      flag_values=fv)
    flags.DEFINE_enum("precision", "auto", PRECISIONS,
                      "Compute precision: auto = mixed_float16 on CUDA GPUs with compute "
                      "capability >= 7.0, float32 elsewhere (mixed_float16 is 4-7x slower on "
                      "CPUs); fastest = the same, but mixed_bfloat16 on CPUs with bfloat16 "
                      "arithmetic (AVX512_BF16 or AMX: about 2x float32's speed there).",
                      flag_values=fv)
    flags.DEFINE_boolean("export", True, "Export a SavedModel for TF Serving after training.",
                         flag_values=fv)
    flags.DEFINE_string("export_dir", None, "Export base folder; default <model_dir>/export.",
                        flag_values=fv)
    flags.DEFINE_integer("backup_every_steps", 0, "Also back up the training state every N "
                         "steps (0: at epoch ends only).", flag_values=fv)
    flags.DEFINE_enum("resume_from", "backup", RESUME_SOURCES,
                      "backup: resume from <model_dir>/backup (exact step); checkpoint: resume "
                      "from checkpoints/last.keras (end of its epoch), for when the backup is "
                      "damaged; the damaged backup is moved aside, not deleted.", flag_values=fv)
    flags.DEFINE_integer("peer_timeout_s", 0,
                         "Multi-worker runs: seconds a worker may miss the coordination "
                         "service's heartbeats before the cluster counts it as lost and every "
                         "worker stops (the rerun resumes). 0 keeps TensorFlow's 10 s; raise it "
                         "on shared or overloaded machines, where a starved but healthy worker "
                         "can miss 10 s of heartbeats.", flag_values=fv)
    flags.register_validator("peer_timeout_s", lambda v: v >= 0,
                             "--peer_timeout_s must be >= 0 (0: TensorFlow's default)",
                             flag_values=fv)
    flags.register_validator("model_dir", lambda v: bool(v), "--model_dir must not be empty",
                             flag_values=fv)
    flags.register_validator("backup_every_steps", lambda v: v >= 0,
                             "--backup_every_steps must be >= 0", flag_values=fv)


def define_schedule_flags(fv: flags.FlagValues = flags.FLAGS, default_epochs: int = 20,
                          default_batch_size: int = 100) -> None:
    """--epochs --steps_per_epoch --batch_size."""
    flags.DEFINE_integer("epochs", default_epochs,
                         "Training epochs; 0 evaluates (and exports) only.", flag_values=fv)
    flags.DEFINE_integer("steps_per_epoch", 0,
                         "Steps per epoch; 0 means one pass over the training set.",
                         flag_values=fv)
    flags.DEFINE_integer("batch_size", default_batch_size,
                         "Global batch size, split evenly over all replicas and workers.",
                         flag_values=fv)
    flags.register_validator("batch_size", lambda v: v > 0,
                             "--batch_size must be a positive integer", flag_values=fv)
    flags.register_validator("epochs", lambda v: v >= 0, "--epochs must be >= 0", flag_values=fv)
    flags.register_validator("steps_per_epoch", lambda v: v >= 0,
                             "--steps_per_epoch must be >= 0", flag_values=fv)


def define_optimizer_flags(fv: flags.FlagValues = flags.FLAGS, prefix: str = "",
                           default_optimizer: str = "adam", default_learning_rate: float = 1e-3,
                           default_beta_1: float = 0.9, default_clipnorm: float = 0.0,
                           of: str = "") -> None:
    """--<prefix>optimizer --<prefix>learning_rate ... --<prefix>clipnorm; `of` names what the
    optimizer trains in the help ("the generator")."""
    p, whose = prefix, f" of {of}" if of else ""

    def name(n):
        return f"{p}{n}"

    flags.DEFINE_enum(name("optimizer"), default_optimizer, OPTIMIZERS,
                      f"Optimizer{whose}; 'momentum' is SGD with --{name('momentum')}, 'adamw' "
                      f"uses --{name('weight_decay')}.", flag_values=fv)
    flags.DEFINE_float(name("learning_rate"), default_learning_rate,
                       f"Initial (peak) learning rate{whose}.", flag_values=fv)
    flags.DEFINE_float(name("momentum"), 0.9, f"Momentum{whose} for the 'momentum' and "
                       "'rmsprop' optimizers.", flag_values=fv)
    flags.DEFINE_float(name("beta_1"), default_beta_1, f"Adam's beta_1{whose} (first-moment "
                       "decay).", flag_values=fv)
    flags.DEFINE_float(name("weight_decay"), 0.0, f"Decoupled weight decay{whose}, applied by "
                       "the optimizer (0 disables).", flag_values=fv)
    flags.DEFINE_enum(name("lr_schedule"), "constant", LR_SCHEDULES,
                      f"Learning-rate decay{whose}: constant; step (multiply by "
                      f"--{name('lr_decay_factor')} at each epoch in --{name('lr_decay_epochs')}"
                      "); exponential (by the factor every epoch); cosine (to 0 over all "
                      "epochs).", flag_values=fv)
    flags.DEFINE_list(name("lr_decay_epochs"), [], "Epochs at which the 'step' schedule "
                      "decays, counted from the run's start (warm-up included), e.g. 10,15.",
                      flag_values=fv)
    flags.DEFINE_float(name("lr_decay_factor"), 0.1, "Multiplier per decay (step) or per epoch "
                       "(exponential).", flag_values=fv)
    flags.DEFINE_integer(name("warmup_epochs"), 0, "Linear learning-rate warm-up epochs before "
                         "the schedule.", flag_values=fv)
    flags.DEFINE_float(name("clipnorm"), default_clipnorm, f"Clip the gradients{whose} to this "
                       "global L2 norm (all weights together; 0: no clipping).", flag_values=fv)
    checks = [
        ("learning_rate", lambda v: v > 0, "must be > 0"),
        ("momentum", lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("beta_1", lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("weight_decay", lambda v: v >= 0, "must be >= 0"),
        ("lr_decay_factor", lambda v: 0 < v <= 1, "must be in (0, 1]"),
        ("warmup_epochs", lambda v: v >= 0, "must be >= 0"),
        ("clipnorm", lambda v: v >= 0, "must be >= 0"),
        ("lr_decay_epochs", lambda v: all(s.strip().isdigit() and int(s) > 0 for s in v),
         "must be a comma-separated list of positive epoch numbers, e.g. 10,15"),
    ]
    for flag, check, message in checks:
        flags.register_validator(name(flag), check, f"--{name(flag)} {message}", flag_values=fv)
    flags.register_multi_flags_validator(
        [name("lr_schedule"), name("lr_decay_epochs")],
        lambda f: f[name("lr_schedule")] != "step" or bool(f[name("lr_decay_epochs")]),
        f"--{name('lr_schedule')}=step needs --{name('lr_decay_epochs')}, e.g. "
        f"--{name('lr_decay_epochs')}=10,15", flag_values=fv)
    flags.register_multi_flags_validator(
        [name("lr_decay_epochs"), name("warmup_epochs")],
        lambda f: all(int(e) > f[name("warmup_epochs")] for e in f[name("lr_decay_epochs")]
                      if e.strip().isdigit()),
        f"--{name('lr_decay_epochs')} must all come after --{name('warmup_epochs')}",
        flag_values=fv)


def _values(config_class, fv, prefix: str = "") -> dict:
    return {field.name: fv[f"{prefix}{field.name}"].value
            for field in dataclasses.fields(config_class)}


def runtime_config(fv: flags.FlagValues = flags.FLAGS) -> RuntimeConfig:
    return RuntimeConfig(**_values(RuntimeConfig, fv))


def schedule_config(fv: flags.FlagValues = flags.FLAGS) -> ScheduleConfig:
    return ScheduleConfig(**_values(ScheduleConfig, fv))


def optimizer_config(fv: flags.FlagValues = flags.FLAGS, prefix: str = "") -> OptimizerConfig:
    values = _values(OptimizerConfig, fv, prefix)
    values["lr_decay_epochs"] = tuple(sorted(int(e) for e in values["lr_decay_epochs"]))
    return OptimizerConfig(**values)
