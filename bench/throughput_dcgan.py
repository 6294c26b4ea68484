"""DCGAN training step time on MNIST-sized images: the suite's Keras model against the same
networks and step in PyTorch.

    python -m bench.throughput_dcgan [--steps=20] [--repeats=5] [--warmup_steps=3]
        [--batch_size=128] [--base_filters=64] [--out=bench/results/throughput_dcgan]

What is measured: training steps per second x batch size of suite.models.dcgan at 28x28x1
(generator z(100) -> 7x7x128 -> 14x14x64 -> 28x28x1, discriminator 28 -> 14x14x64 -> 7x7x128
-> logit; 5x5 kernels, batch norm, Adam 2e-4 / beta_1 0.5 for both), float32, on the CPU.
One step is what DCGAN.train_step does: a discriminator update on a real batch and a batch
generated from fresh noise, then a generator update through the discriminator with fresh noise
(two generator forward passes, one generator backward pass, batch norm on real and fake
batches separately).

  keras               suite.models.dcgan.DCGAN, model.fit on an in-memory tf.data dataset
                      (from_tensor_slices, repeat, batch), jit_compile off, verbose 0
  torch               the same networks in torch.nn (bench/torch_dcgan.py, parameter counts
                      asserted equal), eager, NCHW; the discriminator step's fakes under
                      no_grad (Keras's tape does not differentiate into the generator there
                      either)
  torch_channels_last the same, models and inputs in torch.channels_last
  torch_compile       the same, NCHW, both networks wrapped in torch.compile (default mode)

Peers are measured in one process, interleaved (bench/interleaved.py); PyTorch uses
torch.set_num_threads(os.cpu_count()). Run on a quiet machine.
"""
from __future__ import annotations

import os

import numpy as np
from absl import flags

from bench import RESULTS, cli, interleaved, machine

SIDE, CHANNELS = 28, 1
LEARNING_RATE, BETA_1 = 2e-4, 0.5
NUM_BATCHES = 4
PEERS = {
    "keras": "Keras fit of DCGAN.train_step, tf.data in memory, NHWC",
    "torch": "PyTorch eager, NCHW",
    "torch_channels_last": "PyTorch eager, channels_last",
    "torch_compile": "PyTorch torch.compile (default mode), NCHW",
}


def real_batches(batch_size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (NUM_BATCHES * batch_size, SIDE, SIDE, CHANNELS)).astype(np.float32)


def keras_gan(base_filters: int):
    from suite.models.dcgan import DCGAN, LATENT_DIM

    gan = DCGAN(image_shape=(SIDE, SIDE, CHANNELS), latent_dim=LATENT_DIM,
                base_filters=base_filters)
    gan(np.zeros((1, LATENT_DIM), np.float32))
    return gan


def parameter_counts(base_filters: int) -> dict:
    """Keras counts batch norm's moving statistics; PyTorch keeps them as buffers (added)."""
    from bench.torch_dcgan import Discriminator, Generator

    gan = keras_gan(base_filters)
    counts = {"keras_generator": gan.generator.count_params(),
              "keras_discriminator": gan.discriminator.count_params()}
    for name, module in (("generator", Generator(base_filters, SIDE, CHANNELS)),
                         ("discriminator", Discriminator(base_filters, SIDE, CHANNELS))):
        running = sum(b.numel() for n, b in module.named_buffers()
                      if n.endswith(("running_mean", "running_var")))
        counts[f"torch_{name}"] = sum(p.numel() for p in module.parameters()) + running
        assert counts[f"torch_{name}"] == counts[f"keras_{name}"], f"{name} differs: {counts}"
    return counts


class KerasPeer(interleaved.FitPeer):
    def __init__(self, args):
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(0)
        self.model = keras_gan(args.base_filters)
        self.model.compile(keras.optimizers.Adam(LEARNING_RATE, beta_1=BETA_1),
                           keras.optimizers.Adam(LEARNING_RATE, beta_1=BETA_1))
        self.dataset = tf.data.Dataset.from_tensor_slices(real_batches(args.batch_size)).repeat()
        self.dataset = self.dataset.batch(args.batch_size)


class TorchPeer(interleaved.StepPeer):
    def __init__(self, args, channels_last: bool = False, compiled: bool = False):
        import torch

        from bench.torch_dcgan import Discriminator, Generator, init_normal, make_train_step

        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        generator = Generator(args.base_filters, SIDE, CHANNELS)
        discriminator = Discriminator(args.base_filters, SIDE, CHANNELS)
        for net in (generator, discriminator):
            init_normal(net)
            net.to(memory_format=fmt).train()
        self.train_step = make_train_step(generator, discriminator, args.batch_size,
                                          LEARNING_RATE, BETA_1, compiled)
        real = real_batches(args.batch_size).transpose(0, 3, 1, 2)
        self.batches = [torch.from_numpy(np.ascontiguousarray(b)).contiguous(memory_format=fmt)
                        for b in np.split(real, NUM_BATCHES)]
        self.i = 0

    def step(self):
        real = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.train_step(real)


def build_peer(name: str, args):
    if name == "keras":
        return KerasPeer(args)
    return TorchPeer(args, **interleaved.torch_options(name))


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("steps", 20, "timed steps per peer per round", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("warmup_steps", 3, "untimed steps per peer first", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("repeats", 5, "interleaved rounds", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch_size", 128, "images per step (real and generated alike)",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("base_filters", 64, "filters of the narrowest convolution (doubling by "
                         "stage)", lower_bound=1, flag_values=fv)
    interleaved.add_threads_flag(fv)
    flags.DEFINE_string("peers", ",".join(PEERS), f"from {','.join(PEERS)}", flag_values=fv)
    flags.DEFINE_string("out", os.path.join(RESULTS, "throughput_dcgan"),
                        "path prefix of the .md and .json results", flag_values=fv)


def main(args):
    names = cli.peer_names(args.peers, PEERS)
    info, warning = interleaved.start(args.torch_threads)
    import keras

    counts = parameter_counts(args.base_filters)
    print(f"parameters: {counts}", flush=True)
    keras.backend.clear_session()
    results, orders = interleaved.measure(lambda name: build_peer(name, args), names, PEERS,
                                          args.steps, args.warmup_steps, args.repeats,
                                          args.batch_size)
    for record in results.values():
        if record["mean_images_per_s"]:
            record["ms_per_step"] = round(1e3 * args.batch_size / record["mean_images_per_s"], 1)
    interleaved.finish(info)
    command = machine.command(__file__)
    steps = ", ".join(f"{n} {r['ms_per_step']:.0f} ms" for n, r in results.items()
                      if r.get("ms_per_step"))
    lines = [f"# DCGAN training step time ({machine.label(info)}, load {info['load_1min']})", "",
             f"`{command}`", "", *([warning, ""] if warning else []),
             f"DCGAN at {SIDE}x{SIDE}x{CHANNELS}, base filters {args.base_filters}, batch "
             f"{args.batch_size}, Adam {LEARNING_RATE:g} (beta_1 {BETA_1}) for both networks, "
             f"float32; generator {counts['keras_generator']:,} and discriminator "
             f"{counts['keras_discriminator']:,} parameters in both frameworks. One step = a "
             f"discriminator and a generator update. Step time: {steps}.", "",
             *interleaved.table(results, args.repeats), "", interleaved.footer(info)]
    interleaved.write(args.out, "\n".join(lines) + "\n", {
        "command": command, "warning": warning or None, "machine": info,
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "parameters": counts, "round_orders": orders, "results": results})


if __name__ == "__main__":
    cli.run(main, define_flags)
