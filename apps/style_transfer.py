"""Neural style transfer (Gatys, Ecker & Bethge 2016): paints --content in the style of --style.

    python -m apps.style_transfer --content=a.jpg --style=b.jpg --out=c.png \\
        --features_from=runs/cifar_vgg16        # a suite VGG classifier (offline)
    python -m apps.style_transfer --content=a.jpg --style=b.jpg --out=c.png   # ImageNet VGG-19

Writes under --model_dir: progress/step_NNNNN.png every --save_every steps, result.png (and
--out), content_style_result.png, history.csv and learning_curves.png (total, content, style
and total-variation loss), logs/ for TensorBoard, results.json with the start and final loss.
Running the same command again resumes; raising --steps continues.
"""
from __future__ import annotations

import os

from absl import flags

from suite.runtime import flags as suite_flags
from suite.tasks.style_transfer import StyleConfig, StyleTransferTask


def define_flags(fv: flags.FlagValues) -> None:
    suite_flags.define_runtime_flags(fv, "runs/style_transfer")
    flags.DEFINE_string("content", None, "The content image (PNG or JPEG).", flag_values=fv)
    flags.DEFINE_string("style", None, "The style image (PNG or JPEG); resized to the content "
                        "image's size.", flag_values=fv)
    flags.DEFINE_string("out", None, "Also write the result here (PNG); it is always in "
                        "--model_dir/result.png.", flag_values=fv)
    flags.DEFINE_integer("size", 256, "Longer side of the result in pixels (the content image "
                         "is resized to it, keeping its aspect ratio).", flag_values=fv)
    flags.DEFINE_float("content_weight", 1.0, "alpha: weight of the content loss (conv4_2).",
                       flag_values=fv)
    flags.DEFINE_float("style_weight", 1e3, "beta: weight of the style loss (Gram matrices of "
                       "conv1_1 ... conv5_1); the paper's alpha/beta is 1e-3 to 1e-4 with "
                       "ImageNet VGG-19.", flag_values=fv)
    flags.DEFINE_float("tv_weight", 0.0, "Weight of the total-variation smoothness loss; 0 is "
                       "the paper's loss.", flag_values=fv)
    flags.DEFINE_enum("optimizer", "lbfgs", ["lbfgs", "adam"], "lbfgs: scipy's L-BFGS-B "
                      "(the paper's choice), one round of --lbfgs_evaluations evaluations per "
                      "step; adam: one gradient step per step.", flag_values=fv)
    flags.DEFINE_float("learning_rate", 5.0, "Adam's step size, in pixel units (0..255).",
                       flag_values=fv)
    flags.DEFINE_integer("steps", 10, "Optimisation steps (L-BFGS rounds or Adam updates).",
                         flag_values=fv)
    flags.DEFINE_integer("lbfgs_evaluations", 20, "Loss evaluations per L-BFGS round.",
                         flag_values=fv)
    flags.DEFINE_integer("save_every", 1, "Save the image (progress/) and log the losses every "
                         "N steps; also how often the run can resume from.", flag_values=fv)
    flags.DEFINE_enum("network", "vgg19", ["vgg16", "vgg19"], "The feature network for "
                      "--features_from=imagenet or random (a suite classifier has its own).",
                      flag_values=fv)
    flags.DEFINE_string("features_from", "imagenet", "Where the VGG weights come from: "
                        "'imagenet' (keras.applications' file, on disk or downloadable), a "
                        "suite VGG classifier's model_dir or .keras file (e.g. from "
                        "apps.train_classifier --model=vgg16), or 'random'.", flag_values=fv)
    flags.DEFINE_enum("pooling", "avg", ["avg", "max"], "Pooling in the feature network: the "
                      "paper's average pooling, or VGG's own max pooling.", flag_values=fv)
    flags.DEFINE_enum("init", "content", ["content", "noise"], "Start from the content image "
                      "or from uniform noise (the paper).", flag_values=fv)
    flags.mark_flags_as_required(["content", "style"], flag_values=fv)
    suite_flags.require_at_least(fv, 1, "size", "steps", "lbfgs_evaluations", "save_every")
    suite_flags.require_at_least(fv, 0, "content_weight", "style_weight", "tv_weight")
    flags.register_validator("learning_rate", lambda v: v > 0, "--learning_rate must be > 0",
                             flag_values=fv)
    flags.register_validator(
        "features_from", lambda v: v in ("imagenet", "random") or os.path.exists(v),
        "--features_from must be 'imagenet', 'random' or an existing model_dir or .keras file",
        flag_values=fv)
    flags.register_validator("out", _valid_out, flag_values=fv)


def _valid_out(path: str | None) -> bool:
    """--out is written only after the whole optimisation: refuse at once a path that cannot
    take a file, rather than fail (every rerun again) at the end."""
    if not path:
        return True
    if os.path.isdir(path):
        raise flags.ValidationError(f"--out={path} is a folder; give a file name, e.g. "
                                    f"--out={os.path.join(path, 'result.png')}")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # created when the result is written
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise flags.ValidationError(f"--out={path}: {folder} is not a folder this process can "
                                    "write in; give another path")
    return True


def make_task(fv: flags.FlagValues, data_override=None) -> StyleTransferTask:
    config = StyleConfig(
        content=fv.content, style=fv.style, out=fv.out, size=fv.size,
        content_weight=fv.content_weight, style_weight=fv.style_weight, tv_weight=fv.tv_weight,
        optimizer=fv.optimizer, learning_rate=fv.learning_rate, steps=fv.steps,
        lbfgs_evaluations=fv.lbfgs_evaluations, save_every=fv.save_every, network=fv.network,
        features_from=fv.features_from, pooling=fv.pooling, init=fv.init)
    return StyleTransferTask(config, seed=fv.seed)


def main() -> None:
    """Entry point (python -m apps.style_transfer, console script suite-style-transfer)."""
    from suite.runtime.runner import main as run_main

    run_main(define_flags, make_task)


if __name__ == "__main__":
    main()
