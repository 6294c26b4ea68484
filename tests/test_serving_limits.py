"""Every app's serving signatures refuse what they cannot answer, with a message that names the
input and what was expected: size limits, non-finite values, 0..1 pixels, wrong shapes,
unreadable images by index, out-of-range request parameters; and answer an empty batch with
empty outputs. Tiny exports of all seven apps (tests/tiny_exports.py), loaded as a server
loads them."""
from __future__ import annotations

import io
import os
import re
import struct
import time
import zlib

import numpy as np
import pytest
import tensorflow as tf

from conftest import saved_model_cli_outputs

MAX_PIXELS, MAX_BYTES = 4096 * 4096, 16 * 2**20
SEGMENTER_PIXELS = 1024 * 1024

# app -> signature -> input -> the shape every message and the metadata state
SHAPES = {
    "mnist": {"serving_default": {"image": "[batch, 28, 28, 1]"},
              "serve_uint8": {"image": "[batch, 28, 28, 1]"},
              "serve_image_bytes": {"image_bytes": "[batch]"}},
    "classifier": {"serving_default": {"image": "[batch, 32, 32, 3]"},
                   "serve_uint8": {"image": "[batch, 32, 32, 3]"},
                   "serve_image_bytes": {"image_bytes": "[batch]"}},
    "segmenter": {"serving_default": {"image": "[batch, height, width, 1]"},
                  "serve_uint8": {"image": "[batch, height, width, 1]"},
                  "serve_image_bytes": {"image_bytes": "[batch]"}},
    "detector": {"serving_default": {"image_bytes": "[batch]"},
                 "detect": {"image_bytes": "[batch]", "score_threshold": "[]",
                            "max_detections": "[]"}},
    "captioner": {"serving_default": {"image_bytes": "[batch]"},
                  "beam_search": {"image_bytes": "[batch]", "beam_size": "[]"}},
    "dcgan": {"serving_default": {"latent": "[batch, 8]"}, "from_seed": {"seed": "[batch]"}},
    "dqn": {"serving_default": {"observation": "[batch, 4]"}},
    "dqn_atari": {"serving_default": {"observation": "[batch, 4, 36, 36]"}},
}
PARAMETERS = {"score_threshold": 0.5, "max_detections": 3, "beam_size": 2}  # valid values
SIGNATURES = [(app, name) for app, signatures in SHAPES.items() for name in signatures]
BYTES_SIGNATURES = [(app, name) for app, name in SIGNATURES
                    if "image_bytes" in SHAPES[app][name]]
FLOAT_PIXELS = [("mnist", "serving_default"), ("classifier", "serving_default"),
                ("segmenter", "serving_default")]


