"""Trains the book's DeepConvNet on MNIST: the suite's main job.

    python -m apps.train_mnist --flagfile=apps/flags/mnist.flags [--data_dir=<IDX folder>]

Writes under --model_dir: checkpoints/{best,last}.keras, backup/ (resume state), logs/
(TensorBoard), history.csv, learning_curves.png, confusion_matrix.png, misclassified.png,
results.json, run.json, flags.txt and export/mnist/<version>/ (a SavedModel for TF Serving).
Running the same command again resumes.
"""
from __future__ import annotations

import os

from absl import flags

from suite.runtime import flags as suite_flags
from suite.tasks.classification import ImageClassificationTask


def define_flags(fv: flags.FlagValues) -> None:
    suite_flags.define_runtime_flags(fv, "runs/mnist")
    suite_flags.define_schedule_flags(fv, default_epochs=20, default_batch_size=100)
    suite_flags.define_optimizer_flags(fv, default_learning_rate=1e-3)
    flags.DEFINE_string("data_dir", None, "Folder with the four original MNIST IDX .gz files for "
                        "offline use; unset: download through tensorflow-datasets.",
                        flag_values=fv)
    flags.DEFINE_boolean("verify_checksums", True, "Check that the IDX files in --data_dir are "
                         "the official MNIST files.", flag_values=fv)
    flags.DEFINE_boolean("augment", False, "Train on randomly rotated and shifted digits.",
                         flag_values=fv)
    flags.DEFINE_float("rotation_degrees", 10.0, "Largest rotation of --augment, in degrees.",
                       flag_values=fv)
    flags.DEFINE_float("shift_pixels", 2.0, "Largest shift of --augment, in pixels.",
                       flag_values=fv)
    flags.DEFINE_enum("dropout", "book", ["book", "inverted"],
                      "book: the book's dropout (no rescaling in training, x0.5 at inference), "
                      "faithful; inverted: Keras's Dropout (x2 in training, identity at "
                      "inference).", flag_values=fv)
    flags.DEFINE_integer("ensemble_size", 1, "Train N members with seeds seed..seed+N-1 and "
                         "evaluate (and export) their averaged softmax.", flag_values=fv)
    flags.DEFINE_string("init_weights", None, "The book's parameter pickle (W1..W8, b1..b8) to "
                        "start from; with --epochs=0 it is only evaluated (and left in "
                        "checkpoints/last.keras). Loaded with a restricted unpickler.",
                        flag_values=fv)
    flags.register_validator("ensemble_size", lambda v: v >= 1, "--ensemble_size must be >= 1",
                             flag_values=fv)
    flags.register_validator("rotation_degrees", lambda v: 0 <= v <= 180,
                             "--rotation_degrees must be in [0, 180]", flag_values=fv)
    flags.register_validator("shift_pixels", lambda v: 0 <= v <= 14,
                             "--shift_pixels must be in [0, 14]", flag_values=fv)
    flags.register_validator("init_weights", lambda v: v is None or os.path.isfile(v),
                             "--init_weights must name an existing pickle file", flag_values=fv)
    flags.register_multi_flags_validator(
        ["init_weights", "ensemble_size"],
        lambda f: not (f["init_weights"] and f["ensemble_size"] > 1),
        "--init_weights loads one set of weights: it cannot seed an ensemble (use "
        "--ensemble_size=1)", flag_values=fv)


TRAINING_SUBSET = 2000  # training images the curves' inference-mode accuracy is measured on


