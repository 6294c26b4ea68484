"""Trains the book's DeepConvNet on MNIST: the suite's main job.

    python -m apps.train_mnist --flagfile=apps/flags/mnist.flags [--data_dir=<IDX folder>]

Writes under --model_dir: checkpoints/{best,last}.keras, backup/ (resume state), logs/
(TensorBoard), history.csv, learning_curves.png, misclassified.png, results.json and
export/mnist/<version>/ (a SavedModel for TF Serving). Running the same command again resumes.
"""
from __future__ import annotations

import os

from absl import app, flags

from suite.runtime.entry import training_main
from suite.runtime.flags import RuntimeConfig, define_common_flags, runtime_config_from_flags

define_common_flags("runs/mnist", default_epochs=20, default_batch_size=100,
                    default_learning_rate=1e-3)
flags.DEFINE_boolean("augment", False, "Train on randomly rotated and shifted digits.")
flags.DEFINE_float("rotation_degrees", 10.0, "Largest rotation of --augment, in degrees.")
flags.DEFINE_float("shift_pixels", 2.0, "Largest shift of --augment, in pixels.")
flags.DEFINE_enum("dropout", "book", ["book", "inverted"],
                  "book: the book's dropout (no rescaling in training, x0.5 at inference), faithful; "
                  "inverted: Keras's Dropout (x2 in training, identity at inference).")
flags.DEFINE_integer("ensemble_size", 1,
                     "Train N members with seeds seed..seed+N-1 and evaluate their averaged softmax.")
flags.DEFINE_string("init_weights", None,
                    "The book's parameter pickle (W1..W8, b1..b8) to start from; with --epochs=0 "
                    "it is only evaluated. Loaded with a restricted unpickler.")
flags.DEFINE_boolean("verify_checksums", True,
                     "Check that the IDX files in --data_dir are the official MNIST files.")
flags.register_validator("ensemble_size", lambda v: v >= 1, "--ensemble_size must be >= 1")
flags.register_validator("rotation_degrees", lambda v: 0 <= v <= 180,
                         "--rotation_degrees must be in [0, 180]")
flags.register_validator("shift_pixels", lambda v: 0 <= v <= 14, "--shift_pixels must be in [0, 14]")
flags.register_multi_flags_validator(
    ["init_weights", "ensemble_size"],
    lambda f: not (f["init_weights"] and f["ensemble_size"] > 1),
    "--init_weights loads one set of weights: it cannot seed an ensemble (use --ensemble_size=1)")
flags.register_validator("init_weights", lambda v: v is None or os.path.isfile(v),
                         "--init_weights must name an existing pickle file")

FLAGS = flags.FLAGS
EXPORT_NAME = "mnist"


