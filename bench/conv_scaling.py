"""Each convolution of a training step alone, in TensorFlow and in PyTorch, on 1 and on all
cores: the same oneDNN kernels, so what differs is how each framework runs them in parallel.

    python -m bench.conv_scaling --network=deep_convnet [--repeats=3] [--iterations=60]

For every distinct convolution of the suite's network (shapes from the Keras model; batch as in
bench/training_throughput.py) it times the three passes a training step runs: forward, input
gradient and weight gradient. TensorFlow runs each as one op in a `tf.function`
(`Conv2D`, `Conv2DBackpropInput`, `Conv2DBackpropFilter`, channels-last, oneDNN on, one
inter-op thread); PyTorch as `conv2d` and `convolution_backward` on channels-last tensors.
Each (framework, threads) pair runs in its own process, --repeats times alternated, and each
time is the median of --iterations calls; TensorFlow's also holds its call overhead, measured
apart as an empty `tf.function`'s. The report gives, per framework, the milliseconds per
training step (each shape times how often the network has it) and the speed-up from 1 to all
cores. Results go to bench/results/conv_scaling_<network>.{md,json}.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from absl import flags

from bench import RESULTS, cli, machine

PASSES = ("forward", "input gradient", "weight gradient")
NETWORKS = ("deep_convnet", "resnet20")


def conv_shapes(model) -> list[dict]:
    """A Keras model's distinct convolutions: input height/width/channels, filters, kernel,
    stride, TensorFlow padding, how many layers have that shape, and how many of those need
    an input gradient (not the first convolution: its input is the image)."""
    import keras

    found: dict[tuple, dict] = {}
    for layer in model._flatten_layers(include_self=False):
        if type(layer) is not keras.layers.Conv2D:
            continue
        _, height, width, channels = layer.input.shape
        shape = {"height": height, "width": width, "channels": channels,
                 "filters": layer.filters, "kernel": layer.kernel_size[0],
                 "stride": layer.strides[0], "padding": layer.padding.upper()}
        key = tuple(shape.values())
        first = not found
        found.setdefault(key, {**shape, "layers": 0, "input_gradients": 0, "names": []})
        found[key]["layers"] += 1
        found[key]["input_gradients"] += 0 if first else 1
        found[key]["names"].append(layer.name)
    return list(found.values())


def median_ms(call, iterations: int) -> float:
    for _ in range(3):
        call()
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median_high(times)


def time_tensorflow(shapes, batch: int, threads: int, iterations: int) -> dict:
    from suite.runtime.startup import load_tensorflow

    tf = load_tensorflow(quiet=True)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.random.set_seed(0)
    results = []
    for s in shapes:
        x = tf.random.normal((batch, s["height"], s["width"], s["channels"]))
        w = tf.random.normal((s["kernel"], s["kernel"], s["channels"], s["filters"]))
        strides, padding = [1, s["stride"], s["stride"], 1], s["padding"]
        dy = tf.random.normal(tf.nn.conv2d(x, w, strides, padding).shape)
        # Each returns one element, so the timing holds the op, not a copy of its output.
        ops = {
            "forward": tf.function(lambda: tf.nn.conv2d(x, w, strides, padding)[0, 0, 0, 0]),
            "input gradient": tf.function(lambda: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=strides,
                padding=padding)[0, 0, 0, 0]),
            "weight gradient": tf.function(lambda: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=strides,
                padding=padding)[0, 0, 0, 0]),
        }
        results.append({name: median_ms(lambda f=f: f().numpy(), iterations)
                        for name, f in ops.items()})
    empty = tf.function(lambda: tf.constant(0.0))
    return {"ms": results, "call_overhead_ms": median_ms(lambda: empty().numpy(), iterations)}


def time_torch(shapes, batch: int, threads: int, iterations: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cl = torch.channels_last
    results = []
    for s in shapes:
        k, stride = s["kernel"], s["stride"]
        pad = (k // 2) if s["padding"] == "SAME" else 0  # SAME: symmetric in PyTorch
        x = torch.randn(batch, s["channels"], s["height"], s["width"]).contiguous(memory_format=cl)
        w = torch.randn(s["filters"], s["channels"], k, k).contiguous(memory_format=cl)
        y = torch.nn.functional.conv2d(x, w, None, stride, pad)
        dy = torch.randn_like(y).contiguous(memory_format=cl)

        def backward(mask, x=x, w=w, dy=dy, stride=stride, pad=pad):
            return torch.ops.aten.convolution_backward(
                dy, x, w, None, [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], 1, mask)

        with torch.no_grad():
            results.append({
                "forward": median_ms(
                    lambda: torch.nn.functional.conv2d(x, w, None, stride, pad), iterations),
                "input gradient": median_ms(lambda: backward([True, False, False]), iterations),
                "weight gradient": median_ms(lambda: backward([False, True, False]), iterations),
            })
    return {"ms": results, "call_overhead_ms": 0.0}


def run_worker(framework: str, threads: int, shapes, batch: int, iterations: int) -> dict:
    """One (framework, threads) measurement in a fresh process: thread pools are fixed at start."""
    command = [sys.executable, "-m", "bench.conv_scaling", f"--worker={framework}",
               f"--threads={threads}", f"--shapes={json.dumps(shapes)}", f"--batch={batch}",
               f"--iterations={iterations}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise RuntimeError(f"{framework} with {threads} threads failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def medians(runs: list[dict]) -> list[dict]:
    """Per shape and pass, the median over repeats of one (framework, threads) pair's runs."""
    return [{name: statistics.median_high(r["ms"][i][name] for r in runs) for name in PASSES}
            for i in range(len(runs[0]["ms"]))]


