"""U-Net, "Convolutional Networks for Biomedical Image Segmentation" (Ronneberger, Fischer &
Brox, 2015), the ISBI 2012 winner, as the paper's Figure 1 draws it:

    contracting: 4 x [conv 3x3 relu, conv 3x3 relu, maxpool 2x2]   64, 128, 256, 512 filters
    bottom:      conv 3x3 relu, conv 3x3 relu (1024), dropout        "drop-out layers at the end
                                                                      of the contracting path"
    expanding:   4 x [up-conv 2x2 (halves the filters), concatenate the cropped contracting map,
                      conv 3x3 relu, conv 3x3 relu]
    output:      conv 1x1 to the classes, softmax

31,030,658 parameters for one input channel and two classes. `padding="valid"` is the paper's
network (unpadded convolutions: a 572x572 tile gives a 388x388 map, skip maps centre-cropped;
tile large images with mirrored borders). `padding="same"` (default here) pads the convolutions,
pads the input up to a multiple of 16 and crops the output, so any image size maps to a
same-sized class map in one pass. `base_filters` and `batch_norm` are options for small machines
and from-scratch training; He initialisation is the paper's ("a Gaussian with std sqrt(2/N)").
"""
from __future__ import annotations

import keras
from keras import layers

from suite.models.batch_norm import FusedBatchNormalization
from suite.models.dense_prediction import CropLike, PadToMultiple
from suite.models.vgg import kernel_regularizer

LEVELS = 4
BASE_FILTERS = 64
STRIDE = 2 ** LEVELS
PADDINGS = ("same", "valid")


def build_unet(
    num_classes: int = 2,
    input_shape: tuple = (None, None, 1),
    base_filters: int = BASE_FILTERS,
    padding: str = "same",
    batch_norm: bool = False,
    sync_batch_norm: bool = False,
    dropout_rate: float = 0.5,
    weight_decay: float = 0.0,
    rescale: bool = True,
    name: str = "unet",
) -> keras.Model:
    """U-Net mapping (H, W, C) images to class probabilities: (H, W, classes) with
    padding="same", (H - 184, W - 184, classes) with the paper's "valid" convolutions.
    `sync_batch_norm` takes batch statistics over all replicas (TensorFlow only)."""
    if padding not in PADDINGS:
        raise ValueError(f"U-Net padding must be one of {PADDINGS}, got {padding!r}.")
    if num_classes < 2 or base_filters < 1:
        raise ValueError(f"U-Net needs num_classes >= 2 and base_filters >= 1, got "
                         f"{num_classes} and {base_filters}.")
    regularizer = kernel_regularizer(weight_decay)

    def double_conv(x, filters, prefix):
        for i in (1, 2):
            x = layers.Conv2D(filters, 3, padding=padding, use_bias=not batch_norm,
                              activation=None if batch_norm else "relu",
                              kernel_initializer="he_normal", kernel_regularizer=regularizer,
                              name=f"{prefix}_conv{i}")(x)
            if batch_norm:
                x = FusedBatchNormalization(synchronized=sync_batch_norm,
                                            name=f"{prefix}_conv{i}_bn")(x)
                x = layers.Activation("relu", name=f"{prefix}_conv{i}_relu")(x)
        return x

    images = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(images) if rescale else images
    if padding == "same":
        x = PadToMultiple(STRIDE, name="pad")(x)
    skips = []
    for level in range(LEVELS):
        x = double_conv(x, base_filters * 2 ** level, f"down{level + 1}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    x = double_conv(x, base_filters * 2 ** LEVELS, "bottom")
    x = layers.Dropout(dropout_rate, name="bottom_dropout")(x)
    for level in reversed(range(LEVELS)):
        filters = base_filters * 2 ** level
        x = layers.Conv2DTranspose(filters, 2, strides=2, kernel_initializer="he_normal",
                                   kernel_regularizer=regularizer, name=f"up{level + 1}_upconv")(x)
        skip = skips[level]
        if padding == "valid":
            skip = CropLike(center=True, name=f"up{level + 1}_crop")([skip, x])
        x = layers.Concatenate(name=f"up{level + 1}_concat")([skip, x])
        x = double_conv(x, filters, f"up{level + 1}")
    x = layers.Conv2D(num_classes, 1, kernel_regularizer=regularizer, name="score")(x)
    if padding == "same":
        x = CropLike(name="crop")([x, images])
    probabilities = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(images, probabilities, name=name)
