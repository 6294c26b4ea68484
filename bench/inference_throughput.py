"""DeepConvNet (MNIST) inference: the suite's exported SavedModel and Keras against the same
network in PyTorch (eager and torch.compile), at batch 1 (latency) and large batches (throughput).

    python -m bench.inference_throughput [--batch_sizes=1,256,1000] [--calls=200] [--repeats=5]

  saved_model         the suite's export (suite.export.classifier, as apps.train_mnist
                      writes it), loaded with tf.saved_model.load, its serving_default signature
  keras_call          the Keras model in a tf.function (suite.export.quantize.keras_predict_fn)
  keras_predict       keras.Model.predict(batch, batch_size=len(batch))
  tflite              the same SavedModel converted to TFLite float32 (suite.export.quantize, as
                      apps.precision_report writes it), run by suite.export.quantize's
                      TFLiteClassifier (the interpreter with XNNPACK, all cores)
  tflite_dynamic_range
                      the same with int8 weights and activations quantised on the fly
  tflite_int8         the same fully in int8 (int8 in and out), calibrated on 256 images of the
                      bench's own kind (its timed call includes quantising the float input)
  torch               PyTorch eager, NCHW, under torch.inference_mode
  torch_channels_last the same, channels_last
  torch_compile       torch.compile (default mode) of the NCHW model, inference_mode
  torch_compile_channels_last
                      the same of the channels_last model
  torch_compile_frozen
                      torch.compile with Inductor's freezing (the weights folded in as
                      constants: inference only), channels_last, under no_grad
  torch_int8          PyTorch's static int8 (FX graph mode, x86 backend), calibrated like
                      tflite_int8: the int8 peer of both TFLite int8 variants
  keras_bfloat16, torch_bfloat16, torch_compile_bfloat16
                      the Keras call under mixed_bfloat16 and PyTorch channels_last (eager,
                      compiled) under torch.autocast(bfloat16) (on request: pays only with
                      AVX512_BF16 or AMX)

Every peer returns softmax probabilities for raw pixels 0..255 (the book's network in inference
mode: its dropout scales by 0.5). Each round times `--calls` calls per peer at batch 1 and at
least `--min_calls` at larger ones, in an order rotating by round; the report gives the median
over rounds of each round's mean latency and the images/s it means, and per precision and batch
size the ratio of the best suite peer to PyTorch's best peer of that precision in the run. It
also gives
each peer's arithmetic rate as a share of this CPU's matrix-multiply peak, measured before and
after the rounds (bench/roofline.py), and so the largest ratio any peer could reach over
PyTorch's peer of its precision. Results go to bench/results/inference_throughput.{md,json}.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np
from absl import flags

from bench import RESULTS, cli, interleaved, machine, roofline

PEERS = {
    "saved_model": "the suite's SavedModel export, serving_default",
    "keras_call": "Keras model in a tf.function",
    "keras_predict": "keras.Model.predict",
    "tflite": "the SavedModel as TFLite float32 (XNNPACK)",
    "tflite_dynamic_range": "the SavedModel as TFLite, int8 weights (dynamic range)",
    "torch": "PyTorch eager, NCHW, inference_mode",
    "torch_channels_last": "PyTorch eager, channels_last, inference_mode",
    "torch_compile": "torch.compile (default mode), NCHW, inference_mode",
    "torch_compile_channels_last": "torch.compile (default mode), channels_last, inference_mode",
    "torch_compile_frozen": "torch.compile with freezing (weights as constants), "
                            "channels_last, no_grad",
    "tflite_int8": "the SavedModel as TFLite, full int8 (int8 in and out)",
    "torch_int8": "PyTorch static int8 (FX, x86 backend), inference_mode",
    "keras_bfloat16": "Keras model in a tf.function, mixed_bfloat16",
    "torch_bfloat16": "PyTorch eager, channels_last, autocast bfloat16",
    "torch_compile_bfloat16": "torch.compile, channels_last, autocast bfloat16",
}
DEFAULT_PEERS = [p for p in PEERS if "bfloat16" not in p]
# Who is compared with whom, by arithmetic: the suite's best peer of each precision against
# PyTorch's best peer of the same precision in the same run, at each batch size.
SUITE_PEERS = {"float32": ("saved_model", "keras_call", "keras_predict", "tflite"),
               "bfloat16": ("keras_bfloat16",),
               "int8": ("tflite_dynamic_range", "tflite_int8")}
TORCH_PEERS = {"float32": ("torch", "torch_channels_last", "torch_compile",
                           "torch_compile_channels_last", "torch_compile_frozen"),
               "bfloat16": ("torch_bfloat16", "torch_compile_bfloat16"),
               "int8": ("torch_int8",)}
CALIBRATION_IMAGES = 256


def arithmetic_precision(peer: str) -> str:
    return "int8" if "int8" in peer or "dynamic_range" in peer else (
        "bfloat16" if peer.endswith("bfloat16") else "float32")


def calibration_images() -> np.ndarray:
    """What both int8 peers calibrate their activation ranges on: images like the timed ones."""
    rng = np.random.default_rng(2)
    return rng.uniform(0, 255, (CALIBRATION_IMAGES, 28, 28, 1)).astype(np.float32)


def saved_model_path(export_dir: str, model) -> str:
    """The suite's export of `model` under `export_dir`, written once for every peer."""
    from suite.export.classifier import classifier_signatures
    from suite.export.saved_model import write_saved_model

    path = os.path.join(export_dir, "mnist", "1")
    if not os.path.isdir(path):
        path = write_saved_model(export_dir, "mnist", classifier_signatures(model), {}, 1)
    return path


