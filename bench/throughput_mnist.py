"""DeepConvNet training throughput: the suite's Keras model against PyTorch and the book's NumPy code.

Usage (from the repository root; see bench/README.md):

    python -m bench.throughput_mnist --steps=200 --repeats=5

Every peer trains the same 123,552-parameter network (Adam lr 1e-3, batch 100, float32 unless noted).
Every peer is built and warmed up first; then `--repeats` interleaved rounds (bench/interleaved.py)
each run every peer for `--steps` timed steps (the NumPy peers `--numpy_steps`), the order rotating
by one peer per round, so a busy moment hurts every peer alike. The table gives the mean images/s
over the rounds and its ratio to PyTorch's best peer in the run (eager or compiled, NCHW or
channels-last). `keras_tfdata / keras_synthetic` says whether the suite's input pipeline
(suite.data.pipeline.train_dataset on the MNIST files) keeps up with in-memory data (the bar:
within 5%). Results go to bench/results/.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
from absl import flags

from bench import RESULTS, SHARED, SHARED_DATA, cli, interleaved, machine

BATCH_SIZE = 100
NUM_PARAMETERS = 123_552  # the book's DeepConvNet; every peer must match it
PIPELINE_BAR = 0.95  # keras_tfdata must reach 95% of keras_synthetic
PEERS = {
    "keras_synthetic": "Keras fit, in-memory random batches (tf.data cache+repeat)",
    "keras_tfdata": "Keras fit, MNIST via suite.data.pipeline.train_dataset (per-image shuffle)",
    "torch": "PyTorch eager, NCHW",
    "torch_channels_last": "PyTorch eager, channels_last",
    "torch_compile": "torch.compile (default mode), NCHW",
    "torch_compile_channels_last": "torch.compile (default mode), channels_last",
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


class KerasPeer(interleaved.FitPeer):
    def __init__(self, dataset):
        import keras

        from suite.models.deep_convnet import build_deep_convnet

        keras.utils.set_random_seed(0)
        self.model = build_deep_convnet()
        assert self.model.count_params() == NUM_PARAMETERS, (
            f"Keras DeepConvNet has {self.model.count_params():,} parameters")
        # jit_compile off: XLA is ~2x slower on this CPU (FINDINGS.md); no metrics, as in the
        # other peers.
        self.model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(),
                           jit_compile=False)
        self.dataset = dataset


# --- PyTorch ---------------------------------------------------------------------------------------
def torch_peer(name: str):
    from bench.training_throughput import Network, TorchPeer

    return TorchPeer(Network("deep_convnet"), **interleaved.torch_options(name))


class NumpyPeer(interleaved.StepPeer):
    """The book's DeepConvNet and Adam, one `gradient` + `update` a step."""

    def __init__(self, reference_dir: str, dtype):
        self.net, self.optimizer, self.dtype, self.common = _book_network(reference_dir, dtype)
        images, labels = synthetic_batches(channels_first=True)
        # The book feeds pixels / 255 (load_mnist(normalize=True)), in its own dtype.
        self.batches = [((x / 255.0).astype(dtype), t) for x, t in zip(images, labels)]
        self.grad_dtypes, self.i = set(), 0

    def step(self):
        x, t = self.batches[self.i % len(self.batches)]
        self.i += 1
        self.common.util.np = Float32Scratch() if self.dtype == np.float32 else np
        try:
            grads = self.net.gradient(x, t)
        finally:
            self.common.util.np = np
        self.grad_dtypes.update(g.dtype for g in grads.values())
        assert self.grad_dtypes == {np.dtype(self.dtype)}, (
            f"the {np.dtype(self.dtype)} numpy peer computed in {self.grad_dtypes}")
        self.optimizer.update(self.net.params, grads)


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


