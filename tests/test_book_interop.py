"""Book ("Deep Learning from Scratch") pickle import: safe loading, clear errors, faithful predictions.

Faithfulness is checked against a NumPy forward pass written here in the book's own layout (NCHW,
(channel, row, column) flatten, non-inverted dropout), on random weights, so no book file is needed.
"""
import os
import pickle
import subprocess

import keras
import numpy as np
import pytest

from suite.errors import BookParamsError, UnsafePickleError
from suite.interop import book
from suite.interop.book import (EXPECTED_SHAPES, book_to_keras_weights, import_book_params,
                                load_book_params)
from suite.models.deep_convnet import build_deep_convnet

CONV_PADS = (1, 1, 1, 2, 1, 1)
POOL_AFTER = (2, 4, 6)


def random_params(seed=0, dtype=np.float64):
    """Book-shaped weights at He scale with nonzero biases, so every mapping rule shows in the output."""
    rng = np.random.default_rng(seed)
    params = {}
    for key, shape in EXPECTED_SHAPES.items():
        if key.startswith("W"):
            fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
            params[key] = rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(dtype)
        else:
            params[key] = rng.normal(0, 0.1, shape).astype(dtype)
    return params


def book_forward(params, images_nhwc):
    """The book's inference, NCHW in float64: returns (scores before softmax, probabilities)."""
    x = images_nhwc.transpose(0, 3, 1, 2).astype(np.float64) / 255.0
    for i, pad in enumerate(CONV_PADS, start=1):
        w, b = params[f"W{i}"], params[f"b{i}"]
        xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        out_h, out_w = xp.shape[2] - 2, xp.shape[3] - 2
        y = sum(np.einsum("nchw,oc->nohw", xp[:, :, r:r + out_h, c:c + out_w], w[:, :, r, c])
                for r in range(3) for c in range(3))
        x = np.maximum(y + b[None, :, None, None], 0)
        if i in POOL_AFTER:
            n, ch, h, wd = x.shape
            x = x.reshape(n, ch, h // 2, 2, wd // 2, 2).max(axis=(3, 5))
    h = np.maximum(x.reshape(len(x), -1) @ params["W7"] + params["b7"], 0) * 0.5  # Dropout(0.5), test time
    scores = (h @ params["W8"] + params["b8"]) * 0.5
    e = np.exp(scores - scores.max(1, keepdims=True))
    return scores, e / e.sum(1, keepdims=True)


def keras_probs(model, images):
    return keras.ops.convert_to_numpy(model(images.astype(np.float32), training=False))


@pytest.fixture(scope="module", params=["book", "inverted"])
def model(request):
    """Both dropout styles: the import folds the book's inference scaling only where needed."""
    return build_deep_convnet(dropout=request.param)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).integers(0, 256, (6, 28, 28, 1)).astype(np.float32)


def dump(path, obj, protocol=pickle.DEFAULT_PROTOCOL):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


# ---------------------------------------------------------------- faithful predictions

def test_imported_model_matches_book_forward_pass(model, images):
    params = random_params()
    import_book_params(model, params)
    _, expected = book_forward(params, images)
    got = keras_probs(model, images)
    assert got.shape == (6, 10)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # Random weights give spread-out probabilities, so this is more than an argmax check.
    assert expected.max(1).min() < 0.99


@pytest.mark.parametrize("rule", ["no_fold", "no_permutation"])
def test_reference_detects_each_mapping_rule(model, images, rule):
    """Dropping either rule moves probabilities far beyond the tolerance above: the check has teeth."""
    params = random_params(seed=2)
    inverted = getattr(model.get_layer("dropout2"), "inverted", True)
    weights = book_to_keras_weights(params, fold_dropout=inverted)
    if rule == "no_fold":  # the wrong choice for this model's dropout
        weights = book_to_keras_weights(params, fold_dropout=not inverted)
    else:
        weights["fc1"][0] = params["W7"].astype(np.float32)
    for name, value in weights.items():
        model.get_layer(name).set_weights(value)
    _, expected = book_forward(params, images)
    assert np.abs(keras_probs(model, images) - expected).max() > 1e-2


