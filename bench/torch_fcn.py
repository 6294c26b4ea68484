"""The suite's FCN-8s (VGG-16 with batch norm) in PyTorch: the peer of bench.throughput_fcn.

Same layers, initialisation and upsampling as `suite.models.fcn.build_fcn("8s",
batch_norm=True)`, module names following the Keras layer names, so the Keras weights copy
across and both compute one function (bench.throughput_fcn checks it). Measurement only: torch
is the [bench] extra.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from suite.models.dense_prediction import bilinear_kernel
from suite.models.fcn import STRIDE
from suite.models.vgg import BLOCK_FILTERS, CLASSIFIER_UNITS, CONVS_PER_BLOCK, DROPOUT_RATE, scaled


def edge_pad(x, how: str = "cat"):
    """EdgePad: the border row and column repeated once ('symmetric' by one pixel). "replicate" is
    F.pad(mode="replicate"), its literal counterpart, but torch.compile (inductor, torch 2.13, CPU)
    fails on its backward (assert_size_stride in replication_pad2d_backward: the incoming gradient
    is channels-last); "cat" builds the same tensor from slices and compiles."""
    if how == "replicate":
        return F.pad(x, (1, 1, 1, 1), mode="replicate")
    x = torch.cat([x[:, :, :1], x, x[:, :, -1:]], 2)
    return torch.cat([x[:, :, :, :1], x, x[:, :, :, -1:]], 3)


class BilinearUpsample(nn.Module):
    """suite.models.dense_prediction.bilinear_upsample: edge-pad 1 (EdgePad), ConvTranspose2d
    kernel 2f stride f without bias, cut to `in * f` as Keras's padding="same" does (padding
    f // 2), then crop f from every side (CropBorder)."""

    def __init__(self, channels: int, factor: int, trainable: bool = True, edge_pad: str = "cat"):
        super().__init__()
        self.factor = factor
        self.edge_pad = edge_pad
        self.up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor,
                                     padding=factor // 2, bias=False)
        kernel = bilinear_kernel(factor, channels, channels)  # (k, k, out, in), Keras's layout
        with torch.no_grad():
            self.up.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1)))  # (in, out, k, k)
        self.up.weight.requires_grad_(trainable)

    def forward(self, x):
        f = self.factor
        x = self.up(edge_pad(x, self.edge_pad))
        return x[:, :, f:x.shape[2] - f, f:x.shape[3] - f]


class FCN8s(nn.Module):
    """suite.models.fcn.build_fcn("8s", batch_norm=True) in torch.nn: raw pixels (N, C, H, W) in,
    logits (N, classes, H, W) out (the Keras model's softmax is in its loss here). Module names
    follow the Keras layer names (block3_conv2 -> block3.conv2), so Keras weights copy across."""

    def __init__(self, num_classes: int, in_channels: int, width_multiplier: float = 0.25,
                 dropout_rate: float = DROPOUT_RATE, edge_pad: str = "cat"):
        super().__init__()
        widths = [scaled(f, width_multiplier) for f in BLOCK_FILTERS]
        cin = in_channels
        for block, (width, convs) in enumerate(zip(widths, CONVS_PER_BLOCK[16]), start=1):
            layers = OrderedDict()
            for i in range(1, convs + 1):
                layers[f"conv{i}"] = nn.Conv2d(cin, width, 3, padding=1, bias=False)
                # Keras BatchNormalization's defaults: epsilon 1e-3, moving average momentum 0.99.
                layers[f"conv{i}_bn"] = nn.BatchNorm2d(width, eps=1e-3, momentum=0.01)
                layers[f"conv{i}_relu"] = nn.ReLU(inplace=True)
                cin = width
            layers["pool"] = nn.MaxPool2d(2, 2)
            self.add_module(f"block{block}", nn.Sequential(layers))
        units = scaled(CLASSIFIER_UNITS, width_multiplier)
        self.fc6 = nn.Conv2d(cin, units, 7, padding=3)
        self.drop6 = nn.Dropout(dropout_rate)
        self.fc7 = nn.Conv2d(units, units, 1)
        self.drop7 = nn.Dropout(dropout_rate)
        self.score_fr = nn.Conv2d(units, num_classes, 1)
        self.score_pool4 = nn.Conv2d(widths[3], num_classes, 1)
        self.score_pool3 = nn.Conv2d(widths[2], num_classes, 1)
        self.upscore2 = BilinearUpsample(num_classes, 2, edge_pad=edge_pad)
        self.upscore_pool4 = BilinearUpsample(num_classes, 2, edge_pad=edge_pad)
        self.upscore8 = BilinearUpsample(num_classes, 8, trainable=False, edge_pad=edge_pad)
        for module in self.modules():  # Keras's defaults: Glorot uniform kernels, zero biases
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for score in (self.score_fr, self.score_pool4, self.score_pool3):  # the paper's zero init
            nn.init.zeros_(score.weight)

    def forward(self, images):
        height, width = images.shape[2], images.shape[3]
        x = images * (1.0 / 255.0)  # Rescaling
        x = F.pad(x, (0, (-width) % STRIDE, 0, (-height) % STRIDE))  # PadToMultiple(32)
        pool3 = self.block3(self.block2(self.block1(x)))
        pool4 = self.block4(pool3)
        x = self.block5(pool4)
        x = self.drop6(F.relu(self.fc6(x)))
        x = self.drop7(F.relu(self.fc7(x)))
        x = self.upscore2(self.score_fr(x)) + self.score_pool4(pool4)
        x = self.upscore_pool4(x) + self.score_pool3(pool3)
        return self.upscore8(x)[:, :, :height, :width]  # CropLike


def make_train_step(model: nn.Module, learning_rate: float, compiled: bool = False):
    """step(images, labels): one Adam update (Keras's epsilon) of the trainable weights on the
    per-pixel cross-entropy, averaged over every pixel as Keras's is; `compiled` runs the model
    under torch.compile."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=learning_rate, eps=1e-7)
    forward = torch.compile(model) if compiled else model

    def step(images, labels):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(images), labels)
        loss.backward()
        optimizer.step()

    return step
