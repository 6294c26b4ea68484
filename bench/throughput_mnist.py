"""DeepConvNet training throughput: the suite's Keras model against PyTorch and the book's NumPy code.

Usage (from the repository root; see bench/README.md):

    python -m bench.throughput_mnist --steps=200 --repeats=5

Every peer trains the same 123,552-parameter network (Adam lr 1e-3, batch 100, float32 unless noted).
Each is warmed up, then `--steps` steps are timed `--repeats` times; the table gives the median
images/s and its ratio to PyTorch eager. `keras_tfdata / keras_synthetic` says whether the suite's
input pipeline (suite.data.pipeline.train_dataset on the MNIST files) keeps up with in-memory data
(the bar: within 5%). Results go to bench/results/.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from absl import flags

from bench import RESULTS, SHARED, SHARED_DATA, cli, machine

BATCH_SIZE = 100
NUM_PARAMETERS = 123_552  # the book's DeepConvNet; every peer must match it
PIPELINE_BAR = 0.95  # keras_tfdata must reach 95% of keras_synthetic
PEERS = {
    "keras_synthetic": "Keras fit, in-memory random batches (tf.data cache+repeat)",
    "keras_tfdata": "Keras fit, MNIST via suite.data.pipeline.train_dataset (per-image shuffle)",
    "torch": "PyTorch eager, NCHW",
    "torch_channels_last": "PyTorch eager, channels_last",
    "numpy": "book NumPy code as shipped (float64)",
    "numpy_f32": "book NumPy code in float32 (params, inputs, im2col scratch)",
}
ALIASES = {"keras": "keras_synthetic"}



def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("data_dir", os.path.join(SHARED_DATA, "mnist"),
                        "Folder with the MNIST IDX .gz files.", flag_values=fv)
    flags.DEFINE_string("reference_dir", os.path.join(SHARED, "reference",
                                                      "deep-learning-from-scratch"),
                        "Checkout of the book's code (ch08/, common/); only the numpy peers need "
                        "it.", flag_values=fv)
    flags.DEFINE_list("peers", list(PEERS), f"Peers to measure, from: {', '.join(PEERS)} "
                      "('keras' = keras_synthetic).", flag_values=fv)
    flags.DEFINE_integer("steps", 200, "Timed training steps per repeat.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("repeats", 5, "Timed repeats per peer; the median is reported.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("warmup_steps", 20, "Untimed steps first (tracing, allocator, shuffle "
                         "buffer).", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("numpy_steps", 10, "Timed steps per repeat for the (slow) numpy peers.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_string("out_dir", RESULTS, "Where throughput_mnist.{json,md} go.",
                        flag_values=fv)
    flags.register_validator(
        "peers", lambda names: all(ALIASES.get(n, n) in PEERS for n in names),
        message=f"unknown peer in --peers; choose from {', '.join(PEERS)}", flag_values=fv)


def synthetic_batches(num_batches: int = 10, channels_first: bool = False, seed: int = 0):
    """Random raw-pixel batches; compute cost does not depend on pixel values."""
    rng = np.random.default_rng(seed)
    shape = (num_batches, BATCH_SIZE) + ((1, 28, 28) if channels_first else (28, 28, 1))
    images = rng.uniform(0, 255, size=shape).astype(np.float32)
    labels = rng.integers(0, 10, size=(num_batches, BATCH_SIZE)).astype(np.int64)
    return images, labels


def clock() -> tuple[float, float]:
    """(wall, process CPU) seconds. CPU time per step is the steadier number on a shared machine."""
    return time.perf_counter(), time.process_time()


def per_repeat(step_ends: list[tuple[float, float]], warmup: int, steps: int, repeats: int,
               batch_size: int = BATCH_SIZE):
    """(images/s, CPU ms/step) of each repeat, from the clock at the end of every step."""
    bounds = [step_ends[warmup - 1 + r * steps] for r in range(repeats + 1)]
    return [(steps * batch_size / (end[0] - start[0]), 1e3 * (end[1] - start[1]) / steps)
            for start, end in zip(bounds, bounds[1:])]


def timed_loop(step, batches, warmup: int, steps: int, repeats: int, batch_size: int = BATCH_SIZE):
    ends = []
    for i in range(warmup + steps * repeats):
        step(*batches[i % len(batches)])
        ends.append(clock())
    return per_repeat(ends, warmup, steps, repeats, batch_size)


# --- Keras -----------------------------------------------------------------------------------------
def keras_synthetic_dataset():
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(synthetic_batches()).cache().repeat()


def keras_mnist_dataset(data_dir: str):
    """The production pipeline (per-image slices, shuffle(60000), repeat, batch, cast, prefetch) on MNIST."""
    from suite.data.mnist import load_mnist_arrays
    from suite.data.pipeline import train_dataset

    if os.path.isdir(data_dir):
        (images, labels), _ = load_mnist_arrays(data_dir)  # raises DataError naming a corrupt or missing file
    else:
        print(f"NOTE: {data_dir} does not exist; keras_tfdata runs the pipeline on 60,000 random images instead.")
        rng = np.random.default_rng(0)
        images, labels = rng.integers(0, 256, (60000, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, 60000)
    return train_dataset(images, labels, batch_size=BATCH_SIZE, seed=0)


def measure_keras(dataset, warmup: int, steps: int, repeats: int):
    import keras

    from suite.models.deep_convnet import build_deep_convnet

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build_deep_convnet()
    assert model.count_params() == NUM_PARAMETERS, f"Keras DeepConvNet has {model.count_params():,} parameters"
    # jit_compile off: XLA is ~2x slower on this CPU (FINDINGS.md); no metrics, as in the other peers.
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(), jit_compile=False)
    ends = []
    step_clock = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(clock()))
    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps * repeats, verbose=0, callbacks=[step_clock])
    return per_repeat(ends, warmup, steps, repeats)


# --- PyTorch ---------------------------------------------------------------------------------------
def measure_torch(channels_last: bool, warmup: int, steps: int, repeats: int):
    try:
        import torch
    except ImportError as e:
        raise ImportError("the torch peers need PyTorch: pip install torch==2.13.0 (or pip install '.[bench]'), "
                          "or leave torch,torch_channels_last out of --peers") from e
    from bench.torch_deep_convnet import build_model, make_train_step

    torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    step = make_train_step(build_model(channels_last=channels_last))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    images, labels = synthetic_batches(channels_first=True)
    batches = [(torch.from_numpy(x).contiguous(memory_format=fmt), torch.from_numpy(y)) for x, y in zip(images, labels)]
    return timed_loop(step, batches, warmup, steps, repeats)


# --- The book's NumPy code -------------------------------------------------------------------------
def _load_by_path(name: str, path: Path, package: bool = False):
    """The module (or package) `name` from `path`, kept in sys.modules under that name."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def measure_numpy(reference_dir: str, dtype, warmup: int, steps: int, repeats: int):
    ref = Path(reference_dir)
    if not (ref / "ch08/deep_convnet.py").exists():
        raise FileNotFoundError(f"{ref}/ch08/deep_convnet.py not found: pass --reference_dir=<book checkout> "
                                "or leave numpy,numpy_f32 out of --peers.")
    # The checkout's `common` package first: ch08's module imports `common.*` by that name.
    _load_by_path("common", ref / "common" / "__init__.py", package=True)
    import common.util
    from common.optimizer import Adam

    DeepConvNet = _load_by_path("deep_convnet", ref / "ch08" / "deep_convnet.py").DeepConvNet

    class Float32Scratch:
        """numpy as common.util sees it, but np.zeros defaults to float32: im2col/col2im allocate
        their scratch arrays with the default dtype, which would silently compute in float64."""

        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def zeros(shape, dtype=np.float32):
            return np.zeros(shape, dtype)

    np.random.seed(0)
    net = DeepConvNet()
    assert sum(v.size for v in net.params.values()) == NUM_PARAMETERS, "the book's DeepConvNet changed size"
    if dtype != np.float64:
        # The layers hold references to the parameter arrays (Adam updates them in place): rebind them,
        # in the book's W1..W8 order, to the cast copies.
        net.params = {k: v.astype(dtype) for k, v in net.params.items()}
        for i, layer in enumerate(layer for layer in net.layers if hasattr(layer, "W")):
            layer.W, layer.b = net.params[f"W{i + 1}"], net.params[f"b{i + 1}"]
    optimizer = Adam(lr=1e-3)
    grad_dtypes = set()

    def step(x, t):
        grads = net.gradient(x, t)
        grad_dtypes.update(g.dtype for g in grads.values())
        optimizer.update(net.params, grads)

    images, labels = synthetic_batches(channels_first=True)
    # The book feeds pixels / 255 (load_mnist(normalize=True)), in its own dtype.
    batches = [((x / 255.0).astype(dtype), t) for x, t in zip(images, labels)]
    common.util.np = Float32Scratch() if dtype == np.float32 else np
    try:
        result = timed_loop(step, batches, warmup, steps, repeats)
    finally:
        common.util.np = np
    assert grad_dtypes == {np.dtype(dtype)}, f"the {np.dtype(dtype)} numpy peer computed in {grad_dtypes}"
    return result


