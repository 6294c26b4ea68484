r"""Exports a trained run's checkpoint as a SavedModel for TF Serving, for a run of any app.

    python -m apps.export --model_dir=runs/mnist [--export_dir=...] [--name=...] [--version=N]
        [--checkpoint=best|last]

Reads <model_dir>/checkpoints/<checkpoint>.keras and <model_dir>/run.json, which the runner
writes for every run: which app's task made it (so which serving signatures it has), the model
name and the export metadata (class names, vocabulary, ...). Writes
<export_dir>/<name>/<version>/ (next free version unless --version; existing versions are never
overwritten). The image classifiers (apps.train_mnist, apps.train_classifier) serve
serving_default (image float32 [batch, H, W, C], raw pixels 0..255), serve_uint8 and
serve_image_bytes (image_bytes: encoded PNG/JPEG strings); each returns probabilities and
class_ids.

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

import importlib
import json
import os
import re
import sys

from absl import app, flags

from suite.runtime.flags import parse_flags, usage_error

CHECKPOINTS = ("best", "last")
# Modules a run.json may name: the suite's apps and tasks, and the tests' toy apps (run as
# toy_apps.* with tests/ on the path).
TASK_MODULES = ("apps.", "suite.", "toy_apps.", "tests.toy_apps.")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines this app's flags; called from main(), so importing the module defines none."""
    flags.DEFINE_string("model_dir", None, "A training run's folder (the --model_dir given to "
                        "any app): holds checkpoints/{best,last}.keras and run.json.",
                        flag_values=fv)
    flags.DEFINE_string("export_dir", None, "Export base folder; the SavedModel goes to "
                        "<export_dir>/<name>/<version>/. Default: <model_dir>/export.",
                        flag_values=fv)
    flags.DEFINE_string("name", None, "Model name: the folder under --export_dir and TF "
                        "Serving's MODEL_NAME. Default: the run's (run.json).", flag_values=fv)
    flags.DEFINE_integer("version", None, "Version folder to write (a positive integer); unset: "
                         "one more than the highest existing version. Existing versions are "
                         "never overwritten.", flag_values=fv)
    flags.DEFINE_enum("checkpoint", None, CHECKPOINTS, "Which checkpoint to export: last (end "
                      "of the latest epoch) or best (best validation metric; the MNIST app "
                      "validates on the test set, so 'best' is chosen on test data). Default: "
                      "what the run's training exported (run.json; last for most apps, best "
                      "for DQN policies).", flag_values=fv)
    flags.mark_flag_as_required("model_dir", flag_values=fv)
    flags.register_validator("version", lambda v: v is None or v >= 1, "--version must be >= 1",
                             flag_values=fv)


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


def read_run(model_dir: str) -> dict:
    """run.json of `model_dir`; for finished runs made before run.json existed, an image
    classifier with the class names results.json recorded."""
    from suite.runtime.runner import read_run_file

    run = read_run_file(model_dir)
    if run is not None:
        return run
    path = os.path.join(model_dir, "run.json")
    checkpoint_path(model_dir, "last")  # no checkpoint at all: "Train first, ..."
    results_path = os.path.join(model_dir, "results.json")
    if not os.path.isfile(results_path):
        raise FileNotFoundError(f"{path} is missing: the run in {model_dir} has not finished "
                                "its first training yet. Run the same training command again "
                                "(it resumes), then export.")
    with open(results_path) as f:
        results = json.load(f)
    return {"app": "suite.tasks.classification", "task": "ImageClassificationTask",
            "name": results.get("model"),
            "export_metadata": {"class_names": results.get("class_names")}}


def task_class(run: dict):
    """The Task class run.json names: an importable module's attribute that is a Task."""
    from suite.runtime.task import Task

    module_name, class_name = run.get("app"), run.get("task")
    if not module_name:
        raise ValueError("run.json names no importable module for its task (it was run from a "
                         "script file): export it from that script, or rerun with python -m")
    if not (isinstance(module_name, str) and _MODULE.match(module_name)
            and isinstance(class_name, str) and class_name.isidentifier()):
        raise ValueError(f"run.json names an invalid task {module_name!r}:{class_name!r}")
    if not module_name.startswith(TASK_MODULES):
        raise ValueError(f"run.json's task module {module_name!r} is not one of the suite's "
                         f"(under {', '.join(m + '*' for m in TASK_MODULES)}); not importing it")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"run.json's task {module_name}.{class_name} cannot be imported ({e}); "
                         "is the app installed here?") from e
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ValueError(f"run.json's {module_name}.{class_name} is not a suite Task")
    return cls


def export(model_dir: str, export_dir: str | None = None, name: str | None = None,
           version: int | None = None, checkpoint: str | None = None) -> str:
    """Loads the run's checkpoint and exports it with its task's signatures; returns the
    version folder."""
    run = read_run(model_dir)
    path = checkpoint_path(model_dir, checkpoint or run.get("export_checkpoint") or "last")
    cls = task_class(run)
    metadata = run.get("export_metadata") or {}

    from suite.export.saved_model import write_saved_model
    from suite.models.registry import load_keras_file

    model = load_keras_file(path, custom_objects=cls.custom_objects())
    signatures = cls.serving_signatures(model, metadata)
    if not signatures:
        raise ValueError(f"{cls.__name__} runs export no SavedModel")
    name = name or run.get("name") or model.name
    return write_saved_model(export_dir or os.path.join(model_dir, "export"), name, signatures,
                             {"model": model.name, "task": cls.__name__, **metadata}, version)


def main(argv):
    if len(argv) > 1:
        usage_error(f"unexpected arguments: {' '.join(argv[1:])}")
    from absl import logging

    from suite.runtime.startup import load_tensorflow

    FLAGS = flags.FLAGS
    verbose = FLAGS["verbosity"].present
    if not verbose:
        logging.set_verbosity(logging.WARNING)
    try:
        run_file = read_run(FLAGS.model_dir)  # fails fast, before TensorFlow loads
        checkpoint_path(FLAGS.model_dir,
                        FLAGS.checkpoint or run_file.get("export_checkpoint") or "last")
        task_class(run_file)
        load_tensorflow(quiet=not verbose)
        version_dir = export(FLAGS.model_dir, FLAGS.export_dir, FLAGS.name, FLAGS.version,
                             FLAGS.checkpoint)
    except (OSError, ValueError) as e:  # ExportError is a ValueError
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(f"SavedModel: {version_dir}", flush=True)
    print(f"Try: saved_model_cli show --dir {version_dir} --all", flush=True)


def run():
    """console_scripts entry point."""
    define_flags()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
