"""The book's DeepConvNet on MNIST (or an ensemble of them): the suite's main job.

The best epoch is chosen on the first 5,000 training images, held out (the 55,000 / 5,000
split of TensorFlow's MNIST tutorials); the test set is evaluated once, at the end, on that
epoch's model. `validation=test` validates on the test set every epoch, as the book does.
Writes, besides what every run writes, confusion_matrix.png and misclassified.png; exports
mnist/<version>/ with the image classifiers' three signatures.
"""
from __future__ import annotations

import dataclasses

from suite.config import Config, existing_path, group, option, rule
from suite.runtime.config import OptimizerConfig, RuntimeConfig, ScheduleConfig, validation_option
from suite.tasks.classification import ImageClassificationTask

TRAINING_SUBSET = 2000  # training images the curves' inference-mode accuracy is measured on


@dataclasses.dataclass
class MnistConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/mnist")
    schedule: ScheduleConfig = group(ScheduleConfig, epochs=20, batch_size=100)
    optimizer: OptimizerConfig = group(OptimizerConfig, learning_rate=1e-3)
    data_dir: str | None = option(
        None, "Folder with the four original MNIST IDX .gz files for offline use; unset: "
        "download through tensorflow-datasets.")
    verify_checksums: bool = option(True, "Check that the IDX files in --data_dir are the "
                                    "official MNIST files.")
    augment: bool = option(False, "Train on randomly rotated and shifted digits.")
    rotation_degrees: float = option(10.0, "Largest rotation of --augment, in degrees.",
                                     bounds="[0, 180]")
    shift_pixels: float = option(2.0, "Largest shift of --augment, in pixels.", bounds="[0, 14]")
    dropout: str = option(
        "book", "book: the book's dropout (no rescaling in training, x0.5 at inference), "
        "faithful; inverted: Keras's Dropout (x2 in training, identity at inference).",
        choices=("book", "inverted"))
    ensemble_size: int = option(1, "Train N members with seeds seed..seed+N-1 and evaluate (and "
                                "export) their averaged softmax.", bounds=">= 1")
    validation: str = validation_option(
        "the first `validation_images` training images, held out (the 55,000 / 5,000 split of "
        "TensorFlow's MNIST tutorials)")
    validation_images: int = option(5000, "Training images held out for validation (the first "
                                    "N; at most a twelfth of the training set, as 5,000 of "
                                    "60,000).", bounds=">= 1")
    init_weights: str | None = option(
        None, "The book's parameter pickle (W1..W8, b1..b8) to start from; with --epochs=0 it "
        "is only evaluated (and left in checkpoints/last.keras). Loaded with a restricted "
        "unpickler.",
        check=existing_path(what="an existing pickle file", kind="file", verb="name"))

    @rule("init_weights", "ensemble_size")
    def _one_set_of_weights(init_weights, ensemble_size):
        if init_weights and ensemble_size > 1:
            return ("`init_weights` loads one set of weights: it cannot seed an ensemble (use "
                    "`ensemble_size=1`)")


