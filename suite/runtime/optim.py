"""Optimizer and learning-rate schedule from an OptimizerConfig (schedules count optimizer steps,
flags count epochs, so both take the steps per epoch and the number of epochs)."""
from __future__ import annotations

import keras
from keras import ops

from suite.runtime.config import OptimizerConfig


@keras.saving.register_keras_serializable(package="suite")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Ramps linearly from 0 to the wrapped schedule's value over `warmup_steps`, then follows it."""

    def __init__(self, schedule, warmup_steps: int):
        self.schedule = schedule
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = ops.cast(step, "float32")
        after = self.schedule(ops.maximum(step - self.warmup_steps, 0.0)) if callable(
            self.schedule) else self.schedule
        ramp = (step + 1.0) / float(max(self.warmup_steps, 1))
        return ops.where(step < self.warmup_steps, after * ramp, after)

    def get_config(self):
        schedule = self.schedule
        if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = keras.optimizers.schedules.serialize(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config):
        schedule = config["schedule"]
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        return cls(schedule, config["warmup_steps"])


def learning_rate_schedule(config: OptimizerConfig, steps_per_epoch: int, epochs: int):
    """A float for 'constant', else a LearningRateSchedule over optimizer steps."""
    lr, spe = config.learning_rate, steps_per_epoch
    decay_epochs = max(epochs - config.warmup_epochs, 1)
    if config.lr_schedule == "constant":
        schedule = lr
    elif config.lr_schedule == "step":
        # The epochs count from the run's start; LinearWarmup starts the schedule after the
        # warm-up, so its boundaries are shifted back by it. The update of step k uses the rate
        # at k, and PiecewiseConstantDecay keeps a value up to its boundary inclusive: the
        # boundary is the last step before the epoch, so the epoch's first update decays too.
        if any(e <= config.warmup_epochs for e in config.lr_decay_epochs):
            raise ValueError(f"`lr_decay_epochs={','.join(map(str, config.lr_decay_epochs))}` "
                             f"must all come after `warmup_epochs={config.warmup_epochs}`")
        boundaries = [(e - config.warmup_epochs) * spe - 1 for e in config.lr_decay_epochs]
        values = [lr * config.lr_decay_factor ** i for i in range(len(boundaries) + 1)]
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    elif config.lr_schedule == "exponential":
        schedule = keras.optimizers.schedules.ExponentialDecay(lr, spe, config.lr_decay_factor)
    elif config.lr_schedule == "cosine":
        schedule = keras.optimizers.schedules.CosineDecay(lr, decay_epochs * spe)
    else:
        raise ValueError(f"unknown `lr_schedule={config.lr_schedule!r}`")
    if config.warmup_epochs:
        schedule = LinearWarmup(schedule, config.warmup_epochs * spe)
    return schedule


def make_optimizer(config: OptimizerConfig, steps_per_epoch: int,
                   epochs: int) -> keras.optimizers.Optimizer:
    lr = learning_rate_schedule(config, steps_per_epoch, epochs)
    common = {"weight_decay": config.weight_decay or None,
              # One norm over all gradients, as torch.nn.utils.clip_grad_norm_ and the DQN
              # papers' clipping; Keras's `clipnorm` would clip each weight's gradient alone.
              "global_clipnorm": config.clipnorm or None}
    if config.optimizer == "adam":
        return keras.optimizers.Adam(lr, beta_1=config.beta_1, **common)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, beta_1=config.beta_1,
                                      **{**common, "weight_decay": config.weight_decay})
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, **common)
    if config.optimizer == "momentum":
        return keras.optimizers.SGD(lr, momentum=config.momentum, **common)
    if config.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(lr, momentum=config.momentum, **common)
    raise ValueError(f"unknown `optimizer={config.optimizer!r}`")
