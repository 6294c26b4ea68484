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

from suite.runtime.task import Task


@dataclasses.dataclass
class StyleConfig:
    content: str = ""
    style: str = ""
    out: str | None = None
    size: int = 256
    content_weight: float = 1.0
    style_weight: float = 1e3
    tv_weight: float = 0.0
    optimizer: str = "lbfgs"
    learning_rate: float = 5.0
    steps: int = 10
    lbfgs_evaluations: int = 20
    save_every: int = 1
    network: str = "vgg19"
    features_from: str = "imagenet"
    pooling: str = "avg"
    init: str = "content"


def read_image(path: str, flag: str, longer_side: int = 0, size=None) -> np.ndarray:
    """float32 (H, W, 3) RGB pixels, resized so the longer side is `longer_side`, or to
    `size` (height, width); one clear error for a missing or unreadable file."""
    from PIL import Image

    from suite.data.idx import DataError
    from suite.data.image_files import eight_bit

    if not os.path.isfile(path):
        raise DataError(f"{flag}={path}: no such file; give the path of a PNG or JPEG image")
    try:
        with Image.open(path) as image:
            image = eight_bit(image, f"{flag}={path}").convert("RGB")
            if size is None and longer_side:
                scale = longer_side / max(image.size)
                size = (max(1, round(image.size[1] * scale)), max(1, round(image.size[0] * scale)))
            if size is not None:
                image = image.resize((size[1], size[0]), Image.LANCZOS)
            return np.asarray(image, np.float32)
    except OSError as e:  # PIL's error for truncated or non-image files
        raise DataError(f"{flag}={path}: not a readable image ({e})") from e


class StyleTransferTask(Task):
    name = "style_transfer"
    best_checkpoint = ("loss", "min")
    watched_losses = ("loss",)
    title = "style transfer"
    epoch_flag = "--save_every"  # named when a rerun's epoch length differs from the backup's

    def __init__(self, config: StyleConfig, seed: int = 0):
        self.config, self.seed = config, seed
        self.epochs = -(-config.steps // config.save_every)

    def load_data(self, run):
        c = self.config
        self.content = read_image(c.content, "--content", longer_side=c.size)
        self.style = read_image(c.style, "--style", size=self.content.shape[:2])
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
