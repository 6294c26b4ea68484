"""Is the plain-56 blow-up of Figure 6 (docs/classifier.md) ours? The same first epoch in PyTorch.

    python -m bench.torch_plain_start --blocks=9 --plain --steps=156

The PyTorch peer of the suite's CIFAR nets (torch_resnet20.py) with the paper's recipe (He
normal init, SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 128, the bench's pad-4 crop +
flip on the 20k-image subset). Every 20 steps it prints the cross-entropy and the L2 term as
the suite's Keras regularizers add it to the loss (weight decay / 2 times the squared norm of
the conv and dense kernels), so its numbers compare with the loss bench/cifar_resnet.py records.
"""
from __future__ import annotations

import os
import time

import numpy as np
from absl import flags

from bench import SHARED_DATA, cli


def l2_term(model) -> float:
    from torch import nn

    from bench.torch_resnet20 import WEIGHT_DECAY

    kernels = (m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    return WEIGHT_DECAY / 2 * sum(float(w.detach().square().sum()) for w in kernels)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("blocks", 9, "blocks per stage: 3 = 20 layers, 9 = 56", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_boolean("plain", False, "no shortcuts: the paper's plain net", flag_values=fv)
    flags.DEFINE_integer("steps", 156, "156 = one epoch of the 20k subset", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("seed", 0, "seeds the initialisation, the order and the augmentation",
                         flag_values=fv)
    flags.DEFINE_string("data", os.path.join(SHARED_DATA, "cifar10-subset",
                                             "cifar10_jpg_test10000_train20000.zip"),
                        "the CIFAR-10 subset's zip", flag_values=fv)


def main(args):
    import torch
    from torch import nn

    from bench.cifar_resnet import augment
    from bench.torch_resnet20 import ResNet20, make_train_step
    from suite.data.cifar10 import load_cifar10_local

    (x, y), _ = load_cifar10_local(args.data)
    if args.steps * 128 > len(x):
        cli.usage_error(f"--steps must be at most {len(x) // 128}, one epoch of {len(x)} images")
    torch.manual_seed(args.seed)
    model = ResNet20(blocks=args.blocks, shortcut=not args.plain)
    for m in model.modules():  # the paper's init [13]; PyTorch's default is a uniform one
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
    step = make_train_step(model)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(x))
    name = f"{'plain' if args.plain else 'resnet'}-{6 * args.blocks + 2} (PyTorch)"
    print(f"{name}: L2 term at init {l2_term(model):.3f}")
    start = time.time()
    for i in range(args.steps):
        idx = order[i * 128:(i + 1) * 128]
        images = torch.from_numpy(augment(x[idx], rng)).permute(0, 3, 1, 2).contiguous()
        loss = step(images, torch.from_numpy(y[idx].astype("int64").reshape(-1))).item()
        if i % 20 == 0 or i == args.steps - 1:
            print(f"step {i + 1}: cross-entropy {loss:.2f}, L2 term {l2_term(model):.2f} "
                  f"({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    cli.run(main, define_flags)
