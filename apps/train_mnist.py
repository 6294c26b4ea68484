"""Trains the book's DeepConvNet on MNIST: the suite's main job.

    python -m apps.train_mnist --flagfile=apps/flags/mnist.flags [--data_dir=<IDX folder>]

Writes under --model_dir: checkpoints/{best,last}.keras, backup/ (resume state), logs/
(TensorBoard), history.csv, learning_curves.png, confusion_matrix.png, misclassified.png,
results.json, run.json, flags.txt and export/mnist/<version>/ (a SavedModel for TF Serving).
Running the same command again resumes.

Its options (defaults, help, checks) are the fields of suite.tasks.mnist.MnistConfig.
"""
from suite.runtime.cli import main as run
from suite.tasks.mnist import MnistTask


def main() -> None:
    """Entry point (python -m apps.train_mnist, console script suite-train-mnist)."""
    run(MnistTask)


if __name__ == "__main__":
    main()
