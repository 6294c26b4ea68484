"""SavedModel export: signatures equal Keras, TF Serving's versioned layout, clear input errors."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from suite.errors import ExportError
from suite.export import saved_model
from suite.export.classifier import SIGNATURES, export_classifier
from suite.export.saved_model import read_metadata

H, W, C, K = 10, 8, 1, 3  # not square, so a swapped height and width would show
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_classifier(shape=(H, W, C), classes=K, seed=0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    image = keras.Input(shape=shape, name="image")
    x = layers.Rescaling(1.0 / 255.0)(image)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(classes)(x)
    return keras.Model(image, layers.Activation("softmax", dtype="float32")(x))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = tiny_classifier()
    base = str(tmp_path_factory.mktemp("export"))
    version_dir = export_classifier(model, base, "tiny", class_names=["a", "b", "c"])
    pixels = np.random.default_rng(0).integers(0, 256, (5, H, W, C), dtype=np.uint8)
    expected = model(pixels.astype(np.float32), training=False).numpy()
    return model, version_dir, pixels, expected, tf.saved_model.load(version_dir).signatures


def test_all_three_signatures_equal_keras(exported):
    _, version_dir, pixels, expected, sigs = exported
    assert version_dir.endswith(os.path.join("tiny", "1"))
    results = {
        "serving_default": sigs["serving_default"](image=tf.constant(pixels, tf.float32)),
        "serve_uint8": sigs["serve_uint8"](image=tf.constant(pixels)),
        "serve_image_bytes": sigs["serve_image_bytes"](
            image_bytes=tf.stack([tf.io.encode_png(p) for p in pixels])),
    }
    for name, out in results.items():
        assert out["probabilities"].dtype == tf.float32, name
        assert out["class_ids"].dtype == tf.int64, name
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(out["class_ids"].numpy(), expected.argmax(-1), err_msg=name)


def test_signature_specs_are_named_and_typed(exported):
    sigs = exported[4]
    specs = {name: sigs[name].structured_input_signature[1] for name in SIGNATURES}
    assert specs["serving_default"]["image"].shape.as_list() == [None, H, W, C]
    assert specs["serving_default"]["image"].dtype == tf.float32
    assert specs["serve_uint8"]["image"].dtype == tf.uint8
    assert specs["serve_image_bytes"]["image_bytes"].shape.as_list() == [None]
    assert specs["serve_image_bytes"]["image_bytes"].dtype == tf.string
    for name in SIGNATURES:
        outputs = sigs[name].structured_outputs
        assert outputs["probabilities"].shape.as_list() == [None, K]
        assert outputs["class_ids"].shape.as_list() == [None]


def test_image_bytes_are_resized_and_channel_converted(exported):
    from suite.data.augment import prepare_for_eval

    model, _, pixels, expected, sigs = exported
    # Another size is resized exactly as evaluation resizes a test image.
    big = np.repeat(np.repeat(pixels[0], 2, axis=0), 2, axis=1)
    rgb = np.repeat(pixels[1], 3, axis=-1)  # grey as RGB: the signature converts it to 1 channel
    out = sigs["serve_image_bytes"](image_bytes=tf.stack([tf.io.encode_png(big),
                                                          tf.io.encode_png(rgb)]))
    evaluated = model(prepare_for_eval(tf.constant(big), (H, W))[None], training=False)
    np.testing.assert_allclose(out["probabilities"][0], evaluated[0], atol=1e-5)
    np.testing.assert_allclose(out["probabilities"][1], expected[1], atol=2e-2)  # +-1 rounding
    jpeg = sigs["serve_image_bytes"](image_bytes=tf.stack([tf.io.encode_jpeg(pixels[2])]))
    assert jpeg["probabilities"].shape == (1, K)


@pytest.mark.parametrize("signature, kwargs, message", [
    ("serving_default", {"image": tf.zeros([1, H + 1, W, C])}, rf"\[batch, {H}, {W}, {C}\]"),
    ("serving_default", {"image": tf.zeros([H, W, C])}, rf"\[batch, {H}, {W}, {C}\]"),
    ("serving_default", {"image": tf.zeros([2, H, W, 3])}, rf"\[batch, {H}, {W}, {C}\]"),
    ("serving_default", {"image": tf.zeros([1, H, W, C], tf.float64)}, "float"),
    ("serve_uint8", {"image": tf.zeros([1, H, W, C], tf.float32)}, "uint8"),
    ("serve_uint8", {"image": tf.zeros([1, W, H, C], tf.uint8)}, rf"uint8 of shape \[batch, {H}"),
    ("serve_image_bytes", {"image_bytes": tf.constant([b"not an image"])}, "PNG or JPEG"),
    ("serve_image_bytes", {"image_bytes": tf.constant([b"\x89PNG\r\n\x1a\n" + b"\0" * 20])}, "PNG"),
])
def test_bad_inputs_fail_clearly(exported, signature, kwargs, message):
    sigs = exported[4]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        sigs[signature](**kwargs)


def test_versions_count_up_and_are_never_overwritten(tmp_path):
    model = tiny_classifier()
    base = str(tmp_path)
    assert export_classifier(model, base, "m") == os.path.join(base, "m", "1")
    assert export_classifier(model, base, "m") == os.path.join(base, "m", "2")
    with pytest.raises(ExportError, match=r"already exists.*next free: 3"):
        export_classifier(model, base, "m", version=2)
    assert export_classifier(model, base, "m", version=7) == os.path.join(base, "m", "7")
    assert saved_model.next_version(os.path.join(base, "m")) == 8
    assert sorted(os.listdir(os.path.join(base, "m"))) == ["1", "2", "7"]  # no temp folders left
    metadata = read_metadata(os.path.join(base, "m", "1"))
    inputs = metadata.pop("inputs")  # what each signature takes: tests/test_serving_limits.py
    assert metadata == {
        "model": model.name, "image_shape": [H, W, C], "num_classes": K, "class_names": None,
        "signatures": list(SIGNATURES)}
    assert list(inputs) == list(SIGNATURES)
    assert inputs["serving_default"]["image"]["shape"] == f"[batch, {H}, {W}, {C}]"


def test_a_failed_export_leaves_no_version(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(saved_model.json, "dump", crash)  # after the SavedModel is written
    with pytest.raises(RuntimeError, match="disk full"):
        export_classifier(tiny_classifier(), str(tmp_path), "m")
    assert os.listdir(tmp_path / "m") == []
    assert saved_model.next_version(str(tmp_path / "m")) == 1


def test_unusable_models_and_arguments_are_refused(tmp_path, exported):
    model = exported[0]
    free = keras.Input(shape=(None, None, 1))
    with pytest.raises(ExportError, match="H, W, C known"):
        export_classifier(keras.Model(free, layers.GlobalAveragePooling2D()(free)),
                          str(tmp_path), "m")
    with pytest.raises(ExportError, match="2 class names given for a model with 3"):
        export_classifier(model, str(tmp_path), "m", class_names=["a", "b"])
    with pytest.raises(ExportError, match="positive integer"):
        export_classifier(model, str(tmp_path), "m", version=0)
    with pytest.raises(ExportError, match="plain folder name"):
        export_classifier(model, str(tmp_path), "a/b")
    assert read_metadata(exported[1])["class_names"] == ["a", "b", "c"]


def test_mixed_precision_model_serves_float32_probabilities(tmp_path):
    keras.config.set_dtype_policy("mixed_bfloat16")  # what training may use on CPU
    try:
        model = tiny_classifier()
    finally:
        keras.config.set_dtype_policy("float32")
    pixels = np.random.default_rng(1).integers(0, 256, (3, H, W, C)).astype(np.float32)
    version_dir = export_classifier(model, str(tmp_path), "mixed")
    out = tf.saved_model.load(version_dir).signatures["serving_default"](image=tf.constant(pixels))
    assert out["probabilities"].dtype == tf.float32
    np.testing.assert_allclose(out["probabilities"].numpy(), model(pixels).numpy(), atol=1e-6)


def _cli(version_dir, signature, *args):
    return subprocess.run([SAVED_MODEL_CLI, "run", "--dir", version_dir, "--tag_set", "serve",
                           "--signature_def", signature, *args],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def _cli_array(stdout: str, key: str) -> np.ndarray:
    block = stdout.split(f"Result for output key {key}:")[1].split("Result for")[0]
    return np.array([float(v) for v in block.replace("[", " ").replace("]", " ").split()])


@pytest.mark.slow
def test_saved_model_cli_run_equals_keras(exported, tmp_path):
    _, version_dir, pixels, expected, _ = exported
    np.save(tmp_path / "in.npy", pixels.astype(np.float32))
    result = _cli(version_dir, "serving_default", "--inputs", f"image={tmp_path / 'in.npy'}")
    assert result.returncode == 0, result.stderr[-2000:]
    probabilities = _cli_array(result.stdout, "probabilities").reshape(expected.shape)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)
    np.testing.assert_array_equal(_cli_array(result.stdout, "class_ids"), expected.argmax(-1))


@pytest.mark.slow
def test_saved_model_cli_rejects_bad_inputs_clearly(exported, tmp_path):
    version_dir = exported[1]
    np.save(tmp_path / "bad.npy", np.zeros((1, H, W + 1, C), np.float32))
    wrong_shape = _cli(version_dir, "serving_default", "--inputs", f"image={tmp_path / 'bad.npy'}")
    assert wrong_shape.returncode != 0
    assert f"Cannot feed value of shape (1, {H}, {W + 1}, {C})" in wrong_shape.stderr
    assert f"(None, {H}, {W}, {C})" in wrong_shape.stderr
    garbage = _cli(version_dir, "serve_image_bytes", "--input_exprs", "image_bytes=[b'garbage']")
    assert garbage.returncode != 0
    assert "must hold PNG or JPEG encoded images" in garbage.stderr


def _checkpointed_run(root, run_json=None, results_json=None) -> tuple[str, keras.Model]:
    import json

    model = tiny_classifier()
    os.makedirs(root / "checkpoints")
    model.save(root / "checkpoints" / "last.keras")
    for name, payload in (("run.json", run_json), ("results.json", results_json)):
        if payload is not None:
            with open(root / name, "w") as f:
                json.dump(payload, f)
    return str(root), model


def test_export_app_exports_a_run_with_its_tasks_signatures_name_and_metadata(tmp_path):
    from suite.tasks.runs import export_run as export

    model_dir, model = _checkpointed_run(tmp_path / "run", run_json={
        "app": "suite.tasks.classification", "task": "ImageClassificationTask", "name": "tiny",
        "export_metadata": {"class_names": ["x", "y", "z"]}})
    version_dir = export(model_dir)
    assert version_dir == str(tmp_path / "run" / "export" / "tiny" / "1")
    out = tf.saved_model.load(version_dir).signatures["serve_uint8"](
        image=tf.zeros([2, H, W, C], tf.uint8))
    np.testing.assert_allclose(out["probabilities"].numpy(),
                               model(np.zeros((2, H, W, C))).numpy(), atol=1e-6)
    metadata = read_metadata(version_dir)
    assert metadata["class_names"] == ["x", "y", "z"] and metadata["task"] == (
        "ImageClassificationTask")
    assert export(model_dir, name="other").endswith(os.path.join("other", "1"))


def test_export_app_reads_class_names_of_a_run_made_before_run_json(tmp_path):
    from suite.tasks.runs import export_run as export

    model_dir, _ = _checkpointed_run(tmp_path / "run", results_json={
        "model": "old", "class_names": ["p", "q", "r"]})
    version_dir = export(model_dir)
    assert version_dir.endswith(os.path.join("old", "1"))
    assert read_metadata(version_dir)["class_names"] == ["p", "q", "r"]


CLASSIFICATION = {"app": "suite.tasks.classification", "task": "ImageClassificationTask"}


@pytest.mark.parametrize("run_json, message", [
    # Tasks are found by name among suite.tasks' modules; nothing else is ever imported.
    ({"app": "apps.export", "task": "CHECKPOINTS"},
     "task 'CHECKPOINTS' (made by apps.export) is none of suite.tasks' Tasks"),
    ({"app": "suite.no_such_module_here", "task": "T"}, "'T' (made by suite.no_such_module_here) "
     "is none of suite.tasks' Tasks"),
    ({"app": "os", "task": "path"}, "'path' (made by os) is none of suite.tasks' Tasks"),
    ({"app": "this", "task": "Task"}, "'Task' (made by this) is none of suite.tasks' Tasks"),
    ({"app": "os", "task": "os; rm -rf /"}, "invalid task"),
    ({"app": None, "task": "T"}, "'T' (made by None) is none of suite.tasks' Tasks"),
    ({**CLASSIFICATION, "export_metadata": {"class_names": ["a", "b"]}},
     "2 class names given for a model with 3"),
    ({**CLASSIFICATION, "export_metadata": ["a"]},
     "run.json: 'export_metadata' must be a JSON object, got ['a']"),
    ({**CLASSIFICATION, "name": 5}, "run.json: 'name' must be a JSON string, got 5"),
])
def test_export_app_refuses_a_run_json_it_cannot_use(tmp_path, capsys, run_json, message):
    from suite.tasks.runs import export_run as export

    model_dir, _ = _checkpointed_run(tmp_path / "run", run_json=run_json)
    with pytest.raises(ValueError, match=re.escape(message)):
        export(model_dir)
    assert not os.path.exists(tmp_path / "run" / "export")
    assert "Zen of Python" not in capsys.readouterr().out  # module 'this' was not imported


def test_a_truncated_checkpoint_is_named_as_such(tmp_path):
    from suite.tasks.runs import export_run as export

    model_dir, _ = _checkpointed_run(tmp_path / "run", run_json=CLASSIFICATION)
    last = os.path.join(model_dir, "checkpoints", "last.keras")
    with open(last, "rb") as f:
        data = f.read()
    with open(last, "wb") as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(
            f"{last}: truncated or corrupt checkpoint (not a .keras zip); rerun the training "
            "that wrote it or load best.keras.")):
        export(model_dir)
    assert not os.path.exists(os.path.join(model_dir, "export"))
    assert os.path.getsize(last) == len(data) // 2  # left as it was


def test_export_app_without_checkpoint_says_how_to_train(tmp_path):
    result = subprocess.run([sys.executable, "-m", "apps.export", f"--model_dir={tmp_path}"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    assert os.path.join(str(tmp_path), "checkpoints", "last.keras") in result.stderr
    assert "python -m apps.train_mnist" in result.stderr