# --- Report ----------------------------------------------------------------------------------------
def machine_info() -> dict:
    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {**machine.describe(), "cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            **{p: version(p) for p in ("numpy", "tensorflow", "keras", "torch")},
            **{var: os.environ[var] for var in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if var in os.environ},
            "load_average_1min_at_start": round(os.getloadavg()[0], 2)}


def write_report(results: dict, info: dict, command: str, warning: str = "") -> str:
    torch_ips = results.get("torch", {}).get("median_images_per_s")
    lines = [f"# DeepConvNet training throughput (batch {BATCH_SIZE}, Adam 1e-3)", "", f"`{command}`", "",
             *([warning, ""] if warning else []),
             "| peer | what | median images/s | range | vs torch eager | CPU ms/step | timed steps x repeats |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        ratio = f"{r['median_images_per_s'] / torch_ips:.2f}" if torch_ips else "n/a"
        lines.append(f"| {name} | {PEERS[name]} | {r['median_images_per_s']:,.0f} | {min(r['images_per_s']):,.0f}-"
                     f"{max(r['images_per_s']):,.0f} | {ratio} | {r['median_cpu_ms_per_step']:.1f} | "
                     f"{r['steps']} x {r['repeats']} |")
    if "keras_tfdata" in results and "keras_synthetic" in results:
        real, synthetic = results["keras_tfdata"], results["keras_synthetic"]
        ratio = real["median_images_per_s"] / synthetic["median_images_per_s"]
        cpu = real["median_cpu_ms_per_step"] / synthetic["median_cpu_ms_per_step"]
        verdict = "PASS" if ratio >= PIPELINE_BAR else "FAIL"
        lines += ["", f"Input pipeline: keras_tfdata / keras_synthetic = {ratio:.3f} in images/s ({verdict}, "
                      f"bar {PIPELINE_BAR:.2f}); {cpu:.3f} in CPU per step"]
    lines += ["", "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items())]
    return "\n".join(lines) + "\n"


def main(args):
    from suite.runtime.startup import load_tensorflow

    load_tensorflow()
    peers = [ALIASES.get(n, n) for n in args.peers]
    info = machine_info()
    warning = ""
    if info["load_average_1min_at_start"] > 0.5 * os.cpu_count():
        # Measured: at load ~7 on 2 cores PyTorch's spinning OpenMP threads fell 5-10x, Keras ~1.5x.
        warning = (f"WARNING: load average {info['load_average_1min_at_start']} on {os.cpu_count()} CPUs at start: "
                   "the machine was busy, numbers are noisy (PyTorch and NumPy suffer most); do not quote them.")
        print(warning)
    warmup, steps, repeats = args.warmup_steps, args.steps, args.repeats
    numpy_warmup = 1  # a numpy step takes ~0.5 s and has nothing to trace
    measures = {
        "keras_synthetic": lambda: measure_keras(keras_synthetic_dataset(), warmup, steps, repeats),
        "keras_tfdata": lambda: measure_keras(keras_mnist_dataset(args.data_dir), warmup, steps,
                                              repeats),
        "torch": lambda: measure_torch(False, warmup, steps, repeats),
        "torch_channels_last": lambda: measure_torch(True, warmup, steps, repeats),
        "numpy": lambda: measure_numpy(args.reference_dir, np.float64, numpy_warmup,
                                       args.numpy_steps, repeats),
        "numpy_f32": lambda: measure_numpy(args.reference_dir, np.float32, numpy_warmup,
                                           args.numpy_steps, repeats),
    }
    results = {}
    for name in peers:
        print(f"measuring {name} ...", flush=True)
        ips, cpu_ms = ([round(v, 2) for v in column] for column in zip(*measures[name]()))
        results[name] = {"images_per_s": ips, "median_images_per_s": statistics.median(ips),
                         "cpu_ms_per_step": cpu_ms, "median_cpu_ms_per_step": statistics.median(cpu_ms),
                         "steps": args.numpy_steps if name.startswith("numpy") else steps,
                         "repeats": repeats}
    info["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    command = machine.command(__file__)
    report = write_report(results, info, command, warning)
    print("\n" + report)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput_mnist.md").write_text(report)
    (out / "throughput_mnist.json").write_text(json.dumps(
        {"command": command, "batch_size": BATCH_SIZE, "warning": warning or None, "machine": info,
         "results": results}, indent=2) + "\n")
    print(f"wrote {out / 'throughput_mnist.md'} and {out / 'throughput_mnist.json'}")


if __name__ == "__main__":
    cli.run(main, define_flags)
