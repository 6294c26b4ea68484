"""The fused batch norm: Keras's BatchNormalization to the last bit that matters (outputs,
gradients, moving statistics, inference) in float32 and bfloat16, Keras's own path where the
fused kernel does not apply, and .keras files that load."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from suite.models.batch_norm import FusedBatchNormalization
from suite.models.registry import build_model, load_keras_file


def train_and_infer(layer, x, upstream):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    gradients = tape.gradient(loss, [x, *layer.trainable_weights])
    return y, gradients, layer(x, training=False), layer.get_weights()


@pytest.mark.parametrize("policy,tolerance", [("float32", 1e-4), ("mixed_bfloat16", 2e-2)])
def test_fused_batch_norm_equals_keras_in_training_and_inference(policy, tolerance):
    keras.mixed_precision.set_global_policy(policy)
    try:
        rng = np.random.default_rng(0)
        x = rng.normal(2.0, 3.0, (8, 5, 5, 6)).astype("float32")
        upstream = tf.constant(rng.normal(size=x.shape).astype("float32"))
        options = dict(momentum=0.9, epsilon=1.001e-5, gamma_initializer="random_normal",
                       beta_initializer="random_normal")
        keras_bn = keras.layers.BatchNormalization(**options)
        fused = FusedBatchNormalization(**options)
        assert fused.fused(x)
        keras_bn.build(x.shape)
        fused.build(x.shape)
        fused.set_weights(keras_bn.get_weights())
        x = tf.cast(x, keras_bn.compute_dtype)
        expected = train_and_infer(keras_bn, x, upstream)
        got = train_and_infer(fused, x, upstream)
        assert got[0].dtype == expected[0].dtype == keras_bn.compute_dtype
        for e, g in zip([expected[0], *expected[1], expected[2]], [got[0], *got[1], got[2]]):
            np.testing.assert_allclose(np.asarray(tf.cast(g, tf.float32)),
                                       np.asarray(tf.cast(e, tf.float32)), atol=tolerance)
        # Moving mean and the biased moving variance, as Keras keeps them (float32 always).
        for e, g in zip(expected[3], got[3]):
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
        assert not np.allclose(got[3][3], 1.0)  # the variance moved
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_keras_path_where_the_fused_kernel_does_not_apply():
    x = np.random.default_rng(1).normal(size=(4, 7, 3)).astype("float32")  # not 4-D
    assert not FusedBatchNormalization().fused(x)
    assert not FusedBatchNormalization(synchronized=True).fused(x[..., None])
    assert not FusedBatchNormalization(epsilon=1e-6).fused(x[..., None])  # below its floor
    assert not FusedBatchNormalization(axis=1).fused(x[..., None])  # channels first
    fused, plain = FusedBatchNormalization(), keras.layers.BatchNormalization()
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), atol=1e-5)


def test_models_with_fused_batch_norm_save_and_load(tmp_path):
    model = build_model("resnet20", weight_decay=0.0)
    assert any(isinstance(l, FusedBatchNormalization) for l in model.layers)
    images = np.random.default_rng(2).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    model(images, training=True)  # moving statistics away from their start
    path = str(tmp_path / "resnet20.keras")
    model.save(path)
    loaded = load_keras_file(path)
    np.testing.assert_allclose(loaded.predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-6)


@pytest.mark.parametrize("name", ["resnet20", "resnet18"])
def test_resnets_take_keras_batch_norm_with_the_same_variables(name):
    shape = (32, 32, 3) if name == "resnet20" else (64, 64, 3)
    fused = build_model(name, input_shape=shape, num_classes=10)
    plain = build_model(name, input_shape=shape, num_classes=10,
                        batch_norm=keras.layers.BatchNormalization)
    norms = [l for l in plain.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and not any(isinstance(l, FusedBatchNormalization) for l in norms)
    assert len(norms) == sum(isinstance(l, FusedBatchNormalization) for l in fused.layers)
    assert [w.shape for w in plain.weights] == [w.shape for w in fused.weights]
    plain.set_weights(fused.get_weights())
    images = np.random.default_rng(3).uniform(0, 255, (2,) + shape).astype("float32")
    np.testing.assert_allclose(plain(images, training=False), fused(images, training=False),
                               atol=1e-5)
