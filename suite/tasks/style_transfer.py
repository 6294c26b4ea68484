"""Style transfer as a Task: the image is the model, optimised by the runner's own loop.

Adam takes one gradient step per loop step; L-BFGS (scipy's L-BFGS-B, pixels bounded to
[0, 255]) takes one round of `lbfgs_evaluations` loss evaluations per loop step, starting each
round afresh from the current image, as the Keras example of this paper does. So a resumed run
continues exactly: the image and Adam's slots are in the backup, and an L-BFGS round never
carries memory over. Every `save_every` steps (one "epoch") the image goes to
progress/step_NNNNN.png, the loss terms to history.csv and TensorBoard; at the end the result
(--out and result.png), a content | style | result panel and the loss curve.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from suite.config import Config, existing_path, group, option
from suite.errors import ConfigError
from suite.runtime.config import RuntimeConfig
from suite.tasks.base import Task


def _writable_file(path: str) -> None:
    """`out` is written only after the whole optimisation: refuse at once a path that cannot
    take a file, rather than fail (every rerun again) at the end."""
    if os.path.isdir(path):
        raise ConfigError(f"`out={path}` is a folder; give a file name, e.g. "
                          f"`out={os.path.join(path, 'result.png')}`")
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):  # created when the result is written
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"`out={path}`: {folder} is not a folder this process can write in; "
                          "give another path")


@dataclasses.dataclass
class StyleConfig(Config):
    runtime: RuntimeConfig = group(RuntimeConfig, model_dir="runs/style_transfer")
    content: str | None = option(None, "The content image (PNG or JPEG).", required=True)
    style: str | None = option(None, "The style image (PNG or JPEG); resized to the content "
                               "image's size.", required=True)
    out: str | None = option(None, "Also write the result here (PNG); it is always in "
                             "--model_dir/result.png.", check=_writable_file)
    size: int = option(256, "Longer side of the result in pixels (the content image is resized "
                       "to it, keeping its aspect ratio).", bounds=">= 1")
    content_weight: float = option(1.0, "alpha: weight of the content loss (conv4_2).",
                                   bounds=">= 0")
    style_weight: float = option(1e3, "beta: weight of the style loss (Gram matrices of "
                                 "conv1_1 ... conv5_1); the paper's alpha/beta is 1e-3 to 1e-4 "
                                 "with ImageNet VGG-19.", bounds=">= 0")
    tv_weight: float = option(0.0, "Weight of the total-variation smoothness loss; 0 is the "
                              "paper's loss.", bounds=">= 0")
    optimizer: str = option("lbfgs", "lbfgs: scipy's L-BFGS-B (the paper's choice), one round "
                            "of --lbfgs_evaluations evaluations per step; adam: one gradient "
                            "step per step.", choices=("lbfgs", "adam"))
    learning_rate: float = option(5.0, "Adam's step size, in pixel units (0..255).",
                                  bounds="> 0")
    steps: int = option(10, "Optimisation steps (L-BFGS rounds or Adam updates).",
                        bounds=">= 1")
    lbfgs_evaluations: int = option(20, "Loss evaluations per L-BFGS round.", bounds=">= 1")
    save_every: int = option(1, "Save the image (progress/) and log the losses every N steps; "
                             "also how often the run can resume from.", bounds=">= 1")
    network: str = option("vgg19", "The feature network for --features_from=imagenet or random "
                          "(a suite classifier has its own).", choices=("vgg16", "vgg19"))
    features_from: str = option(
        "imagenet", "Where the VGG weights come from: 'imagenet' (keras.applications' file, on "
        "disk or downloadable), a suite VGG classifier's model_dir or .keras file (e.g. from "
        "apps.train_classifier --model=vgg16), or 'random'.", check=existing_path(
            "imagenet", "random", what="an existing model_dir or .keras file"))
    pooling: str = option("avg", "Pooling in the feature network: the paper's average pooling, "
                          "or VGG's own max pooling.", choices=("avg", "max"))
    init: str = option("content", "Start from the content image or from uniform noise (the "
                       "paper).", choices=("content", "noise"))


def read_image(path: str, field: str, longer_side: int = 0, size=None) -> np.ndarray:
    """float32 (H, W, 3) RGB pixels, resized so the longer side is `longer_side`, or to
    `size` (height, width); one clear error for a missing or unreadable file."""
    from PIL import Image

    from suite.data.image_files import eight_bit
    from suite.errors import DataError

    if not os.path.isfile(path):
        raise DataError(f"`{field}={path}`: no such file; give the path of a PNG or JPEG image")
    try:
        with Image.open(path) as image:
            image = eight_bit(image, f"`{field}={path}`").convert("RGB")
            if size is None and longer_side:
                scale = longer_side / max(image.size)
                size = (max(1, round(image.size[1] * scale)), max(1, round(image.size[0] * scale)))
            if size is not None:
                image = image.resize((size[1], size[0]), Image.LANCZOS)
            return np.asarray(image, np.float32)
    except OSError as e:  # PIL's error for truncated or non-image files
        raise DataError(f"`{field}={path}`: not a readable image ({e})") from e


class StyleTransferTask(Task):
    config_class = StyleConfig
    name = "style_transfer"
    best_checkpoint = ("loss", "min")
    watched_losses = ("loss",)
    title = "style transfer"
    epoch_option = "save_every"  # named when a rerun's epoch length differs from the backup's
    figures = ("result.png", "content_style_result.png")

    def __init__(self, config: StyleConfig, data_override=None):
        super().__init__(config, data_override)
        self.epochs = -(-config.steps // config.save_every)

    def load_data(self, run):
        c = self.config
        self.content = read_image(c.content, "content", longer_side=c.size)
        self.style = read_image(c.style, "style", size=self.content.shape[:2])
        print(f"content {c.content} -> {self.content.shape[1]}x{self.content.shape[0]}, style "
              f"{c.style} resized to match", flush=True)

    def build(self, run):
        import keras

        from suite.models.style_features import build_feature_extractor, feature_source
        from suite.models.style_transfer import StyleLoss, build_image_model

        c = self.config
        self.source = feature_source(c.features_from, c.network)
        extractor = build_feature_extractor(self.source, c.pooling)
        print(f"Features: {self.source.description}, {c.pooling} pooling", flush=True)
        self.loss = StyleLoss(extractor, self.content, self.style, c.content_weight,
                              c.style_weight, c.tv_weight)
        height, width, _ = self.content.shape
        model = build_image_model(height, width)
        start = (self.content if c.init == "content" else np.random.default_rng(self.seed)
                 .uniform(0, 255, self.content.shape).astype(np.float32))
        self.start_image = start[None]
        self.pixels = model.get_layer("image").pixels  # the runner restores into this variable
        self.pixels.assign(self.start_image)
        self.adam = keras.optimizers.Adam(c.learning_rate) if c.optimizer == "adam" else None
        if self.adam is not None:
            self.adam.build([self.pixels])
        return model

    def train(self, run):
        c = self.config
        print(f"Loss of the starting image: {self.start_loss():.4g}", flush=True)
        loop = run.loop(c.steps, c.save_every,
                        optimizers={"adam": self.adam} if self.adam is not None else None)
        for _ in loop:
            total, parts = self._adam_step() if self.adam is not None else self._lbfgs_round()
            loop.log(loss=total, **{k: float(v) for k, v in parts.items()})
        return loop.outcome

    def _adam_step(self):
        total, gradient, parts = self.loss.value_and_gradient(self.pixels)
        self.adam.apply([gradient], [self.pixels])
        self.pixels.assign(np.clip(self.pixels.numpy(), 0, 255))
        return float(total), parts

    def _lbfgs_round(self):
        import tensorflow as tf
        from scipy.optimize import minimize

        shape = tuple(self.pixels.shape)

        def value_and_gradient(flat):
            image = tf.constant(flat.reshape(shape), tf.float32)
            total, gradient, _ = self.loss.value_and_gradient(image)
            return float(total), gradient.numpy().astype(np.float64).ravel()

        result = minimize(value_and_gradient, self.pixels.numpy().astype(np.float64).ravel(),
                          jac=True, method="L-BFGS-B", bounds=[(0, 255)] * int(np.prod(shape)),
                          # only the evaluation budget ends a round: the default tolerances
                          # stop at once on losses whose gradients are small per pixel
                          options={"maxfun": self.config.lbfgs_evaluations,
                                   "maxiter": self.config.lbfgs_evaluations,
                                   "ftol": 0.0, "gtol": 0.0})
        self.pixels.assign(result.x.reshape(shape).astype(np.float32))
        total, parts = self.loss(self.pixels)
        return float(total), parts

    def epoch_metrics(self, run, epoch: int) -> dict:
        from suite.viz.images import save_png

        if run.is_chief:
            step = min((epoch + 1) * self.config.save_every, self.config.steps)
            save_png(self.result(), run.output_path(f"progress/step_{step:05d}.png"))
        return {}

    def start_loss(self) -> float:
        import tensorflow as tf

        return float(self.loss(tf.constant(self.start_image))[0])

    def result(self) -> np.ndarray:
        return np.clip(np.round(self.pixels.numpy()[0]), 0, 255).astype(np.uint8)

    def evaluate(self, run):
        from suite.viz.images import image_grid, save_png

        total, parts = self.loss(self.pixels)
        result, start = self.result(), self.start_loss()
        numbers = {"loss": float(total), **{k: float(v) for k, v in parts.items()},
                   "start_loss": start, "loss_ratio": start / max(float(total), 1e-30),
                   "features": self.source.description, "pooling": self.config.pooling,
                   "optimizer": self.config.optimizer, "steps": self.config.steps,
                   "size": list(result.shape[:2])}
        if run.is_chief:
            save_png(result, run.output_path("result.png"))
            if self.config.out:
                save_png(result, self.config.out)
            panel = np.stack([self.content, self.style, result]).astype(np.uint8)
            save_png(image_grid(panel, 3), run.output_path("content_style_result.png"))
        print(f"Loss {float(total):.4g}, {numbers['loss_ratio']:.1f}x below the starting "
              f"image's {start:.4g}; result {run.output_path('result.png')}", flush=True)
        return numbers

    @classmethod
    def custom_objects(cls):
        from suite.models.style_transfer import ImageVariable

        return {"ImageVariable": ImageVariable}
