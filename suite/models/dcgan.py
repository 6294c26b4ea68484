"""DCGAN (Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks", 2015), sized by the image shape.

The paper's rules, layer for layer: no pooling (strided convolutions in the discriminator,
fractionally-strided ones in the generator), batch norm in both networks except the generator's
output and the discriminator's input layer, ReLU in the generator with a tanh output, LeakyReLU
0.2 in the discriminator, weights from N(0, 0.02) (batch-norm scales from N(1, 0.02)), 5x5
kernels, Adam 2e-4 with beta_1 0.5. The generator projects the latent vector to a small map
(4x4 for 32 or 64 pixels, 7x7 for 28) and doubles it until the image size; the discriminator
mirrors it and ends in one logit:

    28x28x1:  z(100) -> 7x7x(2f) -> 14x14x(f) -> 28x28x1        f = --base_filters
    32x32x3:  z(100) -> 4x4x(4f) -> 8x8x(2f) -> 16x16x(f) -> 32x32x3

`refine_layers` (beyond the paper, 0 by default) adds that many stride-1 5x5 layers (with batch
norm and ReLU) on the generator's smallest map before it grows, as TensorFlow's DCGAN tutorial
does for MNIST: a deeper generator at little cost, since the map is only 7x7.

`DCGAN` is one Keras model holding both networks, with its own `train_step` (one
discriminator step on a real and a generated batch, then one generator step, as Algorithm 1
with k = 1) and two optimizers, each wrapped for loss scaling under mixed_float16 (compile()
would wrap only one). Images are in [-1, 1]; `to_uint8` maps them back.

Beyond the paper, behind `reuse_fakes` (off by default): the generator step reuses the batch the
discriminator step generated instead of drawing fresh noise, as PyTorch's DCGAN example does.
The generator then runs forward once a step instead of twice (about a sixth of the step at
28x28 with a refine layer) and still plays against the just-updated discriminator.

Beyond the paper, behind `ema_decay` (off by default): an exponential moving average of the
generator's weights (Yazici et al., "The Unusual Effectiveness of Averaging in GAN Training",
2019), kept as a second generator that draws the samples, the quality numbers and the export
while the trained one keeps playing the game. It smooths away the generator's last oscillations
at the price of one weight copy per step.
"""
from __future__ import annotations

import contextlib

import keras
import tensorflow as tf
from keras import layers

from suite.models.batch_norm import FusedBatchNormalization

LATENT_DIM = 100
KERNEL = 5
LEAK = 0.2


def upsampling_stages(side: int) -> int:
    """How often the generator doubles its map: halve `side` while it is even and its half is
    4 or more (28 -> 14 -> 7: 2; 32 -> 16 -> 8 -> 4: 3; 64: 4; 48 -> 6: 3)."""
    stages = 0
    while side % 2 == 0 and side // 2 >= 4:
        side //= 2
        stages += 1
    return stages


def check_image_shape(shape) -> tuple[int, int, int]:
    height, width, channels = (int(s) for s in shape)
    if height != width or upsampling_stages(height) < 1 or channels not in (1, 3):
        raise ValueError(f"DCGAN images must be square, 1 or 3 channels, with a side that halves "
                         f"at least once to a map of 4 or more (28, 32, 64, ...); got "
                         f"{height}x{width}x{channels}: pick another `image_size`")
    return height, width, channels


def _init():
    return keras.initializers.RandomNormal(0.0, 0.02)


def _batch_norm(name: str, synchronized: bool = False):
    return FusedBatchNormalization(gamma_initializer=keras.initializers.RandomNormal(1.0, 0.02),
                                   synchronized=synchronized, name=name)


