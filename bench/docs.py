r"""Renders every measured table of README.md, docs/*.md and bench/*.md from its results files.

    python -m bench.docs              # rewrites each table between its markers
    python -m bench.docs --check      # rewrites nothing; exit 1 naming each table that differs

A page marks where a table goes; everything between the two markers is rendered:

    <!-- table:mnist_protocol -->
    | recipe | ... |
    ...
    From `bench/results/protocol/mnist_book/record.json`. Not recorded: ...
    <!-- /table -->

TABLES maps each name to a small function that reads its files under bench/results/ and
returns a Table: a header, rows of text, notes, and the files it read. Under every table the
renderer names those files, says what a reader needs that they do not record (the command,
the machine, the load at the start and the end, the date, the commit, the wall time), and
repeats any warning a bench wrote into them (a busy machine). A number the files do not hold
has no place in a table. No TensorFlow or PyTorch: the files are JSON and CSV.

To add a table: write its function under @table("<name>") (a preset re-measured by
`python -m bench.preset_run` needs only `protocol_table({"<record>": "<label>"})`), put the two
markers where it goes, and run `python -m bench.docs`. Every page under docs/ and bench/ is
read, new ones too; a marker naming no table is an error. The tests run the check (tests/test_bench_docs.py).
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import glob
import json
import os
import re
import statistics
import sys

from absl import flags

from bench import REPO, RESULTS, cli

MARKED = re.compile(r"(<!-- table:([\w-]+) -->\n)(.*?)(<!-- /table -->)", re.S)


@dataclasses.dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    sources: list[str]  # paths under bench/results/
    notes: list[str] = dataclasses.field(default_factory=list)


TABLES = {}


def table(name):
    def register(function):
        TABLES[name] = function
        return function
    return register


# ---------------------------------------------------------------- reading and formatting

def load(path: str):
    with open(os.path.join(RESULTS, path)) as f:
        return json.load(f)


def rows_of(path: str) -> list[dict]:
    with open(os.path.join(RESULTS, path), newline="") as f:
        return list(csv.DictReader(f))


def pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}%"


def num(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def times(x: float) -> str:
    return f"{x:.2f}x"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def mean_std(values: list[float], scale: float = 100, digits: int = 2) -> str:
    """'99.41 ± 0.08': the mean and the sample standard deviation (n - 1), times `scale`."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * spread:.{digits}f}"


def machine_text(m: dict) -> str:
    """'AMD EPYC (family 25, model 17), 2 cores, AVX-512 + BF16, oneDNN on'."""
    isa = m.get("isa") or []
    kind = ("AVX-512 + BF16" if "avx512_bf16" in isa else "AVX-512" if "avx512f" in isa
            else "AVX2" if "avx2" in isa else "ISA not recorded")
    caps = [f"{k}={m[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY") if m.get(k)]
    if caps:
        kind += f" capped to AVX2 ({' '.join(caps)})"
    onednn = m.get("onednn")
    if onednn is None and m.get("TF_ENABLE_ONEDNN_OPTS") == "1":
        onednn = True
    state = {True: "oneDNN on", False: "oneDNN off", None: "oneDNN not recorded"}[onednn]
    return f"{m['cpu']}, {m['cores']} cores, {kind}, {state}"


def load_text(start, end) -> str:
    return f"load {start} at the start, {end if end is not None else 'not recorded'} at the end"


def command(text: str) -> str:
    """A recorded command as it runs today: the benches were scripts, run by their path
    (bench/x.py), before they became a package (`python -m bench.x`), with the same flags."""
    return re.sub(r"python\s+bench/(\w+)\.py", r"python -m bench.\1", text)


