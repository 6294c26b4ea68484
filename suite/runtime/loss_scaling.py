"""Loss scaling for custom training steps under mixed_float16.

`model.compile()` wraps the optimizer it is given in a LossScaleOptimizer when the global
policy is mixed_float16, so `fit` needs nothing more. A custom `train_step` or loop (GANs have
two optimizers, RL has its own loop) must wrap each optimizer itself and scale the loss inside
the tape; `apply` then unscales the gradients and skips steps whose gradients overflowed.
Keras 3 removed get_scaled_loss/get_unscaled_gradients (../shared/FINDINGS.md).

    optimizer = for_custom_loop(keras.optimizers.Adam(1e-4))
    with tf.GradientTape() as tape:
        loss = ...
        scaled = optimizer.scale_loss(loss)
    optimizer.apply(tape.gradient(scaled, variables), variables)
"""
from __future__ import annotations

import keras


def needs_loss_scaling() -> bool:
    """float16 gradients underflow without scaling; bfloat16 has float32's range and does not."""
    return keras.mixed_precision.global_policy().name == "mixed_float16"


def for_custom_loop(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer wrapped in a LossScaleOptimizer when the policy needs it (idempotent)."""
    if needs_loss_scaling() and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
