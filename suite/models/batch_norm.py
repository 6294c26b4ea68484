"""Batch normalization through TensorFlow's fused kernel.

Keras 3's BatchNormalization on the TensorFlow backend is unfused: it casts the input to
float32, computes the moments with two reductions and normalises with several elementwise
passes, then casts back. TensorFlow's FusedBatchNormV3 (oneDNN's kernel where oneDNN is on) does
each direction in one pass, on float32, bfloat16 or float16 inputs with float32 statistics.
`FusedBatchNormalization` is Keras's layer with that kernel underneath: the same variables,
the same arithmetic (the moving variance averages the biased batch variance, as Keras does;
the kernel reports the Bessel-corrected one, which is undone), so checkpoints and weights move
between the two. Where the kernel does not apply (another backend such as JAX, a mask, batch
statistics synchronised over replicas, renormalisation, an input that is not 4-D channels-last,
an epsilon below the kernel's floor) Keras's own path runs.
"""
from __future__ import annotations

import keras

FUSED_MIN_EPSILON = 1.001e-5  # FusedBatchNormV3 raises smaller values to this


@keras.saving.register_keras_serializable(package="suite")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization, fused on TensorFlow for 4-D channels-last inputs."""

    def fused(self, inputs, mask=None) -> bool:
        return (keras.backend.backend() == "tensorflow" and mask is None
                and not self.synchronized and not self.renorm and len(inputs.shape) == 4
                and self.axis in (-1, 3) and self.epsilon >= FUSED_MIN_EPSILON)

    def call(self, inputs, training=None, mask=None):
        if not self.fused(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = tf.convert_to_tensor(inputs)
        if x.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            x = tf.cast(x, tf.float32)
        channels = tf.shape(x)[-1]
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels])
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels])
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
            count = tf.cast(tf.size(x) // channels, tf.float32)
            variance = variance * tf.maximum(count - 1.0, 0.0) / count  # back to biased
            momentum = self.momentum
            self.moving_mean.assign(self.moving_mean * momentum + mean * (1.0 - momentum))
            self.moving_variance.assign(self.moving_variance * momentum
                                        + variance * (1.0 - momentum))
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=tf.convert_to_tensor(self.moving_mean),
                variance=tf.convert_to_tensor(self.moving_variance), epsilon=self.epsilon,
                data_format="NHWC", is_training=False)
        return tf.cast(y, self.compute_dtype)
