"""FCN, "Fully Convolutional Networks for Semantic Segmentation" (Long, Shelhamer & Darrell, 2015).

VGG-16 (configuration D) made fully convolutional, as in the paper's Figure 3:

    block1..block5 of VGG-16                          pool3 (/8), pool4 (/16), pool5 (/32)
    fc6: conv 7x7 (4096) relu dropout(0.5)            VGG's fc1 recast as a convolution
    fc7: conv 1x1 (4096) relu dropout(0.5)            VGG's fc2 recast
    score_fr: conv 1x1 (classes), zero-initialised
    FCN-32s: upscore (x32, fixed bilinear)
    FCN-16s: upscore2 (x2, learned, bilinear init) + score_pool4 (1x1 on pool4, zero init),
             upscore16 (x16, fixed bilinear)
    FCN-8s:  ... + upscore_pool4 (x2) + score_pool3 (1x1 on pool3, zero init),
             upscore8 (x8, fixed bilinear)

as the paper trains them: score layers start at zero, intermediate upsamplings are learned from
bilinear, the final one stays bilinear. At full width and 21 classes (PASCAL VOC) FCN-32s has
VGG-16's 138,357,544 parameters less its 1000-way classifier (4,097,000) plus score_fr (86,037)
and upscore (1,806,336): 136,152,917, of which the paper's Table 1 counts 134M (without the fixed
upsampling). The input is padded up to a multiple of 32 (the paper pads 100 pixels and crops),
and the output is cropped back, so any height and width give a same-sized class map.

Options beyond the paper, for small machines and training from scratch: `width_multiplier`
scales every convolution and fc6/fc7, `batch_norm` adds BatchNormalization after every VGG
convolution (the paper started from ImageNet weights; from scratch, plain VGG-16 trains poorly).
"""
from __future__ import annotations

import keras
from keras import layers

from suite.models.dense_prediction import CropLike, PadToMultiple, bilinear_upsample
from suite.models.vgg import CLASSIFIER_UNITS, DROPOUT_RATE, kernel_regularizer, scaled, vgg_features

VARIANTS = ("32s", "16s", "8s")
STRIDE = 32


def build_fcn(
    variant: str = "8s",
    num_classes: int = 21,
    input_shape: tuple = (None, None, 3),
    width_multiplier: float = 1.0,
    batch_norm: bool = False,
    sync_batch_norm: bool = False,
    dropout_rate: float = DROPOUT_RATE,
    weight_decay: float = 0.0,
    rescale: bool = True,
    name: str | None = None,
) -> keras.Model:
    """FCN-`variant` ("32s", "16s" or "8s") on VGG-16; maps (H, W, C) images to (H, W, classes)
    probabilities for any H and W. `rescale` divides raw [0, 255] pixels by 255 in the model;
    `sync_batch_norm` takes batch statistics over all replicas (several devices or workers
    training small per-replica batches; TensorFlow only)."""
    variant = str(variant).lower().removeprefix("fcn").removeprefix("-")
    if variant not in VARIANTS:
        raise ValueError(f"FCN variant must be one of {', '.join(VARIANTS)}, got {variant!r}.")
    if num_classes < 2:
        raise ValueError(f"FCN needs at least 2 classes (background counts), got {num_classes}.")
    if width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}.")
    regularizer = kernel_regularizer(weight_decay)
    name = name or f"fcn{variant}"

    images = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(images) if rescale else images
    x = PadToMultiple(STRIDE, name="pad")(x)
    _, _, pool3, pool4, pool5 = vgg_features(x, 16, width_multiplier, batch_norm, regularizer,
                                             sync_batch_norm)

    units = scaled(CLASSIFIER_UNITS, width_multiplier)
    x = layers.Conv2D(units, 7, padding="same", activation="relu", kernel_regularizer=regularizer,
                      name="fc6")(pool5)
    x = layers.Dropout(dropout_rate, name="drop6")(x)
    x = layers.Conv2D(units, 1, activation="relu", kernel_regularizer=regularizer, name="fc7")(x)
    x = layers.Dropout(dropout_rate, name="drop7")(x)

    def score(features, layer_name):
        return layers.Conv2D(num_classes, 1, kernel_initializer="zeros",
                             kernel_regularizer=regularizer, name=layer_name)(features)

    x = score(x, "score_fr")
    if variant == "32s":
        x = bilinear_upsample(x, 32, num_classes, "upscore", trainable=False)
    else:
        x = bilinear_upsample(x, 2, num_classes, "upscore2")
        x = layers.Add(name="fuse_pool4")([x, score(pool4, "score_pool4")])
        if variant == "16s":
            x = bilinear_upsample(x, 16, num_classes, "upscore16", trainable=False)
        else:
            x = bilinear_upsample(x, 2, num_classes, "upscore_pool4")
            x = layers.Add(name="fuse_pool3")([x, score(pool3, "score_pool3")])
            x = bilinear_upsample(x, 8, num_classes, "upscore8", trainable=False)
    x = CropLike(name="crop")([x, images])
    # float32 softmax keeps probabilities exact under mixed precision policies.
    probabilities = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(images, probabilities, name=name)


def recast_classifier_weights(weights: dict, model: keras.Model) -> dict:
    """A VGG classifier's fc1/fc2 dense weights reshaped into FCN's fc6/fc7 convolutions, as
    the paper casts them (a channels-last Flatten + Dense is exactly a 7x7 valid convolution).
    Entries whose sizes do not fit are left out; the rest of `weights` is returned unchanged."""
    recast = dict(weights)
    for dense, conv in (("fc1", "fc6"), ("fc2", "fc7")):
        kernel = weights.get(f"{dense}/kernel")
        try:
            target = model.get_layer(conv).kernel.shape
        except ValueError:
            continue
        if kernel is not None and kernel.size == int(
                target[0] * target[1] * target[2] * target[3]):
            recast[f"{conv}/kernel"] = kernel.reshape(tuple(target))
            if f"{dense}/bias" in weights:
                recast[f"{conv}/bias"] = weights[f"{dense}/bias"]
    return recast
