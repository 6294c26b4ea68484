"""Imports the DeepConvNet parameter pickle of "Deep Learning from Scratch" (ch08) into the suite's model.

The book's pickle holds W1..W8, b1..b8 for a NumPy network whose layers differ from Keras's in three
ways, each folded into the weights here so Keras reproduces the book's probabilities, not just its
argmax (a naive import scored 0.9938 on MNIST where the book scores 0.9935):

1. Transpose. Book conv weights are (out, in, kh, kw); Keras wants (kh, kw, in, out). Both compute a
   cross-correlation (the book's im2col does not flip kernels), so a transpose is all it takes.
   Affine weights are (in, out) in both.
2. Flatten order. The book flattens its NCHW features as (channel, row, column); Keras flattens NHWC as
   (row, column, channel). W7's 1024 rows are permuted so that each Keras row meets the same feature.
3. Dropout fold. The book's Dropout is not inverted: identity-with-mask in training, `x * (1 - 0.5)` at
   inference, after relu(fc1) and after fc2. The suite's default model uses the same dropout
   (BookDropout) and needs no fold. A model built with Keras's inverted Dropout is the identity at
   inference, so there `0.5 * ((0.5 * h) @ W8 + b8)` becomes `h @ (0.25 * W8) + 0.5 * b8` in fc2.

Pickles can run code on load, so `load_book_params` unpickles with an allowlist: NumPy's array
reconstruction and nothing else.
"""
from __future__ import annotations

import codecs
import collections
import os
import pickle

import numpy as np

from suite.errors import BookParamsError, UnsafePickleError

try:  # NumPy 2 moved numpy.core to numpy._core; pickles name either.
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

BOOK_DROPOUT_RATIO = 0.5  # ch08/deep_convnet.py: Dropout(0.5) twice
CONV_NAMES = tuple(f"conv{i}" for i in range(1, 7))
EXPECTED_SHAPES = {
    "W1": (16, 1, 3, 3), "W2": (16, 16, 3, 3), "W3": (32, 16, 3, 3),
    "W4": (32, 32, 3, 3), "W5": (64, 32, 3, 3), "W6": (64, 64, 3, 3),
    "W7": (64 * 4 * 4, 50), "W8": (50, 10),
    "b1": (16,), "b2": (16,), "b3": (32,), "b4": (32,), "b5": (64,), "b6": (64,), "b7": (50,), "b8": (10,),
}




def _latin1_encode(text, encoding="latin1"):
    # Protocols 0-2 rebuild bytes as _codecs.encode(str, "latin1"); any other codec is refused.
    if codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError(f"refused _codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


_ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            ("_codecs", "encode"): _latin1_encode, ("collections", "OrderedDict"): collections.OrderedDict}
for _module in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_module}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_module}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED[(f"{_module}.numeric", "_frombuffer")] = _numeric._frombuffer  # protocol 5


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load global {module}.{name}: this is not a book parameter pickle "
                "(those reference only NumPy array reconstruction); do not load it with plain pickle "
                "either unless you trust its source") from None


def load_book_params(path) -> dict[str, np.ndarray]:
    """Reads a book DeepConvNet pickle safely and checks its keys, shapes and values."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BookParamsError(f"book parameter file not found: {path!r}")
    with open(path, "rb") as f:
        try:
            params = _NumpyOnlyUnpickler(f).load()
        except UnsafePickleError:
            raise
        except Exception as e:  # pickle reports damage as many types (EOFError, UnpicklingError, ...)
            raise BookParamsError(
                f"{path!r} is truncated or not a pickle ({type(e).__name__}: {e}); "
                "re-download or re-save it with DeepConvNet.save_params") from e
    return validate_book_params(params, source=path)


def validate_book_params(params, source: str = "params") -> dict[str, np.ndarray]:
    """Returns the 16 arrays if they have the book's keys, shapes and finite float values."""
    if not isinstance(params, dict):
        raise BookParamsError(f"{source}: expected a dict of W1..W8, b1..b8, found {type(params).__name__}")
    missing = sorted(set(EXPECTED_SHAPES) - set(params))
    extra = sorted(map(str, set(params) - set(EXPECTED_SHAPES)))
    if missing or extra:
        raise BookParamsError(f"{source}: not a ch08 DeepConvNet parameter set; missing keys {missing}, "
                              f"unexpected keys {extra}")
    out = {}
    for key, shape in EXPECTED_SHAPES.items():
        value = params[key]
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            kind = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise BookParamsError(f"{source}: {key} must be a float NumPy array, found {kind}")
        if value.shape != shape:
            raise BookParamsError(f"{source}: {key} has shape {value.shape}, expected {shape}")
        if not np.all(np.isfinite(value)):
            raise BookParamsError(f"{source}: {key} contains NaN or infinity")
        out[key] = value
    return out


def book_to_keras_weights(params, fold_dropout: bool = True) -> dict[str, list[np.ndarray]]:
    """Maps book arrays to {keras layer name: [kernel, bias]} (float32), applying the three rules.

    `fold_dropout=False` for a model whose dropout scales at inference like the book's.
    """
    p = validate_book_params(params)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    weights = {name: [f32(p[f"W{i}"].transpose(2, 3, 1, 0)), f32(p[f"b{i}"])]
               for i, name in enumerate(CONV_NAMES, start=1)}
    channels = p["W6"].shape[0]
    side = int(round((p["W7"].shape[0] // channels) ** 0.5))
    # Keras row (h, w, c) takes book row (c, h, w).
    w7 = p["W7"].reshape(channels, side, side, -1).transpose(1, 2, 0, 3).reshape(p["W7"].shape)
    weights["fc1"] = [f32(w7), f32(p["b7"])]
    keep = 1.0 - BOOK_DROPOUT_RATIO if fold_dropout else 1.0
    weights["fc2"] = [f32(keep * keep * p["W8"]), f32(keep * p["b8"])]  # powers of two: exact
    return weights


def _has_inverted_dropout(model) -> bool:
    """Keras's Dropout (identity at inference) needs the fold; BookDropout says `inverted = False`."""
    try:
        return bool(getattr(model.get_layer("dropout2"), "inverted", True))
    except ValueError:
        return True


def import_book_params(model, params) -> None:
    """Sets `model`'s (suite.models.deep_convnet) weights from book params; all-or-nothing on mismatch."""
    fold = _has_inverted_dropout(model)
    weights = book_to_keras_weights(params, fold_dropout=fold)
    layers = {}
    for name, (kernel, bias) in weights.items():
        try:
            layer = model.get_layer(name)
        except ValueError:
            raise BookParamsError(f"model {model.name!r} has no layer {name!r}; build it with "
                                  "suite.models.deep_convnet.build_deep_convnet()") from None
        found = [tuple(w.shape) for w in layer.weights]
        if found != [kernel.shape, bias.shape]:
            raise BookParamsError(f"layer {name!r} of model {model.name!r} has weight shapes {found}, the "
                                  f"book's need {[kernel.shape, bias.shape]}; build the model with "
                                  "input_shape=(28, 28, 1) and num_classes=10")
        layers[name] = layer
    for name, layer in layers.items():
        layer.set_weights(weights[name])
