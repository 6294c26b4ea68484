"""The PyTorch peer of the suite's CIFAR ResNets (He et al. 2015, sec. 4.2), for cross-checks.

Same network as suite.models.resnet.build_cifar_resnet(20): conv3x3(16) BN ReLU, 3 stages of 3
basic blocks at 16/32/64 filters, option-A shortcuts (stride-2 subsampling + zero channels),
global average pooling, a 10-way linear layer; 269,722 trainable parameters. `blocks=9` gives
ResNet-56 and `shortcut=False` the plain net (torch_plain_start.py).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

NUM_PARAMETERS = 269_722
WEIGHT_DECAY = 1e-4  # the paper's


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, shortcut: bool = True):
        super().__init__()
        self.shortcut = shortcut
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin  # option A: zero channels, no parameters
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if not self.shortcut:
            return F.relu(out)
        shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        if self.pad:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class ResNet20(nn.Module):
    def __init__(self, num_classes: int = 10, blocks: int = 3, shortcut: bool = True):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        layers, cin = [], 16
        for stage, width in enumerate((16, 32, 64)):
            for i in range(blocks):
                layers.append(BasicBlock(cin, width, 2 if stage and not i else 1, shortcut))
                cin = width
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x / 255.0))
        return self.fc(x.mean(dim=(2, 3)))


def build_model(channels_last: bool = False) -> ResNet20:
    model = ResNet20()
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n == NUM_PARAMETERS, f"PyTorch ResNet-20 has {n:,} trainable parameters"
    return model.to(memory_format=torch.channels_last) if channels_last else model


def make_train_step(model: nn.Module, learning_rate: float = 0.1):
    """SGD momentum 0.9 with weight decay 1e-4, the paper's recipe (as the Keras run uses)."""
    optimizer = torch.optim.SGD(model.parameters(), learning_rate, momentum=0.9,
                                weight_decay=WEIGHT_DECAY)
    model.train()

    def step(images, labels):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    return step
