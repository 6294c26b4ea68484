"""DCGAN as a Task: the runner's resumable fit of one model with two optimizers.

Per epoch: a sample grid from fixed latent vectors (samples/epoch_NNN.png and TensorBoard) and
the step-by-step losses (TensorBoard `step/`, losses.csv). At the end: samples.png,
progress.gif (the epochs' grids), interpolation.png (straight lines through latent space) and,
given a suite classifier (--classifier_from), the quality numbers of suite.metrics.generative
for generated and for real images. The export maps latent vectors, or just seeds, to uint8
images.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import os

import numpy as np

from suite.config import Config, existing_path, group, option
from suite.runtime.config import OptimizerConfig, RuntimeConfig, ScheduleConfig
from suite.tasks.base import Input, Signature, Task

GRID_COLUMNS = 8
INTERPOLATION_ROWS, INTERPOLATION_STEPS = 8, 10


@dataclasses.dataclass
class DcganConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/dcgan")
    schedule: ScheduleConfig = group(ScheduleConfig, epochs=5, batch_size=128)
    d_optimizer: OptimizerConfig = group(OptimizerConfig, prefix="d_", of="the discriminator",
                                         learning_rate=2e-4, beta_1=0.5)
    g_optimizer: OptimizerConfig = group(OptimizerConfig, prefix="g_", of="the generator",
                                         learning_rate=2e-4, beta_1=0.5)
    dataset: str = option("mnist", "mnist (IDX files in --mnist_dir, else tfds), the CIFAR-10 "
                          "zip of ../shared/data/cifar10-subset, a folder of .png/.jpg images (a "
                          "classifier folder's train/ part is used), or a tensorflow-datasets "
                          "image set.")
    mnist_dir: str | None = option(None, "Folder with the four MNIST IDX .gz files (offline), "
                                   "e.g. ../shared/data/mnist; unset: tensorflow-datasets.",
                                   check=existing_path(
                                       what="a folder holding the MNIST IDX .gz files",
                                       kind="folder"))
    data_dir: str | None = option(None, "tensorflow-datasets' data folder for a tfds "
                                  "--dataset.")
    image_size: int = option(
        0, "Side of the generated images; images are centre-cropped and resized to it. 0: the "
        "images' own (28 MNIST, 32 CIFAR). It must halve to a map of 4 or more (28, 32, 64, "
        "...).", bounds=">= 0")
    grayscale: bool = option(False, "Train on one channel (the mean of RGB).")
    limit: int = option(0, "Keep only the first N training images (quick runs); 0: all.",
                        bounds=">= 0")
    latent_dim: int = option(100, "Length of the latent vector z (the paper: 100, uniform; "
                             "here normal).", bounds=">= 1")
    base_filters: int = option(64, "Filters of the discriminator's first and the generator's "
                               "last hidden layer, doubled at every other layer (the paper's "
                               "64x64 net: 128).", bounds=">= 1")
    ema_decay: float = option(
        0.0, "Beyond the paper: keep an exponential moving average of the generator's weights "
        "with this decay per step (e.g. 0.999) and draw samples, quality numbers and the export "
        "from it; 0: off, the trained generator draws.", bounds="[0, 1)")
    refine_layers: int = option(
        0, "Beyond the paper: stride-1 5x5 layers (batch norm, ReLU) on the generator's "
        "smallest map before it grows, as TensorFlow's DCGAN tutorial has one; 0: the paper's "
        "generator.", bounds=">= 0")
    reuse_fakes: bool = option(
        False, "Beyond the paper: the generator step reuses the batch the discriminator step "
        "generated (as PyTorch's DCGAN example does) instead of fresh noise: one generator "
        "forward pass a step instead of two, so more steps in the same time.")
    grid_size: int = option(64, "Images in each epoch's sample grid (8 a row).", bounds=">= 1")
    classifier_from: str | None = option(
        None, "A suite classifier of the same images (its model_dir or .keras file, e.g. an "
        "apps.train_mnist run) that measures the generated images: classifier score, Frechet "
        "distance on its features, class histogram.",
        check=existing_path(what="an existing model_dir or .keras file"))
    quality_samples: int = option(10000, "Generated (and real) images the quality numbers "
                                  "use.", bounds=">= 20",
                                  message="must be >= 20 (it is split in 10 chunks)")
    log_every_steps: int = option(10, "Write the step's two losses to TensorBoard and "
                                  "losses.csv every N steps.", bounds=">= 1")



def interpolation_latents(start: np.ndarray, end: np.ndarray, steps: int) -> np.ndarray:
    """Evenly spaced points on the straight line from each start to its end, row by row:
    (rows * steps, latent_dim)."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    return ((1 - t) * start[:, None] + t * end[:, None]).reshape(-1, start.shape[-1])