class MnistTask(ImageClassificationTask):
    """DeepConvNet (or an ensemble of them) on MNIST."""
    config_class = MnistConfig
    name = "mnist"
    class_names = [str(d) for d in range(10)]
    image_shape = (28, 28, 1)

    def __init__(self, config: MnistConfig, data_override=None):
        """`data_override`: ((x_train, y_train), (x_test, y_test)) arrays instead of MNIST."""
        super().__init__(config, data_override)
        self.initial_weights = config.init_weights

    def load_data(self, run):
        from suite.data import pipeline
        from suite.data.holdout import stratified_sample
        from suite.data.mnist import load_mnist

        c = self.config
        (self.x_train, self.y_train), (self.x_test, self.y_test) = (
            self.data_override or load_mnist(c.data_dir, c.verify_checksums))
        if c.validation == "holdout":
            held = min(c.validation_images, len(self.x_train) // 12)
            x_val, y_val = self.x_train[:held], self.y_train[:held]
            self.x_train, self.y_train = self.x_train[held:], self.y_train[held:]
            self.validation_split = f"the first {held} training images"
        else:
            x_val, y_val = self.x_test, self.y_test
            self.validation_split = f"the {len(self.x_test)} test images"
        self.steps_per_epoch = c.schedule.steps_per_epoch or pipeline.steps_per_epoch(
            len(self.x_train), c.schedule.batch_size)
        self.validation_data = pipeline.eval_dataset(x_val, y_val, 1000)
        sample = stratified_sample(self.y_train, TRAINING_SUBSET, self.seed)
        self.training_subset = pipeline.eval_dataset(self.x_train[sample], self.y_train[sample],
                                                     1000)
        print(f"MNIST: {len(self.x_train)} training, {len(x_val)} validation "
              f"({self.validation_split}), {len(self.x_test)} test images", flush=True)

    def build(self, run):
        import keras

        from suite.models.deep_convnet import build_augmentation, build_deep_convnet
        from suite.runtime.optim import make_optimizer

        c = self.config
        members = {}
        for k in range(c.ensemble_size):
            seed = self.seed + k
            keras.utils.set_random_seed(seed)
            aug = (build_augmentation(c.rotation_degrees, c.shift_pixels, seed)
                   if c.augment else None)
            name = "deep_convnet" if c.ensemble_size == 1 else f"deep_convnet_{k}"
            model = build_deep_convnet(augmentation=aug, dropout=c.dropout, name=name)
            model.compile(optimizer=make_optimizer(c.optimizer, self.steps_per_epoch,
                                                   self.epochs),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            members[name] = model
        if c.init_weights:
            from suite.interop.book import import_book_params, load_book_params

            import_book_params(next(iter(members.values())), load_book_params(c.init_weights))
        return members

    def train(self, run):
        from suite.data import pipeline

        c = self.config
        outcome = None
        for k, model in enumerate(run.models.values()):
            seed = self.seed + k
            train_data = pipeline.train_dataset(self.x_train, self.y_train,
                                                c.schedule.batch_size, seed)
            outcome = run.fit(model, train_data, self.validation_data, epochs=self.epochs,
                              steps_per_epoch=self.steps_per_epoch,
                              subdir=None if c.ensemble_size == 1 else f"member-{k}",
                              title=f"DeepConvNet on MNIST (seed {seed})")
            if outcome.status != "completed":
                break
        return outcome

    def served_model(self, run):
        if self.config.ensemble_size == 1:
            return super().served_model(run)
        import keras

        members = list(run.models.values())  # one model: the mean of the members' softmax
        if self.export_checkpoint == "best":  # each member as its validation chose it
            self.member_epochs = [_load_best(m, run.run_dir, k) for k, m in enumerate(members)]
        image = keras.Input(shape=self.image_shape, name="image")
        mean = keras.layers.Average(name="probabilities", dtype="float32")(
            [m(image, training=False) for m in members])
        return keras.Model(image, mean, name="deep_convnet_ensemble")

    def evaluate(self, run):
        import numpy as np

        from suite.runtime import evaluation

        served = run.served
        members = ([served] if self.config.ensemble_size == 1 else list(run.models.values()))
        member_probabilities = [evaluation.predict_probabilities(m, self.x_test)
                                for m in members]
        results = self.report(run, np.mean(member_probabilities, axis=0), self.y_test,
                              images=self.x_test, title="DeepConvNet on MNIST")
        results.update({
            "member_test_accuracies": [evaluation.accuracy(p, self.y_test)
                                       for p in member_probabilities],
            "epochs": self.epochs, "ensemble_size": self.config.ensemble_size,
        })
        if hasattr(self, "member_epochs"):
            results["member_epochs_chosen"] = self.member_epochs
        return results


def _load_best(model, run_dir: str, member: int) -> int | None:
    """Member `member`'s best.keras weights into `model` (its own folder's checkpoint, chosen
    on the validation images); the epoch they are from, or None where there is none."""
    import os

    from suite.runtime.records import EpochCheckpoints

    checkpoints = EpochCheckpoints(os.path.join(run_dir, f"member-{member}", "checkpoints"))
    if not os.path.isfile(checkpoints.best_path):
        return None
    model.load_weights(checkpoints.best_path)
    return checkpoints.best_info().get("epoch")