class MnistTask(ImageClassificationTask):
    """DeepConvNet (or an ensemble of them) on MNIST; test-set validation, as the book does."""
    name = "mnist"
    class_names = [str(d) for d in range(10)]
    image_shape = (28, 28, 1)

    def __init__(self, schedule: suite_flags.ScheduleConfig,
                 optimizer: suite_flags.OptimizerConfig, seed: int = 0,
                 data_dir: str | None = None, verify_checksums: bool = True,
                 augment: bool = False, rotation_degrees: float = 10.0,
                 shift_pixels: float = 2.0, dropout: str = "book", ensemble_size: int = 1,
                 init_weights: str | None = None, data_override=None):
        self.schedule, self.optimizer, self.seed = schedule, optimizer, seed
        self.data_dir, self.verify_checksums = data_dir, verify_checksums
        self.augment, self.rotation_degrees, self.shift_pixels = augment, rotation_degrees, \
            shift_pixels
        self.dropout, self.ensemble_size, self.init_weights = dropout, ensemble_size, init_weights
        self.initial_weights = init_weights
        self.data_override = data_override  # ((x_train, y_train), (x_test, y_test)) for tests
        self.global_batch_size = schedule.batch_size
        self.epochs = schedule.epochs

    def load_data(self, run):
        from suite.data import pipeline
        from suite.data.mnist import load_mnist

        (self.x_train, self.y_train), (self.x_test, self.y_test) = (
            self.data_override or load_mnist(self.data_dir, self.verify_checksums))
        self.steps_per_epoch = self.schedule.steps_per_epoch or pipeline.steps_per_epoch(
            len(self.x_train), self.schedule.batch_size)
        self.validation_data = pipeline.eval_dataset(self.x_test, self.y_test, 1000)
        self.training_subset = pipeline.eval_dataset(self.x_train[:TRAINING_SUBSET],
                                                     self.y_train[:TRAINING_SUBSET], 1000)

    def build(self, run):
        import keras

        from suite.models.deep_convnet import build_augmentation, build_deep_convnet
        from suite.runtime.optim import make_optimizer

        members = {}
        for k in range(self.ensemble_size):
            seed = self.seed + k
            keras.utils.set_random_seed(seed)
            aug = (build_augmentation(self.rotation_degrees, self.shift_pixels, seed)
                   if self.augment else None)
            name = "deep_convnet" if self.ensemble_size == 1 else f"deep_convnet_{k}"
            model = build_deep_convnet(augmentation=aug, dropout=self.dropout, name=name)
            model.compile(optimizer=make_optimizer(self.optimizer, self.steps_per_epoch,
                                                   self.epochs),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            members[name] = model
        if self.init_weights:
            from suite.interop.book import import_book_params, load_book_params

            import_book_params(next(iter(members.values())), load_book_params(self.init_weights))
        return members

    def train(self, run):
        from suite.data import pipeline

        outcome = None
        for k, model in enumerate(run.models.values()):
            seed = self.seed + k
            train_data = pipeline.train_dataset(self.x_train, self.y_train,
                                                self.schedule.batch_size, seed)
            outcome = run.fit(model, train_data, self.validation_data, epochs=self.epochs,
                              steps_per_epoch=self.steps_per_epoch,
                              subdir=None if self.ensemble_size == 1 else f"member-{k}",
                              title=f"DeepConvNet on MNIST (seed {seed})")
            if outcome.status != "completed":
                break
        return outcome

    def served_model(self, run):
        if self.ensemble_size == 1:
            return run.model
        import keras

        members = list(run.models.values())  # one model: the mean of the members' softmax
        image = keras.Input(shape=self.image_shape, name="image")
        mean = keras.layers.Average(name="probabilities", dtype="float32")(
            [m(image, training=False) for m in members])
        return keras.Model(image, mean, name="deep_convnet_ensemble")

    def evaluate(self, run):
        import numpy as np

        from suite.runtime import evaluation

        members = [evaluation.predict_probabilities(m, self.x_test) for m in run.models.values()]
        results = self.report(run, np.mean(members, axis=0), self.y_test, images=self.x_test,
                              title="DeepConvNet on MNIST")
        results.update({
            "member_test_accuracies": [evaluation.accuracy(p, self.y_test) for p in members],
            "epochs": self.epochs, "ensemble_size": self.ensemble_size,
        })
        return results


def make_task(fv: flags.FlagValues, data_override=None) -> MnistTask:
    return MnistTask(suite_flags.schedule_config(fv), suite_flags.optimizer_config(fv),
                     seed=fv.seed, data_dir=fv.data_dir, verify_checksums=fv.verify_checksums,
                     augment=fv.augment, rotation_degrees=fv.rotation_degrees,
                     shift_pixels=fv.shift_pixels, dropout=fv.dropout,
                     ensemble_size=fv.ensemble_size, init_weights=fv.init_weights,
                     data_override=data_override)


def main() -> None:
    """Entry point (python -m apps.train_mnist, console script suite-train-mnist)."""
    from suite.runtime.runner import main as run_main

    run_main(define_flags, make_task)


if __name__ == "__main__":
    main()
