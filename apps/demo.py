r"""Tries a run's exported SavedModel in the browser: a local page that calls its serving
signatures (what TF Serving serves), for a run of any app that exports.

    python -m apps.demo --model_dir=runs/mnist [--port=7860] [--version=N]

then open http://127.0.0.1:7860/. MNIST: draw a digit; classifiers, segmenter, detector,
captioner: drop an image; DCGAN: two seeds; DQN: watch the policy play an episode. The page
binds to 127.0.0.1 only; from another machine: ssh -L 7860:127.0.0.1:7860 <host>.
--model_dir takes a run's folder (its newest export, or --version), a model base
(export/<name>) or a version folder. docs/serving.md shows each page.
"""
from __future__ import annotations


from absl import app, flags

from suite.runtime.flags import parse_flags, start_tool, tool_error


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Defines this app's flags; called from run(), so importing the module defines none."""
    flags.DEFINE_string("model_dir", None, "A training run's folder (the --model_dir given to "
                        "any app), or an export's model base or version folder.",
                        flag_values=fv)
    flags.DEFINE_integer("port", 7860, "Port on 127.0.0.1 to serve the page on.",
                         lower_bound=1, upper_bound=65535, flag_values=fv)
    flags.DEFINE_integer("version", None, "Which export version to serve; unset: the newest.",
                         lower_bound=1, flag_values=fv)
    flags.mark_flag_as_required("model_dir", flag_values=fv)


def main(argv):
    from suite.runtime.startup import load_tensorflow

    FLAGS = flags.FLAGS
    verbose = start_tool(argv)
    try:
        from suite.demo.served import Served, find_export

        version_dir = find_export(FLAGS.model_dir, FLAGS.version)  # before TensorFlow loads
        load_tensorflow(quiet=not verbose)
        served = Served(version_dir)
        served.warm_up()
        from suite.demo.app import HOST, build_page, serve

        page = build_page(served)
        print(f"Serving {served.path} ({served.kind}) on http://{HOST}:{FLAGS.port}/ "
              "(Ctrl-C stops it)", flush=True)
        serve(page, FLAGS.port)
    except (OSError, ValueError) as e:  # ExportError is a ValueError; a port in use an OSError
        tool_error(e)


def run():
    """console_scripts entry point."""
    define_flags()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
