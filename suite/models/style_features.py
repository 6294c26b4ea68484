"""The VGG feature network of style transfer, from one of three sources:

    imagenet       keras.applications' VGG-16/19 ImageNet weights (the paper's network: VGG-19),
                   when the file is on disk or downloadable; offline it fails in seconds saying
                   which file to copy where. Inputs get the weights' Caffe preprocessing.
    <model_dir>    a suite classifier's VGG (apps.train_classifier --model=vgg16, any width,
                   with or without batch norm): depth, width and normalisation read from it,
                   its convolution weights loaded by layer name, its own input rescaling kept.
    random         Glorot-initialised weights (seeded): tests, and random-feature textures.

Whatever the source, the network is rebuilt with the requested pooling (the paper replaces max
by average pooling) and cut after the deepest layer the losses read. It maps RGB pixels in
[0, 255] of any size to [content features, *style features].
"""
from __future__ import annotations

import dataclasses

import keras

from suite.errors import DataError
from suite.models.style_transfer import CONTENT_LAYER, STYLE_LAYERS
from suite.models.vgg import CONVS_PER_BLOCK, vgg_features

NETWORKS = {"vgg16": 16, "vgg19": 19}


@dataclasses.dataclass
class FeatureSource:
    """What the network is and where its weights came from (README and results.json say)."""
    description: str
    depth: int
    width_multiplier: float = 1.0
    batch_norm: bool = False
    preprocessing: str = "caffe"  # or "rescale" (divide by 255, the suite's VGG) or "none"
    weights: dict | None = None


def _from_suite_classifier(source: str) -> FeatureSource:
    from suite.models.registry import load_keras_file
    from suite.models.transfer import resolve_source

    path = resolve_source(source, "features_from")
    if not path.endswith(".keras"):
        raise DataError(f"`features_from={source}`: needs a .keras checkpoint of a VGG "
                        f"classifier (a model_dir with checkpoints/best.keras), not {path}")
    model = load_keras_file(path)
    names = {layer.name for layer in model.layers}
    convs = sum(1 for n in names if n.startswith("block") and "_conv" in n and
                not n.endswith(("_bn", "_relu")))
    depth = next((d for d, blocks in CONVS_PER_BLOCK.items() if sum(blocks) == convs), None)
    if "block1_conv1" not in names or depth is None:
        raise DataError(f"`features_from={source}`: {path} is not a suite VGG classifier "
                        "(no block1_conv1 ... block5_conv layers); train one with "
                        "apps.train_classifier `model=vgg16`")
    width = model.get_layer("block1_conv1").filters / 64
    return FeatureSource(
        f"VGG-{depth} (width {width:g}) from {path}", depth, width,
        batch_norm="block1_conv1_bn" in names,
        preprocessing="rescale" if "rescale" in names else "none",
        weights={v.path: v.numpy() for v in model.weights})


def feature_source(features_from: str, network: str) -> FeatureSource:
    if features_from == "imagenet":
        from suite.models.transfer import imagenet_weights

        weights = imagenet_weights(network, include_top=False)
        return FeatureSource(f"{network.upper()} ImageNet weights (keras.applications)",
                             NETWORKS[network], weights=weights)
    if features_from == "random":
        return FeatureSource(f"{network.upper()} with random (Glorot) weights",
                             NETWORKS[network])
    return _from_suite_classifier(features_from)


def feature_layer_names(batch_norm: bool, content_layer=CONTENT_LAYER,
                        style_layers=STYLE_LAYERS) -> list[str]:
    """The layers whose outputs are the features: a convolution's ReLU output."""
    suffix = "_relu" if batch_norm else ""
    return [f"{name}{suffix}" for name in (content_layer, *style_layers)]


def build_feature_extractor(source: FeatureSource, pooling: str = "avg",
                            content_layer: str = CONTENT_LAYER,
                            style_layers=STYLE_LAYERS) -> keras.Model:
    from suite.models.transfer import CaffePreprocess, load_matching_weights

    pixels = keras.Input((None, None, 3), name="pixels")
    x = {"caffe": lambda t: CaffePreprocess(name="caffe")(t),
         "rescale": lambda t: keras.layers.Rescaling(1 / 255.0, name="rescale")(t),
         "none": lambda t: t}[source.preprocessing](pixels)
    pools = vgg_features(x, source.depth, source.width_multiplier, source.batch_norm,
                         pooling=pooling)
    vgg = keras.Model(pixels, pools[-1])
    names = feature_layer_names(source.batch_norm, content_layer, style_layers)
    missing = [n for n in names if n not in {layer.name for layer in vgg.layers}]
    if missing:
        raise ValueError(f"VGG-{source.depth} has no layer(s) {missing}")
    outputs = [vgg.get_layer(n).output for n in names]
    extractor = keras.Model(pixels, outputs, name=f"vgg{source.depth}_features")
    extractor.trainable = False
    if source.weights is not None:
        report = load_matching_weights(extractor, source.weights, source.description)
        convs = [n for n in report.skipped if "conv" in n and not n.endswith("_relu")]
        if convs:
            raise DataError(f"{source.description}: could not load {convs[:3]} "
                            f"({list(report.skipped.values())[0]})")
    return extractor
