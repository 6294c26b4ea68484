"""GoogLeNet (Inception v1), "Going Deeper with Convolutions" (Szegedy et al., 2014), Table 1.

    conv7x7/2(64)  maxpool3x3/2  LRN  conv1x1(64)  conv3x3(192)  LRN  maxpool3x3/2
    inception 3a 3b  maxpool3x3/2  inception 4a 4b 4c 4d 4e  maxpool3x3/2  inception 5a 5b
    global avgpool  dropout(0.4)  dense(classes)  softmax

Each inception module concatenates four branches: 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5;
3x3/1 maxpool -> 1x1 "pool proj", with Table 1's widths (INCEPTION below). Every convolution has
ReLU. Padding, LRN and initialisation follow the authors' Caffe model (bvlc_googlenet): the 7x7/2
conv pads 3 on each side, pools round up, LRN is across 5 channels with alpha 1e-4 and beta 0.75,
kernels are Caffe "xavier" (variance 1/fan_in) and ReLU layers' biases start at 0.2. Caffe fed
mean-subtracted 0..255 pixels; with `rescale=True` activations are 255x smaller and LRN is nearly
the identity, so pass rescale=False and mean-subtracted pixels to reproduce Caffe exactly.

Parameter count at 224x224x3 and 1000 classes, without auxiliary heads: 6,998,552 (6,990,272
kernel weights, 8,280 biases), i.e. 7.0M where the paper's Table 1 suggests 6.8M. The layer widths
are Table 1's, but its "params" column (kernel weights, K = 1024) does not follow from them in three
rows: conv1 is 9.2K not 2.7K, 4c 497.5K not 463K, 5a 1,018K not 1,072K (TABLE1_PARAMS_K below);
every other row agrees within 2%. The column sums to 6,797.7K = 6.96M weights; the layers as
specified have 6,826.4K = 6.99M. With both auxiliary heads the model has 13,378,280 parameters,
the ~53.5 MB of float32 of the authors' released Caffe model (bvlc_googlenet).

`aux_logits=True` adds the two training-time auxiliary classifiers of section 5 on 4a and 4d
(avgpool 5x5/3, conv1x1(128), dense(1024), dropout(0.7), dense(classes)); the model then returns a
dict {"probabilities", "aux1_probabilities", "aux2_probabilities"} and the paper weights the
auxiliary losses by AUX_LOSS_WEIGHT. `drop_aux_heads` gives the inference model.

`batch_norm=True` puts BatchNormalization after every convolution (and then LRN is off unless
asked for); `stem="cifar"` replaces the stem by one conv3x3(192) without downsampling, the usual
CIFAR adaptation, so 32x32 inputs reach stage 5 at 8x8 rather than 1x1.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from suite.models.batch_norm import FusedBatchNormalization
from suite.models.vgg import check_image_shape, kernel_regularizer, scaled

INPUT_SHAPE = (224, 224, 3)
NUM_CLASSES = 1000
# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj).
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
POOL_AFTER = ("3b", "4e")
AUX_AFTER = ("4a", "4d")
DROPOUT_RATE = 0.4
AUX_DROPOUT_RATE = 0.7
AUX_LOSS_WEIGHT = 0.3
STEMS = ("imagenet", "cifar")
# Table 1's "params" column in K = 1024 kernel weights (conv2 = 1x1 reduce + 3x3), as printed.
TABLE1_PARAMS_K = {"conv1": 2.7, "conv2": 112, "3a": 159, "3b": 380, "4a": 364, "4b": 437,
                   "4c": 463, "4d": 580, "4e": 840, "5a": 1072, "5b": 1388, "linear": 1000}
TABLE1_MISPRINTS = ("conv1", "4c", "5a")


CAFFE_BIAS = 0.2  # bvlc_googlenet's bias filler for every ReLU layer


def caffe_xavier():
    """Caffe's "xavier" filler, which bvlc_googlenet uses: U(+-sqrt(3 / fan_in)), variance 1/fan_in.

    With Keras's default (Glorot, fan_avg, zero biases) activations of a narrow GoogLeNet shrank
    ~50x over its 22 layers here; this, with biases of 0.2, is the authors' setting.
    """
    return keras.initializers.VarianceScaling(1.0, "fan_in", "uniform")


@keras.saving.register_keras_serializable(package="suite")
class LocalResponseNormalization(layers.Layer):
    """Caffe's across-channel LRN: x / (k + alpha/size * sum of x^2 over `size` channels)^beta.

    Keras has no LRN layer. The sum runs over channels c-size//2 .. c+size//2 (zeros past the
    edges). Computed in float32 so squares do not overflow under float16 policies.
    """

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=1.0, **kwargs):
        super().__init__(**kwargs)
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LRN size must be a positive odd number, got {size}.")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, x):
        x32 = ops.cast(x, "float32")
        channels = x32.shape[-1]
        half = self.size // 2
        squares = ops.pad(ops.square(x32), [[0, 0], [0, 0], [0, 0], [half, half]])
        window = sum(squares[..., i : i + channels] for i in range(self.size))
        scale = ops.power(self.k + (self.alpha / self.size) * window, self.beta)
        return ops.cast(x32 / scale, x.dtype)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha,
                "beta": self.beta, "k": self.k}


def build_googlenet(
    input_shape: tuple[int, int, int] = INPUT_SHAPE,
    num_classes: int = NUM_CLASSES,
    width_multiplier: float = 1.0,
    aux_logits: bool = False,
    use_lrn: bool | None = None,
    batch_norm: bool = False,
    stem: str = "imagenet",
    dropout_rate: float = DROPOUT_RATE,
    weight_decay: float = 0.0,
    rescale: bool = True,
    augmentation: keras.Layer | None = None,
    name: str = "googlenet",
) -> keras.Model:
    """Returns GoogLeNet; defaults are the paper's network (LRN on, no BatchNormalization).

    `use_lrn=None` means "LRN unless batch_norm". `width_multiplier` scales every convolution.
    `rescale=True` divides raw [0, 255] pixels by 255 inside the model. `weight_decay` is the SGD
    decay coefficient (the paper's Caffe solver used 2e-4).
    """
    if width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}.")
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {STEMS}, got {stem!r}.")
    # The imagenet stem and the three stage pools downsample by 32 ("same" pools never reach 0).
    input_shape = check_image_shape(input_shape, 1, name)
    use_lrn = (not batch_norm) if use_lrn is None else use_lrn
    regularizer = kernel_regularizer(weight_decay)

    def conv(x, filters, kernel, conv_name, strides=1, padding="same"):
        x = layers.Conv2D(
            scaled(filters, width_multiplier),
            kernel,
            strides=strides,
            padding=padding,
            use_bias=not batch_norm,
            activation=None if batch_norm else "relu",
            kernel_initializer=caffe_xavier(),
            bias_initializer=keras.initializers.Constant(CAFFE_BIAS),
            kernel_regularizer=regularizer,
            name=conv_name,
        )(x)
        if batch_norm:
            x = FusedBatchNormalization(name=f"{conv_name}_bn")(x)
            x = layers.Activation("relu", name=f"{conv_name}_relu")(x)
        return x

    def inception(x, module):
        n1, r3, n3, r5, n5, proj = INCEPTION[module]
        prefix = f"inception_{module}"
        b1 = conv(x, n1, 1, f"{prefix}_1x1")
        b3 = conv(conv(x, r3, 1, f"{prefix}_3x3_reduce"), n3, 3, f"{prefix}_3x3")
        b5 = conv(conv(x, r5, 1, f"{prefix}_5x5_reduce"), n5, 5, f"{prefix}_5x5")
        bp = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{prefix}_pool")(x)
        bp = conv(bp, proj, 1, f"{prefix}_pool_proj")
        return layers.Concatenate(name=f"{prefix}_output")([b1, b3, b5, bp])

    def aux_head(x, index):
        prefix = f"aux{index}"
        side = min(x.shape[1], x.shape[2])
        # 5x5/3 turns 14x14 into 4x4; on smaller maps (small inputs) pool to 1x1 instead.
        pool, stride = (5, 3) if side >= 5 else (side, side)
        x = layers.AveragePooling2D(pool, strides=stride, name=f"{prefix}_pool")(x)
        x = conv(x, 128, 1, f"{prefix}_conv")
        x = layers.Flatten(name=f"{prefix}_flatten")(x)
        x = layers.Dense(scaled(1024, width_multiplier), activation="relu",
                         kernel_initializer=caffe_xavier(),
                         bias_initializer=keras.initializers.Constant(CAFFE_BIAS),
                         kernel_regularizer=regularizer, name=f"{prefix}_fc")(x)
        x = layers.Dropout(AUX_DROPOUT_RATE, name=f"{prefix}_dropout")(x)
        x = layers.Dense(num_classes, kernel_initializer=caffe_xavier(),
                         kernel_regularizer=regularizer, name=f"{prefix}_logits")(x)
        return layers.Activation("softmax", dtype="float32", name=f"{prefix}_probabilities")(x)

    images = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(images) if rescale else images
    if augmentation is not None:
        x = augmentation(x)
    if stem == "imagenet":
        x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
        x = conv(x, 64, 7, "conv1_7x7", strides=2, padding="valid")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1")(x)
        if use_lrn:
            x = LocalResponseNormalization(name="norm1")(x)
        x = conv(x, 64, 1, "conv2_3x3_reduce")
        x = conv(x, 192, 3, "conv2_3x3")
        if use_lrn:
            x = LocalResponseNormalization(name="norm2")(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2")(x)
    else:
        x = conv(x, 192, 3, "conv_stem")
    aux = []
    for module in INCEPTION:
        x = inception(x, module)
        if aux_logits and module in AUX_AFTER:
            aux.append(aux_head(x, len(aux) + 1))
        if module in POOL_AFTER:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool_{module}")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout_rate, name="dropout")(x)
    x = layers.Dense(num_classes, kernel_initializer=caffe_xavier(),
                     kernel_regularizer=regularizer, name="logits")(x)
    # float32 softmax keeps probabilities exact under mixed precision policies.
    probabilities = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    if not aux_logits:
        return keras.Model(images, probabilities, name=name)
    outputs = {"probabilities": probabilities, "aux1_probabilities": aux[0],
               "aux2_probabilities": aux[1]}
    return keras.Model(images, outputs, name=name)


def aux_loss_weights() -> dict[str, float]:
    """`loss_weights` for compile() with aux_logits: 1 for the main head, 0.3 for each aux head."""
    return {"probabilities": 1.0, "aux1_probabilities": AUX_LOSS_WEIGHT,
            "aux2_probabilities": AUX_LOSS_WEIGHT}


def drop_aux_heads(model: keras.Model) -> keras.Model:
    """The inference network of an aux_logits model (the paper discards the heads at test time)."""
    return keras.Model(model.inputs[0], model.get_layer("probabilities").output,
                       name=model.name)
