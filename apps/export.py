r"""Exports a trained checkpoint as a SavedModel for TF Serving.

    python -m apps.export --model_dir=runs/mnist --export_dir=runs/mnist/export [--name=mnist]
        [--version=N] [--checkpoint=best|last]

Reads <model_dir>/checkpoints/<checkpoint>.keras (written by `python -m apps.train_mnist`) and
writes <export_dir>/<name>/<version>/ (next free version unless --version). Signatures:
serving_default (image float32 [batch, 28, 28, 1], raw pixels 0..255), serve_uint8 (same in
uint8) and serve_image_bytes (image_bytes: encoded PNG/JPEG strings); each returns probabilities
and class_ids.

Inspect and run it without a server:

    saved_model_cli show --dir <export_dir>/mnist/1 --all
    python -c "import numpy as np; np.save('digits.npy', np.zeros((2, 28, 28, 1), np.float32))"
    saved_model_cli run --dir <export_dir>/mnist/1 --tag_set serve \
        --signature_def serving_default --inputs image=digits.npy

Serve it with TF Serving (it loads the highest version and picks up new ones as they appear):

    docker run -p 8501:8501 -v "$(realpath <export_dir>)/mnist:/models/mnist" \
        -e MODEL_NAME=mnist tensorflow/serving
    curl -X POST http://localhost:8501/v1/models/mnist:predict -d \
        '{"signature_name": "serving_default", "instances": [<28x28x1 nested list of 0..255>]}'
    # PNG files: base64 goes in {"b64": ...} for a string input
    curl -X POST http://localhost:8501/v1/models/mnist:predict -d "{\"signature_name\": \
        \"serve_image_bytes\", \"instances\": [{\"b64\": \"$(base64 -w0 digit.png)\"}]}"
"""
from __future__ import annotations

import os
import sys

from absl import app, flags

CHECKPOINTS = ("best", "last")


def define_flags() -> None:
    """Defines this app's flags; called from run(), so importing the module defines none and
    tests can import several apps that share flag names (--model_dir) in one process."""
    flags.DEFINE_string("model_dir", None, "Training folder holding checkpoints/{best,last}.keras "
                        "(the --model_dir given to python -m apps.train_mnist).")
    flags.DEFINE_string("export_dir", None, "Export base folder; the SavedModel goes to "
                        "<export_dir>/<name>/<version>/. Default: <model_dir>/export.")
    flags.DEFINE_string("name", "mnist", "Model name: the folder under --export_dir and TF "
                        "Serving's MODEL_NAME.")
    flags.DEFINE_integer("version", None, "Version folder to write (a positive integer); unset: "
                         "one more than the highest existing version. Existing versions are "
                         "never overwritten.")
    flags.DEFINE_enum("checkpoint", "last", CHECKPOINTS, "Which checkpoint to export: last (end "
                      "of the latest epoch, what training exports) or best (highest validation "
                      "accuracy; the MNIST app validates on the test set, so 'best' is chosen "
                      "on test data).")
    flags.DEFINE_list("class_names", [str(d) for d in range(10)], "Class names stored with the "
                      "export (assets.extra/metadata.json), one per output class; "
                      "--class_names= stores none.")
    flags.mark_flag_as_required("model_dir")
    flags.register_validator("version", lambda v: v is None or v >= 1, "--version must be >= 1")


FLAGS = flags.FLAGS


def checkpoint_path(model_dir: str, checkpoint: str = "last") -> str:
    """<model_dir>/checkpoints/<checkpoint>.keras, or FileNotFoundError saying how to make it."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}; got {checkpoint!r}.")
    path = os.path.join(model_dir, "checkpoints", f"{checkpoint}.keras")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No checkpoint at {path}. Train first, e.g. python -m apps.train_mnist "
            f"--model_dir={model_dir}, or point --model_dir at a finished training.")
    return path


def export(model_dir: str, export_dir: str | None = None, name: str = "mnist",
           version: int | None = None, checkpoint: str = "last",
           class_names: list[str] | None = None) -> str:
    """Loads the checkpoint and exports it; returns the version folder."""
    path = checkpoint_path(model_dir, checkpoint)

    from suite.export.saved_model import export_classifier
    from suite.models.registry import load_keras_file

    model = load_keras_file(path)
    return export_classifier(model, export_dir or os.path.join(model_dir, "export"), name, version,
                             class_names=class_names or None)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        version_dir = export(FLAGS.model_dir, FLAGS.export_dir, FLAGS.name, FLAGS.version,
                             FLAGS.checkpoint, FLAGS.class_names)
    except (FileNotFoundError, ValueError) as e:  # ExportError is a ValueError
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(f"SavedModel: {version_dir}", flush=True)
    print(f"Try: saved_model_cli show --dir {version_dir} --all", flush=True)


def run():
    """console_scripts entry point."""
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
