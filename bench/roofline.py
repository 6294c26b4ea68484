"""The ceiling under a speed figure: a network's arithmetic per image and this CPU's measured
matrix-multiply peak, so a ratio between two frameworks comes with how far either could go.

    python -m bench.roofline      # this machine's float32 and bfloat16 GEMM peaks, and the
                                  # forward multiply-adds of DeepConvNet and ResNet-20

A framework whose convolutions already run at 90% of the peak cannot be beaten by 1.2x in the
same precision, whatever the other does; that is what the benches' "% of peak" columns show.
"""
from __future__ import annotations

import time

import numpy as np
from absl import flags

from bench import cli, machine

# Forward, input gradient, weight gradient: the usual estimate of a training step's arithmetic
# (each is one pass of the layer's multiply-adds).
TRAINING_PASSES = 3


def multiply_adds(model) -> int:
    """Forward multiply-adds per example of a Keras model's convolutions and dense layers, which
    are nearly all of its arithmetic (pooling, batch norm and activations are memory-bound and
    not counted). Nested models and blocks are walked."""
    import keras

    total = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2DTranspose):
            _, h, w, c_in = layer.input.shape  # each input pixel meets the whole kernel
            kh, kw, c_out, _ = layer.kernel.shape
            total += h * w * c_in * kh * kw * c_out
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            _, h, w, c = layer.output.shape
            total += h * w * c * int(np.prod(layer.kernel.shape[:2]))
        elif isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in_per_group, _ = layer.kernel.shape
            total += h * w * c_out * kh * kw * c_in_per_group
        elif isinstance(layer, keras.layers.Dense):
            rows = int(np.prod(layer.input.shape[1:-1]))  # a Dense on a sequence or image
            total += rows * int(np.prod(layer.kernel.shape))
    return int(total)


def gflops_per_image(model, training: bool = False) -> float:
    """Billions of floating-point operations (2 per multiply-add) per image."""
    return 2 * multiply_adds(model) * (TRAINING_PASSES if training else 1) / 1e9


def _best_rate(run, flops: float, seconds: float) -> float:
    """Best GFLOP/s of `run()` over repeated bursts filling about `seconds`."""
    run()  # first call: allocation, kernel selection
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(5):
            run()
        best = max(best, 5 * flops / (time.perf_counter() - start) / 1e9)
    return best


def gemm_peak(dtype: str = "float32", n: int = 2048, seconds: float = 2.0) -> dict:
    """This CPU's practical peak, all cores: the best GFLOP/s of an n x n x n matrix product in
    TensorFlow (oneDNN) and in PyTorch where installed. The best of both is the figure the
    benches divide by; the two agree within a few percent when the machine is quiet."""
    flops = 2.0 * n ** 3
    rates = {}
    import tensorflow as tf

    a, b = (tf.random.normal((n, n), dtype=tf.float32, seed=s) for s in (1, 2))
    a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    matmul = tf.function(tf.linalg.matmul)
    rates["tensorflow"] = _best_rate(lambda: matmul(a, b).numpy(), flops, seconds)
    try:
        import torch
    except ImportError:
        pass
    else:
        x, y = (torch.randn(n, n).to(getattr(torch, dtype)) for _ in range(2))
        rates["torch"] = _best_rate(lambda: torch.mm(x, y), flops, seconds)
    return {"dtype": dtype, "n": n, "gflops": round(max(rates.values()), 1),
            **{f"{k}_gflops": round(v, 1) for k, v in rates.items()}}


def peaks(dtypes=("float32", "bfloat16")) -> dict:
    """{dtype: gemm_peak(dtype)}; bfloat16 only where the CPU has bfloat16 arithmetic
    (elsewhere it is emulated and the figure would mislead)."""
    has_bf16 = any(f in machine.isa() for f in ("avx512_bf16", "amx_tile"))
    return {d: gemm_peak(d) for d in dtypes if d != "bfloat16" or has_bf16}


def best_of(*measurements: dict) -> dict:
    """Per precision, the higher of several peaks() (the machine's speed drifts: the higher
    one is the fairer ceiling)."""
    out = {}
    for peaks_ in measurements:
        for dtype, peak in peaks_.items():
            if dtype not in out or peak["gflops"] > out[dtype]["gflops"]:
                out[dtype] = peak
    return out


def add_flag(fv: flags.FlagValues) -> None:
    flags.DEFINE_boolean("no_peak", False,
                         "skip the GEMM peak measurement (about 10 s before and after)",
                         flag_values=fv)


def around(measure, skip: bool = False):
    """(measure(), the best peaks, the peaks before): the peaks measured before and after
    `measure` runs, so the ceiling comes from the same stretch of the machine's time."""
    before = {} if skip else peaks()
    result = measure()
    return result, best_of(before, {} if skip else peaks()), before


def share(gflops: float, peak: dict | None) -> float | None:
    """Percent of `peak` (a gemm_peak dict) that `gflops` is."""
    return round(100 * gflops / peak["gflops"], 1) if peak else None


def main(args) -> None:
    from suite.runtime.startup import load_tensorflow

    load_tensorflow()
    from suite.models.deep_convnet import build_deep_convnet
    from suite.models.registry import build_model

    print(machine.label())
    for dtype, peak in peaks().items():
        print(f"{dtype} GEMM peak: {peak}")
    for name, model in (("DeepConvNet", build_deep_convnet()),
                        ("ResNet-20", build_model("resnet20"))):
        print(f"{name}: {multiply_adds(model):,} multiply-adds per image forward, "
              f"{gflops_per_image(model, training=True) * 1e3:.1f} MFLOP per training image")


if __name__ == "__main__":
    cli.run(main)