def build_peers(names, model, export_dir: str) -> dict:
    import keras
    import tensorflow as tf

    from bench.torch_deep_convnet import TorchClassifier, keras_weights_into_torch, torch_int8
    from bench.torch_deep_convnet import build_model as build_torch
    from suite.export.quantize import keras_predict_fn
    from suite.models.deep_convnet import build_deep_convnet

    peers = {}
    for name in names:
        if name == "saved_model":
            path = saved_model_path(export_dir, model)
            serve = tf.saved_model.load(path).signatures["serving_default"]
            peers[name] = lambda x, serve=serve: serve(image=tf.constant(x))["probabilities"].numpy()
        elif name.startswith("tflite"):
            from suite.export.quantize import TFLiteClassifier, convert_to_tflite

            path = saved_model_path(export_dir, model)
            mode = {"tflite": "float32", "tflite_dynamic_range": "dynamic_range",
                    "tflite_int8": "int8"}[name]
            classifier = TFLiteClassifier(convert_to_tflite(
                path, mode, calibration_images() if mode == "int8" else None,
                calibration_steps=CALIBRATION_IMAGES), os.cpu_count())
            peers[name] = lambda x, c=classifier: c.run(c.quantize_input(x))
        elif name == "keras_call":
            peers[name] = keras_predict_fn(model)
        elif name == "keras_predict":
            peers[name] = lambda x: model.predict(x, batch_size=len(x), verbose=0)
        elif name == "keras_bfloat16":
            keras.mixed_precision.set_global_policy("mixed_bfloat16")
            try:
                twin = build_deep_convnet()
            finally:
                keras.mixed_precision.set_global_policy("float32")
            twin.set_weights(model.get_weights())
            peers[name] = keras_predict_fn(twin)
        else:
            net = build_torch()
            keras_weights_into_torch(model, net)
            if name == "torch_int8":
                peers[name] = TorchClassifier(torch_int8(net.eval(), calibration_images()))
            else:
                peers[name] = TorchClassifier(net, **interleaved.torch_options(name))
    return peers


def check_agreement(peers: dict, images: np.ndarray) -> dict:
    """Largest probability difference of each peer from saved_model (or the first peer)."""
    reference_name = "saved_model" if "saved_model" in peers else next(iter(peers))
    reference = peers[reference_name](images)
    return {n: float(np.abs(fn(images) - reference).max()) for n, fn in peers.items()}


