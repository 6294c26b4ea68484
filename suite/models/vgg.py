"""VGG, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
(Simonyan & Zisserman, 2014).

Table 1 of the paper, configurations A, B, D and E (C, with its 1x1 convolutions, is left out):

    block1: conv3x3(64)  x n1   maxpool 2x2/2
    block2: conv3x3(128) x n2   maxpool 2x2/2
    block3: conv3x3(256) x n3   maxpool 2x2/2
    block4: conv3x3(512) x n4   maxpool 2x2/2
    block5: conv3x3(512) x n5   maxpool 2x2/2
    flatten  dense(4096) relu dropout(0.5)  dense(4096) relu dropout(0.5)  dense(classes) softmax

with (n1..n5) = (1,1,2,2,2) for VGG-11, (2,2,2,2,2) for VGG-13, (2,2,3,3,3) for VGG-16 (D) and
(2,2,4,4,4) for VGG-19 (E). All convolutions are stride 1 with padding 1 ("same") and ReLU.
At 224x224x3 and 1000 classes VGG-16 has 138,357,544 parameters and VGG-19 143,667,240, exactly
keras.applications.VGG16/VGG19. Layer names follow keras.applications (block1_conv1 ... fc1, fc2;
only its "predictions" dense is called "logits" here), so its weights load layer by layer by name.

For 32x32 inputs (CIFAR) the five pools leave a 1x1x512 map and `classifier_units=512` gives the
common CIFAR VGG head; `batch_norm=True` adds BatchNormalization after every convolution, as most
CIFAR recipes do (the paper had none). `width_multiplier` scales every convolution, for tiny tests.
Initialisation is Glorot's, which the paper notes trains the deep configurations without its
stage-wise pre-training of configuration A.
"""
from __future__ import annotations

import keras
from keras import layers

from suite.models.batch_norm import FusedBatchNormalization

INPUT_SHAPE = (224, 224, 3)
NUM_CLASSES = 1000
BLOCK_FILTERS = (64, 128, 256, 512, 512)
CONVS_PER_BLOCK = {
    11: (1, 1, 2, 2, 2),  # configuration A
    13: (2, 2, 2, 2, 2),  # configuration B
    16: (2, 2, 3, 3, 3),  # configuration D
    19: (2, 2, 4, 4, 4),  # configuration E
}
CLASSIFIER_UNITS = 4096
DROPOUT_RATE = 0.5
MIN_SIDE = 2 ** len(BLOCK_FILTERS)  # five 2x2 pools