# -- requests ------------------------------------------------------------------------------------
def png(height=24, width=24, channels=3, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    return tf.io.encode_png(rng.integers(0, 256, (height, width, channels), np.uint8)).numpy()


def huge_png(side: int) -> bytes:
    """A real side x side black greyscale PNG, compressed row by row (~100 KB for 10000)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    packer, row, body = zlib.compressobj(9), b"\0" * (side + 1), []
    for _ in range(side):
        body.append(packer.compress(row))
    body.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(body))
            + chunk(b"IEND", b""))


def jpeg_claiming(height: int, width: int) -> bytes:
    """A small JPEG whose frame header (SOF0) says height x width."""
    data = bytearray(tf.io.encode_jpeg(np.zeros((16, 16, 3), np.uint8)).numpy())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def cmyk_jpeg(size=(28, 28)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (*size, 4), np.uint8), "CMYK")
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def example(name, spec, batch: int):
    """A valid value of input `spec` with `batch` rows."""
    if spec.shape.rank == 0:
        return tf.constant(PARAMETERS[name], spec.dtype)
    rng = np.random.default_rng(batch)
    shape = [batch] + [24 if d is None else d for d in spec.shape.as_list()[1:]]
    if spec.dtype == tf.string:
        return tf.constant([png(seed=i) for i in range(batch)], tf.string)
    if spec.dtype == tf.float32 and len(shape) == 4:  # raw pixels
        return tf.constant(rng.uniform(0, 255, shape), tf.float32)
    if spec.dtype == tf.float32:
        return tf.constant(rng.normal(size=shape), tf.float32)
    if spec.dtype == tf.uint8:
        return tf.constant(rng.integers(0, 256, shape), tf.uint8)
    return tf.constant(np.arange(batch), spec.dtype)


def request(signature, batch=1, **replace) -> dict:
    specs = signature.structured_input_signature[1]
    inputs = {name: example(name, spec, batch) for name, spec in specs.items()}
    return {**inputs, **replace}


def batch_input(app, signature_name) -> str:
    return next(n for n, shape in SHAPES[app][signature_name].items() if shape != "[]")


def refused(signature, inputs, message: str):
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)) as caught:
        signature(**inputs)
    return str(caught.value)


# -- the contract, in the metadata ---------------------------------------------------------------
@pytest.mark.parametrize("app", list(SHAPES))
def test_the_metadata_states_every_inputs_shape_range_and_limits(tiny_exports, app):
    from suite.export.saved_model import read_metadata

    inputs = read_metadata(tiny_exports(app)[0])["inputs"]
    assert {s: {i: d["shape"] for i, d in by_input.items()} for s, by_input in inputs.items()} \
        == SHAPES[app]
    for signature, by_input in inputs.items():
        for name, described in by_input.items():
            if name == "image_bytes":
                pixels = SEGMENTER_PIXELS if app == "segmenter" else MAX_PIXELS
                assert described["max_image_pixels"] == pixels
                assert described["max_image_bytes"] == MAX_BYTES
            if described["dtype"] == "float32":
                assert described["finite"] is True
            if name == "image" and described["dtype"] == "float32":
                assert "raw pixels 0..255" in described["values"]
                assert "0..1" in described["refused"]
    if app == "segmenter":
        assert inputs["serve_uint8"]["image"]["max_request_pixels"] == SEGMENTER_PIXELS
    if app == "detector":
        assert inputs["detect"]["score_threshold"]["range"] == [0.0, 1.0]
        assert inputs["detect"]["max_detections"]["range"] == [1, 5]
    if app == "captioner":
        assert inputs["beam_search"]["beam_size"]["range"] == [1, 20]


def test_an_input_note_with_quotes_is_refused_as_its_message_would_show_them_escaped():
    from suite.export.signature import Input

    with pytest.raises(ValueError, match="no quotes"):
        Input("x", "float32", (None, 4), about="the environment's observation")


# -- limits --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def huge():
    return huge_png(10000)


def _peak_rss_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident size
        return True
    except OSError:
        return False


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith(field)).split()[1])


@pytest.mark.parametrize("app, name", BYTES_SIGNATURES)
def test_a_10000_pixel_square_png_is_refused_at_once_without_decoding_it(tiny_exports, huge, app,
                                                                        name):
    signature = tiny_exports(app)[1][name]
    limit = SEGMENTER_PIXELS if app == "segmenter" else MAX_PIXELS
    inputs = request(signature, image_bytes=tf.constant([png(), huge]))
    with pytest.raises(tf.errors.InvalidArgumentError):  # warm: the first call sets up kernels
        signature(**inputs)
    measured = _peak_rss_reset()
    before = _status_kb("VmRSS:")
    started = time.perf_counter()
    message = refused(signature, inputs, "Input image_bytes: image 1 is 10000x10000 = "
                                         f"100000000 pixels, over the limit of {limit} "
                                         "pixels per image")
    assert time.perf_counter() - started < 0.5, message
    if measured:  # decoding it would take 100 MB (grey) to 1.2 GB (RGB float32)
        assert _status_kb("VmHWM:") - before < 50_000


@pytest.mark.parametrize("app, name", BYTES_SIGNATURES)
def test_images_past_the_pixel_or_byte_limit_are_refused_naming_both(tiny_exports, app, name):
    signature = tiny_exports(app)[1][name]
    limit = SEGMENTER_PIXELS if app == "segmenter" else MAX_PIXELS
    refused(signature, request(signature, image_bytes=tf.constant(
        [jpeg_claiming(20000, 30000)])), "image 0 is 20000x30000 = 600000000 pixels, over the "
                                         f"limit of {limit} pixels per image")
    too_long = png() + b"\0" * MAX_BYTES
    refused(signature, request(signature, image_bytes=tf.constant([png(), too_long])),
            f"Input image_bytes: image 1 is {len(too_long)} bytes, over the limit "
            f"of {MAX_BYTES} bytes per encoded image")


@pytest.mark.parametrize("name", ["serving_default", "serve_uint8", "serve_image_bytes"])
def test_the_segmenter_bounds_the_pixels_of_a_whole_request(tiny_exports, name):
    signature = tiny_exports("segmenter")[1][name]
    if name == "serve_image_bytes":
        inputs = {"image_bytes": tf.constant([png(512, 512, 1)] * 5)}
    else:
        inputs = {"image": tf.zeros([5, 512, 512, 1], signature.structured_input_signature[1][
            "image"].dtype)}
    refused(signature, inputs, f"the 5 images of this request have 1310720 pixels in all, over the "
                               f"limit of {SEGMENTER_PIXELS} pixels per request")
    if name != "serve_image_bytes":
        one = tf.zeros([1, 1100, 1000, 1], inputs["image"].dtype)
        refused(signature, {"image": one}, "Input image: image 0 is 1100x1000 = 1100000 "
                                           f"pixels, over the limit of {SEGMENTER_PIXELS}")


@pytest.mark.parametrize("value", [0, -1, 21, 200000])
def test_beam_size_is_bounded(tiny_exports, value):
    signature = tiny_exports("captioner")[1]["beam_search"]
    refused(signature, request(signature, beam_size=tf.constant(value)),
            f"Input beam_size must be in [1, 20]; got {value}")


@pytest.mark.parametrize("name, value, message", [
    ("score_threshold", float("nan"), "Input score_threshold holds NaN or infinite values"),
    ("score_threshold", 2.0, "Input score_threshold must be in [0.0, 1.0]; got 2"),
    ("score_threshold", -0.1, "Input score_threshold must be in [0.0, 1.0]; got -0.1"),
    ("max_detections", 0, "Input max_detections must be in [1, 5]; got 0"),
    ("max_detections", -5, "Input max_detections must be in [1, 5]; got -5"),
    ("max_detections", 1000, "Input max_detections must be in [1, 5]; got 1000"),
])
def test_detection_parameters_out_of_range_are_refused(tiny_exports, name, value, message):
    signature = tiny_exports("detector")[1]["detect"]
    dtype = tf.float32 if name == "score_threshold" else tf.int32
    refused(signature, request(signature, **{name: tf.constant(value, dtype)}),
            message)


# -- values --------------------------------------------------------------------------------------
FLOAT_INPUTS = [(app, name) for app, name in SIGNATURES
                if app in ("mnist", "classifier", "segmenter", "dcgan", "dqn")
                and name == "serving_default"]


@pytest.mark.parametrize("app, name", FLOAT_INPUTS)
@pytest.mark.parametrize("bad", ["all_nan", "one_nan", "one_inf"])
def test_non_finite_values_are_refused_naming_the_input(tiny_exports, app, name, bad):
    signature = tiny_exports(app)[1][name]
    field = batch_input(app, name)
    value = request(signature, batch=2)[field].numpy()
    if bad == "all_nan":
        value[:] = np.nan
    else:
        value.reshape(-1)[value.size // 3] = np.nan if bad == "one_nan" else np.inf
    refused(signature, {field: tf.constant(value)},
            f"Input {field} holds NaN or infinite values; send finite numbers")


@pytest.mark.parametrize("app, name", FLOAT_PIXELS)
def test_0_to_1_pixels_sent_to_a_0_to_255_signature_are_refused(tiny_exports, app, name):
    signature = tiny_exports(app)[1][name]
    scaled = request(signature, batch=2)["image"] / 255.0
    refused(signature, {"image": scaled}, "Input image takes raw pixels 0..255, but every "
                                          "value of this request lies within [0, 1]")
    black = tf.zeros_like(scaled)  # all 0 is a black image in either scale: answered
    assert signature(image=black)["probabilities"].shape[0] == 2
    assert signature(image=scaled * 255.0)["probabilities"].shape[0] == 2


# -- shapes --------------------------------------------------------------------------------------
def _wrong_shapes(app, name, signature):
    """(input, a wrong value) pairs: one row without its batch axis, one more channel or
    feature, a rank-2 string batch, a vector for a scalar."""
    valid = request(signature, batch=1)
    for field, value in valid.items():
        if SHAPES[app][name][field] == "[]":
            yield field, tf.stack([value, value])
        elif value.shape.rank == 1:
            yield field, value[0]
            yield field, value[None]
        else:
            yield field, value[0]
            wider = tf.concat([value, value[..., :1]], axis=-1)
            yield field, wider


@pytest.mark.parametrize("app, name", SIGNATURES)
def test_a_wrong_rank_or_shape_names_the_expected_shape(tiny_exports, app, name):
    signature = tiny_exports(app)[1][name]
    valid = request(signature)
    for field, wrong in _wrong_shapes(app, name, signature):
        dtype = signature.structured_input_signature[1][field].dtype.name
        message = refused(signature, {**valid, field: wrong},
                          f"Input {field} must be {dtype} of shape {SHAPES[app][name][field]}")
        assert f"got shape {wrong.shape.as_list()}".replace(",", "") in message


@pytest.mark.parametrize("app, name", BYTES_SIGNATURES)
def test_an_unreadable_image_in_a_batch_is_named_by_its_index(tiny_exports, app, name):
    signature = tiny_exports(app)[1][name]
    good = png()
    cases = [
        ([good, b"not an image", good], "Input image_bytes must hold PNG or JPEG encoded "
                                        "images; image 1 is neither"),
        ([good, good, b"\xff\xd8\xff\xe0 broken"],
         "Input image_bytes: no readable PNG or JPEG header in image(s) [2]"),
        ([good, b"\x89PNG\r\n\x1a\n" + b"\0" * 20],
         "no readable PNG or JPEG header in image(s) [1]"),
        ([good, good[:len(good) // 2], good],
         "Input image_bytes: image(s) [1] could not be decoded (corrupt or truncated PNG or "
         "JPEG data)"),
    ]
    for images, message in cases:
        refused(signature, request(signature, image_bytes=tf.constant(images)), message)


# -- answers -------------------------------------------------------------------------------------
@pytest.mark.parametrize("app, name", SIGNATURES)
def test_an_empty_batch_gets_empty_outputs(tiny_exports, app, name):
    signature = tiny_exports(app)[1][name]
    out = signature(**request(signature, batch=0))
    expected = signature.structured_outputs
    assert set(out) == set(expected)
    for key, value in out.items():
        assert value.shape[0] == 0, key
        assert value.dtype == expected[key].dtype, key
        known = expected[key].shape.as_list()[1:]
        assert [d for d, e in zip(value.shape[1:], known) if e is not None] \
            == [e for e in known if e is not None], key


@pytest.mark.parametrize("app, name", BYTES_SIGNATURES)
def test_a_cmyk_jpeg_is_decoded(tiny_exports, app, name):
    signature = tiny_exports(app)[1][name]
    data = tf.constant([cmyk_jpeg((24, 24)), png(24, 24)])  # one size: the segmenter's rule
    out = signature(**request(signature, image_bytes=data))
    assert all(value.shape[0] == 2 for value in out.values())


def test_a_cmyk_jpeg_turns_grey_as_pil_makes_its_rgb_grey(tiny_exports):
    """libjpeg decodes CMYK only to RGB: a 1-channel model gets that RGB (what the RGB models
    get) made grey with the weights of PIL's convert("L")."""
    from PIL import Image

    from suite.export.image_signatures import decode_image_bytes

    data = cmyk_jpeg()
    grey = decode_image_bytes(tf.constant(data), 1).numpy()[..., 0]
    rgb = tf.io.decode_jpeg(data, channels=3).numpy()
    pil = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.abs(grey.astype(int) - pil).max() <= 1
    signatures = tiny_exports("mnist")[1]
    served = signatures["serve_image_bytes"](image_bytes=tf.constant([data]))
    read = signatures["serve_uint8"](image=tf.constant(grey[None, ..., None]))
    np.testing.assert_allclose(served["probabilities"], read["probabilities"], atol=1e-6)


@pytest.mark.parametrize("signature_name, width", [("serving_default", None),
                                                   ("beam_search", 1), ("beam_search", 13),
                                                   ("beam_search", 20)])
def test_a_caption_never_ends_before_its_first_word(tiny_exports, signature_name, width):
    signature = tiny_exports("captioner")[1][signature_name]
    inputs = request(signature, batch=2)
    if width is not None:
        inputs["beam_size"] = tf.constant(width)
    captions = signature(**inputs)["caption"].numpy()
    assert all(caption.split() for caption in captions), captions


# -- TF Serving-style sessions ---------------------------------------------------------------------
class ServingSession:
    """A TF1 session of a SavedModel, as TF Serving runs one: feeds go to the C++ runtime
    unchecked (Session.run's own shape check, in Python, is bypassed)."""

    def __init__(self, folder):
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        with self.graph.as_default():
            self.meta = tf.compat.v1.saved_model.loader.load(self.session, ["serve"], folder)

    def run(self, signature: str, inputs: dict) -> dict:
        declared = self.meta.signature_def[signature]
        tensor = self.graph.get_tensor_by_name
        feeds = {tensor(declared.inputs[k].name)._as_tf_output(): np.asarray(v)
                 for k, v in inputs.items()}
        keys = list(declared.outputs)
        fetches = [tensor(declared.outputs[k].name)._as_tf_output() for k in keys]
        return dict(zip(keys, self.session._call_tf_sessionrun(None, feeds, fetches, [], None)))


@pytest.mark.parametrize("app, name", [("mnist", "serving_default"), ("dqn", "serving_default"),
                                       ("captioner", "beam_search")])  # one with a scalar
def test_a_session_gets_the_same_refusals_and_empty_answers(tiny_exports, app, name):
    folder, signatures = tiny_exports(app)
    signature, served = signatures[name], ServingSession(folder)
    valid = {k: v.numpy() for k, v in request(signature).items()}
    empty = served.run(name, {k: v.numpy() for k, v in request(signature, batch=0).items()})
    assert all(value.shape[0] == 0 for value in empty.values())
    for field, wrong in _wrong_shapes(app, name, signature):
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=re.escape(f"Input {field} must be")):
            served.run(name, {**valid, field: wrong.numpy()})
    for field in [k for k, v in valid.items() if v.dtype == np.float32]:
        with pytest.raises(tf.errors.InvalidArgumentError,
                           match=re.escape(f"Input {field} holds NaN or infinite values")):
            served.run(name, {**valid, field: np.full_like(valid[field], np.nan)})


