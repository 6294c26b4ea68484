"""Reduced-precision variants agree with float32, and the precision table is complete."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from keras import layers

from conftest import FIXTURE_MNIST, REPO
from suite.export import precision_report, quantize
from suite.export.classifier import export_classifier

SIDE = 12


def band_images(n: int, seed: int, side: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Class k = a bright horizontal band in the k-th third of the image, over dark noise.

    Pixels span the full 0..255, as real images do, so int8 calibration sees the whole range.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.integers(0, 60, (n, side, side, 1))
    third = side // 3
    for i, k in enumerate(labels):
        images[i, k * third:(k + 1) * third] = rng.integers(180, 256, (third, side, 1))
    images[:, 0, 0, 0] = 0
    images[:, -1, -1, 0] = 255
    return images.astype(np.uint8), labels.astype(np.int64)


def trained_classifier(side: int = SIDE, classes: int = 3) -> tuple[keras.Model, tuple, tuple]:
    """Learns band_images (labels 0..2) with `classes` outputs."""
    keras.utils.set_random_seed(0)
    image = keras.Input(shape=(side, side, 1), name="image")
    x = layers.Rescaling(1.0 / 255.0)(image)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(classes)(x)
    model = keras.Model(image, layers.Activation("softmax", dtype="float32")(x))
    train, test = band_images(300, seed=1, side=side), band_images(60, seed=2, side=side)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(train[0].astype(np.float32), train[1], batch_size=50, epochs=8, verbose=0)
    return model, train, test


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model, train, test = trained_classifier()
    reference = model(test[0].astype(np.float32), training=False).numpy()
    assert np.mean(reference.argmax(-1) == test[1]) == 1.0  # the fixture task is learnt
    version_dir = export_classifier(model, str(tmp_path_factory.mktemp("sm")), "tiny")
    return model, train, test, reference, version_dir


@pytest.mark.parametrize("dtype, atol", [("float16", 5e-3), ("bfloat16", 3e-2)])
def test_keras_dtype_clone_computes_in_that_dtype_and_agrees(trained, dtype, atol):
    model, _, (x_test, _), reference, _ = trained
    clone = quantize.clone_with_dtype(model, dtype)
    assert {w.dtype for w in clone.weights} == {dtype}
    assert {w.dtype for w in model.weights} == {"float32"}  # the original is untouched
    probabilities = quantize.keras_predict_fn(clone)(x_test)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, reference, atol=atol)
    np.testing.assert_array_equal(probabilities.argmax(-1), reference.argmax(-1))


def test_unknown_dtype_and_mode_are_refused(trained):
    with pytest.raises(ValueError, match="float16"):
        quantize.clone_with_dtype(trained[0], "int4")
    with pytest.raises(ValueError, match="dynamic_range"):
        quantize.convert_to_tflite(trained[4], "int4")
    with pytest.raises(ValueError, match="representative_images"):
        quantize.convert_to_tflite(trained[4], "int8")


@pytest.mark.parametrize("mode, atol", [
    ("float32", 1e-5), ("float16", 5e-3), ("dynamic_range", 3e-2), ("int8", 6e-2)])
def test_tflite_variant_loads_and_agrees_with_float32(trained, mode, atol):
    _, (x_train, _), (x_test, _), reference, version_dir = trained
    content = quantize.convert_to_tflite(version_dir, mode, x_train, calibration_steps=100)
    runner = quantize.TFLiteClassifier(content)
    probabilities = runner.predict(x_test, batch_size=16)  # 60 = 3 full batches + a padded one
    assert probabilities.shape == reference.shape
    np.testing.assert_allclose(probabilities, reference, atol=atol)
    np.testing.assert_array_equal(probabilities.argmax(-1), reference.argmax(-1))


def test_int8_model_takes_int8_pixels_minus_128(trained):
    _, (x_train, _), (x_test, _), _, version_dir = trained
    content = quantize.convert_to_tflite(version_dir, "int8", x_train, calibration_steps=100)
    runner = quantize.TFLiteClassifier(content)
    assert runner.input_dtype == np.int8
    assert runner._input["quantization"] == pytest.approx((1.0, -128))
    np.testing.assert_array_equal(runner.quantize_input(np.array([0.0, 1.0, 255.0])),
                                  [-128, -127, 127])
    # One batch of 1 then one of 60: resizing in both directions keeps results per image.
    single = runner.predict(x_test[:1], batch_size=1)
    np.testing.assert_allclose(runner.predict(x_test, batch_size=60)[:1], single, atol=1e-6)
    float32 = quantize.convert_to_tflite(version_dir, "float32")
    assert len(content) < len(float32)


def test_precision_table_has_every_variant_and_column(trained, tmp_path):
    model, (x_train, _), (x_test, y_test), _, _ = trained
    report = precision_report.build_precision_table(
        model, x_train[:50], x_test, y_test, str(tmp_path), name="tiny", repeats_b1=3,
        repeats_b256=2, calibration_steps=50)
    rows = {r["variant"]: r for r in report["rows"]}
    assert list(rows) == ["keras_float32", "keras_float16", "keras_bfloat16", "saved_model_float32",
                          "tflite_float32", "tflite_float16", "tflite_dynamic_range", "tflite_int8"]
    for row in rows.values():
        for column in precision_report.COLUMNS:
            value = row[column]
            assert value is not None, column
            assert not (isinstance(value, float) and math.isnan(value)), column
        assert row["size_bytes"] > 0 and row["latency_b1_ms"] > 0 and row["latency_b256_ms"] > 0
        assert os.path.exists(tmp_path / row["path"])
        assert row["accuracy"] == 1.0 and row["accuracy_drop_points"] == 0.0  # an easy task
    assert rows["keras_float16"]["size_bytes"] < rows["keras_float32"]["size_bytes"]
    # On a 343-parameter model the graph outweighs the weights (float16 even grows by its
    # Dequantize ops); int8 still shrinks.
    assert rows["tflite_int8"]["size_bytes"] < rows["tflite_float32"]["size_bytes"]
    assert rows["tflite_int8"]["size_ratio"] == pytest.approx(
        rows["tflite_float32"]["size_bytes"] / rows["tflite_int8"]["size_bytes"])
    assert report["bars"]["int8_accuracy_ok"]

    paths = precision_report.write_report(report, str(tmp_path))
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [r["variant"] for r in table] == list(rows)
    assert set(table[0]) == set(precision_report.COLUMNS)
    with open(paths["json"]) as f:
        assert json.load(f)["rows"][0]["variant"] == "keras_float32"
    markdown = open(paths["md"]).read()
    assert all(f"| {name} |" in markdown for name in rows)
    with pytest.raises(FileExistsError, match="variants"):
        precision_report.build_precision_table(model, x_train, x_test, y_test, str(tmp_path))


def test_precision_report_app_reads_idx_files_and_writes_tables(tmp_path):
    from apps.precision_report import report
    from suite.data.idx import write_idx

    model, (x_train, y_train), (x_test, y_test) = trained_classifier(side=28, classes=10)
    data = tmp_path / "mnist"
    os.makedirs(data)
    for name, array in [("train-images-idx3-ubyte.gz", x_train[..., 0]),
                        ("train-labels-idx1-ubyte.gz", y_train),
                        ("t10k-images-idx3-ubyte.gz", x_test[..., 0]),
                        ("t10k-labels-idx1-ubyte.gz", y_test)]:
        write_idx(str(data / name), array)
    os.makedirs(tmp_path / "run" / "checkpoints")
    model.save(tmp_path / "run" / "checkpoints" / "last.keras")
    result = report(str(tmp_path / "run"), str(data), calibration_images=40, test_images=30,
                    repeats_b1=2, repeats_b256=1, verify_checksums=False)
    assert result["bars"]["test_images"] == 30
    assert len(result["rows"]) == 8
    assert os.path.isfile(tmp_path / "run" / "precision" / "precision.md")
    with pytest.raises(FileNotFoundError, match="apps.train_mnist"):
        report(str(tmp_path / "nothing"), str(data))


def mixed_bfloat16_copy(model: keras.Model) -> keras.Model:
    """`model` as --precision=mixed_bfloat16 trains it: float32 weights, bfloat16 compute (the
    softmax stays float32)."""
    def clone_layer(layer):
        config = layer.get_config()
        if isinstance(layer, (layers.Rescaling, layers.Conv2D, layers.Dense)):
            config["dtype"] = "mixed_bfloat16"
        return layer.__class__.from_config(config)

    mixed = keras.models.clone_model(model, clone_function=clone_layer)
    mixed.set_weights(model.get_weights())
    return mixed


def test_a_failed_conversion_is_one_line_without_the_converters_dump(trained, tmp_path, capfd):
    version_dir = export_classifier(mixed_bfloat16_copy(trained[0]), str(tmp_path), "mixed")
    capfd.readouterr()
    with pytest.raises(ValueError) as failure:
        quantize.convert_to_tflite(version_dir, "float32")
    assert re.fullmatch(rf"TFLite float32 conversion of {re.escape(version_dir)} failed: "
                        r"'tf\.\w+' op is neither a custom op nor a flex op", str(failure.value))
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    assert "loc(" not in capfd.readouterr().err


def test_a_mixed_precision_model_is_measured_from_a_float32_copy(trained, tmp_path):
    model, (x_train, _), (x_test, y_test), _, _ = trained
    mixed = mixed_bfloat16_copy(model)
    assert mixed.layers[2].compute_dtype == "bfloat16"
    report = precision_report.build_precision_table(
        mixed, x_train[:20], x_test, y_test, str(tmp_path), repeats_b1=1, repeats_b256=1,
        calibration_steps=20)
    rows = {r["variant"]: r for r in report["rows"]}
    assert len(rows) == 8 and all(r["accuracy"] == 1.0 for r in rows.values())
    saved = keras.saving.load_model(tmp_path / rows["keras_float32"]["path"])
    assert {layer.compute_dtype for layer in saved.layers} == {"float32"}
    assert {w.dtype for w in saved.weights} == {"float32"}


def test_a_failed_table_leaves_nothing_that_blocks_the_rerun(trained, tmp_path, monkeypatch):
    model, (x_train, _), (x_test, y_test), _, _ = trained

    def fail(saved_model_dir, mode, *args, **kwargs):
        raise ValueError(f"TFLite {mode} conversion of {saved_model_dir} failed: no kernel")

    monkeypatch.setattr(quantize, "convert_to_tflite", fail)
    with pytest.raises(ValueError, match="no kernel"):
        precision_report.build_precision_table(model, x_train[:20], x_test, y_test, str(tmp_path))
    assert os.listdir(tmp_path) == []


def _fake_run(root, model: keras.Model, run_json: dict | None = None) -> str:
    os.makedirs(root / "checkpoints")
    model.save(root / "checkpoints" / "last.keras")
    if run_json is not None:
        with open(root / "run.json", "w") as f:
            json.dump(run_json, f)
    return str(root)


def test_precision_report_app_refuses_a_model_that_is_not_for_mnist(tmp_path):
    """A 32x32x3 classifier run: one line and exit 2, nothing created, no TensorFlow start-up
    notes; in process, the same check for a 3-class 28x28x1 model."""
    from apps.precision_report import report

    image = keras.Input(shape=(32, 32, 3), name="image")
    cifar = keras.Model(image, layers.Dense(10, activation="softmax")(layers.Flatten()(image)))
    model_dir = _fake_run(tmp_path / "cifar", cifar, {"app": "apps.train_classifier"})
    result = subprocess.run(
        [sys.executable, "-m", "apps.precision_report", f"--model_dir={model_dir}",
         f"--data_dir={FIXTURE_MNIST}", "--noverify_checksums"],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"error: {model_dir}/checkpoints/last.keras (made by apps.train_classifier) is not an "
        "MNIST classifier: its inputs are 32x32x3 and its outputs 10, where the report needs "
        "28x28x1 images in and 10 class probabilities out. Point --model_dir at a python -m "
        "apps.train_mnist run.\n")
    assert sorted(os.listdir(model_dir)) == ["checkpoints", "run.json"]

    model_dir = _fake_run(tmp_path / "three", trained_classifier(side=28)[0])
    with pytest.raises(ValueError, match="its inputs are 28x28x1 and its outputs 3, where"):
        report(model_dir, FIXTURE_MNIST, verify_checksums=False)
    assert sorted(os.listdir(model_dir)) == ["checkpoints"]
