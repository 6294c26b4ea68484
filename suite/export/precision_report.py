"""Size, accuracy and CPU latency of every precision variant, as Markdown, CSV and JSON.

Latency is the median of several timed calls after warm-up (run-to-run noise on a shared CPU
reaches 2x, FINDINGS.md): compare ratios within one table, not numbers across machines.
Bars checked (MNIST DeepConvNet): the int8 TFLite file is at most 1/3.5 of the float32 TFLite
file, and its test accuracy is at most 0.1 point below the Keras float32 model.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import time
import uuid
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from suite.export import quantize
from suite.export.classifier import export_classifier

COLUMNS = ("variant", "format", "size_bytes", "size_ratio", "accuracy", "accuracy_drop_points",
           "latency_b1_ms", "latency_b256_ms", "path")
INT8_SIZE_BAR = 3.5  # float32 TFLite bytes / int8 TFLite bytes, at least
INT8_ACCURACY_BAR = 0.1  # points of accuracy lost at most


def median_latency_ms(fn: Callable[[np.ndarray], object], batch: np.ndarray, repeats: int,
                      warmup: int = 2) -> float:
    for _ in range(warmup):
        fn(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def path_size(path: str) -> int:
    """Bytes of a file, or of all files under a folder (a SavedModel)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)


def _batches(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
             batch_size: int) -> np.ndarray:
    return np.concatenate([fn(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def _sized_batch(images: np.ndarray, size: int) -> np.ndarray:
    reps = -(-size // len(images))
    return np.concatenate([images] * reps)[:size].astype(np.float32)


def _variant_rows(model, train_images, test_images, test_labels, folder, name, repeats_b1,
                  repeats_b256, eval_batch, num_threads, calibration_steps) -> list[dict]:
    """Writes every variant into `folder`; one row each, its path relative to the output folder
    (variants/...)."""
    x_test = test_images.astype(np.float32)
    y_test = np.asarray(test_labels).reshape(-1)
    b1, b256 = x_test[:1], _sized_batch(x_test, 256)
    rows = []

    def add(variant, fmt, path, predict, run_b1, run_b256):
        probabilities = _batches(predict, x_test, eval_batch)
        rows.append({
            "variant": variant, "format": fmt,
            "path": os.path.join("variants", os.path.relpath(path, folder)),
            "size_bytes": path_size(path),
            "accuracy": float(np.mean(np.argmax(probabilities, axis=-1) == y_test)),
            "latency_b1_ms": median_latency_ms(run_b1, b1, repeats_b1),
            "latency_b256_ms": median_latency_ms(run_b256, b256, repeats_b256),
        })

    # ---- Keras, under a dtype policy. The float32 clone is also what is exported: a
    # mixed-precision model's bfloat16/float16 ops have no TFLite kernels.
    float32 = quantize.clone_with_dtype(model, "float32")
    for dtype in quantize.KERAS_DTYPES:
        clone = float32 if dtype == "float32" else quantize.clone_with_dtype(model, dtype)
        path = os.path.join(folder, f"keras_{dtype}.keras")
        clone.save(path)
        fn = quantize.keras_predict_fn(clone)
        add(f"keras_{dtype}", "keras", path, fn, fn, fn)

    # ---- SavedModel (what TF Serving runs) and the TFLite conversions of its serving_default.
    version_dir = export_classifier(float32, os.path.join(folder, "saved_model"), name, 1)
    serve = tf.saved_model.load(version_dir).signatures["serving_default"]
    serve_fn = lambda images: serve(image=tf.constant(images, tf.float32))["probabilities"].numpy()
    add("saved_model_float32", "saved_model", version_dir, serve_fn, serve_fn, serve_fn)

    for mode in quantize.TFLITE_MODES:
        content = quantize.convert_to_tflite(version_dir, mode, train_images,
                                             calibration_steps=calibration_steps)
        path = os.path.join(folder, f"tflite_{mode}.tflite")
        with open(path, "wb") as f:
            f.write(content)
        runner = quantize.TFLiteClassifier(content, num_threads=num_threads)
        ready_b1, ready_b256 = runner.quantize_input(b1), runner.quantize_input(b256)
        add(f"tflite_{mode}", "tflite", path, lambda x: runner.predict(x, eval_batch),
            lambda _: runner.run(ready_b1), lambda _: runner.run(ready_b256))
    return rows


def build_precision_table(model: keras.Model, train_images: np.ndarray, test_images: np.ndarray,
                          test_labels: np.ndarray, out_dir: str, *, name: str = "model",
                          repeats_b1: int = 50, repeats_b256: int = 10, eval_batch: int = 256,
                          num_threads: int | None = None, calibration_steps: int = 500) -> dict:
    """Writes every variant under `<out_dir>/variants/` and returns {"rows": [...], "bars": {...}}.

    Images are raw pixels [N, H, W, C] (uint8 or float); `train_images` only calibrate int8.
    The variants are built in a temporary folder renamed to variants/ at the end, so a failed
    run leaves none.
    """
    variants_dir = os.path.join(out_dir, "variants")
    if os.path.exists(variants_dir):
        raise FileExistsError(f"{variants_dir} exists from an earlier run; pass a new output "
                              "folder or delete it.")
    building = f"{variants_dir}.partial-{uuid.uuid4().hex[:8]}"
    os.makedirs(building)
    try:
        rows = _variant_rows(model, train_images, test_images, test_labels, building, name,
                             repeats_b1, repeats_b256, eval_batch, num_threads, calibration_steps)
        os.rename(building, variants_dir)
    finally:
        shutil.rmtree(building, ignore_errors=True)

    by_name = {r["variant"]: r for r in rows}
    base_acc = by_name["keras_float32"]["accuracy"]
    for row in rows:
        reference = by_name["tflite_float32" if row["format"] == "tflite" else "keras_float32"]
        row["size_ratio"] = reference["size_bytes"] / row["size_bytes"]
        row["accuracy_drop_points"] = (base_acc - row["accuracy"]) * 100.0
    int8 = by_name["tflite_int8"]
    bars = {
        "int8_size_ratio": int8["size_ratio"], "int8_size_bar": INT8_SIZE_BAR,
        "int8_size_ok": int8["size_ratio"] >= INT8_SIZE_BAR,
        "int8_accuracy_drop_points": int8["accuracy_drop_points"],
        "int8_accuracy_bar_points": INT8_ACCURACY_BAR,
        "int8_accuracy_ok": int8["accuracy_drop_points"] <= INT8_ACCURACY_BAR,
        "int8_io": "int8 input and output (pixel p -> p - 128)",
        "test_images": int(len(test_images)), "tflite_num_threads": num_threads,
    }
    return {"rows": rows, "bars": bars}


def markdown_table(report: dict) -> str:
    lines = ["| variant | size (bytes) | size ratio | test accuracy | drop (points) "
             "| latency b1 (ms) | latency b256 (ms) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['variant']} | {r['size_bytes']:,} | {r['size_ratio']:.2f}x "
                     f"| {r['accuracy'] * 100:.2f}% | {r['accuracy_drop_points']:+.2f} "
                     f"| {r['latency_b1_ms']:.3f} | {r['latency_b256_ms']:.1f} |")
    bars = report["bars"]
    verdict = {True: "met", False: "MISSED"}
    lines += ["",
              "Size ratio: float32 bytes / variant bytes, against the Keras float32 file for "
              "Keras variants and the float32 TFLite file for TFLite variants. Drop: points of "
              "test accuracy below Keras float32.",
              f"int8 ({bars['int8_io']}): {bars['int8_size_ratio']:.2f}x smaller than float32 "
              f"TFLite (bar >= {bars['int8_size_bar']}x: {verdict[bars['int8_size_ok']]}), "
              f"accuracy drop {bars['int8_accuracy_drop_points']:+.2f} points (bar <= "
              f"{bars['int8_accuracy_bar_points']}: {verdict[bars['int8_accuracy_ok']]}); "
              f"{bars['test_images']} test images."]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: str) -> dict[str, str]:
    """precision.md, precision.csv and precision.json in `out_dir`; returns their paths."""
    paths = {ext: os.path.join(out_dir, f"precision.{ext}") for ext in ("md", "csv", "json")}
    with open(paths["md"], "w") as f:
        f.write(markdown_table(report))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: r[k] for k in COLUMNS} for r in report["rows"])
    with open(paths["json"], "w") as f:
        json.dump(report, f, indent=2)
    return paths