@pytest.mark.slow
def test_saved_model_cli_gets_the_same_refusals_and_empty_answers(tiny_exports, tmp_path):
    import shutil
    import subprocess
    import sys

    folder, _ = tiny_exports("mnist")
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))

    def run(signature, *inputs):
        return subprocess.run([cli, "run", "--dir", folder, "--tag_set", "serve",
                               "--signature_def", signature, *inputs],
                              capture_output=True, text=True, timeout=180)

    claims = jpeg_claiming(10000, 10000)
    done = run("serve_image_bytes", "--input_exprs", f"image_bytes=[{claims!r}]")
    assert done.returncode != 0
    assert ("image 0 is 10000x10000 = 100000000 pixels, over the limit of "
            f"{MAX_PIXELS} pixels per image") in done.stderr
    nan = np.zeros((1, 28, 28, 1), np.float32)
    nan[0, 3, 4, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    done = run("serving_default", f"--inputs=image={tmp_path / 'nan.npy'}")
    assert done.returncode != 0
    assert "Input image holds NaN or infinite values" in done.stderr
    empty = saved_model_cli_outputs(folder, "serving_default", "image",
                                    np.zeros((0, 28, 28, 1), np.float32), tmp_path)
    assert empty["probabilities"].shape == (0, 10) and empty["class_ids"].shape == (0,)
