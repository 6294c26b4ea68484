"""Transfer learning: start a model from another run's weights, optionally with a frozen backbone.

Weights are matched by variable path (layer name / variable name, e.g. "conv1_conv/kernel")
and shape, a whole layer at a time: a layer loads only if every one of its variables is in the
source with the same shape. So a classification head trained for another number of classes is
skipped (and says why) while the backbone loads. Sources: a `.keras` model file, a SavedModel
folder (ours from suite.export, or any model.export(); its variables keep their Keras paths),
a model_dir of a finished run, or "imagenet": keras.applications' weights for the models whose
layer names follow keras.applications (ResNet-50/101/152, VGG-16/19).
"""
from __future__ import annotations

import dataclasses
import json
import os

import keras
import numpy as np

from suite.errors import DataError

# registry name -> (keras.applications constructor, weights file in the Keras cache)
IMAGENET_MODELS = {
    "resnet50": ("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels{}.h5"),
    "resnet101": ("ResNet101", "resnet101_weights_tf_dim_ordering_tf_kernels{}.h5"),
    "resnet152": ("ResNet152", "resnet152_weights_tf_dim_ordering_tf_kernels{}.h5"),
    "vgg16": ("VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels{}.h5"),
    "vgg19": ("VGG19", "vgg19_weights_tf_dim_ordering_tf_kernels{}.h5"),
}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@dataclasses.dataclass
class TransferReport:
    source: str
    loaded: list[str]  # layer paths whose weights now equal the source's
    skipped: dict[str, str]  # layer path -> why not

    def summary(self) -> str:
        lines = [f"Initialised from {self.source}: {len(self.loaded)} layers loaded, "
                 f"{len(self.skipped)} skipped."]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@keras.saving.register_keras_serializable(package="suite")
class CaffePreprocess(keras.layers.Layer):
    """RGB pixels 0..255 -> BGR minus the ImageNet mean: what keras.applications' ResNet/VGG
    weights expect (their preprocess_input, mode "caffe"). Put in the model so serving clients
    still send raw pixels."""

    def call(self, x):
        x = keras.ops.flip(x, axis=-1)
        return x - keras.ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype=x.dtype)


def _strip(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _savedmodel_weights(folder: str) -> dict[str, np.ndarray]:
    import tensorflow as tf

    loaded = tf.saved_model.load(folder)
    variables = list(getattr(loaded, "variables", []))
    for fn in loaded.signatures.values():  # our exports track no variables at top level
        variables += list(fn.variables)
    return {_strip(v.name): v.numpy() for v in variables}


def _latest_export(folder: str) -> str | None:
    export = os.path.join(folder, "export")
    versions = [os.path.join(root, d) for root, dirs, _ in os.walk(export) for d in dirs
                if d.isdigit() and os.path.isfile(os.path.join(root, d, "saved_model.pb"))]
    return max(versions, key=lambda p: int(os.path.basename(p)), default=None)


@dataclasses.dataclass
class SourceWeights:
    path: str
    weights: dict[str, np.ndarray]  # variable path -> value
    class_names: list[str] | None  # when the source says (results.json, export metadata)


def _class_names_near(path: str) -> list[str] | None:
    """A checkpoint's run wrote results.json two folders up; an export its metadata.json."""
    for candidate in (os.path.join(os.path.dirname(os.path.dirname(path)), "results.json"),
                      os.path.join(path, "assets.extra", "metadata.json")):
        if os.path.isfile(candidate):
            with open(candidate) as f:
                return json.load(f).get("class_names")
    return None


def resolve_source(source: str, field: str = "init_from") -> str:
    """A model_dir's best checkpoint (else its last, else its newest export); other paths as
    they are. `field` is the option that named it, for the error."""
    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, "saved_model.pb")):
        candidates = [os.path.join(source, "checkpoints", f) for f in ("best.keras", "last.keras")]
        found = [c for c in candidates if os.path.isfile(c)] + [_latest_export(source)]
        if not found[0]:
            raise DataError(f"`{field}={source}` is a folder without checkpoints/best.keras, "
                            "checkpoints/last.keras or an export/<name>/<version>/ SavedModel")
        return found[0]
    return source