def build_generator(image_shape=(28, 28, 1), latent_dim: int = LATENT_DIM,
                    base_filters: int = 64, sync_batch_norm: bool = False,
                    refine_layers: int = 0, name: str = "generator") -> keras.Model:
    """`sync_batch_norm`: batch statistics over all replicas, i.e. of the global batch as on
    one device (every worker then also keeps the same moving statistics)."""
    side, _, channels = check_image_shape(image_shape)
    stages = upsampling_stages(side)
    start = side >> stages
    filters = base_filters * 2 ** (stages - 1)
    latent = keras.Input((latent_dim,), name="latent")
    x = layers.Dense(start * start * filters, use_bias=False, kernel_initializer=_init(),
                     name="project")(latent)
    x = layers.Reshape((start, start, filters), name="reshape")(x)
    x = _batch_norm("project_bn", sync_batch_norm)(x)
    x = layers.ReLU(name="project_relu")(x)
    for i in range(1, refine_layers + 1):
        x = layers.Conv2DTranspose(filters, KERNEL, padding="same", use_bias=False,
                                   kernel_initializer=_init(), name=f"refine{i}")(x)
        x = _batch_norm(f"refine{i}_bn", sync_batch_norm)(x)
        x = layers.ReLU(name=f"refine{i}_relu")(x)
    for i in range(1, stages):
        filters //= 2
        x = layers.Conv2DTranspose(filters, KERNEL, strides=2, padding="same", use_bias=False,
                                   kernel_initializer=_init(), name=f"deconv{i}")(x)
        x = _batch_norm(f"deconv{i}_bn", sync_batch_norm)(x)
        x = layers.ReLU(name=f"deconv{i}_relu")(x)
    x = layers.Conv2DTranspose(channels, KERNEL, strides=2, padding="same",
                               kernel_initializer=_init(), name=f"deconv{stages}")(x)
    image = layers.Activation("tanh", dtype="float32", name="tanh")(x)
    return keras.Model(latent, image, name=name)


def build_discriminator(image_shape=(28, 28, 1), base_filters: int = 64,
                        sync_batch_norm: bool = False, name: str = "discriminator") -> keras.Model:
    side, _, _ = check_image_shape(image_shape)
    image = keras.Input(tuple(image_shape), name="image")
    x = image
    for i in range(upsampling_stages(side)):
        x = layers.Conv2D(base_filters * 2 ** i, KERNEL, strides=2, padding="same",
                          use_bias=i == 0, kernel_initializer=_init(), name=f"conv{i + 1}")(x)
        if i:  # the paper leaves batch norm off the discriminator's input layer
            x = _batch_norm(f"conv{i + 1}_bn", sync_batch_norm)(x)
        x = layers.LeakyReLU(LEAK, name=f"conv{i + 1}_lrelu")(x)
    x = layers.Flatten(name="flatten")(x)
    logit = layers.Dense(1, kernel_initializer=_init(), dtype="float32", name="logit")(x)
    return keras.Model(image, logit, name=name)


def to_uint8(images):
    """[-1, 1] generator output -> uint8 pixels."""
    return tf.cast(tf.clip_by_value(tf.round((images + 1.0) * 127.5), 0, 255), tf.uint8)


