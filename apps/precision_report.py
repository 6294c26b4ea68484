"""Measures a trained MNIST model in every precision: Keras float32/float16/bfloat16, the
SavedModel, and TFLite float32/float16/dynamic-range/int8.

    python -m apps.precision_report --model_dir=runs/mnist --data_dir=<folder with the 4 MNIST
        IDX .gz files> --out=runs/mnist/precision

Writes <out>/precision.{md,csv,json} (variant, size in bytes, test accuracy, median CPU latency
at batch 1 and 256) and every variant's file under <out>/variants/. Latencies use --num_threads
threads for both TensorFlow and the TFLite interpreter, so the engines compare on equal terms.
"""
from __future__ import annotations

import os

from absl import app, flags, logging

from suite.runtime.flags import parse_flags, start_tool, tool_error


def define_flags() -> None:
    """Defines this app's flags; called from run(), so importing the module defines none."""
    flags.DEFINE_string("model_dir", None, "Training folder holding checkpoints/{best,last}.keras "
                        "(the --model_dir given to python -m apps.train_mnist).")
    flags.DEFINE_enum("checkpoint", "last", ["best", "last"],
                      "Which checkpoint to measure: last (the trained model) or best (chosen on "
                      "the validation data, which is the test set in the MNIST app).")
    flags.DEFINE_string("data_dir", None, "Folder with the four MNIST IDX .gz files "
                        "(train/t10k images and labels).")
    flags.DEFINE_string("out", None, "Output folder for the tables and variant files; default "
                        "<model_dir>/precision. Must not already hold variants/.")
    flags.DEFINE_integer("num_threads", 1, "CPU threads for TensorFlow and TFLite during the "
                         "measurement (1: steadiest numbers on a shared machine).")
    flags.DEFINE_integer("calibration_images", 500, "Training images (random, seed 0) that "
                         "calibrate the int8 activation ranges.")
    flags.DEFINE_integer("test_images", 0, "Evaluate on the first N test images; 0: all 10,000.")
    flags.DEFINE_integer("repeats_b1", 50, "Timed runs at batch 1 (the median is reported).")
    flags.DEFINE_integer("repeats_b256", 10, "Timed runs at batch 256 (the median is reported).")
    flags.DEFINE_boolean("verify_checksums", True,
                         "Check that the IDX files in --data_dir are the official MNIST files.")
    flags.mark_flags_as_required(["model_dir", "data_dir"])
    for name in ("num_threads", "calibration_images", "repeats_b1", "repeats_b256"):
        flags.register_validator(name, lambda v: v >= 1, f"--{name} must be >= 1")
    flags.register_validator("test_images", lambda v: v >= 0, "--test_images must be >= 0")


FLAGS = flags.FLAGS
MNIST_INPUT = (28, 28, 1)


def check_mnist_model(model, path: str, model_dir: str) -> None:
    """ValueError unless `model` classifies MNIST images: 28x28x1 in, 10 probabilities out."""
    inputs = [tuple(t.shape[1:]) for t in model.inputs]
    outputs = [tuple(t.shape[1:]) for t in model.outputs]
    if inputs == [MNIST_INPUT] and outputs == [(10,)]:
        return
    from suite.runtime.run_file import read_run_file

    try:
        run = read_run_file(model_dir) or {}
    except ValueError:  # a damaged run.json: only this message's detail is lost
        run = {}
    made_by = f" (made by {run['app']})" if run.get("app") else ""
    shown = lambda shapes: " and ".join("x".join(map(str, s)) for s in shapes) or "none"
    raise ValueError(f"{path}{made_by} is not an MNIST classifier: its inputs are {shown(inputs)} "
                     f"and its outputs {shown(outputs)}, where the report needs 28x28x1 images "
                     "in and 10 class probabilities out. Point --model_dir at a python -m "
                     "apps.train_mnist run.")


def report(model_dir: str, data_dir: str, out: str | None = None, checkpoint: str = "last",
           num_threads: int = 1, calibration_images: int = 500, test_images: int = 0,
           repeats_b1: int = 50, repeats_b256: int = 10, verify_checksums: bool = True) -> dict:
    """Builds and writes the precision table; returns the report dict."""
    from suite.runtime.run_file import checkpoint_path

    path = checkpoint_path(model_dir, checkpoint)  # fails fast, before loading TensorFlow
    import tensorflow as tf

    try:  # only possible before TensorFlow runs its first op
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(num_threads)
    except RuntimeError:
        logging.warning("TensorFlow is already running: its thread count stays as it was.")
    import numpy as np

    from suite.data.mnist import load_mnist_arrays
    from suite.export.precision_report import build_precision_table, write_report
    from suite.models.registry import load_keras_file

    (x_train, _), (x_test, y_test) = load_mnist_arrays(data_dir, verify_checksums)
    if test_images:
        x_test, y_test = x_test[:test_images], y_test[:test_images]
    pick = np.random.default_rng(0).choice(len(x_train), min(calibration_images, len(x_train)),
                                           replace=False)
    out = out or os.path.join(model_dir, "precision")
    model = load_keras_file(path)
    check_mnist_model(model, path, model_dir)
    result = build_precision_table(model, x_train[pick], x_test, y_test, out, name="mnist",
                                   repeats_b1=repeats_b1, repeats_b256=repeats_b256,
                                   num_threads=num_threads, calibration_steps=calibration_images)
    result["bars"]["tf_intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    result["paths"] = write_report(result, out)
    return result


def main(argv):
    from suite.errors import DataError
    from suite.runtime.run_file import checkpoint_path
    from suite.runtime.startup import load_tensorflow

    verbose = start_tool(argv)
    try:
        checkpoint_path(FLAGS.model_dir, FLAGS.checkpoint)  # fails fast, before TensorFlow loads
        load_tensorflow(quiet=not verbose)
        result = report(FLAGS.model_dir, FLAGS.data_dir, FLAGS.out, FLAGS.checkpoint,
                        FLAGS.num_threads, FLAGS.calibration_images, FLAGS.test_images,
                        FLAGS.repeats_b1, FLAGS.repeats_b256, FLAGS.verify_checksums)
    except (DataError, FileNotFoundError, FileExistsError, ValueError) as e:
        tool_error(e)
    from suite.export.precision_report import markdown_table

    print(markdown_table(result), flush=True)
    print(f"Written: {', '.join(result['paths'].values())}", flush=True)


def run():
    """console_scripts entry point."""
    define_flags()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
