"""The book's DeepConvNet in PyTorch: the peer the Keras model's training speed is measured against.

Same layers, padding, initialisation and dropout placement as `suite.models.deep_convnet` and the
book (ch08/deep_convnet.py), so a step of either costs the same arithmetic. Measurement only: it is
not part of the `suite` package and `torch` is an optional extra (`pip install .[bench]`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

NUM_PARAMETERS = 123_552  # the book's count; any drift means the peers no longer match
# (out_channels, padding) in the book's order; a pool follows the 2nd, 4th and 6th conv.
CONV_LAYERS = ((16, 1), (16, 1), (32, 1), (32, 2), (64, 1), (64, 1))
HIDDEN_UNITS = 50
NUM_CLASSES = 10
DROPOUT_RATE = 0.5


class DeepConvNet(nn.Module):
    """Input: raw pixels in [0, 255], (N, 1, 28, 28) float32. Output: logits (N, 10)."""

    def __init__(self) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        in_channels = 1
        for index, (out_channels, padding) in enumerate(CONV_LAYERS):
            blocks += [nn.Conv2d(in_channels, out_channels, 3, padding=padding), nn.ReLU()]
            if index % 2 == 1:
                blocks.append(nn.MaxPool2d(2))
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        # 28 -> 14 (pool) -> 16 (pad 2) -> 8 (pool) -> 4 (pool): 64 * 4 * 4 = 1024 features,
        # flattened channel-major as the book does.
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, HIDDEN_UNITS),
            nn.ReLU(),
            nn.Dropout(DROPOUT_RATE),
            nn.Linear(HIDDEN_UNITS, NUM_CLASSES),
            nn.Dropout(DROPOUT_RATE),  # the book drops out the logits too
        )
        self._init_like_the_book()

    def _init_like_the_book(self) -> None:
        """N(0, 2 / fan_in) untruncated, zero biases: the book's `weight_init_std`."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_in))
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Scaling inside the model, as the Keras model's Rescaling layer does, keeps inputs identical.
        return self.classifier(self.features(images * (1.0 / 255.0)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(channels_last: bool = False) -> DeepConvNet:
    """Returns the network, checked to have the book's 123,552 parameters."""
    model = DeepConvNet()
    count = count_parameters(model)
    assert count == NUM_PARAMETERS, f"torch DeepConvNet has {count:,} parameters, the book {NUM_PARAMETERS:,}"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def make_train_step(model: nn.Module, learning_rate: float = 1e-3):
    """Returns step(images, labels) -> loss tensor: one Adam update, as Keras `fit` does per batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, eps=1e-7)  # Keras's and the book's eps
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step