def generate(generator, latents: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """uint8 images for `latents`, in inference mode (batch norm's moving statistics)."""
    from suite.models.dcgan import to_uint8

    out = [np.asarray(to_uint8(generator(latents[i:i + batch_size], training=False)))
           for i in range(0, len(latents), batch_size)]
    return np.concatenate(out) if out else np.zeros((0,), np.uint8)


def _sample_callback(task: "DcganTask", run):
    import keras
    import tensorflow as tf

    from suite.viz.images import image_grid, save_png

    class Samples(keras.callbacks.Callback):
        """Each epoch's grid from the same latent vectors, and the losses of every step."""

        def on_epoch_begin(self, epoch, logs=None):
            # The steps done before this epoch's first batch here (a resumed epoch's fit is
            # given only its remaining steps): the steps' numbers, and where the data stream
            # starts (fit() makes its iterator after this).
            self.previous = {}
            self.done = (epoch + 1) * task.steps_per_epoch - self.params["steps"]
            task.position.assign(self.done)

        def on_train_batch_end(self, batch, logs=None):
            # Keras logs the running means of this epoch; the step's own loss is the difference
            # of the sums before and after it.
            losses = {k: float(logs[k]) for k in ("d_loss", "g_loss")}
            step = {k: (batch + 1) * v - batch * self.previous.get(k, 0.0)
                    for k, v in losses.items()}
            self.previous = losses
            global_step = self.done + batch + 1
            if global_step % task.config.log_every_steps == 0:
                task.record_step_losses(run, global_step, step)

        def on_epoch_end(self, epoch, logs=None):
            images = generate(self.model.sampler, task.fixed_latents)
            grid = image_grid(images, GRID_COLUMNS)
            save_png(grid, run.output_path(f"samples/epoch_{epoch + 1:03d}.png"))
            with task.writer(run).as_default():
                tf.summary.image("samples (fixed latent vectors)", grid[None], step=epoch + 1)

    return Samples()


class DcganTask(Task):
    config_class = DcganConfig
    name = "dcgan"
    best_checkpoint = (None, "min")  # a GAN's losses do not rank its checkpoints
    watched_losses = ("d_loss", "g_loss")
    meaning_keys = ("latent_dim",)
    figures = ("samples.png", "interpolation.png", "progress.gif", "losses.png")

    def __init__(self, config: DcganConfig, data_override=None):
        """`data_override`: (training images, test images, name) instead of `dataset`."""
        super().__init__(config, data_override)
        rng = np.random.default_rng(self.seed + 1)  # one stream for every figure's latent vectors
        self.fixed_latents = rng.normal(size=(config.grid_size, config.latent_dim)).astype(
            np.float32)
        self.interpolation_ends = rng.normal(size=(2, INTERPOLATION_ROWS, config.latent_dim)
                                             ).astype(np.float32)
        self._writer = None

    # -- data and model ----------------------------------------------------------------------
    def load_data(self, run):
        import tensorflow as tf

        from suite.data.generation import load_generation_images

        c = self.config
        if self.data_override is not None:
            self.images, self.test_images, self.data_name = self.data_override
        else:
            self.images, self.test_images, self.data_name = load_generation_images(
                c.dataset, c.image_size, c.mnist_dir, c.data_dir, c.grayscale, c.limit)
        count, batch = len(self.images), self.config.schedule.batch_size
        if count < batch:
            from suite.errors import DataError

            raise DataError(f"{self.data_name} has {count} images, fewer than `batch_size={batch}`")
        self.steps_per_epoch = self.config.schedule.steps_per_epoch or count // batch
        from suite.models.dcgan import from_uint8

        # Pass after pass over the images, each pass in its own seeded order: batch n is a
        # function of n alone. The stream starts at batch `position` (the steps done, set
        # before fit() iterates it), so a resumed run reads on where the stopped one was.
        with tf.device("/cpu:0"):
            self.position = tf.Variable(0, dtype=tf.int64, trainable=False)
        images = tf.constant(self.images)

        def images_at(element):  # the stream's element -> its pass's shuffled image
            seeds = tf.stack([tf.fill(tf.shape(element), tf.constant(self.seed, tf.int64)),
                              element // count, tf.zeros_like(element)], axis=-1)
            # The raw op: tf.random.experimental.index_shuffle pads a batch of seeds
            # ([n, 2]) along the wrong axis.
            order = tf.raw_ops.RandomIndexShuffle(index=element % count, seed=seeds,
                                                  max_index=tf.constant(count - 1, tf.int64))
            return from_uint8(tf.gather(images, order))

        ds = tf.data.Dataset.from_tensors(0).flat_map(
            lambda _: tf.data.Dataset.range(self.position.value() * batch, tf.int64.max))
        ds = ds.batch(batch, drop_remainder=True)
        ds = ds.map(images_at, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA)
        self.train_data = ds.with_options(options)
        print(f"{self.data_name}: {count} images {self.images.shape[1:]}, "
              f"{self.steps_per_epoch} steps of {batch} per epoch", flush=True)

    def build(self, run):
        from suite.models.dcgan import DCGAN
        from suite.runtime.optim import make_optimizer

        c = self.config
        gan = DCGAN(image_shape=self.images.shape[1:], latent_dim=c.latent_dim,
                    base_filters=c.base_filters, ema_decay=c.ema_decay,
                    refine_layers=c.refine_layers, reuse_fakes=c.reuse_fakes, seed=self.seed,
                    sync_batch_norm=run.strategy.num_replicas_in_sync > 1, name="dcgan")
        gan(np.zeros((1, c.latent_dim), np.float32))  # built, so it can be saved and restored
        gan.start_average()
        gan.discriminator(np.zeros((1, *self.images.shape[1:]), np.float32))
        gan.compile(make_optimizer(self.config.d_optimizer, self.steps_per_epoch, self.epochs),
                    make_optimizer(self.config.g_optimizer, self.steps_per_epoch, self.epochs))
        gan.generator.summary(print_fn=lambda line, **_: print(line, flush=True))
        gan.discriminator.summary(print_fn=lambda line, **_: print(line, flush=True))
        return gan

    def train(self, run):
        return run.fit(run.model, self.train_data, None, epochs=self.epochs,
                       steps_per_epoch=self.steps_per_epoch,
                       callbacks=[_sample_callback(self, run)])

    # -- records -----------------------------------------------------------------------------
    def writer(self, run):
        import tensorflow as tf

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(run.paths.logs, "samples"))
        return self._writer

    def record_step_losses(self, run, step: int, losses: dict) -> None:
        import tensorflow as tf

        with self.writer(run).as_default():
            for name, value in losses.items():
                tf.summary.scalar(f"step/{name}", value, step=step)
        path = run.output_path("losses.csv")
        new = not os.path.exists(path)
        with open(path, "a", newline="") as f:
            out = csv.writer(f)
            if new:
                out.writerow(["step", *losses])
            out.writerow([step, *(f"{v:.5f}" for v in losses.values())])

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, run):
        from suite.viz.images import image_grid, save_gif, save_png

        generator = run.model.sampler
        results = {"dataset": self.data_name, "train_images": len(self.images),
                   "image_shape": list(self.images.shape[1:]), "epochs": self.epochs,
                   "steps_per_epoch": self.steps_per_epoch,
                   "d_iterations": int(run.model.d_optimizer.iterations.numpy()),
                   "g_iterations": int(run.model.g_optimizer.iterations.numpy()),
                   "generator_parameters": run.model.generator.count_params(),
                   "samples_from": generator.name,
                   "discriminator_parameters": run.model.discriminator.count_params()}
        samples = generate(generator, self.fixed_latents)
        line = interpolation_latents(*self.interpolation_ends, INTERPOLATION_STEPS)
        if run.is_chief:
            save_png(image_grid(samples, GRID_COLUMNS), run.output_path("samples.png"))
            save_png(image_grid(generate(generator, line), INTERPOLATION_STEPS),
                     run.output_path("interpolation.png"))
            frames = sorted(glob.glob(run.output_path("samples/epoch_*.png")))
            save_gif(frames, run.output_path("progress.gif"))
            self._plot_losses(run)
        if self.config.classifier_from:
            judge = self._judge()
            results["quality"] = self._quality(generator, judge)
            if generator is not run.model.generator:  # what the average adds, measured
                print("The trained (not averaged) generator:", flush=True)
                results["quality_trained_generator"] = self._quality(run.model.generator, judge)
        else:
            print("No --classifier_from: the quality numbers (classifier score, Frechet "
                  "distance, class histogram) need a suite classifier of these images, e.g. "
                  "--classifier_from=runs/mnist", flush=True)
        return results

    def _plot_losses(self, run) -> None:
        path = run.output_path("losses.csv")
        if not os.path.exists(path):
            return
        from suite.viz.plots import plot_step_series

        with open(path) as f:
            rows = {int(r["step"]): r for r in csv.DictReader(f)}  # a resumed run's repeats
        steps = sorted(rows)
        plot_step_series(steps, {n: [float(rows[s][n]) for s in steps]
                                 for n in ("d_loss", "g_loss")},
                         run.output_path("losses.png"), f"DCGAN losses ({self.data_name})")

    def _judge(self) -> dict:
        """What every generator is measured against, computed once per evaluation: the
        classifier, the latent vectors, and the real images' features and scores (the floor)."""
        from suite.metrics import generative
        from suite.metrics.classifier_features import load_feature_classifier

        c = self.config
        classifier = load_feature_classifier(c.classifier_from, self.images.shape[1:])
        rng = np.random.default_rng(self.seed + 2)
        latents = rng.normal(size=(c.quality_samples, c.latent_dim)).astype(np.float32)
        real = self.images[rng.permutation(len(self.images))[:c.quality_samples]]
        real_features, real_probs = classifier(real)
        floor = {"real_train_classifier_score": generative.classifier_score(real_probs)[0]}
        if self.test_images is not None:  # the floor: real test images against real training
            test_features, test_probs = classifier(self.test_images[:c.quality_samples])
            floor["real_test_classifier_score"] = generative.classifier_score(test_probs)[0]
            floor["frechet_floor_test_vs_train"] = generative.frechet_distance(
                test_features, real_features)
        return {"classifier": classifier, "latents": latents, "real_features": real_features,
                "floor": floor}

    def _quality(self, generator, judge: dict) -> dict:
        from suite.metrics import generative

        c, classifier = self.config, judge["classifier"]
        fake_features, fake_probs = classifier(generate(generator, judge["latents"]))
        num_classes = fake_probs.shape[1]
        score, score_std = generative.classifier_score(fake_probs)
        histogram = generative.class_histogram(fake_probs, num_classes)
        quality = {
            "classifier": classifier.source, "samples": int(c.quality_samples),
            "classifier_score": score, "classifier_score_std": score_std,
            "frechet_distance": generative.frechet_distance(fake_features,
                                                            judge["real_features"]),
            "class_histogram": histogram.round(4).tolist(), **judge["floor"],
        }
        print(f"Quality by {classifier.source}: classifier score {score:.2f} +- {score_std:.2f} "
              f"(real test {quality.get('real_test_classifier_score', float('nan')):.2f}), "
              f"Frechet distance {quality['frechet_distance']:.3f} (real test vs train "
              f"{quality.get('frechet_floor_test_vs_train', float('nan')):.3f}), classes "
              + " ".join(f"{share:.1%}" for share in histogram), flush=True)
        return quality

    # -- export ------------------------------------------------------------------------------
    def export_metadata(self) -> dict:
        return {"latent_dim": self.config.latent_dim, "image_shape": list(self.images.shape[1:])}

    @classmethod
    def custom_objects(cls):
        from suite.models.dcgan import DCGAN

        return {"DCGAN": DCGAN}

    @classmethod
    def serving_signatures(cls, model, metadata):
        import tensorflow as tf

        from suite.export.guards import answer_nonempty
        from suite.models.dcgan import to_uint8

        generator, latent_dim = model.sampler, int(metadata["latent_dim"])

        def images(latent):  # the generator's convolutions never see an empty batch (oneDNN)
            return answer_nonempty(lambda z: to_uint8(generator(z, training=False)), latent)

        def from_latent(latent):
            return {"images": images(latent)}

        def from_seed(seed):
            """One image per int64 seed, the same image for the same seed on any machine."""
            latent = tf.map_fn(
                lambda s: tf.random.stateless_normal([latent_dim], tf.stack([s, s * 0 + 7])),
                seed, fn_output_signature=tf.TensorSpec([latent_dim], tf.float32))
            return {"images": images(latent), "latent": latent}

        return {
            "serving_default": Signature(from_latent, [
                Input("latent", "float32", (None, latent_dim),
                      about="noise drawn from a standard normal")]),
            "from_seed": Signature(from_seed, [Input("seed", "int64", (None,))]),
        }
