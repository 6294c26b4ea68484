"""Training throughput of DeepConvNet (MNIST) and ResNet-20 (CIFAR-10): the suite's Keras models
against the same networks in PyTorch, eager, channels-last, torch.compile and bfloat16.

    python -m bench.training_throughput --network=deep_convnet [--steps=100] [--repeats=5]
    python -m bench.training_throughput --network=resnet20 [--steps=20] [--repeats=5]

Each network is the same in both frameworks (parameter counts asserted): DeepConvNet with Adam
1e-3 at batch 100 (bench/torch_deep_convnet.py), ResNet-20 with SGD momentum 0.9 and weight decay
1e-4 at batch 128 (bench/torch_resnet20.py), on in-memory random batches, all CPU threads.

  keras                 the suite's model, `fit` on a cached tf.data dataset, float32, no XLA
  keras_bfloat16        the same under the mixed_bfloat16 policy (float32 weights and loss)
  keras_unfused_bn, keras_unfused_bn_bfloat16
                        ResNet-20 only: the same with Keras's own BatchNormalization instead of
                        the suite's fused one (suite.models.batch_norm), to measure that lever
  torch                 PyTorch eager, NCHW, float32
  torch_channels_last   PyTorch eager, channels_last, float32
  torch_compile         torch.compile (default mode) of the NCHW model, float32
  torch_compile_channels_last
                        the same of the channels_last model
  torch_bfloat16        PyTorch eager, channels_last, under torch.autocast(bfloat16)
  torch_compile_bfloat16
                        torch.compile of the channels_last model under torch.autocast(bfloat16)

The float32 Keras peer is compared with the best float32 PyTorch peer, the bfloat16 one with
PyTorch's best bfloat16 peer and with the best PyTorch peer of all. Each peer's arithmetic rate (3 passes
of the network's multiply-adds per image) is also given as a share of this CPU's GEMM peak of
its precision, measured before and after the rounds (bench/roofline.py), and with it the
ceiling: the most any peer of a precision could be ahead of PyTorch's best of it. bfloat16 only
pays on CPUs with AVX512_BF16 or AMX (the machine's ISA is in the report). Rounds are
interleaved (bench/interleaved.py); results go to
bench/results/training_throughput_<network>.{md,json}.
"""
from __future__ import annotations

import functools
import importlib
import os

import numpy as np
from absl import flags

from bench import RESULTS, cli, interleaved, machine, roofline

NUM_BATCHES = 8
PEERS = {
    "keras": "Keras fit, float32",
    "keras_bfloat16": "Keras fit, mixed_bfloat16",
    "keras_unfused_bn": "Keras fit, float32, Keras's own (unfused) batch norm",
    "keras_unfused_bn_bfloat16": "Keras fit, mixed_bfloat16, Keras's own batch norm",
    "torch": "PyTorch eager, NCHW, float32",
    "torch_channels_last": "PyTorch eager, channels_last, float32",
    "torch_compile": "torch.compile (default mode), NCHW, float32",
    "torch_compile_channels_last": "torch.compile (default mode), channels_last, float32",
    "torch_bfloat16": "PyTorch eager, channels_last, autocast bfloat16",
    "torch_compile_bfloat16": "torch.compile (default mode), channels_last, autocast bfloat16",
}
FLOAT32_TORCH = ("torch", "torch_channels_last", "torch_compile", "torch_compile_channels_last")
BFLOAT16_TORCH = ("torch_bfloat16", "torch_compile_bfloat16")