def test_mapping_rules_elementwise():
    params = random_params(seed=3, dtype=np.float32)
    w = book_to_keras_weights(params)
    assert w["conv1"][0].shape == (3, 3, 1, 16) and w["conv6"][0].shape == (3, 3, 64, 64)
    assert w["conv5"][0][2, 0, 7, 9] == params["W5"][9, 7, 2, 0]
    c, r, col = 37, 2, 3  # book flat index (channel, row, column) -> keras (row, column, channel)
    np.testing.assert_array_equal(w["fc1"][0][(r * 4 + col) * 64 + c], params["W7"][c * 16 + r * 4 + col])
    np.testing.assert_array_equal(w["fc2"][0], 0.25 * params["W8"])
    np.testing.assert_array_equal(w["fc2"][1], 0.5 * params["b8"])
    assert all(a.dtype == np.float32 for pair in w.values() for a in pair)


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_through_pickle(tmp_path, model, images, protocol, dtype):
    params = random_params(seed=4, dtype=dtype)
    loaded = load_book_params(dump(tmp_path / "params.pkl", params, protocol))
    assert sorted(loaded) == sorted(EXPECTED_SHAPES)
    for key in params:
        assert loaded[key].dtype == dtype
        np.testing.assert_array_equal(loaded[key], params[key])
    if protocol == 4 and dtype == np.float64:
        import_book_params(model, loaded)
        np.testing.assert_allclose(keras_probs(model, images), book_forward(params, images)[1], atol=1e-5)


# ---------------------------------------------------------------- refusing malicious pickles

class _Payload:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("attack", ["os.system", "builtins.eval", "subprocess.check_call"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path, attack):
    marker = tmp_path / "pwned"
    payload = {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "builtins.eval": _Payload(eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.check_call": _Payload(subprocess.check_call, ["touch", str(marker)]),
    }[attack]
    params = random_params(seed=5)
    params["W1"] = payload  # hidden among genuine arrays
    path = dump(tmp_path / "evil.pkl", params)
    with pytest.raises(UnsafePickleError, match="not a book parameter pickle") as err:
        load_book_params(path)
    assert attack.split(".")[-1] in str(err.value)  # names the refused global (os.system is posix.system)
    assert isinstance(err.value, ValueError)
    assert not marker.exists()


def test_pickle_codec_trick_is_refused(tmp_path):
    """_codecs.encode is admitted for protocol-2 bytes, but only with latin-1."""
    path = tmp_path / "codec.pkl"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(UnsafePickleError, match="rot13"):
        load_book_params(path)


# ---------------------------------------------------------------- clear errors for bad input

def test_missing_file(tmp_path):
    with pytest.raises(BookParamsError, match="not found"):
        load_book_params(tmp_path / "nope.pkl")


@pytest.mark.parametrize("cut", [0, 10, 0.5, -1])
def test_truncated_or_corrupt_file(tmp_path, cut):
    data = pickle.dumps(random_params())
    end = int(len(data) * cut) if isinstance(cut, float) else (cut if cut >= 0 else len(data) - 1)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[:end])
    with pytest.raises(BookParamsError, match="truncated or not a pickle"):
        load_book_params(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "junk.pkl"
    path.write_bytes(b"this is a text file, not a pickle\n")
    with pytest.raises(BookParamsError, match="truncated or not a pickle"):
        load_book_params(path)


def test_not_a_dict(tmp_path):
    with pytest.raises(BookParamsError, match="expected a dict.*found list"):
        load_book_params(dump(tmp_path / "list.pkl", list(random_params().values())))


def test_wrong_keys(tmp_path):
    params = random_params()
    del params["W7"]
    params["gamma1"] = np.ones(16)
    with pytest.raises(BookParamsError, match=r"missing keys \['W7'\], unexpected keys \['gamma1'\]"):
        load_book_params(dump(tmp_path / "keys.pkl", params))


def test_wrong_shape(tmp_path):
    params = random_params()
    params["W7"] = params["W7"].T
    with pytest.raises(BookParamsError, match=r"W7 has shape \(50, 1024\), expected \(1024, 50\)"):
        load_book_params(dump(tmp_path / "shape.pkl", params))


@pytest.mark.parametrize("bad", ["int", "object", "nan"])
def test_wrong_values(tmp_path, bad):
    params = random_params()
    if bad == "int":
        params["b3"] = np.zeros(32, np.int64)
    elif bad == "object":
        params["b3"] = np.array([0.0] * 32, dtype=object)
    else:
        params["b3"][5] = np.nan
    with pytest.raises(BookParamsError, match="b3"):
        load_book_params(dump(tmp_path / "values.pkl", params))


def test_model_mismatch_is_reported_and_leaves_model_untouched():
    model = build_deep_convnet(num_classes=5)
    before = [w.copy() for w in model.get_layer("conv1").get_weights()]
    with pytest.raises(BookParamsError, match="layer 'fc2'.*num_classes=10"):
        import_book_params(model, random_params())
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0], before[0])


def test_model_without_book_layers():
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")], name="other")
    with pytest.raises(BookParamsError, match="no layer 'conv1'"):
        import_book_params(other, random_params())


def test_module_is_numpy_only():
    """The mapping must not drag a backend in: book.py names no keras/tensorflow module."""
    source = open(book.__file__).read()
    assert "import keras" not in source and "tensorflow" not in source
