"""Neural style transfer (Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional
Neural Networks", CVPR 2016): optimise an image so that its VGG features match a content image
at one deep layer and the Gram matrices of a style image at several layers.

    content loss   1/2 sum (F - P)^2                      at conv4_2
    style loss     sum_l w_l / (4 N_l^2 M_l^2) sum (G_l - A_l)^2,  G = F^T F,  w_l = 1/5
                   at conv1_1, conv2_1, conv3_1, conv4_1, conv5_1
    total          content_weight * content + style_weight * style + tv_weight * tv

(N_l: channels, M_l: pixels of layer l.) The total variation term (squared differences of
neighbouring pixels) is the usual smoothness prior of later work; 0 gives the paper's loss.

The feature network is the suite's VGG (suite.models.vgg, keras.applications' layer names) cut
after the deepest layer the losses read, with max or the paper's average pooling, from
keras.applications' ImageNet weights, a suite classifier's VGG, or random weights.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

CONTENT_LAYER = "block4_conv2"
STYLE_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")


def gram_matrix(features):
    """F^T F of (batch, H, W, C) features: (batch, C, C), not normalised (the loss does)."""
    shape = tf.shape(features)
    flat = tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
    return tf.matmul(flat, flat, transpose_a=True)


def style_layer_loss(features, target_gram):
    """E_l = 1/(4 N^2 M^2) sum (G - A)^2 for one layer (the paper's equation 4)."""
    shape = tf.cast(tf.shape(features), tf.float32)
    channels, pixels = shape[3], shape[1] * shape[2]
    difference = gram_matrix(features) - target_gram
    return tf.reduce_sum(tf.square(difference)) / (4.0 * channels ** 2 * pixels ** 2)


def content_loss(features, target):
    return 0.5 * tf.reduce_sum(tf.square(features - target))


def total_variation(image):
    """Sum of squared differences between vertical and horizontal neighbours."""
    down = image[:, 1:, :, :] - image[:, :-1, :, :]
    right = image[:, :, 1:, :] - image[:, :, :-1, :]
    return tf.reduce_sum(tf.square(down)) + tf.reduce_sum(tf.square(right))


@keras.saving.register_keras_serializable(package="suite")
class ImageVariable(layers.Layer):
    """The image being optimised, a (1, H, W, 3) weight in [0, 255] RGB pixels, so the
    runner's checkpoints and backups (and the optimizer's slots) hold it like any model."""

    def __init__(self, height: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = height, width
        self.pixels = self.add_weight(shape=(1, height, width, 3), initializer="zeros",
                                      name="pixels")

    def call(self, inputs=None):
        return tf.convert_to_tensor(self.pixels)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


def build_image_model(height: int, width: int, name: str = "stylised_image") -> keras.Model:
    """A model whose only weight is the image: `model(anything)` returns it."""
    token = keras.Input((1,), name="unused")
    image = ImageVariable(height, width, name="image")(token)
    return keras.Model(token, image, name=name)


class StyleLoss:
    """The paper's loss against fixed content and style targets; `__call__(image)` ->
    (total, parts dict). `extractor` maps (1, H, W, 3) RGB pixels to
    [content features, *style features]."""

    def __init__(self, extractor, content_image, style_image, content_weight: float,
                 style_weight: float, tv_weight: float):
        self.extractor = extractor
        self.weights = (content_weight, style_weight, tv_weight)
        self.content_target = extractor(content_image[None])[0]
        self.style_targets = [gram_matrix(f) for f in extractor(style_image[None])[1:]]

    @tf.function
    def __call__(self, image):
        outputs = self.extractor(image)
        content = content_loss(outputs[0], self.content_target)
        style = tf.add_n([style_layer_loss(f, g) for f, g in zip(outputs[1:],
                                                                  self.style_targets)])
        style = style / len(self.style_targets)  # w_l = 1/5
        tv = total_variation(image)
        c, s, t = self.weights
        total = c * content + s * style + t * tv
        return total, {"content_loss": content, "style_loss": style, "tv_loss": tv}

    @tf.function
    def value_and_gradient(self, image):
        with tf.GradientTape() as tape:
            tape.watch(image)
            total, parts = self(image)
        return total, tape.gradient(total, image), parts


def check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return image