class Network:
    """What differs between the two networks: shapes, the Keras and PyTorch builders and steps."""

    def __init__(self, name: str):
        self.name = name
        if name == "deep_convnet":
            self.batch_size, self.shape, self.parameters = 100, (28, 28, 1), 123_552
        else:
            self.batch_size, self.shape, self.parameters = 128, (32, 32, 3), 269_722

    def batches(self, channels_first: bool):
        rng = np.random.default_rng(0)
        side, _, channels = self.shape
        shape = (NUM_BATCHES, self.batch_size) + ((channels, side, side) if channels_first
                                                   else self.shape)
        return (rng.uniform(0, 255, shape).astype(np.float32),
                rng.integers(0, 10, (NUM_BATCHES, self.batch_size)).astype(np.int64))

    def keras_model(self, unfused_bn: bool = False):
        import keras

        if self.name == "deep_convnet":
            from suite.models.deep_convnet import build_deep_convnet

            model, optimizer = build_deep_convnet(), keras.optimizers.Adam(1e-3)
        else:
            from suite.models.registry import build_model

            extra = {"batch_norm": keras.layers.BatchNormalization} if unfused_bn else {}
            model = build_model("resnet20", weight_decay=1e-4, **extra)
            optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        assert trainable == self.parameters, f"Keras {self.name}: {trainable:,} parameters"
        return model, optimizer

    def torch_step(self, channels_last: bool, compiled: bool):
        import torch

        module = importlib.import_module("bench.torch_deep_convnet" if self.name == "deep_convnet"
                                         else "bench.torch_resnet20")
        model = module.build_model(channels_last=channels_last)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert trainable == self.parameters, f"PyTorch {self.name}: {trainable:,} parameters"
        return module.make_train_step(torch.compile(model) if compiled else model)


class KerasPeer(interleaved.FitPeer):
    def __init__(self, network: Network, policy: str, unfused_bn: bool = False):
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(0)
        keras.mixed_precision.set_global_policy(policy)
        try:
            model, optimizer = network.keras_model(unfused_bn)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(), jit_compile=False)
        self.model = model
        self.dataset = tf.data.Dataset.from_tensor_slices(network.batches(False)).cache().repeat()


class TorchPeer(interleaved.StepPeer):
    def __init__(self, network: Network, channels_last: bool = False, compiled: bool = False,
                 bfloat16: bool = False):
        import torch

        torch.manual_seed(0)
        self.train_step = network.torch_step(channels_last, compiled)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.batches = [(torch.from_numpy(x).contiguous(memory_format=fmt), torch.from_numpy(y))
                        for x, y in zip(*network.batches(True))]
        self.autocast = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16,
                                          enabled=bfloat16)
        self.i = 0

    def step(self):
        images, labels = self.batches[self.i % len(self.batches)]
        self.i += 1
        with self.autocast():
            self.train_step(images, labels)


def build_peer(name: str, network: Network):
    if name.startswith("keras"):
        return KerasPeer(network, "mixed_bfloat16" if name.endswith("bfloat16") else "float32",
                         unfused_bn="unfused" in name)
    return TorchPeer(network, **interleaved.torch_options(name))


def ratios(results: dict) -> dict:
    """Keras float32 / best PyTorch float32, Keras bfloat16 / best PyTorch bfloat16 and / best
    PyTorch of all, the fused batch norm / Keras's own; None where a peer is missing."""
    speed = {k: r["mean_images_per_s"] for k, r in results.items() if r["mean_images_per_s"]}
    best32 = max((speed[k] for k in FLOAT32_TORCH if k in speed), default=None)
    best16 = max((speed[k] for k in BFLOAT16_TORCH if k in speed), default=None)
    best_any = max((v for k, v in speed.items() if k.startswith("torch")), default=None)

    def over(a, b):
        return round(a / b, 3) if a and b else None

    return {"keras_vs_best_torch_float32": over(speed.get("keras"), best32),
            "keras_bfloat16_vs_torch_bfloat16": over(speed.get("keras_bfloat16"), best16),
            "keras_bfloat16_vs_best_torch": over(speed.get("keras_bfloat16"), best_any),
            "best_keras_vs_best_torch": over(max((v for k, v in speed.items()
                                                  if k in ("keras", "keras_bfloat16")),
                                                 default=None), best_any),
            "fused_bn_vs_keras_bn_float32": over(speed.get("keras"),
                                                 speed.get("keras_unfused_bn")),
            "fused_bn_vs_keras_bn_bfloat16": over(speed.get("keras_bfloat16"),
                                                  speed.get("keras_unfused_bn_bfloat16"))}