def run(config: RuntimeConfig, augment: bool = False, rotation_degrees: float = 10.0,
        shift_pixels: float = 2.0, dropout: str = "book", ensemble_size: int = 1,
        init_weights: str | None = None,
        verify_checksums: bool = True, datasets_override=None, strategy_override=None) -> dict:
    """Trains, evaluates, draws and exports; returns the results dict (also in results.json).

    `datasets_override` ((x_train, y_train), (x_test, y_test)) and `strategy_override` let tests
    inject tiny data and a strategy instead of patching globals.
    """
    # -- devices and precision (before any other TensorFlow op) ---------------------------
    from suite.runtime.devices import setup_runtime

    runtime = setup_runtime(config.strategy, config.precision, config.seed, config.deterministic,
                            strategy_override)
    print(f"Runtime: {runtime.describe()}", flush=True)
    from suite.data.sharding import check_global_batch

    check_global_batch(config.batch_size, runtime.num_replicas)

    import keras
    import numpy as np

    from suite.data import pipeline
    from suite.data.mnist import load_mnist
    from suite.models.deep_convnet import build_augmentation, build_deep_convnet
    from suite.runtime import evaluation
    from suite.runtime.optim import make_optimizer
    from suite.runtime.training import RunPaths, build_in_scope, fit_resumable
    from suite.viz import plots

    # -- input pipeline -------------------------------------------------------------------
    (x_train, y_train), (x_test, y_test) = datasets_override or load_mnist(
        config.data_dir, verify_checksums)
    steps = config.steps_per_epoch or pipeline.steps_per_epoch(len(x_train), config.batch_size)
    test_ds = pipeline.eval_dataset(x_test, y_test, 1000)

    # -- members: model, optimizer, training (resumable) -----------------------------------
    def build(seed: int, name: str) -> keras.Model:
        aug = build_augmentation(rotation_degrees, shift_pixels, seed) if augment else None
        model = build_deep_convnet(augmentation=aug, dropout=dropout, name=name)
        model.compile(optimizer=make_optimizer(config, steps),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    members, probabilities, trained_now = [], [], False
    for k in range(ensemble_size):
        seed = config.seed + k
        member_dir = config.model_dir if ensemble_size == 1 else os.path.join(
            config.model_dir, f"member-{k}")
        keras.utils.set_random_seed(seed)
        paths = RunPaths.for_role(member_dir, runtime)
        name = "deep_convnet" if ensemble_size == 1 else f"deep_convnet_{k}"  # unique in the average
        model = build_in_scope(runtime, lambda: build(seed, name))
        if init_weights:
            from suite.interop.book import import_book_params, load_book_params

            import_book_params(model, load_book_params(init_weights))
        train_ds = pipeline.train_dataset(x_train, y_train, config.batch_size, seed)
        outcome = fit_resumable(model, train_ds, test_ds, config, steps, runtime, paths)
        if outcome.status != "completed":
            paths.cleanup()
            return outcome.results()
        trained_now = trained_now or outcome.trained_now
        members.append(model)
        probabilities.append(evaluation.predict_probabilities(model, x_test))
        if runtime.role.is_chief and os.path.exists(paths.history_csv):
            plots.plot_learning_curves(plots.read_history(paths.history_csv),
                                       os.path.join(member_dir, "learning_curves.png"),
                                       title=f"DeepConvNet on MNIST (seed {seed})")
        paths.cleanup()

    # -- evaluation --------------------------------------------------------------------------
    mean_probs = np.mean(probabilities, axis=0)
    predictions = np.argmax(mean_probs, axis=-1)
    results_path = os.path.join(config.model_dir, "results.json")
    results = evaluation.read_results(results_path)
    results.update({
        "status": "completed", "exit_code": 0,
        "test_accuracy": evaluation.accuracy(mean_probs, y_test),
        "member_test_accuracies": [evaluation.accuracy(p, y_test) for p in probabilities],
        "test_examples": int(len(y_test)), "epochs": config.epochs, "seed": config.seed,
        "ensemble_size": ensemble_size, "precision": runtime.precision,
        "replicas": runtime.num_replicas,
    })
    print(f"Test accuracy: {100 * results['test_accuracy']:.2f}% "
          f"({int((predictions == y_test).sum())}/{len(y_test)})", flush=True)
    if not runtime.role.is_chief:
        return results
    plots.plot_misclassified(x_test, y_test, predictions,
                             os.path.join(config.model_dir, "misclassified.png"))

    # -- export ----------------------------------------------------------------------------
    if config.export and not evaluation.export_is_current(results, trained_now):
        from suite.export.saved_model import export_classifier

        served = members[0] if len(members) == 1 else _average(members)
        results["export"] = os.path.abspath(export_classifier(
            served, config.resolved_export_dir, EXPORT_NAME, class_names=[str(d) for d in range(10)]))
        print(f"SavedModel: {results['export']}", flush=True)
    evaluation.write_results(results_path, results)
    return results


def _average(members):
    """One model whose output is the mean softmax of the members (what the ensemble serves)."""
    import keras

    image = keras.Input(shape=members[0].input_shape[1:], name="image")
    outputs = [m(image, training=False) for m in members]
    mean = keras.layers.Average(name="probabilities", dtype="float32")(outputs)
    return keras.Model(image, mean, name="deep_convnet_ensemble")


def run_from_flags() -> dict:
    """`run` with every argument taken from the parsed flags."""
    return run(runtime_config_from_flags(), augment=FLAGS.augment,
               rotation_degrees=FLAGS.rotation_degrees, shift_pixels=FLAGS.shift_pixels,
               dropout=FLAGS.dropout, ensemble_size=FLAGS.ensemble_size,
               init_weights=FLAGS.init_weights, verify_checksums=FLAGS.verify_checksums)


main = training_main(run_from_flags)


def run_main():
    """console_scripts entry point."""
    app.run(main)


if __name__ == "__main__":
    run_main()
