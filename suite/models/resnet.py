"""ResNet, "Deep Residual Learning for Image Recognition" (He, Zhang, Ren & Sun, 2015).

ImageNet networks (section 3.4, Table 1), `build_resnet(depth)`:

    conv7x7/2(64) BN relu  maxpool3x3/2
    conv2_x .. conv5_x: (2,2,2,2) basic blocks for 18, (3,4,6,3) for 34;
                        (3,4,6,3) bottleneck blocks for 50, (3,4,23,3) for 101, (3,8,36,3) for 152
    global avgpool  dense(classes)  softmax

basic block: conv3x3 BN relu conv3x3 BN (+ shortcut) relu, widths 64,128,256,512;
bottleneck:  conv1x1 BN relu conv3x3 BN relu conv1x1(4x) BN (+ shortcut) relu,
             widths 64..512 -> 256..2048.
conv3_1, conv4_1 and conv5_1 downsample with stride 2; a shortcut whose shape changes is a 1x1
projection with BN (option B). As keras.applications does (and the original Caffe model), the
stride sits on the block's first 1x1 conv; `stride_on_3x3=True` moves it to the 3x3 ("ResNet
v1.5", torchvision), which changes no parameter count. Layer names are keras.applications'
(conv2_block1_1_conv ...; only its "predictions" is "logits" here), so its weights load by name.

Parameter counts at 224x224x3, 1000 classes (Keras counts BN moving statistics too):
keras.applications keeps a bias on every convolution, redundant before BN; with the default
`conv_bias=True` ResNet-50/101/152 have exactly keras.applications' 25,636,712 / 44,707,176 /
60,419,944. `conv_bias=False` is the paper's Caffe model and torchvision: ResNet-50 then has
25,557,032 trainable parameters (torchvision's count) and ResNet-18 11,689,512.

CIFAR networks (section 4.2), `build_cifar_resnet(depth)`, depth = 6n + 2 (20, 32, 44, 56, 110):

    conv3x3(16) BN relu  3 stages of n basic blocks at 16, 32, 64 filters (32x32, 16x16, 8x8)
    global avgpool  dense(classes)  softmax

Shortcuts are identities; where the shape changes, option A (the paper's choice for CIFAR)
subsamples by 2 and pads the new channels with zeros, adding no parameters; `shortcut="B"` uses
1x1 projections there instead. Trainable parameters, 10 classes, option A: ResNet-20 269,722,
ResNet-56 853,018, ResNet-110 1,727,962: Table 6's 0.27M, 0.85M and 1.7M. `plain=True` removes
every shortcut (the paper's plain-20 ... plain-56, same parameter count), to show what they do;
it works for the ImageNet depths too (the paper's plain-18/34).

Convolution kernels are He-initialised (N(0, 2/fan_in)) as in the paper. Batch norm momentum is 0.9
(Torch's 0.1), so moving statistics keep up in short runs. `weight_decay` is the SGD decay of the
papers (1e-4 for both recipes: CIFAR_WEIGHT_DECAY) on convolution and dense kernels.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from suite.models.batch_norm import FusedBatchNormalization
from suite.models.vgg import check_image_shape, kernel_regularizer, scaled

IMAGENET_INPUT_SHAPE = (224, 224, 3)
IMAGENET_NUM_CLASSES = 1000
CIFAR_INPUT_SHAPE = (32, 32, 3)
CIFAR_NUM_CLASSES = 10
CIFAR_WEIGHT_DECAY = 1e-4
# depth -> (block type, blocks per stage conv2_x .. conv5_x)
IMAGENET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_DEPTHS = (20, 32, 44, 56, 110)  # the paper's; any 6n + 2 builds
CIFAR_WIDTHS = (16, 32, 64)
SHORTCUTS = ("A", "B")
BN_EPSILON = 1.001e-5  # keras.applications' value, so its weights behave the same here
BN_MOMENTUM = 0.9


def he_normal():
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


@keras.saving.register_keras_serializable(package="suite")
class ZeroPadShortcut(layers.Layer):
    """Option A shortcut: keep every `stride`-th pixel, append zero channels up to `channels`."""

    def __init__(self, stride: int, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.stride, self.channels = stride, channels

    def call(self, x):
        if self.stride > 1:
            # Exactly x[:, ::stride, ::stride, :], as a 1x1 average pool: its forward and
            # gradient kernels are 3x faster on TensorFlow than StridedSlice and its gradient,
            # which took 7% of a ResNet-20 training step (bench/results/profile_resnet20.md).
            x = ops.average_pool(x, 1, self.stride, "valid")
        return ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self.channels - x.shape[-1]]])

    def compute_output_shape(self, input_shape):
        def sub(n):
            return None if n is None else -(-n // self.stride)

        return (input_shape[0], sub(input_shape[1]), sub(input_shape[2]), self.channels)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride, "channels": self.channels}


class _Builder:
    """Holds the options shared by every convolution of one network."""

    def __init__(self, conv_bias: bool, weight_decay: float, sync_batch_norm: bool = False,
                 batch_norm: type[layers.BatchNormalization] = FusedBatchNormalization):
        self.conv_bias = conv_bias
        self.regularizer = kernel_regularizer(weight_decay)
        self.sync_batch_norm = sync_batch_norm
        self.batch_norm = batch_norm

    def conv_bn(self, x, filters, kernel, stride, name, relu=True):
        # Strided convolutions pad symmetrically, as Caffe and Torch do; Keras "same" would pad
        # only the bottom/right of an even-sized input and shift every window by one pixel.
        if stride > 1 and kernel > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        x = layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            padding="valid" if stride > 1 else "same",
            use_bias=self.conv_bias,
            kernel_initializer=he_normal(),
            kernel_regularizer=self.regularizer,
            name=f"{name}_conv",
        )(x)
        x = self.batch_norm(
            epsilon=BN_EPSILON, momentum=BN_MOMENTUM, synchronized=self.sync_batch_norm,
            name=f"{name}_bn")(x)
        return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x

    def block(self, x, kind, filters, stride, name, shortcut, plain, stride_on_3x3=False):
        """One basic or bottleneck block; `shortcut` is "A", "B" (projection if shape changes)."""
        out_channels = filters * (4 if kind == "bottleneck" else 1)
        changes = stride > 1 or x.shape[-1] != out_channels
        residual = None
        if not plain:
            if not changes:
                residual = x
            elif shortcut == "A":
                residual = ZeroPadShortcut(stride, out_channels, name=f"{name}_0_pad")(x)
            else:
                residual = self.conv_bn(x, out_channels, 1, stride, f"{name}_0", relu=False)
        if kind == "basic":
            x = self.conv_bn(x, filters, 3, stride, f"{name}_1")
            x = self.conv_bn(x, filters, 3, 1, f"{name}_2", relu=False)
        else:
            x = self.conv_bn(x, filters, 1, 1 if stride_on_3x3 else stride, f"{name}_1")
            x = self.conv_bn(x, filters, 3, stride if stride_on_3x3 else 1, f"{name}_2")
            x = self.conv_bn(x, out_channels, 1, 1, f"{name}_3", relu=False)
        if residual is not None:
            x = layers.Add(name=f"{name}_add")([residual, x])
        return layers.Activation("relu", name=f"{name}_out")(x)

    def head(self, images, x, num_classes, name):
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(num_classes, kernel_regularizer=self.regularizer, name="logits")(x)
        # float32 softmax keeps probabilities exact under mixed precision policies.
        probabilities = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
        return keras.Model(images, probabilities, name=name)


def _inputs(input_shape, rescale, augmentation):
    images = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(images) if rescale else images
    return images, (augmentation(x) if augmentation is not None else x)


def build_resnet(
    depth: int = 50,
    input_shape: tuple[int, int, int] = IMAGENET_INPUT_SHAPE,
    num_classes: int = IMAGENET_NUM_CLASSES,
    width_multiplier: float = 1.0,
    stride_on_3x3: bool = False,
    conv_bias: bool = True,
    plain: bool = False,
    weight_decay: float = 0.0,
    rescale: bool = True,
    augmentation: keras.Layer | None = None,
    sync_batch_norm: bool = False,
    batch_norm: type[layers.BatchNormalization] = FusedBatchNormalization,
    name: str | None = None,
) -> keras.Model:
    """Returns the ImageNet ResNet-`depth` (18, 34, 50, 101 or 152); see the module docstring.

    `rescale=True` divides raw [0, 255] pixels by 255 inside the model; pass False when the input
    pipeline normalises (keras.applications weights expect its `preprocess_input`).
    `sync_batch_norm` takes batch statistics over all replicas (TensorFlow only), so every
    worker keeps the same moving statistics. `batch_norm` is the layer class: the suite's fused
    one, or keras.layers.BatchNormalization (same variables; the bench measures the difference).
    """
    if depth not in IMAGENET_STAGES:
        raise ValueError(
            f"ImageNet ResNet depth must be one of {sorted(IMAGENET_STAGES)}, got {depth}; "
            f"for the CIFAR ResNets ({', '.join(map(str, CIFAR_DEPTHS))}) use build_cifar_resnet."
        )
    if width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}.")
    name = name or f"{'plain' if plain else 'resnet'}{depth}"
    input_shape = check_image_shape(input_shape, 32, name)
    kind, stages = IMAGENET_STAGES[depth]
    b = _Builder(conv_bias, weight_decay, sync_batch_norm, batch_norm)

    images, x = _inputs(input_shape, rescale, augmentation)
    x = b.conv_bn(x, scaled(64, width_multiplier), 7, 2, "conv1")
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)  # zeros are harmless after a ReLU
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (width, blocks) in enumerate(zip(IMAGENET_WIDTHS, stages), start=2):
        for i in range(1, blocks + 1):
            stride = 2 if i == 1 and stage > 2 else 1
            x = b.block(x, kind, scaled(width, width_multiplier), stride,
                        f"conv{stage}_block{i}", "B", plain, stride_on_3x3)
    return b.head(images, x, num_classes, name)


def build_cifar_resnet(
    depth: int = 20,
    input_shape: tuple[int, int, int] = CIFAR_INPUT_SHAPE,
    num_classes: int = CIFAR_NUM_CLASSES,
    base_filters: int = 16,
    shortcut: str = "A",
    plain: bool = False,
    conv_bias: bool = False,
    weight_decay: float = 0.0,
    rescale: bool = True,
    augmentation: keras.Layer | None = None,
    sync_batch_norm: bool = False,
    batch_norm: type[layers.BatchNormalization] = FusedBatchNormalization,
    name: str | None = None,
) -> keras.Model:
    """Returns the CIFAR ResNet-`depth` (6n + 2) of section 4.2, or its plain twin if `plain`.

    `base_filters` (16 in the paper) sets the stage widths base, 2 base, 4 base;
    `sync_batch_norm` and `batch_norm` are as in build_resnet.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"CIFAR ResNet depth must be 6n + 2 (the paper's: {CIFAR_DEPTHS}), got {depth}; "
            f"for the ImageNet ResNets ({sorted(IMAGENET_STAGES)}) use build_resnet."
        )
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}.")
    if base_filters < 1:
        raise ValueError(f"base_filters must be >= 1, got {base_filters}.")
    name = name or f"{'plain' if plain else 'resnet'}{depth}"
    input_shape = check_image_shape(input_shape, 4, name)
    n = (depth - 2) // 6
    b = _Builder(conv_bias, weight_decay, sync_batch_norm, batch_norm)

    images, x = _inputs(input_shape, rescale, augmentation)
    x = b.conv_bn(x, base_filters, 3, 1, "conv1")
    for stage, multiple in enumerate((1, 2, 4), start=2):
        for i in range(1, n + 1):
            stride = 2 if i == 1 and stage > 2 else 1
            x = b.block(x, "basic", base_filters * multiple, stride, f"conv{stage}_block{i}",
                        shortcut, plain)
    return b.head(images, x, num_classes, name)