def per_step(runs: list[dict], shapes) -> dict:
    """Median over repeats of each (shape, pass), then summed over the network's layers."""
    totals = dict.fromkeys(PASSES, 0.0)
    for s, ms in zip(shapes, medians(runs)):
        for name in PASSES:
            count = s["input_gradients"] if name == "input gradient" else s["layers"]
            totals[name] += count * ms[name]
    return totals


def report(network: str, shapes, batch: int, measured: dict, info: dict, command: str,
           all_cores: int) -> str:
    lines = [f"# Convolutions of a {network} training step, one at a time "
             f"({machine.label(info)}, load {info['load_1min']})", "", f"`{command}`", "",
             f"Batch {batch}; milliseconds per training step (each distinct shape times the "
             "layers that have it; no input gradient for the first convolution, whose input is "
             "the image), median over repeats.", "",
             "| pass | TensorFlow, 1 thread | TensorFlow, all | speed-up | PyTorch, 1 thread "
             "| PyTorch, all | speed-up |", "|---|---:|---:|---:|---:|---:|---:|"]
    totals = {key: per_step(runs, shapes) for key, runs in measured.items()}
    for name in (*PASSES, "all three"):
        row = []
        for framework in ("tensorflow", "torch"):
            one, many = (sum(totals[(framework, t)].values()) if name == "all three"
                         else totals[(framework, t)][name] for t in (1, all_cores))
            row += [f"{one:.2f}", f"{many:.2f}", f"{one / many:.2f}x"]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    overhead = {t: statistics.median_high(r["call_overhead_ms"] for r in measured[("tensorflow", t)])
                for t in (1, all_cores)}
    calls = sum(2 * s["layers"] + s["input_gradients"] for s in shapes)
    lines += ["", f"TensorFlow's times include its call overhead (an empty `tf.function`: "
              f"{overhead[1]:.3f} ms on 1 thread, {overhead[all_cores]:.3f} ms on all; "
              f"{calls} calls a step).", "",
              "| convolution (input, filters, kernel/stride, padding) | layers | passes: "
              "TensorFlow all cores, ms | PyTorch all cores, ms |", "|---|---:|---|---|"]
    per_shape = [medians(measured[(f, all_cores)]) for f in ("tensorflow", "torch")]
    for i, s in enumerate(shapes):
        cells = [" / ".join(f"{ms[i][p]:.2f}" for p in PASSES) for ms in per_shape]
        lines.append(f"| {s['height']}x{s['width']}x{s['channels']} -> {s['filters']}, "
                     f"{s['kernel']}x{s['kernel']}/{s['stride']}, {s['padding']} "
                     f"({', '.join(s['names'][:3])}{', ...' if len(s['names']) > 3 else ''}) | "
                     f"{s['layers']} | {cells[0]} | {cells[1]} |")
    lines += ["", "Passes: forward / input gradient / weight gradient.", ""]
    return "\n".join(lines) + "\n"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("network", "deep_convnet", list(NETWORKS), "the network whose "
                      "convolutions are timed", flag_values=fv)
    flags.DEFINE_integer("repeats", 3, "alternated rounds of processes", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("iterations", 60, "timed calls per pass", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("out", "", "path prefix of the .md and .json results "
                        "(default bench/results/conv_scaling_<network>)", flag_values=fv)
    # What the bench passes to each measuring process of its own.
    flags.DEFINE_enum("worker", None, ["tensorflow", "torch"], "internal: this process times "
                      "one framework and prints JSON", flag_values=fv)
    flags.DEFINE_integer("threads", 0, "internal: the worker's threads", flag_values=fv)
    flags.DEFINE_string("shapes", "", "internal: the worker's shapes, JSON", flag_values=fv)
    flags.DEFINE_integer("batch", 0, "internal: the worker's batch", flag_values=fv)


def main(args):
    if args.worker:
        timer = time_tensorflow if args.worker == "tensorflow" else time_torch
        print(json.dumps(timer(json.loads(args.shapes), args.batch, args.threads,
                               args.iterations)))
        return

    from suite.runtime.startup import load_tensorflow

    load_tensorflow(quiet=True)  # the suite's oneDNN default, before Keras builds the model
    from bench.interleaved import footer, write
    from bench.training_throughput import Network  # the networks and batches that bench trains

    network = Network(args.network)
    shapes, batch = conv_shapes(network.keras_model()[0]), network.batch_size
    all_cores = os.cpu_count()
    info = machine.describe()
    measured = {(f, t): [] for f in ("tensorflow", "torch") for t in (1, all_cores)}
    for round_index in range(args.repeats):
        keys = list(measured)
        for f, t in keys[round_index % len(keys):] + keys[:round_index % len(keys)]:
            print(f"round {round_index + 1}: {f}, {t} thread(s) ...", flush=True)
            measured[(f, t)].append(run_worker(f, t, shapes, batch, args.iterations))
    command = machine.command(__file__)
    text = report(args.network, shapes, batch, measured, info, command, all_cores)
    out = args.out or os.path.join(RESULTS, f"conv_scaling_{args.network}")
    write(out, text + footer(info) + "\n", {
        "command": command, "machine": info, "network": args.network, "batch": batch,
        "shapes": shapes,
        "runs": {f"{f}/{t}": runs for (f, t), runs in measured.items()}})


if __name__ == "__main__":
    cli.run(main, define_flags)
