"""ResNet-20 (CIFAR-10, 32x32, batch 128) training throughput: the suite's Keras model vs PyTorch.

    python bench/throughput_resnet20.py [--steps=60] [--repeats=3] [--warmup_steps=10]

Both train the same network (269,722 trainable parameters, asserted) with SGD momentum 0.9 and
weight decay 1e-4 on in-memory random batches, float32, all CPU threads; timing as in
throughput_mnist.py (a clock at the end of every step, warm-up steps dropped). Writes
bench/results/throughput_resnet20.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from throughput_mnist import clock, machine_info, per_repeat, timed_loop  # noqa: E402

BATCH = 128


def batches(channels_first: bool, n: int = 8):
    rng = np.random.default_rng(0)
    shape = (n, BATCH) + ((3, 32, 32) if channels_first else (32, 32, 3))
    return (rng.uniform(0, 255, shape).astype(np.float32),
            rng.integers(0, 10, (n, BATCH)).astype(np.int64))


def measure_keras(warmup, steps, repeats):
    import keras
    import tensorflow as tf

    from suite.models.registry import build_model

    keras.utils.set_random_seed(0)
    model = build_model("resnet20", weight_decay=1e-4)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 269_722, f"Keras ResNet-20 has {trainable:,} trainable parameters"
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(), jit_compile=False)
    ds = tf.data.Dataset.from_tensor_slices(batches(False)).cache().repeat()
    ends = []
    stamp = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: ends.append(clock()))
    model.fit(ds, epochs=1, steps_per_epoch=warmup + steps * repeats, verbose=0, callbacks=[stamp])
    return per_repeat(ends, warmup, steps, repeats, BATCH)


def measure_torch(channels_last, warmup, steps, repeats):
    import torch

    from torch_resnet20 import build_model, make_train_step

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    step = make_train_step(build_model(channels_last))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    data = [(torch.from_numpy(x).contiguous(memory_format=fmt), torch.from_numpy(y))
            for x, y in zip(*batches(True))]
    return timed_loop(step, data, warmup, steps, repeats, BATCH)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup_steps", type=int, default=10)
    p.add_argument("--out", default=os.path.join(HERE, "results", "throughput_resnet20"))
    a = p.parse_args()
    runs = {"keras": measure_keras(a.warmup_steps, a.steps, a.repeats),
            "torch": measure_torch(False, a.warmup_steps, a.steps, a.repeats),
            "torch_channels_last": measure_torch(True, a.warmup_steps, a.steps, a.repeats)}
    median = {k: float(np.median([r[0] for r in v])) for k, v in runs.items()}
    lines = [f"`python bench/throughput_resnet20.py --steps={a.steps} --repeats={a.repeats}` "
             f"(load average {os.getloadavg()[0]:.1f} at the end, {os.cpu_count()} cores)", "",
             "| implementation | median images/s | vs PyTorch eager | CPU ms/step |",
             "|---|---:|---:|---:|"]
    for k, v in runs.items():
        lines.append(f"| {k} | {median[k]:,.0f} | {median[k] / median['torch']:.2f} | "
                     f"{np.median([r[1] for r in v]):.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    with open(a.out + ".md", "w") as f:
        f.write(table)
    with open(a.out + ".json", "w") as f:
        json.dump({"runs": runs, "median_images_per_s": median, "machine": machine_info()}, f,
                  indent=1)


if __name__ == "__main__":
    main()
