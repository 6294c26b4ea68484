"""Trains a DCGAN (Radford et al. 2015) on MNIST, CIFAR-10, an image folder or a tfds set.

    python -m apps.train_dcgan --flagfile=apps/flags/dcgan_mnist.flags      # offline MNIST
    python -m apps.train_dcgan --model_dir=runs/dcgan_cifar --base_filters=128 \
        --dataset=../shared/data/cifar10-subset/cifar10_jpg_test10000_train20000.zip

Writes under --model_dir what every app writes (checkpoints/, backup/, logs/, history.csv,
learning_curves.png, results.json, run.json, flags.txt, export/dcgan/<version>/) plus
samples/epoch_NNN.png (the same latent vectors every epoch, also in TensorBoard),
progress.gif, samples.png, interpolation.png, losses.csv and losses.png (every
--log_every_steps steps). With --classifier_from (a suite classifier of the same images, e.g.
an apps.train_mnist run) results.json has the classifier score, the Frechet distance on that
classifier's features with its real-vs-real floor, and the class histogram of generated
images. Running the same command again resumes both networks, both optimizers, the data
stream and the noise (drawn from --seed and the step): it goes on as if never stopped.
"""
from __future__ import annotations

import os

from absl import flags

from suite.runtime import flags as suite_flags
from suite.tasks.dcgan import DcganConfig, DcganTask


def define_flags(fv: flags.FlagValues) -> None:
    suite_flags.define_runtime_flags(fv, "runs/dcgan")
    suite_flags.define_schedule_flags(fv, default_epochs=5, default_batch_size=128)
    for prefix, of in (("d_", "the discriminator"), ("g_", "the generator")):
        suite_flags.define_optimizer_flags(fv, prefix, default_learning_rate=2e-4,
                                           default_beta_1=0.5, of=of)
    flags.DEFINE_string("dataset", "mnist", "mnist (IDX files in --mnist_dir, else tfds), the "
                        "CIFAR-10 zip of ../shared/data/cifar10-subset, a folder of .png/.jpg "
                        "images (a classifier folder's train/ part is used), or a "
                        "tensorflow-datasets image set.", flag_values=fv)
    flags.DEFINE_string("mnist_dir", None, "Folder with the four MNIST IDX .gz files (offline), "
                        "e.g. ../shared/data/mnist; unset: tensorflow-datasets.", flag_values=fv)
    flags.DEFINE_string("data_dir", None, "tensorflow-datasets' data folder for a tfds "
                        "--dataset.", flag_values=fv)
    flags.DEFINE_integer("image_size", 0, "Side of the generated images; images are "
                         "centre-cropped and resized to it. 0: the images' own (28 MNIST, 32 "
                         "CIFAR). It must halve to a map of 4 or more (28, 32, 64, ...).",
                         flag_values=fv)
    flags.DEFINE_boolean("grayscale", False, "Train on one channel (the mean of RGB).",
                         flag_values=fv)
    flags.DEFINE_integer("limit", 0, "Keep only the first N training images (quick runs); 0: "
                         "all.", flag_values=fv)
    flags.DEFINE_integer("latent_dim", 100, "Length of the latent vector z (the paper: 100, "
                         "uniform; here normal).", flag_values=fv)
    flags.DEFINE_integer("base_filters", 64, "Filters of the discriminator's first and the "
                         "generator's last hidden layer, doubled at every other layer (the "
                         "paper's 64x64 net: 128).", flag_values=fv)
    flags.DEFINE_float("ema_decay", 0.0, "Beyond the paper: keep an exponential moving average "
                       "of the generator's weights with this decay per step (e.g. 0.999) and "
                       "draw samples, quality numbers and the export from it; 0: off, the "
                       "trained generator draws.", flag_values=fv)
    flags.register_validator("ema_decay", lambda v: 0.0 <= v < 1.0,
                             "--ema_decay must be in [0, 1)", flag_values=fv)
    flags.DEFINE_integer("refine_layers", 0, "Beyond the paper: stride-1 5x5 layers (batch "
                         "norm, ReLU) on the generator's smallest map before it grows, as "
                         "TensorFlow's DCGAN tutorial has one; 0: the paper's generator.",
                         flag_values=fv)
    flags.DEFINE_boolean("reuse_fakes", False, "Beyond the paper: the generator step reuses the "
                         "batch the discriminator step generated (as PyTorch's DCGAN example "
                         "does) instead of fresh noise: one generator forward pass a step "
                         "instead of two, so more steps in the same time.", flag_values=fv)
    flags.DEFINE_integer("grid_size", 64, "Images in each epoch's sample grid (8 a row).",
                         flag_values=fv)
    flags.DEFINE_string("classifier_from", None, "A suite classifier of the same images (its "
                        "model_dir or .keras file, e.g. an apps.train_mnist run) that measures "
                        "the generated images: classifier score, Frechet distance on its "
                        "features, class histogram.", flag_values=fv)
    flags.DEFINE_integer("quality_samples", 10000, "Generated (and real) images the quality "
                         "numbers use.", flag_values=fv)
    flags.DEFINE_integer("log_every_steps", 10, "Write the step's two losses to TensorBoard "
                         "and losses.csv every N steps.", flag_values=fv)
    suite_flags.require_at_least(fv, 1, "latent_dim", "base_filters", "grid_size",
                                 "log_every_steps")
    flags.register_validator("quality_samples", lambda v: v >= 20,
                             "--quality_samples must be >= 20 (it is split in 10 chunks)",
                             flag_values=fv)
    suite_flags.require_at_least(fv, 0, "image_size", "limit", "refine_layers")
    flags.register_validator(
        "classifier_from", lambda v: v is None or os.path.exists(v),
        "--classifier_from must be an existing model_dir or .keras file", flag_values=fv)
    flags.register_validator(
        "mnist_dir", lambda v: v is None or os.path.isdir(v),
        "--mnist_dir must be a folder holding the MNIST IDX .gz files", flag_values=fv)


def make_task(fv: flags.FlagValues, data_override=None) -> DcganTask:
    config = DcganConfig(
        dataset=fv.dataset, mnist_dir=fv.mnist_dir, data_dir=fv.data_dir,
        image_size=fv.image_size, grayscale=fv.grayscale, limit=fv.limit,
        latent_dim=fv.latent_dim, base_filters=fv.base_filters, ema_decay=fv.ema_decay,
        refine_layers=fv.refine_layers, reuse_fakes=fv.reuse_fakes, grid_size=fv.grid_size,
        classifier_from=fv.classifier_from, quality_samples=fv.quality_samples,
        log_every_steps=fv.log_every_steps)
    return DcganTask(config, suite_flags.schedule_config(fv),
                     suite_flags.optimizer_config(fv, "d_"), suite_flags.optimizer_config(fv, "g_"),
                     seed=fv.seed, data_override=data_override)


def main() -> None:
    """Entry point (python -m apps.train_dcgan, console script suite-train-dcgan)."""
    from suite.runtime.runner import main as run_main

    run_main(define_flags, make_task)


if __name__ == "__main__":
    main()