def date_of(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime("%Y-%m-%d")


# ---------------------------------------------------------------- what a file records

def _keys(value, found: set) -> set:
    if isinstance(value, dict):
        for key, inner in value.items():
            if inner is not None:
                found.add(key)
            _keys(inner, found)
    elif isinstance(value, list):
        for inner in value[:50]:
            _keys(inner, found)
    return found


FIELDS = {  # what a reader needs -> the keys that record it, in any file of the suite
    "command": {"command"},
    "machine": {"cpu"},
    "load at the start": {"load_1min", "load_average_1min_at_start", "load_avg_before"},
    "load at the end": {"load_1min_at_end", "load_average_1min_at_end", "load_avg_after"},
    "date": {"date", "start_unix"},
    "commit": {"commit"},
    "wall time": {"wall_seconds", "seconds", "command_seconds", "wall_s"},
}


def expand(source: str) -> list[str]:
    """A source is a path under bench/results/ or a glob pattern of several."""
    found = sorted(glob.glob(os.path.join(RESULTS, source)))
    if not found:
        raise FileNotFoundError(f"bench/results/{source}")
    return [os.path.relpath(f, RESULTS) for f in found]


def missing(source: str) -> list[str]:
    """What a reader needs that the file (any of the files of a pattern) does not record."""
    lacking = set()
    for path in expand(source):
        if path.endswith(".json"):
            found = _keys(load(path), set())
            lacking |= {what for what, keys in FIELDS.items() if not keys & found}
    return [what for what in FIELDS if what in lacking]


def warnings(source: str) -> list[str]:
    said = []
    for path in expand(source):
        data = load(path) if path.endswith(".json") else None
        if isinstance(data, dict) and data.get("warning") and data["warning"] not in said:
            said.append(data["warning"])
    return said


def provenance(sources: list[str]) -> list[str]:
    """The lines under a table: its files, what they do not record, their warnings."""
    lines = ["From " + ", ".join(f"`bench/results/{s}`" for s in sources) + "."]
    gaps = {}
    for source in sources:
        if lacks := missing(source):
            gaps.setdefault(tuple(lacks), []).append(source)
    for lacks, where in gaps.items():
        which = "" if len(where) == len(sources) else " (" + ", ".join(
            f"`{w}`" for w in where) + ")"
        lines.append(f"Not recorded{which}: {', '.join(lacks)}.")
    for source in sources:
        lines += [f"The bench warned (`{source}`): {w}" for w in warnings(source)]
    return lines


def render(name: str) -> str:
    t = TABLES[name]()
    lines = ["| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
    lines += ["| " + " | ".join(row) + " |" for row in t.rows]
    lines += ["", *t.notes, *provenance(t.sources)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- held-out protocol records

def protocol_table(records: dict[str, str], metric: str = "test_accuracy",
                   metric_name: str = "test accuracy", fmt=pct) -> Table:
    """Records of `python -m bench.preset_run` (bench/results/protocol/<name>/record.json, one
    per preset, labelled): a row per seed, the mean and standard deviation of `metric` when a
    record has several seeds, and under the table each record's command and machine."""
    rows, notes = [], []
    for name, label in records.items():
        record = load(f"protocol/{name}/record.json")
        for run in record["runs"]:
            res, m = run["results"], run["machine"]
            chosen = res.get("selection") or {}
            picked = (f"{chosen.get('epoch', '-')} of {res.get('epochs', '-')} "
                      f"({fmt(chosen['value'])})" if "value" in chosen else "-")
            rows.append([label, str(run["seed"]), picked, f"**{fmt(res[metric])}**",
                         minutes(run["wall_seconds"]),
                         f"{m['load_1min']} / {run.get('load_1min_at_end', '-')}",
                         run["date"][:10], f"`{run['commit']}`"])
        if len(record["runs"]) > 1:
            values = [r["results"][metric] for r in record["runs"]]
            spread = (mean_std(values) + "%" if fmt is pct
                      else mean_std(values, scale=1, digits=4))
            rows.append([label, "mean ± std", "", spread, "", "", "", ""])
        first = record["runs"][0]
        notes.append(f"`{name}`: `python {first['command']}`"
                     + (" (each seed its own `--seed` and folder)" if len(record["runs"]) > 1
                        else "") + f" on {machine_text(first['machine'])}.")
    header = ["recipe", "seed", "epoch the validation data chose (its score)", metric_name,
              "wall time", "load start / end", "date", "commit"]
    return Table(header, rows, [f"protocol/{n}/record.json" for n in records], notes)


# ---------------------------------------------------------------- MNIST (docs/mnist.md)

@table("mnist_protocol")
def mnist_protocol() -> Table:
    return protocol_table({"mnist_book": "book recipe, 20 epochs (`mnist.flags`)",
                           "mnist_fast": "time to accuracy (`mnist_fast.flags`, bfloat16)"})


@table("mnist_seeds")
def mnist_seeds() -> Table:
    recipes = [("mnist", "book recipe, 20 epochs, the book's dropout", "mnist_summary.json"),
               ("mnist_inverted_dropout", "same, Keras's inverted dropout (`--dropout=inverted`)",
                None),
               ("mnist_augment", "augmentation + cosine decay, 40 epochs (`mnist_augment.flags`,"
                " inverted dropout, augmentation on the host)", "mnist_augment_summary.json")]
    rows, sources = [], []
    for prefix, label, summary in recipes:
        runs = [load(f) for f in expand(f"mnist_accuracy/{prefix}-seed*.json")]
        accuracies = [r["test_accuracy"] for r in runs]
        ensemble = "-"
        if summary:
            ensemble = pct(load(f"mnist_accuracy/{summary}")[prefix]["ensemble_accuracy"])
            sources.append(f"mnist_accuracy/{summary}")
        rows.append([label, ", ".join(str(r["seed"]) for r in runs),
                     ", ".join(f"{100 * a:.2f}" for a in accuracies),
                     f"**{mean_std(accuracies)}**", ensemble, runs[0]["backend"]])
        sources.append(f"mnist_accuracy/{prefix}-seed*.json")
    return Table(["recipe", "seeds", "test accuracy per seed (%)", "mean ± std (%)",
                  "ensemble of the seeds", "Keras backend"], rows, sources,
                 ["± is the sample standard deviation over seeds. The files give each run's "
                  "`train_seconds` (training alone) but no device."])


# ---------------------------------------------------------------- speed (docs/performance.md)

def short_ms(ms: float) -> str:
    digits = 3 if ms < 1 else 2 if ms < 10 else 1 if ms < 100 else 0
    return f"{ms:.{digits}f} ms"


def loads(data: dict) -> str:
    m = data["machine"]
    return load_text(m.get("load_1min"), m.get("load_1min_at_end"))


@table("time_to_accuracy")
def time_to_accuracy() -> Table:
    rows, notes = [], []
    for name in ("mnist_fast", "mnist_fast_float32"):
        data = load(f"time_to_accuracy_{name}.json")
        runs = data["runs"]
        rows.append([machine_text(data["machine"]), f"`{name}.flags`", runs[0]["precision"],
                     ", ".join(pct(r["test_accuracy"]) for r in runs),
                     f"**{pct(data['mean_test_accuracy'])}**",
                     ", ".join(f"{r['seconds']:.0f}" for r in runs)
                     + f" s (**{minutes(data['mean_seconds'])}**)", loads(data)])
        notes.append(f"`{name}`: `{command(data['command'])}`.")
    return Table(["CPU", "preset", "precision", "test accuracy, seeds 0, 1, 2", "mean",
                  "whole command per run (mean)", "load"], rows,
                 [f"time_to_accuracy_{n}.json" for n in ("mnist_fast", "mnist_fast_float32")],
                 notes)


PEERS = {  # training_throughput's peers, as the tables name them
    "keras": "Keras float32 (the suite's fused batch norm)",
    "keras_bfloat16": "Keras mixed_bfloat16",
    "keras_unfused_bn": "Keras float32, Keras's own batch norm",
    "keras_unfused_bn_bfloat16": "Keras mixed_bfloat16, Keras's own batch norm",
    "torch": "PyTorch eager, NCHW",
    "torch_channels_last": "PyTorch eager, channels-last",
    "torch_compile": "torch.compile",
    "torch_compile_channels_last": "torch.compile, channels-last",
    "torch_bfloat16": "PyTorch autocast bfloat16 (channels-last)",
    "torch_compile_bfloat16": "torch.compile, autocast bfloat16 (channels-last)",
}
NETWORKS = {"deep_convnet": "DeepConvNet", "resnet20": "ResNet-20"}


def rate(peer: dict | None) -> str:
    if not peer or peer.get("error"):
        return "-"
    share = f" ({peer['percent_of_peak']:.0f}%)" if peer.get("percent_of_peak") else ""
    return f"{num(peer['mean_images_per_s'])} ± {num(peer['std_images_per_s'])}{share}"


def peaks(data: dict) -> str:
    after, before = data["gemm_peaks"], data["gemm_peaks_before"]
    return ", ".join(f"{p} {before[p]['gflops']:.0f} before and {after[p]['gflops']:.0f} after"
                     for p in ("float32", "bfloat16"))


@table("training_throughput")
def training_throughput() -> Table:
    files = {n: load(f"training_throughput_{n}.json") for n in NETWORKS}
    rows = [[label] + [rate(files[n]["results"].get(peer)) for n in NETWORKS]
            for peer, label in PEERS.items()
            if any(peer in files[n]["results"] for n in NETWORKS)]
    for key, ceiling, label in (
            ("keras_vs_best_torch_float32", "float32_ceiling_vs_best_torch",
             "Keras float32 / best PyTorch float32 (ceiling)"),
            ("keras_bfloat16_vs_torch_bfloat16", "bfloat16_ceiling_vs_best_torch",
             "Keras bfloat16 / best PyTorch bfloat16 (ceiling)"),
            ("fused_bn_vs_keras_bn_float32", None, "fused / Keras's own batch norm, float32"),
            ("fused_bn_vs_keras_bn_bfloat16", None, "fused / Keras's own batch norm, bfloat16")):
        cells = []
        for n in NETWORKS:
            value = files[n]["ratios"].get(key)
            top = files[n]["ceilings"].get(ceiling) if ceiling else None
            cells.append("-" if value is None else f"**{times(value)}**"
                         + (f" ({times(top)})" if top else ""))
        rows.append([label] + cells)
    notes = ["Images/s: mean ± standard deviation over the interleaved rounds, and in brackets "
             "the share of the CPU's matrix-multiply peak of that precision; the ceiling is that "
             "peak over PyTorch's best rate of the precision."]
    for n, data in files.items():
        notes.append(f"{NETWORKS[n]}: `{command(data['command'])}`, batch {data['batch_size']}, "
                     f"{data['gflop_per_training_image'] * 1000:.1f} MFLOP per training image; "
                     f"{machine_text(data['machine'])}, {loads(data)}; GEMM peaks (GFLOP/s) "
                     f"{peaks(data)} the rounds.")
    return Table(["images/s"] + list(NETWORKS.values()), rows,
                 [f"training_throughput_{n}.json" for n in NETWORKS], notes)


@table("training_throughput_avx2_cap")
def training_throughput_avx2_cap() -> Table:
    rows, notes, sources = [], [], []
    for n, label in NETWORKS.items():
        data = load(f"training_throughput_{n}_avx2_cap.json")
        uncapped = load(f"training_throughput_{n}.json")["results"]["keras"]
        res = data["results"]
        rows.append([label] + [rate(res.get(p)) for p in (
            "keras", "torch", "torch_channels_last", "torch_compile")]
            + [f"**{times(data['ratios']['keras_vs_best_torch_float32'])}**", rate(uncapped)])
        notes.append(f"{label}: `{command(data['command'])}`; {loads(data)}.")
        sources += [f"training_throughput_{n}_avx2_cap.json", f"training_throughput_{n}.json"]
    notes.append(f"Machine: {machine_text(data['machine'])}.")
    return Table(["float32, images/s", "Keras", "PyTorch eager, NCHW", "channels-last",
                  "torch.compile", "Keras / best PyTorch", "Keras without the cap"], rows,
                 sources, notes)


@table("resnet20_bn_avx2_cap")
def resnet20_bn_avx2_cap() -> Table:
    data = load("training_throughput_resnet20_bn_avx2_cap.json")
    rows = [[PEERS[p], ", ".join(num(x) for x in r["images_per_s"]),
             f"{num(r['mean_images_per_s'])} ± {num(r['std_images_per_s'])}"]
            for p, r in data["results"].items()]
    rows.append(["fused / Keras's own batch norm", "",
                 f"**{times(data['ratios']['fused_bn_vs_keras_bn_float32'])}**"])
    return Table(["ResNet-20, float32, AVX2 cap", "images/s per round", "mean ± std"], rows,
                 ["training_throughput_resnet20_bn_avx2_cap.json"],
                 [f"`{command(data['command'])}`; {machine_text(data['machine'])}, {loads(data)}."])


PROFILE_GROUPS = {  # row -> the op kinds of bench.profile_training it adds up
    "convolution, forward": ["convolution, forward"],
    "convolution, weight gradient": ["convolution, weight gradient"],
    "convolution, input gradient": ["convolution, input gradient"],
    "convolution, both gradients (PyTorch times them together)": ["convolution, both gradients"],
    "batch norm, forward and backward": ["batch norm, forward", "batch norm, backward"],
    "ReLU and its gradient": ["other: Relu", "other: ReluGrad", "other: aten::clamp_min",
                              "other: aten::threshold_backward"],
    "strided slices (the shortcut) and their gradient": ["other: StridedSlice",
                                                         "other: StridedSliceGrad"],
    "zero-filling (aten::fill_)": ["other: aten::fill_"],
}
PROFILES = {"profile_resnet20.json": "ResNet-20",
            "profile_resnet20_avx2_cap.json": "ResNet-20, AVX2 cap",
            "profile_deep_convnet.json": "DeepConvNet"}


@table("profile")
def profile() -> Table:
    files = {f: load(f) for f in PROFILES}
    columns = [(f, fw) for f in PROFILES for fw in ("keras", "torch")]
    rows = []
    for label, kinds in PROFILE_GROUPS.items():
        cells = []
        for f, fw in columns:
            got = files[f][fw]["kinds"]
            if not any(k in got for k in kinds):
                cells.append("-")
                continue
            ms = sum(got.get(k, 0.0) for k in kinds)
            cells.append(f"{ms:.1f} ({ms / files[f][fw]['ms_per_step']:.0%})")
        rows.append([label] + cells)
    rows.append(["**the profiled step**"]
                + [f"**{files[f][fw]['ms_per_step']:.1f}**" for f, fw in columns])
    header = ["ms per step (share)"] + [
        f"{'Keras' if fw == 'keras' else 'PyTorch'}, {PROFILES[f]}" for f, fw in columns]
    notes = ["Float32, PyTorch eager channels-last; shares of the step's wall time, which "
             "overlap where TensorFlow runs two ops side by side."]
    notes += [f"`{command(files[f]['command'])}`: {machine_text(files[f]['machine'])}, load "
              f"{files[f]['machine']['load_1min']} at the start." for f in PROFILES]
    return Table(header, rows, list(PROFILES), notes)


CONV_SCALING = {"conv_scaling_deep_convnet.json": "DeepConvNet",
                "conv_scaling_resnet20.json": "ResNet-20",
                "conv_scaling_deep_convnet_avx2_cap.json": "DeepConvNet, AVX2 cap",
                "conv_scaling_resnet20_avx2_cap.json": "ResNet-20, AVX2 cap"}


@table("conv_scaling")
def conv_scaling() -> Table:
    from bench.conv_scaling import per_step  # no TensorFlow: the module loads it when timing

    rows, notes = [], []
    for f, label in CONV_SCALING.items():
        data = load(f)
        threads = sorted({int(k.split("/")[1]) for k in data["runs"]})
        one, many = threads[0], threads[-1]
        step = {k: sum(per_step(r, data["shapes"]).values()) for k, r in data["runs"].items()}
        tf1, tfn = step[f"tensorflow/{one}"], step[f"tensorflow/{many}"]
        pt1, ptn = step[f"torch/{one}"], step[f"torch/{many}"]
        overhead = statistics.median_high(
            r["call_overhead_ms"] for r in data["runs"][f"tensorflow/{one}"])
        calls = sum(2 * s["layers"] + s["input_gradients"] for s in data["shapes"])
        rows.append([label, f"{tf1:.1f}", f"{tfn:.1f}", times(tf1 / tfn), f"{pt1:.1f}",
                     f"{ptn:.1f}", times(pt1 / ptn), f"**{times(tfn / ptn)}**",
                     f"{overhead * calls:.1f} ({calls} calls)"])
        notes.append(f"{label}: `{command(data['command'])}`, load "
                     f"{data['machine']['load_1min']} at the start.")
    first = load(next(iter(CONV_SCALING)))["machine"]
    notes.insert(0, "Milliseconds per training step, the convolutions alone (forward, input "
                 "and weight gradients, each shape timed alone and multiplied by its layers; "
                 f"medians over repeats), on {one} and {many} threads of "
                 f"{machine_text(first)}.")
    return Table(["convolutions of a step", "TensorFlow, 1 thread", f"TensorFlow, {many}",
                  "speed-up", "PyTorch, 1 thread", f"PyTorch, {many}", "speed-up",
                  f"TensorFlow / PyTorch time, {many} threads",
                  "TensorFlow's call overhead in that, 1 thread (ms)"], rows,
                 list(CONV_SCALING), notes)


INFERENCE = {
    "saved_model": "the suite's SavedModel (`serving_default`)",
    "keras_call": "Keras model in a `tf.function`",
    "keras_predict": "`keras.Model.predict`",
    "tflite": "the SavedModel as TFLite float32 (XNNPACK)",
    "torch": "PyTorch eager, NCHW",
    "torch_channels_last": "PyTorch eager, channels-last",
    "torch_compile": "torch.compile",
    "torch_compile_channels_last": "torch.compile, channels-last",
    "torch_compile_frozen": "torch.compile with freezing, channels-last",
    "keras_bfloat16": "Keras, mixed_bfloat16",
    "torch_bfloat16": "PyTorch autocast bfloat16",
    "torch_compile_bfloat16": "torch.compile, autocast bfloat16",
    "tflite_dynamic_range": "TFLite, int8 weights (dynamic range)",
    "tflite_int8": "TFLite fully int8 (calibrated)",
    "torch_int8": "PyTorch static int8 (FX, x86)",
}


@table("inference_throughput")
def inference_throughput() -> Table:
    data = load("inference_throughput.json")
    batches = [str(b) for b in data["batch_sizes"]]
    rows = []
    for peer, label in INFERENCE.items():
        if peer not in data["results"]:
            continue
        cells = [f"{short_ms(r['median_ms'])} ({num(r['images_per_s'])}/s)"
                 for r in (data["results"][peer][b] for b in batches)]
        rows.append([label] + cells + [f"{data['max_probability_difference'][peer]:.1e}"])
    return Table(["peer, median per call (images/s)"] + [f"batch {num(int(b))}" for b in batches]
                 + ["largest probability difference from the SavedModel"], rows,
                 ["inference_throughput.json"],
                 [f"DeepConvNet, {data['gflop_per_image'] * 1000:.1f} MFLOP an image. "
                  f"`{command(data['command'])}`; {machine_text(data['machine'])}, {loads(data)}; "
                  f"GEMM peaks (GFLOP/s) {peaks(data)} the rounds."])


@table("inference_ratios")
def inference_ratios() -> Table:
    data = load("inference_throughput.json")
    batches = [str(b) for b in data["batch_sizes"]]
    rows = []
    for precision, ratios in data["ratios"].items():
        cells = []
        for b in batches:
            r = ratios[b]
            ceiling = f", ceiling {times(r['ceiling'])}" if r.get("ceiling") else ""
            cells.append(f"**{times(r['ratio'])}** ({r['best_suite_peer']} / "
                         f"{r['torch_peer']}{ceiling})")
        rows.append([precision] + cells)
    return Table(["best suite peer / PyTorch's of the precision"]
                 + [f"batch {num(int(b))}" for b in batches], rows, ["inference_throughput.json"],
                 ["One run. The ceiling is the CPU's matrix-multiply peak over PyTorch's rate; "
                  "no int8 peak is measured."])


@table("throughput_mnist")
def throughput_mnist() -> Table:
    data = load("throughput_mnist.json")
    labels = {"keras_tfdata": "suite (Keras fit, real MNIST tf.data pipeline)",
              "keras_synthetic": "Keras fit on in-memory synthetic batches",
              "torch": "PyTorch eager, NCHW", "torch_channels_last": "PyTorch eager, channels-last",
              "torch_compile": "torch.compile, NCHW",
              "torch_compile_channels_last": "torch.compile, channels-last",
              "numpy": "the book's NumPy code (float64, as shipped)",
              "numpy_f32": "the book's NumPy code in float32"}
    res, best = data["results"], data["best_torch"]
    base = res[best]["mean_images_per_s"]
    rows = []
    for p, label in labels.items():
        r = res.get(p)
        if not r:
            continue
        if r.get("error"):
            rows.append([label, "failed: " + r["error"].splitlines()[0][:120], "", "", ""])
            continue
        rows.append([label, f"{num(r['mean_images_per_s'])} ± {num(r['std_images_per_s'])}",
                     f"{num(min(r['images_per_s']))}-{num(max(r['images_per_s']))}",
                     f"{r['mean_images_per_s'] / base:.2f}", f"{r['median_cpu_ms_per_step']:.1f}"])
    m = data["machine"]
    steps = data["steps"]
    return Table(["implementation, float32 (NumPy: as stated), batch 100",
                  f"images/s (mean ± std over {data['repeats']} interleaved rounds)",
                  "range over rounds", f"vs PyTorch's best ({labels[best]})", "CPU ms/step"],
                 rows, ["throughput_mnist.json"],
                 [f"Input pipeline: the real pipeline at {data['pipeline_ratio']:.3f} of in-memory "
                  f"data (bar 0.95). `{command(data['command'])}` ({steps.get('keras_synthetic')} "
                  f"steps a round, NumPy {steps.get('numpy', steps.get('numpy_f32', '-'))}) on {machine_text(m)}, "
                  f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, PyTorch {m['torch']}, load "
                  f"{m['load_average_1min_at_start']} at the start, "
                  f"{m['load_average_1min_at_end']} at the end, {data['date'][:10]}, commit "
                  f"`{data['commit']}`."])


@table("precision_training_speed")
def precision_training_speed() -> Table:
    data = load("precision_training_speed.json")
    median = {p: statistics.median(v) for p, v in data.items()}
    rows = [[p, ", ".join(num(x) for x in v), num(median[p]),
             f"{median[p] / median['float32']:.2f}"] for p, v in data.items()]
    with open(os.path.join(RESULTS, "precision_training_speed.md")) as f:
        head = f.readline().strip()
    return Table(["policy (DeepConvNet, this CPU)", "images/s per round", "median",
                  "vs float32"], rows, ["precision_training_speed.json"],
                 [f"`precision_training_speed.md` gives the command and the load: "
                  f"{command(head)}"])


@table("multiworker_overhead")
def multiworker_overhead() -> Table:
    data = load("multiworker_overhead.json")
    rows = []
    for run_number, run in enumerate(data["runs"], 1):
        single = run["single"]["fit"]["median_ms"]
        for who in [run["single"]] + run["workers"]:
            fit = who["fit"]
            name = "one process" if who["role"] == "single" else f"worker {who['index']} of 2"
            allreduce = (who.get("allreduce_ms") or {}).get("gradient_494KB_fp32")
            rows.append([str(run_number), f"{name}, {who['threads']} thread(s)",
                         f"{fit['median_ms']:.1f}", f"{fit['p10_ms']:.1f}-{fit['p90_ms']:.1f}",
                         f"{fit['cpu_ms_per_step']:.1f}",
                         times(fit["median_ms"] / single) if who["role"] != "single" else "",
                         f"{allreduce['median']:.1f}" if allreduce else ""])
    before, after = data["load_avg_before"][0], data["load_avg_after"][0]
    return Table(["repeat", "process", "ms per step (median)", "p10-p90", "CPU ms per step",
                  "vs one process", "494 KB gradient all-reduce (ms)"], rows,
                 ["multiworker_overhead.json"],
                 [f"DeepConvNet, global batch {data['global_batch']}, {data['steps']} steps "
                  f"after {data['warmup_steps']} of warm-up, two workers on 127.0.0.1; "
                  f"{data['cpu_count']} CPUs, load {before:.2f} before and {after:.2f} after."])


def _rate(bytes_s: float | None) -> str:
    if bytes_s is None:
        return "none is fast enough"
    bits = 8 * bytes_s
    return (f"{bits / 1e9:.1f} Gbit/s" if bits >= 1e9 else f"{bits / 1e6:.0f} Mbit/s"
            if bits >= 1e6 else f"{bits / 1e3:.0f} kbit/s")


NETWORK_NAMES = {"deep_convnet": "DeepConvNet", "resnet20": "ResNet-20"}


@table("cluster_scaling")
def cluster_scaling() -> Table:
    from bench.cluster_scaling import model_rows

    data = load("cluster_scaling.json")
    rows = []

    def terms(model):
        return (" + ".join(f"{model[k]:.0f}" for k in ("compute_ms", "allreduce_software_ms",
                                                      "syncs_ms", "link_ms"))
                + f" = **{model['step_ms']:.0f}**")

    for r in model_rows(data["configs"]):
        model, corrected = r.get("model"), r.get("corrected")
        rows.append([NETWORK_NAMES[r["network"]], str(r["workers"]), r["cap"],
                     f"{r['measured_step_ms']:.0f}", f"{r['compute_ms']:.0f}",
                     pct(r["allreduce_share"], 0) if model else "",
                     f"{r['bare_gradient_allreduce_ms']:.0f}" if model else "",
                     terms(model) if model else "",
                     f"{100 * r['error']:+.0f}%" if model else "",
                     (terms(corrected) + f" ({r['per_sync_ms']:.1f} ms a sync)")
                     if corrected else "",
                     ("calibration" if r["calibration"] else
                      f"{100 * r['corrected_error']:+.0f}%") if corrected else ""])
    return Table(["network", "workers", "link cap (each way)", "measured ms/step (slowest "
                  "worker, median)", "compute ms (same load, no collectives)",
                  "communication share", "bare gradient all-reduce ms",
                  "model as written: compute + all-reduce + syncs + link = ms", "error",
                  "sync cost calibrated on the uncapped row", "error"], rows,
                 ["cluster_scaling.json"],
                 [f"`{data['command']}` on {machine_text(data)}, {data['date'][:10]}, commit "
                  f"`{data['commit']}`, {minutes(data['wall_s'])}, load {data['load_1min']} at "
                  f"the start and {data['load_1min_at_end']} at the end."])


@table("cluster_link_90")
def cluster_link_90() -> Table:
    """The link at which N workers keep 90% efficiency: this machine's measured parts for 2 and
    3 one-core workers, SCALING.md's stated GPU assumptions for 8 and 100."""
    from bench.cluster_scaling import model_rows
    from bench.multiworker_overhead import GPU_STEP_S, link_for_efficiency

    data = load("cluster_scaling.json")
    found = {(r["network"], r["workers"], r["cap"]): r for r in model_rows(data["configs"])}
    rows = []
    for network in NETWORK_NAMES:
        single = found.get((network, 1, "unlimited"))
        pair = found.get((network, 2, "unlimited"))
        if not (single and pair):
            continue
        for workers in (2, 3):
            row = found.get((network, workers, "unlimited"))
            if not row:
                continue
            model = row.get("corrected") or row["model"]
            fixed = 1e-3 * (model["allreduce_software_ms"] + model["syncs_ms"])
            need = link_for_efficiency(1e-3 * single["compute_ms"], row["gradient_bytes"],
                                       workers, 0.0, 0, fixed_s=fixed)
            rows.append([NETWORK_NAMES[network], f"{workers}, this machine (a core each)",
                         f"{single['compute_ms']:.0f} ms (measured, 1 worker)",
                         f"{fixed * 1e3:.0f} ms measured (gradient all-reduce"
                         + (f" + {row['syncs']} batch-norm syncs, calibrated)"
                            if row.get("corrected") else ")"),
                         pct(single["compute_ms"] / (single["compute_ms"] + 1e3 * fixed), 0),
                         _rate(need)])
        for sync in ([True, False] if pair["syncs"] else [False]):
            collectives = 1 + (pair["syncs"] if sync else 0)
            for workers in (8, 100):
                for latency in (5e-6, 50e-6):
                    need = link_for_efficiency(GPU_STEP_S[network], pair["gradient_bytes"],
                                               workers, latency, collectives)
                    hops = collectives * 2 * (workers - 1) * latency
                    rows.append([NETWORK_NAMES[network] + (
                        " (synchronised batch norm)" if sync else
                        " (local batch norm)" if pair["syncs"] else ""),
                        f"{workers} GPUs, one a node", f"{GPU_STEP_S[network] * 1e3:.0f} ms "
                        "(assumed)", f"{collectives} ring(s) x {latency * 1e6:.0f} us a hop",
                        pct(GPU_STEP_S[network] / (GPU_STEP_S[network] + hops), 0),
                        _rate(need)])
    return Table(["network", "workers", "compute per step", "what else each step pays",
                  "efficiency on an infinitely fast link", "slowest link for 90% efficiency"], rows, ["cluster_scaling.json"],
                 ["No overlap of communication with backprop (Keras all-reduces after the "
                  "whole gradient). This machine's rows take the measured gradient bytes, one "
                  "worker's compute and the uncapped row's all-reduce costs (ResNet-20: the "
                  "calibrated sync cost); the GPU rows take the gradient bytes and the compute "
                  "times stated in `bench/multiworker_overhead.py` (GPU_STEP_S)."])


# ---------------------------------------------------------------- the classifier

CIFAR_RECIPES = [
    (["resnet20_depth_e100"], "the paper's recipe (`cifar_resnet20.flags`)"),
    (["resnet20_wd5e-4_e100"], "+ weight decay 5e-4"),
    (["resnet20_wd5e-4_cosine_e100"], "+ cosine decay"),
    ([f"resnet20_wd5e-4_cosine_cutout_e100{s}" for s in ("", "_seed1", "_seed2", "_seed3")],
     "**+ cutout 16x16** (`cifar_resnet20_modern.flags`)"),
    (["resnet20_wd1e-3_cosine_cutout_e100"], "same, weight decay 1e-3"),
]


def run_date(run: dict) -> str:
    return date_of(run["start_unix"]) if "start_unix" in run else "-"


def dates(runs: list[dict]) -> str:
    known = sorted({date_of(r["start_unix"]) for r in runs if "start_unix" in r})
    if not known:
        return "-"
    some = sum("start_unix" in r for r in runs)
    return ", ".join(known) + (f" ({some} of {len(runs)} files)" if some < len(runs) else "")


@table("cifar_recipes")
def cifar_recipes() -> Table:
    rows, sources = [], []
    for names, label in CIFAR_RECIPES:
        runs = [load(f"cifar_resnet/{n}.json") for n in names]
        recipe = runs[0]["recipe"]
        tops = [r["history"]["val_accuracy"][-1] for r in runs]
        top = (", ".join(pct(t) for t in tops) + f": **{mean_std(tops)}%**" if len(runs) > 1
               else f"**{pct(tops[0])}**")
        rows.append([label, f"{recipe['weight_decay']:g}", recipe["schedule"],
                     f"{recipe['cutout']}" if recipe["cutout"] else "-",
                     ", ".join(str(r["recipe"]["seed"]) for r in runs), top,
                     ", ".join(pct(r["history"]["accuracy"][-1], 1) for r in runs),
                     ", ".join(f"{r['seconds']:.0f}" for r in runs), dates(runs)])
        sources += [f"cifar_resnet/{n}.json" for n in names]
    app = load("cifar_resnet/app_cpu_resnet20_modern/results.json")
    history = rows_of("cifar_resnet/app_cpu_resnet20_modern/history.csv")
    rows.append(["`cifar_resnet20_modern.flags` through the app (TensorFlow, CPU)", "", "", "",
                 str(app["seed"]), f"**{pct(app['test_top1_accuracy'])}** (top-5 "
                 f"{pct(app['test_top5_accuracy'])})",
                 pct(float(history[-1]["accuracy"]), 1), "-", "-"])
    sources += ["cifar_resnet/app_cpu_resnet20_modern/results.json",
                "cifar_resnet/app_cpu_resnet20_modern/history.csv"]
    return Table(["ResNet-20, 100 epochs", "weight decay", "schedule", "cutout", "seeds",
                  "test top-1, last epoch", "train accuracy, last epoch", "seconds",
                  "date"], rows, sources,
                 ["All rows but the last: `bench.cifar_resnet` with the Keras backend each file "
                  "names (its `backend`), on a lent GPU the files do not name; ± is the sample "
                  "standard deviation over seeds."])


@table("plain_vs_resnet")
def plain_vs_resnet() -> Table:
    names = ["plain20", "plain56", "resnet20", "resnet56"]
    rows = []
    for n in names:
        r = load(f"cifar_resnet/{n}_depth_e100.json")
        h = r["history"]
        rows.append([n.replace("plain", "plain-").replace("resnet", "ResNet-"),
                     f"{r['params'] / 1e6:.2f}M", pct(1 - h["accuracy"][-1], 1),
                     f"**{pct(h['val_accuracy'][-1])}**", f"{h['loss'][0]:.1f}",
                     f"{h['loss'][-1]:.2f}", f"{r['seconds']:.0f}"])
    return Table(["net", "params", "train error, last epoch", "test top-1", "loss after epoch 1",
                  "loss after the last", "seconds"], rows,
                 [f"cifar_resnet/{n}_depth_e100.json" for n in names],
                 [f"100 epochs each, the paper's recipe, Keras backend "
                  f"{r['backend']}, all four at once on one lent GPU "
                  f"(`gpu_cifar_depth_h100.log` beside them), started {run_date(r)}."])


@table("transfer_cifar")
def transfer_cifar() -> Table:
    data = load("transfer_cifar.json")
    args = data["args"]
    how = {"scratch": ("random", args["scratch_lr"]),
           "fine-tune all layers": ("pretrained", args["finetune_lr"]),
           "frozen backbone, new head": ("pretrained", args["scratch_lr"])}
    base = statistics.mean(data["results"]["scratch"]["runs"])
    rows = []
    for name, res in data["results"].items():
        start, lr = how[name]
        gain = 100 * (statistics.mean(res["runs"]) - base)
        rows.append([start, name, f"{lr:g}", ", ".join(pct(x) for x in res["runs"]),
                     f"**{mean_std(res['runs'])}%**", f"{gain:+.2f}" if gain else ""])
    return Table(["start", "trained", "lr", "top-1 per seed", "mean ± std",
                  "gain (points)"], rows, ["transfer_cifar.json"],
                 [f"Pretrained on {', '.join(data['pretrain_classes'])} "
                  f"({num(data['train_images_pretrain'])} images, {args['pretrain_epochs']} "
                  f"epochs: {pct(data['pretrain_top1'])} on their test images), then "
                  f"{', '.join(data['target_classes'])} with {args['per_class']} labelled "
                  f"images per class, seeds {args['seeds']}; ± is the sample standard "
                  f"deviation (the file's `std` divides by n). Whole bench "
                  f"{data['seconds']:.0f} s ({minutes(data['seconds'])}) on "
                  f"{data['cpus']} CPUs ({data['machine']})."])


@table("cifar_encoder_protocol")
def cifar_encoder_protocol() -> Table:
    return protocol_table({"cifar_resnet20_encoder": "`cifar_resnet20_encoder.flags`, 15 "
                                                     "epochs"}, metric_name="test top-1")


# ---------------------------------------------------------------- DQN

@table("dqn_cartpole")
def dqn_cartpole() -> Table:
    data = load("dqn_cartpole.json")
    rows = [["suite (Keras on TensorFlow)", str(r["seed"]),
             f"{r['greedy_return_mean']:.1f} ± {r['greedy_return_std']:.1f}",
             f"{r['final_network_return_mean']:.1f}", num(r["env_steps_per_second"]),
             f"{r['wall_seconds']:.0f} s"] for r in data["app"]]
    rows += [[f"PyTorch {r['torch']} peer", str(r["seed"]), "",
              f"{r['greedy_return_mean']:.1f} ± {r['greedy_return_std']:.1f}",
              num(r["env_steps_per_second"]), ""] for r in data["pytorch"]]
    speed = (statistics.mean(r["env_steps_per_second"] for r in data["app"])
             / statistics.mean(r["env_steps_per_second"] for r in data["pytorch"]))
    return Table(["", "seed", "greedy return, kept policy (100 new episodes)", "final network",
                  "env steps/s (training)", "wall time, start to exit"], rows,
                 ["dqn_cartpole.json"],
                 [f"Solved (mean greedy return >= 475): {data['solved_seeds']} of "
                  f"{len(data['app'])} seeds. Training speed, suite / PyTorch: {times(speed)} "
                  f"(means). {machine_text(data['machine'])}, load "
                  f"{data['machine']['load_1min']} at the start."])


# ---------------------------------------------------------------- the segmenter

@table("isbi")
def isbi() -> Table:
    compare = load("isbi/compare.json")
    labels = {"global threshold": "one global threshold (best on the training images)",
              "Otsu threshold": "Otsu's threshold per image",
              "fcn32s": "FCN-32s (width 0.25, batch norm)",
              "fcn8s": "FCN-8s (width 0.25, batch norm)",
              "unet": "U-Net (16 first-level filters, batch norm)"}

    def row(label, r, steps, time):
        return [label, f"{r['pixel_error']:.3f}", f"{r['rand_error']:.3f}",
                f"{r['mean_iou']:.3f}", f"{r['per_class_iou'][0]:.3f}", steps, time]

    rows = [row(label, compare[k], num(compare[k]["steps"]) if "steps" in compare[k] else "-",
                minutes(compare[k]["run_seconds"]) if "run_seconds" in compare[k] else "-")
            for k, label in labels.items()]
    fast = load("isbi/fcn8s_30min.results.json")
    rows.append(row("FCN-8s, the 30-minute recipe (`isbi_fcn8s_30min.flags`)", fast,
                    num(fast["epochs"] * fast["steps_per_epoch"]),
                    f"not recorded (the file's `seconds`, {fast['seconds']}, timed a rerun "
                    "that only evaluated)"))
    return Table(["method", "pixel error", "Rand error", "mIoU", "membrane IoU", "steps",
                  "whole run"], rows, ["isbi/compare.json", "isbi/fcn8s_30min.results.json"],
                 ["The 6 held-out 512x512 images (24-29), seed 0; the networks from scratch, "
                  "batch 4."])


def interleaved_rows(data: dict, labels: dict) -> list[list[str]]:
    """Peers of bench.interleaved: images/s, ms per step where the file has it, the ratio to
    the best PyTorch peer, CPU ms per step."""
    res = data["results"]
    best = max((r["mean_images_per_s"] for p, r in res.items()
                if p.startswith("torch") and not r.get("error")), default=None)
    rows = []
    for peer, label in labels.items():
        r = res.get(peer)
        if not r:
            continue
        if r.get("error"):
            rows.append([label, "failed", "", "", ""])
            continue
        step = [f"{r['ms_per_step']:.0f}"] if "ms_per_step" in r else []
        rows.append([label, f"{r['mean_images_per_s']:.1f} ± {r['std_images_per_s']:.1f}", *step,
                     f"{r['mean_images_per_s'] / best:.2f}" if best else "-",
                     f"{r['median_cpu_ms_per_step']:.0f}"])
    return rows


INTERLEAVED = {"keras": "Keras fit", "torch": "PyTorch eager, NCHW",
               "torch_channels_last": "PyTorch eager, channels-last",
               "torch_compile": "torch.compile"}


@table("throughput_fcn")
def throughput_fcn() -> Table:
    data = load("throughput_fcn.json")
    c = data["config"]
    return Table(["FCN-8s training step", "images/s (mean ± std)", "vs best PyTorch",
                  "CPU ms/step (median)"],
                 interleaved_rows(data, INTERLEAVED), ["throughput_fcn.json"],
                 [f"Width {c['width_multiplier']}, batch norm, {c['crop']}x{c['crop']} crops, "
                  f"batch {c['batch_size']}; {num(data['parameters']['keras_total'])} parameters "
                  f"in both. `{command(data['command'])}`; {machine_text(data['machine'])}, "
                  f"{loads(data)}."])


# ---------------------------------------------------------------- DCGAN

def class_range(histogram: list[float]) -> str:
    low, high = min(histogram), max(histogram)
    return (f"{pct(low, 1)} ({histogram.index(low)}) / {pct(high, 1)} "
            f"({histogram.index(high)})")


def quality_row(label: str, q: dict, seconds) -> list[str]:
    return [label, minutes(seconds) if seconds else "-",
            f"{q['classifier_score']:.2f} ± {q['classifier_score_std']:.2f}",
            f"{q['frechet_distance']:.0f}", class_range(q["class_histogram"])]


DCGAN_HEADER = ["run (bfloat16 where it says)", "time: the file's `seconds`", "classifier score",
                "Frechet DeepConvNet distance", "smallest / largest class (digit)"]


@table("dcgan_preset")
def dcgan_preset() -> Table:
    preset = load("dcgan_mnist/results.json")
    q = preset["quality"]
    judged = load("dcgan_mnist/judges.json")["judges"]["runs/mnist_augment"]["generators"]
    rows = [["real test digits", "-", f"{q['real_test_classifier_score']:.2f}",
             f"{q['frechet_floor_test_vs_train']:.2f} (the floor)", "-"],
            quality_row("**`dcgan_mnist.flags`**: `--refine_layers=1`, batch 64, 11 epochs, "
                        "bfloat16, fused batch norm", q, preset["seconds"])]
    rerun = load("dcgan_mnist/stateless_noise_results.json")
    rows.append(quality_row("the same preset after the resumable noise, rerun",
                            rerun["quality"], rerun["seconds"]))
    for run, results, label in (
            ("runs/dcgan_bf16", "refine1_bfloat16_10epochs_results.json",
             "the previous preset: Keras's own batch norm, 10 epochs"),
            ("runs/dcgan_r2cos", "refine2_cosine_9epochs_results.json",
             "`--refine_layers=2`, both learning rates cosine-decayed, 9 epochs")):
        rows.append(quality_row(label, judged[run], load(f"dcgan_mnist/{results}")["seconds"]))
    fakes = load("dcgan_mnist/reuse_fakes_cosine_12epochs_results.json")
    rows.append(quality_row("`--reuse_fakes`, both learning rates cosine-decayed, 12 epochs",
                            fakes["quality"], fakes["seconds"]))
    return Table(DCGAN_HEADER, rows,
                 ["dcgan_mnist/results.json", "dcgan_mnist/stateless_noise_results.json",
                  "dcgan_mnist/judges.json", "dcgan_mnist/refine1_bfloat16_10epochs_results.json",
                  "dcgan_mnist/refine2_cosine_9epochs_results.json",
                  "dcgan_mnist/reuse_fakes_cosine_12epochs_results.json"],
                 [f"Judge: `{q['classifier']}` (`mnist_augment.flags`); {num(q['samples'])} "
                  "generated digits against random training digits; the score's ± is over ten "
                  "splits of the samples. `seconds` is the last process of a run: a resumed "
                  "run's earlier parts are not in it. The two judged rows take their scores from "
                  "`judges.json` and their time from their own results file."])


@table("dcgan_book_judge")
def dcgan_book_judge() -> Table:
    runs = [("refine1_bfloat16_10epochs_results.json",
             "`--refine_layers=1`, bfloat16, 10 epochs (the previous preset)"),
            ("refine2_cosine_9epochs_results.json",
             "the same with `--refine_layers=2`, cosine, 9 epochs"),
            ("refine1_float32_7epochs_results.json", "`--refine_layers=1`, float32, 7 epochs"),
            ("paper_generator_results.json", "the paper's generator, batch 64, 8 epochs"),
            ("paper_generator_ema_results.json",
             "the same with `--ema_decay=0.999`: averaged generator"),
            ("paper_generator_batch128_results.json",
             "the paper's generator, batch 128, 9 epochs (resumed: `seconds` is its last part)")]
    first = load(f"dcgan_mnist/{runs[0][0]}")["quality"]
    rows = [["real test digits", "-", f"{first['real_test_classifier_score']:.2f}",
             f"{first['frechet_floor_test_vs_train']:.2f} (the floor)", "-"]]
    for name, label in runs:
        r = load(f"dcgan_mnist/{name}")
        rows.append(quality_row(label, r["quality"], r["seconds"]))
        if "quality_trained_generator" in r:
            rows.append(quality_row("the same run, trained generator",
                                    r["quality_trained_generator"], None))
    return Table(DCGAN_HEADER, rows, [f"dcgan_mnist/{n}" for n, _ in runs],
                 [f"Judge: `{first['classifier']}`, the book's DeepConvNet trained by "
                  "`mnist.flags`."])


@table("throughput_dcgan")
def throughput_dcgan() -> Table:
    data = load("throughput_dcgan.json")
    c = data["config"]
    return Table(["DCGAN training step", "images/s (mean ± std)", "ms per step",
                  "vs best PyTorch", "CPU ms/step (median)"],
                 interleaved_rows(data, INTERLEAVED), ["throughput_dcgan.json"],
                 [f"28x28x1, batch {c['batch_size']}, {c['base_filters']} base filters, the "
                  f"paper's generator ({num(data['parameters']['keras_generator'])} parameters); "
                  "Keras's own batch norm (measured before the fused one). "
                  f"`{command(data['command'])}`; {machine_text(data['machine'])}, "
                  f"{loads(data)}."])


# ---------------------------------------------------------------- style transfer

@table("style")
def style() -> Table:
    r = load("style/results.json")
    rows = [[r["features"], r["pooling"], r["optimizer"], str(r["steps"]),
             "x".join(str(s) for s in r["size"]), f"{r['start_loss']:.3g}", f"{r['loss']:,.0f}",
             f"**{r['loss_ratio']:.0f}x**", f"{r['seconds']:.0f} s"]]
    return Table(["features", "pooling", "optimizer", "rounds", "size", "loss of the content "
                  "image", "final loss", "fell by", "time (`seconds`)"], rows,
                 ["style/results.json"])


# ---------------------------------------------------------------- the captioner

@table("nic")
def nic() -> Table:
    labels = {"beam3": "beam search, width 3", "greedy": "greedy",
              "nearest_training_image": "baseline: the nearest training image's caption",
              "language_model_only": "baseline: the language model alone (one caption)"}
    rows = []
    for name, decoder in (("results.json", "512 (the paper's; the preset)"),
                          ("decoder256_results.json", "256")):
        r = load(f"flickr8k_nic/{name}")
        for key, label in labels.items():
            test, val = r["bleu"][key], r["validation_bleu"][key]
            ms = r["decode_ms_per_image"].get(key)
            bleu4 = f"{test['bleu4']:.4f}"
            rows.append([decoder, label, f"{test['bleu1']:.3f}",
                         bleu4 if "baseline" in label else f"**{bleu4}**",
                         f"{val['bleu1']:.3f}", f"{val['bleu4']:.4f}",
                         f"{ms:.2f}" if ms else "-"])
        decoder = ""
    preset = load("flickr8k_nic/results.json")
    return Table(["decoder units", "decoding", "test BLEU-1", "test BLEU-4", "validation BLEU-1",
                  "validation BLEU-4", "ms per image"], rows,
                 ["flickr8k_nic/results.json", "flickr8k_nic/decoder256_results.json"],
                 [f"{preset['test_images']} test and {preset['validation_images']} validation "
                  f"images, {preset['epochs']} epochs, vocabulary {preset['vocabulary_size']}; "
                  f"the preset's whole run (`seconds`): {preset['seconds']:.0f} s "
                  f"({minutes(preset['seconds'])}). The language model's one caption: "
                  f"\"{preset['language_model_caption']}\"."])


@table("nic_protocol")
def nic_protocol() -> Table:
    """The preset under the held-out protocol, a row per seed: test BLEU-4 of both decoders and
    both baselines, for the epoch the validation loss chose."""
    record = load("protocol/flickr8k_nic/record.json")
    decodings = ("greedy", "beam3", "nearest_training_image", "language_model_only")
    rows = []
    for run in record["runs"]:
        res, chosen = run["results"], run["results"]["selection"]
        bleu4 = [f"{res['bleu'][d]['bleu4']:.4f}" for d in decodings]
        rows.append([str(run["seed"]), f"{chosen['epoch']} of {res['epochs']} "
                     f"({chosen['metric']} {chosen['value']:.3f})", *bleu4,
                     f"{res['bleu']['greedy']['bleu1']:.3f}", minutes(run["wall_seconds"]),
                     f"{run['machine']['load_1min']} / {run.get('load_1min_at_end', '-')}",
                     run["date"][:10], f"`{run['commit']}`"])
    spreads = [mean_std([r["results"]["bleu"][d]["bleu4"] for r in record["runs"]], 1, 4)
               for d in decodings]
    greedy1 = mean_std([r["results"]["bleu"]["greedy"]["bleu1"] for r in record["runs"]], 1, 3)
    rows.append(["mean ± std", "", *spreads, greedy1, "", "", "", ""])
    first = record["runs"][0]
    return Table(["seed", "epoch the validation loss chose", "test BLEU-4 greedy",
                  "beam search, width 3", "baseline: nearest training image",
                  "baseline: language model alone", "test BLEU-1 greedy", "wall time",
                  "load start / end", "date", "commit"], rows,
                 ["protocol/flickr8k_nic/record.json"],
                 [f"`python {first['command']}` (each seed its own `--seed` and folder; both "
                  f"on the same encoder run) on {machine_text(first['machine'])}. "
                  f"{first['results']['test_images']} test images, 5 reference captions each; "
                  "± is the sample standard deviation over seeds."])


# ---------------------------------------------------------------- the detector

def held_out_map(record: str, label: str) -> Table:
    """A preset_run record of the raccoon detector: test mAP@0.5 per seed."""
    return protocol_table({record: label}, metric="map_50",
                          metric_name="test mAP@0.5 (40 held-out images)",
                          fmt=lambda v: f"{v:.3f}")


@table("raccoon_protocol")
def raccoon_protocol() -> Table:
    return held_out_map("raccoon_faster_rcnn_scratch",
                        "random initialisation (`raccoon_faster_rcnn_scratch.flags`), 6 epochs")


@table("raccoon_map_selected")
def raccoon_map_selected() -> Table:
    return held_out_map("raccoon_faster_rcnn_scratch_map_selected",
                        "random initialisation, epoch chosen by validation mAP@0.5")


RACCOON_HOUR = "raccoon_detection/raccoon_faster_rcnn_60min/results.json"


@table("raccoon_60min_curve")
def raccoon_60min_curve() -> Table:
    """The hour preset's test curve, drawn after the run from its kept epochs."""
    data = load(RACCOON_HOUR)
    app = data["app_results"]
    chosen = (app.get("selection") or {}).get("epoch")
    rows = []
    for p in data["points"]:
        mark = "**" if p["epoch"] == chosen else ""
        rows.append([f"{mark}{p['epoch']}{mark}" + (" (chosen)" if mark else ""),
                     f"{p['minutes']:.1f}", f"{p['val_map_50']:.3f}",
                     f"{mark}{p['test']['map_50']:.3f}{mark}", f"{p['test']['map_75']:.3f}",
                     f"{p['test']['map']:.3f}"])
    m, t = data["machine"], data["training"]
    check = data["returned_at_threshold"]
    notes = [f"The app's own report (epoch {chosen}, chosen by validation mAP@0.5 "
             f"{app['selection']['value']:.3f}, test images scored once): **test mAP@0.5 "
             f"{app['map_50']:.3f}**, mAP@0.75 {app['map_75']:.3f}, COCO mAP {app['map']:.3f}, "
             f"recall@100 {app['recall_100']:.3f}; training and validation "
             f"{minutes(t['wall_seconds'])} in all.",
             f"What the chosen model returns at the export's score threshold "
             f"{check['score_threshold']}: {check['detections_per_image']:.2f} detections per "
             f"test image against {check['true_objects_per_image']:.2f} true raccoons; same-class "
             f"pairs overlapping above its NMS IoU {check['nms_iou']}: "
             f"{check['overlapping_same_class_pairs']} (first 10 images: "
             f"{check['overlapping_pairs_first_10_images']}).",
             f"`{t['command']}` then the scoring: `{data['command']}`, on {machine_text(m)}, "
             f"load {m['load_1min']} at the start, {data['load_1min_at_end']} at the end, "
             f"{m['date'][:10]}, commit `{m['commit']}`."]
    return Table(["epoch", "minutes since the start", "validation mAP@0.5 (20 images)",
                  "test mAP@0.5 (40 images)", "test mAP@0.75", "test COCO mAP"], rows,
                 [RACCOON_HOUR], notes)


@table("raccoon")
def raccoon() -> Table:
    bench = load("raccoon_detection/results.json")
    rows = []
    for key, label in (("classifier_backbone", "**the suite's CIFAR-10 ResNet-18** "
                        "(`cifar_resnet18_backbone.flags`)"),
                       ("random_init", "random initialisation")):
        r = load(f"raccoon_detection/{key}_results.json")
        timing = bench["runs"][key]["timing"]
        rows.append([label, r["backbone_batch_norm"], f"**{r['map_50']:.3f}**",
                     f"{r['map']:.3f}", f"{r['map_75']:.3f}", f"{r['recall_100']:.3f}",
                     minutes(timing["training_seconds"]), minutes(timing["command_seconds"])])
    r = load("raccoon_detection/classifier_backbone_bn_trained_results.json")
    rows.append(["the CIFAR-10 ResNet-18, `--backbone_batch_norm=trained`",
                 r["backbone_batch_norm"], f"**{r['map_50']:.3f}**", f"{r['map']:.3f}",
                 f"{r['map_75']:.3f}", f"{r['recall_100']:.3f}", "-",
                 f"{minutes(r['seconds'])} (`seconds`)"])
    return Table(["backbone start", "backbone batch norm", "mAP@0.5", "COCO mAP", "mAP@0.75",
                  "recall@100", "training", "whole command"], rows,
                 ["raccoon_detection/results.json",
                  "raccoon_detection/classifier_backbone_results.json",
                  "raccoon_detection/random_init_results.json",
                  "raccoon_detection/classifier_backbone_bn_trained_results.json"],
                 [f"The {r['held_out_images']} held-out images at their own sizes; ResNet-18 "
                  f"pyramid, {r['image_size']}x{r['image_size']} letterbox, batches of "
                  f"{r['batch_size']}, {r['epochs']} epochs of {r['train_images']} images. "
                  f"First two rows: `python -m bench.detector_raccoon` on "
                  f"{machine_text(bench['machine'])}, load {bench['machine']['load_1min']} at "
                  f"the start; the third measured alone afterwards."])


@table("raccoon_speed")
def raccoon_speed() -> Table:
    bench = load("raccoon_detection/results.json")
    t, e = bench["training_throughput"], bench["export_latency"]
    rows = [["training", f"{t['images_per_second']} images/s ({t['seconds_per_step']} s per "
             f"step of {t['batch_size']}), {num(t['parameters'])} parameters, peak resident "
             f"memory {num(t['peak_resident_mb'])} MB"],
            ["the export, one JPEG in, boxes out", f"{e['median_ms']} ms (median)"],
            ["evaluation, per held-out image",
             f"{bench['runs']['classifier_backbone']['detection_ms_per_image']} ms"]]
    return Table(["measure", "value"], rows, ["raccoon_detection/results.json"])


# ---------------------------------------------------------------- export (docs/export.md)

@table("precision_variants")
def precision_variants() -> Table:
    data = load("precision_mnist/precision.json")
    rows = [[f"`{r['variant']}`", num(r["size_bytes"]), times(r["size_ratio"]),
             pct(r["accuracy"]), f"{r['accuracy_drop_points']:+.2f}",
             f"{r['latency_b1_ms']:.3f}", f"{r['latency_b256_ms']:.1f}"] for r in data["rows"]]
    b = data["bars"]
    return Table(["variant", "bytes", "size ratio", "test accuracy", "drop (points)",
                  "latency b1 (ms)", "latency b256 (ms)"], rows, ["precision_mnist/precision.json"],
                 [f"{num(b['test_images'])} test images, {b['tflite_num_threads']} thread; "
                  f"full int8: {times(b['int8_size_ratio'])} smaller than float32 TFLite (bar "
                  f">= {b['int8_size_bar']}x), {b['int8_accuracy_drop_points']:.2f} points lost "
                  f"(bar <= {b['int8_accuracy_bar_points']}). Size ratios: Keras variants against "
                  "the Keras float32 file, TFLite variants against TFLite float32."])


# ---------------------------------------------------------------- README's applications

def cpu_and_date(machine: dict | None, date: str | None = None) -> str:
    where = machine_text(machine).split(", oneDNN")[0] if machine else "machine not recorded"
    return f"{where}; {date or 'date not recorded'}"


@table("applications")
def applications() -> Table:
    book = load("protocol/mnist_book/record.json")["runs"][0]
    cifar = load("cifar_resnet/app_cpu_resnet20_modern/results.json")
    dqn = load("dqn_cartpole.json")
    isbi_ = load("isbi/compare.json")["unet"]
    gan = load("dcgan_mnist/results.json")
    paint = load("style/results.json")
    words = load("flickr8k_nic/results.json")
    hour = load(RACCOON_HOUR)
    solved = dqn["solved_seeds"]
    rows = [
        ["MNIST", "DeepConvNet (Saitoh 2016)", "MNIST", "`train_mnist --flagfile="
         "apps/flags/mnist.flags`", f"{pct(book['results']['test_accuracy'])} test accuracy in "
         f"{minutes(book['wall_seconds'])}", cpu_and_date(book["machine"], book["date"][:10]),
         "[docs/mnist.md](docs/mnist.md)"],
        ["classifier", "VGG, GoogLeNet, ResNet (CIFAR and ImageNet forms)",
         "any tfds image set or folder; CIFAR-10", "`train_classifier --flagfile="
         "apps/flags/cifar_resnet20_modern.flags --dataset=...`",
         f"ResNet-20, CIFAR-10 (20k images): {pct(cifar['test_top1_accuracy'])} top-1 (old "
         "protocol)",
         cpu_and_date(None), "[docs/classifier.md](docs/classifier.md)"],
        ["DQN", "DQN, Double DQN (Mnih 2015)", "gymnasium: CartPole, Atari",
         "`train_dqn --flagfile=apps/flags/dqn_cartpole.flags`",
         f"CartPole solved by {solved} of {len(dqn['app'])} seeds, each within "
         f"{max(r['wall_seconds'] for r in dqn['app']):.0f} s",
         cpu_and_date(dqn["machine"]), "[docs/dqn.md](docs/dqn.md)"],
        ["segmenter", "FCN-32s/16s/8s, U-Net", "image/mask folders; ISBI 2012",
         "`train_segmenter --flagfile=apps/flags/isbi_unet.flags`",
         f"U-Net: pixel error {isbi_['pixel_error']:.3f} in {minutes(isbi_['run_seconds'])} "
         "(old protocol)",
         cpu_and_date(None), "[docs/segmenter.md](docs/segmenter.md)"],
        ["DCGAN", "DCGAN (Radford 2015)", "MNIST, CIFAR-10, image folders",
         "`train_dcgan --flagfile=apps/flags/dcgan_mnist.flags`",
         f"classifier score {gan['quality']['classifier_score']:.2f}, Frechet distance "
         f"{gan['quality']['frechet_distance']:.0f} in {minutes(gan['seconds'])}",
         cpu_and_date(None), "[docs/dcgan.md](docs/dcgan.md)"],
        ["style transfer", "Gatys 2016 on VGG features", "two images",
         "`style_transfer --flagfile=apps/flags/style_transfer_demo.flags`",
         f"256x256, loss {paint['loss_ratio']:.0f}x lower in {paint['seconds']:.0f} s",
         cpu_and_date(None), "[docs/style_transfer.md](docs/style_transfer.md)"],
        ["captioner", "NIC, Show and Tell (Vinyals 2015)", "Flickr8k folders, COCO",
         "`train_captioner --flagfile=apps/flags/flickr8k_nic.flags`",
         f"test BLEU-4 {words['bleu']['beam3']['bleu4']:.4f} (beam 3), BLEU-1 "
         f"{words['bleu']['beam3']['bleu1']:.3f} (old protocol)", cpu_and_date(None),
         "[docs/captioner.md](docs/captioner.md)"],
        ["detector", "Faster R-CNN with FPN (Ren 2015), keras-cv", "VOC folders; raccoon",
         "`train_detector --flagfile=apps/flags/raccoon_faster_rcnn_60min.flags`",
         f"test mAP@0.5 {hour['app_results']['map_50']:.3f}, the epoch chosen on validation "
         f"images, in {minutes(hour['training']['wall_seconds'])} (one seed)",
         cpu_and_date(hour["machine"], hour["machine"]["date"][:10]),
         "[docs/detector.md](docs/detector.md)"],
    ]
    return Table(["application", "networks", "data", "command: `python -m apps.<...>`",
                  "headline result", "measured on", "page"], rows,
                 ["protocol/mnist_book/record.json",
                  "cifar_resnet/app_cpu_resnet20_modern/results.json", "dqn_cartpole.json",
                  "isbi/compare.json", "dcgan_mnist/results.json", "style/results.json",
                  "flickr8k_nic/results.json", RACCOON_HOUR],
                 ["Old protocol: the test set also chose the epoch or the preset "
                  "([running](docs/running.md#which-data-chooses-the-model))."])


# ---------------------------------------------------------------- the command

def pages(paths: list[str] | None = None) -> list[str]:
    if paths:
        return paths
    return ([os.path.join(REPO, "README.md")]
            + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
            + sorted(glob.glob(os.path.join(REPO, "bench", "*.md"))))


def rendered(text: str, page: str) -> tuple[str, list[str]]:
    """The page with every table rendered, and the names of those that differed."""
    stale = []

    def one(match):
        head, name, body, tail = match.groups()
        if name not in TABLES:
            raise SystemExit(f"{page}: no table named {name!r} (bench/docs.py, TABLES)")
        new = render(name)
        if new != body:
            stale.append(name)
        return head + new + tail

    return MARKED.sub(one, text), stale


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_bool("check", False, "rewrite nothing; exit 1 naming every table that differs "
                      "from its results files", flag_values=fv)
    flags.DEFINE_list("pages", None, "the pages to render (default: README.md and docs/*.md)",
                      flag_values=fv)


def main(args) -> int:
    differ, placed = [], set()
    for page in pages(args.pages):
        with open(page) as f:
            text = f.read()
        placed |= {m.group(2) for m in MARKED.finditer(text)}
        new, stale = rendered(text, page)
        where = os.path.relpath(page, REPO)
        differ += [f"{where}: table {name}" for name in stale]
        if stale and not args.check:
            with open(page, "w") as f:
                f.write(new)
    if args.check and differ:
        for line in differ:
            print(f"{line} differs from its results files", file=sys.stderr)
        print("run python -m bench.docs to render them", file=sys.stderr)
        return 1
    verb = "differ" if args.check else "rendered"
    print(f"{len(placed)} tables checked; {len(differ)} {verb}" + "".join(
        f"\n  {line}" for line in differ))
    return 0


if __name__ == "__main__":
    cli.run(main, define_flags)
