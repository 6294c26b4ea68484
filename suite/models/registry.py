"""Model names -> builders, so apps and flags can say `--model=resnet56` instead of importing.

Every builder takes `input_shape` and `num_classes` keywords plus its own options (width,
weight_decay, ...), which `build_model` passes through.
"""
from __future__ import annotations

import functools
import os
import re
import zipfile
from typing import Callable

import keras

from suite.models.deep_convnet import build_deep_convnet
from suite.models.googlenet import build_googlenet
from suite.models.resnet import CIFAR_DEPTHS, IMAGENET_STAGES, build_cifar_resnet, build_resnet
from suite.models.vgg import CONVS_PER_BLOCK, build_vgg


def _named(builder, name, **fixed):
    """`builder` with `fixed` arguments bound; the model is called `name` unless told otherwise."""
    @functools.wraps(builder)
    def build(**kwargs):
        kwargs.setdefault("name", name)
        return builder(**fixed, **kwargs)

    return build


MODEL_BUILDERS: dict[str, Callable[..., keras.Model]] = {
    "deep_convnet": build_deep_convnet,
    "googlenet": build_googlenet,
    **{f"vgg{d}": _named(build_vgg, f"vgg{d}", depth=d) for d in CONVS_PER_BLOCK},
    **{  # batch norm after every convolution: not in the paper, but trains from scratch
        f"vgg{d}_bn": _named(build_vgg, f"vgg{d}_bn", depth=d, batch_norm=True)
        for d in CONVS_PER_BLOCK
    },
    **{f"resnet{d}": _named(build_resnet, f"resnet{d}", depth=d) for d in IMAGENET_STAGES},
    **{f"resnet{d}": _named(build_cifar_resnet, f"resnet{d}", depth=d) for d in CIFAR_DEPTHS},
    **{
        f"plain{d}": _named(build_cifar_resnet, f"plain{d}", depth=d, plain=True)
        for d in CIFAR_DEPTHS
    },
}


def builder_accepts(name: str, option: str) -> bool:
    """Whether the builder registered as `name` takes the keyword `option` (e.g. only the
    ResNets take `sync_batch_norm`)."""
    import inspect

    builder = MODEL_BUILDERS.get(name.strip().lower().replace("-", ""))
    return builder is not None and option in inspect.signature(builder).parameters


def model_names() -> list[str]:
    """Registered names, by family and then depth (resnet18 before resnet101)."""
    def key(name):
        digits = re.search(r"\d+", name)
        return (re.sub(r"\d+", "", name), int(digits.group()) if digits else 0)

    return sorted(MODEL_BUILDERS, key=key)


def build_model(
    name: str, input_shape=None, num_classes: int | None = None, **kwargs
) -> keras.Model:
    """Builds the model registered as `name` ("ResNet-56" and "resnet56" are the same).

    `input_shape` / `num_classes` left as None keep the builder's defaults (ImageNet sizes for
    the ImageNet networks, 32x32x3 and 10 classes for the CIFAR ResNets).
    """
    key = name.strip().lower().replace("-", "")
    if key not in MODEL_BUILDERS:
        raise ValueError(
            f"Unknown model {name!r}. Valid names: {', '.join(model_names())}."
        )
    if input_shape is not None:
        kwargs["input_shape"] = tuple(input_shape)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return MODEL_BUILDERS[key](**kwargs)


def load_keras_file(path: str, compile: bool = False, custom_objects=None) -> keras.Model:
    """keras.saving.load_model for the suite's .keras files.

    Importing this module has registered every custom layer (BookDropout, LRN, the option-A
    shortcut, ...), so checkpoints load in any process, not only in the one that built them.
    A file that is not a whole .keras zip (a copy or a write cut short) is a ValueError naming
    it, instead of Keras's "File not found".
    """
    if os.path.isfile(path) and not zipfile.is_zipfile(path):
        other = {"last.keras": " or load best.keras", "best.keras": " or load last.keras"}
        raise ValueError(f"{path}: truncated or corrupt checkpoint (not a .keras zip); rerun the "
                         f"training that wrote it{other.get(os.path.basename(path), '')}.")
    return keras.saving.load_model(path, compile=compile, custom_objects=custom_objects)