def kernel_regularizer(weight_decay: float) -> keras.regularizers.Regularizer | None:
    """L2 term for the papers' SGD weight decay `weight_decay` (gradient += weight_decay * w).

    Keras's L2(l) adds l * sum(w**2) to the loss, whose gradient is 2 l w: l = weight_decay / 2.
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
    return keras.regularizers.L2(weight_decay / 2.0) if weight_decay else None


def scaled(channels: int, width_multiplier: float) -> int:
    """`channels * width_multiplier`, rounded, at least 1."""
    return max(1, int(round(channels * width_multiplier)))


def check_image_shape(input_shape, min_side: int, model_name: str) -> tuple[int, int, int]:
    """Validates a channels-last (height, width, channels) shape with both sides >= min_side."""
    shape = tuple(input_shape)
    if len(shape) != 3 or any(s is None or int(s) < 1 for s in shape):
        raise ValueError(
            f"{model_name}: input_shape must be (height, width, channels) with known sizes, got "
            f"{input_shape}; the models are channels-last, e.g. (32, 32, 3)."
        )
    if min(shape[:2]) < min_side:
        raise ValueError(
            f"{model_name}: input_shape {shape} is too small; the network downsamples by "
            f"{min_side}, so height and width must be at least {min_side} (resize or pad the "
            "images)."
        )
    return tuple(int(s) for s in shape)


def vgg_features(x, depth: int = 16, width_multiplier: float = 1.0, batch_norm: bool = False,
                 regularizer=None, sync_batch_norm: bool = False, pooling: str = "max") -> list:
    """VGG-`depth`'s five convolution blocks on `x`; returns the outputs of the five pools
    (block1_pool ... block5_pool), which FCN's skip connections read. Layer names follow
    keras.applications, so classifier and ImageNet weights load into any network built on it.
    `sync_batch_norm` computes the batch statistics over all replicas (TensorFlow only);
    `pooling="avg"` is Gatys et al.'s variant for image synthesis."""
    if depth not in CONVS_PER_BLOCK:
        raise ValueError(f"VGG depth must be one of {sorted(CONVS_PER_BLOCK)}, got {depth}.")
    if pooling not in ("max", "avg"):
        raise ValueError(f"VGG pooling must be 'max' or 'avg', got {pooling!r}.")
    pool = layers.MaxPooling2D if pooling == "max" else layers.AveragePooling2D
    pools = []
    for block, (filters, convs) in enumerate(zip(BLOCK_FILTERS, CONVS_PER_BLOCK[depth]), start=1):
        for i in range(1, convs + 1):
            conv_name = f"block{block}_conv{i}"
            x = layers.Conv2D(
                scaled(filters, width_multiplier),
                3,
                padding="same",
                use_bias=not batch_norm,  # BatchNormalization's beta replaces the bias
                activation=None if batch_norm else "relu",
                kernel_regularizer=regularizer,
                name=conv_name,
            )(x)
            if batch_norm:
                x = FusedBatchNormalization(synchronized=sync_batch_norm,
                                            name=f"{conv_name}_bn")(x)
                x = layers.Activation("relu", name=f"{conv_name}_relu")(x)
        x = pool(2, strides=2, name=f"block{block}_pool")(x)
        pools.append(x)
    return pools


def build_vgg(
    depth: int = 16,
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    num_classes: int = NUM_CLASSES,
    classifier_units: int = CLASSIFIER_UNITS,
    width_multiplier: float = 1.0,
    batch_norm: bool = False,
    dropout_rate: float = DROPOUT_RATE,
    weight_decay: float = 0.0,
    rescale: bool = True,
    augmentation: keras.Layer | None = None,
    name: str | None = None,
) -> keras.Model:
    """Returns VGG-`depth` (11, 13, 16 or 19).

    `rescale=True` divides raw [0, 255] pixels by 255 inside the model (serving clients send pixels
    as they are); pass False when the input pipeline normalises. `weight_decay` is the papers' SGD
    decay (the paper used 5e-4), applied to convolution and dense kernels.
    """
    if width_multiplier <= 0 or classifier_units < 1:
        raise ValueError(
            f"width_multiplier must be > 0 and classifier_units >= 1, got {width_multiplier} and "
            f"{classifier_units}."
        )
    name = name or f"vgg{depth}"
    input_shape = check_image_shape(input_shape, MIN_SIDE, name)
    regularizer = kernel_regularizer(weight_decay)

    images = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(images) if rescale else images
    if augmentation is not None:
        x = augmentation(x)
    x = vgg_features(x, depth, width_multiplier, batch_norm, regularizer)[-1]
    x = layers.Flatten(name="flatten")(x)
    for i in (1, 2):
        x = layers.Dense(
            classifier_units, activation="relu", kernel_regularizer=regularizer, name=f"fc{i}"
        )(x)
        x = layers.Dropout(dropout_rate, name=f"dropout{i}")(x)
    x = layers.Dense(num_classes, kernel_regularizer=regularizer, name="logits")(x)
    # float32 softmax keeps probabilities exact under mixed precision policies.
    probabilities = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(images, probabilities, name=name)


def build_vgg16(**kwargs) -> keras.Model:
    """VGG-16, configuration D."""
    return build_vgg(16, **kwargs)


def build_vgg19(**kwargs) -> keras.Model:
    """VGG-19, configuration E."""
    return build_vgg(19, **kwargs)
