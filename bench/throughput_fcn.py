"""FCN-8s training throughput (images/s): the suite's Keras model against the same network in PyTorch.

    python -m bench.throughput_fcn [--steps=16] [--repeats=5] [--warmup_steps=3] [--crop=256]
        [--batch_size=4] [--width_multiplier=0.25] [--out=bench/results/throughput_fcn]

What is measured: training steps per second x batch size of FCN-8s on VGG-16 with batch norm,
width 0.25 (convolutions 16/32/64/128/128, fc6/fc7 1024 units), 1 input channel, 2 classes,
random `--crop` x `--crop` uint8-range float images, Adam lr 1e-3, per-pixel softmax
cross-entropy, float32, on the CPU:

  keras               suite.models.fcn.build_fcn("8s", ...) compiled with Adam and
                      sparse_categorical_crossentropy (jit_compile=False), model.fit on an
                      in-memory tf.data dataset (from_tensor_slices, repeat, batch), verbose 0
  torch               bench/torch_fcn.py, the same layers op for op (parameter counts asserted
                      equal, and the Keras weights copied into it give the same outputs), eager,
                      NCHW
  torch_channels_last the same, model and inputs in torch.channels_last
  torch_compile       the same, NCHW, the model wrapped in torch.compile (default mode); if it
                      fails here, its error text goes into the results instead of a number

The PyTorch net repeats the border before each upsampling with torch.cat (torch_fcn.edge_pad):
F.pad(mode="replicate"), EdgePad's literal counterpart (--torch_edge_pad=replicate), computes
the same but makes torch.compile fail in torch 2.13 on CPU.

All four are built and warmed up (`--warmup_steps`; compilation and tracing happen there, and
their time is recorded), then measured in one process, interleaved: each of `--repeats` rounds
runs every peer once, the order rotating by one peer per round. A peer's turn is one untimed
lead-in step (Keras: the first step of that round's `fit` call, which also absorbs fit's
start-up) followed by `--steps` timed steps, clocked at the end of every step as in
throughput_mnist.py. PyTorch uses torch.set_num_threads(os.cpu_count()), as the other benches
(--torch_threads to change it); TensorFlow its defaults.
The table gives images/s as mean +- std over rounds and its ratio to the best PyTorch
configuration; <out>.md holds it under the machine description (bench/machine.py), <out>.json
every round's numbers. Smoke test: --steps=2 --warmup_steps=1 --repeats=1 --crop=64 --out=/tmp/x
(torch.compile alone then takes ~0.5-2 minutes on 2 cores); the defaults take ~5 minutes on 2
quiet cores (~0.4 s a step at 256x256, batch 4, for every peer). Run on a quiet machine: under load,
PyTorch's spinning OpenMP threads lose up to ~10x (see bench/README.md), Keras much less.
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags

from bench import RESULTS, cli, interleaved, machine

NUM_CLASSES = 2
CHANNELS = 1
LEARNING_RATE = 1e-3
NUM_BATCHES = 4  # distinct random batches, cycled
PEERS = {
    "keras": "Keras fit, tf.data in memory, NHWC",
    "torch": "PyTorch eager, NCHW",
    "torch_channels_last": "PyTorch eager, channels_last",
    "torch_compile": "PyTorch torch.compile (default mode), NCHW",
}


def synthetic_data(crop: int, batch_size: int, channels_first: bool, seed: int = 0):
    """NUM_BATCHES batches of raw [0, 255] pixels and 0/1 per-pixel labels, as flat image arrays."""
    rng = np.random.default_rng(seed)
    n = NUM_BATCHES * batch_size
    shape = (n, CHANNELS, crop, crop) if channels_first else (n, crop, crop, CHANNELS)
    images = rng.integers(0, 256, shape).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, (n, crop, crop)).astype(np.int64)
    return images, labels


def keras_fcn(width_multiplier: float):
    from suite.models.fcn import build_fcn

    return build_fcn("8s", NUM_CLASSES, (None, None, CHANNELS), width_multiplier=width_multiplier,
                     batch_norm=True)


def torch_fcn(width_multiplier: float, edge_pad: str = "cat"):
    from bench.torch_fcn import FCN8s

    return FCN8s(NUM_CLASSES, CHANNELS, width_multiplier=width_multiplier, edge_pad=edge_pad)


def parameter_counts(keras_model, torch_model) -> dict:
    """Keras's count_params() holds BN moving statistics and the fixed upscore8 kernel; PyTorch
    keeps the statistics as buffers, so they are added (num_batches_tracked is not a weight)."""
    running = sum(b.numel() for name, b in torch_model.named_buffers()
                  if name.endswith(("running_mean", "running_var")))
    counts = {
        "keras_total": int(keras_model.count_params()),
        "torch_total": sum(p.numel() for p in torch_model.parameters()) + running,
        "keras_trainable": sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights),
        "torch_trainable": sum(p.numel() for p in torch_model.parameters() if p.requires_grad),
    }
    assert counts["keras_total"] == counts["torch_total"], f"parameter counts differ: {counts}"
    assert counts["keras_trainable"] == counts["torch_trainable"], f"trainable counts differ: {counts}"
    return counts


def check_same_function(width_multiplier: float, edge_pad: str = "cat", tolerance: float = 1e-4) -> float:
    """Random weights everywhere (score layers and upsampling kernels too, or the check is
    vacuous), copied from Keras into PyTorch; a 40x72 input exercises the pad and the crops.
    Returns the largest logit difference relative to the largest logit, inference mode."""
    import keras
    import torch
    from torch import nn

    from bench.torch_fcn import BilinearUpsample

    keras.utils.set_random_seed(1)
    model = keras_fcn(width_multiplier)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path
                               else rng.normal(0, 1, w.shape) * np.sqrt(2 / np.prod(w.shape[:-1]))
                               for w in layer.weights])
    torch_model = torch_fcn(width_multiplier, edge_pad).eval()
    modules = dict(torch_model.named_modules())
    with torch.no_grad():
        for layer in model.layers:
            if not layer.weights:
                continue
            block, _, rest = layer.name.partition("_")
            target = modules[f"{block}.{rest}" if block.startswith("block") else layer.name]
            if isinstance(target, BilinearUpsample):
                target = target.up
            values = [w.numpy() for w in layer.weights]
            if isinstance(target, nn.BatchNorm2d):
                tensors = (target.weight, target.bias, target.running_mean, target.running_var)
            else:  # Conv2D (kh, kw, in, out) and Conv2DTranspose (kh, kw, out, in): same transpose
                values[0] = values[0].transpose(3, 2, 0, 1)
                tensors = (target.weight, target.bias)[:len(values)]
            for tensor, value in zip(tensors, values):
                assert tuple(tensor.shape) == value.shape, (layer.name, tensor.shape, value.shape)
                tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    images = rng.uniform(0, 255, (2, 40, 72, CHANNELS)).astype(np.float32)
    logits_model = keras.Model(model.input, model.get_layer("crop").output)
    expected = np.asarray(logits_model(images, training=False))
    with torch.no_grad():
        got = torch_model(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    difference = float(np.abs(got - expected).max() / np.abs(expected).max())
    assert difference < tolerance, f"Keras and PyTorch FCN-8s disagree: relative difference {difference:.2e}"
    return difference


# --- Peers: warm_up(n) once, then run(n) -> step-end clocks ------------------------------------------
class KerasPeer(interleaved.FitPeer):
    def __init__(self, args):
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(0)
        self.model = keras_fcn(args.width_multiplier)
        # jit_compile off, as in the other benches (XLA is slower on these CPUs); no metrics.
        self.model.compile(keras.optimizers.Adam(LEARNING_RATE),
                           keras.losses.SparseCategoricalCrossentropy(), jit_compile=False)
        images, labels = synthetic_data(args.crop, args.batch_size, channels_first=False)
        self.dataset = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(args.batch_size)


class TorchPeer(interleaved.StepPeer):
    def __init__(self, args, channels_last: bool = False, compiled: bool = False):
        import torch

        from bench.torch_fcn import make_train_step

        torch.manual_seed(0)
        model = torch_fcn(args.width_multiplier, args.torch_edge_pad)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.train_step = make_train_step(model.to(memory_format=fmt).train(), LEARNING_RATE,
                                          compiled)
        images, labels = synthetic_data(args.crop, args.batch_size, channels_first=True)
        self.batches = [(torch.from_numpy(x).contiguous(memory_format=fmt), torch.from_numpy(y))
                        for x, y in zip(np.split(images, NUM_BATCHES), np.split(labels, NUM_BATCHES))]
        self.i = 0

    def step(self):
        images, labels = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.train_step(images, labels)


def build_peer(name: str, args):
    if name == "keras":
        return KerasPeer(args)
    return TorchPeer(args, **interleaved.torch_options(name))


# --- Report --------------------------------------------------------------------------------------------
def markdown(results: dict, info: dict, args, command: str, counts: dict, difference: float,
             warning: str) -> str:
    lines = [f"# FCN-8s training throughput ({machine.label(info)}, load {info['load_1min']})", "",
             f"`{command}`", "",
             *([warning, ""] if warning else []),
             f"FCN-8s, VGG-16 + batch norm, width {args.width_multiplier}, {CHANNELS} input channel, "
             f"{NUM_CLASSES} classes, {args.crop}x{args.crop} crops, batch {args.batch_size}, Adam "
             f"{LEARNING_RATE:g}, per-pixel softmax cross-entropy, float32. {counts['keras_total']:,} "
             f"parameters in both ({counts['keras_trainable']:,} trainable); Keras weights in the "
             f"PyTorch net give the same logits (relative difference {difference:.1e}). Rounds "
             f"interleaved, {args.steps} timed steps per peer per round.", "",
             *interleaved.table(results, args.repeats), "", interleaved.footer(info)]
    return "\n".join(lines) + "\n"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("steps", 16, "timed steps per peer per round", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("warmup_steps", 3, "untimed steps per peer first (tracing, compilation)",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("repeats", 5, "interleaved rounds", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("crop", 256, "image side in pixels", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch_size", 4, "images per step", lower_bound=1, flag_values=fv)
    flags.DEFINE_float("width_multiplier", 0.25, "VGG-16's widths scaled by this",
                       flag_values=fv)
    interleaved.add_threads_flag(fv)
    flags.DEFINE_enum("torch_edge_pad", "cat", ["cat", "replicate"], "how the PyTorch net "
                      "repeats the border before each upsampling (see torch_fcn.edge_pad)",
                      flag_values=fv)
    flags.DEFINE_string("peers", ",".join(PEERS), f"comma-separated, from {','.join(PEERS)}",
                        flag_values=fv)
    flags.DEFINE_string("out", os.path.join(RESULTS, "throughput_fcn"),
                        "path prefix of the .md and .json results", flag_values=fv)


def main(args):
    names = cli.peer_names(args.peers, PEERS)
    info, warning = interleaved.start(args.torch_threads)
    import keras

    counts = parameter_counts(keras_fcn(args.width_multiplier), torch_fcn(args.width_multiplier))
    print(f"parameters: Keras {counts['keras_total']:,} ({counts['keras_trainable']:,} trainable), "
          f"PyTorch {counts['torch_total']:,} ({counts['torch_trainable']:,} trainable)", flush=True)
    difference = check_same_function(args.width_multiplier, args.torch_edge_pad)
    print(f"same function: relative logit difference {difference:.1e}", flush=True)
    keras.backend.clear_session()

    results, orders = interleaved.measure(lambda name: build_peer(name, args), names, PEERS,
                                          args.steps, args.warmup_steps, args.repeats,
                                          args.batch_size)
    interleaved.finish(info)
    command = machine.command(__file__)
    report = markdown(results, info, args, command, counts, difference, warning)
    interleaved.write(args.out, report, {
        "command": command, "warning": warning or None, "machine": info,
        "config": {k: v for k, v in vars(args).items() if k != "out"} | {
            "variant": "8s", "batch_norm": True, "channels": CHANNELS, "classes": NUM_CLASSES,
            "learning_rate": LEARNING_RATE},
        "parameters": counts, "same_function_relative_difference": difference,
        "round_orders": orders, "results": results})


if __name__ == "__main__":
    cli.run(main, define_flags)