def from_uint8(images):
    """uint8 pixels -> the generator's [-1, 1] range."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


@keras.saving.register_keras_serializable(package="suite")
class DCGAN(keras.Model):
    """Both networks and both optimizers; `fit` on batches of real images in [-1, 1]. The
    noise is drawn from `seed` and the step count: a resumed run draws what an uninterrupted
    one would."""

    def __init__(self, generator=None, discriminator=None, image_shape=(28, 28, 1),
                 latent_dim: int = LATENT_DIM, base_filters: int = 64,
                 sync_batch_norm: bool = False, ema_decay: float = 0.0,
                 refine_layers: int = 0, reuse_fakes: bool = False, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.image_shape, self.latent_dim = tuple(image_shape), latent_dim
        self.base_filters, self.sync_batch_norm = base_filters, sync_batch_norm
        self.ema_decay, self.refine_layers = float(ema_decay), int(refine_layers)
        self.reuse_fakes, self.seed = bool(reuse_fakes), int(seed)
        self.generator = generator or build_generator(image_shape, latent_dim, base_filters,
                                                      sync_batch_norm, refine_layers)
        # The averaged generator: same layers, its own weights, never trained directly.
        self.ema_generator = build_generator(
            image_shape, latent_dim, base_filters, sync_batch_norm, refine_layers,
            name="generator_ema") if ema_decay else None
        self.discriminator = discriminator or build_discriminator(image_shape, base_filters,
                                                                  sync_batch_norm)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.real_score = keras.metrics.Mean(name="d_real")  # mean D(x): the paper's diagnostics
        self.fake_score = keras.metrics.Mean(name="d_fake")  # mean D(G(z)) before the G step

    @property
    def sampler(self) -> keras.Model:
        """The generator that draws samples: the averaged one when there is one."""
        return self.ema_generator or self.generator

    def call(self, latent, training=False):
        if self.ema_generator is not None:
            self.ema_generator(latent, training=False)  # built beside the generator
        return self.generator(latent, training=training)

    def start_average(self) -> None:
        """The averaged generator starts as a copy of the generator (before training)."""
        if self.ema_generator is not None:
            for average, weight in zip(self.ema_generator.weights, self.generator.weights):
                average.assign(weight)

    def _update_average(self) -> None:
        """average <- decay * average + (1 - decay) * weight, batch-norm statistics included."""
        for average, weight in zip(self.ema_generator.weights, self.generator.weights):
            average.assign(self.ema_decay * average + (1.0 - self.ema_decay) * weight)

    def compile(self, d_optimizer, g_optimizer):
        from suite.runtime.loss_scaling import for_custom_loop

        super().compile()
        self.d_optimizer = for_custom_loop(d_optimizer)
        self.g_optimizer = for_custom_loop(g_optimizer)
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return [self.d_loss_tracker, self.g_loss_tracker, self.real_score, self.fake_score]

    def _scaled(self, optimizer, loss):
        """The loss the tape differentiates: scaled for float16, and divided by the replicas,
        whose gradients the optimizer sums."""
        return optimizer.scale_loss(loss / tf.distribute.get_strategy().num_replicas_in_sync)

    def _discriminator_step(self, real, fake):
        """One discriminator update on a real and a generated batch (`fake` is an input here:
        nothing flows back into the generator)."""
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        variables = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(real, training=True)
            fake_logits = self.discriminator(fake, training=True)
            loss = (bce(tf.ones_like(real_logits), real_logits)
                    + bce(tf.zeros_like(fake_logits), fake_logits))
            scaled = self._scaled(self.d_optimizer, loss)
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return loss, real_logits, fake_logits

    def train_step(self, real):
        bce = keras.losses.BinaryCrossentropy(from_logits=True)
        batch = tf.shape(real)[0]
        # The step count is the optimizer's, saved and restored with it; each replica draws
        # its own noise (one seed for all would give every replica the same fakes).
        step = tf.cast(self.d_optimizer.iterations, tf.int64)
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group,
                          tf.int64)

        def noise(draw):
            seed = tf.stack([self.seed * 65536 + replica, 2 * step + draw])
            return tf.random.stateless_normal((batch, self.latent_dim), seed)

        variables = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            # The discriminator's batch is on the generator's tape only when its step reuses it.
            with contextlib.nullcontext() if self.reuse_fakes else tape.stop_recording():
                fake = self.generator(noise(0), training=True)
            with tape.stop_recording():  # the discriminator's update is not the generator's
                d_loss, real_logits, fake_logits = self._discriminator_step(real, fake)
            if not self.reuse_fakes:  # Algorithm 1: a fresh minibatch of noise
                fake = self.generator(noise(1), training=True)
            logits = self.discriminator(fake, training=True)
            # The non-saturating loss: maximise log D(G(z)).
            g_loss = bce(tf.ones_like(logits), logits)
            scaled = self._scaled(self.g_optimizer, g_loss)
        self.g_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        if self.ema_generator is not None:
            self._update_average()
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        self.real_score.update_state(tf.sigmoid(real_logits))
        self.fake_score.update_state(tf.sigmoid(fake_logits))
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "latent_dim": self.latent_dim, "base_filters": self.base_filters,
                "sync_batch_norm": self.sync_batch_norm, "ema_decay": self.ema_decay,
                "refine_layers": self.refine_layers, "reuse_fakes": self.reuse_fakes,
                "seed": self.seed,
                "generator": keras.saving.serialize_keras_object(self.generator),
                "discriminator": keras.saving.serialize_keras_object(self.discriminator)}

    @classmethod
    def from_config(cls, config):
        for part in ("generator", "discriminator"):
            config[part] = keras.saving.deserialize_keras_object(config[part])
        return cls(**config)
