"""Reduced-precision variants of a trained classifier: Keras float16/bfloat16 and TFLite.

Keras variants: the model is cloned with every layer under the dtype policy "float16" or
"bfloat16" (variables *and* activations in that dtype, the book's half-precision experiment done
in Keras) and the float32 weights are copied in, rounding once.

TFLite variants are converted from the exported SavedModel's `serving_default` signature (the
same graph TF Serving runs; its run-time input checks are dropped by the converter, its
empty-batch padding, a concatenation and a slice, stays):
  float32        the baseline, for sizes and speed
  float16        weights stored as float16, computed in float32
  dynamic_range  weights int8, activations quantised on the fly
  int8           full-integer post-training quantisation calibrated on training images, with
                 int8 input and output: raw pixels p in 0..255 map exactly to p - 128 (scale 1,
                 zero point -128), and the file is smaller than with float I/O (no boundary
                 Quantize/Dequantize ops), which keeps the 1/3.5 size bar on DeepConvNet.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from typing import Iterable

import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.python.convert_phase import ConverterError  # not in the public tf.lite API

KERAS_DTYPES = ("float32", "float16", "bfloat16")
TFLITE_MODES = ("float32", "float16", "dynamic_range", "int8")


def clone_with_dtype(model: keras.Model, dtype: str) -> keras.Model:
    """A copy of `model` whose layers all compute and store weights in `dtype`."""
    if dtype not in KERAS_DTYPES:
        raise ValueError(f"dtype must be one of {KERAS_DTYPES}; got {dtype!r}.")

    def clone_layer(layer: keras.Layer) -> keras.Layer:
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer):  # inputs keep the serving dtype
            config["dtype"] = dtype
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(model, clone_function=clone_layer, recursive=True)
    clone.set_weights(model.get_weights())
    return clone


def keras_predict_fn(model: keras.Model):
    """A compiled inference call returning float32 probabilities.

    FINDINGS.md: `model.predict` was erratic on this CPU; a compiled call was steady.
    """
    shape = (None,) + tuple(model.inputs[0].shape[1:])

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)], jit_compile=False)
    def predict(images):
        return tf.cast(model(images, training=False), tf.float32)

    return lambda images: predict(tf.convert_to_tensor(images, tf.float32)).numpy()


def _representative(images: np.ndarray, count: int) -> Iterable[list[np.ndarray]]:
    for i in range(min(count, len(images))):
        yield [images[i:i + 1].astype(np.float32)]


def convert_to_tflite(saved_model_dir: str, mode: str,
                      representative_images: np.ndarray | None = None, *,
                      calibration_steps: int = 500, int8_io: bool = True) -> bytes:
    """The `serving_default` signature of `saved_model_dir` as a TFLite flatbuffer.

    `representative_images` (raw pixels, [N, H, W, C]) calibrates the int8 activation ranges;
    take them from the training set, never the test set.
    """
    if mode not in TFLITE_MODES:
        raise ValueError(f"mode must be one of {TFLITE_MODES}; got {mode!r}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir,
                                                         signature_keys=["serving_default"])
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        if representative_images is None or len(representative_images) == 0:
            raise ValueError("Full-integer quantisation needs representative_images (a few hundred "
                             "training images) to calibrate activation ranges.")
        converter.representative_dataset = lambda: _representative(representative_images,
                                                                     calibration_steps)
        # Fail rather than silently keep float ops when an op has no int8 kernel.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return _convert(converter, f"TFLite {mode} conversion of {saved_model_dir}")


def _first_error(message: str) -> str:
    """The first MLIR diagnostic of a converter error, without its location."""
    for line in message.splitlines():
        found = re.search(r"error: (?:loc\(.*\)\): )?(.*)", line)
        if found:
            return found.group(1)
    return message.strip().split("\n")[0] or "unknown error"


def _convert(converter: tf.lite.TFLiteConverter, what: str) -> bytes:
    """converter.convert(); a failure is one ValueError line instead of the converter's dump
    of the MLIR module on stderr (file descriptor 2, written by C++) and its traceback."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            return converter.convert()
        except ConverterError as e:
            capture.truncate(0)  # the dump: dropped
            raise ValueError(f"{what} failed: {_first_error(str(e))}") from None
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            sys.stderr.write(capture.read().decode("utf-8", errors="replace"))
            sys.stderr.flush()


class TFLiteClassifier:
    """Runs a converted classifier on float pixels, whatever its I/O types.

    Uses the interpreter directly (resize_tensor_input once per batch size) rather than the
    signature runner, which re-checks and may reallocate on every call and would skew latency.
    """

    def __init__(self, model_content: bytes, num_threads: int | None = None):
        # tf.lite.Interpreter warns it is deprecated for ai-edge-litert (not installed); it works.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
            self.interpreter = tf.lite.Interpreter(model_content=model_content,
                                                   num_threads=num_threads)
        runner = self.interpreter.get_signature_runner("serving_default")
        self._input = runner.get_input_details()["image"]
        self._output = runner.get_output_details()["probabilities"]
        self._batch = None

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    def _set_batch(self, batch: int) -> None:
        if batch != self._batch:
            shape = [batch] + list(self._input["shape_signature"][1:])
            self.interpreter.resize_tensor_input(self._input["index"], shape, strict=True)
            self.interpreter.allocate_tensors()
            self._batch = batch

    def quantize_input(self, images: np.ndarray) -> np.ndarray:
        """Float pixels in the interpreter's input type (int8: q = x / scale + zero_point)."""
        if not np.issubdtype(self.input_dtype, np.integer):
            return images.astype(self.input_dtype)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(self.input_dtype)
        q = np.round(images.astype(np.float32) / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def run(self, prepared: np.ndarray) -> np.ndarray:
        """One invocation on an already-quantised batch; float32 probabilities."""
        self._set_batch(len(prepared))
        self.interpreter.set_tensor(self._input["index"], prepared)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output["index"])
        scale, zero_point = self._output["quantization"]
        if np.issubdtype(out.dtype, np.integer) and scale:
            return (out.astype(np.float32) - zero_point) * scale
        return out.astype(np.float32)

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities for any number of images; the last batch is padded (one allocation)."""
        if len(images) == 0:
            return np.zeros((0, self._output["shape_signature"][-1]), np.float32)
        batch_size = min(batch_size, len(images))
        out = []
        for start in range(0, len(images), batch_size):
            chunk = self.quantize_input(images[start:start + batch_size])
            n = len(chunk)
            if n < batch_size:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
            out.append(self.run(chunk)[:n])
        return np.concatenate(out)
