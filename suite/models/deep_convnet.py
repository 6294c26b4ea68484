"""DeepConvNet, the MNIST network of "Deep Learning from Scratch" (Saitoh, 2016), chapter 8.

Layer for layer as the book builds it:

    conv3x3(16) relu  conv3x3(16) relu  pool2
    conv3x3(32) relu  conv3x3(32, pad 2) relu  pool2
    conv3x3(64) relu  conv3x3(64) relu  pool2
    dense(50) relu dropout(0.5)  dense(10) dropout(0.5)  softmax

123,552 parameters. He initialisation as the book's `weight_init_std = sqrt(2 / fan_in)`.
The input is raw pixel values in [0, 255]; the model divides by 255 itself, so serving
clients send pixels as they are.

The book's Dropout is not inverted: in training it zeroes units and leaves the rest alone, at
inference it multiplies by (1 - rate). Keras's Dropout doubles the kept units in training
instead. Both give the same expected activations, but not the same training: after fc2 the
book's softmax sees masked logits at scale 1, Keras's at scale 2 (a sharper softmax), and Adam's
fixed-size steps meet differently scaled weights. So the faithful default is `dropout="book"`
(BookDropout); `dropout="inverted"` is the modern variant.
"""
from __future__ import annotations

import keras
from keras import layers, ops

NUM_CLASSES = 10
INPUT_SHAPE = (28, 28, 1)

# (name, filters, padding) in the book's order; padding 1 on a 3x3 conv is Keras "same".
CONV_LAYERS = (
    ("conv1", 16, 1),
    ("conv2", 16, 1),
    ("conv3", 32, 1),
    ("conv4", 32, 2),
    ("conv5", 64, 1),
    ("conv6", 64, 1),
)
POOL_AFTER = ("conv2", "conv4", "conv6")
HIDDEN_UNITS = 50
DROPOUT_RATE = 0.5
DROPOUT_STYLES = ("book", "inverted")


@keras.saving.register_keras_serializable(package="suite")
class BookDropout(layers.Layer):
    """The book's dropout (common/layers.py): mask without rescaling in training, x * (1 - rate) at inference."""

    inverted = False  # suite.interop.book reads this to know whether to fold the scaling

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate, self.seed = rate, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=False):
        if training:
            keep = keras.random.uniform(ops.shape(x), seed=self.seed_generator) >= self.rate
            return x * ops.cast(keep, x.dtype)
        return x * (1.0 - self.rate)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


def build_augmentation(
    rotation_degrees: float = 10.0, shift_pixels: float = 2.0, seed: int | None = None
) -> keras.Sequential:
    """Small rotations and shifts, the augmentation the book suggests for going past 99.4%.

    Active only in training; at inference the layers pass images through unchanged.
    """
    side = INPUT_SHAPE[0]
    return keras.Sequential(
        [
            layers.RandomRotation(rotation_degrees / 360.0, fill_mode="constant", seed=seed),
            layers.RandomTranslation(
                shift_pixels / side, shift_pixels / side, fill_mode="constant", seed=seed
            ),
        ],
        name="augmentation",
    )


def build_deep_convnet(
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    num_classes: int = NUM_CLASSES,
    augmentation: keras.Layer | None = None,
    dropout_rate: float = DROPOUT_RATE,
    dropout: str = "book",
    name: str = "deep_convnet",
) -> keras.Model:
    """Returns the book's DeepConvNet; `augmentation` (training-only layers) goes first if given.

    `dropout`: "book" (faithful, BookDropout) or "inverted" (keras.layers.Dropout).
    """
    if dropout not in DROPOUT_STYLES:
        raise ValueError(f"dropout must be one of {DROPOUT_STYLES}, got {dropout!r}")
    drop = BookDropout if dropout == "book" else layers.Dropout
    # The book draws N(0, 2/fan_in) without truncation; Keras's HeNormal truncates.
    def he():
        return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")

    images = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(images)
    if augmentation is not None:
        x = augmentation(x)
    for conv_name, filters, pad in CONV_LAYERS:
        if pad != 1:
            x = layers.ZeroPadding2D(pad, name=f"{conv_name}_pad")(x)
        x = layers.Conv2D(
            filters,
            3,
            padding="same" if pad == 1 else "valid",
            activation="relu",
            kernel_initializer=he(),
            name=conv_name,
        )(x)
        if conv_name in POOL_AFTER:
            x = layers.MaxPooling2D(2, name=f"pool{POOL_AFTER.index(conv_name) + 1}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(HIDDEN_UNITS, activation="relu", kernel_initializer=he(), name="fc1")(x)
    x = drop(dropout_rate, name="dropout1")(x)
    x = layers.Dense(num_classes, kernel_initializer=he(), name="fc2")(x)
    x = drop(dropout_rate, name="dropout2")(x)
    # float32 softmax keeps probabilities exact under mixed precision policies.
    probabilities = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(images, probabilities, name=name)