def read_source(source: str) -> SourceWeights:
    """The weights of a .keras file, a SavedModel folder or a model_dir (its best checkpoint)."""
    source = resolve_source(source)
    if os.path.isfile(os.path.join(source, "saved_model.pb")):
        return SourceWeights(source, _savedmodel_weights(source), _class_names_near(source))
    if source.endswith(".keras") and os.path.isfile(source):
        from suite.models.registry import load_keras_file

        model = load_keras_file(source)
        return SourceWeights(source, {v.path: v.numpy() for v in model.weights},
                             _class_names_near(source))
    raise DataError(f"`init_from={source}`: expected a .keras file, a SavedModel folder, a "
                    "model_dir of a finished run, or 'imagenet'")


def load_matching_weights(model: keras.Model, weights: dict[str, np.ndarray],
                          source: str = "weights", rename: dict[str, str] | None = None,
                          skip: dict[str, str] | None = None) -> TransferReport:
    """Assigns every layer of `model` whose variables all match `weights` (path and shape).

    `rename` maps a layer path here to its path in the source; `skip` names layers not to load,
    with the reason to report (e.g. a head trained on other classes).
    """
    rename, skip = rename or {}, skip or {}
    layers: dict[str, list] = {}
    for variable in model.weights:
        layers.setdefault(variable.path.rsplit("/", 1)[0], []).append(variable)
    loaded, skipped = [], {}
    for layer, variables in layers.items():
        reasons = [skip[layer]] if layer in skip else []
        for v in variables if not reasons else ():
            head, name = v.path.rsplit("/", 1)
            key = f"{rename.get(head, head)}/{name}"
            if key not in weights:
                reasons.append(f"{key} not in the source")
            elif tuple(weights[key].shape) != tuple(v.shape):
                reasons.append(f"{key} has shape {tuple(weights[key].shape)} in the source, "
                               f"{tuple(v.shape)} here")
        if reasons:
            skipped[layer] = "; ".join(reasons)
            continue
        for v in variables:
            head, name = v.path.rsplit("/", 1)
            v.assign(weights[f"{rename.get(head, head)}/{name}"])
        loaded.append(layer)
    return TransferReport(source, loaded, skipped)


def imagenet_weights(model_name: str, include_top: bool) -> dict[str, np.ndarray]:
    """keras.applications' ImageNet weights; fails in seconds, not minutes, when offline."""
    from suite.data import hosts

    key = model_name.lower().replace("-", "")
    if key not in IMAGENET_MODELS:
        raise DataError(f"`init_from=imagenet` has keras.applications weights only for "
                        f"{', '.join(IMAGENET_MODELS)}; `model={model_name}` has none")
    constructor, filename = IMAGENET_MODELS[key]
    filename = filename.format("" if include_top else "_notop")
    cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
    host = hosts.WEIGHTS_HOST
    if not os.path.isfile(os.path.join(cache, filename)) and not hosts.reachable(host):
        raise DataError(f"`init_from=imagenet` must download {filename} from {host[0]}, "
                        f"which is unreachable (offline?), and it is not in {cache}. Copy the file "
                        "there, or initialise from a local run: `init_from=<model_dir or .keras>`")
    source = getattr(keras.applications, constructor)(weights="imagenet", include_top=include_top)
    return {v.path: v.numpy() for v in source.weights}


def head_layers(model: keras.Model) -> list[str]:
    """The classification head: 'logits' in the suite's models, else the last layer with weights."""
    names = [layer.name for layer in model.layers]
    if "logits" in names:
        return ["logits"]
    return [next(layer.name for layer in reversed(model.layers) if layer.weights)]


def freeze_backbone(model: keras.Model, trainable=None) -> list[str]:
    """Makes every layer but `trainable` (default: the head) non-trainable; returns the trainable.

    Frozen BatchNormalization layers then run in inference mode (Keras 3 does that for
    trainable=False), so fine-tuning on a few labels leaves their statistics alone too.
    Call before compile().
    """
    trainable = list(trainable or head_layers(model))
    for layer in model.layers:
        layer.trainable = layer.name in trainable
    return trainable
