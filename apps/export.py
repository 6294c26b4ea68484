r"""Exports a trained run's checkpoint as a SavedModel for TF Serving, for a run of any app.

    python -m apps.export --model_dir=runs/mnist [--export_dir=...] [--name=...] [--version=N]
        [--checkpoint=best|last]

Reads <model_dir>/checkpoints/<checkpoint>.keras and <model_dir>/run.json, which the runner
writes for every run: which Task made it (found in suite.tasks, so which serving signatures it
has: suite.tasks.runs), the model name and the export metadata (class names, vocabulary, ...).
Writes
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

Serve it with TF Serving (it loads the highest version, picks up new ones as they appear, and
replays the export's warm-up records, assets.extra/tf_serving_warmup_requests, at load):

    docker run -p 8500:8500 -p 8501:8501 \
        --mount type=bind,source="$(realpath <export_dir>)/mnist",target=/models/mnist \
        -e MODEL_NAME=mnist -t tensorflow/serving

docs/serving.md has the REST bodies and the gRPC client for every app's signatures, tested.
"""
from __future__ import annotations


from absl import app, flags

from suite.runtime.flags import parse_flags, start_tool, tool_error
from suite.runtime.run_file import CHECKPOINTS


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines this app's flags; called from run(), so importing the module defines none."""
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


def main(argv):
    from suite.runtime.run_file import exported_checkpoint
    from suite.runtime.startup import load_tensorflow

    FLAGS = flags.FLAGS
    verbose = start_tool(argv)
    try:
        from suite.tasks.runs import export_run, read_run, task_class

        run_file = read_run(FLAGS.model_dir)  # fails fast, before TensorFlow loads
        exported_checkpoint(FLAGS.model_dir, run_file, FLAGS.checkpoint)
        load_tensorflow(quiet=not verbose)
        task_class(run_file)
        version_dir = export_run(FLAGS.model_dir, FLAGS.export_dir, FLAGS.name, FLAGS.version,
                                 FLAGS.checkpoint)
    except (OSError, ValueError) as e:  # ExportError is a ValueError
        tool_error(e)
    print(f"SavedModel: {version_dir}", flush=True)
    print(f"Try: saved_model_cli show --dir {version_dir} --all", flush=True)


def run():
    """console_scripts entry point."""
    define_flags()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
