"""The suite's DCGAN (suite.models.dcgan) in PyTorch: the peer of bench.throughput_dcgan.

The same generator and discriminator (parameter counts asserted equal there), the paper's
N(0, 0.02) initialisation, and one training step as DCGAN.train_step takes it. Measurement
only: torch is the [bench] extra.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from suite.models.dcgan import KERNEL, LATENT_DIM, LEAK, upsampling_stages


def _bn(channels):  # Keras BatchNormalization's defaults: epsilon 1e-3, momentum 0.99
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class Generator(nn.Module):
    def __init__(self, base_filters: int, side: int, channels: int):
        super().__init__()
        stages = upsampling_stages(side)
        self.start, self.filters = side >> stages, base_filters * 2 ** (stages - 1)
        self.project = nn.Linear(LATENT_DIM, self.start ** 2 * self.filters, bias=False)
        self.project_bn = _bn(self.filters)
        layers, filters = [], self.filters
        for _ in range(1, stages):
            layers += [nn.ConvTranspose2d(filters, filters // 2, KERNEL, 2, 2, output_padding=1,
                                          bias=False), _bn(filters // 2), nn.ReLU()]
            filters //= 2
        layers += [nn.ConvTranspose2d(filters, channels, KERNEL, 2, 2, output_padding=1),
                   nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z):
        x = self.project(z).view(-1, self.filters, self.start, self.start)
        return self.body(F.relu(self.project_bn(x)))


class Discriminator(nn.Module):
    def __init__(self, base_filters: int, side: int, channels: int):
        super().__init__()
        layers, cin = [], channels
        for i in range(upsampling_stages(side)):
            out = base_filters * 2 ** i
            layers += [nn.Conv2d(cin, out, KERNEL, 2, 2, bias=i == 0),
                       *([_bn(out)] if i else []), nn.LeakyReLU(LEAK)]
            cin = out
        self.body = nn.Sequential(*layers, nn.Flatten())
        side = side >> upsampling_stages(side)
        self.logit = nn.Linear(cin * side * side, 1)

    def forward(self, x):
        return self.logit(self.body(x))


def init_normal(module: nn.Module) -> None:
    """The paper's N(0, 0.02) weights and N(1, 0.02) batch-norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def make_train_step(generator: nn.Module, discriminator: nn.Module, batch_size: int,
                    learning_rate: float, beta_1: float, compiled: bool = False):
    """step(real): a discriminator update on `real` and a generated batch, then a generator
    update through the discriminator, each from fresh noise, as DCGAN.train_step; Adam with
    Keras's epsilon for both; `compiled` runs both networks under torch.compile."""
    adam = dict(lr=learning_rate, betas=(beta_1, 0.999), eps=1e-7)
    d_opt = torch.optim.Adam(discriminator.parameters(), **adam)
    g_opt = torch.optim.Adam(generator.parameters(), **adam)
    if compiled:
        generator, discriminator = torch.compile(generator), torch.compile(discriminator)

    def step(real):
        ones = torch.ones(batch_size, 1)
        zeros = torch.zeros(batch_size, 1)
        with torch.no_grad():  # Keras's tape does not differentiate into the generator here
            fake = generator(torch.randn(batch_size, LATENT_DIM))
        d_opt.zero_grad(set_to_none=True)
        d_loss = (F.binary_cross_entropy_with_logits(discriminator(real), ones)
                  + F.binary_cross_entropy_with_logits(discriminator(fake), zeros))
        d_loss.backward()
        d_opt.step()
        g_opt.zero_grad(set_to_none=True)
        fake = generator(torch.randn(batch_size, LATENT_DIM))
        g_loss = F.binary_cross_entropy_with_logits(discriminator(fake), ones)
        g_loss.backward()  # also fills the discriminator's grads, cleared before its next step
        g_opt.step()

    return step