def add_rates(results: dict, gflop_per_image: float, peaks: dict) -> dict:
    """Each peer's GFLOP/s and percent of the GEMM peak of its precision; returns the
    ceilings: per precision, the peak over the best PyTorch peer's GFLOP/s."""
    best_torch = {}
    for name, r in results.items():
        precision = "bfloat16" if name.endswith("bfloat16") else "float32"
        r["gflops"] = (round(r["mean_images_per_s"] * gflop_per_image, 1)
                       if r["mean_images_per_s"] else None)
        r["percent_of_peak"] = (roofline.share(r["gflops"], peaks.get(precision))
                                if r["gflops"] else None)
        if name.startswith("torch") and r["gflops"]:
            best_torch[precision] = max(best_torch.get(precision, 0), r["gflops"])
    return {f"{precision}_ceiling_vs_best_torch": round(peaks[precision]["gflops"] / rate, 3)
            for precision, rate in best_torch.items() if precision in peaks}


def markdown(network: Network, results: dict, info: dict, args, command: str,
             warning: str, peaks: dict, ceilings: dict, gflop_per_image: float) -> str:
    summary = ratios(results)
    shares = []
    if peaks:
        shares = [f"GFLOP/s: {gflop_per_image * 1e3:.1f} MFLOP per training image (3 passes of "
                  "the multiply-adds) x images/s; GEMM peaks, best of TensorFlow and PyTorch "
                  "before and after the rounds: " + ", ".join(
                      f"{d} {p['gflops']:,.0f} GFLOP/s" for d, p in peaks.items()) + ".", "",
                  *(f"- {k.replace('_', ' ')}: **{v:.2f}x** (the GEMM peak over PyTorch's best "
                    "rate of that precision: the most any peer of it could reach)"
                    for k, v in ceilings.items()), ""]
    lines = [f"# {network.name} training throughput ({machine.label(info)}, load "
             f"{info['load_1min']})", "", f"`{command}`", "", *([warning, ""] if warning else []),
             f"Batch {network.batch_size}, {network.parameters:,} trainable parameters in both "
             f"frameworks, rounds interleaved, {args.steps} timed steps per peer per round.", "",
             *interleaved.table(results, args.repeats), "",
             *(f"- {k.replace('_', ' ')}: **{v:.2f}x**" for k, v in summary.items()
               if v is not None), "", *shares, interleaved.footer(info)]
    return "\n".join(lines) + "\n"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_enum("network", "deep_convnet", ["deep_convnet", "resnet20"],
                      "the network trained by every peer", flag_values=fv)
    flags.DEFINE_integer("steps", 0, "timed steps per peer per round (default: 100 DeepConvNet, "
                         "20 ResNet-20)", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("warmup_steps", 5, "untimed steps per peer first (tracing, compilation)",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("repeats", 5, "interleaved rounds", lower_bound=1, flag_values=fv)
    interleaved.add_threads_flag(fv)
    roofline.add_flag(fv)
    flags.DEFINE_string("peers", "", f"comma-separated, from {','.join(PEERS)} (default: all "
                        "the network has; DeepConvNet has no batch norm)", flag_values=fv)
    flags.DEFINE_string("out", "", "path prefix of the .md and .json results (default "
                        "bench/results/training_throughput_<network>)", flag_values=fv)


def main(args):
    offered = [n for n in PEERS if args.network == "resnet20" or "unfused" not in n]
    names = cli.peer_names(args.peers, offered, of=args.network) or offered
    args.steps = args.steps or (100 if args.network == "deep_convnet" else 20)
    out = args.out or os.path.join(RESULTS, f"training_throughput_{args.network}")
    info, warning = interleaved.start(args.torch_threads)
    network = Network(args.network)
    (results, orders), peaks, peaks_before = roofline.around(
        lambda: interleaved.measure(lambda name: build_peer(name, network), names, PEERS,
                                    args.steps, args.warmup_steps, args.repeats,
                                    network.batch_size), args.no_peak)
    gflop_per_image = roofline.gflops_per_image(network.keras_model()[0], training=True)
    ceilings = add_rates(results, gflop_per_image, peaks)
    interleaved.finish(info)
    command = machine.command(__file__)
    interleaved.write(out, markdown(network, results, info, args, command, warning, peaks,
                                    ceilings, gflop_per_image), {
        "command": command, "warning": warning or None, "machine": info,
        "network": args.network, "batch_size": network.batch_size,
        "parameters": network.parameters, "round_orders": orders, "results": results,
        "ratios": ratios(results), "ceilings": ceilings, "gemm_peaks": peaks,
        "gemm_peaks_before": peaks_before, "gflop_per_training_image": round(gflop_per_image, 6)})


if __name__ == "__main__":
    cli.run(main, define_flags)
