"""A GAN on 2-D points: two models, two optimizers and a custom train_step, trained by the
runner's resumable fit. The DCGAN app's shape in miniature.

    PYTHONPATH=.:tests python -m toy_apps.points_gan --model_dir=runs/points_gan --epochs=3
"""
from __future__ import annotations

import dataclasses

from suite.config import Config, group, option
from suite.runtime.config import OptimizerConfig, RuntimeConfig, ScheduleConfig
from suite.tasks.base import Signature, Task

LATENT = 4


@dataclasses.dataclass
class PointsGanConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/points_gan")
    schedule: ScheduleConfig = group(ScheduleConfig, epochs=3, batch_size=32)
    d_optimizer: OptimizerConfig = group(OptimizerConfig, prefix="d_", of="the discriminator",
                                         learning_rate=2e-3, beta_1=0.5)
    g_optimizer: OptimizerConfig = group(OptimizerConfig, prefix="g_", of="the generator",
                                         learning_rate=2e-3, beta_1=0.5)
    step_delay_s: float = option(0.0, "Sleep this long after each step (lets tests signal a "
                                 "run mid-epoch).", bounds=">= 0")


def _gan_class():
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="suite_tests")
    class PointGAN(keras.Model):
        def __init__(self, generator=None, discriminator=None, step_delay_s=0.0, **kwargs):
            super().__init__(**kwargs)
            self.generator = generator or keras.Sequential(
                [keras.Input((LATENT,)), keras.layers.Dense(16, activation="relu"),
                 keras.layers.Dense(2)], name="generator")
            self.discriminator = discriminator or keras.Sequential(
                [keras.Input((2,)), keras.layers.Dense(16, activation="relu"),
                 keras.layers.Dense(1)], name="discriminator")
            self.step_delay_s = step_delay_s
            self.noise = keras.random.SeedGenerator(0)
            self.d_loss = keras.metrics.Mean(name="d_loss")
            self.g_loss = keras.metrics.Mean(name="g_loss")

        def call(self, latent):
            return self.generator(latent)

        def compile(self, d_optimizer, g_optimizer):
            super().compile()
            self.d_optimizer, self.g_optimizer = d_optimizer, g_optimizer
            self.d_optimizer.build(self.discriminator.trainable_variables)
            self.g_optimizer.build(self.generator.trainable_variables)

        @property
        def metrics(self):
            return [self.d_loss, self.g_loss]

        def train_step(self, real):
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            bce = keras.losses.BinaryCrossentropy(from_logits=True)
            batch = tf.shape(real)[0]
            latent = keras.random.normal((batch, LATENT), seed=self.noise)
            with tf.GradientTape() as tape:
                real_logits = self.discriminator(real, training=True)
                fake_logits = self.discriminator(self.generator(latent), training=True)
                d_loss = (bce(tf.ones_like(real_logits), real_logits)
                          + bce(tf.zeros_like(fake_logits), fake_logits))
                scaled = d_loss / replicas  # the optimizer sums the replicas' gradients
            variables = self.discriminator.trainable_variables
            grads = tape.gradient(scaled, variables)
            self.d_optimizer.apply_gradients(zip(grads, variables))
            latent = keras.random.normal((batch, LATENT), seed=self.noise)
            with tf.GradientTape() as tape:
                logits = self.discriminator(self.generator(latent, training=True))
                g_loss = bce(tf.ones_like(logits), logits)
                scaled = g_loss / replicas
            variables = self.generator.trainable_variables
            grads = tape.gradient(scaled, variables)
            self.g_optimizer.apply_gradients(zip(grads, variables))
            self.d_loss.update_state(d_loss)
            self.g_loss.update_state(g_loss)
            if self.step_delay_s:
                tf.py_function(lambda: __import__("time").sleep(self.step_delay_s), [], [])
            return {"d_loss": self.d_loss.result(), "g_loss": self.g_loss.result()}

        def get_config(self):
            return {**super().get_config(),
                    "generator": keras.saving.serialize_keras_object(self.generator),
                    "discriminator": keras.saving.serialize_keras_object(self.discriminator)}

        @classmethod
        def from_config(cls, config):
            for part in ("generator", "discriminator"):
                config[part] = keras.saving.deserialize_keras_object(config[part])
            return cls(**config)

    return PointGAN


class PointsGanTask(Task):
    config_class = PointsGanConfig
    name = "points_gan"
    best_checkpoint = (None, "min")  # a GAN's losses do not rank its checkpoints
    watched_losses = ("d_loss", "g_loss")
    meaning_keys = ("latent_dim",)

    def __init__(self, config: PointsGanConfig, data_override=None):
        super().__init__(config, data_override)
        self.schedule = config.schedule

    def load_data(self, run):
        import numpy as np
        import tensorflow as tf

        points = np.random.default_rng(self.seed).normal([2.0, -1.0], 0.3, (512, 2))
        self.steps_per_epoch = self.schedule.steps_per_epoch or 512 // self.schedule.batch_size
        ds = tf.data.Dataset.from_tensor_slices(points.astype("float32"))
        ds = ds.shuffle(512, seed=self.seed).repeat().batch(self.schedule.batch_size,
                                                            drop_remainder=True)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        self.train_data = ds.with_options(options)

    def build(self, run):
        import numpy as np

        from suite.runtime.optim import make_optimizer

        gan = _gan_class()(step_delay_s=self.config.step_delay_s, name="points_gan")
        gan(np.zeros((1, LATENT), "float32"))  # built, so it can be saved
        gan.compile(make_optimizer(self.config.d_optimizer, self.steps_per_epoch, self.epochs),
                    make_optimizer(self.config.g_optimizer, self.steps_per_epoch, self.epochs))
        return gan

    def evaluate(self, run):
        import numpy as np

        latent = np.random.default_rng(1).normal(size=(256, LATENT)).astype("float32")
        points = np.asarray(run.model.generator(latent))
        print(f"Generated mean: {points.mean(axis=0).round(3).tolist()}", flush=True)
        return {"generated_mean": points.mean(axis=0).tolist(), "epochs": self.epochs,
                "d_iterations": int(run.model.d_optimizer.iterations.numpy()),
                "g_iterations": int(run.model.g_optimizer.iterations.numpy())}

    def export_metadata(self):
        return {"latent_dim": LATENT}

    @classmethod
    def custom_objects(cls):
        return {"PointGAN": _gan_class()}

    @classmethod
    def serving_signatures(cls, model, metadata):
        import tensorflow as tf

        def generate(latent):
            return {"points": tf.cast(model.generator(latent, training=False), tf.float32)}

        spec = tf.TensorSpec([None, metadata["latent_dim"]], tf.float32, name="latent")
        return {"serving_default": Signature(generate, [spec])}


if __name__ == "__main__":
    from suite.runtime.cli import main

    main(PointsGanTask)