class Float32Scratch:
    """numpy as common.util sees it, but np.zeros defaults to float32: im2col/col2im allocate
    their scratch arrays with the default dtype, which would silently compute in float64."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def zeros(shape, dtype=np.float32):
        return np.zeros(shape, dtype)


def _book_network(reference_dir: str, dtype):
    """(the book's DeepConvNet in `dtype`, its Adam, dtype, the checkout's `common` package)."""
    ref = Path(reference_dir)
    if not (ref / "ch08/deep_convnet.py").exists():
        raise FileNotFoundError(f"{ref}/ch08/deep_convnet.py not found: pass --reference_dir=<book checkout> "
                                "or leave numpy,numpy_f32 out of --peers.")
    # The checkout's `common` package first: ch08's module imports `common.*` by that name.
    common = _load_by_path("common", ref / "common" / "__init__.py", package=True)
    import common.util  # noqa: F401 - loaded for its `np`, swapped per step
    from common.optimizer import Adam

    DeepConvNet = _load_by_path("deep_convnet", ref / "ch08" / "deep_convnet.py").DeepConvNet
    np.random.seed(0)
    net = DeepConvNet()
    assert sum(v.size for v in net.params.values()) == NUM_PARAMETERS, "the book's DeepConvNet changed size"
    if dtype != np.float64:
        # The layers hold references to the parameter arrays (Adam updates them in place): rebind them,
        # in the book's W1..W8 order, to the cast copies.
        net.params = {k: v.astype(dtype) for k, v in net.params.items()}
        for i, layer in enumerate(layer for layer in net.layers if hasattr(layer, "W")):
            layer.W, layer.b = net.params[f"W{i + 1}"], net.params[f"b{i + 1}"]
    return net, Adam(lr=1e-3), dtype, common


# --- Report ----------------------------------------------------------------------------------------
def versions() -> dict:
    """What the machine record adds to interleaved.start's: the packages, the threads and the
    load under the names this bench's results have always used."""
    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {"cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
            **{p: version(p) for p in ("numpy", "tensorflow", "keras", "torch")},
            **{var: os.environ[var] for var in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if var in os.environ}}


def best_torch(results: dict) -> str | None:
    """PyTorch's fastest peer in the run (mean images/s), the ratios' reference."""
    measured = {k: r["mean_images_per_s"] for k, r in results.items()
                if k.startswith("torch") and r.get("mean_images_per_s")}
    return max(measured, key=measured.get) if measured else None


def pipeline_ratio(results: dict) -> float | None:
    real, synthetic = results.get("keras_tfdata"), results.get("keras_synthetic")
    if not (real and synthetic and real.get("mean_images_per_s")
            and synthetic.get("mean_images_per_s")):
        return None
    return real["mean_images_per_s"] / synthetic["mean_images_per_s"]


def write_report(results: dict, info: dict, command: str, repeats: int, warning: str = "") -> str:
    lines = [f"# DeepConvNet training throughput (batch {BATCH_SIZE}, Adam 1e-3)", "", f"`{command}`", "",
             *([warning, ""] if warning else []), *interleaved.table(results, repeats)]
    ratio = pipeline_ratio(results)
    if ratio is not None:
        verdict = "PASS" if ratio >= PIPELINE_BAR else "FAIL"
        lines += ["", f"Input pipeline: keras_tfdata / keras_synthetic = {ratio:.3f} in images/s "
                      f"({verdict}, bar {PIPELINE_BAR:.2f})"]
    lines += ["", interleaved.footer(info)]
    return "\n".join(lines) + "\n"


def main(args):
    peers = [ALIASES.get(n, n) for n in args.peers]
    uses_torch = any(p.startswith("torch") for p in peers)
    info, warning = interleaved.start(os.cpu_count() if uses_torch else None)
    info.update(versions(), load_average_1min_at_start=info["load_1min"])

    def build(name):
        if name == "keras_synthetic":
            return KerasPeer(keras_synthetic_dataset())
        if name == "keras_tfdata":
            return KerasPeer(keras_mnist_dataset(args.data_dir))
        if name.startswith("numpy"):
            return NumpyPeer(args.reference_dir, np.float32 if name == "numpy_f32" else np.float64)
        return torch_peer(name)

    steps = {name: args.numpy_steps if name.startswith("numpy") else args.steps for name in peers}
    warmups = {name: 1 if name.startswith("numpy") else args.warmup_steps for name in peers}
    results, orders = interleaved.measure(build, peers, PEERS, steps, warmups, args.repeats,
                                          BATCH_SIZE)
    interleaved.finish(info)
    info["load_average_1min_at_end"] = info["load_1min_at_end"]
    command = machine.command(__file__)
    report = write_report(results, info, command, args.repeats, warning)
    print("\n" + report)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput_mnist.md").write_text(report)
    (out / "throughput_mnist.json").write_text(json.dumps(
        {"command": command, "batch_size": BATCH_SIZE, "warning": warning or None, "machine": info,
         "date": info["date"], "commit": info["commit"], "wall_s": info["wall_s"],
         "steps": steps, "repeats": args.repeats,
         "round_orders": orders, "best_torch": best_torch(results),
         "pipeline_ratio": pipeline_ratio(results), "results": results}, indent=2) + "\n")
    print(f"wrote {out / 'throughput_mnist.md'} and {out / 'throughput_mnist.json'}")


if __name__ == "__main__":
    cli.run(main, define_flags)
