"""Where a training step's time goes: the suite's Keras model under the TensorFlow profiler and
the same network's fastest float32 PyTorch form (eager, channels_last) under torch.profiler,
per op kind, in milliseconds per step.

    python -m bench.profile_training --network=resnet20 [--steps=10] [--policy=float32]

The networks, batches and optimizers are bench/training_throughput.py's. TensorFlow's figures
are the op kernels' wall time on its inter-op threads (an op's oneDNN work on other threads
counts in its own time); PyTorch's are self CPU time per aten op. Ops that run side by side
can sum to more than the step. Profiling slows both (PyTorch's many small ops the most): read
the shares, and take speeds from bench/training_throughput.py. Results go to bench/results/profile_<network>.{md,json}.
"""
from __future__ import annotations

import collections
import glob
import os
import tempfile
import time

from absl import flags

from bench import RESULTS, cli, machine
from bench import training_throughput as throughput
from bench.interleaved import footer, write

# TensorFlow kernel type -> the kind of work it is (oneDNN kernels carry an _Mkl prefix).
TF_KINDS = {
    "Conv2D": "convolution, forward", "FusedConv2D": "convolution, forward",
    "Conv2DBackpropFilter": "convolution, weight gradient",
    "Conv2DBackpropFilterWithBias": "convolution, weight gradient",
    "Conv2DBackpropInput": "convolution, input gradient",
    "FusedBatchNormV3": "batch norm, forward", "FusedBatchNormEx": "batch norm, forward",
    "FusedBatchNormGradV3": "batch norm, backward",
    "MatMul": "dense", "FusedMatMul": "dense", "MaxPool": "pooling", "MaxPoolGrad": "pooling", "AvgPool": "pooling",
}


def tf_kind(kernel: str) -> str:
    name = kernel.replace("_MklNative", "").replace("_Mkl", "").lstrip("_")
    if name in TF_KINDS:
        return TF_KINDS[name]
    if name.startswith(("ResourceApply", "AssignSub", "AssignAdd", "AssignVariable")):
        return "optimizer update"
    return f"other: {name}"


def profile_keras(network, policy: str, steps: int) -> tuple[dict, float]:
    """({kind: ms per step}, wall ms per step) of `steps` fit steps under the profiler."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    peer = throughput.KerasPeer(network, policy)
    peer.warm_up(5)
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        peer.run(steps)
        wall = time.perf_counter() - started
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        (path,) = glob.glob(os.path.join(logdir, "plugins/profile/*/*.xplane.pb"))
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                op, _, kernel = plane.event_metadata[event.metadata_id].name.rpartition(":")
                if op and not op.endswith(":"):  # "<op>:<kernel>", not "ExecutorState::Process"
                    totals[tf_kind(kernel)] += event.duration_ps / 1e9
    return {k: v / steps for k, v in totals.items()}, 1000 * wall / steps


TORCH_KINDS = {
    "aten::convolution_backward": "convolution, both gradients",
    "aten::mkldnn_convolution": "convolution, forward",
    "aten::native_batch_norm": "batch norm, forward",
    "aten::native_batch_norm_backward": "batch norm, backward",
    "aten::addmm": "dense", "aten::mm": "dense",
}


def profile_torch(network, steps: int) -> tuple[dict, float]:
    from torch.profiler import ProfilerActivity, profile

    peer = throughput.TorchPeer(network, channels_last=True)
    peer.warm_up(5)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        peer.run(steps)
        wall = time.perf_counter() - started
    totals = collections.Counter()
    for event in prof.key_averages():
        if event.self_cpu_time_total > 0:
            name = event.key
            kind = TORCH_KINDS.get(name) or (
                "optimizer update" if "foreach" in name or name.startswith("Optimizer.step")
                else f"other: {name}")
            totals[kind] += event.self_cpu_time_total / 1000
    return {k: v / steps for k, v in totals.items()}, 1000 * wall / steps


def table(title: str, kinds: dict, wall_ms: float, top: int) -> list[str]:
    lines = [f"### {title}: {wall_ms:.1f} ms per step (profiled)", "",
             "| op kind | ms per step | share of the step |", "|---|---|---|"]
    ranked = sorted(kinds.items(), key=lambda kv: -kv[1])
    shown, rest = ranked[:top], ranked[top:]
    for kind, ms in shown:
        lines.append(f"| {kind} | {ms:.2f} | {100 * ms / wall_ms:.0f}% |")
    if rest:
        ms = sum(v for _, v in rest)
        lines.append(f"| {len(rest)} other kinds | {ms:.2f} | {100 * ms / wall_ms:.0f}% |")
    return lines + [""]


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("network", "resnet20", ["deep_convnet", "resnet20"], "the network profiled",
                      flag_values=fv)
    flags.DEFINE_enum("policy", "float32", ["float32", "mixed_bfloat16"], "the Keras model's "
                      "precision policy (PyTorch stays float32)", flag_values=fv)
    flags.DEFINE_integer("steps", 10, "profiled steps per framework", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("top", 12, "op kinds listed before 'other'", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("out", "", "path prefix of the .md and .json results (default "
                        "bench/results/profile_<network>)", flag_values=fv)


def main(args):
    from suite.runtime.startup import load_tensorflow

    load_tensorflow()
    import torch

    torch.set_num_threads(os.cpu_count())
    network = throughput.Network(args.network)
    info = machine.describe()
    keras_kinds, keras_ms = profile_keras(network, args.policy, args.steps)
    torch_kinds, torch_ms = profile_torch(network, args.steps)
    command = machine.command(__file__)
    lines = [f"# Where a {network.name} training step goes ({machine.label(info)}, load "
             f"{info['load_1min']})", "", f"`{command}`", "",
             f"Batch {network.batch_size}, {args.steps} profiled steps each.", "",
             *table(f"Keras, {args.policy}", keras_kinds, keras_ms, args.top),
             *table("PyTorch eager, channels_last, float32", torch_kinds, torch_ms, args.top),
             footer(info)]
    out = args.out or os.path.join(RESULTS, f"profile_{args.network}")
    write(out, "\n".join(lines) + "\n", {
        "command": command, "machine": info, "network": args.network, "policy": args.policy,
        "keras": {"ms_per_step": keras_ms, "kinds": keras_kinds},
        "torch": {"ms_per_step": torch_ms, "kinds": torch_kinds}})


if __name__ == "__main__":
    cli.run(main, define_flags)
