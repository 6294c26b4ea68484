"""Layers that let a fully convolutional network take any image size and answer at that size.

FCN and U-Net halve the feature maps 5 and 4 times; their skip connections add or concatenate
maps that must have the same size. `PadToMultiple` pads the input up to a multiple of the total
stride so every halving is exact, `CropLike` cuts the output back to the input's height and
width, and `bilinear_upsample` is FCN's `Conv2DTranspose` initialised to (and, at its borders
too, exactly equal to) `tf.image.resize(method="bilinear")`.
"""
from __future__ import annotations

import numpy as np

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable("suite")
class PadToMultiple(layers.Layer):
    """Zero-pads height and width at the bottom and right up to a multiple of `multiple`."""

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        shape = ops.shape(x)
        pad_h = (-shape[1]) % self.multiple
        pad_w = (-shape[2]) % self.multiple
        return ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape):
        def up(side):
            return None if side is None else -(-side // self.multiple) * self.multiple
        return (input_shape[0], up(input_shape[1]), up(input_shape[2]), input_shape[3])

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable("suite")
class CropLike(layers.Layer):
    """`x` cut to `reference`'s height and width: the top-left part (after PadToMultiple) or,
    with `center=True`, the middle (U-Net's unpadded skip connections)."""

    def __init__(self, center: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.center = bool(center)

    def call(self, inputs):
        x, reference = inputs
        height, width = ops.shape(reference)[1], ops.shape(reference)[2]
        top = (ops.shape(x)[1] - height) // 2 if self.center else 0
        left = (ops.shape(x)[2] - width) // 2 if self.center else 0
        return x[:, top:top + height, left:left + width, :]

    def compute_output_shape(self, input_shapes):
        x, reference = input_shapes
        return (x[0], reference[1], reference[2], x[3])

    def get_config(self):
        return {**super().get_config(), "center": self.center}


@keras.saving.register_keras_serializable("suite")
class EdgePad(layers.Layer):
    """Repeats the border row and column once, so a bilinear upsampling's border is exact."""

    def call(self, x):
        return ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="symmetric")

    def compute_output_shape(self, s):
        return (s[0], None if s[1] is None else s[1] + 2, None if s[2] is None else s[2] + 2, s[3])


@keras.saving.register_keras_serializable("suite")
class CropBorder(layers.Layer):
    """Removes `border` pixels from every side (what EdgePad's row became after upsampling)."""

    def __init__(self, border: int, **kwargs):
        super().__init__(**kwargs)
        self.border = int(border)

    def call(self, x):
        b = self.border
        return x[:, b:ops.shape(x)[1] - b, b:ops.shape(x)[2] - b, :]

    def compute_output_shape(self, s):
        def cut(side):
            return None if side is None else side - 2 * self.border
        return (s[0], cut(s[1]), cut(s[2]), s[3])

    def get_config(self):
        return {**super().get_config(), "border": self.border}


def bilinear_kernel(factor: int, channels_out: int, channels_in: int) -> np.ndarray:
    """Conv2DTranspose kernel (2f, 2f, out, in) of bilinear interpolation by `factor`, channel
    i to channel i (FCN's initialisation; Caffe's "bilinear" filler)."""
    size = 2 * factor
    center = factor - 0.5
    profile = 1.0 - np.abs(np.arange(size) - center) / factor
    kernel = np.zeros((size, size, channels_out, channels_in), np.float32)
    for i in range(min(channels_out, channels_in)):
        kernel[:, :, i, i] = np.outer(profile, profile)
    return kernel


@keras.saving.register_keras_serializable("suite")
class BilinearInitializer(keras.initializers.Initializer):
    """Initialises a Conv2DTranspose with stride `factor` and kernel 2*factor to bilinear."""

    def __init__(self, factor: int):
        self.factor = int(factor)

    def __call__(self, shape, dtype=None):
        if tuple(shape[:2]) != (2 * self.factor, 2 * self.factor):
            raise ValueError(f"a bilinear x{self.factor} kernel is {2 * self.factor}x"
                             f"{2 * self.factor}, the layer's is {shape[0]}x{shape[1]}")
        return ops.convert_to_tensor(bilinear_kernel(self.factor, shape[2], shape[3]),
                                     dtype=dtype)

    def get_config(self):
        return {"factor": self.factor}


def bilinear_upsample(x, factor: int, channels: int, name: str, trainable: bool = True):
    """x upsampled `factor` times by a Conv2DTranspose (`name`) initialised to bilinear
    interpolation: edge-pad 1, transpose-convolve with kernel 2f and stride f, crop f. At
    initialisation this equals tf.image.resize(method="bilinear") everywhere, borders included."""
    x = EdgePad(name=f"{name}_pad")(x)
    x = layers.Conv2DTranspose(channels, 2 * factor, strides=factor, padding="same",
                               use_bias=False, kernel_initializer=BilinearInitializer(factor),
                               trainable=trainable, name=name)(x)
    return CropBorder(factor, name=f"{name}_crop")(x)
