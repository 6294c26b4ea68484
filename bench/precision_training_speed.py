"""Training speed of DeepConvNet under each Keras precision policy on this machine.

    python -m bench.precision_training_speed [--steps=100] [--rounds=3]

Why it exists: `--precision=auto` picks float32 on CPUs and mixed_float16 only on CUDA GPUs
with compute capability >= 7.0; this measures the CPU side of that decision. Policies are
timed in alternating rounds in one process, so drifting machine load hits each of them alike;
the table reports the median images/s and the ratio to float32.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import flags

from bench import RESULTS, cli, machine

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def time_policy(policy: str, steps: int, batch: int = 100) -> float:
    import keras
    import tensorflow as tf

    from suite.models.deep_convnet import build_deep_convnet

    keras.mixed_precision.set_global_policy(policy)
    model = build_deep_convnet()
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (10 * batch, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 10 * batch)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache().repeat()
    model.fit(ds, steps_per_epoch=10, epochs=1, verbose=0)  # trace + warm up
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - start)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("steps", 100, "timed training steps per policy per round",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("rounds", 3, "alternating rounds over the policies", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("out", os.path.join(RESULTS, "precision_training_speed"),
                        "path prefix of the .md and .json results", flag_values=fv)


def main(args):
    speeds = {policy: [] for policy in POLICIES}
    for _ in range(args.rounds):
        for policy in POLICIES:
            speeds[policy].append(time_policy(policy, args.steps))
    base = float(np.median(speeds["float32"]))
    lines = ["| policy | median images/s | vs float32 |", "|---|---|---|"]
    for policy, values in speeds.items():
        lines.append(f"| {policy} | {np.median(values):,.0f} | {np.median(values) / base:.2f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    with open(args.out + ".md", "w") as f:
        command = machine.command(__file__, [f"--steps={args.steps}", f"--rounds={args.rounds}"])
        f.write(f"`{command}` (load average {os.getloadavg()[0]:.1f} on "
                f"{os.cpu_count()} cores at the end)\n\n" + table)
    with open(args.out + ".json", "w") as f:
        json.dump(speeds, f, indent=1)


if __name__ == "__main__":
    cli.run(main, define_flags)