def calls_per_round(batch: int, batch_sizes, calls: int, min_calls: int) -> int:
    """Calls timed per round at `batch`: `calls` at batch 1; at larger batches as many as show
    `calls` x the smallest batch's images, but never fewer than `min_calls` (one call of 1,000
    images is over in milliseconds: a median of single calls is a median of noise)."""
    if batch == 1:
        return calls
    return max(min_calls, calls * min(batch_sizes) // batch)


def measure(peers: dict, batch_sizes, calls: int, repeats: int, warmup: int,
            min_calls: int = 10) -> dict:
    rng = np.random.default_rng(0)
    batches = {b: rng.uniform(0, 255, (b, 28, 28, 1)).astype(np.float32) for b in batch_sizes}
    results = {n: {str(b): [] for b in batch_sizes} for n in peers}
    for name, fn in peers.items():  # tracing, compilation, allocator
        for b in batch_sizes:
            for _ in range(warmup):
                fn(batches[b])
    names = list(peers)
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            for b in batch_sizes:
                n = calls_per_round(b, batch_sizes, calls, min_calls)
                start = time.perf_counter()
                for _ in range(n):
                    peers[name](batches[b])
                results[name][str(b)].append((time.perf_counter() - start) / n * 1e3)
        print(f"round {r}: " + ", ".join(f"{n} {results[n][str(batch_sizes[0])][-1]:.3f} ms"
                                         for n in names), flush=True)
    return {n: {b: {"ms_per_call": [round(v, 4) for v in times],
                    "median_ms": round(statistics.median(times), 4),
                    "images_per_s": round(int(b) / statistics.median(times) * 1e3, 1)}
                for b, times in per_batch.items()}
            for n, per_batch in results.items()}


def add_rates(results: dict, gflop_per_image: float, peaks: dict) -> None:
    """Each result's GFLOP/s and its percent of the GEMM peak of its precision."""
    for name, per_batch in results.items():
        for r in per_batch.values():
            r["gflops"] = round(r["images_per_s"] * gflop_per_image, 1)
            r["percent_of_peak"] = roofline.share(r["gflops"],
                                                  peaks.get(arithmetic_precision(name)))


def summary(results: dict, batch_sizes, peaks: dict) -> dict:
    """Per precision and batch size: the best suite peer / PyTorch's peer of that precision
    (latency ratio: >1 is faster), and the ceiling: the GEMM peak / PyTorch's rate, the most
    any peer of that precision could be ahead of it."""
    out = {}
    for precision, torch_names in TORCH_PEERS.items():
        suite_names = [n for n in SUITE_PEERS[precision] if n in results]
        torch_names = [n for n in torch_names if n in results]
        if not torch_names or not suite_names:
            continue
        for b in map(str, batch_sizes):
            torch_peer = min(torch_names, key=lambda n: results[n][b]["median_ms"])
            theirs = results[torch_peer][b]
            best = min(suite_names, key=lambda n: results[n][b]["median_ms"])
            row = {"best_suite_peer": best, "torch_peer": torch_peer,
                   "ratio": round(theirs["median_ms"] / results[best][b]["median_ms"], 3)}
            if precision == "float32" and "saved_model" in results:
                row["saved_model_ratio"] = round(
                    theirs["median_ms"] / results["saved_model"][b]["median_ms"], 3)
            if precision in peaks:
                row["ceiling"] = round(peaks[precision]["gflops"] / theirs["gflops"], 3)
            out.setdefault(precision, {})[b] = row
    return out


def markdown(results, ratios, agreement, info, batch_sizes, command, warning, peaks,
             gflop_per_image) -> str:
    head = " | ".join(f"batch {b}: ms / images/s" for b in batch_sizes)
    lines = [f"# DeepConvNet inference ({machine.label(info)}, load {info['load_1min']})", "",
             f"`{command}`", "", *([warning, ""] if warning else []),
             f"| peer | what | {head} | max prob. difference |",
             "|---|---|" + "---:|" * len(batch_sizes) + "---:|"]
    for name, per_batch in results.items():
        cells = " | ".join(f"{per_batch[str(b)]['median_ms']:.3f} / "
                           f"{per_batch[str(b)]['images_per_s']:,.0f}" for b in batch_sizes)
        lines.append(f"| {name} | {PEERS[name]} | {cells} | {agreement[name]:.1e} |")
    lines.append("")
    for precision, per_batch in ratios.items():
        for b, r in per_batch.items():
            lines.append(f"- {precision}, batch {b}: best suite peer {r['best_suite_peer']} is **"
                         f"{r['ratio']:.2f}x** {r['torch_peer']}"
                         + (f" (SavedModel {r['saved_model_ratio']:.2f}x)"
                            if "saved_model_ratio" in r else "")
                         # At batch 1 a call's fixed cost, not arithmetic, sets latency.
                         + (f"; ceiling {r['ceiling']:.2f}x (the {precision} GEMM peak over "
                            f"{r['torch_peer']}'s rate)" if "ceiling" in r and b != "1" else ""))
    if peaks:
        lines += ["", f"**Share of this CPU's GEMM peak** ({gflop_per_image * 1e3:.1f} MFLOP per "
                  "image; peaks, best of TensorFlow and PyTorch, before and after the rounds: "
                  + ", ".join(f"{d} {p['gflops']:,.0f} GFLOP/s" for d, p in peaks.items())
                  + "; no int8 peak is measured):", "",
                  "| peer | " + " | ".join(f"batch {b}" for b in batch_sizes) + " |",
                  "|---|" + "---:|" * len(batch_sizes)]
        for name, per_batch in results.items():
            cells = [per_batch[str(b)] for b in batch_sizes]
            lines.append(f"| {name} | " + " | ".join(
                f"{c['gflops']:,.0f} GFLOP/s ({c['percent_of_peak']:.0f}%)"
                if c["percent_of_peak"] is not None else f"{c['gflops']:,.0f} GFLOP/s"
                for c in cells) + " |")
    return "\n".join(lines + ["", interleaved.footer(info)]) + "\n"


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("batch_sizes", "1,256,1000", "comma-separated batch sizes",
                        flag_values=fv)
    flags.DEFINE_integer("calls", 200, "calls per round at the smallest batch (fewer at larger "
                         "ones: same images)", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("min_calls", 10, "at least this many calls per round at every batch "
                         "size above 1", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("repeats", 5, "interleaved rounds", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("warmup", 5, "untimed calls per peer and batch first", lower_bound=1,
                         flag_values=fv)
    interleaved.add_threads_flag(fv)
    roofline.add_flag(fv)
    flags.DEFINE_string("peers", ",".join(DEFAULT_PEERS), f"comma-separated, from "
                        f"{','.join(PEERS)}", flag_values=fv)
    flags.DEFINE_string("out", os.path.join(RESULTS, "inference_throughput"),
                        "path prefix of the .md and .json results", flag_values=fv)


def main(args):
    names = cli.peer_names(args.peers, PEERS)
    try:
        batch_sizes = sorted({int(b) for b in args.batch_sizes.split(",") if b})
    except ValueError:
        cli.usage_error(f"--batch_sizes must be comma-separated integers, got "
                        f"{args.batch_sizes!r}")
    if not batch_sizes or min(batch_sizes) < 1:
        cli.usage_error("--batch_sizes must be >= 1")
    info, warning = interleaved.start(args.torch_threads)
    import keras

    from suite.models.deep_convnet import build_deep_convnet

    keras.utils.set_random_seed(0)
    model = build_deep_convnet()

    def build_and_measure():
        with tempfile.TemporaryDirectory() as export_dir:
            peers = build_peers(names, model, export_dir)
            images = np.random.default_rng(1).uniform(0, 255, (64, 28, 28, 1)).astype(np.float32)
            return (check_agreement(peers, images),
                    measure(peers, batch_sizes, args.calls, args.repeats, args.warmup,
                            args.min_calls))

    (agreement, results), peaks, peaks_before = roofline.around(build_and_measure, args.no_peak)
    gflop_per_image = roofline.gflops_per_image(model)
    add_rates(results, gflop_per_image, peaks)
    interleaved.finish(info)
    ratios = summary(results, batch_sizes, peaks)
    command = machine.command(__file__)
    interleaved.write(args.out, markdown(results, ratios, agreement, info, batch_sizes, command,
                                         warning, peaks, gflop_per_image),
                      {"command": command, "warning": warning or None, "machine": info,
                       "batch_sizes": batch_sizes, "results": results, "ratios": ratios,
                       "max_probability_difference": agreement, "gemm_peaks": peaks,
                       "gemm_peaks_before": peaks_before,
                       "gflop_per_image": round(gflop_per_image, 6)})


if __name__ == "__main__":
    cli.run(main, define_flags)
