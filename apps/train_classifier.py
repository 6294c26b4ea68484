"""Trains an image classifier (ResNet, plain net, VGG, GoogLeNet) on CIFAR, ImageNet or a folder.

    python -m apps.train_classifier --flagfile=apps/flags/cifar_resnet20.flags
    python -m apps.train_classifier --flagfile=apps/flags/cifar_resnet20.flags \
        --dataset=../shared/data/cifar10-subset/cifar10_jpg_test10000_train20000.zip  # offline

Writes under --model_dir what the MNIST app writes (checkpoints/, backup/, logs/, history.csv,
learning_curves.png, confusion_matrix.png, misclassified.png, results.json with top-1/top-5,
run.json, flags.txt, export/<model>/<version>/ with class names). Running the same command again
resumes.
--init_from starts from another run's weights (transfer learning), --freeze_backbone trains
only the classification head.

Its options (defaults, help, checks) are the fields of suite.tasks.classifier.ClassifierConfig.
"""
from suite.runtime.cli import main as run
from suite.tasks.classifier import ClassifierTask


def main() -> None:
    """Entry point (python -m apps.train_classifier, console script suite-train-classifier)."""
    run(ClassifierTask)


if __name__ == "__main__":
    main()
