"""Reduced-precision variants agree with float32, and the precision table is complete."""
from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest

import keras
from keras import layers

from suite.export import precision_report, quantize
from suite.tasks.classification_serving import export_classifier

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


def trained_classifier(side: int = SIDE) -> tuple[keras.Model, tuple, tuple]:
    keras.utils.set_random_seed(0)
    image = keras.Input(shape=(side, side, 1), name="image")
    x = layers.Rescaling(1.0 / 255.0)(image)
    x = layers.Conv2D(4, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(3)(x)
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
    from suite.data.idx import write_idx
    from apps.precision_report import report

    model, (x_train, y_train), (x_test, y_test) = trained_classifier(side=28)
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
