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

Its options (defaults, help, checks) are the fields of suite.tasks.dcgan.DcganConfig.
"""
from suite.runtime.cli import main as run
from suite.tasks.dcgan import DcganTask


def main() -> None:
    """Entry point (python -m apps.train_dcgan, console script suite-train-dcgan)."""
    run(DcganTask)


if __name__ == "__main__":
    main()
