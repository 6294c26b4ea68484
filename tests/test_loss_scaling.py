import keras
import numpy as np
import tensorflow as tf

from suite.runtime.loss_scaling import for_custom_loop


def _custom_step_weights(policy: str, wrap: bool):
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                              keras.layers.Activation("softmax", dtype="float32")])
    initial = [v.numpy() for v in model.trainable_variables]
    optimizer = keras.optimizers.SGD(1e5)
    if wrap:
        optimizer = for_custom_loop(optimizer)
    x = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    y = np.arange(8) % 3
    with tf.GradientTape() as tape:
        # a loss scaled down to where float16 gradients underflow without loss scaling
        loss = 1e-7 * keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
        loss = tf.reduce_mean(loss)
        scaled = optimizer.scale_loss(loss)
    optimizer.apply(tape.gradient(scaled, model.trainable_variables), model.trainable_variables)
    return optimizer, initial, [v.numpy() for v in model.trainable_variables]


def test_wrapping_happens_only_for_mixed_float16_and_is_idempotent():
    keras.mixed_precision.set_global_policy("mixed_float16")
    wrapped = for_custom_loop(keras.optimizers.Adam())
    assert isinstance(wrapped, keras.optimizers.LossScaleOptimizer)
    assert for_custom_loop(wrapped) is wrapped
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        assert not isinstance(for_custom_loop(keras.optimizers.Adam()),
                              keras.optimizers.LossScaleOptimizer)


def test_custom_step_under_mixed_float16_matches_float32_only_when_the_loss_is_scaled():
    _, initial, reference = _custom_step_weights("float32", wrap=False)
    optimizer, _, scaled = _custom_step_weights("mixed_float16", wrap=True)
    _, _, unscaled = _custom_step_weights("mixed_float16", wrap=False)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    step = [r - i for r, i in zip(reference, initial)]
    assert max(np.abs(s).max() for s in step) > 1e-3  # the float32 step really moves
    for i, s, d in zip(initial, scaled, step):  # scaled float16 gradients: the same step
        np.testing.assert_allclose(s - i, d, atol=0.02 * np.abs(d).max())
    # without scaling the 1e-7-sized float16 gradients underflow and most of the step is lost
    lost = sum(np.abs((u - i) - d).sum() for i, u, d in zip(initial, unscaled, step))
    assert lost > 0.5 * sum(np.abs(d).sum() for d in step)
